// Metadata mirrored to GCS, and the shared breaker. Contract: gcs_mirror.hpp.
#include <hubcache/storage/gcs_mirror.hpp>

#include <hubcache/util/blocking.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include <mutex>
#include <unordered_map>

namespace hubcache::storage {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

}  // namespace

bool GcsBreaker::usable() const noexcept { return now_ns() >= m_open_until_ns.load(); }

void GcsBreaker::failed(std::string_view what, std::error_code ec) noexcept {
  ++m_failures;
  const auto now = now_ns();
  const auto before = m_open_until_ns.exchange((Clock::now() + m_cooldown).time_since_epoch().count());
  if (before < now) {
    spdlog::warn("gcs unavailable ({}: {}): serving from disk and upstream, trying GCS again in {} ms", what,
                 ec.message(), m_cooldown.count());
  } else {
    spdlog::debug("gcs still unavailable ({}: {})", what, ec.message());
  }
}

void GcsBreaker::succeeded() noexcept { m_open_until_ns.store(0); }

namespace {

// GCS access shared by both mirrors: reads with a negative cache, and
// bounded write-behind.
class Mirror : public std::enable_shared_from_this<Mirror> {
 public:
  Mirror(std::shared_ptr<GcsBlobStore> gcs_store, std::shared_ptr<GcsBreaker> gcs_breaker, MirrorOptions opts,
         net::any_io_executor ex, net::thread_pool& pool)
      : gcs(std::move(gcs_store)),
        breaker(std::move(gcs_breaker)),
        options(opts),
        executor(std::move(ex)),
        blocking(pool) {}

  // The object's content; nullopt when absent, recently absent, or GCS failed.
  net::awaitable<std::optional<std::string>> fetch(std::string name) {
    if (!breaker->usable() || recently_missing(name)) co_return std::nullopt;
    auto got = co_await gcs->read_object(name);
    if (!got) {
      breaker->failed("read " + name, got.error());
      co_return std::nullopt;
    }
    if (!*got) {
      remember_missing(name);
      co_return std::nullopt;
    }
    co_return std::move((*got)->data);
  }

  // On a local miss: GCS object `name`, decoded by `decode` (nullopt for a
  // malformed or foreign object, logged) and kept locally by `keep` on the
  // blocking pool, so the next lookup is local. nullopt when GCS has nothing.
  template <class T, class Decode, class Keep>
  net::awaitable<std::optional<T>> read_through(std::string name, Decode decode, Keep keep) {
    auto text = co_await fetch(name);
    if (!text) co_return std::nullopt;
    std::optional<T> value = decode(*text);
    if (!value) {
      spdlog::warn("gcs: ignoring the malformed or foreign object {}", name);
      co_return std::nullopt;
    }
    auto job = [keep = std::move(keep), v = *value] { return keep(v); };
    auto kept = co_await util::run_blocking(blocking, std::move(job));
    if (!kept) spdlog::warn("could not keep {} from GCS locally: {}", name, kept.error().message());
    co_return value;
  }

  // Writes the object in the background. Two writes of one entry in flight at
  // once may land in either order: entries are caches that upstream refreshes.
  void push(std::string name, std::string data) {
    forget_missing(name);
    if (m_pending.fetch_add(1) >= k_mirror_max_pending) {
      --m_pending;
      spdlog::warn("gcs: too many metadata writes pending; not mirroring {}", name);
      return;
    }
    net::co_spawn(executor, write(shared_from_this(), std::move(name), std::move(data)), net::detached);
  }

  const std::shared_ptr<GcsBlobStore> gcs;
  const std::shared_ptr<GcsBreaker> breaker;
  const MirrorOptions options;
  const net::any_io_executor executor;
  net::thread_pool& blocking;

 private:
  static net::awaitable<void> write(std::shared_ptr<Mirror> self, std::string name, std::string data) {
    auto written = co_await self->gcs->write_object(name, std::move(data), std::nullopt);
    if (!written) self->breaker->failed("write " + name, written.error());
    --self->m_pending;
  }

  bool recently_missing(const std::string& name) {
    std::lock_guard lock(m_mutex);
    auto it = m_missing.find(name);
    if (it == m_missing.end()) return false;
    if (Clock::now() < it->second) return true;
    m_missing.erase(it);
    return false;
  }
  void remember_missing(const std::string& name) {
    std::lock_guard lock(m_mutex);
    // Bounded: forgetting misses only costs GCS reads.
    if (m_missing.size() >= 100'000) m_missing.clear();
    m_missing[name] = Clock::now() + options.negative_ttl;
  }
  void forget_missing(const std::string& name) {
    std::lock_guard lock(m_mutex);
    m_missing.erase(name);
  }

  std::atomic<std::size_t> m_pending{0};
  std::mutex m_mutex;
  std::unordered_map<std::string, Clock::time_point> m_missing;  // guarded by m_mutex
};

class MirroredIndex final : public MetadataIndex {
 public:
  MirroredIndex(std::unique_ptr<MetadataIndex> local, std::shared_ptr<Mirror> mirror)
      : m_local(std::move(local)), m_mirror(std::move(mirror)) {}

