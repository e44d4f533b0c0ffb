// The two-tier BlobStore. Contract: tiered_blob_store.hpp.
//
// Shared state (Tiers) is owned by a shared_ptr that every background job
// holds, so uploads, lease renewals and tee commits may outlive the store.
#include <hubcache/storage/tiered_blob_store.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

namespace hubcache::storage {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::int64_t unix_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

net::awaitable<void> sleep_for(milliseconds d) {
  net::steady_timer timer(co_await net::this_coro::executor, d);
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
}

constexpr milliseconds k_default_cooldown{30'000};

struct Counters {
  std::atomic<std::uint64_t> l2_hits{0}, l2_errors{0}, uploads{0}, uploads_failed{0}, uploads_dropped{0},
      uploads_retried{0}, promoted{0}, lease_waits{0}, l2_corrupt{0};
};

// A lease this replica holds on one blob: renewed on its own strand until
// released.
struct Lease {
  Lease(net::any_io_executor ex, std::string object_name, std::int64_t gen)
      : strand(net::make_strand(ex)), timer(strand), name(std::move(object_name)), generation(gen) {}
  net::strand<net::any_io_executor> strand;
  net::steady_timer timer;                // on strand
  const std::string name;
  std::int64_t generation;                // on strand
  bool released = false;                  // on strand
};
using LeasePtr = std::shared_ptr<Lease>;

std::string lease_body(const std::string& holder, milliseconds ttl) {
  return nlohmann::json{{"holder", holder}, {"expires_unix_ms", unix_ms() + ttl.count()}}.dump();
}

// An upload waiting in the queue, or remembered for a retry.
struct Upload {
  core::Sha256 key;
  LeasePtr lease;         // released after the upload, if any
  unsigned failures = 0;  // uploads of it that failed so far
};

// A blob whose upload failed this often (each time after every
// GcsRetryPolicy attempt) is given up: something about it, not GCS, is wrong.
constexpr unsigned k_max_upload_failures = 8;

class Tiers : public std::enable_shared_from_this<Tiers> {
 public:
  Tiers(std::unique_ptr<BlobStore> l1_store, std::shared_ptr<GcsBlobStore> l2_store, TieredOptions opts,
        net::any_io_executor ex)
      : l1(std::move(l1_store)),
        l2(std::move(l2_store)),
        options(std::move(opts)),
        executor(std::move(ex)),
        breaker(options.breaker ? options.breaker : std::make_shared<GcsBreaker>(k_default_cooldown)) {}

  bool l2_usable() const { return breaker->usable(); }
  void l2_failed(const std::string& what, std::error_code ec) {
    ++counters.l2_errors;
    breaker->failed(what, ec);
  }

  // ---- background uploads ----
  void enqueue_upload(const core::Sha256& key, LeasePtr lease) {
    if (!push_upload({key, std::move(lease), 0})) retry_later(key, 0, "the upload queue is full");
    retry_pass(false);
  }

  // Queues `job` and starts a worker if fewer than upload_workers run; false
  // (the lease released) when the queue is full.
  bool push_upload(Upload job) {
    bool start_worker = false;
    {
      std::lock_guard lock(m_mutex);
      if (m_queue.size() >= options.upload_queue) {
        release_later(std::move(job.lease));
        return false;
      }
      m_queue.push_back(std::move(job));
      if (m_workers < std::max(1u, options.upload_workers)) {
        ++m_workers;
        start_worker = true;
      }
    }
    if (start_worker) net::co_spawn(executor, upload_worker(shared_from_this()), net::detached);
    return true;
  }

  // Remembers `key` (after `failures` failed uploads) for the next retry pass.
  void retry_later(const core::Sha256& key, unsigned failures, std::string_view why) {
    std::lock_guard lock(m_mutex);
    if (std::any_of(m_unsent.begin(), m_unsent.end(), [&](const Upload& u) { return u.key == key; })) return;
    if (failures >= k_max_upload_failures || m_unsent.size() >= options.upload_queue) {
      ++counters.uploads_dropped;
      spdlog::warn("gcs: giving up the upload of {} ({}; {} failed, {} blobs wait for a retry)", key.hex(), why,
                   failures, m_unsent.size());
      return;
    }
    m_unsent.push_back({key, nullptr, failures});
    m_have_unsent = true;
    spdlog::debug("gcs: upload of {} to be tried again ({})", key.hex(), why);
  }

  // A retry pass queues every remembered blob again. It runs when an upload
  // succeeds (GCS works again), and when a blob is opened or a new one queued
  // and upload_retry has passed since the last pass; never while the breaker
  // is open. No timer of its own: nothing runs while the replica is idle (its
  // disk still has the blobs; a replica that misses one fills it itself).
  void retry_pass(bool gcs_works) {
    if (!m_have_unsent.load(std::memory_order_relaxed) || !l2_usable()) return;
    std::vector<Upload> jobs;
    {
      std::lock_guard lock(m_mutex);
      const auto now = Clock::now();
      if (m_unsent.empty() || (!gcs_works && now - m_last_pass < options.upload_retry)) return;
      m_last_pass = now;
      jobs.swap(m_unsent);
      m_have_unsent = false;
    }
    spdlog::info("gcs: trying {} earlier uploads again", jobs.size());
    for (auto& job : jobs) {
      const auto key = job.key;
      const unsigned failures = job.failures;
      if (push_upload(std::move(job))) {
        ++counters.uploads_retried;
      } else {
        retry_later(key, failures, "the upload queue is full");
      }
    }
  }

  static net::awaitable<void> upload_worker(std::shared_ptr<Tiers> self) {
    while (true) {
      Upload job;
      {
        std::lock_guard lock(self->m_mutex);
        if (self->m_queue.empty()) {
          --self->m_workers;
          co_return;
        }
        job = std::move(self->m_queue.front());
        self->m_queue.pop_front();
      }
      co_await self->upload_one(job.key, job.failures);
      if (job.lease) co_await self->release(job.lease);
    }
  }

  net::awaitable<void> upload_one(const core::Sha256& key, unsigned failures) {
    if (!l2_usable()) {
      // Remembered without trying: GCS failed moments ago, and an attempt
      // would only spend its retry budget (seconds per blob, which a SIGTERM
      // would otherwise wait for).
      retry_later(key, failures, "GCS is unavailable");
      co_return;
    }
    auto reader = co_await l1->open(key);  // pins it while it is read
    if (!reader || !*reader) {
      ++counters.uploads_failed;
      spdlog::warn("gcs upload of {} skipped: no longer on disk", key.hex());
      co_return;
    }
    const auto started = Clock::now();
    auto uploaded = co_await l2->upload(key, ***reader);
    if (!uploaded && uploaded.error() == errc::integrity_mismatch) {
      // The disk's bytes are not the blob's any more (changed since they were
      // verified): not GCS's fault, and no retry will fix them.
      ++counters.uploads_failed;
      ++counters.uploads_dropped;
      spdlog::error("gcs: not uploading {}: its bytes on disk no longer match its sha256", key.hex());
      co_return;
    }
    if (!uploaded) {
      ++counters.uploads_failed;
      l2_failed("upload " + key.hex(), uploaded.error());
      retry_later(key, failures + 1, uploaded.error().message());
      co_return;
    }
    ++counters.uploads;
    breaker->succeeded();
    retry_pass(true);
    spdlog::info("gcs: uploaded {} ({} bytes, {} ms)", key.hex(), (**reader)->size(),
                 std::chrono::duration_cast<milliseconds>(Clock::now() - started).count());
  }

  // ---- leases ----
  static std::string lease_name(const core::Sha256& key) { return "leases/" + key.hex(); }

  // Our lease if we got it; nullopt when another live holder has it.
  net::awaitable<result<std::optional<LeasePtr>>> try_acquire(const core::Sha256& key) {
    const std::string name = lease_name(key);
    auto current = co_await l2->read_object(name);
    if (!current) co_return current.error();
    std::optional<std::int64_t> if_generation = 0;
    if (*current) {
      const auto doc = nlohmann::json::parse((*current)->data, nullptr, false);
      const std::int64_t expires =
          doc.is_object() && doc.contains("expires_unix_ms") && doc["expires_unix_ms"].is_number_integer()
              ? doc["expires_unix_ms"].get<std::int64_t>()
              : 0;  // unreadable: treat as expired
      if (expires > unix_ms()) co_return std::optional<LeasePtr>();
      spdlog::info("gcs: taking over the expired lease on {} (holder {})", key.hex(),
                   doc.is_object() ? doc.value("holder", std::string("?")) : std::string("?"));
      if_generation = (*current)->generation;
    }
    std::string body = lease_body(options.replica_id, options.lease_ttl);
    auto written = co_await l2->write_object(name, std::move(body), if_generation);
    if (!written) co_return written.error();
    if (!*written) co_return std::optional<LeasePtr>();  // someone else was faster
    auto lease = std::make_shared<Lease>(executor, name, **written);
    net::co_spawn(lease->strand, renew(shared_from_this(), lease), net::detached);
    co_return std::optional<LeasePtr>(std::move(lease));
  }

  static net::awaitable<void> renew(std::shared_ptr<Tiers> self, LeasePtr lease) {
    const milliseconds period = std::max(milliseconds(1), self->options.lease_ttl / 3);
    while (!lease->released) {
      lease->timer.expires_after(period);
      co_await lease->timer.async_wait(net::as_tuple(net::use_awaitable));
      if (lease->released) break;
      std::string body = lease_body(self->options.replica_id, self->options.lease_ttl);
      auto written = co_await self->l2->write_object(lease->name, std::move(body), lease->generation);
      if (written && *written) {
        lease->generation = **written;
      } else if (written) {
        spdlog::warn("gcs: lost the lease {} to another replica", lease->name);
        break;
      }  // a failed renewal is retried next period; the lease may expire meanwhile
    }
  }

  // Stops renewing and deletes the lease object; runs on the lease's strand.
  net::awaitable<void> release(LeasePtr lease) {
    auto on_strand = release_on_strand(shared_from_this(), lease);
    co_await net::co_spawn(lease->strand, std::move(on_strand), net::use_awaitable);
  }
  static net::awaitable<void> release_on_strand(std::shared_ptr<Tiers> self, LeasePtr lease) {
    if (lease->released) co_return;
    lease->released = true;
    lease->timer.cancel();
    if (!self->l2_usable()) co_return;  // GCS is failing: the lease expires by itself
    auto deleted = co_await self->l2->delete_object(lease->name, lease->generation);
    (void)deleted;  // a lease left behind expires by itself
  }

  // Detached release (from destructors).
  void release_later(LeasePtr lease) {
    if (!lease) return;
    auto self = shared_from_this();
    auto job = [](std::shared_ptr<Tiers> tiers, LeasePtr l) -> net::awaitable<void> { co_await tiers->release(l); };
    net::co_spawn(executor, job(std::move(self), std::move(lease)), net::detached);
  }

  // ---- idle tracking ----
  void busy(int delta) { m_busy.fetch_add(delta); }
  bool idle() {
    std::lock_guard lock(m_mutex);
    return m_queue.empty() && m_workers == 0 && m_busy.load() == 0;
  }

  const std::unique_ptr<BlobStore> l1;
  const std::shared_ptr<GcsBlobStore> l2;
  const TieredOptions options;
  const net::any_io_executor executor;
  const std::shared_ptr<GcsBreaker> breaker;
  Counters counters;

 private:
  std::atomic<int> m_busy{0};  // tee commits in flight
  std::mutex m_mutex;
  std::deque<Upload> m_queue;  // guarded by m_mutex
  unsigned m_workers = 0;      // guarded by m_mutex
  // Blobs to upload again at the next retry pass (at most upload_queue).
  std::vector<Upload> m_unsent;        // guarded by m_mutex
  std::atomic<bool> m_have_unsent{false};  // !m_unsent.empty(), read without the lock
  Clock::time_point m_last_pass = Clock::now();  // guarded by m_mutex
};

// An L1 writer whose commit queues the upload (and hands over the lease).
class TieredWriter final : public BlobWriter {
 public:
  TieredWriter(std::shared_ptr<Tiers> tiers, BlobWriterPtr inner, LeasePtr lease)
      : m_tiers(std::move(tiers)), m_inner(std::move(inner)), m_lease(std::move(lease)) {}
  ~TieredWriter() override { m_tiers->release_later(std::move(m_lease)); }
  TieredWriter(const TieredWriter&) = delete;
  TieredWriter& operator=(const TieredWriter&) = delete;

  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data) override {
    return m_inner->write_at(offset, data);
  }
  net::awaitable<result<void>> append(std::span<const std::byte> data) override { return m_inner->append(data); }
  std::uint64_t written() const noexcept override { return m_inner->written(); }
  result<BlobReaderPtr> open_reader() override { return m_inner->open_reader(); }
  net::awaitable<result<core::Sha256>> verify() override { return m_inner->verify(); }
  net::awaitable<result<core::Sha256>> commit() override {
    auto key = co_await m_inner->commit();
    if (key && !m_queued) {
      m_queued = true;
      m_tiers->enqueue_upload(*key, std::move(m_lease));  // the lease is released after the upload
    }
    co_return key;
  }

 private:
  std::shared_ptr<Tiers> m_tiers;
  BlobWriterPtr m_inner;
  LeasePtr m_lease;
  bool m_queued = false;
};

// An L2 reader that reports failures to the breaker and, when `promote`,
// copies what a sequential reader reads into an L1 writer and commits it in
// the background once every byte went through. The writer is created by the
// first read at offset 0: a HEAD, a reader dropped unread or a range from the
// middle reserve no disk space (which could evict other blobs) for a copy that
// would be thrown away.
class TeeReader final : public BlobReader {
 public:
  TeeReader(std::shared_ptr<Tiers> tiers, BlobReaderPtr source, const core::Sha256& key, bool promote)
      : m_tiers(std::move(tiers)), m_source(std::move(source)), m_key(key), m_promote(promote) {}

