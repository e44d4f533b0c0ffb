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

  // Completes when available > offset, or the fill finished, or `timeout`
  // passed without progress (errc::timeout). Returns the state at that
  // moment; on a finished-with-error fill, returns that error.
  net::awaitable<result<State>> wait_beyond(std::uint64_t offset, std::chrono::steady_clock::duration timeout);

 private:
  void wake_all();  // REQUIRES: m_mutex not held

  mutable std::mutex m_mutex;
  State m_state;                                             // guarded by m_mutex
  std::vector<std::shared_ptr<net::steady_timer>> m_waiters; // guarded by m_mutex
};

}  // namespace hubcache::flight
