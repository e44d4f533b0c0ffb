// Durable index from Hub coordinates to stored blobs.
//
// Maps (repo type, repo id, commit, path, route kind) to the blob and the
// response metadata needed to answer HEAD/GET without asking upstream. Also
// maps an upstream ETag (git sha1 or sha256) to the sha256 blob key, so the
// same content under another commit or path is found.
//
// A put() is durable when it returns (atomic file write: temp, fsync, rename,
// fsync dir). Records survive restarts; the format is versioned (layout in
// src/storage/metadata_index.cpp). A record file that is corrupt, truncated
// or holds another key reads as absent (logged), never as an error.
//
// Recently used records and etag mappings are also kept in memory (bounded),
// so a hot lookup reads no file. REQUIRES: nothing but this object changes
// the directory while it is open (a file edited behind it may go unseen).
//
// Thread safety: all methods are safe from any thread. put() blocks on fsync:
// call it from the blocking pool, not from an I/O thread. get() and
// blob_for_etag() are awaitable because an implementation may ask a remote
// tier on a local miss (the GCS mirror); the disk index answers them inline
// from a small file (page cache), so they may run on I/O threads.
#pragma once

#include <hubcache/core/digest.hpp>
#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace hubcache::storage {

struct FileKey {
  std::string repo_type;  // "model", "dataset", "space", "kernel"
  std::string repo;       // canonical id, e.g. "acme/tiny-model"
  std::string commit;     // 40-hex
  std::string path;       // decoded path in the repo
  std::string kind;       // "resolve" or "raw"
  friend bool operator==(const FileKey&, const FileKey&) = default;
};

struct FileRecord {
  std::string etag;           // upstream value, unquoted: sha1 (git) or sha256 (LFS)
  bool lfs = false;           // true when upstream sent X-Linked-Etag
  std::uint64_t size = 0;
  core::Sha256 sha256;        // blob key in the BlobStore
  std::string content_type;   // as upstream sent it for this file
};

class MetadataIndex {
 public:
  virtual ~MetadataIndex() = default;
  // `key` is copied before the first suspension.
  virtual boost::asio::awaitable<result<std::optional<FileRecord>>> get(FileKey key) = 0;
  // errc::bad_request when a key or record string is not valid UTF-8 (it
  // cannot be stored in the JSON record); errc::storage_io on disk errors.
  virtual result<void> put(const FileKey& key, const FileRecord& record) = 0;
  // Makes get() and blob_for_etag() answer with `record` at once, in memory
  // only (lost on restart, or when pushed out of the bounded memory, unless
  // put() follows). For a blob just verified: its clients get their last
  // byte without waiting for put()'s fsyncs, which can take a second behind
  // the writeback of a large file, and their next request still finds it.
  // Never blocks.
  virtual void remember(const FileKey& key, const FileRecord& record) = 0;
  // Blob key for an upstream etag (unquoted), if some record with that etag
  // was stored.
  virtual boost::asio::awaitable<result<std::optional<core::Sha256>>> blob_for_etag(std::string etag) = 0;
};

// The stored forms of index entries, shared by the disk index and its GCS
// mirror. A record holds its key and an etag mapping its etag, so a reader
// verifies that it found what it asked for; decode_* return nullopt for a
// malformed entry or one that holds another key.
std::string index_record_id(const FileKey& key);  // sha256 hex of the key's canonical form
std::string encode_index_record(const FileKey& key, const FileRecord& record);
std::optional<FileRecord> decode_index_record(const FileKey& key, std::string_view text);
std::string etag_id(const std::string& etag);  // sha256 hex of the etag
std::string encode_etag_mapping(const std::string& etag, const core::Sha256& blob);
std::optional<core::Sha256> decode_etag_mapping(const std::string& etag, std::string_view text);

// Stores records under `dir` (created if needed). Throws std::runtime_error on
// an unusable directory or an unknown format version (startup only).
std::unique_ptr<MetadataIndex> make_disk_metadata_index(const std::filesystem::path& dir);

}  // namespace hubcache::storage
