// POSIX file helpers private to the storage module: an owning descriptor,
// EINTR-safe read/write loops, and the durable "temp file, fsync, rename,
// fsync directory" write used for small metadata files.
//
// Errors are std::error_code in the system category (errno values). Callers
// log the details and translate them into hubcache::errc at their boundary
// (see io_error()), so an errno never reaches the HTTP edge.
//
// Thread safety: the free functions are safe from any thread; a UniqueFd has
// one owner. All of these block (they are syscalls): callers decide which
// thread they may run on.
#pragma once

#include <hubcache/core/error.hpp>
#include <hubcache/storage/blob_store.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace hubcache::storage::detail {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : m_fd(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const noexcept { return m_fd; }
  explicit operator bool() const noexcept { return m_fd >= 0; }
  // Closes the descriptor (if any). close() errors are ignored: every write
  // we care about has been fsynced before.
  void reset() noexcept;

 private:
  int m_fd = -1;
};

// errno as a system-category error_code.
std::error_code last_errno() noexcept;

// Logs `what` on `path` failing with the system error `ec` and returns the
// hubcache code for it: errc::insufficient_storage for ENOSPC/EDQUOT (the disk
// is full, not broken), errc::storage_io for everything else.
std::error_code io_error(std::string_view what, const std::filesystem::path& path, std::error_code ec);

// open(2) with O_CLOEXEC added, retried on EINTR.
result<UniqueFd> open_file(const std::filesystem::path& path, int flags, mode_t mode = 0644);

// Reads at `offset` until `buf` is full or end of file; returns the count
// (short only at end of file).
result<std::size_t> pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset) noexcept;

// Writes all of `data` at `offset`, continuing after short writes and EINTR.
std::error_code pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset) noexcept;

std::error_code fsync_fd(int fd) noexcept;
// fsyncs a directory so entries created, renamed or removed in it are durable.
std::error_code fsync_dir(const std::filesystem::path& dir);

// mkdir(dir); when it created the directory, also fsyncs the parent so the new
// entry survives a crash. An existing directory is success.
std::error_code make_dir_durable(const std::filesystem::path& dir);

// The whole content of a file of at most `max_bytes`; nullopt when it does
// not exist. A longer file fails with EFBIG.
result<std::optional<std::string>> read_small_file(const std::filesystem::path& path, std::size_t max_bytes);

// Replaces `target` with `data` atomically and durably: writes a temp file in
// the same directory ("<name>.tmp-<random>"), fsyncs it, renames it over
// `target` and fsyncs the directory. A crash leaves the old or the new
// content, plus at worst a temp leftover that no lookup ever reads.
std::error_code write_file_atomic(const std::filesystem::path& target, std::string_view data);

// A BlobReader over an open file of known size: pread at any offset, and the
// descriptor as the sendfile handle. Used for blobs and staging files alike.
class FileReader : public BlobReader {
 public:
  FileReader(UniqueFd fd, std::uint64_t size, std::filesystem::path path)
      : m_fd(std::move(fd)), m_size(size), m_path(std::move(path)) {}
  std::uint64_t size() const override { return m_size; }
  net::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) override;
  int native_handle() const noexcept override { return m_fd.get(); }

 private:
  UniqueFd m_fd;
  std::uint64_t m_size;
  std::filesystem::path m_path;  // for error messages only
};

// 16 random lower-case hex digits, for unique temp names.
std::string random_hex();

}  // namespace hubcache::storage::detail
