#include <hubcache/upstream/http_client.hpp>

#include "connection.hpp"
#include "connection_pool.hpp"
#include "proxy.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/error.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace hubcache::upstream {
namespace {

// Response heads from the Hub are a few KiB; 64 KiB leaves room for long
// signed Location URLs and Link headers without letting a broken upstream
// make us buffer without bound.
constexpr std::uint32_t k_header_limit = 64 * 1024;
// Interim (1xx) answers skipped before a final one; real servers send one or two.
constexpr unsigned k_max_interim = 8;

// The plain executor of the io_context `ex` runs on (a strand's context
// included), or `ex` itself when it is not an io_context's.
net::any_io_executor loop_executor(const net::any_io_executor& ex) {
  using Plain = net::io_context::executor_type;
  if (const auto* strand = ex.target<net::strand<Plain>>()) return strand->get_inner_executor();
  return ex;
}

// Pool keys start with the loop's identity: a pooled connection is only
// handed to a caller on the loop it was opened on.
std::string loop_tag(const net::any_io_executor& loop) {
  return std::to_string(reinterpret_cast<std::uintptr_t>(&net::query(loop, net::execution::context))) + " ";
}
// read_all reads through this window; the body itself is bounded by `limit`.
constexpr std::size_t k_read_all_chunk = 16 * 1024;
// Streamed request bodies go through one buffer of this size per request.
constexpr std::size_t k_stream_buffer = 256 * 1024;

// The Host header value: the origin without the scheme.
std::string host_header(const Url& url) {
  const std::string origin = url.origin();
  return origin.substr(origin.find("://") + 3);
}

// For logs: signed CDN URLs carry credentials in their query string.
std::string_view path_only(const std::string& target) {
  return std::string_view(target).substr(0, target.find('?'));
}

bool idempotent(http::verb method) {
  using V = http::verb;
  return method == V::get || method == V::head || method == V::options || method == V::put ||
         method == V::delete_ || method == V::trace;
}

// The parser validated Content-Length while reading the head (one value, all
// digits, not combined with chunked). Read from the fields instead of
// basic_parser::content_length(), whose boost::optional trips GCC 12's
// -Wmaybe-uninitialized in the sanitizer build.
std::optional<std::uint64_t> parsed_content_length(const http::fields& fields) {
  const auto it = fields.find(http::field::content_length);
  if (it == fields.end()) return std::nullopt;
  const std::string_view text = it->value();
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// The body-reading side of one exchange. Owns the connection until the body
// has been read to its end, then hands it back to the pool if both sides
// allow keep-alive; any failure or early destruction closes it instead.
class ResponseImpl final : public Response {
 public:
  ResponseImpl(std::shared_ptr<ConnectionPool> pool, std::string origin, ConnectionPtr conn, bool head_request,
               bool request_keep_alive, std::chrono::milliseconds io_timeout, std::chrono::milliseconds head_timeout)
      : m_pool(std::move(pool)),
        m_origin(std::move(origin)),
        m_conn(std::move(conn)),
        m_head_request(head_request),
        m_request_keep_alive(request_keep_alive),
        m_io_timeout(io_timeout),
        m_head_timeout(head_timeout) {
    reset_parser();
  }

  // Reads the response head. Raw error so the client can recognise a stale
  // pooled connection; got_some() tells whether any response byte arrived.
  net::awaitable<boost::system::error_code> read_head() {
    // Interim answers (100 Continue; 103 Early Hints, which a CDN may send
    // unasked) come before the final one on the same connection: skipped.
    const auto deadline = std::chrono::steady_clock::now() + m_head_timeout;  // for all of them together
    for (unsigned interim = 0;; ++interim) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      const auto ec = co_await m_conn->read_header(*m_parser, std::max(left, std::chrono::milliseconds(1)));
      if (ec) {
        m_conn.reset();
        co_return ec;
      }
      const unsigned status = m_parser->get().result_int();
      if (status >= 200) break;
      m_got_interim = true;
      // 101 switches protocols, which we never ask for; endless interim
      // answers would hold us to the deadline of each.
      if (status == 101 || interim == k_max_interim) {
        m_conn.reset();
        co_return http::error::bad_status;
      }
      reset_parser();
    }
    m_content_length = parsed_content_length(m_parser->get());
    if (m_parser->is_done()) {
      finish();  // HEAD, 204, 304 and Content-Length: 0 have no body to wait for
    }
    co_return boost::system::error_code{};
  }
  bool got_some() const noexcept { return m_got_interim || m_parser->got_some(); }

  unsigned status() const noexcept override { return m_parser->get().result_int(); }
  const http::fields& headers() const noexcept override { return m_parser->get().base(); }
  std::optional<std::uint64_t> content_length() const noexcept override { return m_content_length; }
  std::size_t waiting() const noexcept override { return m_conn ? m_conn->waiting() : 0; }
  void shorten_read_timeout(std::chrono::milliseconds timeout) noexcept override {
    m_io_timeout = std::min(m_io_timeout, timeout);
  }

  net::awaitable<result<std::size_t>> read_some(std::span<std::byte> buf) override {
    if (m_error) co_return m_error;
    if (m_done) co_return 0;
    // 0 means "end of body", so an empty window cannot be served.
    if (buf.empty()) co_return make_error_code(errc::bad_request);
    for (;;) {
      auto& body = m_parser->get().body();
      body.data = buf.data();
      body.size = buf.size();
      auto ec = co_await m_conn->read_some(*m_parser, m_io_timeout);
      const std::size_t n = buf.size() - body.size;
      body.data = nullptr;  // the caller's buffer is only lent for this call
      if (ec == http::error::need_buffer) ec = {};  // the window is full: not an error
      if (ec) {
        fail(map_error(ec));
        co_return m_error;
      }
      if (m_parser->is_done()) finish();
      // A read may consume only framing (a chunk header); keep going until
      // body bytes arrive or the body ends.
      if (n > 0 || m_done) co_return n;
    }
  }

  net::awaitable<result<std::string>> read_all(std::size_t limit) override {
    const auto length = content_length();
    if (length && *length > limit && !m_done) {
      fail(make_error_code(errc::upstream_protocol));
      co_return m_error;
    }
    std::string out;
    std::array<std::byte, k_read_all_chunk> chunk;
    for (;;) {
      auto n = co_await read_some(chunk);
      if (!n) co_return n.error();
      if (*n == 0) co_return out;
      if (out.size() + *n > limit) {
        fail(make_error_code(errc::upstream_protocol));
        co_return m_error;
      }
      out.append(reinterpret_cast<const char*>(chunk.data()), *n);
    }
  }

 private:
  void finish() {
    m_done = true;
    // Leftover bytes would be read as the start of the next response.
    if (m_parser->keep_alive() && m_request_keep_alive && !m_conn->has_buffered_input()) {
      m_pool->put(m_origin, std::move(m_conn));
    }
    m_conn.reset();
  }
  void fail(std::error_code ec) {
    m_error = ec;
    m_conn.reset();
  }
  void reset_parser() {
    m_parser.emplace();
    m_parser->header_limit(k_header_limit);
    // No limit: bodies are model files of many GB; callers bound what they keep.
    m_parser->body_limit(boost::none);
    // A HEAD response's Content-Length describes the GET body, which is not sent.
    m_parser->skip(m_head_request);
  }

  std::shared_ptr<ConnectionPool> m_pool;
  std::string m_origin;
  ConnectionPtr m_conn;  // null once the body is done or failed
  std::optional<ResponseParser> m_parser;  // one per response read (interim ones included)
  bool m_got_interim = false;
  std::optional<std::uint64_t> m_content_length;  // set once the head is read
  bool m_head_request;
  bool m_request_keep_alive;
  std::chrono::milliseconds m_io_timeout;
  std::chrono::milliseconds m_head_timeout;  // for the response head (after the whole request went out)
  bool m_done = false;
  std::error_code m_error;
};

// ClientOptions' proxy strings, parsed once at startup.
struct Proxies {
  std::optional<Proxy> https;  // for https:// targets
  std::optional<Proxy> http;   // for http:// targets
  NoProxy no_proxy;
};

class Client final : public HttpClient {
 public:
  Client(ClientOptions options, std::unique_ptr<ssl::context> tls, Proxies proxies)
      : m_options(std::move(options)),
        m_tls(std::move(tls)),
        m_proxies(std::move(proxies)),
        m_pool(std::make_shared<ConnectionPool>(m_options.max_idle_per_host, m_options.idle_timeout)) {}

