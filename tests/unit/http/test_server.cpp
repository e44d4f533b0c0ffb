#include <hubcache/http/server.hpp>

#include <test_support.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>
#include <future>
#include <thread>
#include <vector>

namespace hubcache::http {
namespace {

using namespace std::chrono_literals;
namespace beast = boost::beast;

// A server on 127.0.0.1:0 running on its own thread, with a handler that
// echoes the target, streams a long body for /stream, and waits for /slow.
class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions opts;
    opts.host = "127.0.0.1";
    opts.port = 0;
    opts.io_timeout = 2s;
    opts.header_limit = 4096;
    opts.body_limit = 1024 * 1024;
    m_server = std::make_unique<Server>(m_ioc, opts, [this](Exchange& ex) { return handle(ex); });
    m_endpoint = m_server->listen();
    m_server->start();
    m_thread = std::thread([this] { m_ioc.run(); });
  }
  void TearDown() override {
    m_ioc.stop();
    m_thread.join();
  }

  net::awaitable<void> handle(Exchange& ex) {
    const auto target = std::string(ex.request().target());
    if (target == "/stream") {
      HeadResponse res{bhttp::status::ok, 11};
      res.content_length(3 * 1000);
      co_await ex.write_head(res);
      std::string chunk(1000, 'x');
      for (int i = 0; i < 3; ++i) co_await ex.write_body(std::as_bytes(std::span(chunk.data(), chunk.size())));
      co_return;
    }
    if (target == "/chunked") {
      HeadResponse res{bhttp::status::ok, 11};
      res.chunked(true);
      co_await ex.write_head(res);
      std::string a = "hello ", b = "world";
      co_await ex.write_chunk(std::as_bytes(std::span(a.data(), a.size())));
      co_await ex.write_chunk(std::as_bytes(std::span(b.data(), b.size())));
      co_await ex.finish_chunks();
      co_return;
    }
    if (target == "/file") {
      // 3 MiB + 5 of a temp file, from offset 7: exercises sendfile and its partial writes.
      HeadResponse res{bhttp::status::ok, 11};
      res.content_length(m_file_length);
      co_await ex.write_head(res);
      co_await ex.write_file(m_file_fd, 7, m_file_length);
      co_return;
    }
    if (target == "/file-with-head" || target == "/small-file-with-head") {
      // The same through write_head_and_file: the small span goes out with
      // the head in one write, the large one with sendfile.
      const std::uint64_t length = target == "/file-with-head" ? m_file_length : 100;
      HeadResponse res{bhttp::status::ok, 11};
      res.content_length(length);
      co_await ex.write_head_and_file(res, m_file_fd, 7, length);
      co_return;
    }
    if (target == "/count-body") {
      // Streams the body through a small window: "<bytes> <sum of bytes>".
      std::array<std::byte, 1000> window;
      std::uint64_t bytes = 0;
      std::uint64_t sum = 0;
      for (;;) {
        auto n = co_await ex.read_body_some(window);
        if (!n) {
          co_await ex.respond(StringResponse{bhttp::status::bad_request, 11});
          co_return;
        }
        if (*n == 0) break;
        bytes += *n;
        for (std::size_t i = 0; i < *n; ++i) sum += static_cast<unsigned char>(window[i]);
      }
      StringResponse res{bhttp::status::ok, 11};
      res.body() = std::to_string(bytes) + " " + std::to_string(sum);
      co_await ex.respond(std::move(res));
      co_return;
    }
    if (target == "/whole-body") {
      auto read = co_await ex.read_body();
      StringResponse res{read ? bhttp::status::ok : bhttp::status::payload_too_large, 11};
      res.body() = read ? std::to_string(ex.request().body().size()) : read.error().message();
      co_await ex.respond(std::move(res));
      co_return;
    }
    if (target == "/slow") {
      ++m_slow_started;
      net::steady_timer t(co_await net::this_coro::executor, 300ms);
      co_await t.async_wait(net::use_awaitable);
    }
    if (target == "/silent") co_return;  // the server must still answer
    StringResponse res{bhttp::status::ok, ex.request().version()};
    res.body() = "you asked for " + target;
    co_await ex.respond(std::move(res));
  }

  tcp::socket connect() {
    tcp::socket s(m_client_ioc);
    s.connect(m_endpoint);
    return s;
  }

