// ApiHandler: the Hub's metadata API through the cache, and the relay for
// everything hubcache does not cache.
//
// Cached (see docs/caching.md): repo info, revision info, tree listings,
// paths-info, refs and commit lists. Answers at a commit (tree, paths-info
// without expand) never change; the rest are fresh for a TTL. Only answers
// fetched anonymously are shared between callers, and only while the repo is
// known public; an answer fetched with a token is reused for that token only.
// When upstream is unreachable, times out, answers 5xx or 429, or hubcache
// runs offline, the last known answer is served with a Warning header.
//
// Concurrent identical misses share one upstream request: those with the same
// normalized cache key and the same credential ("" for anonymous callers)
// wait for the first one's answer instead of asking upstream themselves. A
// caller never gets an answer fetched with another caller's credentials.
//
// Thread safety: handle() may run concurrently on any number of strands.
#pragma once

#include "api_route.hpp"
#include "hub_client.hpp"
#include "state.hpp"

#include <hubcache/flight/registry.hpp>
#include <hubcache/http/server.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <mutex>
#include <set>

namespace hubcache::hub {

class ApiHandler {
 public:
  ApiHandler(HubClient& hub, HubState& state, std::string public_url);
  struct Flight;  // a shared upstream fetch; defined in the .cpp

  // A cacheable metadata route.
  net::awaitable<void> handle(http::Exchange& ex, const ApiRoute& route);
  // Anything else: streamed to upstream and back with the caller's credentials.
  net::awaitable<void> relay(http::Exchange& ex);
  net::awaitable<void> preflight(http::Exchange& ex);

  // Absolute upstream URLs in Link / Location values, pointed at hubcache.
  std::string rewrite_urls(std::string_view value, const http::Request& req) const;

 private:
  struct Fetched;
  struct SharedFetch;
  net::awaitable<result<Fetched>> fetch(const http::Request& req, bool anonymous);
  // fetch(req, false), shared with identical concurrent misses (see above).
  net::awaitable<SharedFetch> fetch_shared(const http::Request& req, const ApiRoute& route, const std::string& cred);
  net::awaitable<void> serve(http::Exchange& ex, const CachedAnswer& answer, std::string_view warning);
  std::chrono::milliseconds ttl_for(const ApiRoute& route, const CachedAnswer& answer) const;
  void refresh_in_background(const ApiRoute& route, const http::Request& req, net::any_io_executor executor);
  net::awaitable<bool> superseded(const ApiRoute& route, const CachedAnswer& answer);
  net::awaitable<void> store(const ApiRoute& route, const CachedAnswer& answer);

  HubClient& m_hub;
  HubState& m_state;
  const std::string m_public_url;
  std::mutex m_mutex;
  std::set<std::string> m_refreshing;  // cache keys with a background refresh running; guarded by m_mutex
  flight::FlightRegistry<std::string, Flight> m_flights;  // keyed by cache key and credential id
};

// credential_id() of a client request (Authorization and Cookie).
std::string credential_id(const http::Request& req);

// The response a client gets for a relayed upstream refusal.
http::StringResponse answer_response(UpstreamAnswer answer, unsigned version);

}  // namespace hubcache::hub
