// Error vocabulary of hubcache.
//
// Every failure on the data path is a std::error_code; functions that can fail
// return hubcache::result<T> (boost::system::result). The mapping from these
// codes to HTTP status and X-Error-Code lives in exactly one table at the edge
// (src/hub/errors.cpp). Exceptions are only used at startup (bad config).
//
// Thread safety: everything here is immutable and safe to use from any thread.
#pragma once

#include <boost/system/result.hpp>

#include <system_error>
#include <type_traits>

namespace hubcache {

enum class errc {
  bad_request = 1,          // malformed request from a client (400)
  not_found,                // route or object unknown to hubcache itself (404)
  range_not_satisfiable,    // Range outside the content (416)
  method_not_allowed,       // (405)
  upstream_unavailable,     // cannot connect / connection dropped (502)
  upstream_timeout,         // upstream did not answer within its deadline (504)
  upstream_protocol,        // upstream answered something we cannot use (502)
  upstream_tls,             // certificate or handshake failure (502)
  integrity_mismatch,       // bytes do not match the upstream digest or size (502)
  insufficient_storage,     // the cache cannot reserve space for a blob (507)
  storage_io,               // local disk failure (500)
  cancelled,                // the operation was abandoned
  shutting_down,            // the daemon is stopping (503)
  timeout,                  // a local deadline (client read/write) expired
  blob_available,           // BlobStore::create: the blob became readable meanwhile (another
                            // replica stored it); open() it instead of filling
};

const std::error_category& hubcache_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), hubcache_category()};
}

// boost::system::result stores a boost::system::error_code, which converts
// losslessly to and from std::error_code.
template <class T>
using result = boost::system::result<T, std::error_code>;

}  // namespace hubcache

template <>
struct std::is_error_code_enum<hubcache::errc> : std::true_type {};
