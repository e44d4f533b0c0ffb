// A BlobStore of two tiers: a local store (L1, the disk store) in front of
// a GCS bucket shared by many replicas (L2). docs/gcs.md explains the
// behaviour for operators.
//
// - open(): L1, then L2. An L2 hit is streamed to the caller and, when the
//   caller reads it sequentially from the start (what a client downloading
//   a file does), copied into L1 on the way ("tee"): no second GCS read, and
//   the next request is an L1 hit. The copy is verified by L1's commit like
//   any fill; one that fails the check deletes the L2 object. A partial or
//   out-of-order read leaves L1 untouched.
// - create(): writes L1 only. After L1 has committed, the blob is uploaded to
//   L2 in the background through a bounded queue (the caller never waits for
//   GCS); it never blocks a fill. The upload is verified
//   (GcsBlobStore::upload). A blob whose upload failed, or that found the
//   queue full, or whose turn came while the breaker was open (not tried),
//   is remembered (at most upload_queue of them, in memory only) and queued
//   again when an upload succeeds, or, with the breaker closed, when a blob
//   is opened or queued upload_retry after the last such pass.
// - Leases: before filling a blob known by its sha256 (LFS files), create()
//   takes a lease object in L2 (<prefix>leases/<sha256>, created with
//   ifGenerationMatch=0, holding the holder id and an expiry that is renewed
//   while the fill and the upload run). If another replica holds it, create()
//   polls L2 with backoff and returns errc::blob_available once the blob
//   appears there; it takes the lease over when it expires (a dead holder)
//   and fills itself after lease_wait at most. Git blobs (small) fill without
//   a lease.
// - A GCS outage degrades to L1 + upstream: L2 errors are logged and
//   counted, never returned by open() or create(). After an L2 failure,
//   reads, leases and uploads skip L2 for a while (TieredOptions::breaker),
//   so misses do not each pay GCS's retry budget and a shutdown does not
//   wait for uploads that cannot succeed.
//
// Thread safety: as BlobStore. Background work (uploads, lease renewals,
// committing a tee) runs on the executor given at construction and holds
// the tiers alive, so they may outlive the store object; destroy the
// executor's io_context before the blocking pool the tiers use.
#pragma once

#include <hubcache/storage/blob_store.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/gcs_mirror.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace hubcache::storage {

enum class Promote { yes, no };

struct TieredOptions {
  // Blobs waiting for upload. An entry is only a key (the bytes stay in L1),
  // so the bound limits pending work, not memory; 1000 covers the burst of a
  // large snapshot while a slow uplink catches up.
  std::size_t upload_queue = 1000;
  // Blobs whose upload failed (every GcsRetryPolicy attempt used: GCS down),
  // was skipped (breaker open) or found the queue full are queued again as
  // soon as an upload succeeds, and otherwise by an open() or a new blob's
  // upload at most this often, once the breaker has closed. The breaker's
  // cooldown: GCS was found unusable for as long.
  std::chrono::milliseconds upload_retry{30'000};
  // Uploads at once. Each streams one blob in GcsOptions::chunk_size
  // requests; 2 keeps GCS busy without taking all of a replica's uplink.
  unsigned upload_workers = 2;
  // Shared with the metadata mirrors of the same bucket: after a GCS
  // failure, open() and leases skip L2 for its cooldown. Null: a breaker of
  // the store's own with a 30 s cooldown (long against GCS's ~3 s retry
  // budget per request, short against an outage).
  std::shared_ptr<GcsBreaker> breaker;
  // Copy L2 hits into L1 (no in the GCS-only mode, where L1 only stages fills).
  Promote promote = Promote::yes;
  // Written into leases, for operators reading them; any unique string.
  std::string replica_id;
  // A lease's lifetime; renewed every third of it while its fill runs.
  // Replicas' clocks must agree to well within this (NTP does).
  std::chrono::milliseconds lease_ttl{30'000};
  // Longest create() waits for another replica's fill before filling too
  // (the caller's clients wait meanwhile; see config gcs_lease_wait).
  std::chrono::milliseconds lease_wait{20'000};
  // false: no leases (every replica fills what it misses).
  bool leases = true;
};

// Counters since startup (for logs and tests).
struct TieredStats {
  std::uint64_t l2_hits = 0;
  std::uint64_t l2_errors = 0;        // failed L2 operations (reads, leases, uploads)
  std::uint64_t uploads = 0;          // blobs uploaded (or found there already)
  std::uint64_t uploads_failed = 0;   // attempts that failed (each is queued again later)
  std::uint64_t uploads_dropped = 0;  // given up: more waiting for a retry than upload_queue
  std::uint64_t uploads_retried = 0;  // queued again by a retry pass
  std::uint64_t promoted = 0;         // L2 hits copied into L1
  std::uint64_t lease_waits = 0;      // create() calls that found another replica's lease
  std::uint64_t l2_corrupt = 0;       // L2 blobs whose bytes failed the copy's sha256 check (then deleted)
};

class TieredBlobStore : public BlobStore {
 public:
  virtual TieredStats stats() const = 0;
  // Completes when no upload is queued or running and no tee is committing
  // (polls every 20 ms), or when `limit` has passed: true if idle then. For
  // tests and orderly shutdown. Blobs remembered for a retry do not count.
  virtual net::awaitable<bool> idle(std::chrono::milliseconds limit = std::chrono::milliseconds::max()) = 0;
};

// REQUIRES: l1 and l2 non-null; the blocking pools they use outlive every
// background job (see above).
std::unique_ptr<TieredBlobStore> make_tiered_blob_store(std::unique_ptr<BlobStore> l1,
                                                        std::shared_ptr<GcsBlobStore> l2, const TieredOptions& options,
                                                        net::any_io_executor executor);

}  // namespace hubcache::storage