  std::uint64_t size() const override { return m_source->size(); }
  int native_handle() const noexcept override { return -1; }

  net::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    auto n = co_await m_source->read_at(offset, buf);
    if (!n) m_tiers->l2_failed("read", n.error());  // the client's retry then goes upstream
    if (!n) co_return n;
    if (std::exchange(m_promote, false)) {
      if (offset != 0) co_return n;  // this reader will not see every byte
      const ExpectedContent expected{size(), m_key, std::nullopt};
      auto created = co_await m_tiers->l1->create(expected);
      if (!created) co_return n;  // no room on disk: served from GCS only
      m_copy = std::move(*created);
    }
    if (!m_copy) co_return n;
    const std::uint64_t have = m_copy->written();
    if (offset > have) {
      m_copy.reset();  // a gap: this reader will not see every byte
      co_return n;
    }
    const std::uint64_t end = offset + *n;
    if (end > have) {
      auto appended = co_await m_copy->append(buf.subspan(static_cast<std::size_t>(have - offset),
                                                          static_cast<std::size_t>(end - have)));
      if (!appended) {
        m_copy.reset();
        co_return n;
      }
    }
    if (m_copy->written() == size()) {
      m_tiers->busy(1);
      net::co_spawn(m_tiers->executor, commit_copy(m_tiers, std::move(m_copy), m_key), net::detached);
    }
    co_return n;
  }

