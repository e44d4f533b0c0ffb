// One HTTP/1.1 connection to an upstream origin, plain TCP or TLS.
//
// Private to the upstream module. A Connection owns its stream and the read
// buffer that must persist between reads (bytes read past one parse step
// belong to the next). Every operation sets the deadline right before it
// starts; a deadline that expires closes the socket, so a timed-out
// Connection is dead and must be dropped.
//
// Thread safety: none. A Connection is used by one coroutine at a time; the
// pool hands it over under its mutex.
#pragma once

#include <hubcache/core/error.hpp>
#include <hubcache/upstream/http_client.hpp>

#include "proxy.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <chrono>
#include <memory>
#include <span>
#include <variant>

namespace hubcache::upstream {

namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;

using OutgoingRequest = http::request<http::string_body>;
using ResponseParser = http::response_parser<http::buffer_body>;

// Maps a Beast/Asio/OpenSSL error to the hubcache vocabulary:
// timeout -> upstream_timeout, TLS and certificate failures -> upstream_tls,
// malformed HTTP -> upstream_protocol, cancellation -> cancelled, everything
// else (DNS, refused, reset, EOF mid-message) -> upstream_unavailable.
std::error_code map_error(const boost::system::error_code& ec) noexcept;

class Connection {
 public:
  // Resolves url's host, connects and, for https, does the TLS handshake with
  // SNI and peer + host name verification. connect_timeout bounds connect and
  // handshake together (the DNS lookup is bounded by the system resolver).
  // With a proxy, connects to the proxy instead; for https it then opens a
  // CONNECT tunnel to url's host:port and does the TLS handshake (checking
  // url's host, not the proxy's) through it, all within connect_timeout.
  // A non-2xx answer to CONNECT is errc::upstream_unavailable and is logged
  // as a warning with proxy->display (never the credentials). For http the
  // caller must send absolute-form requests (and Proxy-Authorization).
  // REQUIRES: tls != nullptr when url.scheme == "https"; *tls outlives the
  // returned Connection.
  static net::awaitable<result<std::unique_ptr<Connection>>> open(net::any_io_executor executor, const Url& url,
                                                                   const Proxy* proxy, ssl::context* tls,
                                                                   std::chrono::milliseconds connect_timeout);

  // Writes the whole request. Returns the raw error so the caller can tell a
  // stale pooled connection from other failures.
  net::awaitable<boost::system::error_code> write(const OutgoingRequest& request, std::chrono::milliseconds timeout);
  // Writes only the head of `request`; the body follows with write_body().
  net::awaitable<boost::system::error_code> write_head(const OutgoingRequest& request,
                                                       std::chrono::milliseconds timeout);
  // Writes body bytes after write_head(): as they are, or as one chunk when
  // the head announced `Transfer-Encoding: chunked` (then an empty `data`
  // writes the last chunk, ending the body).
  enum class Framing { length, chunked };
  net::awaitable<boost::system::error_code> write_body(std::span<const std::byte> data, Framing framing,
                                                       std::chrono::milliseconds timeout);
  // Reads up to the end of the response head into parser.
  net::awaitable<boost::system::error_code> read_header(ResponseParser& parser, std::chrono::milliseconds timeout);
  // Reads and parses the next part of the body into the parser's buffer_body
  // window; http::error::need_buffer means the window is full (not an error).
  net::awaitable<boost::system::error_code> read_some(ResponseParser& parser, std::chrono::milliseconds timeout);

  // True when bytes beyond the last parsed message are buffered; such a
  // connection cannot carry another exchange.
  bool has_buffered_input() const noexcept { return m_buffer.size() != 0; }
  // Bytes received and not yet parsed: buffered here and in the socket.
  std::size_t waiting() noexcept;
  // For a connection taken from the pool: true when the peer has neither
  // closed it nor sent anything since its last response (a late or
  // unsolicited answer, e.g. a 408 on an idle connection, would be read as
  // the answer to the next request). One non-blocking peek at the socket.
  bool reusable() noexcept;

 private:
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;
  explicit Connection(net::any_io_executor executor);
  Connection(net::any_io_executor executor, ssl::context& tls);

  beast::tcp_stream& tcp() noexcept;
  // Sends CONNECT for url's host:port on the TCP stream and reads the
  // answer; the caller has set the deadline.
  net::awaitable<std::error_code> open_tunnel(const Url& url, const Proxy& proxy);

  // A response head (64 KiB at most) and the reads of one body step fit
  // with room to spare. Beast 1.81 puts no limit of its own on a chunk-size
  // line or the trailer: one that overflows this is a protocol error, not
  // memory growing as long as the peer sends.
  static constexpr std::size_t k_buffer_limit = 256 * 1024;

  std::variant<beast::tcp_stream, TlsStream> m_stream;
  beast::flat_buffer m_buffer{k_buffer_limit};
};

using ConnectionPtr = std::unique_ptr<Connection>;

}  // namespace hubcache::upstream
