#include <hubcache/app/application.hpp>

#include <hubcache/http/server.hpp>
#include <hubcache/hub/service.hpp>
#include <hubcache/storage/disk_blob_store.hpp>
#include <hubcache/storage/document_store.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/gcs_mirror.hpp>
#include <hubcache/storage/metadata_index.hpp>
#include <hubcache/storage/tiered_blob_store.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <csignal>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace hubcache::app {
namespace {

namespace net = boost::asio;

// fsync and rename latency dominates commits; a few threads let several
// fills commit at once without letting disk work starve the I/O threads.
constexpr int k_blocking_threads = 4;

// After a GCS failure, how long GCS is skipped: long against GCS's ~3 s retry
// budget per request (each miss would pay it), short against an outage.
constexpr std::chrono::milliseconds k_gcs_cooldown{30'000};

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("hubcache");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

struct Stores {
  std::unique_ptr<storage::BlobStore> blobs;
  std::unique_ptr<storage::MetadataIndex> index;
  std::unique_ptr<storage::DocumentStore> docs;
  storage::TieredBlobStore* tiered = nullptr;  // `blobs`, when it has a GCS tier
};

// The stores the configuration asks for: disk only; disk (L1) in front of
// GCS (L2) when both cache_dir and gcs_bucket are given; GCS with the disk
// under the default cache_dir only staging fills when just the bucket is
// (GCS hits are not copied to disk; docs/gcs.md). With GCS, the metadata
// index and documents are mirrored to the bucket too. GCS HTTP runs on `io`.
// One event loop per thread. A connection lives on one loop, and so does a
// fill, so their handlers never hop between threads (with one shared
// io_context and a strand each, every socket completion woke another thread
// and the strand handed work back: measured, a cold fill ran at half the
// speed on 2 threads that it ran on 1). Fills get loops of their own, apart
// from the I/O threads' (see ServiceDeps::fill_loops).
class Loop : public net::io_context {
 public:
  Loop() : net::io_context(1) {}
  // Destroys the handlers and suspended coroutines this loop holds while
  // every loop's services still exist (see Loops::~Loops). Idempotent.
  void drop_pending() { shutdown(); }
};

class Loops {
 public:
  explicit Loops(unsigned n) {
    for (unsigned i = 0; i < n; ++i) m_loops.push_back(std::make_unique<Loop>());
  }
  Loops(const Loops&) = delete;
  Loops& operator=(const Loops&) = delete;
  // A coroutine destroyed with one loop may own objects of another (a fill
  // on loop A holds wake-up timers of followers on loop B, a pooled socket
  // may belong to any loop). Destroying the loops one by one would leave
  // such objects pointing into a destroyed loop, so first every loop drops
  // its pending work while all exist. Those destructors can post to a loop
  // that already dropped its work (a wake-up, a semaphore hand-over); the
  // second round drops what they posted, which owns nothing that posts.
  // REQUIRES: no thread runs a loop. Idempotent.
  void drop_pending() {
    for (int round = 0; round < 2; ++round) {
      for (auto& loop : m_loops) loop->drop_pending();
    }
  }
  ~Loops() { drop_pending(); }

  Loop& operator[](std::size_t i) { return *m_loops[i]; }
  // Loops [begin, end).
  std::vector<net::io_context*> range(std::size_t begin, std::size_t end) {
    std::vector<net::io_context*> out;
    for (std::size_t i = begin; i < end; ++i) out.push_back(m_loops[i].get());
    return out;
  }

  // Runs every loop on its own thread (loop 0 on the caller's) until stop().
  void run() {
    std::vector<net::executor_work_guard<net::io_context::executor_type>> busy;
    for (auto& loop : m_loops) busy.push_back(net::make_work_guard(*loop));
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < m_loops.size(); ++i) threads.emplace_back([loop = m_loops[i].get()] { loop->run(); });
    m_loops[0]->run();
    for (auto& t : threads) t.join();
  }
  void stop() {
    for (auto& loop : m_loops) loop->stop();
  }

 private:
  std::vector<std::unique_ptr<Loop>> m_loops;
};

// After SIGINT/SIGTERM: drains the connections, then gives GCS uploads in
// flight or queued what is left of `grace` (a blob not uploaded stays on this
// replica's disk only). A free coroutine: its frame holds its arguments,
// where a lambda's would refer to a closure gone by the time it runs.
net::awaitable<void> shut_down(http::Server& server, storage::TieredBlobStore* tiered, std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  co_await server.shutdown(grace);
  if (tiered == nullptr) co_return;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (!co_await tiered->idle(std::max(left, std::chrono::milliseconds(0)))) {
    spdlog::warn("gcs uploads still running at the end of the shutdown grace: left to other replicas");
  }
}

Stores make_stores(const config::Config& cfg, net::io_context& io, net::thread_pool& blocking,
                   const std::string& version, const std::vector<std::string>& env) {
  Stores out{storage::make_disk_blob_store({cfg.cache_dir, cfg.max_cache_size}, blocking),
             storage::make_disk_metadata_index(cfg.cache_dir / "index"),
             storage::make_disk_document_store(cfg.cache_dir / "docs")};
  if (cfg.gcs_bucket.empty()) return out;

  storage::GcsOptions gcs;
  gcs.bucket = cfg.gcs_bucket;
  gcs.prefix = cfg.gcs_prefix;
  gcs.endpoint = cfg.gcs_endpoint;
  if (cfg.gcs_credentials == "none") {
    gcs.credentials = storage::GcsCredentials::none;
  } else {
    gcs.credentials_file = cfg.gcs_credentials;  // "automatic" picks the key file when one is given
  }
  // Unused by the tiers (uploads read L1 directly), but the store needs one.
  gcs.staging_dir = cfg.cache_dir / "gcs-staging";
  gcs.http = upstream::ClientOptions::from_environment(env);
  gcs.http.user_agent = "hubcache/" + version;
  std::shared_ptr<storage::GcsBlobStore> l2 = storage::make_gcs_blob_store(gcs, blocking);

  // One breaker for blobs and metadata: an outage is noticed once.
  auto breaker = std::make_shared<storage::GcsBreaker>(k_gcs_cooldown);
  storage::TieredOptions tiers;
  tiers.breaker = breaker;
  tiers.promote = cfg.cache_dir_given ? storage::Promote::yes : storage::Promote::no;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  tiers.replica_id = std::string(host) + "/" + std::to_string(::getpid());
  tiers.leases = cfg.gcs_lease_wait.count() > 0;
  tiers.lease_wait = cfg.gcs_lease_wait;
  spdlog::info("blob store: {} GCS bucket {}", cfg.cache_dir_given ? "disk L1 in front of" : "disk only staging for",
               cfg.gcs_bucket);
  auto tiered = storage::make_tiered_blob_store(std::move(out.blobs), l2, tiers, io.get_executor());
  out.tiered = tiered.get();
  out.blobs = std::move(tiered);
  out.index = storage::make_gcs_mirrored_index(std::move(out.index), l2, breaker, {}, io.get_executor(), blocking);
  out.docs = storage::make_gcs_mirrored_documents(std::move(out.docs), l2, breaker, {}, io.get_executor(), blocking);
  return out;
}

}  // namespace