  net::awaitable<result<std::optional<FileRecord>>> get(FileKey key) override {
    auto local = co_await m_local->get(key);
    if (!local || *local) co_return std::move(local);
    // Names and callables are built before the co_await, never as temporaries inside it.
    std::string name = "index/files/" + index_record_id(key);
    auto decode = [&key](std::string_view text) { return decode_index_record(key, text); };
    auto keep = [index = m_local.get(), key](const FileRecord& rec) { return index->put(key, rec); };
    auto record = co_await m_mirror->read_through<FileRecord>(std::move(name), decode, keep);
    if (!record) co_return std::move(local);
    co_return std::move(record);
  }

  result<void> put(const FileKey& key, const FileRecord& record) override {
    auto stored = m_local->put(key, record);
    if (!stored) return stored;
    m_mirror->push("index/files/" + index_record_id(key), encode_index_record(key, record));
    if (!record.etag.empty()) {
      m_mirror->push("index/etags/" + etag_id(record.etag), encode_etag_mapping(record.etag, record.sha256));
    }
    return stored;
  }

  void remember(const FileKey& key, const FileRecord& record) override { m_local->remember(key, record); }

  // Not kept locally on its own (the disk index writes etag mappings only
  // with a record); the service records the file right after a hit.
  net::awaitable<result<std::optional<core::Sha256>>> blob_for_etag(std::string etag) override {
    auto local = co_await m_local->blob_for_etag(etag);
    if (!local || *local) co_return std::move(local);
    std::string name = "index/etags/" + etag_id(etag);
    auto text = co_await m_mirror->fetch(std::move(name));
    if (!text) co_return std::move(local);
    co_return decode_etag_mapping(etag, *text);
  }

 private:
  std::unique_ptr<MetadataIndex> m_local;
  std::shared_ptr<Mirror> m_mirror;
};

class MirroredDocuments final : public DocumentStore {
 public:
  MirroredDocuments(std::unique_ptr<DocumentStore> local, std::shared_ptr<Mirror> mirror)
      : m_local(std::move(local)), m_mirror(std::move(mirror)) {}

  net::awaitable<result<std::optional<std::string>>> get(std::string key) override {
    auto local = co_await m_local->get(key);
    if (!local || *local) co_return std::move(local);
    std::string name = "docs/" + document_id(key);
    auto decode = [&key](std::string_view text) { return decode_document(key, text); };
    auto keep = [docs = m_local.get(), key](const std::string& value) { return docs->put(key, value); };
    auto value = co_await m_mirror->read_through<std::string>(std::move(name), decode, keep);
    if (!value) co_return std::move(local);
    co_return std::move(value);
  }

  result<void> put(std::string_view key, std::string_view value) override {
    auto stored = m_local->put(key, value);
    if (stored) m_mirror->push("docs/" + document_id(key), encode_document(key, value));
    return stored;
  }

 private:
  std::unique_ptr<DocumentStore> m_local;
  std::shared_ptr<Mirror> m_mirror;
};

}  // namespace

std::unique_ptr<MetadataIndex> make_gcs_mirrored_index(std::unique_ptr<MetadataIndex> local,
                                                       std::shared_ptr<GcsBlobStore> gcs,
                                                       std::shared_ptr<GcsBreaker> breaker, const MirrorOptions& options,
                                                       net::any_io_executor executor, net::thread_pool& blocking) {
  auto mirror = std::make_shared<Mirror>(std::move(gcs), std::move(breaker), options, std::move(executor), blocking);
  return std::make_unique<MirroredIndex>(std::move(local), std::move(mirror));
}

std::unique_ptr<DocumentStore> make_gcs_mirrored_documents(std::unique_ptr<DocumentStore> local,
                                                           std::shared_ptr<GcsBlobStore> gcs,
                                                           std::shared_ptr<GcsBreaker> breaker,
                                                           const MirrorOptions& options, net::any_io_executor executor,
                                                           net::thread_pool& blocking) {
  auto mirror = std::make_shared<Mirror>(std::move(gcs), std::move(breaker), options, std::move(executor), blocking);
  return std::make_unique<MirroredDocuments>(std::move(local), std::move(mirror));
}

}  // namespace hubcache::storage
