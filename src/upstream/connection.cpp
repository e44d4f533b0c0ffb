#include "connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>

#include <string>

namespace hubcache::upstream {
namespace {

constexpr auto k_token = net::as_tuple(net::use_awaitable);

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

beast::tcp_stream& Connection::tcp() noexcept {
  return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(s); }, m_stream);
}

net::awaitable<result<ConnectionPtr>> Connection::open(net::any_io_executor executor, const Url& url,
                                                       ssl::context* tls, std::chrono::milliseconds connect_timeout) {
  const bool secure = url.scheme == "https";
  // Connection's constructors are private, hence no make_unique.
  ConnectionPtr conn(secure ? new Connection(executor, *tls) : new Connection(executor));

  net::ip::tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(
      url.host, std::to_string(url.port), net::ip::resolver_base::numeric_service, k_token);
  if (resolve_ec) co_return map_error(resolve_ec);

  // One deadline for connect and handshake together, as the option says.
  const auto deadline = std::chrono::steady_clock::now() + connect_timeout;
  conn->tcp().expires_at(deadline);
  auto [connect_ec, endpoint] = co_await conn->tcp().async_connect(endpoints, k_token);
  if (connect_ec) co_return map_error(connect_ec);
  if (!secure) co_return conn;

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

net::awaitable<boost::system::error_code> Connection::read_header(ResponseParser& parser,
                                                                  std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  auto [ec, n] = co_await std::visit(
      [&](auto& s) { return http::async_read_header(s, m_buffer, parser, k_token); }, m_stream);
  co_return ec;
}

net::awaitable<boost::system::error_code> Connection::read_some(ResponseParser& parser,
                                                                std::chrono::milliseconds timeout) {
  tcp().expires_after(timeout);
  auto [ec, n] = co_await std::visit(
      [&](auto& s) { return http::async_read_some(s, m_buffer, parser, k_token); }, m_stream);
  co_return ec;
}

}  // namespace hubcache::upstream
