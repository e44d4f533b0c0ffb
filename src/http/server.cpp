#include <hubcache/http/server.hpp>

#include "loopback.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <mutex>
#include <optional>
#include <set>

#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

namespace hubcache::http {
namespace {

namespace beast = boost::beast;
constexpr auto k_tuple = net::as_tuple(net::use_awaitable);

using Clock = std::chrono::steady_clock;

// A body up to this size goes out in the same write as its head (pread into
// the head's buffer): for a small cached file, one syscall and one packet
// instead of a header write plus a sendfile. Larger bodies use sendfile, where
// avoiding the copy matters more than the extra write.
constexpr std::uint64_t k_inline_file_body = 64 * 1024;

// Beast reads at most the free capacity of its buffer (and 64 KiB): a
// streamed request body is read with this much room, not with what the
// head left.
constexpr std::size_t k_body_read_size = 64 * 1024;

// One accepted connection. Shared between the session coroutine, its
// watchdog and the server's connection set, so shutdown can close it
// through its strand.
//
// Deadlines: socket I/O is bracketed by arm() and disarm(), and the
// connection's watchdog (Server::Impl::watch) ends the connection's I/O once
// the armed deadline passes. Arming is a clock read; Beast's tcp_stream
// started and cancelled a timer wait for every read and write instead, which
// was a few percent of a cached HEAD's CPU.
struct Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)), watchdog(socket.get_executor()) {}
  // Only touched on the connection's strand, as are the members below
  // except `busy`.
  tcp::socket socket;
  net::steady_timer watchdog;
  Clock::time_point deadline = Clock::time_point::max();  // of the I/O in flight
  bool timed_out = false;  // the watchdog ended the connection's I/O: sticky
  std::atomic<bool> busy{false};
  // Owned by the session coroutine: response heads are serialized here, so
  // the buffer's capacity is reused from one request to the next.
  std::string out;
  bool non_blocking = false;  // the socket was put in non-blocking mode for sendfile

  void arm(std::chrono::milliseconds timeout) { deadline = Clock::now() + timeout; }
  void disarm() { deadline = Clock::time_point::max(); }
  std::error_code io_error(const boost::system::error_code& ec) const {
    if (timed_out) return errc::timeout;  // whatever the failing step saw
    if (ec == net::error::operation_aborted) return errc::cancelled;
    return ec;  // socket errors keep their own category
  }
};

// Appends the status line and the fields as HTTP/1.x text. Equivalent to
// Beast's serializer for a header, but into one contiguous buffer that a
// small body can join.
void append_head(std::string& out, const HeadResponse& res) {
  const unsigned version = res.version();
  const unsigned status = res.result_int();
  const char line[] = {'H', 'T', 'T', 'P', '/', static_cast<char>('0' + version / 10), '.',
                       static_cast<char>('0' + version % 10), ' ', static_cast<char>('0' + status / 100 % 10),
                       static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10), ' '};
  out.append(line, sizeof line);
  out += res.reason();
  out += "\r\n";
  for (const auto& field : res) {
    out += field.name_string();
    out += ": ";
    out += field.value();
    out += "\r\n";
  }
  out += "\r\n";
}

// TCP_CORK, as nginx's tcp_nopush: the socket has TCP_NODELAY for small
// answers, and a sendfile call on it leaves in smaller segments; corked, only
// full segments leave until the cork comes off (which sends the rest).
void set_cork(int fd, int on) noexcept { ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on); }

