#include "errors.hpp"

#include "headers.hpp"

#include <nlohmann/json.hpp>

namespace hubcache::hub {

ErrorAnswer answer_for(std::error_code ec) noexcept {
  if (ec.category() == hubcache_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::bad_request: return {400, "Bad request"};
      case errc::not_found: return {404, "Not found"};
      case errc::range_not_satisfiable: return {416, "Requested range not satisfiable"};
      case errc::method_not_allowed: return {405, "Method not allowed"};
      case errc::upstream_unavailable: return {502, "Upstream Hub unreachable"};
      case errc::upstream_timeout: return {504, "Upstream Hub timed out"};
      case errc::upstream_protocol: return {502, "Unexpected answer from the upstream Hub"};
      case errc::upstream_tls: return {502, "TLS failure talking to the upstream Hub"};
      case errc::integrity_mismatch: return {502, "Upstream content failed verification"};
      case errc::insufficient_storage: return {507, "Not enough cache space for this file"};
      case errc::storage_io: return {500, "Cache storage error"};
      case errc::cancelled: return {503, "Request cancelled"};
      case errc::shutting_down: return {503, "hubcache is shutting down"};
      case errc::timeout: return {504, "Timed out"};
      case errc::blob_available: return {500, "Internal error"};  // handled by the fill, never shown
    }
  }
  return {500, "Internal error"};
}

http::StringResponse error_response(unsigned status, std::string_view message, unsigned version) {
  http::StringResponse res{static_cast<http::bhttp::status>(status), version};
  res.set(http::bhttp::field::content_type, "application/json; charset=utf-8");
  res.set("X-Error-Message", message);
  add_cors_headers(res.base());
  res.body() = nlohmann::json{{"error", message}}.dump();
  return res;
}

http::StringResponse error_response(std::error_code ec, unsigned version) {
  const auto a = answer_for(ec);
  return error_response(a.status, a.message, version);
}

}  // namespace hubcache::hub
