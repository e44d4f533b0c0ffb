#include <hubcache/flight/watermark.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <optional>

namespace hubcache::flight {

namespace {
constexpr auto k_recheck = std::chrono::milliseconds(50);
}  // namespace

void Watermark::advance(std::uint64_t available) {
  {
    std::lock_guard lock(m_mutex);
    if (m_state.finished || available <= m_state.available) return;
    m_state.available = available;
    const auto now = std::chrono::steady_clock::now();
    if (available - m_woken_at < m_wake_bytes && now - m_woken_time < m_wake_interval) return;
    m_woken_at = available;
    m_woken_time = now;
  }
  wake_all();
}

void Watermark::finish(std::error_code ec) {
  {
    std::lock_guard lock(m_mutex);
    if (m_state.finished) return;
    m_state.finished = true;
    m_state.error = ec;
  }
  wake_all();
}

Watermark::State Watermark::state() const {
  std::lock_guard lock(m_mutex);
  return m_state;
}

void Watermark::wake_all() {
  std::vector<std::shared_ptr<net::steady_timer>> waiters;
  {
    std::lock_guard lock(m_mutex);
    waiters.swap(m_waiters);
  }
  for (auto& timer : waiters) {
    // Cancel on the timer's own executor: steady_timer is not thread-safe.
    net::post(timer->get_executor(), [timer] { timer->cancel(); });
  }
}

net::awaitable<result<Watermark::State>> Watermark::wait_beyond(std::uint64_t offset,
                                                                std::chrono::steady_clock::duration timeout,
                                                                std::uint64_t want) {
  using Clock = std::chrono::steady_clock;
  // The timeout is for a fill without progress: a client far ahead of a
  // healthy fill keeps waiting as long as bytes keep coming.
  auto deadline = Clock::now() + timeout;
  std::uint64_t progress_seen = state().available;
  if (want == 0) want = 1;
  std::optional<Clock::time_point> data_since;  // when bytes past `offset` were first seen
  auto timer = std::make_shared<net::steady_timer>(co_await net::this_coro::executor);
  while (true) {
    Clock::time_point wake_at = deadline;
    {
      std::lock_guard lock(m_mutex);
      if (m_state.finished && m_state.error) co_return m_state.error;
      if (m_state.finished || m_state.available >= offset + want) co_return m_state;
      const auto now = Clock::now();
      if (m_state.available > progress_seen) {
        progress_seen = m_state.available;
        deadline = now + timeout;
      }
      if (m_state.available > offset) {
        if (!data_since) data_since = now;
        if (now - *data_since >= m_wake_interval) co_return m_state;
        wake_at = std::min(deadline, *data_since + m_wake_interval);
      } else if (now >= deadline) {
        co_return errc::timeout;
      } else {
        // Wake-ups are batched (see advance()); re-check now and then so a
        // small advance right before an upstream stall is not missed.
        wake_at = std::min(deadline, now + k_recheck);
      }
      m_waiters.push_back(timer);
    }
    timer->expires_at(wake_at);
    co_await timer->async_wait(net::as_tuple(net::use_awaitable));
    std::lock_guard lock(m_mutex);
    // A timeout (not a cancel) leaves our timer registered: drop it.
    m_waiters.erase(std::remove(m_waiters.begin(), m_waiters.end(), timer), m_waiters.end());
  }
}

}  // namespace hubcache::flight