// Reads exactly out.size() - from bytes of `fd` at `offset` into out[from..].
std::error_code pread_into(int fd, std::uint64_t offset, std::string& out, std::size_t from) {
  while (from < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + from, out.size() - from, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::error_code(errno, std::system_category());
    if (n == 0) return make_error_code(errc::storage_io);  // shorter than promised
    from += static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

// Parses a request body the handler reads piece by piece (read_body_some).
using BodyParser = bhttp::request_parser<bhttp::buffer_body>;

class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(Connection& conn, Request& req, const ServerOptions& options, const std::atomic<bool>& stopping,
               BodyParser* body, beast::flat_buffer& buffer)
      : m_conn(conn),
        m_req(req),
        m_timeout(options.io_timeout),
        m_body_limit(options.body_limit),
        m_stopping(stopping),
        m_started(std::chrono::steady_clock::now()),
        m_body(body),
        m_buffer(buffer),
        m_continue(body != nullptr && req[bhttp::field::expect] == "100-continue") {}

  const Request& request() const noexcept override { return m_req; }

  net::awaitable<result<std::size_t>> read_body_some(std::span<std::byte> buf) override {
    if (m_body == nullptr || m_body->is_done()) co_return 0;
    if (buf.empty()) co_return make_error_code(errc::bad_request);  // 0 means "end of body"
    if (m_continue) {
      // The client waits for this before sending the body; a handler that
      // answers without reading the body never sends it.
      m_continue = false;
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
      m_conn.arm(m_timeout);
      auto [ec, n] = co_await bhttp::async_write(m_conn.socket, cont, k_tuple);
      m_conn.disarm();
      if (ec) {
        m_close = true;
        co_return m_conn.io_error(ec);
      }
    }
    for (;;) {
      auto& window = m_body->get().body();
      window.data = buf.data();
      window.size = buf.size();
      if (m_buffer.capacity() < k_body_read_size) m_buffer.reserve(k_body_read_size);
      m_conn.arm(m_timeout);
      auto [ec, n] = co_await bhttp::async_read_some(m_conn.socket, m_buffer, *m_body, k_tuple);
      m_conn.disarm();
      const std::size_t got = buf.size() - window.size;
      window.data = nullptr;  // the caller's buffer is only lent for this call
      if (ec == bhttp::error::need_buffer) ec = {};  // the window is full
      if (ec) {
        m_close = true;
        if (ec == net::error::operation_aborted) co_return m_conn.io_error(ec);
        co_return make_error_code(errc::bad_request);  // malformed or cut short by the client
      }
      // A read may consume only framing (a chunk header): go on until body
      // bytes arrive or the body ends.
      if (got > 0 || m_body->is_done()) co_return got;
    }
  }

  net::awaitable<result<void>> read_body() override {
    std::string& out = m_req.body();
    std::array<std::byte, 16 * 1024> chunk;
    for (;;) {
      auto n = co_await read_body_some(chunk);
      if (!n) co_return n.error();
      if (*n == 0) co_return result<void>{};
      if (out.size() + *n > m_body_limit) {
        m_close = true;  // the rest of the body is never read
        co_return std::make_error_code(std::errc::message_size);
      }
      out.append(reinterpret_cast<const char*>(chunk.data()), *n);
    }
  }
  net::any_io_executor executor() const override { return m_conn.socket.get_executor(); }

  net::awaitable<result<void>> respond(StringResponse response) override {
    HeadResponse head{std::move(response.base())};
    head.content_length(response.body().size());
    // Head and body in one gather write.
    const auto body = m_req.method() == bhttp::verb::head ? net::const_buffer() : net::buffer(response.body());
    prepare_head(head);
    co_return co_await send(0, body);
  }

  // Not a coroutine itself: a cached HEAD is answered in one frame (send's).
  net::awaitable<result<void>> write_head(HeadResponse& response) override {
    prepare_head(response);
    return send(0, net::const_buffer());
  }

  net::awaitable<result<void>> write_head_and_file(HeadResponse& response, int fd, std::uint64_t offset,
                                                   std::uint64_t length) override {
    prepare_head(response);
    if (length > k_inline_file_body) {
      auto head = co_await send(0, net::const_buffer());
      if (!head) co_return head;
      co_return co_await write_file(fd, offset, length);
    }
    std::string& out = m_conn.out;
    const std::size_t head_size = out.size();
    out.resize(head_size + static_cast<std::size_t>(length));
    if (auto ec = pread_into(fd, offset, out, head_size)) {
      m_status = 0;  // nothing was sent: the handler may still answer
      co_return ec;
    }
    co_return co_await send(length, net::const_buffer());
  }

  net::awaitable<result<void>> write_body(std::span<const std::byte> data) override {
    m_conn.arm(m_timeout);
    auto [ec, n] = co_await net::async_write(m_conn.socket, net::buffer(data.data(), data.size()), k_tuple);
    m_conn.disarm();
    m_bytes += n;
    if (ec) {
      m_close = true;
      co_return m_conn.io_error(ec);
    }
    co_return result<void>{};
  }

  net::awaitable<result<void>> write_file(int fd, std::uint64_t offset, std::uint64_t length) override {
    auto& socket = m_conn.socket;
    if (!m_conn.non_blocking) {
      // Once per connection: Asio's own async operations work the same in
      // this mode, and the ioctl is not free.
      boost::system::error_code ec;
      socket.non_blocking(true, ec);
      if (ec) co_return m_conn.io_error(ec);
      m_conn.non_blocking = true;
    }
    auto off = static_cast<off_t>(offset);
    while (length > 0) {
      // 1 MiB per call (a few hundred microseconds) keeps one connection from
      // hogging its I/O thread: dozens of followers of one fill share it.
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length, 1u << 20));
      // Corked for one call only: 1 GiB to one client over loopback took
      // 590 ms uncorked, 290 ms corked per call; corked across the yields
      // below, four clients on one thread waited on each other's held
      // segments (1.0 s for 4 GiB, against 0.7 s).
      set_cork(socket.native_handle(), 1);
      const ssize_t n = ::sendfile(socket.native_handle(), fd, &off, want);
      const int error = errno;
      set_cork(socket.native_handle(), 0);
      if (n > 0) {
        length -= static_cast<std::uint64_t>(n);
        m_bytes += static_cast<std::uint64_t>(n);
        // Let other connections on this I/O thread run between chunks.
        if (length > 0) co_await net::post(socket.get_executor(), net::use_awaitable);
        continue;
      }
      if (n == 0) {  // the file is shorter than promised
        m_close = true;
        co_return make_error_code(errc::storage_io);
      }
      if (error == EINTR) continue;
      if (error != EAGAIN && error != EWOULDBLOCK) {
        m_close = true;
        co_return std::error_code(error, std::system_category());
      }
      // The socket buffer is full: wait until writable, within the deadline.
      m_conn.arm(m_timeout);
      auto [wait_ec] = co_await socket.async_wait(tcp::socket::wait_write, k_tuple);
      m_conn.disarm();
      if (wait_ec) {
        m_close = true;
        co_return m_conn.io_error(wait_ec);
      }
    }
    co_return result<void>{};
  }

  net::awaitable<result<void>> write_chunk(std::span<const std::byte> data) override {
    if (data.empty()) co_return result<void>{};  // an empty chunk would end the body
    m_conn.arm(m_timeout);
    auto [ec, n] =
        co_await net::async_write(m_conn.socket, bhttp::make_chunk(net::buffer(data.data(), data.size())), k_tuple);
    m_conn.disarm();
    m_bytes += data.size();
    if (ec) {
      m_close = true;
      co_return m_conn.io_error(ec);
    }
    co_return result<void>{};
  }

  net::awaitable<result<void>> finish_chunks() override {
    m_conn.arm(m_timeout);
    auto [ec, n] = co_await net::async_write(m_conn.socket, bhttp::make_chunk_last(), k_tuple);
    m_conn.disarm();
    if (ec) {
      m_close = true;
      co_return m_conn.io_error(ec);
    }
    co_return result<void>{};
  }

  void close_after() noexcept override { m_close = true; }
  bool head_sent() const noexcept override { return m_head_sent; }
  void set_outcome(std::string_view outcome) override { m_outcome = outcome; }

  bool keep_alive() const noexcept { return m_head_sent && m_keep_alive && !m_close; }

  void log_access() const {
    // At warn and above this runs for every request: skip the formatting.
    if (!spdlog::should_log(spdlog::level::info)) return;
    const auto ms = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - m_started)
                        .count() / 1000.0;
    // The target is logged without its query string: hubcache URLs carry no
    // secrets there today, but upstream-style signed URLs would.
    const auto target = std::string_view(m_req.target());
    spdlog::info("access {} {} {} {}B {:.1f}ms {}", std::string_view(m_req.method_string()),
                 target.substr(0, target.find('?')), m_status, m_bytes, ms, m_outcome.empty() ? "-" : m_outcome);
  }

 private:
  // Sets the status and keep-alive decision and serializes the head into
  // m_conn.out (replacing what was there).
  void prepare_head(HeadResponse& response) {
    m_status = response.result_int();
    // A stopping server tells the client so instead of dropping it later. A
    // request body not read to its end leaves the connection unusable.
    if (m_body != nullptr && !m_body->is_done()) m_close = true;
    response.keep_alive(m_req.keep_alive() && !m_close && !m_stopping);
    m_keep_alive = response.keep_alive();
    m_conn.out.clear();
    append_head(m_conn.out, response);
  }

  // Sends m_conn.out (a head, then `inline_body` bytes of body), then `body`
  // (may be empty), in one write.
  net::awaitable<result<void>> send(std::size_t inline_body, net::const_buffer body) {
    m_head_sent = true;
    const std::array<net::const_buffer, 2> buffers{net::buffer(m_conn.out), body};
    m_conn.arm(m_timeout);
    auto [ec, n] = co_await net::async_write(m_conn.socket, buffers, k_tuple);
    m_conn.disarm();
    const std::size_t head_bytes = m_conn.out.size() - inline_body;
    if (n > head_bytes) m_bytes += n - head_bytes;
    if (ec) {
      m_close = true;
      co_return m_conn.io_error(ec);
    }
    co_return result<void>{};
  }

  Connection& m_conn;
  Request& m_req;
  std::chrono::milliseconds m_timeout;
  std::size_t m_body_limit;
  const std::atomic<bool>& m_stopping;
  std::chrono::steady_clock::time_point m_started;
  BodyParser* m_body;  // a POST/PUT/PATCH body still to read, else null
  beast::flat_buffer& m_buffer;
  bool m_continue;  // "100 Continue" owed before the first body read
  unsigned m_status = 0;
  std::uint64_t m_bytes = 0;
  bool m_head_sent = false;
  bool m_keep_alive = false;
  bool m_close = false;
  std::string m_outcome;
};

