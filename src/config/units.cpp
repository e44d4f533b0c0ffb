// Sizes and durations as operators write them ("100GiB", "1.5h").
//
// Numbers may have a decimal fraction. It is applied exactly, in integers
// (no floating point), and a value that does not come out as a whole number of
// bytes or milliseconds is rejected rather than rounded: "0.1KiB" is 102.4
// bytes, and silently dropping the .4 would make the config lie.
#include "units.hpp"

#include <hubcache/config/config.hpp>

#include <array>
#include <cctype>
#include <cstdio>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace hubcache::config {
namespace {

struct Unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Every prefix is a power of 1024, with or without "B"/"iB": operators mix up
// "G" and "GiB" all the time, and one meaning for all of them is the least
// surprising for a disk budget. Matched case-insensitively.
// clang-format off
constexpr std::array k_size_units{
    Unit{"", 1},           Unit{"b", 1},
    Unit{"k", 1ull << 10}, Unit{"kb", 1ull << 10}, Unit{"kib", 1ull << 10},
    Unit{"m", 1ull << 20}, Unit{"mb", 1ull << 20}, Unit{"mib", 1ull << 20},
    Unit{"g", 1ull << 30}, Unit{"gb", 1ull << 30}, Unit{"gib", 1ull << 30},
    Unit{"t", 1ull << 40}, Unit{"tb", 1ull << 40}, Unit{"tib", 1ull << 40},
};
// clang-format on

// Factors in milliseconds. Case-sensitive: "m" is minutes, and "M" or "MS"
// are more likely typos than intent.
constexpr std::array k_duration_units{
    Unit{"ms", 1}, Unit{"s", 1000}, Unit{"", 1000}, Unit{"m", 60'000}, Unit{"h", 3'600'000},
};

// 10^19 is the largest power of ten in a uint64, which bounds the fraction digits.
constexpr std::size_t k_max_fraction_digits = 19;

// A non-negative decimal number: whole + fraction / scale, scale = 10^digits.
struct Decimal {
  std::uint64_t whole = 0;
  std::uint64_t fraction = 0;
  std::uint64_t scale = 1;
};

[[noreturn]] void fail(std::string_view what, std::string_view text, std::string_view reason) {
  throw std::invalid_argument("invalid " + std::string(what) + " " + detail::quote(text) + ": " + std::string(reason));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads "123" or "123.45" from the front of `rest`, leaving the unit behind.
Decimal read_decimal(std::string_view& rest, std::string_view what, std::string_view text) {
  Decimal out;
  std::size_t i = 0;
  for (; i < rest.size() && is_digit(rest[i]); ++i) {
    if (__builtin_mul_overflow(out.whole, 10u, &out.whole) ||
        __builtin_add_overflow(out.whole, static_cast<unsigned>(rest[i] - '0'), &out.whole)) {
      fail(what, text, "too large");
    }
  }
  if (i == 0) fail(what, text, "expected a number, optionally followed by a unit");
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    const std::size_t first = i;
    while (i < rest.size() && is_digit(rest[i])) ++i;
    if (i == first) fail(what, text, "expected digits after the decimal point");
    std::string_view digits = rest.substr(first, i - first);
    // Trailing zeros change nothing, so "1.50000000000000000000" is still fine.
    while (!digits.empty() && digits.back() == '0') digits.remove_suffix(1);
    if (digits.size() > k_max_fraction_digits) fail(what, text, "too many decimal places");
    for (char c : digits) {
      out.fraction = out.fraction * 10 + static_cast<unsigned>(c - '0');
      out.scale *= 10;
    }
  }
  rest.remove_prefix(i);
  // "100 GiB" reads naturally in a JSON file, so spaces before a unit are
  // allowed; trailing spaces are left in place and fail as an unknown unit.
  const std::size_t spaces = rest.find_first_not_of(' ');
  if (spaces != std::string_view::npos) rest.remove_prefix(spaces);
  return out;
}

// value * factor, exactly; `unit_name` is what one step of the result is called.
std::uint64_t scale_exact(const Decimal& value, std::uint64_t factor, std::string_view what, std::string_view text,
                          std::string_view unit_name) {
  std::uint64_t result = 0;
  if (__builtin_mul_overflow(value.whole, factor, &result)) fail(what, text, "too large");
  if (value.fraction == 0) return result;
  // fraction/scale in lowest terms is num/den; num * factor / den is whole
  // only if den divides factor (num and den share no factor). Computing
  // num * (factor / den) cannot overflow since num < den.
  const std::uint64_t g = std::gcd(value.fraction, value.scale);
  const std::uint64_t num = value.fraction / g;
  const std::uint64_t den = value.scale / g;
  if (factor % den != 0) fail(what, text, "not a whole number of " + std::string(unit_name));
  if (__builtin_add_overflow(result, num * (factor / den), &result)) fail(what, text, "too large");
  return result;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::uint64_t parse_size(const std::string& text) {
  constexpr std::string_view what = "size";
  std::string_view rest = text;
  const Decimal value = read_decimal(rest, what, text);
  for (const Unit& unit : k_size_units) {
    if (iequals(rest, unit.suffix)) return scale_exact(value, unit.factor, what, text, "bytes");
  }
  fail(what, text,
       "unknown unit " + detail::quote(rest) +
           " (use B, K, M, G or T, optionally followed by B or iB; all are powers of 1024)");
}

std::chrono::milliseconds parse_duration(const std::string& text) {
  constexpr std::string_view what = "duration";
  std::string_view rest = text;
  const Decimal value = read_decimal(rest, what, text);
  for (const Unit& unit : k_duration_units) {
    if (rest == unit.suffix) {
      const std::uint64_t ms = scale_exact(value, unit.factor, what, text, "milliseconds");
      if (ms > static_cast<std::uint64_t>(detail::k_max_duration_ms)) fail(what, text, "too large (at most 876000h)");
      return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
    }
  }
  fail(what, text, "unknown unit " + detail::quote(rest) + " (use ms, s, m or h; a bare number is seconds)");
}

namespace detail {

std::string format_size(std::uint64_t bytes) {
  constexpr std::array<std::string_view, 4> suffixes{"TiB", "GiB", "MiB", "KiB"};
  for (std::size_t i = 0; i < suffixes.size(); ++i) {
    const unsigned shift = 10u * static_cast<unsigned>(suffixes.size() - i);
    const std::uint64_t factor = 1ull << shift;
    if (bytes != 0 && bytes % factor == 0) return std::to_string(bytes / factor) + std::string(suffixes[i]);
  }
  return std::to_string(bytes);
}

std::string format_duration(std::chrono::milliseconds duration) {
  const std::int64_t ms = duration.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", byte);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace detail
}  // namespace hubcache::config
