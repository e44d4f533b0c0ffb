// HTTP/1.1 client for talking to the Hub and its CDN hosts.
//
// One call = one exchange: no retries and no redirect following here (the
// policy layer in src/hub decides that). http:// and https:// are supported;
// https verifies the peer against the system CA store plus an optional extra
// CA file, sends SNI and checks the host name. Idle keep-alive connections
// are pooled per (event loop, scheme, host, port, proxy used) and reused: a
// connection is opened on the io_context of the coroutine that sends (a
// strand's context included) and only reused by callers on that io_context,
// so with one thread per io_context its I/O never hops between threads.
// A pooled connection the server closed, or sent anything on while idle, is
// not reused; one found closed only when used is retried once on a new
// connection, for a request that may be repeated (an idempotent method, or
// Request::read_only). Interim 1xx answers are skipped: the Response is
// always the final answer.
//
// Outbound proxies (ClientOptions::https_proxy/http_proxy/no_proxy): an
// https:// request goes through an HTTP CONNECT tunnel to the target, with
// TLS, SNI and certificate checks against the *target* end to end; an
// http:// request is sent to the proxy in absolute form. A proxy that
// refuses the tunnel (407, 403, 5xx...) gives errc::upstream_unavailable and
// a warning naming the proxy and the status. Proxy credentials never appear
// in logs or error messages.
//
// Thread safety: HttpClient is safe to use from any thread and coroutine.
// A Response belongs to one coroutine at a time.
#pragma once

#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hubcache::upstream {

namespace net = boost::asio;
namespace http = boost::beast::http;

// An absolute http(s) URL split into what a connection and a request need.
struct Url {
  std::string scheme;   // "http" or "https"
  std::string host;     // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string target;   // path + query, starting with '/'; sent verbatim

  // Parses "http[s]://host[:port][/target]". errc::bad_request when malformed.
  static result<Url> parse(std::string_view text);
  // "scheme://host[:port]" with the port omitted when it is the default.
  std::string origin() const;
  // True when scheme, host and port are equal.
  bool same_origin(const Url& other) const noexcept;
  // Resolves a Location value against this URL: absolute URLs as-is, and
  // "/path?q" relative to this URL's origin.
  result<Url> resolve(std::string_view location) const;
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};  // TCP connect + TLS handshake
  std::chrono::milliseconds io_timeout{30'000};       // each read or write step
  // How long a request that may not be repeated (POST, PATCH: a commit)
  // waits for the answer's head once sent; io_timeout when shorter (the
  // default). The Hub may work on a large commit for minutes, and a timeout
  // would report a failure for a commit that then lands.
  std::chrono::milliseconds unsafe_answer_timeout{0};
  std::string extra_ca_file;                          // PEM file added to the system store; empty = none
  std::size_t max_idle_per_host = 16;                 // pooled idle connections per origin
  std::chrono::seconds idle_timeout{30};              // pooled connections older than this are closed
  std::string user_agent = "hubcache";                // sent when the request has none

  // Proxy URLs "[http://][user:password@]host[:port][/]"; empty = direct.
  // The port defaults to 1080 (as in curl); user and password are
  // percent-decoded and sent as Proxy-Authorization: Basic. Only plain-HTTP
  // proxies are supported: make_http_client refuses https:// (TLS to the
  // proxy itself) and socks URLs with a std::runtime_error.
  std::string https_proxy;  // for https:// targets (CONNECT tunnel)
  std::string http_proxy;   // for http:// targets (absolute-form requests)
  // Hosts reached directly even when a proxy is set: entries separated by
  // commas; "example.com" and ".example.com" both match example.com and its
  // subdomains, IP literals and CIDR ranges ("10.0.0.0/8") match IP hosts,
  // "host:port" / "[v6]:port" only that port, "*" every host. Matched
  // against the URL's host as written, without DNS: localhost and 127.0.0.1
  // are proxied unless listed (as in curl).
  std::string no_proxy;

  // Default options with the proxy fields read from `env` ("NAME=value"
  // entries, e.g. from environ; the first entry of a name counts, as with
  // getenv). For each of https_proxy, http_proxy and no_proxy the lower-case
  // variable wins when set at all (even empty, which turns an upper-case one
  // off), else the upper-case one (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) is
  // used. That is curl's rule except that curl ignores HTTP_PROXY entirely;
  // we honour it (containers and CI commonly export only upper case) but,
  // like Go and Python, not when REQUEST_METHOD is set: in a CGI program
  // HTTP_PROXY comes from the request's "Proxy:" header ("httpoxy").
  // ALL_PROXY is not read. Values are not validated here; make_http_client
  // does that.
  static ClientOptions from_environment(const std::vector<std::string>& env);
};

