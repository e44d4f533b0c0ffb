#include "connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

namespace hubcache::upstream {
namespace {

constexpr auto k_token = net::as_tuple(net::use_awaitable);
// A CONNECT answer is a status line and a few headers (a 407 adds
// Proxy-Authenticate); anything much bigger is not a proxy we can talk to.
constexpr std::uint32_t k_tunnel_header_limit = 16 * 1024;
// What Beast reads per recv at most (http::async_read_some asks for 64 KiB).
constexpr std::size_t k_body_read_size = 64 * 1024;

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::error_code map_error(const boost::system::error_code& ec) noexcept {
  if (!ec) return {};
  if (ec == beast::error::timeout) return errc::upstream_timeout;
  if (ec == net::error::operation_aborted) return errc::cancelled;
  // The peer closed the TCP connection without a TLS close_notify: for us
  // that is a dropped connection (mid-message, or a dead pooled one).
  if (ec == ssl::error::stream_truncated) return errc::upstream_unavailable;
  if (ec.category() == net::error::get_ssl_category() || ec.category() == ssl::error::get_stream_category()) {
    return errc::upstream_tls;
  }
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
    // EOF before a message or before its declared end is a dropped
    // connection; every other parser error means the peer speaks bad HTTP.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return errc::upstream_unavailable;
    return errc::upstream_protocol;
  }
  return errc::upstream_unavailable;
}

Connection::Connection(net::any_io_executor executor)
    : m_stream(std::in_place_type<beast::tcp_stream>, std::move(executor)) {}

Connection::Connection(net::any_io_executor executor, ssl::context& tls)
    : m_stream(std::in_place_type<TlsStream>, std::move(executor), tls) {}

bool Connection::reusable() noexcept {
  if (m_buffer.size() != 0) return false;
  char byte = 0;
  const ssize_t n = ::recv(tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);  // 0: closed; > 0: unexpected bytes
}

std::size_t Connection::waiting() noexcept {
  int queued = 0;
  if (::ioctl(tcp().socket().native_handle(), FIONREAD, &queued) != 0 || queued < 0) queued = 0;
  return m_buffer.size() + static_cast<std::size_t>(queued);
}

beast::tcp_stream& Connection::tcp() noexcept {
  return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(s); }, m_stream);
}

net::awaitable<std::error_code> Connection::open_tunnel(const Url& url, const Proxy& proxy) {
  // RFC 9110 9.3.6: authority-form "host:port", IPv6 literals in brackets;
  // Host carries the same value.
  const bool ipv6 = url.host.find(':') != std::string::npos;
  const std::string authority = (ipv6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
  http::request<http::empty_body> request(http::verb::connect, authority, 11);
  request.set(http::field::host, authority);
  if (!proxy.authorization.empty()) request.set(http::field::proxy_authorization, proxy.authorization);
  auto [write_ec, written] = co_await http::async_write(tcp(), request, k_token);
  if (write_ec) co_return map_error(write_ec);

  // Only the head matters: a 2xx answer has no body (RFC 9110 9.3.6), and
  // any other answer ends with this connection closed.
  http::response_parser<http::empty_body> parser;
  parser.header_limit(k_tunnel_header_limit);
  auto [read_ec, read] = co_await http::async_read_header(tcp(), m_buffer, parser, k_token);
  if (read_ec) {
    spdlog::debug("upstream proxy {}: CONNECT {} failed: {}", proxy.display, authority, read_ec.message());
    co_return map_error(read_ec);
  }
  const unsigned status = parser.get().result_int();
  if (status < 200 || status > 299) {
    spdlog::warn("upstream proxy {} refused CONNECT {}: {} {}", proxy.display, authority, status,
                 std::string(parser.get().reason()));
    co_return make_error_code(errc::upstream_unavailable);
  }
  // The target speaks only after our ClientHello, so bytes already buffered
  // came from the proxy, and TLS reading the socket directly would lose them.
  if (m_buffer.size() != 0) {
    spdlog::warn("upstream proxy {}: data after the CONNECT {} answer", proxy.display, authority);
    co_return make_error_code(errc::upstream_protocol);
  }
  co_return std::error_code{};
}

net::awaitable<result<ConnectionPtr>> Connection::open(net::any_io_executor executor, const Url& url,
                                                       const Proxy* proxy, ssl::context* tls,
                                                       std::chrono::milliseconds connect_timeout) {
  const bool secure = url.scheme == "https";
  // Connection's constructors are private, hence no make_unique.
  ConnectionPtr conn(secure ? new Connection(executor, *tls) : new Connection(executor));

  // Through a proxy only the proxy's name is resolved here; the target's is
  // the proxy's business (it may not even resolve inside the firewall).
  const std::string& connect_host = proxy != nullptr ? proxy->host : url.host;
  const std::uint16_t connect_port = proxy != nullptr ? proxy->port : url.port;
  net::ip::tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
      connect_host, std::to_string(connect_port), net::ip::resolver_base::numeric_service, k_token);
  if (resolve_ec) {
    if (proxy != nullptr) spdlog::debug("upstream proxy {}: {}", proxy->display, resolve_ec.message());
    co_return map_error(resolve_ec);
  }

  // One deadline for connect, tunnel and handshake together, as the option says.
  const auto deadline = std::chrono::steady_clock::now() + connect_timeout;
  conn->tcp().expires_at(deadline);
  auto [connect_ec, endpoint] = co_await conn->tcp().async_connect(endpoints, k_token);
  if (connect_ec) {
    if (proxy != nullptr) spdlog::debug("upstream proxy {}: connect: {}", proxy->display, connect_ec.message());
    co_return map_error(connect_ec);
  }
  if (!secure) co_return conn;

  if (proxy != nullptr) {
    conn->tcp().expires_at(deadline);
    if (const auto tunnel_ec = co_await conn->open_tunnel(url, *proxy)) co_return tunnel_ec;
  }

  auto& stream = std::get<TlsStream>(conn->m_stream);
  // SNI carries DNS names only (RFC 6066 3); an IP literal is checked against
  // the certificate's IP SANs instead (host_name_verification does both).
  // SSL_ctrl is what the SSL_set_tlsext_host_name macro expands to, minus
  // its C cast (-Wold-style-cast); OpenSSL copies the name.
  if (!is_ip_literal(url.host) && SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME,
                                           TLSEXT_NAMETYPE_host_name, const_cast<char*>(url.host.c_str())) != 1) {
    co_return make_error_code(errc::upstream_tls);
  }
  stream.set_verify_mode(ssl::verify_peer);
  stream.set_verify_callback(ssl::host_name_verification(url.host));
  conn->tcp().expires_at(deadline);
  auto [handshake_ec] = co_await stream.async_handshake(ssl::stream_base::client, k_token);
  if (handshake_ec) co_return map_error(handshake_ec);
  co_return conn;
}

