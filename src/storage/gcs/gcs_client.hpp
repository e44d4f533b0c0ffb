// The GCS JSON API operations the blob store needs, private to the storage
// module. Each call is one object operation; the client adds the bearer
// token, retries transport failures, 408, 429 and 5xx with exponential
// backoff, and turns a 401 into one retry with a fresh token. Statuses that
// are answers (404, 412) come back as values; anything else unexpected is
// logged with GCS's error message and returned as errc::storage_io.
//
// Object names are percent-encoded completely (a '/' in a name is %2F), as
// the JSON API requires.
//
// Thread safety: all calls are safe from any thread and coroutine; the client
// itself is immutable after construction.
#pragma once

#include <hubcache/core/error.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/gcs_credentials.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace hubcache::storage::gcs {

namespace http = boost::beast::http;

struct ObjectInfo {
  std::string name;
  std::uint64_t size = 0;
  std::int64_t generation = 0;
  std::string md5_hash;  // base64, as GCS reports it; empty when absent
};

struct ObjectPage {
  std::vector<ObjectInfo> objects;
  std::string next_page_token;  // empty on the last page
};

// Bytes [offset, offset + length) of the content being uploaded. Called in
// order of increasing offset, but a failed chunk is read again.
using ContentReader = std::function<net::awaitable<result<std::string>>(std::uint64_t offset, std::size_t length)>;

struct ClientConfig {
  upstream::Url endpoint;  // its target is the base path ("/" for none)
  std::string bucket;
  std::uint64_t chunk_size = 0;  // resumable chunk and multipart limit; a multiple of 256 KiB
  GcsRetryPolicy retry;
};

class Client {
 public:
  Client(std::shared_ptr<upstream::HttpClient> http, TokenSourcePtr tokens, ClientConfig config);

  // The object's metadata; nullopt on 404.
  net::awaitable<result<std::optional<ObjectInfo>>> get_object(const std::string& name) const;
  // Deletes the object if its live generation is `generation`. false when it
  // is absent or has another generation.
  net::awaitable<result<bool>> delete_object(const std::string& name, std::int64_t generation) const;
  // Objects whose names start with `prefix`, in name order.
  net::awaitable<result<ObjectPage>> list_objects(const std::string& prefix, const std::string& page_token,
                                                  unsigned max_results) const;
  // A response whose body is the object's bytes from `offset` to its end.
  // The body is not retried: on a failure while reading it, call again at
  // the offset reached.
  net::awaitable<result<upstream::ResponsePtr>> read_object(const std::string& name, std::uint64_t offset) const;
  // Creates object `name` with `size` bytes from `read` and the fields of
  // `resource` (an object resource; its name is set here), unless an object
  // of that name exists (ifGenerationMatch=0). Up to chunk_size bytes go in
  // one multipart request; more go through a resumable session in chunks,
  // after a metadata GET that skips the upload when the object exists.
  // Returns the new object, or nullopt when one existed.
  net::awaitable<result<std::optional<ObjectInfo>>> create_object(const std::string& name,
                                                                  const nlohmann::json& resource, std::uint64_t size,
                                                                  const ContentReader& read) const;
  // Writes a small object in one multipart request. `if_generation`: 0 =
  // only if absent, G = only if the live generation is G, nullopt = always
  // (overwrite). Returns the new object, or nullopt when the precondition
  // failed (412).
  net::awaitable<result<std::optional<ObjectInfo>>> write_small(const std::string& name, const nlohmann::json& resource,
                                                                std::string data,
                                                                std::optional<std::int64_t> if_generation) const;
  // The whole content of a small object and its generation; nullopt on 404.
  // errc::storage_io when it is larger than `limit` bytes.
  struct SmallObject {
    std::string data;
    std::int64_t generation = 0;
  };
  net::awaitable<result<std::optional<SmallObject>>> read_small(const std::string& name, std::size_t limit) const;

  const GcsRetryPolicy& retry_policy() const noexcept { return m_config.retry; }
  // Sleeps before retry number `attempt` (1 = the first retry): exponential,
  // capped, with jitter so that many clients failing together spread out.
  net::awaitable<void> backoff(unsigned attempt) const;

 private:
  enum class Retry { yes, no };
  // One request with token and retries; returns the first answer that is
  // not retried (whatever its status) or the last failure.
  net::awaitable<result<upstream::ResponsePtr>> send(const upstream::Request& request, Retry retry = Retry::yes) const;
  // GET `target`: the response when it is 200, nullopt on 404; any other
  // status is logged as `what` and returned as errc::storage_io.
  net::awaitable<result<std::optional<upstream::ResponsePtr>>> get_found(const std::string& target,
                                                                         const std::string& what) const;
  // Logs an unexpected answer (status and GCS's message) as `what`; returns
  // errc::storage_io.
  net::awaitable<std::error_code> unexpected(upstream::Response& response, const std::string& what) const;
  net::awaitable<result<std::optional<ObjectInfo>>> insert_multipart(const std::string& name, const std::string& json,
                                                                     std::string data,
                                                                     std::optional<std::int64_t> if_generation) const;
  net::awaitable<result<std::optional<ObjectInfo>>> upload_resumable(const std::string& name, const std::string& json,
                                                                     std::uint64_t size,
                                                                     const ContentReader& read) const;

  upstream::Url url(const std::string& target) const;
  std::string object_target(const std::string& name) const;
  std::string upload_target(std::string_view upload_type, std::optional<std::int64_t> if_generation) const;

  const std::shared_ptr<upstream::HttpClient> m_http;
  const TokenSourcePtr m_tokens;
  const ClientConfig m_config;
  const std::string m_base_path;  // endpoint path without a trailing '/'
};

// Standard base64 (with padding), as GCS reports md5Hash.
std::string base64_encode(std::span<const unsigned char> data);

// Maps a transport error to the storage vocabulary: deadlines ->
// errc::timeout, hubcache's own storage codes unchanged, everything else ->
// errc::storage_io.
std::error_code to_storage_error(std::error_code ec) noexcept;

}  // namespace hubcache::storage::gcs
