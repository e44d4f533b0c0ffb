#include "staging_file.hpp"

#include <hubcache/util/blocking.hpp>
#include <hubcache/util/hash.hpp>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <vector>

namespace hubcache::storage::detail {
namespace {

// Read-back piece: large enough to amortise the syscall, small enough that
// a fill's memory stays a few buffers and cancel() waits little.
constexpr std::size_t k_read_back = 256 * 1024;
// What one pool job hashes before it makes way for other blocking work (the
// pool is small and also commits, creates and unlinks); the rest is hashed
// by a job posted behind that work.
constexpr std::uint64_t k_job_bytes = 16 * 1024 * 1024;

}  // namespace

// The digest state. The owner's thread only publishes the prefix and asks for
// a job; the jobs (and verify) hash under `mutex`, one at a time.
struct StagingFile::Hasher {
  Hasher(int f, std::filesystem::path p, const ExpectedContent& e, boost::asio::thread_pool& tp, ExtraHash x)
      : fd(f), path(std::move(p)), expected(e), pool(tp), extra(std::move(x)) {
    if (expected.git_sha1) git_sha1.emplace(expected.size);
  }

  const int fd;
  const std::filesystem::path path;
  const ExpectedContent expected;
  boost::asio::thread_pool& pool;
  const ExtraHash extra;
  std::atomic<std::uint64_t> prefix{0};  // written by the owner, contiguous from 0
  std::atomic<bool> scheduled{false};    // a job is queued or running
  // Cancelled, or the digests are finished. Set before `mutex` is taken, so
  // a job in progress stops after its current piece.
  std::atomic<bool> stopped{false};

  std::mutex mutex;  // guards the members below
  std::uint64_t hashed = 0;
  std::error_code error;
  util::Sha256Hasher sha256;
  std::optional<util::GitBlobHasher> git_sha1;
  std::vector<std::byte> buffer;

  // Hashes [hashed, min(prefix, limit)). REQUIRES: mutex held.
  void hash_written(std::uint64_t limit = std::numeric_limits<std::uint64_t>::max()) {
    const std::uint64_t end = std::min(prefix.load(), limit);
    while (!stopped && !error && hashed < end) {
      if (buffer.empty()) buffer.resize(k_read_back);
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), end - hashed));
      auto n = pread_full(fd, std::span(buffer.data(), want), hashed);
      if (!n || *n != want) {
        error = io_error("read back", path, n ? std::make_error_code(std::errc::io_error) : n.error());
        return;
      }
      const std::span<const std::byte> piece(buffer.data(), want);
      sha256.update(piece);
      if (git_sha1) git_sha1->update(piece);
      if (extra) extra(piece);
      hashed += want;
    }
  }

  // A pool job: hashes up to k_job_bytes, then hands over to a new job if
  // the owner is still ahead.
  static void run(const std::shared_ptr<Hasher>& self) {
    std::lock_guard lock(self->mutex);
    self->hash_written(self->hashed + k_job_bytes);
    if (self->stopped || self->error) {
      self->scheduled.store(false);
      return;
    }
    if (self->prefix.load() > self->hashed) {
      post(self);  // the flag stays up: the successor is this job's
      return;
    }
    self->scheduled.store(false);
    // The owner may have advanced the prefix after we looked and before the
    // flag dropped, and then left it to us: look once more.
    if (self->prefix.load() > self->hashed && !self->scheduled.exchange(true)) post(self);
  }
  static void post(const std::shared_ptr<Hasher>& self) {
    boost::asio::post(self->pool, [self] { run(self); });
  }

  result<core::Sha256> finish() {
    std::lock_guard lock(mutex);
    hash_written();
    if (stopped.exchange(true)) return make_error_code(errc::cancelled);  // the digests are consumed below
    if (error) return error;
    if (hashed != expected.size) {
      spdlog::warn("blob store: size mismatch for {}: expected {} bytes, got {}", path.string(), expected.size, hashed);
      return make_error_code(errc::integrity_mismatch);
    }
    const core::Sha256 key = sha256.finish();
    if (expected.sha256 && *expected.sha256 != key) {
      spdlog::warn("blob store: sha256 mismatch: expected {}, got {}", expected.sha256->hex(), key.hex());
      return make_error_code(errc::integrity_mismatch);
    }
    if (git_sha1) {
      const core::GitSha1 actual = git_sha1->finish();
      if (actual != *expected.git_sha1) {
        spdlog::warn("blob store: git sha1 mismatch: expected {}, got {}", expected.git_sha1->hex(), actual.hex());
        return make_error_code(errc::integrity_mismatch);
      }
    }
    return key;
  }
};

