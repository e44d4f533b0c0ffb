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

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

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

// How misses are filled from upstream; src/hub/fill.hpp explains the engine.
struct FillOptions {
  // Bytes per ranged request. 16 MiB: at a CDN's typical per-connection cap
  // (25-50 MB/s) a chunk takes 0.3-0.6 s, so a request's round trip costs a
  // few percent, a failed chunk repeats little, and a Range client's own
  // chunk arrives quickly (docs/benchmarks.md has the measurements).
  std::uint64_t chunk_size = 16u << 20;
  // Ranged requests in flight per fill. 8 reaches several hundred MB/s under
  // per-connection caps while keeping a fill to 8 connections and 8 copy
  // buffers (2 MiB).
  unsigned parallelism = 8;
  // Fills transferring at once; more wait their turn (their clients wait).
  unsigned max_fills = 16;
  // Concurrent chunk requests to one upstream host (all fills together).
  unsigned connections_per_host = 64;
  // When the last client leaves, a fill with more than this many bytes left
  // stops. Default: never stop (whatever a client started is cached).
  std::uint64_t abandon_above = std::numeric_limits<std::uint64_t>::max();
  // A chunk request whose body stops flowing for this long (or for the
  // upstream client's io_timeout, if shorter) is dropped and resumed on a
  // new connection; the wait for its first body byte is the
  // upstream client's io_timeout (a chained hubcache may be queueing its
  // own fill; a pause of its fill longer than this costs one more request).
  // 5 s: huggingface_hub gives up on a download that sends nothing for 10 s,
  // which leaves the resumed request 5 s to bring a follower of the stalled
  // bytes its next ones.
  std::chrono::milliseconds stall_timeout{5'000};
  // Attempts for one chunk without any progress before the fill fails.
  unsigned chunk_attempts = 5;
  std::chrono::milliseconds retry_backoff{250};  // doubles per attempt
};

struct ServiceOptions {
  upstream::Url upstream;        // the Hub, with an optional path prefix
  std::string public_url;        // scheme://host[:port] clients use; "" = from the Host header
  CachePolicy policy;
  // Longest a client waits for the next bytes of a fill before giving up.
  std::chrono::milliseconds fill_wait_timeout{60'000};
  FillOptions fill;
};

struct ServiceDeps {
  std::shared_ptr<upstream::HttpClient> http;
  storage::BlobStore* store = nullptr;         // outlives the service
  storage::MetadataIndex* index = nullptr;     // outlives the service
  storage::DocumentStore* docs = nullptr;      // outlives the service
  net::thread_pool* blocking = nullptr;        // outlives the service
  // Event loops that run fills, taken in turn (each one thread or strand).
  // Empty: a fill runs on the connection of the client that started it. On a
  // loop of its own a fill is not held up by the clients it feeds: serving
  // 32 followers from the fill's I/O thread made that thread read upstream
  // late, and the fill ran at 60 % of its speed (measured).
  std::vector<net::any_io_executor> fill_loops;
};

class HubService {
 public:
  virtual ~HubService() = default;
  virtual net::awaitable<void> handle(http::Exchange& exchange) = 0;
};

std::unique_ptr<HubService> make_hub_service(ServiceOptions options, ServiceDeps deps);

}  // namespace hubcache::hub
