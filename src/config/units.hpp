// Private helpers of the config module: the inverse of parse_size and
// parse_duration (used to print defaults in --help), and quoting of user text
// for error messages. The parsers themselves are public (config.hpp).
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace hubcache::config::detail {

// Durations above this are rejected. Deadlines end up as steady_clock
// nanoseconds (int64, about 292 years); 100 years leaves room for now() + d.
inline constexpr std::int64_t k_max_duration_ms = 100LL * 365 * 24 * 3600 * 1000;

// "100GiB", "64MiB", "1048577": the largest binary unit that divides exactly.
std::string format_size(std::uint64_t bytes);
// "2h", "30s", "250ms": the largest unit that divides exactly.
std::string format_duration(std::chrono::milliseconds duration);
// `text` in double quotes, with quotes, backslashes and control bytes escaped,
// so an error message stays on one line whatever the user typed.
std::string quote(std::string_view text);

}  // namespace hubcache::config::detail