  net::awaitable<result<ResponsePtr>> send(Request request) override {
    const Url& url = request.url;
    if ((url.scheme != "http" && url.scheme != "https") || url.host.empty() || url.target.empty() ||
        url.target.front() != '/') {
      co_return make_error_code(errc::bad_request);
    }

    const std::string origin = url.origin();
    const Proxy* proxy = proxy_for(url);
    // Plain http through a proxy is a request to the proxy itself (absolute
    // form, RFC 9112 3.2.2, with the proxy's credentials); https goes
    // through a tunnel, inside which the proxy's credentials must not travel.
    const bool forward = proxy != nullptr && url.scheme == "http";

    OutgoingRequest message;
    static_cast<http::fields&>(message) = std::move(request.headers);
    // Method and target after the fields: assigning fields replaces them too.
    message.method(request.method);
    message.target(forward ? origin + url.target : url.target);
    message.version(11);
    if (forward && !proxy->authorization.empty()) {
      message.set(http::field::proxy_authorization, proxy->authorization);
    }
    if (message.find(http::field::host) == message.end()) message.set(http::field::host, host_header(url));
    if (message.find(http::field::user_agent) == message.end()) {
      message.set(http::field::user_agent, m_options.user_agent);
    }
    if (request.body_source) {
      if (request.body_length) message.content_length(*request.body_length);
      else message.chunked(true);
    } else {
      message.body() = std::move(request.body);
      message.prepare_payload();
    }

    // A connection through a proxy is only reusable for the same target and
    // proxy: a tunnel leads to one origin, and a forwarding connection
    // carries that proxy's credentials.
    // Connections are opened on the caller's event loop and pooled per loop,
    // so a connection's I/O completes on the thread that uses it.
    const net::any_io_executor loop = loop_executor(co_await net::this_coro::executor);
    std::string pool_key = loop_tag(loop);
    pool_key += proxy != nullptr ? origin + " via " + proxy->display : origin;
    if (proxy != nullptr) {
      spdlog::debug("upstream {} {}{} via proxy {}", message.method_string(), origin, path_only(url.target),
                    proxy->display);
    } else {
      spdlog::debug("upstream {} {}{}", message.method_string(), origin, path_only(url.target));
    }

    const bool repeatable = idempotent(request.method) || request.read_only;
    if (request.body_source) {
      co_return co_await send_streamed(loop, message, request.body_source, url, proxy, pool_key, repeatable);
    }

    // At most two attempts: the second only when a pooled connection turned
    // out to be closed before the server saw any of this request.
    for (int attempt = 0;; ++attempt) {
      ConnectionPtr conn = attempt == 0 ? m_pool->take(pool_key) : nullptr;
      const bool reused = conn != nullptr;
      if (!conn) {
        auto opened = co_await Connection::open(loop, url, proxy, m_tls.get(), m_options.connect_timeout);
        if (!opened) {
          spdlog::debug("upstream {}: connect failed: {}", origin, opened.error().message());
          co_return opened.error();
        }
        conn = std::move(*opened);
      }

      bool response_started = false;
      auto ec = co_await conn->write(message, m_options.io_timeout);
      if (!ec) {
        auto response =
            std::make_unique<ResponseImpl>(m_pool, pool_key, std::move(conn), request.method == http::verb::head,
                                           message.keep_alive(), m_options.io_timeout, head_timeout(repeatable));
        ec = co_await response->read_head();
        if (!ec) co_return ResponsePtr(std::move(response));
        response_started = response->got_some();
      }
      // A write failure or a close before any response byte on a reused
      // connection most likely means the server dropped it while idle and
      // never saw this request. Most likely: it may also have closed it
      // after acting on the request, so only a request that may be repeated
      // (RFC 9110 9.2.2) is sent again. A timeout might be a slow server
      // that is processing it: no retry then.
      const bool stale = reused && !response_started && repeatable &&
                         ec != beast::error::timeout && ec != net::error::operation_aborted;
      if (stale && attempt == 0) {
        spdlog::debug("upstream {}: pooled connection was closed ({}), retrying", origin, ec.message());
        continue;
      }
      spdlog::debug("upstream {}{}: {}", origin, path_only(url.target), ec.message());
      co_return map_error(ec);
    }
  }

