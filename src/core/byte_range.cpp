#include <hubcache/core/byte_range.hpp>
#include <hubcache/util/text.hpp>

#include <charconv>

namespace hubcache::core {
namespace {

using util::trim;

// Digits only (no sign, no spaces); nullopt on overflow or empty input.
std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

RangeDecision decide_range(std::string_view header, std::uint64_t size) noexcept {
  RangeDecision full;
  header = trim(header);
  constexpr std::string_view k_unit = "bytes=";
  if (header.size() < k_unit.size()) return full;
  for (std::size_t i = 0; i < k_unit.size(); ++i) {
    const char c = header[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != k_unit[i]) return full;
  }
  const std::string_view spec = trim(header.substr(k_unit.size()));
  if (spec.find(',') != std::string_view::npos) return full;  // multi-range: answer in full
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return full;
  const std::string_view a = trim(spec.substr(0, dash));
  const std::string_view b = trim(spec.substr(dash + 1));

  RangeDecision d;
  d.outcome = RangeOutcome::partial;
  if (a.empty()) {  // suffix: the last n bytes
    const auto n = parse_u64(b);
    if (!n) return full;
    if (*n == 0 || size == 0) return {RangeOutcome::unsatisfiable, {}};
    d.range.first = *n >= size ? 0 : size - *n;
    d.range.last = size - 1;
    return d;
  }
  const auto first = parse_u64(a);
  if (!first) return full;
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!b.empty()) {
    const auto l = parse_u64(b);
    if (!l || *l < *first) return full;  // invalid range-spec: ignore the header
    if (*l < last) last = *l;
  }
  if (*first >= size) return {RangeOutcome::unsatisfiable, {}};
  d.range = {*first, last};
  return d;
}

}  // namespace hubcache::core
