#include <hubcache/util/hash.hpp>

#include <openssl/evp.h>

#include <stdexcept>
#include <string>

namespace hubcache::util {
namespace {

// EVP contexts only fail to allocate or initialise when OpenSSL itself is
// broken; that is not a data-path condition, so it aborts loudly.
EVP_MD_CTX* new_ctx(const EVP_MD* md) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
    throw std::runtime_error("OpenSSL digest initialisation failed");
  }
  return ctx;
}

template <std::size_t N>
core::Digest<N> finish_ctx(EVP_MD_CTX* ctx) {
  core::Digest<N> d;
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, d.bytes.data(), &len);
  return d;
}

}  // namespace

struct Sha256Hasher::Impl {
  EVP_MD_CTX* ctx = new_ctx(EVP_sha256());
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256Hasher::Sha256Hasher() : m_impl(std::make_unique<Impl>()) {}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;

void Sha256Hasher::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(m_impl->ctx, data.data(), data.size());
}
void Sha256Hasher::update(std::string_view data) {
  EVP_DigestUpdate(m_impl->ctx, data.data(), data.size());
}
core::Sha256 Sha256Hasher::finish() { return finish_ctx<32>(m_impl->ctx); }

struct GitBlobHasher::Impl {
  EVP_MD_CTX* ctx = new_ctx(EVP_sha1());
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

GitBlobHasher::GitBlobHasher(std::uint64_t size) : m_impl(std::make_unique<Impl>()) {
  const std::string header = "blob " + std::to_string(size);
  // The header includes its terminating NUL, as git's object format requires.
  EVP_DigestUpdate(m_impl->ctx, header.c_str(), header.size() + 1);
}
GitBlobHasher::~GitBlobHasher() = default;
GitBlobHasher::GitBlobHasher(GitBlobHasher&&) noexcept = default;
GitBlobHasher& GitBlobHasher::operator=(GitBlobHasher&&) noexcept = default;

void GitBlobHasher::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(m_impl->ctx, data.data(), data.size());
}
core::GitSha1 GitBlobHasher::finish() { return finish_ctx<20>(m_impl->ctx); }

}  // namespace hubcache::util
