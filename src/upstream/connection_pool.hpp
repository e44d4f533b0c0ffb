// Idle keep-alive connections, per key: the origin ("scheme://host[:port]"),
// plus " via <proxy>" for connections through a proxy.
//
// Private to the upstream module. The pool only stores connections whose
// last exchange ended cleanly (the caller decides that); it never probes
// them, so a pooled connection may have been closed by the server meanwhile
// and the caller must be ready to retry once on a fresh one. Entries older
// than idle_timeout are dropped lazily when the origin is next used: servers
// close idle connections after some seconds, and reusing one that is about
// to be closed only costs a retry.
//
// Thread safety: safe from any thread; all state is guarded by m_mutex.
#pragma once

#include "connection.hpp"

#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace hubcache::upstream {

class ConnectionPool {
 public:
  ConnectionPool(std::size_t max_idle_per_host, std::chrono::seconds idle_timeout)
      : m_max_idle_per_host(max_idle_per_host), m_idle_timeout(idle_timeout) {}

  // The most recently returned connection to origin that is not too old, or
  // nullptr when there is none.
  ConnectionPtr take(const std::string& origin);
  // Keeps conn for reuse, evicting the oldest connection to origin when more
  // than max_idle_per_host are idle.
  void put(const std::string& origin, ConnectionPtr conn);

 private:
  using Clock = std::chrono::steady_clock;
  struct Idle {
    ConnectionPtr conn;
    Clock::time_point since;
  };
  // Moves entries idle for idle_timeout or longer from the front of list
  // (oldest first) into dropped. REQUIRES: m_mutex held.
  void drop_expired(std::deque<Idle>& list, Clock::time_point now, std::vector<ConnectionPtr>& dropped) const;

  const std::size_t m_max_idle_per_host;
  const std::chrono::seconds m_idle_timeout;
  std::mutex m_mutex;
  std::unordered_map<std::string, std::deque<Idle>> m_idle;  // GUARDED_BY(m_mutex); newest at the back
};

}  // namespace hubcache::upstream