StagingFile::StagingFile(int fd, std::filesystem::path path, const ExpectedContent& expected,
                         boost::asio::thread_pool& pool, ExtraHash extra)
    : m_pool(pool), m_hasher(std::make_shared<Hasher>(fd, std::move(path), expected, pool, std::move(extra))) {}

const std::filesystem::path& StagingFile::path() const noexcept { return m_hasher->path; }

std::uint64_t StagingFile::prefix() const noexcept { return m_hasher->prefix.load(std::memory_order_acquire); }

result<void> StagingFile::write_at(std::uint64_t offset, std::span<const std::byte> data) {
  if (data.empty()) return {};
  const std::uint64_t size = m_hasher->expected.size;
  if (offset > size || data.size() > size - offset) {
    spdlog::warn("blob store: bytes past the expected {} written to {}", size, path().string());
    return make_error_code(errc::integrity_mismatch);
  }
  const std::uint64_t end = offset + data.size();
  const std::uint64_t prefix = m_hasher->prefix.load(std::memory_order_relaxed);
  // Each byte once: a byte written twice might differ from the one hashed.
  auto next = m_ahead.upper_bound(offset);
  const bool overlaps = offset < prefix || (next != m_ahead.end() && next->first < end) ||
                        (next != m_ahead.begin() && std::prev(next)->second > offset);
  if (overlaps) {
    spdlog::error("blob store: bytes {}-{} of {} written twice", offset, end, path().string());
    return make_error_code(errc::bad_request);
  }
  if (auto ec = pwrite_all(m_hasher->fd, data, offset)) return io_error("write", path(), ec);
  if (offset != prefix) {
    // Ahead of the prefix: remembered until the gap before it closes.
    auto it = m_ahead.emplace_hint(next, offset, end);
    if (it != m_ahead.begin() && std::prev(it)->second == offset) {
      std::prev(it)->second = end;
      it = std::prev(m_ahead.erase(it));
    }
    if (auto after = std::next(it); after != m_ahead.end() && after->first == it->second) {
      it->second = after->second;
      m_ahead.erase(after);
    }
    return {};
  }
  std::uint64_t new_prefix = end;
  if (!m_ahead.empty() && m_ahead.begin()->first == end) {
    new_prefix = m_ahead.begin()->second;
    m_ahead.erase(m_ahead.begin());
  }
  m_hasher->prefix.store(new_prefix);
  if (!m_hasher->scheduled.exchange(true)) Hasher::post(m_hasher);
  return {};
}

boost::asio::awaitable<result<core::Sha256>> StagingFile::verify() {
  if (m_outcome) co_return *m_outcome;
  if (m_verifying) co_return make_error_code(errc::bad_request);
  m_verifying = true;
  auto job = [hasher = m_hasher] { return hasher->finish(); };
  auto outcome = co_await util::run_blocking(m_pool, std::move(job));
  m_verifying = false;
  m_outcome = outcome;
  co_return outcome;
}

void StagingFile::cancel() noexcept {
  m_hasher->stopped.store(true);
  const std::lock_guard wait_for_the_piece_in_progress(m_hasher->mutex);
}

}  // namespace hubcache::storage::detail