 private:
  static net::awaitable<void> commit_copy(std::shared_ptr<Tiers> tiers, BlobWriterPtr copy, core::Sha256 key) {
    auto committed = co_await copy->commit();
    copy.reset();
    if (committed) {
      ++tiers->counters.promoted;
    } else if (committed.error() == errc::integrity_mismatch) {
      // The bucket holds other bytes under this name (a disk that rotted
      // before its upload, say). Removed, no replica serves them again: the
      // next miss pulls the file from upstream and uploads it anew.
      ++tiers->counters.l2_corrupt;
      auto removed = co_await tiers->l2->remove(key);
      spdlog::error("gcs: blob {} in the bucket does not match its sha256: {}", key.hex(),
                    removed ? "deleted" : "could not delete it: " + removed.error().message());
    }
    tiers->busy(-1);
  }

  std::shared_ptr<Tiers> m_tiers;
  BlobReaderPtr m_source;
  const core::Sha256 m_key;
  bool m_promote;        // the copy is still to be started
  BlobWriterPtr m_copy;  // null before it started, once it was given up or handed to commit
};

class TieredStore final : public TieredBlobStore {
 public:
  explicit TieredStore(std::shared_ptr<Tiers> tiers) : m_tiers(std::move(tiers)) {}

  net::awaitable<result<std::optional<BlobReaderPtr>>> open(const core::Sha256& key) override {
    m_tiers->retry_pass(false);
    auto local = co_await m_tiers->l1->open(key);
    if (!local || *local || !m_tiers->l2_usable()) co_return std::move(local);
    auto remote = co_await m_tiers->l2->open(key);
    if (!remote) {
      m_tiers->l2_failed("open " + key.hex(), remote.error());
      co_return std::optional<BlobReaderPtr>();
    }
    if (!*remote) co_return std::move(remote);
    ++m_tiers->counters.l2_hits;
    BlobReaderPtr tee = std::make_unique<TeeReader>(m_tiers, std::move(**remote), key,
                                                    m_tiers->options.promote == Promote::yes);
    co_return std::optional<BlobReaderPtr>(std::move(tee));
  }

