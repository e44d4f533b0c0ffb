// PublicRepos: which repos recently answered an anonymous request upstream.
//
// Only such repos have their cached bytes served without asking upstream
// first; everything else (gated, private, unknown) is authorized upstream
// with the caller's own credentials on every request. An entry expires after
// the TTL so a repo that turns private or gated stops being served blindly.
//
// Thread safety: all members are safe from any thread.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

namespace hubcache::hub {

class PublicRepos {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PublicRepos(std::chrono::seconds ttl) : m_ttl(ttl) {}

  void mark(const std::string& repo_key) {
    std::lock_guard lock(m_mutex);
    m_seen[repo_key] = Clock::now();
    // Keep the map bounded by dropping expired entries now and then.
    if (m_seen.size() > 4096) {
      const auto now = Clock::now();
      std::erase_if(m_seen, [&](const auto& kv) { return now - kv.second > m_ttl; });
    }
  }
  void forget(const std::string& repo_key) {
    std::lock_guard lock(m_mutex);
    m_seen.erase(repo_key);
  }
  bool is_public(const std::string& repo_key) const {
    std::lock_guard lock(m_mutex);
    auto it = m_seen.find(repo_key);
    return it != m_seen.end() && Clock::now() - it->second <= m_ttl;
  }

 private:
  const std::chrono::seconds m_ttl;
  mutable std::mutex m_mutex;
  std::unordered_map<std::string, Clock::time_point> m_seen;  // guarded by m_mutex
};

}  // namespace hubcache::hub
