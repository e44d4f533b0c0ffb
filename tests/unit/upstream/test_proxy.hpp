// A tiny HTTP proxy on 127.0.0.1:<ephemeral> for the upstream proxy tests,
// on its own io_context and thread like TestServer.
//
// CONNECT host:port opens a TCP tunnel to the target (after checking
// Proxy-Authorization when one is required) and splices bytes both ways; any
// other request is answered by the proxy itself with 200 and the body
// "proxied <method> <target>", so absolute-form requests can be checked
// without a second server. It records what it saw for the assertions.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace hubcache::test {

namespace net = boost::asio;
namespace http = boost::beast::http;

struct ProxyOptions {
  std::string required_authorization;  // exact Proxy-Authorization value wanted; empty = none
  unsigned refuse_status = 0;          // answer every CONNECT with this status instead of tunnelling
  bool stall = false;                  // read the request head, then never answer
};

class TestProxy {
 public:
  explicit TestProxy(ProxyOptions options = {})
      : m_options(std::move(options)), m_acceptor(m_ioc, {net::ip::make_address("127.0.0.1"), 0}) {
    net::co_spawn(m_ioc, accept_loop(), net::detached);
    m_thread = std::thread([this] { m_ioc.run(); });
  }
  ~TestProxy() {
    m_ioc.stop();
    m_thread.join();
  }
  TestProxy(const TestProxy&) = delete;
  TestProxy& operator=(const TestProxy&) = delete;

  std::uint16_t port() const { return m_acceptor.local_endpoint().port(); }
  // "http://[userinfo@]127.0.0.1:port"; userinfo is used verbatim (already %-encoded).
  std::string url(const std::string& userinfo = {}) const {
    return "http://" + (userinfo.empty() ? "" : userinfo + "@") + "127.0.0.1:" + std::to_string(port());
  }
  int connections() const { return m_connections; }
  int connects() const { return m_connects; }    // CONNECT requests seen (tunnelled or not)
  int forwarded() const { return m_forwarded; }  // other requests answered by the proxy
  http::request<http::string_body> last_request() const {
    const std::lock_guard lock(m_mutex);
    return m_last_request;
  }

 private:
  static constexpr auto k_token = net::as_tuple(net::use_awaitable);
  using Socket = net::ip::tcp::socket;

  struct Tunnel {
    Socket client;
    Socket target;
    void close() {
      boost::system::error_code ignored;
      client.close(ignored);
      target.close(ignored);
    }
  };

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await m_acceptor.async_accept(k_token);
      if (ec) co_return;
      ++m_connections;
      net::co_spawn(m_ioc, session(std::move(socket)), net::detached);
    }
  }

  net::awaitable<void> session(Socket socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      auto [read_ec, n] = co_await http::async_read(socket, buffer, request, k_token);
      if (read_ec) co_return;
      const bool connect = request.method() == http::verb::connect;
      if (connect) ++m_connects;
      {
        const std::lock_guard lock(m_mutex);
        m_last_request = request;
      }
      if (m_options.stall) {
        net::steady_timer timer(m_ioc, std::chrono::hours(1));
        co_await timer.async_wait(k_token);
        co_return;
      }
      if (!m_options.required_authorization.empty() &&
          request[http::field::proxy_authorization] != m_options.required_authorization) {
        const std::string denied =
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n";
        co_await net::async_write(socket, net::buffer(denied), k_token);
        co_return;
      }
      if (!connect) {
        ++m_forwarded;
        const std::string body =
            "proxied " + std::string(request.method_string()) + " " + std::string(request.target());
        const std::string reply =
            "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        auto [write_ec, written] = co_await net::async_write(socket, net::buffer(reply), k_token);
        if (write_ec) co_return;
        continue;
      }
      if (m_options.refuse_status != 0) {
        const std::string refused =
            "HTTP/1.1 " + std::to_string(m_options.refuse_status) + " Refused\r\nContent-Length: 0\r\n\r\n";
        co_await net::async_write(socket, net::buffer(refused), k_token);
        co_return;
      }
      co_await tunnel(std::move(socket), std::string(request.target()));
      co_return;
    }
  }

  net::awaitable<void> tunnel(Socket client, std::string authority) {
    // "host:port" or "[v6]:port".
    const auto colon = authority.rfind(':');
    std::string host = authority.substr(0, colon);
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    const std::string port = authority.substr(colon + 1);
    net::ip::tcp::resolver resolver(m_ioc);
    auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, port, k_token);
    auto state = std::make_shared<Tunnel>(Tunnel{std::move(client), Socket(m_ioc)});
    boost::system::error_code connect_ec = resolve_ec;
    if (!connect_ec) {
      auto [ec, endpoint] = co_await net::async_connect(state->target, endpoints, k_token);
      connect_ec = ec;
    }
    if (connect_ec) {
      const std::string bad = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
      co_await net::async_write(state->client, net::buffer(bad), k_token);
      co_return;
    }
    const std::string established = "HTTP/1.1 200 Connection established\r\n\r\n";
    auto [write_ec, written] = co_await net::async_write(state->client, net::buffer(established), k_token);
    if (write_ec) co_return;
    net::co_spawn(m_ioc, pump(state, state->target, state->client), net::detached);
    co_await pump(state, state->client, state->target);
  }

  // Copies from -> to until either side fails, then closes both, which ends
  // the opposite pump too. `keep` holds the sockets alive meanwhile.
  static net::awaitable<void> pump(std::shared_ptr<Tunnel> keep, Socket& from, Socket& to) {
    std::array<char, 16 * 1024> buf;
    for (;;) {
      auto [read_ec, n] = co_await from.async_read_some(net::buffer(buf), k_token);
      if (read_ec) break;
      auto [write_ec, written] = co_await net::async_write(to, net::buffer(buf.data(), n), k_token);
      if (write_ec) break;
    }
    keep->close();
  }

  ProxyOptions m_options;
  net::io_context m_ioc;
  net::ip::tcp::acceptor m_acceptor;
  std::thread m_thread;
  std::atomic<int> m_connections{0};
  std::atomic<int> m_connects{0};
  std::atomic<int> m_forwarded{0};
  mutable std::mutex m_mutex;
  http::request<http::string_body> m_last_request;  // GUARDED_BY(m_mutex)
};

}  // namespace hubcache::test