  static bhttp::response<bhttp::string_body> roundtrip(tcp::socket& s, bhttp::verb method, std::string target,
                                                       beast::flat_buffer& buf) {
    bhttp::request<bhttp::empty_body> req{method, target, 11};
    req.set(bhttp::field::host, "test");
    bhttp::write(s, req);
    bhttp::response_parser<bhttp::string_body> parser;
    if (method == bhttp::verb::head) parser.skip(true);
    bhttp::read(s, buf, parser);
    return parser.release();
  }

  net::io_context m_ioc;
  net::io_context m_client_ioc;
  std::unique_ptr<Server> m_server;
  tcp::endpoint m_endpoint;
  std::thread m_thread;
  std::atomic<int> m_slow_started{0};
  int m_file_fd = -1;
  std::uint64_t m_file_length = 0;
};

TEST_F(ServerTest, WriteFileSendsTheRequestedSpan) {
  test::TempDir dir;
  const auto path = dir.path() / "blob";
  std::string content(3 * 1024 * 1024 + 12, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  }
  m_file_fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(m_file_fd, 0);
  m_file_length = content.size() - 7 - 5;
  auto s = connect();
  beast::flat_buffer buf;
  auto res = roundtrip(s, bhttp::verb::get, "/file", buf);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), content.substr(7, m_file_length));
  // The connection stays usable after sendfile.
  EXPECT_EQ(roundtrip(s, bhttp::verb::get, "/x", buf).body(), "you asked for /x");
  res = roundtrip(s, bhttp::verb::get, "/file-with-head", buf);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), content.substr(7, m_file_length));
  res = roundtrip(s, bhttp::verb::get, "/small-file-with-head", buf);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), content.substr(7, 100));
  EXPECT_EQ(roundtrip(s, bhttp::verb::get, "/x", buf).body(), "you asked for /x");
  ::close(m_file_fd);
}

// A client that stops reading a large answer is cut off once the write has
// made no progress for io_timeout (2 s here), and the server lets go of the
// connection; it is not held until the body is through.
TEST_F(ServerTest, ClientThatStopsReadingIsCutOffAfterDeadline) {
  test::TempDir dir;
  const auto path = dir.path() / "sparse";
  m_file_length = 256ull * 1024 * 1024;  // far more than the socket buffers hold
  m_file_fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(m_file_fd, 0);
  ASSERT_EQ(::ftruncate(m_file_fd, static_cast<off_t>(m_file_length + 7)), 0);
  auto s = connect();
  const std::string req = "GET /file HTTP/1.1\r\nHost: test\r\n\r\n";
  net::write(s, net::buffer(req));
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(m_server->connections(), 1u);  // writing, blocked on the full socket buffers
  while (m_server->connections() > 0 && std::chrono::steady_clock::now() - start < 15s) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(m_server->connections(), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 2s);
  // What arrived ends short of the promised length.
  std::uint64_t received = 0;
  std::vector<char> buf(1 << 20);
  boost::system::error_code ec;
  while (!ec) received += s.read_some(net::buffer(buf), ec);
  EXPECT_LT(received, m_file_length);
  ::close(m_file_fd);
}

// A POST with `body`, Content-Length or chunked (in pieces of 10000 bytes).
// A server that refuses the body (413) answers and closes before reading it
// all: the rest of the body then cannot be written (EPIPE, ECONNRESET), and
// the answer is read all the same.
bhttp::response<bhttp::string_body> post(tcp::socket& s, const std::string& target, const std::string& body,
                                         bool chunked, beast::flat_buffer& buf) {
  std::string head = "POST " + target + " HTTP/1.1\r\nHost: test\r\n";
  head += chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  net::write(s, net::buffer(head));
  boost::system::error_code refused;
  for (std::size_t pos = 0; pos < body.size() && !refused; pos += 10000) {
    const auto piece = body.substr(pos, 10000);
    if (!chunked) {
      net::write(s, net::buffer(piece), refused);
      continue;
    }
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    net::write(s, net::buffer(std::string(size) + piece + "\r\n"), refused);
  }
  if (chunked && !refused) net::write(s, net::buffer(std::string("0\r\n\r\n")), refused);
  bhttp::response_parser<bhttp::string_body> parser;
  bhttp::read(s, buf, parser);
  return parser.release();
}

