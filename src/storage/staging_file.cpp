#include "staging_file.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

namespace hubcache::storage::detail {
namespace {

// Read-back piece: large enough to amortise the syscall, small enough that
// a fill's memory stays a few buffers.
constexpr std::size_t k_read_back = 256 * 1024;

}  // namespace

StagingFile::StagingFile(int fd, std::filesystem::path path, const ExpectedContent& expected, ExtraHash extra)
    : m_fd(fd), m_path(std::move(path)), m_expected(expected), m_extra(std::move(extra)) {
  if (m_expected.git_sha1) m_git_sha1.emplace(m_expected.size);
}

void StagingFile::hash(std::span<const std::byte> data) {
  m_sha256.update(data);
  if (m_git_sha1) m_git_sha1->update(data);
  if (m_extra) m_extra(data);
}

result<void> StagingFile::write_at(std::uint64_t offset, std::span<const std::byte> data) {
  if (data.empty()) return {};
  if (offset > m_expected.size || data.size() > m_expected.size - offset) {
    spdlog::warn("blob store: bytes past the expected {} written to {}", m_expected.size, m_path.string());
    return make_error_code(errc::integrity_mismatch);
  }
  const std::uint64_t end = offset + data.size();
  const std::uint64_t prefix = m_prefix.load(std::memory_order_relaxed);
  // Each byte once: a byte written twice might differ from the one hashed.
  auto next = m_ahead.upper_bound(offset);
  const bool overlaps = offset < prefix || (next != m_ahead.end() && next->first < end) ||
                        (next != m_ahead.begin() && std::prev(next)->second > offset);
  if (overlaps) {
    spdlog::error("blob store: bytes {}-{} of {} written twice", offset, end, m_path.string());
    return make_error_code(errc::bad_request);
  }
  if (auto ec = pwrite_all(m_fd, data, offset)) return io_error("write", m_path, ec);
  if (offset != prefix) {
    // Ahead of the prefix: remembered, hashed once the gap closes.
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
  hash(data);
  m_prefix.store(end, std::memory_order_release);
  return catch_up();
}

result<void> StagingFile::catch_up() {
  while (!m_ahead.empty() && m_ahead.begin()->first == m_prefix.load(std::memory_order_relaxed)) {
    const auto [begin, end] = *m_ahead.begin();
    if (m_buffer.empty()) m_buffer.resize(k_read_back);
    for (std::uint64_t pos = begin; pos < end;) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(m_buffer.size(), end - pos));
      auto n = pread_full(m_fd, std::span(m_buffer.data(), want), pos);
      if (!n) return io_error("read back", m_path, n.error());
      if (*n != want) return io_error("read back", m_path, std::make_error_code(std::errc::io_error));
      hash(std::span(m_buffer.data(), want));
      pos += want;
      // Readers may use bytes as soon as they are hashed.
      m_prefix.store(pos, std::memory_order_release);
    }
    m_ahead.erase(m_ahead.begin());
  }
  return {};
}

result<core::Sha256> StagingFile::verify() {
  const std::uint64_t got = prefix();
  if (got != m_expected.size || !m_ahead.empty()) {
    spdlog::warn("blob store: size mismatch for {}: expected {} bytes, got {}", m_path.string(), m_expected.size, got);
    return make_error_code(errc::integrity_mismatch);
  }
  const core::Sha256 key = m_sha256.finish();
  if (m_expected.sha256 && *m_expected.sha256 != key) {
    spdlog::warn("blob store: sha256 mismatch: expected {}, got {}", m_expected.sha256->hex(), key.hex());
    return make_error_code(errc::integrity_mismatch);
  }
  if (m_git_sha1) {
    const core::GitSha1 actual = m_git_sha1->finish();
    if (actual != *m_expected.git_sha1) {
      spdlog::warn("blob store: git sha1 mismatch: expected {}, got {}", m_expected.git_sha1->hex(), actual.hex());
      return make_error_code(errc::integrity_mismatch);
    }
  }
  return key;
}

}  // namespace hubcache::storage::detail
