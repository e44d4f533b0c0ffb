// The Hub front: turns client requests into cache lookups, upstream checks
// and fills. The composition root (src/app) builds one and hands every
// request to handle().
//
// Routes: HEAD|GET file routes (/resolve/, /raw/, /api/resolve-cache/),
// /healthz, CORS preflights; everything else is relayed to upstream
// unchanged (uncached) with the caller's credentials.
//
// Thread safety: handle() may run concurrently on any number of strands.
#pragma once

#include <hubcache/http/server.hpp>
#include <hubcache/storage/blob_store.hpp>
#include <hubcache/storage/document_store.hpp>
#include <hubcache/storage/metadata_index.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace hubcache::hub {

namespace net = boost::asio;

// Freshness, offline and access rules; config.hpp documents each field.
struct CachePolicy {
  std::chrono::seconds public_ttl{60};
  std::chrono::milliseconds revision_ttl{5'000};
  std::chrono::milliseconds metadata_ttl{60'000};
  std::chrono::milliseconds stale_while_revalidate{10'000};
  std::chrono::milliseconds negative_ttl{60'000};
  bool offline = false;
  bool read_only = false;
};

struct ServiceOptions {
  upstream::Url upstream;        // the Hub, with an optional path prefix
  std::string public_url;        // scheme://host[:port] clients use; "" = from the Host header
  CachePolicy policy;
  // Longest a client waits for the next bytes of a fill before giving up.
  std::chrono::milliseconds fill_wait_timeout{60'000};
};

struct ServiceDeps {
  std::shared_ptr<upstream::HttpClient> http;
  storage::BlobStore* store = nullptr;         // outlives the service
  storage::MetadataIndex* index = nullptr;     // outlives the service
  storage::DocumentStore* docs = nullptr;      // outlives the service
  net::thread_pool* blocking = nullptr;        // outlives the service
  net::io_context* io = nullptr;               // runs fills; outlives the service
};

class HubService {
 public:
  virtual ~HubService() = default;
  virtual net::awaitable<void> handle(http::Exchange& exchange) = 0;
};

std::unique_ptr<HubService> make_hub_service(ServiceOptions options, ServiceDeps deps);

}  // namespace hubcache::hub
