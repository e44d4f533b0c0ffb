#include "connection_pool.hpp"

#include <spdlog/spdlog.h>

#include <vector>

namespace hubcache::upstream {

void ConnectionPool::drop_expired(std::deque<Idle>& list, Clock::time_point now,
                                  std::vector<ConnectionPtr>& dropped) const {
  while (!list.empty() && now - list.front().since >= m_idle_timeout) {
    dropped.push_back(std::move(list.front().conn));
    list.pop_front();
  }
}

ConnectionPtr ConnectionPool::take(const std::string& origin) {
  // Declared before the lock so that closing sockets happens after unlocking.
  std::vector<ConnectionPtr> dropped;
  const std::lock_guard lock(m_mutex);
  auto it = m_idle.find(origin);
  if (it == m_idle.end()) return nullptr;
  drop_expired(it->second, Clock::now(), dropped);
  ConnectionPtr conn;
  // Newest first: it is the least likely to have been closed by the server.
  while (!conn && !it->second.empty()) {
    conn = std::move(it->second.back().conn);
    it->second.pop_back();
    if (!conn->reusable()) {
      // Normal when servers close idle connections; if every reuse ends
      // here (a TLS record left unread, say), pooling has stopped working.
      spdlog::debug("upstream {}: pooled connection closed or written to while idle; not reused", origin);
      dropped.push_back(std::move(conn));
    }
  }
  if (it->second.empty()) m_idle.erase(it);
  return conn;
}

void ConnectionPool::put(const std::string& origin, ConnectionPtr conn) {
  if (m_max_idle_per_host == 0) return;
  std::vector<ConnectionPtr> dropped;
  const std::lock_guard lock(m_mutex);
  const auto now = Clock::now();
  auto& list = m_idle[origin];
  drop_expired(list, now, dropped);
  list.push_back(Idle{std::move(conn), now});
  if (list.size() > m_max_idle_per_host) {
    dropped.push_back(std::move(list.front().conn));
    list.pop_front();
  }
}

}  // namespace hubcache::upstream