TEST_F(ServerTest, RequestBodiesStreamToTheHandlerInPieces) {
  std::string body(3 * 1024 * 1024 + 5, '\0');  // more than body_limit: streaming has no cap
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    body[i] = static_cast<char>(i * 31 % 251);
    sum += static_cast<unsigned char>(body[i]);
  }
  const std::string want = std::to_string(body.size()) + " " + std::to_string(sum);
  auto s = connect();
  beast::flat_buffer buf;
  for (const bool chunked : {false, true}) {
    auto res = post(s, "/count-body", body, chunked, buf);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), want) << "chunked=" << chunked;
    EXPECT_TRUE(res.keep_alive());  // the body was read to its end
  }
  // Read whole (for bodies hubcache parses): bounded by body_limit.
  EXPECT_EQ(post(s, "/whole-body", body.substr(0, 1000), false, buf).body(), "1000");
  auto big = post(s, "/whole-body", body, false, buf);
  EXPECT_EQ(big.result_int(), 413u);
  EXPECT_FALSE(big.keep_alive());
}

TEST_F(ServerTest, AnUnreadRequestBodyClosesTheConnection) {
  auto s = connect();
  beast::flat_buffer buf;
  auto res = post(s, "/x", std::string(5000, 'b'), false, buf);
  EXPECT_EQ(res.body(), "you asked for /x");
  EXPECT_FALSE(res.keep_alive());
}

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto s = connect();
  beast::flat_buffer buf;
  for (const char* t : {"/a", "/b", "/stream", "/chunked", "/c"}) {
    auto res = roundtrip(s, bhttp::verb::get, t, buf);
    EXPECT_EQ(res.result_int(), 200u) << t;
    EXPECT_TRUE(res.keep_alive()) << t;
    if (std::string(t) == "/stream") EXPECT_EQ(res.body(), std::string(3000, 'x'));
    else if (std::string(t) == "/chunked") EXPECT_EQ(res.body(), "hello world");
    else EXPECT_EQ(res.body(), std::string("you asked for ") + t);
  }
  EXPECT_EQ(m_server->connections(), 1u);
}

TEST_F(ServerTest, HeadAnnouncesLengthWithoutBody) {
  auto s = connect();
  beast::flat_buffer buf;
  auto res = roundtrip(s, bhttp::verb::head, "/abc", buf);
  EXPECT_EQ(res[bhttp::field::content_length], "18");
  // The connection is still in sync: the next answer parses.
  auto next = roundtrip(s, bhttp::verb::get, "/x", buf);
  EXPECT_EQ(next.body(), "you asked for /x");
}

TEST_F(ServerTest, HandlerThatDoesNotAnswerGets500) {
  auto s = connect();
  beast::flat_buffer buf;
  EXPECT_EQ(roundtrip(s, bhttp::verb::get, "/silent", buf).result_int(), 500u);
}

TEST_F(ServerTest, MalformedRequestGets400AndClose) {
  auto s = connect();
  net::write(s, net::buffer(std::string("GARBAGE\r\n\r\n")));
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 400u);
  EXPECT_NE(res.body().find("error"), std::string::npos);
  EXPECT_FALSE(res.keep_alive());
}

TEST_F(ServerTest, OversizedHeaderGets431) {
  auto s = connect();
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n";
  net::write(s, net::buffer(req));
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 431u);
}

TEST_F(ServerTest, IdleConnectionIsClosedAfterDeadline) {
  auto s = connect();
  char c;
  boost::system::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  s.read_some(net::buffer(&c, 1), ec);  // blocks until the server's 2 s deadline closes it
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(ServerTest, ShutdownFinishesInFlightAndClosesIdle) {
  auto idle = connect();
  auto busy = connect();
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/slow", 11};
  req.set(bhttp::field::host, "test");
  bhttp::write(busy, req);
  while (m_slow_started == 0) std::this_thread::sleep_for(5ms);

  std::promise<void> done;
  net::co_spawn(m_ioc, m_server->shutdown(5s), [&](std::exception_ptr) { done.set_value(); });

  // The in-flight request completes, with Connection: close.
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(busy, buf, res);
  EXPECT_EQ(res.body(), "you asked for /slow");
  EXPECT_FALSE(res.keep_alive());
  // The idle one is closed without an answer.
  char c;
  boost::system::error_code ec;
  idle.read_some(net::buffer(&c, 1), ec);
  EXPECT_TRUE(ec) << "idle connection still open";
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(m_server->connections(), 0u);
  // No new connections are accepted.
  tcp::socket late(m_client_ioc);
  late.connect(m_endpoint, ec);
  if (!ec) {
    late.read_some(net::buffer(&c, 1), ec);
    EXPECT_TRUE(ec);
  }
}

}  // namespace
}  // namespace hubcache::http
