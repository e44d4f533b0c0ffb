#include <hubcache/core/error.hpp>

#include <string>

namespace hubcache {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "hubcache"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::bad_request: return "bad request";
      case errc::not_found: return "not found";
      case errc::range_not_satisfiable: return "range not satisfiable";
      case errc::method_not_allowed: return "method not allowed";
      case errc::upstream_unavailable: return "upstream unavailable";
      case errc::upstream_timeout: return "upstream timed out";
      case errc::upstream_protocol: return "unexpected answer from upstream";
      case errc::upstream_tls: return "TLS failure talking to upstream";
      case errc::integrity_mismatch: return "content does not match its digest";
      case errc::insufficient_storage: return "not enough cache space";
      case errc::storage_io: return "cache storage I/O error";
      case errc::cancelled: return "cancelled";
      case errc::shutting_down: return "shutting down";
      case errc::timeout: return "timed out";
      case errc::blob_available: return "blob already available";
    }
    return "unknown hubcache error";
  }
};

}  // namespace

const std::error_category& hubcache_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace hubcache
