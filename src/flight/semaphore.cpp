#include <hubcache/flight/semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace hubcache::flight {

namespace {
constexpr auto k_recheck = std::chrono::milliseconds(200);
}  // namespace

Semaphore::Permit Semaphore::try_acquire() {
  std::lock_guard lock(m_mutex);
  if (m_free == 0 || !m_queue.empty()) return {};
  --m_free;
  return Permit(this);
}

net::awaitable<Semaphore::Permit> Semaphore::acquire() {
  auto waiter = std::make_shared<Waiter>();
  waiter->timer = std::make_shared<net::steady_timer>(co_await net::this_coro::executor);
  {
    std::lock_guard lock(m_mutex);
    if (m_free > 0 && m_queue.empty()) {
      --m_free;
      co_return Permit(this);
    }
    m_queue.push_back(waiter);
  }
  // If this frame is destroyed while queued, leave the queue; a slot handed
  // over meanwhile goes back (to the next waiter).
  struct Leave {
    Semaphore& sem;
    std::shared_ptr<Waiter>& w;
    bool done = false;
    ~Leave() {
      if (done) return;
      bool granted = false;
      {
        std::lock_guard lock(sem.m_mutex);
        granted = w->granted;
        if (!granted) sem.m_queue.erase(std::remove(sem.m_queue.begin(), sem.m_queue.end(), w), sem.m_queue.end());
      }
      if (granted) sem.release();
    }
  } leave{*this, waiter};
  while (true) {
    // The hand-over cancels the timer; the periodic re-check only guards
    // against a cancel that raced ahead of the wait.
    waiter->timer->expires_after(k_recheck);
    co_await waiter->timer->async_wait(net::as_tuple(net::use_awaitable));
    std::lock_guard lock(m_mutex);
    if (waiter->granted) break;
  }
  leave.done = true;
  co_return Permit(this);
}

void Semaphore::release() noexcept {
  std::shared_ptr<Waiter> next;
  {
    std::lock_guard lock(m_mutex);
    if (m_queue.empty()) {
      ++m_free;
      return;
    }
    next = std::move(m_queue.front());
    m_queue.pop_front();
    next->granted = true;  // the slot passes straight to the waiter
  }
  // Cancel on the timer's own executor: steady_timer is not thread-safe.
  auto timer = next->timer;
  net::post(timer->get_executor(), [timer] { timer->cancel(); });
}

std::size_t Semaphore::free_slots() const {
  std::lock_guard lock(m_mutex);
  return m_free;
}

std::size_t Semaphore::waiting() const {
  std::lock_guard lock(m_mutex);
  return m_queue.size();
}

}  // namespace hubcache::flight