net::awaitable<boost::system::error_code> Connection::write(const OutgoingRequest& request,
                                                            std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  auto [ec, n] = co_await std::visit([&](auto& s) { return http::async_write(s, request, k_token); }, m_stream);
  co_return ec;
}

net::awaitable<boost::system::error_code> Connection::write_head(const OutgoingRequest& request,
                                                                 std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  http::request_serializer<http::string_body> serializer{request};
  auto op = [&](auto& s) { return http::async_write_header(s, serializer, k_token); };
  auto [ec, n] = co_await std::visit(op, m_stream);
  co_return ec;
}

net::awaitable<boost::system::error_code> Connection::write_body(std::span<const std::byte> data, Framing framing,
                                                                 std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  const auto bytes = net::buffer(data.data(), data.size());
  if (framing == Framing::length) {
    auto op = [&](auto& s) { return net::async_write(s, bytes, k_token); };
    auto [ec, n] = co_await std::visit(op, m_stream);
    co_return ec;
  }
  if (data.empty()) {
    auto op = [&](auto& s) { return net::async_write(s, http::make_chunk_last(), k_token); };
    auto [ec, n] = co_await std::visit(op, m_stream);
    co_return ec;
  }
  auto op = [&](auto& s) { return net::async_write(s, http::make_chunk(bytes), k_token); };
  auto [ec, n] = co_await std::visit(op, m_stream);
  co_return ec;
}

net::awaitable<boost::system::error_code> Connection::read_header(ResponseParser& parser,
                                                                  std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  auto [ec, n] = co_await std::visit(
      [&](auto& s) { return http::async_read_header(s, m_buffer, parser, k_token); }, m_stream);
  co_return ec;
}

net::awaitable<boost::system::error_code> Connection::read_some(ResponseParser& parser,
                                                                std::chrono::milliseconds timeout) {
  // Beast reads at most the buffer's free capacity (and 64 KiB): left at the
  // size the head needed, a fill read the CDN 500 bytes per recv, and its
  // I/O thread spent most of its time in the syscalls.
  if (m_buffer.capacity() < k_body_read_size) m_buffer.reserve(k_body_read_size);
  tcp().expires_after(timeout);
  auto [ec, n] = co_await std::visit(
      [&](auto& s) { return http::async_read_some(s, m_buffer, parser, k_token); }, m_stream);
  co_return ec;
}

}  // namespace hubcache::upstream
