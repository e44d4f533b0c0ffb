#include "gcs_client.hpp"

#include "../posix_file.hpp"

#include <hubcache/util/percent.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <random>

namespace hubcache::storage::gcs {
namespace {

using nlohmann::json;

// Object resources are about 1 KiB; 1 MiB bounds a broken server.
constexpr std::size_t k_json_limit = 1024 * 1024;
// A list page is at most 1000 resources: about 100 KiB with `fields`, about
// 1 MiB without (emulators ignore `fields`).
constexpr std::size_t k_list_limit = 16 * 1024 * 1024;
// Error bodies are read only for their message.
constexpr std::size_t k_error_limit = 64 * 1024;
// Only what the store uses; makes list pages about ten times smaller.
constexpr std::string_view k_list_fields = "items(name,size,generation,md5Hash),nextPageToken";

std::string encode(std::string_view s) { return util::percent_encode(s, util::KeepSlash::no); }

// For logs: session URLs carry the upload id (a capability) in the query.
std::string_view path_only(const std::string& target) {
  return std::string_view(target).substr(0, target.find('?'));
}

bool retryable_status(unsigned status) { return status == 408 || status == 429 || (status >= 500 && status <= 599); }

bool retryable_error(std::error_code ec) {
  return ec == errc::upstream_unavailable || ec == errc::upstream_timeout || ec == errc::timeout ||
         ec == errc::storage_io;  // token fetch failures: the token endpoint may recover too
}

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::string string_field(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// GCS sends size and generation as decimal strings (they exceed 2^53).
std::optional<ObjectInfo> parse_object(const json& doc) {
  if (!doc.is_object()) return std::nullopt;
  ObjectInfo info;
  info.name = string_field(doc, "name");
  const auto size = parse_u64(string_field(doc, "size"));
  const auto generation = parse_u64(string_field(doc, "generation"));
  if (info.name.empty() || !size || !generation || *generation > INT64_MAX) return std::nullopt;
  info.size = *size;
  info.generation = static_cast<std::int64_t>(*generation);
  info.md5_hash = string_field(doc, "md5Hash");
  return info;
}

// Reads a bounded body and parses it as an object resource.
net::awaitable<result<ObjectInfo>> read_object_resource(upstream::Response& response, const std::string& what) {
  auto body = co_await response.read_all(k_json_limit);
  if (!body) co_return to_storage_error(body.error());
  auto info = parse_object(json::parse(*body, nullptr, /*allow_exceptions=*/false));
  if (!info) {
    spdlog::warn("gcs: {}: unusable object resource in the answer", what);
    co_return make_error_code(errc::storage_io);
  }
  co_return *info;
}

// Reads (and drops) a small body so the connection can be reused.
net::awaitable<void> discard_body(upstream::Response& response) {
  auto ignored = co_await response.read_all(k_error_limit);
  (void)ignored;
}

// "bytes=0-N" from a 308: the session has N+1 bytes. No header: none yet.
std::optional<std::uint64_t> persisted_bytes(const upstream::Response& response) {
  const auto it = response.headers().find(http::field::range);
  if (it == response.headers().end()) return 0;
  const std::string_view value = it->value();
  constexpr std::string_view k_prefix = "bytes=0-";
  if (value.substr(0, k_prefix.size()) != k_prefix) return std::nullopt;
  const auto last = parse_u64(value.substr(k_prefix.size()));
  if (!last) return std::nullopt;
  return *last + 1;
}

}  // namespace

std::string base64_encode(std::span<const unsigned char> data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(), static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::error_code to_storage_error(std::error_code ec) noexcept {
  if (ec == errc::upstream_timeout || ec == errc::timeout) return errc::timeout;
  if (ec == errc::storage_io || ec == errc::integrity_mismatch || ec == errc::insufficient_storage ||
      ec == errc::cancelled) {
    return ec;
  }
  return errc::storage_io;
}

Client::Client(std::shared_ptr<upstream::HttpClient> http, TokenSourcePtr tokens, ClientConfig config)
    : m_http(std::move(http)),
      m_tokens(std::move(tokens)),
      m_config(std::move(config)),
      m_base_path(m_config.endpoint.target == "/" ? std::string() : m_config.endpoint.target) {}

upstream::Url Client::url(const std::string& target) const {
  upstream::Url url = m_config.endpoint;
  url.target = m_base_path + target;
  return url;
}

std::string Client::object_target(const std::string& name) const {
  return "/storage/v1/b/" + encode(m_config.bucket) + "/o/" + encode(name);
}

std::string Client::upload_target(std::string_view upload_type, std::optional<std::int64_t> if_generation) const {
  // Blobs use ifGenerationMatch=0: create only, never overwrite. It also
  // makes a retried upload safe: if the first attempt did land, the retry
  // gets 412.
  std::string target = "/upload/storage/v1/b/" + encode(m_config.bucket) + "/o?uploadType=" + std::string(upload_type);
  if (if_generation) target += "&ifGenerationMatch=" + std::to_string(*if_generation);
  return target;
}

net::awaitable<void> Client::backoff(unsigned attempt) const {
  using std::chrono::milliseconds;
  thread_local std::minstd_rand random{std::random_device{}()};
  const auto& policy = m_config.retry;
  milliseconds delay = policy.initial_backoff;
  for (unsigned i = 1; i < attempt && delay < policy.max_backoff; ++i) delay *= 2;
  delay = std::min(delay, policy.max_backoff);
  const auto jitter = std::uniform_int_distribution<milliseconds::rep>(0, delay.count() / 2)(random);
  net::steady_timer timer(co_await net::this_coro::executor, delay - milliseconds(jitter));
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
}

net::awaitable<result<upstream::ResponsePtr>> Client::send(const upstream::Request& request, Retry retry) const {
  const unsigned max_attempts = retry == Retry::yes ? std::max(1u, m_config.retry.max_attempts) : 1;
  const auto method = http::to_string(request.method);
  const auto path = path_only(request.url.target);
  bool reauthorized = false;
  for (unsigned attempt = 1;; ++attempt) {
    std::error_code failure;
    auto token = co_await m_tokens->token();
    if (!token) {
      failure = token.error();
    } else {
      upstream::Request copy = request;
      // Never hand our token to another origin (a session URL could name one).
      if (!token->empty() && copy.url.same_origin(m_config.endpoint)) {
        copy.headers.set(http::field::authorization, "Bearer " + *token);
      }
      auto response = co_await m_http->send(std::move(copy));
      if (!response) {
        failure = response.error();
      } else {
        const unsigned status = (*response)->status();
        // A token revoked or expired early: fetch a new one, once.
        if (status == 401 && !token->empty() && !reauthorized) {
          reauthorized = true;
          m_tokens->invalidate();
          --attempt;
          continue;
        }
        if (!retryable_status(status) || attempt >= max_attempts) co_return std::move(*response);
        spdlog::debug("gcs: {} {}: HTTP {}, retry {}/{}", method, path, status, attempt, max_attempts - 1);
        co_await backoff(attempt);
        continue;
      }
    }
    if (!retryable_error(failure) || attempt >= max_attempts) {
      spdlog::warn("gcs: {} {}: {} (attempt {})", method, path, failure.message(), attempt);
      co_return to_storage_error(failure);
    }
    spdlog::debug("gcs: {} {}: {}, retry {}/{}", method, path, failure.message(), attempt, max_attempts - 1);
    co_await backoff(attempt);
  }
}

net::awaitable<std::error_code> Client::unexpected(upstream::Response& response, const std::string& what) const {
  std::string message;
  auto body = co_await response.read_all(k_error_limit);
  if (body) {
    // {"error": {"code": 403, "message": "..."}}; else the start of the text.
    const auto doc = json::parse(*body, nullptr, /*allow_exceptions=*/false);
    const auto error = doc.is_object() ? doc.find("error") : doc.end();
    message = error != doc.end() && error->is_object() ? string_field(*error, "message") : body->substr(0, 200);
  }
  spdlog::warn("gcs: {}: HTTP {} {}", what, response.status(), message);
  co_return make_error_code(errc::storage_io);
}

net::awaitable<result<std::optional<upstream::ResponsePtr>>> Client::get_found(const std::string& target,
                                                                               const std::string& what) const {
  const upstream::Request request{http::verb::get, url(target), {}, {}};
  auto response = co_await send(request);
  if (!response) co_return response.error();
  if ((*response)->status() == 404) {
    co_await discard_body(**response);
    co_return std::optional<upstream::ResponsePtr>();
  }
  if ((*response)->status() != 200) co_return co_await unexpected(**response, what);
  co_return std::optional<upstream::ResponsePtr>(std::move(*response));
}

net::awaitable<result<std::optional<ObjectInfo>>> Client::get_object(const std::string& name) const {
  const std::string what = "get " + name;
  const std::string target = object_target(name);
  auto response = co_await get_found(target, what);
  if (!response) co_return response.error();
  if (!*response) co_return std::nullopt;
  auto info = co_await read_object_resource(***response, what);
  if (!info) co_return info.error();
  co_return std::optional<ObjectInfo>(std::move(*info));
}

net::awaitable<result<bool>> Client::delete_object(const std::string& name, std::int64_t generation) const {
  const upstream::Request request{
      http::verb::delete_, url(object_target(name) + "?ifGenerationMatch=" + std::to_string(generation)), {}, {}};
  auto response = co_await send(request);
  // (result<bool> would take a bare error_code as a bool.)
  if (!response) co_return result<bool>(boost::system::in_place_error, response.error());
  const unsigned status = (*response)->status();
  if (status == 204 || status == 200 || status == 404 || status == 412) {
    co_await discard_body(**response);
    co_return status == 204 || status == 200;
  }
  const auto failure = co_await unexpected(**response, "delete " + name);
  co_return result<bool>(boost::system::in_place_error, failure);
}

net::awaitable<result<ObjectPage>> Client::list_objects(const std::string& prefix, const std::string& page_token,
                                                        unsigned max_results) const {
  std::string target = "/storage/v1/b/" + encode(m_config.bucket) + "/o?prefix=" + encode(prefix) +
                       "&maxResults=" + std::to_string(max_results) + "&fields=" + encode(k_list_fields);
  if (!page_token.empty()) target += "&pageToken=" + encode(page_token);
  const upstream::Request request{http::verb::get, url(target), {}, {}};
  auto response = co_await send(request);
  if (!response) co_return response.error();
  if ((*response)->status() != 200) co_return co_await unexpected(**response, "list " + prefix);
  auto body = co_await (*response)->read_all(k_list_limit);
  if (!body) co_return to_storage_error(body.error());

  const auto doc = json::parse(*body, nullptr, /*allow_exceptions=*/false);
  ObjectPage page;
  const auto items = doc.is_object() ? doc.find("items") : doc.end();
  if (!doc.is_object() || (items != doc.end() && !items->is_array())) {
    spdlog::warn("gcs: list {}: unusable answer", prefix);
    co_return make_error_code(errc::storage_io);
  }
  if (items != doc.end()) {
    for (const auto& item : *items) {
      auto info = parse_object(item);
      if (!info) {
        spdlog::warn("gcs: list {}: unusable object resource", prefix);
        co_return make_error_code(errc::storage_io);
      }
      page.objects.push_back(std::move(*info));
    }
  }
  page.next_page_token = string_field(doc, "nextPageToken");
  co_return page;
}

net::awaitable<result<upstream::ResponsePtr>> Client::read_object(const std::string& name,
                                                                  std::uint64_t offset) const {
  upstream::Request request{http::verb::get, url(object_target(name) + "?alt=media"), {}, {}};
  // Open-ended, so a sequential reader needs one GET for the whole blob.
  request.headers.set(http::field::range, "bytes=" + std::to_string(offset) + "-");
  auto response = co_await send(request);
  if (!response) co_return response.error();
  const unsigned status = (*response)->status();
  if (status == 206) {
    const auto range = (*response)->headers().find(http::field::content_range);
    const std::string expected = "bytes " + std::to_string(offset) + "-";
    if (range != (*response)->headers().end() && range->value().substr(0, expected.size()) == expected) {
      co_return std::move(*response);
    }
    spdlog::warn("gcs: read {}: 206 without the requested Content-Range", name);
    co_return make_error_code(errc::storage_io);
  }
  if (status == 200 && offset == 0) co_return std::move(*response);
  co_return co_await unexpected(**response, "read " + name + " at " + std::to_string(offset));
}

net::awaitable<result<std::optional<ObjectInfo>>> Client::create_object(const std::string& name,
                                                                        const nlohmann::json& resource,
                                                                        std::uint64_t size,
                                                                        const ContentReader& read) const {
  nlohmann::json named = resource;
  named["name"] = name;
  const std::string metadata = named.dump();
  if (size <= m_config.chunk_size) {
    auto data = co_await read(0, static_cast<std::size_t>(size));
    if (!data) co_return data.error();
    co_return co_await insert_multipart(name, metadata, std::move(*data), std::int64_t{0});
  }
  // Skip uploading a large blob that is already there. (The precondition
  // would refuse it anyway, but only after the first chunk has been sent.)
  auto existing = co_await get_object(name);
  if (!existing) co_return existing.error();
  if (*existing) co_return std::nullopt;
  co_return co_await upload_resumable(name, metadata, size, read);
}

net::awaitable<result<std::optional<ObjectInfo>>> Client::insert_multipart(const std::string& name,
                                                                           const std::string& json,
                                                                           std::string data,
                                                                           std::optional<std::int64_t> if_generation) const {
  // A boundary that does not occur in the data. The emulator's parser wants
  // boundary= last in Content-Type and exactly one header line per part; GCS
  // accepts that form too.
  std::string boundary;
  do {
    boundary = "hubcache-" + detail::random_hex();
  } while (data.find(boundary) != std::string::npos);
  std::string body;
  body.reserve(data.size() + json.size() + 4 * boundary.size() + 128);
  body.append("--").append(boundary).append("\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n");
  body.append(json).append("\r\n--").append(boundary).append("\r\nContent-Type: application/octet-stream\r\n\r\n");
  body.append(data).append("\r\n--").append(boundary).append("--\r\n");
  data = std::string();  // the body has it now: one copy less in memory while sending

  upstream::Request request{http::verb::post, url(upload_target("multipart", if_generation)), {}, std::move(body)};
  request.headers.set(http::field::content_type, "multipart/related; boundary=" + boundary);
  auto response = co_await send(request);
  if (!response) co_return response.error();
  const unsigned status = (*response)->status();
  if (status == 412) {
    co_await discard_body(**response);
    co_return std::nullopt;
  }
  if (status != 200 && status != 201) co_return co_await unexpected(**response, "upload " + name);
  auto info = co_await read_object_resource(**response, "upload " + name);
  if (!info) co_return info.error();
  co_return std::optional<ObjectInfo>(std::move(*info));
}

net::awaitable<result<std::optional<ObjectInfo>>> Client::write_small(const std::string& name,
                                                                      const nlohmann::json& resource, std::string data,
                                                                      std::optional<std::int64_t> if_generation) const {
  nlohmann::json named = resource;
  named["name"] = name;
  const std::string metadata = named.dump();
  co_return co_await insert_multipart(name, metadata, std::move(data), if_generation);
}

net::awaitable<result<std::optional<Client::SmallObject>>> Client::read_small(const std::string& name,
                                                                              std::size_t limit) const {
  const std::string target = object_target(name) + "?alt=media";
  const std::string what = "read " + name;
  auto found = co_await get_found(target, what);
  if (!found) co_return found.error();
  if (!*found) co_return std::nullopt;
  upstream::ResponsePtr response = std::move(**found);
  SmallObject out;
  const auto generation = response->headers().find("x-goog-generation");
  if (generation != response->headers().end()) {
    const auto text = generation->value();
    std::from_chars(text.data(), text.data() + text.size(), out.generation);
  }
  auto body = co_await response->read_all(limit);
  if (!body) co_return to_storage_error(body.error());
  out.data = std::move(*body);
  co_return std::optional<SmallObject>(std::move(out));
}

net::awaitable<result<std::optional<ObjectInfo>>> Client::upload_resumable(const std::string& name,
                                                                           const std::string& json,
                                                                           std::uint64_t size,
                                                                           const ContentReader& read) const {
  const std::string what = "upload " + name;
  upstream::Request start{http::verb::post, url(upload_target("resumable", std::int64_t{0})), {}, json};
  start.headers.set(http::field::content_type, "application/json; charset=UTF-8");
  start.headers.set("X-Upload-Content-Type", "application/octet-stream");
  start.headers.set("X-Upload-Content-Length", std::to_string(size));
  auto started = co_await send(start);
  if (!started) co_return started.error();
  if ((*started)->status() == 412) {
    co_await discard_body(**started);
    co_return std::nullopt;
  }
  const auto location = (*started)->headers().find(http::field::location);
  if ((*started)->status() != 200 || location == (*started)->headers().end()) {
    co_return co_await unexpected(**started, what + " (session start)");
  }
  auto session = m_config.endpoint.resolve(location->value());
  co_await discard_body(**started);
  if (!session) {
    spdlog::warn("gcs: {}: unusable session URL", what);
    co_return make_error_code(errc::storage_io);
  }

  // Each chunk is sent once. On a failure we wait, ask the session how much
  // it has (GCS may have kept part of the chunk) and go on from there; the
  // attempt count starts again whenever the session makes progress.
  std::uint64_t offset = 0;
  unsigned failures = 0;
  const std::string total = "/" + std::to_string(size);
  for (;;) {
    upstream::ResponsePtr answer;
    const std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(m_config.chunk_size, size - offset));
    auto chunk = co_await read(offset, length);
    if (!chunk) co_return chunk.error();
    upstream::Request put{http::verb::put, *session, {}, std::move(*chunk)};
    put.headers.set(http::field::content_range,
                    "bytes " + std::to_string(offset) + "-" + std::to_string(offset + length - 1) + total);
    auto sent = co_await send(put, Retry::no);
    if (sent && !retryable_status((*sent)->status())) {
      answer = std::move(*sent);
    } else {
      if (++failures >= std::max(1u, m_config.retry.max_attempts)) {
        spdlog::warn("gcs: {}: giving up after {} failed chunks", what, failures);
        co_return sent ? make_error_code(errc::storage_io) : to_storage_error(sent.error());
      }
      co_await backoff(failures);
      upstream::Request query{http::verb::put, *session, {}, {}};
      query.headers.set(http::field::content_range, "bytes */" + std::to_string(size));
      auto queried = co_await send(query);
      if (!queried) co_return queried.error();
      answer = std::move(*queried);
    }

    const unsigned status = answer->status();
    if (status == 200 || status == 201) {
      auto info = co_await read_object_resource(*answer, what);
      if (!info) co_return info.error();
      co_return std::optional<ObjectInfo>(std::move(*info));
    }
    if (status == 412) {  // someone else created it while we uploaded
      co_await discard_body(*answer);
      co_return std::nullopt;
    }
    if (status != 308) co_return co_await unexpected(*answer, what);
    const auto persisted = persisted_bytes(*answer);
    co_await discard_body(*answer);
    if (!persisted || *persisted > size) {
      spdlog::warn("gcs: {}: unusable Range in a 308", what);
      co_return make_error_code(errc::storage_io);
    }
    if (*persisted > offset) failures = 0;
    offset = *persisted;
    if (offset == size) {
      // Every byte is there but the session did not finish: GCS finishes
      // on the chunk that completes the declared total, so this is broken.
      spdlog::warn("gcs: {}: session has all bytes but no object", what);
      co_return make_error_code(errc::storage_io);
    }
  }
}

}  // namespace hubcache::storage::gcs
