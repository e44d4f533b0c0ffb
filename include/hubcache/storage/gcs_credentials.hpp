// OAuth2 access tokens for the Google Cloud Storage JSON API.
//
// A TokenSource hands out the bearer token that goes into Authorization. It
// fetches one on first use, caches it, and fetches a new one shortly before
// the cached one expires (see CachedToken in gcs_credentials.cpp for the
// margin). Three sources exist:
//   - the metadata server (GCE, GKE Workload Identity): GET
//     <metadata>/computeMetadata/v1/instance/service-accounts/default/token
//     with `Metadata-Flavor: Google`;
//   - a service-account JSON key: a JWT signed RS256 with the key (OpenSSL)
//     and exchanged at the key's token_uri (RFC 7523 jwt-bearer grant);
//   - none, for emulators and endpoints that need no credentials.
// No source retries: the GCS request layer retries whole requests, a failed
// token fetch included.
//
// Tokens, JWTs and keys are never logged, and errors never carry them.
//
// Thread safety: token() and invalidate() may be called from any thread and
// coroutine. Concurrent callers share one cached token; while one refreshes
// it, the others keep using the old token if it has not expired yet.
#pragma once

#include <hubcache/core/error.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace hubcache::storage {

namespace net = boost::asio;

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The access token to send as "Authorization: Bearer <token>", or an empty
  // string when this source sends no credentials. Errors: errc::timeout when
  // the token endpoint did not answer in time, errc::storage_io for every
  // other failure (unreachable, refused, unusable answer).
  virtual net::awaitable<result<std::string>> token() = 0;
  // Drops the cached token, so the next token() fetches a new one. Called
  // when GCS answers 401 (a token revoked or expired early).
  virtual void invalidate() noexcept = 0;
};
using TokenSourcePtr = std::shared_ptr<TokenSource>;

// Read and write access to objects, nothing else (no bucket administration).
inline constexpr std::string_view k_gcs_read_write_scope = "https://www.googleapis.com/auth/devstorage.read_write";

// A source without credentials: token() is always "".
TokenSourcePtr make_anonymous_token_source();

// metadata_url: the metadata server's origin, e.g. "http://metadata.google.internal"
// (tests use a local fake). Throws std::invalid_argument on a malformed URL.
TokenSourcePtr make_metadata_token_source(std::shared_ptr<upstream::HttpClient> http, std::string_view metadata_url);

// key_json: the content of a service-account key file (type
// "service_account", client_email, private_key as an RSA PEM, optional
// private_key_id and token_uri, which defaults to Google's). Throws
// std::invalid_argument when it is not such a key (startup only; the message
// never contains key material).
TokenSourcePtr make_service_account_token_source(std::shared_ptr<upstream::HttpClient> http, std::string_view key_json,
                                                 std::string_view scope = k_gcs_read_write_scope);

}  // namespace hubcache::storage
