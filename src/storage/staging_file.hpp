// StagingFile: the bytes of a blob being written, before it is verified.
//
// Private to the storage module; both writers (disk, GCS) keep their staging
// data through it. Bytes may arrive at any offset (a fill downloads several
// ranges at once), each byte exactly once. The digests are computed in file
// order, off the writer's thread: as the written prefix grows, jobs on the
// blocking pool read it back (page cache) and hash it, so hashing (2 GB/s at
// best) never holds up the thread that receives and writes the bytes.
// Verification costs one pass over the data whatever order it came in, and
// verify() only hashes what the jobs have not.
//
// Errors: errc::integrity_mismatch for bytes past the expected size,
// errc::bad_request for bytes written twice, storage errors from the file
// (through detail::io_error).
//
// Thread safety: one caller at a time (the writer's owner); prefix() may be
// read from any thread.
#pragma once

#include "posix_file.hpp"

#include <hubcache/storage/blob_store.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <span>

namespace hubcache::storage::detail {

class StagingFile {
 public:
  // Also called, in file order, with every byte (e.g. GCS's md5), on the
  // blocking pool; never after cancel() or the destructor returned.
  using ExtraHash = std::function<void(std::span<const std::byte>)>;

  // `fd` is open for reading and writing and stays open until cancel() or
  // verify() completed. Hashing runs on `pool`.
  StagingFile(int fd, std::filesystem::path path, const ExpectedContent& expected, boost::asio::thread_pool& pool,
              ExtraHash extra = {});
  ~StagingFile() { cancel(); }
  StagingFile(const StagingFile&) = delete;
  StagingFile& operator=(const StagingFile&) = delete;

  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data);
  // The written prefix: every byte before it is written (hashing may lag).
  std::uint64_t prefix() const noexcept;
  const std::filesystem::path& path() const noexcept;

  // Hashes what is not hashed yet and checks size and digests against what
  // upstream announced, on the pool. On success returns the sha256 (the
  // blob's key); errc::integrity_mismatch otherwise (logged). Later calls
  // return the same outcome; errc::bad_request while another call waits.
  // Owner only, like write_at().
  boost::asio::awaitable<result<core::Sha256>> verify();
  // verify() succeeded: every byte is in and right.
  bool verified() const noexcept { return m_outcome && m_outcome->has_value(); }
  // Stops the background hashing, waiting for a piece in progress: after it,
  // nothing reads the descriptor or calls ExtraHash. Call before closing
  // the descriptor of a file that will not be verified.
  void cancel() noexcept;

 private:
  struct Hasher;  // shared with the pool jobs

  boost::asio::thread_pool& m_pool;
  std::shared_ptr<Hasher> m_hasher;
  std::map<std::uint64_t, std::uint64_t> m_ahead;  // written past the prefix: begin -> end, merged
  bool m_verifying = false;                        // a verify() waits for the digests
  std::optional<result<core::Sha256>> m_outcome;   // verify()'s, once it completed
};

}  // namespace hubcache::storage::detail
