// Incremental SHA-256 and git-blob SHA-1 over OpenSSL EVP.
//
// Thread safety: one hasher per coroutine/thread.
#pragma once

#include <hubcache/core/digest.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace hubcache::util {

class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;
  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  // Returns the digest; the hasher must not be used afterwards.
  core::Sha256 finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// The git object id of a blob: sha1("blob <size>\0" + content). `size` must be
// the total content length that will be fed through update().
class GitBlobHasher {
 public:
  explicit GitBlobHasher(std::uint64_t size);
  ~GitBlobHasher();
  GitBlobHasher(GitBlobHasher&&) noexcept;
  GitBlobHasher& operator=(GitBlobHasher&&) noexcept;
  void update(std::span<const std::byte> data);
  core::GitSha1 finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace hubcache::util