  net::awaitable<result<BlobWriterPtr>> create(const ExpectedContent& expected) override {
    LeasePtr lease;
    if (expected.sha256 && m_tiers->options.leases) {
      auto waited = co_await lease_or_wait(*expected.sha256);
      if (!waited) co_return waited.error();  // errc::blob_available
      lease = std::move(*waited);
    }
    auto inner = co_await m_tiers->l1->create(expected);
    if (!inner) {
      m_tiers->release_later(std::move(lease));
      co_return inner.error();
    }
    BlobWriterPtr writer = std::make_unique<TieredWriter>(m_tiers, std::move(*inner), std::move(lease));
    co_return writer;
  }

  StoreUsage usage() const override { return m_tiers->l1->usage(); }

  TieredStats stats() const override {
    const Counters& c = m_tiers->counters;
    return {c.l2_hits.load(), c.l2_errors.load(), c.uploads.load(), c.uploads_failed.load(),
            c.uploads_dropped.load(), c.uploads_retried.load(), c.promoted.load(), c.lease_waits.load(),
            c.l2_corrupt.load()};
  }

  net::awaitable<bool> idle(milliseconds limit) override {
    const auto start = Clock::now();
    while (!m_tiers->idle()) {
      // In milliseconds: limit may be milliseconds::max(), beyond what the
      // clock's nanoseconds hold.
      if (std::chrono::duration_cast<milliseconds>(Clock::now() - start) >= limit) co_return false;
      co_await sleep_for(milliseconds(20));
    }
    co_return true;
  }

