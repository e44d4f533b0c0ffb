// Small string helpers shared by the parsers.
#pragma once

#include <algorithm>
#include <string_view>
#include <vector>

namespace hubcache::util {

// Splits on every `sep`; empty fields are kept ("a//b" -> "a", "", "b").
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  out.reserve(static_cast<std::size_t>(std::count(s.begin(), s.end(), sep)) + 1);  // one allocation
  std::size_t start = 0;
  while (true) {
    const auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

// True when `pred` holds for every field split() would return; allocates
// nothing (for validators on the request path).
template <typename Pred>
bool all_fields(std::string_view s, char sep, Pred pred) {
  while (true) {
    const auto pos = s.find(sep);
    if (!pred(s.substr(0, pos))) return false;
    if (pos == std::string_view::npos) return true;
    s.remove_prefix(pos + 1);
  }
}

// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace hubcache::util