int run(const config::Config& cfg, const std::string& version, const std::vector<std::string>& env) {
  setup_logging(cfg.log_level);
  std::signal(SIGPIPE, SIG_IGN);  // a vanished client is an error code, not a signal

  const unsigned threads = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  // A fill's thread spends about one CPU-second per GiB receiving and writing
  // (hashing runs on the blocking pool): one fill thread per four I/O
  // threads keeps up with several cold pulls at once.
  const unsigned fill_threads = std::max(1u, threads / 4);

  auto upstream_url = upstream::Url::parse(cfg.upstream);
  if (!upstream_url) throw std::runtime_error("upstream: cannot parse " + cfg.upstream);

  // Declaration order is teardown order, reversed. The blocking pool and the
  // stores outlive the loops' pending coroutines (fill writers release space
  // in the store and post clean-up work to the pool when destroyed); `loops`
  // drops those coroutines before anything declared earlier goes. GCS and
  // background uploads run on loop 0.
  net::thread_pool blocking(k_blocking_threads);
  Stores stores;  // declared before the loops, built after them: GCS needs loop 0
  Loops loops(threads + fill_threads);  // I/O loops first, then the fill loops
  stores = make_stores(cfg, loops[0], blocking, version, env);

  // Corporate proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl reads them.
  upstream::ClientOptions client_options = upstream::ClientOptions::from_environment(env);
  client_options.connect_timeout = cfg.upstream_timeout;
  client_options.io_timeout = cfg.upstream_timeout;
  // A relayed commit: the Hub may take minutes (docs/configuration.md).
  client_options.unsafe_answer_timeout = std::chrono::minutes(10);
  client_options.extra_ca_file = cfg.upstream_ca_file;
  client_options.user_agent = "hubcache/" + version;
  auto client = upstream::make_http_client(client_options);

  hub::ServiceOptions service_options;
  service_options.upstream = *upstream_url;
  service_options.public_url = cfg.public_url;
  service_options.policy.public_ttl = cfg.public_ttl;
  service_options.policy.revision_ttl = cfg.revision_ttl;
  service_options.policy.metadata_ttl = cfg.metadata_ttl;
  service_options.policy.stale_while_revalidate = cfg.stale_while_revalidate;
  service_options.policy.negative_ttl = cfg.negative_ttl;
  service_options.policy.offline = cfg.offline;
  service_options.policy.read_only = cfg.read_only;
  // A client waits for a stalled fill a little longer than the fill itself
  // waits for upstream, so the fill's own error is what the client sees.
  service_options.fill_wait_timeout = cfg.upstream_timeout * 2;
  service_options.fill.chunk_size = cfg.fill_chunk_size;
  service_options.fill.parallelism = cfg.fill_parallelism;
  service_options.fill.stall_timeout = cfg.fill_stall_timeout;  // the upstream client caps it at its io_timeout
  service_options.fill.max_fills = cfg.max_fills;
  service_options.fill.connections_per_host = cfg.upstream_connections_per_host;
  service_options.fill.abandon_above = cfg.abandon_fill_above;
  hub::ServiceDeps service_deps{client, stores.blobs.get(), stores.index.get(), stores.docs.get(), &blocking, {}};
  for (net::io_context* loop : loops.range(threads, threads + fill_threads)) {
    service_deps.fill_loops.push_back(loop->get_executor());
  }
  auto service = hub::make_hub_service(service_options, std::move(service_deps));

  http::ServerOptions server_options;
  server_options.host = cfg.listen_host;
  server_options.port = cfg.listen_port;
  server_options.io_timeout = cfg.client_timeout;
  http::Server server(
      loops[0], server_options, [&service](http::Exchange& ex) -> net::awaitable<void> { return service->handle(ex); },
      loops.range(0, threads));
  const auto endpoint = server.listen();
  server.start();

  net::signal_set signals(loops[0], SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {} received: draining connections (up to {} ms)", sig, cfg.shutdown_grace.count());
    net::co_spawn(loops[0], shut_down(server, stores.tiered, cfg.shutdown_grace),
                  [&](std::exception_ptr) { loops.stop(); });
  });

  const auto address = endpoint.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  spdlog::info("hubcache {} serving {} from {} (cache limit {} bytes; threads: {} I/O, {} fill)", version,
               cfg.upstream, cfg.cache_dir.string(), cfg.max_cache_size, threads, fill_threads);
  std::cout << "hubcache listening on http://" << host << ":" << endpoint.port() << std::endl;

  loops.run();
  // Let queued disk work finish while the loops exist to take its
  // completions; what is left is dropped with the loops' pending work.
  blocking.join();
  // Drop the suspended coroutines now, then the stores: pooled GCS
  // connections are sockets of the loops and must close before the loops
  // go. The service and the upstream client (declared after the loops) go
  // before them too.
  loops.drop_pending();
  stores = Stores{};
  spdlog::info("hubcache stopped");
  return 0;
}

}  // namespace hubcache::app
