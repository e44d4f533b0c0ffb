#include <hubcache/core/byte_range.hpp>

#include <gtest/gtest.h>

namespace hubcache::core {
namespace {

TEST(ByteRange, Forms) {
  auto d = decide_range("bytes=0-0", 100);
  EXPECT_EQ(d.outcome, RangeOutcome::partial);
  EXPECT_EQ(d.range, (ByteRange{0, 0}));
  EXPECT_EQ(decide_range("bytes=10-", 100).range, (ByteRange{10, 99}));
  EXPECT_EQ(decide_range("bytes=-10", 100).range, (ByteRange{90, 99}));
  EXPECT_EQ(decide_range("bytes=-1000", 100).range, (ByteRange{0, 99}));
  EXPECT_EQ(decide_range("bytes=5-1000", 100).range, (ByteRange{5, 99}));
  EXPECT_EQ(decide_range(" BYTES=5-6 ", 100).range, (ByteRange{5, 6}));
  EXPECT_EQ(decide_range("bytes=99-99", 100).range.length(), 1u);
}

TEST(ByteRange, Unsatisfiable) {
  EXPECT_EQ(decide_range("bytes=100-", 100).outcome, RangeOutcome::unsatisfiable);
  EXPECT_EQ(decide_range("bytes=100-200", 100).outcome, RangeOutcome::unsatisfiable);
  EXPECT_EQ(decide_range("bytes=-0", 100).outcome, RangeOutcome::unsatisfiable);
  EXPECT_EQ(decide_range("bytes=0-0", 0).outcome, RangeOutcome::unsatisfiable);
}

TEST(ByteRange, IgnoredHeaders) {
  EXPECT_EQ(decide_range("", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("items=0-1", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("bytes=0-1,5-6", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("bytes=5-1", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("bytes=a-b", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("bytes=-", 100).outcome, RangeOutcome::full);
  EXPECT_EQ(decide_range("bytes=99999999999999999999999-", 100).outcome, RangeOutcome::full);
}

}  // namespace
}  // namespace hubcache::core
