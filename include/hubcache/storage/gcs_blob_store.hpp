// A BlobStore in a Google Cloud Storage bucket, over the GCS JSON API and
// hubcache's own HTTP client (there is no google-cloud-cpp on Debian 12).
//
// Object layout (format version 1; docs/gcs.md):
//   <bucket>/<prefix>blobs/<sha256 hex>     one object per blob, raw bytes,
//     contentType application/octet-stream, custom metadata
//     hubcache-sha256 (hex), hubcache-size (decimal), hubcache-format ("1").
//
// The BlobStore contract holds with these differences, all forced by GCS:
//   - create() spools to a local staging file; commit() verifies size and
//     digest locally, then uploads: blobs up to chunk_size in one multipart
//     request, larger ones through a resumable session in chunk_size pieces
//     (after a metadata GET, so an existing blob is not uploaded again). The
//     upload is conditional (ifGenerationMatch=0): an existing object is never
//     overwritten, and finding one counts as success (same name, same bytes).
//     The staging file is removed once the upload is done; open_reader()
//     after the commit reads the object instead.
//   - Nothing is evicted and there is no size limit: usage().limit is 0.
//     usage().bytes/blobs count what scan_usage() found plus what this
//     process has created minus what it removed; reserved counts blobs being
//     spooled.
//   - A reader does not pin: GCS offers no pinning, and a blob deleted while
//     being read fails the read (errc::storage_io). native_handle() is -1.
//   - Reads stream an open-ended ranged GET and reuse it while the caller
//     reads sequentially; a read at another offset starts a new GET.
//
// Errors: errc::storage_io for GCS failures (logged with the HTTP status and
// GCS's message), errc::timeout when GCS did not answer within the client's
// deadlines, errc::integrity_mismatch as for every store. Transport failures,
// 408, 429 and 5xx are retried with exponential backoff (GcsRetryPolicy); a
// 401 drops the cached token and retries once. A GCS outage is reported, not
// hidden: falling back to other tiers is the caller's job.
//
// Thread safety: as BlobStore. Every async call completes on the awaiting
// coroutine's executor; cancellation is not supported beyond the HTTP
// client's deadlines.
#pragma once

#include <hubcache/storage/blob_store.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace hubcache::storage {

enum class GcsCredentials {
  // credentials_file if set; else none when the endpoint came from
  // STORAGE_EMULATOR_HOST; else the key file in GOOGLE_APPLICATION_CREDENTIALS
  // if set; else the metadata server. (Application Default Credentials order,
  // minus gcloud's user credentials.)
  automatic,
  metadata_server,      // GCE / GKE Workload Identity
  service_account_key,  // credentials_file, REQUIRED
  none,                 // emulators, or an endpoint that authenticates otherwise
};

