#include <hubcache/flight/semaphore.hpp>

#include <test_support.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <vector>

namespace hubcache::flight {
namespace {

using namespace std::chrono_literals;

TEST(Semaphore, NeverMoreHoldersThanSlotsAndEveryoneGetsATurn) {
  // 40 tasks on their own strands of a 4-thread pool share 3 slots; each
  // holds its slot across a suspension.
  net::thread_pool pool(4);
  Semaphore sem(3);
  std::atomic<int> holders{0};
  std::atomic<int> peak{0};
  std::atomic<int> finished{0};
  std::vector<std::future<void>> done;
  for (int i = 0; i < 40; ++i) {
    std::promise<void> p;
    done.push_back(p.get_future());
    net::co_spawn(
        net::make_strand(pool),
        [&]() -> net::awaitable<void> {
          auto permit = co_await sem.acquire();
          const int now = ++holders;
          int seen = peak.load();
          while (now > seen && !peak.compare_exchange_weak(seen, now)) {
          }
          net::steady_timer t(co_await net::this_coro::executor, 2ms);
          co_await t.async_wait(net::use_awaitable);
          --holders;
          ++finished;
        },
        [p = std::move(p)](std::exception_ptr) mutable { p.set_value(); });
  }
  for (auto& f : done) ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(finished.load(), 40);
  EXPECT_EQ(peak.load(), 3);
  EXPECT_EQ(sem.free_slots(), 3u);
  EXPECT_EQ(sem.waiting(), 0u);
  pool.join();
}

TEST(Semaphore, QueuedInArrivalOrder) {
  net::io_context ioc;
  Semaphore sem(1);
  auto first = sem.try_acquire();
  ASSERT_TRUE(first);
  EXPECT_FALSE(sem.try_acquire());
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) {
    net::co_spawn(
        ioc,
        [&sem, &order, i]() -> net::awaitable<void> {
          auto permit = co_await sem.acquire();
          order.push_back(i);
        },
        net::detached);
  }
  ioc.run_for(20ms);
  EXPECT_EQ(sem.waiting(), 3u);
  first.reset();
  ioc.restart();
  ioc.run_for(200ms);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(sem.free_slots(), 1u);
}

TEST(Semaphore, AbandonedWaiterGivesItsTurnBack) {
  // A queued waiter whose coroutine is destroyed (shutdown) must not keep
  // the slot handed to it, nor stay in the queue.
  Semaphore sem(1);
  auto held = sem.try_acquire();
  {
    net::io_context ioc;
    net::co_spawn(
        ioc, [&sem]() -> net::awaitable<void> { auto permit = co_await sem.acquire(); }, net::detached);
    ioc.run_for(20ms);
    EXPECT_EQ(sem.waiting(), 1u);
  }  // destroys the suspended coroutine
  EXPECT_EQ(sem.waiting(), 0u);
  held.reset();
  EXPECT_EQ(sem.free_slots(), 1u);
  EXPECT_TRUE(sem.try_acquire());
}

}  // namespace
}  // namespace hubcache::flight