 private:
  // An idempotent request is answered within io_timeout or retried by its
  // caller; another may take the Hub minutes (ClientOptions).
  std::chrono::milliseconds head_timeout(bool repeatable) const {
    return repeatable ? m_options.io_timeout : std::max(m_options.io_timeout, m_options.unsafe_answer_timeout);
  }

  // send() for a request whose body comes from `source`, on a new connection.
  net::awaitable<result<ResponsePtr>> send_streamed(net::any_io_executor loop, const OutgoingRequest& message,
                                                    const BodySource& source, const Url& url, const Proxy* proxy,
                                                    const std::string& pool_key, bool repeatable) {
    auto opened = co_await Connection::open(loop, url, proxy, m_tls.get(), m_options.connect_timeout);
    if (!opened) co_return opened.error();
    ConnectionPtr conn = std::move(*opened);
    if (auto ec = co_await conn->write_head(message, m_options.io_timeout)) co_return map_error(ec);
    const auto framing = message.chunked() ? Connection::Framing::chunked : Connection::Framing::length;
    std::vector<std::byte> buf(k_stream_buffer);
    std::uint64_t sent = 0;
    for (;;) {
      auto n = co_await source(buf);
      if (!n) co_return n.error();
      if (*n == 0) break;
      const std::span<const std::byte> piece(buf.data(), *n);
      if (auto ec = co_await conn->write_body(piece, framing, m_options.io_timeout)) co_return map_error(ec);
      sent += *n;
    }
    if (framing == Connection::Framing::chunked) {
      if (auto ec = co_await conn->write_body({}, framing, m_options.io_timeout)) co_return map_error(ec);
    }
    spdlog::debug("upstream {}{}: streamed a {} byte body", url.origin(), path_only(url.target), sent);
    auto response = std::make_unique<ResponseImpl>(m_pool, pool_key, std::move(conn), false, message.keep_alive(),
                                                   m_options.io_timeout, head_timeout(repeatable));
    if (auto ec = co_await response->read_head()) co_return map_error(ec);
    co_return ResponsePtr(std::move(response));
  }