struct GcsRetryPolicy {
  // Attempts per request, the first included. With the backoffs below a
  // request gives up after about 3 s of failures: a cache has disk and
  // upstream to fall back on, so failing fast beats the minutes Google's
  // client libraries keep retrying.
  unsigned max_attempts = 5;
  std::chrono::milliseconds initial_backoff{200};  // doubles per retry, jittered down by up to half
  std::chrono::milliseconds max_backoff{5'000};
};

struct GcsOptions {
  std::string bucket;  // REQUIRED
  // Prepended to every object name, e.g. "hubcache/" (blobs are then
  // "hubcache/blobs/<hex>"). Empty: blobs at "blobs/<hex>".
  std::string prefix;
  // "scheme://host[:port]". Empty: $STORAGE_EMULATOR_HOST if set ("host:port"
  // gets http://), else https://storage.googleapis.com.
  std::string endpoint;
  GcsCredentials credentials = GcsCredentials::automatic;
  std::filesystem::path credentials_file;  // service-account JSON key
  // Empty: http://$GCE_METADATA_HOST if set, else http://metadata.google.internal.
  std::string metadata_server;
  // REQUIRED. Blobs are spooled here until uploaded; created if missing. Not
  // shared with other stores: startup deletes whatever a previous run left.
  std::filesystem::path staging_dir;
  // Resumable upload chunk, bytes; also the largest blob sent in one
  // multipart request. REQUIRES a multiple of 256 KiB (GCS rejects other
  // chunk sizes). 16 MiB is the Go client's default: each chunk is one
  // request held in memory (an upload holds about two chunks), a failed
  // chunk re-sends at most that much, and a 16 MiB request amortises the
  // round trip even at 10 Gbit/s. http.io_timeout bounds sending one whole
  // chunk, so keep chunk_size / uplink bandwidth well below it.
  std::uint64_t chunk_size = 16 * 1024 * 1024;
  GcsRetryPolicy retry;
  upstream::ClientOptions http;  // timeouts, extra CA file, connection pool
};

struct GcsBlobInfo {
  core::Sha256 key;
  std::uint64_t size = 0;
  std::int64_t generation = 0;
};

struct GcsListPage {
  std::vector<GcsBlobInfo> blobs;  // in name order; foreign objects under the prefix are skipped
  std::string next_page_token;     // empty on the last page
};

// A small object beside the blobs (a metadata record, a lease).
struct GcsObject {
  std::string data;
  std::int64_t generation = 0;  // changes on every write
};

class GcsBlobStore : public BlobStore {
 public:
  // Uploads a blob verified elsewhere (the disk tier) straight from
  // `source`, without spooling it again. Create-once as commit(): an
  // existing object counts as success. Verified twice, each failure
  // returning errc::integrity_mismatch: the sha256 of the bytes read must be
  // `key` before the last of them is sent (else GCS never makes an object of
  // them), and the size and MD5 GCS reports must match them (else the object
  // is deleted). REQUIRES: source outlives the call.
  virtual net::awaitable<result<void>> upload(const core::Sha256& key, BlobReader& source) = 0;

  // Small objects at <prefix><name> (REQUIRES: name does not start with
  // "blobs/"), read whole into memory (at most 32 MiB). Used for metadata
  // records and leases shared between replicas.
  virtual net::awaitable<result<std::optional<GcsObject>>> read_object(std::string name) = 0;
  // if_generation: 0 = only if absent, G = only if the live generation is G,
  // nullopt = unconditionally. Returns the new generation, or nullopt when
  // the precondition failed.
  virtual net::awaitable<result<std::optional<std::int64_t>>> write_object(std::string name, std::string data,
                                                                           std::optional<std::int64_t> if_generation) = 0;
  // Deletes generation `generation` of the object; false when it was absent
  // or had another generation.
  virtual net::awaitable<result<bool>> delete_object(std::string name, std::int64_t generation) = 0;

  // The blob's object metadata without reading it; nullopt when absent.
  virtual net::awaitable<result<std::optional<GcsBlobInfo>>> stat(const core::Sha256& key) = 0;
  // Deletes the blob (only the generation just looked up, so a blob stored
  // again meanwhile survives). true when this call deleted it, false when it
  // was not there.
  virtual net::awaitable<result<bool>> remove(const core::Sha256& key) = 0;
  // One page of the blobs under the prefix. Start with an empty token and
  // pass next_page_token until it is empty. Deleting blobs between pages is
  // safe. max_results is capped at 1000 by GCS.
  virtual net::awaitable<result<GcsListPage>> list(std::string page_token, unsigned max_results = 1000) = 0;
  // Lists every blob and resets usage().bytes and .blobs to what it found.
  virtual net::awaitable<result<StoreUsage>> scan_usage() = 0;
};

// Validates the options, resolves endpoint and credentials (reading the key
// file and the environment), takes an exclusive lock on staging_dir and
// empties it. Does no network I/O. Throws std::invalid_argument on bad
// options and std::runtime_error on an unusable staging directory (startup
// only). HTTP runs on the calling coroutine's io_context; staging-file work
// (create, reads for the upload, unlink) on `blocking`, which must outlive
// the store and its readers and writers.
std::unique_ptr<GcsBlobStore> make_gcs_blob_store(const GcsOptions& options, net::thread_pool& blocking);

}  // namespace hubcache::storage
