// Percent-encoding (RFC 3986) helpers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hubcache::util {

// Decodes %XX escapes. '+' is kept as '+' (paths, not form data). Returns
// nullopt on a malformed escape or an encoded NUL.
std::optional<std::string> percent_decode(std::string_view in);

// Encodes everything except RFC 3986 unreserved characters; with
// keep_slash, '/' is kept too (for paths).
enum class KeepSlash { no, yes };
std::string percent_encode(std::string_view in, KeepSlash keep_slash);

}  // namespace hubcache::util