// Produces a request body piece by piece: fills `buf` and returns the count,
// 0 at the end of the body.
using BodySource = std::function<net::awaitable<result<std::size_t>>(std::span<std::byte> buf)>;

struct Request {
  http::verb method = http::verb::get;
  Url url;
  http::fields headers;  // Host and User-Agent are filled in when absent
  std::string body;
  // Instead of `body`: a body streamed from this source through a bounded
  // buffer, with Content-Length `body_length` when set, else chunked. Such a
  // request always opens a new connection, because a pooled one that turns
  // out closed could not be retried with a body already consumed. An error
  // from the source ends the request with that error.
  BodySource body_source{};
  std::optional<std::uint64_t> body_length{};
  // A request of a method that may change state (POST) that only reads
  // (paths-info): like a GET, it may be sent again after a pooled connection
  // turned out closed, and its answer is due within io_timeout.
  bool read_only = false;
};

// The head of an upstream response, with the body still on the connection.
class Response {
 public:
  virtual ~Response() = default;
  virtual unsigned status() const noexcept = 0;
  virtual const http::fields& headers() const noexcept = 0;
  // Content-Length if the response has one (absent for chunked bodies).
  virtual std::optional<std::uint64_t> content_length() const noexcept = 0;
  // Reads the next part of the body into buf; returns 0 at the end of the
  // body (then the connection goes back to the pool). Errors:
  // errc::upstream_timeout, errc::upstream_unavailable (reset, truncated).
  virtual net::awaitable<result<std::size_t>> read_some(std::span<std::byte> buf) = 0;
  // Each later read_some fails with errc::upstream_timeout once it waited
  // `timeout` for bytes, if that is shorter than ClientOptions::io_timeout
  // (which applies otherwise). A fill shortens it once a body flows: a
  // connection that goes quiet mid-body is then dropped and resumed before
  // the fill's clients give up waiting.
  virtual void shorten_read_timeout(std::chrono::milliseconds timeout) noexcept = 0;
  // Reads the rest of the body, failing with errc::upstream_protocol when it
  // exceeds `limit` bytes.
  virtual net::awaitable<result<std::string>> read_all(std::size_t limit) = 0;
  // Bytes that arrived from upstream and wait to be read: a reader that has
  // many is the slow end of the transfer, not upstream. Counted before TLS
  // decryption and HTTP framing, so an estimate.
  virtual std::size_t waiting() const noexcept = 0;
  // Destroying a Response whose body was not fully read closes its connection.
};
using ResponsePtr = std::unique_ptr<Response>;

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Sends the request and reads the response head. HEAD responses have an
  // empty body whatever Content-Length says. Errors: errc::upstream_unavailable
  // (DNS, connect, reset), errc::upstream_timeout, errc::upstream_tls,
  // errc::upstream_protocol (unparseable response).
  virtual net::awaitable<result<ResponsePtr>> send(Request request) = 0;
};

// Throws std::runtime_error when the extra CA file cannot be loaded or a
// proxy URL is malformed or unsupported (startup); the message never
// contains proxy credentials.
std::shared_ptr<HttpClient> make_http_client(const ClientOptions& options);

}  // namespace hubcache::upstream
