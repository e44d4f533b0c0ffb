// StagingFile: the bytes of a blob being written, before it is verified.
//
// Private to the storage module; both writers (disk, GCS) keep their staging
// data through it. Bytes may arrive at any offset (a fill downloads several
// ranges at once), each byte exactly once. The digests are computed in file
// order: bytes that extend the written prefix are hashed as they arrive,
// bytes written ahead of it are read back from the file (page cache) and
// hashed as soon as the gap before them closes. So verification costs one
// pass over the data whatever order it came in, and the digest is ready when
// the last byte is.
//
// Errors: errc::integrity_mismatch for bytes past the expected size,
// errc::bad_request for bytes written twice, storage errors from the file
// (through detail::io_error).
//
// Thread safety: one caller at a time (the writer's owner); prefix() may be
// read from any thread.
#pragma once

#include "posix_file.hpp"

#include <hubcache/util/hash.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace hubcache::storage::detail {

class StagingFile {
 public:
  // Also called, in file order, with every byte (e.g. GCS's md5).
  using ExtraHash = std::function<void(std::span<const std::byte>)>;

  // `fd` is open for reading and writing and outlives this object's use.
  StagingFile(int fd, std::filesystem::path path, const ExpectedContent& expected, ExtraHash extra = {});

  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data);
  // The written prefix: every byte before it is written (and hashed).
  std::uint64_t prefix() const noexcept { return m_prefix.load(std::memory_order_acquire); }
  const std::filesystem::path& path() const noexcept { return m_path; }

  // Checks size and digests against what upstream announced. On success
  // returns the sha256 (the blob's key); errc::integrity_mismatch otherwise
  // (logged). Call once.
  result<core::Sha256> verify();

 private:
  void hash(std::span<const std::byte> data);
  // Reads back and hashes the written ranges that now follow the prefix.
  result<void> catch_up();

  int m_fd;
  std::filesystem::path m_path;
  ExpectedContent m_expected;
  ExtraHash m_extra;
  util::Sha256Hasher m_sha256;
  std::optional<util::GitBlobHasher> m_git_sha1;
  std::atomic<std::uint64_t> m_prefix{0};
  std::map<std::uint64_t, std::uint64_t> m_ahead;  // written past the prefix: begin -> end, merged
  std::vector<std::byte> m_buffer;                 // for reading back; allocated on first use
};

}  // namespace hubcache::storage::detail
