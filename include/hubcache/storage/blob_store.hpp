// Content-addressed blob storage.
//
// A blob is an immutable byte string named by the sha256 of its content. A
// blob becomes visible (open() finds it) only after BlobWriter::commit() has
// verified it against the digest upstream announced and made it durable. A
// crash at any point leaves either no blob or a complete, verified one.
//
// Readers pin: a blob with an open BlobReader is never evicted, and its bytes
// stay readable for the reader's lifetime even if it is evicted right after.
//
// Thread safety: BlobStore is safe to call from any thread. A BlobReader or
// BlobWriter must be used by one coroutine at a time; distinct readers are
// independent. Exception: BlobWriter::written() and open_reader() may be
// called from any thread while the owning coroutine writes or commits.
#pragma once

#include <hubcache/core/digest.hpp>
#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace hubcache::storage {

namespace net = boost::asio;

// What upstream promised the content is. Exactly one of the digests is set.
struct ExpectedContent {
  std::uint64_t size = 0;
  std::optional<core::Sha256> sha256;    // LFS files: X-Linked-Etag
  std::optional<core::GitSha1> git_sha1; // git-stored files: ETag
};

class BlobReader {
 public:
  virtual ~BlobReader() = default;
  // Bytes readable through this reader. For a reader over a blob still being
  // written (BlobWriter::open_reader), this is the size the blob will have.
  virtual std::uint64_t size() const = 0;
  // Reads up to buf.size() bytes at offset. Returns the count read; 0 only
  // when offset >= the bytes present. Blocking-free for page-cache hits.
  virtual net::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) = 0;
  // The OS file descriptor backing the reader (for sendfile), or -1.
  virtual int native_handle() const noexcept = 0;
};
using BlobReaderPtr = std::unique_ptr<BlobReader>;

class BlobWriter {
 public:
  // Without a successful commit(), the destructor removes the staging data and
  // releases the space reservation.
  virtual ~BlobWriter() = default;
  // Writes bytes at `offset`. Bytes may come in any order (a fill downloads
  // several ranges at once) but each byte exactly once. Errors (the writer is
  // then failed): errc::integrity_mismatch for bytes past ExpectedContent::size,
  // errc::bad_request for bytes written twice, errc::storage_io or
  // errc::insufficient_storage on disk errors. A page-cache write plus
  // hashing: it runs on the caller's thread.
  virtual result<void> write_at(std::uint64_t offset, std::span<const std::byte> data) = 0;
  // write_at(written(), data): for callers that write in order.
  virtual net::awaitable<result<void>> append(std::span<const std::byte> data) = 0;
  // The written prefix: every byte before it has been written (and hashed).
  // Readers of a blob being written may read below it.
  virtual std::uint64_t written() const noexcept = 0;
  // A reader over the staging file that stays valid after commit or failure
  // (it holds its own descriptor). Used by clients that stream a blob while it
  // is being filled; they must not read past written(). After a successful
  // commit it opens the committed blob; after a failure it returns that
  // failure. The reader does not pin the blob.
  virtual result<BlobReaderPtr> open_reader() = 0;
  // REQUIRES: written() == expected size. Waits for the digest of every byte
  // and checks it against the expected one. Success means the written bytes
  // are right, not that they are stored: nothing is durable or visible yet.
  // That is the moment a fill may let its last byte go to its clients, who
  // need not wait for the commit's fsync or upload. On
  // errc::integrity_mismatch the writer fails as in commit(). Returns the
  // sha256; later calls return it again.
  virtual net::awaitable<result<core::Sha256>> verify() = 0;
  // REQUIRES: written() == expected size. verify(), unless done already, then
  // fsyncs the file, renames it to its content address and fsyncs the
  // directory (the disk store) or uploads it (GCS); runs the blocking steps
  // off the calling thread. On errc::integrity_mismatch nothing becomes
  // visible. Returns the sha256 under which the blob is stored; if that blob
  // was already stored, ours is dropped and this still succeeds. After any
  // failure the writer is finished (later calls repeat the error); after
  // success, commit() returns the key again. open_reader() stays valid from
  // other threads while commit() runs.
  virtual net::awaitable<result<core::Sha256>> commit() = 0;
};
using BlobWriterPtr = std::unique_ptr<BlobWriter>;

struct StoreUsage {
  std::uint64_t bytes = 0;      // committed blob bytes (rounded to 4 KiB blocks)
  std::uint64_t reserved = 0;   // reserved by writers in progress
  std::uint64_t limit = 0;      // configured maximum
  std::uint64_t blobs = 0;
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // nullopt when the blob is not stored. Marks the blob as recently used.
  virtual net::awaitable<result<std::optional<BlobReaderPtr>>> open(const core::Sha256& key) = 0;
  // Starts a new blob: reserves expected.size bytes, evicting least recently
  // used unpinned blobs as needed. errc::insufficient_storage when the space
  // cannot be found (nothing is evicted then). errc::bad_request when
  // `expected` carries no digest: a blob is never stored unverified.
  // errc::blob_available when a shared store (another replica) stored the
  // blob while create() waited for it: the caller opens it instead.
  virtual net::awaitable<result<BlobWriterPtr>> create(const ExpectedContent& expected) = 0;
  virtual StoreUsage usage() const = 0;
};

}  // namespace hubcache::storage
