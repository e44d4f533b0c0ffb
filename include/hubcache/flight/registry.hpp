// FlightRegistry: at most one live flight per key.
//
// The first caller for a key creates the flight and leads it; callers that
// arrive while it is live join the same object. The leader removes the entry
// when the flight ends, so the next caller starts afresh. Knows nothing about
// what a flight does.
//
// Thread safety: all members are safe from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace hubcache::flight {

template <class Key, class Flight, class Hash = std::hash<Key>>
class FlightRegistry {
 public:
  // Returns the live flight for `key`, creating it with `make()` when there is
  // none; `.second` is true for the caller that created it (the leader).
  template <class Make>
  std::pair<std::shared_ptr<Flight>, bool> join(const Key& key, Make&& make) {
    std::lock_guard lock(m_mutex);
    auto it = m_flights.find(key);
    if (it != m_flights.end()) return {it->second, false};
    auto flight = std::shared_ptr<Flight>(make());
    m_flights.emplace(key, flight);
    return {std::move(flight), true};
  }

  // The live flight for `key`, or null.
  std::shared_ptr<Flight> find(const Key& key) const {
    std::lock_guard lock(m_mutex);
    auto it = m_flights.find(key);
    return it == m_flights.end() ? nullptr : it->second;
  }

  // Removes `flight` if it is still the live one for `key`.
  void remove(const Key& key, const std::shared_ptr<Flight>& flight) {
    std::lock_guard lock(m_mutex);
    auto it = m_flights.find(key);
    if (it != m_flights.end() && it->second == flight) m_flights.erase(it);
  }

  std::size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_flights.size();
  }

 private:
  mutable std::mutex m_mutex;
  std::unordered_map<Key, std::shared_ptr<Flight>, Hash> m_flights;  // guarded by m_mutex
};

}  // namespace hubcache::flight
