// Semaphore: a counted, FIFO, awaitable limit on concurrent work (fills in
// progress, connections to one upstream host). Excess callers queue in
// arrival order; nothing is refused.
//
// acquire() returns a Permit that gives the slot back when destroyed. A
// waiter whose coroutine is destroyed while queued (shutdown) leaves the
// queue, and a slot handed to it just then is passed on, so no slot leaks.
//
// Thread safety: all members are safe from any thread; a Permit has one
// owner. The Semaphore must outlive its Permits and waiters.
// REQUIRES: waiters run on a strand (or a single-threaded executor), as for
// Watermark: a hand-over posted to the waiter's executor must not overtake
// its own async_wait.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

namespace hubcache::flight {

namespace net = boost::asio;

class Semaphore {
 public:
  explicit Semaphore(std::size_t slots) : m_free(slots) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  class Permit {
   public:
    Permit() = default;
    explicit Permit(Semaphore* owner) : m_owner(owner) {}
    Permit(Permit&& other) noexcept : m_owner(std::exchange(other.m_owner, nullptr)) {}
    Permit& operator=(Permit&& other) noexcept {
      if (this != &other) {
        reset();
        m_owner = std::exchange(other.m_owner, nullptr);
      }
      return *this;
    }
    ~Permit() { reset(); }
    void reset() noexcept {
      if (m_owner) std::exchange(m_owner, nullptr)->release();
    }
    explicit operator bool() const noexcept { return m_owner != nullptr; }

   private:
    Semaphore* m_owner = nullptr;
  };

  // Takes a slot, waiting in FIFO order while none is free.
  net::awaitable<Permit> acquire();
  // Takes a slot only if one is free now.
  Permit try_acquire();

  std::size_t free_slots() const;
  std::size_t waiting() const;

 private:
  struct Waiter {
    std::shared_ptr<net::steady_timer> timer;
    bool granted = false;  // guarded by m_mutex: a slot was handed to this waiter
  };

  void release() noexcept;

  mutable std::mutex m_mutex;
  std::size_t m_free;                          // guarded by m_mutex
  std::deque<std::shared_ptr<Waiter>> m_queue;  // guarded by m_mutex; front = longest waiting
};

}  // namespace hubcache::flight
