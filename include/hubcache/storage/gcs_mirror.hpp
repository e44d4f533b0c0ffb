// Metadata shared between replicas through the GCS bucket, and the circuit
// breaker every GCS tier of one process shares.
//
// The mirrors wrap the local MetadataIndex and DocumentStore:
// - put() writes locally (durable when it returns, as before), then the
//   same entry is written to GCS in the background (write-behind: the caller
//   never waits for GCS; at most k_mirror_max_pending writes are pending,
//   more are dropped with a log line, as the next put of the entry repeats it).
// - get() answers from the local store; on a local miss it reads the GCS
//   object and, when found, keeps a local copy (written on the blocking
//   pool). A miss in GCS is remembered for negative_ttl, so a run of new
//   keys does not cost a GCS round trip each.
// - A GCS failure is a miss (logged, and it opens the breaker), never an
//   error: metadata falls back to upstream like the blobs do.
//
// Objects under the prefix (format 1, each holding its own key, checked on
// read):
//   <prefix>index/files/<index_record_id>   encode_index_record
//   <prefix>index/etags/<etag_id>           encode_etag_mapping
//   <prefix>docs/<document_id>              encode_document
//
// Thread safety: as the wrapped interfaces. Background writes run on the
// executor and hold the GCS store alive.
#pragma once

#include <hubcache/storage/document_store.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/metadata_index.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <system_error>

namespace hubcache::storage {

// After a GCS failure, GCS is skipped for `cooldown`, so that every miss
// does not pay GCS's retry budget (about 3 s) during an outage. The first
// failure of an outage is logged as a warning; later ones at debug.
class GcsBreaker {
 public:
  explicit GcsBreaker(std::chrono::milliseconds cooldown) : m_cooldown(cooldown) {}
  bool usable() const noexcept;
  void failed(std::string_view what, std::error_code ec) noexcept;
  void succeeded() noexcept;
  std::uint64_t failures() const noexcept { return m_failures.load(); }

 private:
  const std::chrono::milliseconds m_cooldown;
  std::atomic<std::int64_t> m_open_until_ns{0};  // steady_clock
  std::atomic<std::uint64_t> m_failures{0};
};

struct MirrorOptions {
  // How long "not in GCS" is remembered per key. Short: another replica may
  // write the entry any moment, and a stale miss only costs an upstream
  // request while the Hub is up.
  std::chrono::milliseconds negative_ttl{5'000};
};

// Background GCS writes of one mirror that may be pending at once; each
// holds one small entry in memory.
inline constexpr std::size_t k_mirror_max_pending = 1024;

// REQUIRES: all pointers non-null; `blocking` outlives every background job.
std::unique_ptr<MetadataIndex> make_gcs_mirrored_index(std::unique_ptr<MetadataIndex> local,
                                                       std::shared_ptr<GcsBlobStore> gcs,
                                                       std::shared_ptr<GcsBreaker> breaker, const MirrorOptions& options,
                                                       net::any_io_executor executor, net::thread_pool& blocking);
std::unique_ptr<DocumentStore> make_gcs_mirrored_documents(std::unique_ptr<DocumentStore> local,
                                                           std::shared_ptr<GcsBlobStore> gcs,
                                                           std::shared_ptr<GcsBreaker> breaker,
                                                           const MirrorOptions& options, net::any_io_executor executor,
                                                           net::thread_pool& blocking);

}  // namespace hubcache::storage
