// parse_size and parse_duration: the unit tables, exact fractions, and
// rejection of overflow and of anything that is not a plain number + unit.
#include <hubcache/config/config.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace hubcache::config {
namespace {

using std::chrono::milliseconds;

// The message of the std::invalid_argument thrown by `f(text)`; fails the test if none.
template <class F>
std::string error_of(F f, const std::string& text) {
  try {
    f(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for \"" << text << "\"";
  return {};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ParseSize, PlainBytes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("1"), 1u);
  EXPECT_EQ(parse_size("1048576"), 1048576u);
  EXPECT_EQ(parse_size("7B"), 7u);
}

TEST(ParseSize, AllPrefixesArePowersOf1024) {
  for (const char* suffix : {"K", "KB", "KiB", "k", "kb", "kib"})
    EXPECT_EQ(parse_size(std::string("10") + suffix), 10u << 10) << suffix;
  for (const char* suffix : {"M", "MB", "MiB"})
    EXPECT_EQ(parse_size(std::string("64") + suffix), 64ull << 20) << suffix;
  for (const char* suffix : {"G", "GB", "GiB", "gib"})
    EXPECT_EQ(parse_size(std::string("500") + suffix), 500ull << 30) << suffix;
  for (const char* suffix : {"T", "TB", "TiB"}) EXPECT_EQ(parse_size(std::string("3") + suffix), 3ull << 40) << suffix;
}

TEST(ParseSize, SpaceBeforeUnit) { EXPECT_EQ(parse_size("100 GiB"), 100ull << 30); }

TEST(ParseSize, ExactFractions) {
  EXPECT_EQ(parse_size("1.5GiB"), 1610612736u);
  EXPECT_EQ(parse_size("0.5K"), 512u);
  EXPECT_EQ(parse_size("2.25MiB"), (9ull << 20) / 4);
  EXPECT_EQ(parse_size("1.0"), 1u);
  // Trailing zeros do not count against the decimal-place limit.
  EXPECT_EQ(parse_size("1.000000000000000000000000G"), 1ull << 30);
  // 2^-40 TiB is one byte: the smallest exact fraction needs 40 digits, past the limit.
  EXPECT_EQ(parse_size("0.0009765625MiB"), 1024u);
}

TEST(ParseSize, FractionThatIsNotAWholeNumberOfBytesIsRejected) {
  EXPECT_TRUE(contains(error_of(parse_size, "0.1KiB"), "not a whole number of bytes"));
  EXPECT_TRUE(contains(error_of(parse_size, "1.5"), "not a whole number of bytes"));
  EXPECT_TRUE(contains(error_of(parse_size, "1.0000000000000000000001G"), "too many decimal places"));
}

TEST(ParseSize, Limits) {
  EXPECT_EQ(parse_size("18446744073709551615"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(parse_size("16777215TiB"), 16777215ull << 40);
  EXPECT_TRUE(contains(error_of(parse_size, "18446744073709551616"), "too large"));
  EXPECT_TRUE(contains(error_of(parse_size, "16777216TiB"), "too large"));  // exactly 2^64
  EXPECT_TRUE(contains(error_of(parse_size, "17179869184GiB"), "too large"));
  EXPECT_TRUE(contains(error_of(parse_size, "99999999999999999999999999"), "too large"));
  EXPECT_EQ(parse_size("16777215.9990234375TiB"), std::numeric_limits<std::uint64_t>::max() - (1ull << 30) + 1);
}

TEST(ParseSize, MalformedInputIsRejectedAndQuoted) {
  for (const char* text : {"", " 1", "1 ", "-1", "+1", "1.", ".5", "1..5", "1e3", "1,5G", "0x10", "G", "1 G B"}) {
    const std::string message = error_of(parse_size, text);
    EXPECT_TRUE(contains(message, std::string("invalid size \"") + text + "\"")) << message;
  }
  const std::string message = error_of(parse_size, "12XB");
  EXPECT_EQ(message.rfind("invalid size \"12XB\": unknown unit \"XB\"", 0), 0u) << message;
  EXPECT_TRUE(contains(message, "powers of 1024")) << message;
  EXPECT_TRUE(contains(error_of(parse_size, "5PiB"), "unknown unit"));
}

TEST(ParseDuration, Units) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
  EXPECT_EQ(parse_duration("10m"), milliseconds(600'000));
  EXPECT_EQ(parse_duration("2h"), milliseconds(7'200'000));
  EXPECT_EQ(parse_duration("10 s"), milliseconds(10'000));
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(parse_duration("45"), milliseconds(45'000));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));  // callers decide whether zero is allowed
}

TEST(ParseDuration, ExactFractions) {
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("0.25"), milliseconds(250));
  EXPECT_EQ(parse_duration("1.5h"), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("0.001s"), milliseconds(1));
  EXPECT_TRUE(contains(error_of(parse_duration, "0.5ms"), "not a whole number of milliseconds"));
  EXPECT_TRUE(contains(error_of(parse_duration, "0.0001s"), "not a whole number of milliseconds"));
}

TEST(ParseDuration, Limits) {
  EXPECT_EQ(parse_duration("876000h"), milliseconds(876000LL * 3'600'000));
  EXPECT_TRUE(contains(error_of(parse_duration, "876001h"), "too large"));
  EXPECT_TRUE(contains(error_of(parse_duration, "99999999999999999999"), "too large"));
  EXPECT_TRUE(contains(error_of(parse_duration, "9223372036854775807ms"), "too large"));
  EXPECT_TRUE(contains(error_of(parse_duration, "5124095576031h"), "too large"));  // overflows uint64 ms
  // The whole hours fit in uint64 milliseconds, the half hour tips it over.
  EXPECT_TRUE(contains(error_of(parse_duration, "5124095576030.5h"), "too large"));
}

TEST(ParseDuration, MalformedInputIsRejectedAndQuoted) {
  for (const char* text : {"", "s", "-1s", "+1s", "1d", "10M", "10MS", "1sec", "1 s ", "1h30m", "1e3"}) {
    const std::string message = error_of(parse_duration, text);
    EXPECT_TRUE(contains(message, std::string("invalid duration \"") + text + "\"")) << message;
  }
  EXPECT_TRUE(contains(error_of(parse_duration, "1d"), "use ms, s, m or h"));
}

}  // namespace
}  // namespace hubcache::config
