// A bounded map that forgets its least recently used entry when full: the
// in-memory front of on-disk lookups (the metadata index's records), so a
// hot entry costs a hash lookup instead of a file read and a parse.
//
// Thread safety: none; callers hold their own lock.
#pragma once

#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace hubcache::storage::detail {

template <class V>
class LruMap {
 public:
  // REQUIRES: capacity > 0.
  explicit LruMap(std::size_t capacity) : m_capacity(capacity) {}

  // The value, marked most recently used; nullopt when absent.
  std::optional<V> get(const std::string& key) {
    const auto it = m_index.find(key);
    if (it == m_index.end()) return std::nullopt;
    m_order.splice(m_order.begin(), m_order, it->second);
    return it->second->second;
  }

  // Inserts or replaces, evicting the least recently used entry when full.
  void put(const std::string& key, V value) {
    if (const auto it = m_index.find(key); it != m_index.end()) {
      it->second->second = std::move(value);
      m_order.splice(m_order.begin(), m_order, it->second);
      return;
    }
    if (m_index.size() >= m_capacity) {
      m_index.erase(m_order.back().first);
      m_order.pop_back();
    }
    m_order.emplace_front(key, std::move(value));
    m_index.emplace(key, m_order.begin());
  }

  void erase(const std::string& key) {
    if (const auto it = m_index.find(key); it != m_index.end()) {
      m_order.erase(it->second);
      m_index.erase(it);
    }
  }
  std::size_t size() const noexcept { return m_index.size(); }

 private:
  using Order = std::list<std::pair<std::string, V>>;  // most recently used first
  const std::size_t m_capacity;
  Order m_order;
  std::unordered_map<std::string, typename Order::iterator> m_index;
};

}  // namespace hubcache::storage::detail
