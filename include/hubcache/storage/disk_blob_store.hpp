// The local-disk BlobStore.
//
// On-disk layout under `root` (format version 1, see docs/architecture.md):
//   root/CACHEDIR.TAG                   so backup tools skip the cache
//   root/store.json                     {"format": 1}; another version refuses to start
//   root/blobs/<aa>/<sha256 hex>        committed blobs (aa = first two hex digits)
//   root/staging/<random>               blobs being written; deleted at startup
//   root/staging/evicted-<sha256 hex>   an evicted blob, for the moment until it is unlinked
//
// One store per root: the store holds an exclusive flock on store.json, and a
// second store (another process, or a second instance in this one) refuses to
// start. A root without store.json but with a non-empty blobs/ or staging/ is
// not ours and is refused too, so startup never deletes foreign files.
// Startup deletes everything in staging/ and anything under blobs/ that is not
// <aa>/<64 lower-case hex starting with aa>, then applies max_bytes (evicting
// least recently used first).
//
// Where work runs: append(), open() and read_at() on the caller's thread
// (page-cache work); create() (reservation, eviction unlinks, creating the
// staging file), commit's fsync/rename/directory fsync and the deletion of
// discarded staging files on `blocking`, resuming on the caller's executor.
// open() also refreshes the blob's atime on `blocking` (best effort) so the
// LRU order survives restarts.
#pragma once

#include <hubcache/storage/blob_store.hpp>

#include <boost/asio/thread_pool.hpp>

#include <filesystem>

namespace hubcache::storage {

struct DiskStoreOptions {
  std::filesystem::path root;
  std::uint64_t max_bytes = 0;  // limit for committed + reserved bytes; REQUIRES > 0
};

// Opens (creating if needed) the store, removes staging leftovers of a crash,
// and rebuilds the LRU order from file access times. Throws std::runtime_error
// on a bad root or an unknown format version (startup only). `blocking` runs
// fsync/rename/hash-verification so I/O threads never block on them; it must
// outlive the store and every reader and writer the store handed out.
std::unique_ptr<BlobStore> make_disk_blob_store(const DiskStoreOptions& options, net::thread_pool& blocking);

}  // namespace hubcache::storage
