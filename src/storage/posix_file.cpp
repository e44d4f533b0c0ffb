#include "posix_file.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>

namespace hubcache::storage::detail {

void UniqueFd::reset() noexcept {
  if (m_fd >= 0) {
    // Not retried on EINTR: on Linux the descriptor is released regardless,
    // and retrying could close a descriptor another thread just opened.
    ::close(m_fd);
    m_fd = -1;
  }
}

std::error_code last_errno() noexcept { return {errno, std::system_category()}; }

std::error_code io_error(std::string_view what, const std::filesystem::path& path, std::error_code ec) {
  spdlog::warn("storage: {} {} failed: {}", what, path.string(), ec.message());
  if (ec == std::errc::no_space_on_device || ec.value() == EDQUOT) return make_error_code(errc::insufficient_storage);
  return make_error_code(errc::storage_io);
}

result<UniqueFd> open_file(const std::filesystem::path& path, int flags, mode_t mode) {
  for (;;) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EINTR) return last_errno();
  }
}

result<std::size_t> pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    if (n == 0) break;  // end of the bytes present
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::error_code pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

std::error_code fsync_fd(int fd) noexcept {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return last_errno();
  }
  return {};
}

std::error_code fsync_dir(const std::filesystem::path& dir) {
  auto fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  return fsync_fd(fd->get());
}

std::error_code make_dir_durable(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return errno == EEXIST ? std::error_code() : last_errno();
  }
  return fsync_dir(dir.parent_path());
}

result<std::optional<std::string>> read_small_file(const std::filesystem::path& path, std::size_t max_bytes) {
  auto fd = open_file(path, O_RDONLY);
  if (!fd) {
    if (fd.error() == std::errc::no_such_file_or_directory) return std::optional<std::string>();
    return fd.error();
  }
  // Size the buffer from fstat, not from the limit: zero-filling a 32 MiB
  // buffer for a 2 KB record cost ~40 ms per lookup. One byte more than the
  // file (or the limit) tells "exactly max" from "too long".
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return last_errno();
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  std::string data(static_cast<std::size_t>(std::min<std::uint64_t>(file_size, max_bytes)) + 1, '\0');
  auto n = pread_full(fd->get(), std::as_writable_bytes(std::span(data)), 0);
  if (!n) return n.error();
  if (*n > max_bytes) return std::error_code(EFBIG, std::system_category());
  data.resize(*n);
  return std::optional<std::string>(std::move(data));
}

std::error_code write_file_atomic(const std::filesystem::path& target, std::string_view data) {
  std::filesystem::path temp = target;
  temp += ".tmp-" + random_hex();
  auto fd = open_file(temp, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (!fd) return fd.error();
  std::error_code ec = pwrite_all(fd->get(), std::as_bytes(std::span(data)), 0);
  if (!ec) ec = fsync_fd(fd->get());
  fd->reset();
  if (!ec && ::rename(temp.c_str(), target.c_str()) != 0) ec = last_errno();
  if (ec) {
    ::unlink(temp.c_str());
    return ec;
  }
  return fsync_dir(target.parent_path());
}

std::string random_hex() {
  // One generator per thread, seeded from the OS: uniqueness is what matters
  // (names are also created with O_EXCL), not unpredictability.
  thread_local std::mt19937_64 generator{std::random_device{}()};
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(generator()));
  return out;
}

net::awaitable<result<std::size_t>> FileReader::read_at(std::uint64_t offset, std::span<std::byte> buf) {
  auto n = pread_full(m_fd.get(), buf, offset);
  if (!n) co_return io_error("read", m_path, n.error());
  co_return *n;
}

}  // namespace hubcache::storage::detail