StringResponse plain_error(unsigned status, std::string_view message, unsigned version) {
  StringResponse res{static_cast<bhttp::status>(status), version};
  res.set(bhttp::field::content_type, "application/json");
  res.body() = std::string(R"({"error":")") + std::string(message) + "\"}";
  res.keep_alive(false);
  return res;
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::io_context& io, ServerOptions opts, Handler h, std::vector<net::io_context*> l)
      : ioc(io), loops(std::move(l)), options(std::move(opts)), handler(std::move(h)), acceptor(net::make_strand(io)) {}

  net::io_context& ioc;
  const std::vector<net::io_context*> loops;
  std::size_t next_loop = 0;  // only touched by accept_loop
  ServerOptions options;
  Handler handler;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  mutable std::mutex mutex;
  std::set<std::shared_ptr<Connection>> connections;  // guarded by mutex

  net::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopping) {
      if (connection_count() >= options.max_connections) {
        // At the cap: leave new connections in the accept queue a moment.
        net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(10));
        co_await t.async_wait(k_tuple);
        continue;
      }
      net::any_io_executor home = loops.empty() ? net::any_io_executor(net::make_strand(ioc))
                                                : net::any_io_executor(loops[next_loop++ % loops.size()]->get_executor());
      auto [ec, socket] = co_await acceptor.async_accept(home, k_tuple);
      if (ec) {
        if (stopping || ec == net::error::operation_aborted) break;
        // EMFILE and friends: back off briefly instead of spinning.
        spdlog::warn("accept failed: {}", ec.message());
        net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(50));
        co_await t.async_wait(k_tuple);
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      unpace_local_peer(socket);
      auto conn = std::make_shared<Connection>(std::move(socket));
      {
        std::lock_guard lock(mutex);
        connections.insert(conn);
      }
      auto ex = conn->socket.get_executor();
      net::co_spawn(ex, watch(conn, options.io_timeout), net::detached);
      net::co_spawn(ex, session(conn), [self, conn](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& err) {
            spdlog::error("connection ended by an internal error: {}", err.what());
          }
        }
        boost::system::error_code ignored;
        conn->socket.close(ignored);
        conn->watchdog.cancel();  // it ends when it sees the socket closed
        std::lock_guard lock(self->mutex);
        self->connections.erase(conn);
      });
    }
  }

  // The connection's watchdog: ends its socket I/O once the deadline armed
  // for it passes (Connection::io_error then reports errc::timeout). It wakes
  // at most once per `period` while nothing is armed, and ends with the
  // socket. cancel() alone would not do: it only aborts what is waiting in
  // the reactor, and the next step of a composed read or write (its
  // completion queued behind this timer's) would start unbounded. After the
  // shutdown every such step fails at once.
  static net::awaitable<void> watch(std::shared_ptr<Connection> conn, std::chrono::milliseconds period) {
    while (conn->socket.is_open()) {
      const auto now = Clock::now();
      if (conn->deadline <= now) {
        conn->timed_out = true;
        conn->deadline = Clock::time_point::max();
        boost::system::error_code ignored;
        conn->socket.cancel(ignored);
        conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
      }
      conn->watchdog.expires_at(std::min(conn->deadline, now + period));
      co_await conn->watchdog.async_wait(k_tuple);
    }
  }

  net::awaitable<void> session(std::shared_ptr<Connection> conn) {
    beast::flat_buffer buffer;
    while (!stopping) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
      // Checked against Content-Length when the header ends: set per method below.
      parser.body_limit(boost::none);
      conn->arm(options.io_timeout);
      auto [ec, n] = co_await bhttp::async_read_header(conn->socket, buffer, parser, k_tuple);
      conn->disarm();
      if (ec) {
        co_await reject_unreadable(*conn, ec);
        break;
      }
      conn->busy = true;
      if (stopping) break;  // shutdown began while this request arrived: close without serving
      const auto m = parser.get().method();
      // POST/PUT/PATCH bodies (uploads, commits, paths-info) are left for the
      // handler to read: relayed as a stream, or read whole and bounded
      // (read_body) where hubcache parses them. Other methods' bodies are
      // small and read here, so idle reads cannot pin memory.
      std::optional<BodyParser> body;
      if ((m == bhttp::verb::post || m == bhttp::verb::put || m == bhttp::verb::patch) && !parser.is_done()) {
        body.emplace(std::move(parser));
        body->body_limit(boost::none);
      } else if (!parser.is_done()) {
        parser.body_limit(options.small_body_limit);
        if (parser.get()[bhttp::field::expect] == "100-continue") {
          bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
          conn->arm(options.io_timeout);
          auto [ec2, n2] = co_await bhttp::async_write(conn->socket, cont, k_tuple);
          conn->disarm();
          if (ec2) break;
        }
        conn->arm(options.io_timeout);
        auto [ec3, n3] = co_await bhttp::async_read(conn->socket, buffer, parser, k_tuple);
        conn->disarm();
        if (ec3) {
          co_await reject_unreadable(*conn, ec3);
          break;
        }
      }
      Request req = body ? Request(body->get().base()) : parser.release();
      ExchangeImpl exchange(*conn, req, options, stopping, body ? &*body : nullptr, buffer);
      co_await handler(exchange);
      if (!exchange.head_sent()) {
        // A handler that returns without answering is a bug; never leave the client hanging.
        co_await exchange.respond(plain_error(500, "internal error", req.version()));
      }
      exchange.log_access();
      conn->busy = false;
      if (!exchange.keep_alive()) break;
    }
    boost::system::error_code ignored;
    conn->socket.shutdown(tcp::socket::shutdown_send, ignored);
    conn->socket.close(ignored);
  }

  // Answers requests we could not parse with 400 (or 431/413), then closes.
  net::awaitable<void> reject_unreadable(Connection& conn, const boost::system::error_code& ec) {
    unsigned status = 0;
    std::string_view msg;
    if (ec == bhttp::error::header_limit) {
      status = 431;
      msg = "request header too large";
    } else if (ec == bhttp::error::body_limit) {
      status = 413;
      msg = "request body too large";
    } else if (ec.category() == make_error_code(bhttp::error::bad_method).category() && ec != bhttp::error::end_of_stream &&
               ec != bhttp::error::partial_message) {
      status = 400;
      msg = "malformed HTTP request";
    }
    if (status == 0) co_return;  // timeout, EOF, reset: nothing to answer
    auto res = plain_error(status, msg, 11);
    res.prepare_payload();
    conn.arm(options.io_timeout);
    co_await bhttp::async_write(conn.socket, res, k_tuple);
    conn.disarm();
  }

  std::size_t connection_count() const {
    std::lock_guard lock(mutex);
    return connections.size();
  }

  void close_idle() {
    std::lock_guard lock(mutex);
    for (const auto& conn : connections) {
      if (!conn->busy) net::post(conn->socket.get_executor(), [conn] { conn->socket.close(); });
    }
  }
  void close_all() {
    std::lock_guard lock(mutex);
    for (const auto& conn : connections) {
      net::post(conn->socket.get_executor(), [conn] { conn->socket.close(); });
    }
  }
};

