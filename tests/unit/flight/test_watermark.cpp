#include <hubcache/flight/registry.hpp>
#include <hubcache/flight/watermark.hpp>

#include <test_support.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>

namespace hubcache::flight {
namespace {

using namespace std::chrono_literals;

// A waiter for the bytes at `offset`, spawned on `ioc` (which the test runs).
struct Parked {
  bool woke = false;
  std::uint64_t seen = 0;  // available, once woken
};
void park(net::io_context& ioc, Watermark& wm, std::uint64_t offset, Parked& out) {
  net::co_spawn(ioc, [&wm, &out, offset]() -> net::awaitable<void> {
    auto r = co_await wm.wait_beyond(offset, 5s);
    out.woke = r.has_value();
    if (r) out.seen = r->available;
  }, net::detached);
}

TEST(Watermark, ReturnsImmediatelyWhenDataIsThere) {
  net::io_context ioc;
  Watermark wm;
  wm.advance(10);
  auto st = test::run(ioc, wm.wait_beyond(5, 1s));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->available, 10u);
  EXPECT_FALSE(st->finished);
}

TEST(Watermark, WakesWaitersOnOtherThreads) {
  // Eight waiters, each on its own strand of a 4-thread pool, wait for the
  // producer to pass their offset; all must see it.
  net::thread_pool pool(4);
  Watermark wm;
  std::atomic<int> satisfied{0};
  std::vector<std::future<void>> done;
  for (int i = 0; i < 8; ++i) {
    std::promise<void> p;
    done.push_back(p.get_future());
    net::co_spawn(
        net::make_strand(pool),
        [&wm, &satisfied]() -> net::awaitable<void> {
          std::uint64_t pos = 0;
          while (pos < 1000) {
            auto st = co_await wm.wait_beyond(pos, 10s);
            if (!st) co_return;
            pos = st->available;
            if (st->finished) break;
          }
          if (pos == 1000) satisfied++;
        },
        [p = std::move(p)](std::exception_ptr) mutable { p.set_value(); });
  }
  for (std::uint64_t v = 1; v <= 1000; v += 7) {
    wm.advance(v);
    if (v % 70 == 1) std::this_thread::sleep_for(1ms);
  }
  wm.advance(1000);
  wm.finish({});
  for (auto& f : done) ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(satisfied.load(), 8);
  pool.join();
}

TEST(Watermark, FailureReachesWaiters) {
  net::io_context ioc;
  Watermark wm;
  wm.advance(3);
  net::post(ioc, [&] { wm.finish(make_error_code(errc::integrity_mismatch)); });
  auto st = test::run(ioc, wm.wait_beyond(3, 5s));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error(), make_error_code(errc::integrity_mismatch));
  // A finished watermark ignores later progress.
  wm.advance(100);
  EXPECT_EQ(wm.state().available, 3u);
}

TEST(Watermark, TimesOutWithoutProgress) {
  net::io_context ioc;
  Watermark wm;
  wm.advance(1);
  auto st = test::run(ioc, wm.wait_beyond(1, 50ms));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error(), make_error_code(errc::timeout));
}

TEST(Watermark, SuccessfulFinishEndsWaitAtEnd) {
  net::io_context ioc;
  Watermark wm;
  wm.advance(4);
  net::post(ioc, [&] { wm.finish({}); });
  auto st = test::run(ioc, wm.wait_beyond(4, 5s));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->finished);
  EXPECT_EQ(st->available, 4u);
}

