#include <hubcache/flight/watermark.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <iterator>
#include <optional>

namespace hubcache::flight {

namespace {
constexpr auto k_recheck = std::chrono::milliseconds(50);
}  // namespace

void Watermark::add(std::uint64_t begin, std::uint64_t end, bool wake_now) {
  {
    std::lock_guard lock(m_mutex);
    if (m_finished || end <= begin) return;
    // Merge [begin, end) with every range it overlaps or touches; the new
    // bytes are the merged length minus what the absorbed ranges had.
    auto it = m_ranges.upper_bound(begin);
    if (it != m_ranges.begin() && std::prev(it)->second >= begin) --it;
    std::uint64_t absorbed = 0;
    while (it != m_ranges.end() && it->first <= end) {
      absorbed += it->second - it->first;
      begin = std::min(begin, it->first);
      end = std::max(end, it->second);
      it = m_ranges.erase(it);
    }
    m_ranges.emplace(begin, end);
    const std::uint64_t added = (end - begin) - absorbed;
    if (added == 0) return;
    m_total += added;
    const auto now = std::chrono::steady_clock::now();
    if (!wake_now && m_total - m_woken_at < m_wake_bytes && now - m_woken_time < m_wake_interval) return;
    m_woken_at = m_total;
    m_woken_time = now;
  }
  wake_all();
}

std::uint64_t Watermark::contiguous_end(std::uint64_t offset) const {
  auto it = m_ranges.upper_bound(offset);
  if (it == m_ranges.begin()) return offset;
  --it;
  return std::max(it->second, offset);
}

void Watermark::finish(std::error_code ec) {
  {
    std::lock_guard lock(m_mutex);
    if (m_finished) return;
    m_finished = true;
    m_error = ec;
  }
  wake_all();
}

Watermark::State Watermark::state(std::uint64_t offset) const {
  std::lock_guard lock(m_mutex);
  return {contiguous_end(offset), m_finished, m_error};
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
  std::uint64_t progress_seen = 0;
  {
    std::lock_guard lock(m_mutex);
    progress_seen = m_total;
  }
  if (want == 0) want = 1;
  std::optional<Clock::time_point> data_since;  // when bytes at `offset` were first seen
  auto timer = std::make_shared<net::steady_timer>(co_await net::this_coro::executor);
  while (true) {
    Clock::time_point wake_at = deadline;
    {
      std::lock_guard lock(m_mutex);
      if (m_finished && m_error) co_return m_error;
      const State st{contiguous_end(offset), m_finished, m_error};
      if (st.finished || st.available >= offset + want) co_return st;
      const auto now = Clock::now();
      if (m_total > progress_seen) {
        progress_seen = m_total;
        deadline = now + timeout;
      }
      if (st.available > offset) {
        if (!data_since) data_since = now;
        if (now - *data_since >= m_wake_interval) co_return st;
        wake_at = std::min(deadline, *data_since + m_wake_interval);
      } else if (now >= deadline) {
        co_return errc::timeout;
      } else {
        // Wake-ups are batched (see add()); re-check now and then so a
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
