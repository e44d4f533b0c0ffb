// FillEngine: moves a blob from upstream into the store once, however many
// clients want it, and lets every one of them read it while it arrives.
//
// A fill of a large file downloads it in chunks over several ranged
// requests at once: CDNs cap what one connection gets, so parallel ranges are
// what makes a cold pull fast. The first chunks are smaller, so that the
// workers finish in turn and the bytes readable from the start advance
// steadily; once no chunk is left to start, an idle worker takes over the
// back half of the running chunk that will take longest at its pace, so
// every connection works until the end. Each chunk is retried with backoff
// and resumed where it stopped; an expired or refused signed URL (403/410)
// is re-resolved through the Hub (FillSource::resolve_again) and the fill
// goes on. An upstream that ignores Range (answers 200) is read as one
// stream. Small files are one plain GET.
//
// Verification: the store hashes bytes in file order as the written prefix
// grows (storage::BlobWriter::write_at) and verify() checks the digest; the
// file's last byte is held back from every client until then, so a client
// never receives a complete wrong file. The durable commit (fsync, rename)
// follows without holding anyone back. Bytes of a range that ends before the last byte are served
// as they arrive (as from the CDN itself); the blob is only ever committed
// verified.
//
// Scheduling: at most FillOptions::max_fills fills transfer at once (more
// queue), and chunk requests to one upstream host are bounded by
// FillOptions::connections_per_host (more queue). A client of a Range asks
// for its chunk to be fetched next (Fill::prefer). A fill does not depend on
// any client: it keeps going when they leave, unless more than
// FillOptions::abandon_above bytes are left, then it stops and its staging
// data is dropped.
//
// Thread safety: FillEngine and Fill are safe from any thread. Each fill
// runs on the executor its leader gave (the leader's connection's event
// loop), so its chunk requests, the leader's stream and the writes to the
// staging file share one thread; clients on other loops follow it through
// the Watermark.
#pragma once

#include "hub_client.hpp"

#include <hubcache/hub/service.hpp>

#include <hubcache/flight/registry.hpp>
#include <hubcache/flight/semaphore.hpp>
#include <hubcache/flight/watermark.hpp>
#include <hubcache/storage/blob_store.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace hubcache::hub {

// Where a fill gets its bytes, and what it tells its owner.
struct FillSource {
  FileMeta meta;               // size, digest, content URL
  std::string authorization;   // the leader's, for content on the Hub and for re-resolving
  // Asks the Hub again for a fresh content URL (the signed CDN URL expired).
  std::function<net::awaitable<result<upstream::Url>>()> resolve_again;
  // Runs once the blob is verified (or found stored by another replica),
  // before the last byte goes out, and must not block: makes the index
  // record findable (MetadataIndex::remember). So a client's next request,
  // made the moment it has its file, finds it: served from the fill until
  // the commit is done (FillEngine::join_if_verified), a hit after.
  std::function<void(core::Sha256)> verified;
  // Runs once the blob is committed (or found stored): the durable index
  // record, which no client waits for.
  std::function<net::awaitable<void>(core::Sha256)> committed;
};

class Fill {
 public:
  Fill(std::uint64_t size, std::string key) : size(size), key(std::move(key)) {}
  const std::uint64_t size;
  const std::string key;  // "<upstream etag>/<size>"
  flight::Watermark wm;

  // A reader of the fill's bytes: the staging file while the fill runs, the
  // committed blob afterwards. Read only what `wm` says is available.
  net::awaitable<result<storage::BlobReaderPtr>> open_reader(storage::BlobStore& store,
                                                             std::chrono::milliseconds wait);
  // Asks for the chunk holding `offset` to be fetched before others.
  void prefer(std::uint64_t offset);
  // False while the fill waits for its turn (FillOptions::max_fills): no
  // progress then is not a stall.
  bool running() const noexcept { return m_running.load(); }

 private:
  friend class FillEngine;
  friend class FillRun;
  std::mutex m_mutex;
  storage::BlobWriter* m_writer = nullptr;  // guarded by m_mutex; set from creation until the commit is done
  std::optional<core::Sha256> m_committed;  // guarded by m_mutex
  unsigned m_clients = 0;                   // guarded by m_mutex
  bool m_stopped = false;                   // guarded by m_mutex: abandoned, joins must start a new fill
  std::vector<std::uint64_t> m_preferred;   // guarded by m_mutex: offsets asked for by Range clients
  std::uint64_t m_received = 0;             // guarded by m_mutex: bytes written so far
  std::atomic<bool> m_running{false};
};

// Held by shared_ptr: fills and memberships keep it alive, so a suspended
// fill coroutine may outlive the service that made it. Its FillSource
// callbacks may still refer to the service, though: the application destroys
// such coroutines before the service (io_context drop_pending), and any
// other owner must too.
class FillEngine : public std::enable_shared_from_this<FillEngine> {
 public:
  // Fills run on `loops` in turn; with none, on the executor join() gets.
  FillEngine(FillOptions options, HubClient& hub, storage::BlobStore& store,
             std::vector<net::any_io_executor> loops = {});

  // A client's membership in a fill; leaving may stop an abandoned fill.
  class Membership {
   public:
    Membership() = default;
    Membership(std::shared_ptr<FillEngine> engine, std::shared_ptr<Fill> fill)
        : m_engine(std::move(engine)), m_fill(std::move(fill)) {}
    Membership(Membership&& o) noexcept = default;
    Membership& operator=(Membership&&) = delete;
    ~Membership();
    Fill& fill() const { return *m_fill; }

   private:
    std::shared_ptr<FillEngine> m_engine;
    std::shared_ptr<Fill> m_fill;
  };

  // Joins the live fill of this content or starts one (the caller is then
  // its leader: `leader` is set), on the next of the engine's loops or else
  // on `executor`. Counts the caller as a client until the Membership is
  // destroyed. `prefer`: the offset a Range client starts at. REQUIRES:
  // `executor` is a strand or single-threaded.
  Membership join(FillSource source, std::optional<std::uint64_t> prefer, bool& leader,
                  net::any_io_executor executor);
  // Joins the live fill of this content only if it has verified the blob
  // (and is committing it): every byte is readable from it, so a request
  // served from it costs nothing upstream.
  std::optional<Membership> join_if_verified(const FileMeta& meta);

  const FillOptions& options() const noexcept { return m_options; }
  // The FillOptions::connections_per_host bound for `origin` ("scheme://host:port"),
  // for other requests to it that should count too.
  flight::Semaphore& host_slots(const std::string& origin);

 private:
  friend class FillRun;
  void leave(const std::shared_ptr<Fill>& fill);

  const FillOptions m_options;
  const std::vector<net::any_io_executor> m_loops;
  std::atomic<std::size_t> m_next_loop{0};
  HubClient& m_hub;
  storage::BlobStore& m_store;
  flight::FlightRegistry<std::string, Fill> m_fills;  // keyed by Fill::key (content-addressed)
  flight::Semaphore m_fill_slots;
  std::mutex m_hosts_mutex;
  std::map<std::string, std::unique_ptr<flight::Semaphore>> m_hosts;  // guarded by m_hosts_mutex
};

}  // namespace hubcache::hub