TEST(FlightRegistry, FirstCallerLeadsOthersJoin) {
  FlightRegistry<std::string, int> reg;
  int made = 0;
  auto [a, lead_a] = reg.join("k", [&] { ++made; return new int(1); });
  auto [b, lead_b] = reg.join("k", [&] { ++made; return new int(2); });
  EXPECT_TRUE(lead_a);
  EXPECT_FALSE(lead_b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(made, 1);
  reg.remove("k", a);
  auto [c, lead_c] = reg.join("k", [&] { ++made; return new int(3); });
  EXPECT_TRUE(lead_c);
  EXPECT_EQ(*c, 3);
  // Removing a stale flight does not remove the live one.
  reg.remove("k", a);
  EXPECT_EQ(reg.size(), 1u);
}

TEST(Watermark, RangesAreContiguousFromTheAskedOffset) {
  Watermark wm;
  wm.add(100, 200);
  wm.add(300, 400);
  EXPECT_EQ(wm.state(0).available, 0u);    // nothing at 0 yet
  EXPECT_EQ(wm.state(150).available, 200u);
  EXPECT_EQ(wm.state(200).available, 200u);  // the gap: nothing beyond 200
  wm.add(200, 300);                          // closes it: one run 100-400
  EXPECT_EQ(wm.state(100).available, 400u);
  EXPECT_EQ(wm.state(399).available, 400u);
  wm.add(0, 150);                            // overlaps: merged, not double counted
  EXPECT_EQ(wm.state(0).available, 400u);
  EXPECT_EQ(wm.state(400).available, 400u);
}

TEST(Watermark, WaiterAtAnOffsetWakesForBytesThere) {
  // A range client waits at 1000 while the fill writes elsewhere first.
  net::io_context ioc;
  Watermark wm(1, 1ms);
  net::post(ioc, [&] { wm.add(0, 500); });
  net::post(ioc, [&] { wm.add(1000, 3000); });
  auto st = test::run(ioc, wm.wait_beyond(1000, 5s, 2000));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->available, 3000u);
}

}  // namespace
}  // namespace hubcache::flight

namespace hubcache::flight {
namespace {

TEST(Watermark, SmallAdvancesAreBatchedButNeverLost) {
  // Wake-ups are batched (1000 bytes or 1 hour here), yet a waiter that
  // arrives late still sees every byte, and finish() wakes everyone.
  net::io_context ioc;
  Watermark wm(1000, std::chrono::hours(1));
  wm.advance(1);
  wm.advance(10);
  auto st = test::run(ioc, wm.wait_beyond(5, 1s));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->available, 10u);  // state is current even when no wake-up was sent

  // A parked waiter is not woken by every small advance, but it still sees
  // a small advance within its re-check interval, with no further progress.
  Parked waiter;
  park(ioc, wm, 10, waiter);
  ioc.restart();
  ioc.run_for(20ms);
  wm.advance(20);  // below the 1000-byte batch, inside the 1 h interval: no wake-up sent
  ioc.run_for(500ms);
  EXPECT_TRUE(waiter.woke);
  EXPECT_EQ(waiter.seen, 20u);
}

}  // namespace
}  // namespace hubcache::flight

namespace hubcache::flight {
namespace {

TEST(Watermark, AnAddWithWakeNowIsNotBatched) {
  // How a fill releases a file's last byte: its clients must not wait for
  // the re-check interval.
  net::io_context ioc;
  Watermark wm(1000, std::chrono::hours(1));
  wm.advance(10);
  Parked waiter;
  park(ioc, wm, 10, waiter);
  ioc.restart();
  const auto parked_at = std::chrono::steady_clock::now();
  ioc.poll();  // parks the waiter
  ASSERT_FALSE(waiter.woke);
  wm.add(10, 11, true);
  ioc.poll();  // runs only what is ready now: the wake-up, not a timer
  if (std::chrono::steady_clock::now() - parked_at >= 50ms) {
    GTEST_SKIP() << "the machine stalled for the waiter's re-check interval: a wake-up cannot be told from it";
  }
  EXPECT_TRUE(waiter.woke);
  EXPECT_EQ(waiter.seen, 11u);
}

TEST(Watermark, WaitsForWantedAmountButTricklesWhenSlow) {
  net::io_context ioc;
  Watermark wm(1, std::chrono::milliseconds(100));
  wm.advance(10);
  // 10 bytes past offset 0 are there, but 100 are wanted: the call returns
  // after the wake interval with what there is, not at once.
  const auto start = std::chrono::steady_clock::now();
  auto st = test::run(ioc, wm.wait_beyond(0, 5s, 100));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->available, 10u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms);
  // Enough available: immediate.
  wm.advance(200);
  auto st2 = test::run(ioc, wm.wait_beyond(0, 5s, 100));
  ASSERT_TRUE(st2.has_value());
  EXPECT_EQ(st2->available, 200u);
}


}  // namespace
}  // namespace hubcache::flight
