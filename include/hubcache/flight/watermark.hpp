// Watermark: monotonic "bytes available" of a fill, with async waiting.
//
// The fill (one producer) calls advance() as bytes become readable and
// finish() once at the end; any number of consumers on any executors wait
// with wait_beyond(). It is the timer-as-condition-variable idiom: each
// waiter parks on its own steady_timer, and advance()/finish() cancel the
// parked timers through their own executors, so no timer is touched from a
// foreign thread.
//
// Thread safety: all members are safe from any thread.
// REQUIRES: waiters run on a strand (or a single-threaded executor), so the
// wake-up posted to their executor cannot overtake their own async_wait.
#pragma once

#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace hubcache::flight {

namespace net = boost::asio;

class Watermark {
 public:
  // Waking every waiter on every small advance makes N followers of a fill
  // chase each socket read with N tiny reads and writes (measured: 8
  // followers slowed a 64 MiB fill from 0.7 s to 8 s). So advance() wakes
  // waiters only once `wake_bytes` more are available or `wake_interval` has
  // passed since the last wake-up; finish() always wakes.
  explicit Watermark(std::uint64_t wake_bytes = 256 * 1024,
                     std::chrono::steady_clock::duration wake_interval = std::chrono::milliseconds(10))
      : m_wake_bytes(wake_bytes), m_wake_interval(wake_interval) {}

  struct State {
    std::uint64_t available = 0;
    bool finished = false;
    std::error_code error;  // set when finished unsuccessfully
  };

  // Raises the available count (values below the current one are ignored).
  void advance(std::uint64_t available);
  // Terminal: success (empty ec) or failure. Later calls are ignored.
  void finish(std::error_code ec);
  State state() const;

  // Completes when at least `want` bytes past `offset` are available (or the
  // fill finished), or when some bytes past `offset` have been available for
  // `wake_interval` (so a slow fill still trickles to its clients), or when
  // `timeout` passed without any (errc::timeout). Waiting for a worthwhile
  // amount, not for any byte, keeps followers from chasing every small
  // socket read with a tiny read and write of their own. Returns the state;
  // a fill finished with an error returns that error.
  net::awaitable<result<State>> wait_beyond(std::uint64_t offset, std::chrono::steady_clock::duration timeout,
                                            std::uint64_t want = 1);

 private:
  void wake_all();  // REQUIRES: m_mutex not held

  const std::uint64_t m_wake_bytes;
  const std::chrono::steady_clock::duration m_wake_interval;
  mutable std::mutex m_mutex;
  State m_state;                                             // guarded by m_mutex
  std::uint64_t m_woken_at = 0;                              // guarded by m_mutex: available at the last wake-up
  std::chrono::steady_clock::time_point m_woken_time{};      // guarded by m_mutex
  std::vector<std::shared_ptr<net::steady_timer>> m_waiters; // guarded by m_mutex
};

}  // namespace hubcache::flight