 private:
  // Our lease (null when L2 is unusable or we waited long enough), or
  // errc::blob_available when another replica stored the blob meanwhile.
  net::awaitable<result<LeasePtr>> lease_or_wait(const core::Sha256& key) {
    const auto deadline = Clock::now() + m_tiers->options.lease_wait;
    milliseconds backoff(100);
    bool counted = false;
    while (m_tiers->l2_usable()) {
      auto present = co_await m_tiers->l2->stat(key);
      if (!present) {
        m_tiers->l2_failed("stat " + key.hex(), present.error());
        break;
      }
      if (*present) co_return make_error_code(errc::blob_available);
      auto lease = co_await m_tiers->try_acquire(key);
      if (!lease) {
        m_tiers->l2_failed("lease " + key.hex(), lease.error());
        break;
      }
      if (*lease) co_return std::move(**lease);
      if (!std::exchange(counted, true)) {
        ++m_tiers->counters.lease_waits;
        spdlog::info("gcs: another replica is filling {}; waiting for it", key.hex());
      }
      if (Clock::now() + backoff > deadline) {
        spdlog::warn("gcs: waited {} ms for another replica to store {}; filling it here too",
                     m_tiers->options.lease_wait.count(), key.hex());
        break;
      }
      co_await sleep_for(backoff);
      backoff = std::min(backoff * 2, milliseconds(2'000));
    }
    co_return LeasePtr();
  }

  std::shared_ptr<Tiers> m_tiers;
};

}  // namespace

std::unique_ptr<TieredBlobStore> make_tiered_blob_store(std::unique_ptr<BlobStore> l1,
                                                        std::shared_ptr<GcsBlobStore> l2, const TieredOptions& options,
                                                        net::any_io_executor executor) {
  auto tiers = std::make_shared<Tiers>(std::move(l1), std::move(l2), options, std::move(executor));
  return std::make_unique<TieredStore>(std::move(tiers));
}

}  // namespace hubcache::storage
