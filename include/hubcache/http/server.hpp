// A small asynchronous HTTP/1.1 server (Beast + C++20 coroutines).
//
// Each connection is one coroutine on its own strand (or on one of the
// event loops the server was given, see Server): read a request (with
// header and body limits and a deadline), hand it to the Handler, repeat while
// keep-alive allows. One request is handled at a time per connection, which
// bounds pipelining. Handlers stream large bodies through Exchange without
// buffering them. The server knows nothing about the Hub.
//
// Shutdown: shutdown() stops accepting, closes idle connections at once, lets
// in-flight exchanges finish for `grace`, then closes what is left.
//
// Thread safety: Server methods may be called from any thread. An Exchange
// belongs to its connection's coroutine and must only be used from it.
#pragma once

#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hubcache::http {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

using Request = bhttp::request<bhttp::string_body>;
using StringResponse = bhttp::response<bhttp::string_body>;
using HeadResponse = bhttp::response<bhttp::empty_body>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  // Deadline for each read or write on a connection, including the wait for
  // the next request on an idle keep-alive connection.
  std::chrono::milliseconds io_timeout{60'000};
  // Request line plus headers. 16 KiB fits any Hub URL we accept (8 KiB max)
  // plus a bearer token, and keeps a slow-loris client cheap.
  std::size_t header_limit = 16 * 1024;
  // Request bodies. POST/PUT/PATCH bodies are not read before the handler
  // runs; they are unbounded when streamed (Exchange::read_body_some: relayed
  // uploads, upstream enforces its own limits) and bounded by body_limit
  // when read whole (Exchange::read_body: bodies hubcache parses, such as
  // paths-info). GET/HEAD/OPTIONS/DELETE bodies are read before the handler
  // runs, up to small_body_limit, so idle reads cannot pin memory.
  std::size_t body_limit = 64ull * 1024 * 1024;
  std::size_t small_body_limit = 64 * 1024;
  // Connections beyond this wait in the kernel's accept queue: it bounds
  // descriptors and per-connection memory (header buffer, one body).
  std::size_t max_connections = 4096;
};

class Exchange {
 public:
  virtual ~Exchange() = default;
  // The request head; its body() holds the body of methods other than
  // POST/PUT/PATCH, and of those once read_body() completed.
  virtual const Request& request() const noexcept = 0;
  // Reads the next piece of a POST/PUT/PATCH body (Content-Length or chunked)
  // into `buf`; returns 0 at its end (at once for other methods and for an
  // empty body). Sends "100 Continue" first when the client expects it.
  // Errors: errc::bad_request (malformed or cut short), errc::timeout; the
  // connection then closes. A body not read to its end also closes the
  // connection after this exchange. REQUIRES: !buf.empty().
  virtual net::awaitable<result<std::size_t>> read_body_some(std::span<std::byte> buf) = 0;
  // Reads the rest of such a body into request().body(): for bodies
  // hubcache parses itself. std::errc::message_size when it exceeds
  // ServerOptions::body_limit, other errors as read_body_some().
  virtual net::awaitable<result<void>> read_body() = 0;
  // The connection's strand (or event loop); coroutines started for this
  // exchange run here.
  virtual net::any_io_executor executor() const = 0;

  // Sends a complete response. Content-Length is set from the body; for a HEAD
  // request the body is not sent but its length is announced.
  virtual net::awaitable<result<void>> respond(StringResponse response) = 0;
  // Sends the head of a response whose body follows via write_body().
  // REQUIRES: Content-Length set, or `Transfer-Encoding: chunked` (then use
  // write_chunk/finish_chunks). For HEAD requests, send no body.
  virtual net::awaitable<result<void>> write_head(HeadResponse& response) = 0;
  virtual net::awaitable<result<void>> write_body(std::span<const std::byte> data) = 0;
  // Sends `length` bytes of the file `fd` from `offset` as body bytes, with
  // sendfile(2): the bytes go from the page cache to the socket without a
  // copy through user space. REQUIRES: `fd` stays open until this completes.
  virtual net::awaitable<result<void>> write_file(int fd, std::uint64_t offset, std::uint64_t length) = 0;
  // write_head() then write_file(), except that a small body is read into the
  // head's buffer and both go out in one write (a small cached file costs one
  // syscall and one packet). REQUIRES: Content-Length set to `length`; not
  // for HEAD requests. A read error before anything was sent is returned with
  // head_sent() still false, so the handler can answer with an error.
  virtual net::awaitable<result<void>> write_head_and_file(HeadResponse& response, int fd, std::uint64_t offset,
                                                           std::uint64_t length) = 0;
  virtual net::awaitable<result<void>> write_chunk(std::span<const std::byte> data) = 0;
  virtual net::awaitable<result<void>> finish_chunks() = 0;

  // The connection closes after this exchange (e.g. a body was cut short).
  virtual void close_after() noexcept = 0;
  virtual bool head_sent() const noexcept = 0;
  // Cache outcome for the access log: "hit", "miss", "fill", "relay", ...
  virtual void set_outcome(std::string_view outcome) = 0;
};

using Handler = std::function<net::awaitable<void>(Exchange&)>;

class Server {
 public:
  // Accepts on `ioc`. Connections go round-robin to `loops`, io_contexts run
  // by one thread each, whose executors then serve as the connections'
  // strands: a connection's handlers never hop between threads. Without
  // loops, each connection gets its own strand of `ioc`.
  Server(net::io_context& ioc, ServerOptions options, Handler handler, std::vector<net::io_context*> loops = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. Throws std::system_error (startup only).
  tcp::endpoint listen();
  // Starts accepting. REQUIRES: listen() succeeded.
  void start();
  net::awaitable<void> shutdown(std::chrono::milliseconds grace);
  std::size_t connections() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> m_impl;
};

}  // namespace hubcache::http
