// Watermark: which bytes of a fill are readable, with async waiting.
//
// A fill may write its blob in several places at once (parallel ranged
// downloads), so availability is a set of byte ranges, not one prefix: the
// producer calls add() as ranges become readable (advance(n) is add(0, n) for
// a fill that writes in order) and finish() once at the end. Consumers on any
// executors wait with wait_beyond(offset), which reports how far the bytes
// from `offset` are contiguous. It is the timer-as-condition-variable idiom:
// each waiter parks on its own steady_timer, and add()/finish() cancel the
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
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace hubcache::flight {

namespace net = boost::asio;

class Watermark {
 public:
  // Waking every waiter on every small advance makes N followers of a fill
  // chase each socket read with N tiny reads and writes (measured: 8
  // followers slowed a 64 MiB fill from 0.7 s to 8 s). So add() wakes
  // waiters only once `wake_bytes` more have been added or `wake_interval`
  // has passed since the last wake-up; finish() always wakes.
  explicit Watermark(std::uint64_t wake_bytes = 256 * 1024,
                     std::chrono::steady_clock::duration wake_interval = std::chrono::milliseconds(10))
      : m_wake_bytes(wake_bytes), m_wake_interval(wake_interval) {}

  struct State {
    std::uint64_t available = 0;  // end of the readable bytes contiguous from the asked offset (>= it)
    bool finished = false;
    std::error_code error;  // set when finished unsuccessfully
  };

  // Marks [begin, end) readable (ranges already marked are ignored). Wakes
  // waiters in batches (see above) unless `wake_now`.
  void add(std::uint64_t begin, std::uint64_t end, bool wake_now = false);
  // add(0, available): for a fill that writes in order.
  void advance(std::uint64_t available) { add(0, available); }
  // Terminal: success (empty ec) or failure. Later calls are ignored.
  void finish(std::error_code ec);
  // The state seen from `offset` (available == offset: no byte there yet).
  State state(std::uint64_t offset = 0) const;

  // Completes when the bytes from `offset` are readable for at least `want`
  // bytes (or the fill finished), or when some bytes at `offset` have been
  // readable for `wake_interval` (so a slow fill still trickles to its
  // clients), or when `timeout` passed without the fill making any progress
  // anywhere (errc::timeout). Waiting for a worthwhile amount, not for any
  // byte, keeps followers from chasing every small socket read with a tiny
  // read and write of their own. Returns the state seen from `offset`; a fill
  // finished with an error returns that error.
  net::awaitable<result<State>> wait_beyond(std::uint64_t offset, std::chrono::steady_clock::duration timeout,
                                            std::uint64_t want = 1);

 private:
  void wake_all();  // REQUIRES: m_mutex not held
  // End of the contiguous readable bytes from `offset`; `offset` itself when
  // none is there. REQUIRES: m_mutex held.
  std::uint64_t contiguous_end(std::uint64_t offset) const;

  const std::uint64_t m_wake_bytes;
  const std::chrono::steady_clock::duration m_wake_interval;
  mutable std::mutex m_mutex;
  std::map<std::uint64_t, std::uint64_t> m_ranges;           // guarded by m_mutex: begin -> end, disjoint, merged
  std::uint64_t m_total = 0;                                  // guarded by m_mutex: bytes marked readable
  bool m_finished = false;                                    // guarded by m_mutex
  std::error_code m_error;                                    // guarded by m_mutex
  std::uint64_t m_woken_at = 0;                               // guarded by m_mutex: m_total at the last wake-up
  std::chrono::steady_clock::time_point m_woken_time{};      // guarded by m_mutex
  std::vector<std::shared_ptr<net::steady_timer>> m_waiters; // guarded by m_mutex
};

}  // namespace hubcache::flight