Server::Server(net::io_context& ioc, ServerOptions options, Handler handler, std::vector<net::io_context*> loops)
    : m_impl(std::make_shared<Impl>(ioc, std::move(options), std::move(handler), std::move(loops))) {}

Server::~Server() = default;

tcp::endpoint Server::listen() {
  auto& a = m_impl->acceptor;
  const auto address = net::ip::make_address(m_impl->options.host);
  const tcp::endpoint ep{address, m_impl->options.port};
  a.open(ep.protocol());
  a.set_option(net::socket_base::reuse_address(true));
  a.bind(ep);
  a.listen(net::socket_base::max_listen_connections);
  return a.local_endpoint();
}

void Server::start() {
  auto impl = m_impl;
  net::co_spawn(impl->acceptor.get_executor(), impl->accept_loop(), net::detached);
}

net::awaitable<void> Server::shutdown(std::chrono::milliseconds grace) {
  auto impl = m_impl;
  impl->stopping = true;
  net::post(impl->acceptor.get_executor(), [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl->close_idle();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  net::steady_timer timer(co_await net::this_coro::executor);
  while (connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    // Connections that were between requests when we looked may now be idle.
    impl->close_idle();
    timer.expires_after(std::chrono::milliseconds(25));
    co_await timer.async_wait(k_tuple);
  }
  if (connections() > 0) {
    spdlog::warn("shutdown grace expired with {} connection(s) still busy; closing them", connections());
    impl->close_all();
  }
}

std::size_t Server::connections() const noexcept {
  std::lock_guard lock(m_impl->mutex);
  return m_impl->connections.size();
}

}  // namespace hubcache::http
