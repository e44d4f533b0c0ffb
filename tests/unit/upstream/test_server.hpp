// A scriptable HTTP/1.1 server on 127.0.0.1:<ephemeral> for the upstream
// client tests, plain or TLS. It runs on its own io_context and thread, so
// the client under test can be driven by test::run on another context.
//
// Each request is answered with raw bytes from the test's handler, which
// makes malformed, truncated or stalled answers as easy as good ones. The
// server counts accepted connections and requests (for keep-alive checks).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace hubcache::test {

namespace net = boost::asio;
namespace http = boost::beast::http;

struct Reply {
  std::string raw;     // written verbatim; may be a partial or malformed response
  bool close = false;  // close the connection after writing raw
  bool stall = false;  // after raw (usually empty), write nothing more; keep the connection open until the server stops
  std::string later = {};  // written unasked on the same connection `later_after` after raw
  std::chrono::milliseconds later_after{50};
};
using Handler = std::function<Reply(const http::request<http::string_body>&)>;

// A complete response with Content-Length; extra_headers are "Name: value\r\n" lines.
inline std::string http_response(unsigned status, const std::string& body, const std::string& extra_headers = {}) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra_headers + "\r\n" + body;
}

class TestServer {
 public:
  enum class Mode { serve, stall_on_accept };

  // tls == nullptr: plain HTTP. stall_on_accept: accept, then never read or
  // write (not even the TLS handshake).
  explicit TestServer(Handler handler, std::shared_ptr<net::ssl::context> tls = nullptr, Mode mode = Mode::serve)
      : m_handler(std::move(handler)), m_tls(std::move(tls)), m_mode(mode),
        m_acceptor(m_ioc, {net::ip::make_address("127.0.0.1"), 0}) {
    net::co_spawn(m_ioc, accept_loop(), net::detached);
    m_thread = std::thread([this] { m_ioc.run(); });
  }
  ~TestServer() {
    m_ioc.stop();
    m_thread.join();
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  std::uint16_t port() const { return m_acceptor.local_endpoint().port(); }
  int connections() const { return m_connections; }
  int requests() const { return m_requests; }
  http::request<http::string_body> last_request() const {
    const std::lock_guard lock(m_mutex);
    return m_last_request;
  }
  // "http(s)://host:port" + target.
  std::string url(const std::string& target, const std::string& host = "127.0.0.1") const {
    return std::string(m_tls ? "https" : "http") + "://" + host + ":" + std::to_string(port()) + target;
  }

 private:
  static constexpr auto k_token = net::as_tuple(net::use_awaitable);

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await m_acceptor.async_accept(k_token);
      if (ec) co_return;
      ++m_connections;
      net::co_spawn(m_ioc, session(std::move(socket)), net::detached);
    }
  }

  net::awaitable<void> session(net::ip::tcp::socket socket) {
    if (m_mode == Mode::stall_on_accept) {
      co_await stall();
      co_return;
    }
    if (!m_tls) {
      co_await serve(socket);
      co_return;
    }
    net::ssl::stream<net::ip::tcp::socket> stream(std::move(socket), *m_tls);
    auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server, k_token);
    if (!ec) co_await serve(stream);
  }

  template <class Stream>
  net::awaitable<void> serve(Stream& stream) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      auto [read_ec, n] = co_await http::async_read(stream, buffer, request, k_token);
      if (read_ec) co_return;
      ++m_requests;
      {
        const std::lock_guard lock(m_mutex);
        m_last_request = request;
      }
      const Reply reply = m_handler(request);
      if (reply.stall) {
        if (!reply.raw.empty()) co_await net::async_write(stream, net::buffer(reply.raw), k_token);
        co_await stall();
        co_return;
      }
      auto [write_ec, written] = co_await net::async_write(stream, net::buffer(reply.raw), k_token);
      if (!write_ec && !reply.later.empty()) {
        net::steady_timer pause(m_ioc, reply.later_after);
        co_await pause.async_wait(k_token);
        auto [later_ec, later_n] = co_await net::async_write(stream, net::buffer(reply.later), k_token);
        write_ec = later_ec;
      }
      // Closing the TCP socket without a TLS close_notify is what a crashed
      // or impatient server does; that is the case the client must handle.
      if (write_ec || reply.close) co_return;
    }
  }

  // Until the server is destroyed (which stops its io_context).
  net::awaitable<void> stall() {
    net::steady_timer timer(m_ioc, std::chrono::hours(1));
    co_await timer.async_wait(k_token);
  }

  Handler m_handler;
  std::shared_ptr<net::ssl::context> m_tls;
  Mode m_mode;
  net::io_context m_ioc;
  net::ip::tcp::acceptor m_acceptor;
  std::thread m_thread;
  std::atomic<int> m_connections{0};
  std::atomic<int> m_requests{0};
  mutable std::mutex m_mutex;
  http::request<http::string_body> m_last_request;  // GUARDED_BY(m_mutex)
};

}  // namespace hubcache::test
