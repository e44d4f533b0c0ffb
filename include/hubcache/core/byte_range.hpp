// HTTP Range requests on a single byte range (RFC 9110 §14).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace hubcache::core {

// An inclusive byte range [first, last] within content of a known size.
struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t length() const noexcept { return last - first + 1; }
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

enum class RangeOutcome {
  full,           // no usable Range header: answer 200 with everything
  partial,        // answer 206 with `range`
  unsatisfiable,  // answer 416 with "Content-Range: bytes */size"
};

struct RangeDecision {
  RangeOutcome outcome = RangeOutcome::full;
  ByteRange range;
};

// Interprets a Range header value against content of `size` bytes. Supports
// "bytes=a-b", "bytes=a-" and "bytes=-n". Syntactically invalid headers and
// multi-range requests are ignored (full answer), as RFC 9110 allows; a
// well-formed range that starts past the end is unsatisfiable.
RangeDecision decide_range(std::string_view header, std::uint64_t size) noexcept;

}  // namespace hubcache::core