  // The proxy for url per the options, or nullptr to go direct.
  const Proxy* proxy_for(const Url& url) const {
    const auto& proxy = url.scheme == "https" ? m_proxies.https : m_proxies.http;
    if (!proxy || m_proxies.no_proxy.matches(url.host, url.port)) return nullptr;
    return &*proxy;
  }

  const ClientOptions m_options;
  const std::unique_ptr<ssl::context> m_tls;  // shared by all https connections; read-only after construction
  const Proxies m_proxies;
  const std::shared_ptr<ConnectionPool> m_pool;  // shared with live Responses, which return connections to it
};

}  // namespace

std::shared_ptr<HttpClient> make_http_client(const ClientOptions& options) {
  auto tls = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  tls->set_default_verify_paths(ec);
  if (ec) throw std::runtime_error("cannot use the system CA store: " + ec.message());
  if (!options.extra_ca_file.empty()) {
    tls->load_verify_file(options.extra_ca_file, ec);
    if (ec) throw std::runtime_error("cannot load CA file " + options.extra_ca_file + ": " + ec.message());
  }
  if (SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION) != 1) {
    throw std::runtime_error("cannot require TLS 1.2");
  }
  tls->set_verify_mode(ssl::verify_peer);

  Proxies proxies;
  const auto load_proxy = [](const char* name, const std::string& text) -> std::optional<Proxy> {
    // Blank counts as unset, as an empty environment variable does.
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) return std::nullopt;
    std::string why;
    auto proxy = parse_proxy_url(text, why);
    if (!proxy) throw std::runtime_error(std::string(name) + " " + redact_proxy_url(text) + ": " + why);
    return std::move(*proxy);
  };
  proxies.https = load_proxy("https_proxy", options.https_proxy);
  proxies.http = load_proxy("http_proxy", options.http_proxy);
  proxies.no_proxy = NoProxy(options.no_proxy);
  if (proxies.https) spdlog::info("upstream: https:// via proxy {}", proxies.https->display);
  if (proxies.http) spdlog::info("upstream: http:// via proxy {}", proxies.http->display);
  return std::make_shared<Client>(options, std::move(tls), std::move(proxies));
}

}  // namespace hubcache::upstream
