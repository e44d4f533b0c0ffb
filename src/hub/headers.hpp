// Hub response headers: what clients read, what must never leak through.
#pragma once

#include <boost/beast/http/fields.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hubcache::hub {

namespace bhttp = boost::beast::http;

// Access-Control-* headers for browser clients (transformers.js, hub.js in a
// page): any origin may read the headers clients need. No cookies are used,
// so "*" is safe with Authorization-header auth.
void add_cors_headers(bhttp::fields& h);

// True for headers that are specific to one hop or that would steer clients
// onto xet (hub-protocol.md §5.2): those are never relayed.
bool is_hop_by_hop(std::string_view name) noexcept;
bool is_xet_header(std::string_view name) noexcept;

// Removes rel="xet-auth" and rel="xet-reconstruction-info" entries from a Link
// header value; returns the rest ("" when nothing is left).
std::string strip_xet_links(std::string_view link);

// Removes the xet file-info media type from an Accept value, so upstream
// never answers a client with xet content negotiation.
std::string strip_xet_accept(std::string_view accept);

// "W/\"abc\"" or "\"abc\"" -> "abc".
std::string unquote_etag(std::string_view etag);

// `inline; filename*=UTF-8''<enc>; filename="<ascii>";` as the Hub sends it.
std::string content_disposition(std::string_view path);

// True when a 206's headers carry exactly the bytes FIRST..LAST of TOTAL:
// Content-Range "bytes FIRST-LAST/TOTAL", and a Content-Length (when there
// is one) of their count.
bool is_exact_range(const bhttp::fields& h, std::optional<std::uint64_t> content_length, std::uint64_t first,
                    std::uint64_t last, std::uint64_t total);

}  // namespace hubcache::hub
