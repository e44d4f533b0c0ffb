#include <hubcache/upstream/http_client.hpp>

#include "test_pki.hpp"
#include "test_server.hpp"
#include "test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include <fstream>
#include <thread>
#include <vector>

namespace hubcache::upstream {
namespace {

using test::http_response;
using test::Reply;
using test::TestServer;
using namespace std::chrono_literals;

// What a test needs to know about one exchange, collected inside the
// coroutine so that assertions run outside it.
struct Fetched {
  std::error_code error;  // from send() or from reading the body
  unsigned status = 0;
  std::optional<std::uint64_t> content_length;
  std::string body;
};

Request make_request(const std::string& url, http::verb method = http::verb::get) {
  auto parsed = Url::parse(url);
  if (!parsed) throw std::runtime_error("bad test url " + url);
  return Request{method, *parsed, {}, {}};
}

// Sends, then reads the body with read_some in windows of `window` bytes,
// stopping after `max_body` bytes (dropping the response unread).
net::awaitable<Fetched> fetch(HttpClient& client, Request request, std::size_t window = 7,
                              std::size_t max_body = SIZE_MAX) {
  Fetched out;
  auto response = co_await client.send(std::move(request));
  if (!response) {
    out.error = response.error();
    co_return out;
  }
  out.status = (*response)->status();
  out.content_length = (*response)->content_length();
  std::vector<std::byte> buf(window);
  while (out.body.size() < max_body) {
    auto n = co_await (*response)->read_some(buf);
    if (!n) {
      out.error = n.error();
      break;
    }
    if (*n == 0) break;
    out.body.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return out;
}

class HttpClientTest : public ::testing::Test {
 protected:
  std::shared_ptr<HttpClient> client(ClientOptions options = {}) {
    options.user_agent = "hubcache-test";
    return make_http_client(options);
  }
  Fetched get(HttpClient& client, const std::string& url, std::size_t window = 7) {
    return test::run(m_ioc, fetch(client, make_request(url), window));
  }

  net::io_context m_ioc;
};

TEST_F(HttpClientTest, ContentLengthBodyReadInSmallPieces) {
  const std::string body(1000, 'x');
  TestServer server([&](const auto&) { return Reply{http_response(200, body)}; });
  auto c = client();
  const Fetched r = get(*c, server.url("/file"), 7);
  EXPECT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_length, 1000u);
  EXPECT_EQ(r.body, body);
}

TEST_F(HttpClientTest, StreamsARequestBodyFromItsSourceWithLengthOrChunked) {
  std::string payload(700 * 1024 + 3, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i * 7 % 26);
  for (const bool known_length : {true, false}) {
    TestServer server([](const auto&) { return Reply{http_response(201, "stored")}; });
    auto c = client();
    Request put = make_request(server.url("/upload"), http::verb::put);
    // Uneven pieces, never more than the source is asked for.
    std::size_t pos = 0;
    std::size_t calls = 0;
    put.body_source = [&](std::span<std::byte> buf) -> net::awaitable<result<std::size_t>> {
      const std::size_t n = std::min({buf.size(), payload.size() - pos, std::size_t{1000} + calls++ * 4096});
      std::memcpy(buf.data(), payload.data() + pos, n);
      pos += n;
      co_return n;
    };
    if (known_length) put.body_length = payload.size();
    const Fetched r = test::run(m_ioc, fetch(*c, std::move(put)));
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.status, 201u);
    EXPECT_EQ(r.body, "stored");
    const auto seen = server.last_request();
    EXPECT_EQ(seen.method(), http::verb::put);
    EXPECT_TRUE(seen.body() == payload) << "known_length=" << known_length << ", got " << seen.body().size() << " bytes";
    EXPECT_EQ(seen.chunked(), !known_length);
    if (known_length) EXPECT_EQ(seen[http::field::content_length], std::to_string(payload.size()));
  }
}

TEST_F(HttpClientTest, AFailingBodySourceEndsTheRequestWithItsError) {
  TestServer server([](const auto&) { return Reply{http_response(201, "stored")}; });
  auto c = client();
  Request put = make_request(server.url("/upload"), http::verb::put);
  put.body_source = [](std::span<std::byte>) -> net::awaitable<result<std::size_t>> {
    co_return make_error_code(errc::bad_request);
  };
  put.body_length = 10;
  const Fetched r = test::run(m_ioc, fetch(*c, std::move(put)));
  EXPECT_EQ(r.error, make_error_code(errc::bad_request));
}

TEST_F(HttpClientTest, SendsHostUserAgentAndContentLength) {
  TestServer server([](const auto&) { return Reply{http_response(201, "ok")}; });
  auto c = client();
  Request post = make_request(server.url("/upload?sig=secret"), http::verb::post);
  post.body = "payload";
  post.headers.set(http::field::authorization, "Bearer t");
  const Fetched r = test::run(m_ioc, fetch(*c, std::move(post)));
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.status, 201u);
  const auto seen = server.last_request();
  EXPECT_EQ(seen.method(), http::verb::post);
  EXPECT_EQ(seen.target(), "/upload?sig=secret");
  EXPECT_EQ(seen[http::field::host], "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(seen[http::field::user_agent], "hubcache-test");
  EXPECT_EQ(seen[http::field::content_length], "7");
  EXPECT_EQ(seen[http::field::authorization], "Bearer t");
  EXPECT_EQ(seen.body(), "payload");

  // A caller's own User-Agent wins.
  Request get_req = make_request(server.url("/"));
  get_req.headers.set(http::field::user_agent, "custom/1");
  ASSERT_FALSE(test::run(m_ioc, fetch(*c, std::move(get_req))).error);
  EXPECT_EQ(server.last_request()[http::field::user_agent], "custom/1");
}

TEST_F(HttpClientTest, ChunkedBody) {
  TestServer server([](const auto&) {
    return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"};
  });
  auto c = client();
  const Fetched r = get(*c, server.url("/"), 3);
  EXPECT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.content_length, std::nullopt);
  EXPECT_EQ(r.body, "hello, world");
  // The chunked body was delimited, so the connection was reusable.
  EXPECT_FALSE(get(*c, server.url("/")).error);
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, HeadHasNoBodyWhateverContentLengthSays) {
  TestServer server([](const http::request<http::string_body>& req) {
    if (req.method() == http::verb::head) return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"};
    return Reply{http_response(200, "after")};
  });
  // Short io_timeout: a client waiting for the 1234 bytes fails fast.
  ClientOptions options;
  options.io_timeout = 1s;
  auto c = client(options);
  const Fetched head = test::run(m_ioc, fetch(*c, make_request(server.url("/f"), http::verb::head)));
  EXPECT_FALSE(head.error) << head.error.message();
  EXPECT_EQ(head.status, 200u);
  EXPECT_EQ(head.content_length, 1234u);
  EXPECT_EQ(head.body, "");
  // Had the client waited for 1234 body bytes, it would read "HTTP/1.1..."
  // of this response as body or time out.
  const Fetched next = get(*c, server.url("/f"));
  EXPECT_FALSE(next.error) << next.error.message();
  EXPECT_EQ(next.body, "after");
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, NoContentAndNotModifiedHaveNoBody) {
  TestServer server([](const http::request<http::string_body>& req) {
    if (req.target() == "/204") return Reply{"HTTP/1.1 204 No Content\r\n\r\n"};
    return Reply{"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"};
  });
  ClientOptions options;
  options.io_timeout = 1s;  // a client reading a body until EOF fails fast
  auto c = client(options);
  for (const char* target : {"/204", "/304", "/204"}) {
    const Fetched r = get(*c, server.url(target));
    EXPECT_FALSE(r.error) << target << ": " << r.error.message();
    EXPECT_EQ(r.body, "");
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, KeepAliveReusesOneConnection) {
  TestServer server([](const auto&) { return Reply{http_response(200, "abc")}; });
  auto c = client();
  for (int i = 0; i < 3; ++i) {
    const Fetched r = get(*c, server.url("/k"));
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.body, "abc");
  }
  EXPECT_EQ(server.requests(), 3);
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(HttpClientTest, ConnectionCloseIsNotReused) {
  TestServer server([](const auto&) { return Reply{http_response(200, "abc", "Connection: close\r\n")}; });
  auto c = client();
  EXPECT_FALSE(get(*c, server.url("/")).error);
  EXPECT_FALSE(get(*c, server.url("/")).error);
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpClientTest, UnfinishedBodyClosesTheConnection) {
  TestServer server([](const auto&) { return Reply{http_response(200, std::string(64 * 1024, 'b'))}; });
  auto c = client();
  const Fetched partial = test::run(m_ioc, fetch(*c, make_request(server.url("/")), 10, 10));
  EXPECT_FALSE(partial.error);
  EXPECT_EQ(partial.body.size(), 10u);
  const Fetched full = get(*c, server.url("/"), 4096);
  EXPECT_FALSE(full.error) << full.error.message();
  EXPECT_EQ(full.body.size(), 64u * 1024);
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpClientTest, IdleTimeoutAndPoolSizeLimitReuse) {
  TestServer server([](const auto&) { return Reply{http_response(200, "abc")}; });
  ClientOptions expired;
  expired.idle_timeout = 0s;
  auto c1 = client(expired);
  EXPECT_FALSE(get(*c1, server.url("/")).error);
  EXPECT_FALSE(get(*c1, server.url("/")).error);
  EXPECT_EQ(server.connections(), 2);

  ClientOptions no_pool;
  no_pool.max_idle_per_host = 0;
  auto c2 = client(no_pool);
  EXPECT_FALSE(get(*c2, server.url("/")).error);
  EXPECT_FALSE(get(*c2, server.url("/")).error);
  EXPECT_EQ(server.connections(), 4);
}

TEST_F(HttpClientTest, ServerClosedPooledConnectionIsRetriedOnFreshOne) {
  // Keep-alive response, then the server drops the connection while idle.
  TestServer server([](const auto&) { return Reply{http_response(200, "abc"), /*close=*/true}; });
  auto c = client();
  EXPECT_FALSE(get(*c, server.url("/")).error);
  const Fetched second = get(*c, server.url("/"));
  EXPECT_FALSE(second.error) << second.error.message();
  EXPECT_EQ(second.body, "abc");
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(server.requests(), 2);
}

TEST_F(HttpClientTest, RetriesOnlyOnceAndOnlyForPooledConnections) {
  // First request: answered, then the idle connection is dropped. Later
  // requests: read, then the connection is closed without an answer, which
  // must not be retried (the server may have acted on the request).
  std::atomic<int> seen{0};
  TestServer server([&](const auto&) {
    if (seen++ == 0) return Reply{http_response(200, "abc"), true};
    return Reply{"", true};
  });
  auto c = client();
  EXPECT_FALSE(get(*c, server.url("/")).error);
  const Fetched second = get(*c, server.url("/"));
  EXPECT_EQ(second.error, make_error_code(errc::upstream_unavailable));
  EXPECT_EQ(server.connections(), 2);  // the stale one + exactly one retry
  EXPECT_EQ(server.requests(), 2);
}

TEST_F(HttpClientTest, AnswerSentUnaskedOnAnIdleConnectionIsNeverTakenForTheNextOne) {
  // After its answer the server writes another one, unasked, once the first
  // is read (a late duplicate, or a 408 on an idle connection).
  std::atomic<int> seen{0};
  TestServer server([&](const auto&) {
    if (seen++ == 0) return Reply{http_response(200, "abc"), false, false, http_response(200, "EVIL")};
    return Reply{http_response(200, "def")};
  });
  auto c = client();
  EXPECT_EQ(get(*c, server.url("/")).body, "abc");
  std::this_thread::sleep_for(300ms);  // the unasked answer arrives while the connection is pooled
  const Fetched second = get(*c, server.url("/"));
  ASSERT_FALSE(second.error) << second.error.message();
  EXPECT_EQ(second.body, "def");
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpClientTest, InterimAnswersAreSkipped) {
  TestServer server([](const auto& request) {
    std::string raw = "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n";
    raw += "HTTP/1.1 100 Continue\r\n\r\n";
    raw += request.method() == http::verb::head ? http_response(200, "", "X-Final: yes\r\n")
                                                : http_response(200, "{}", "X-Final: yes\r\n");
    return Reply{raw};
  });
  auto c = client();
  const Fetched got = get(*c, server.url("/api/models/x"));
  ASSERT_FALSE(got.error) << got.error.message();
  EXPECT_EQ(got.status, 200u);
  EXPECT_EQ(got.body, "{}");
  const Fetched head = test::run(m_ioc, fetch(*c, make_request(server.url("/x"), http::verb::head)));
  ASSERT_FALSE(head.error) << head.error.message();
  EXPECT_EQ(head.status, 200u);
  EXPECT_EQ(server.connections(), 1) << "the connection stays usable";

  TestServer endless([](const auto&) {
    std::string raw;
    for (int i = 0; i < 20; ++i) raw += "HTTP/1.1 103 Early Hints\r\n\r\n";
    return Reply{raw};
  });
  EXPECT_EQ(get(*c, endless.url("/")).error, make_error_code(errc::upstream_protocol));
}

TEST_F(HttpClientTest, AnEndlessChunkSizeLineIsAProtocolError) {
  // Beast 1.81 does not limit a chunk-size line (or its extensions) itself.
  TestServer server([](const auto&) {
    return Reply{"HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(4 << 20, 'a')};
  });
  ClientOptions options;
  options.io_timeout = 5s;
  auto c = client(options);
  EXPECT_EQ(get(*c, server.url("/"), 4096).error, make_error_code(errc::upstream_protocol));
}

TEST_F(HttpClientTest, APostIsNotSentAgainOnAConnectionFoundClosed) {
  // The server answers, then closes the idle connection only when the next
  // request arrives: the client cannot tell whether it acted on it.
  std::atomic<int> seen{0};
  TestServer server([&](const auto&) {
    if (seen++ == 0) return Reply{http_response(200, "abc")};
    return Reply{"", true};
  });
  auto c = client();
  EXPECT_FALSE(get(*c, server.url("/")).error);
  const Fetched post = test::run(m_ioc, fetch(*c, make_request(server.url("/like"), http::verb::post)));
  EXPECT_EQ(post.error, make_error_code(errc::upstream_unavailable));
  EXPECT_EQ(server.requests(), 2) << "sent once";
}

TEST_F(HttpClientTest, ARequestThatMayNotBeRepeatedWaitsLongerForItsAnswer) {
  // The Hub working on a commit: the answer comes after io_timeout.
  TestServer server([](const auto&) {
    std::this_thread::sleep_for(600ms);
    return Reply{http_response(200, "{}")};
  });
  ClientOptions options;
  options.io_timeout = 200ms;
  options.unsafe_answer_timeout = 5s;
  auto c = client(options);
  const Fetched post = test::run(m_ioc, fetch(*c, make_request(server.url("/api/models/x/commit/main"), http::verb::post)));
  ASSERT_FALSE(post.error) << post.error.message();
  EXPECT_EQ(post.body, "{}");
  EXPECT_EQ(get(*c, server.url("/api/models/x")).error, make_error_code(errc::upstream_timeout));
  // A POST that only reads (paths-info) is due within io_timeout, as a GET.
  Request read = make_request(server.url("/api/models/x/paths-info/main"), http::verb::post);
  read.read_only = true;
  EXPECT_EQ(test::run(m_ioc, fetch(*c, std::move(read))).error, make_error_code(errc::upstream_timeout));
}

TEST_F(HttpClientTest, StalledServerTimesOut) {
  TestServer server([](const auto&) { return Reply{"", false, /*stall=*/true}; });
  ClientOptions options;
  options.io_timeout = 200ms;
  auto c = client(options);
  const auto start = std::chrono::steady_clock::now();
  const Fetched r = get(*c, server.url("/"));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.error, make_error_code(errc::upstream_timeout)) << r.error.message();
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_F(HttpClientTest, StalledBodyTimesOut) {
  TestServer server([](const auto&) {
    return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"};  // keeps the connection open
  });
  ClientOptions options;
  options.io_timeout = 200ms;
  auto c = client(options);
  const Fetched r = get(*c, server.url("/"), 64);
  EXPECT_EQ(r.error, make_error_code(errc::upstream_timeout)) << r.error.message();
  EXPECT_EQ(r.body, "0123456789");
}

TEST_F(HttpClientTest, ConnectionRefused) {
  std::uint16_t port = 0;
  {
    // A port that was just free: nothing listens there now.
    net::ip::tcp::acceptor probe(m_ioc, {net::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  auto c = client();
  const Fetched r = get(*c, "http://127.0.0.1:" + std::to_string(port) + "/");
  EXPECT_EQ(r.error, make_error_code(errc::upstream_unavailable)) << r.error.message();
}

TEST_F(HttpClientTest, TruncatedBodyIsUnavailable) {
  TestServer server([](const auto&) {
    return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", /*close=*/true};
  });
  auto c = client();
  const Fetched r = get(*c, server.url("/"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.error, make_error_code(errc::upstream_unavailable)) << r.error.message();
  EXPECT_EQ(r.body, "0123456789");
}

TEST_F(HttpClientTest, GarbageIsAProtocolError) {
  TestServer server([](const auto&) { return Reply{"SSH-2.0-OpenSSH\r\n\r\n", true}; });
  auto c = client();
  EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_protocol));
}

TEST_F(HttpClientTest, ReadAllEnforcesLimit) {
  TestServer server([](const auto&) { return Reply{http_response(200, std::string(100, 'a'))}; });
  auto c = client();
  auto read_all = [&](std::size_t limit) -> net::awaitable<result<std::string>> {
    auto response = co_await c->send(make_request(server.url("/")));
    if (!response) co_return response.error();
    co_return co_await (*response)->read_all(limit);
  };
  const auto ok = test::run(m_ioc, read_all(100));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(*ok, std::string(100, 'a'));
  const auto too_big = test::run(m_ioc, read_all(99));
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error(), make_error_code(errc::upstream_protocol));
}

TEST_F(HttpClientTest, ConcurrentUseFromSeveralThreads) {
  TestServer server([](const auto&) { return Reply{http_response(200, std::string(3000, 'c'))}; });
  auto c = client();
  constexpr int k_workers = 6;
  constexpr int k_requests = 5;
  std::atomic<int> good{0};
  for (int w = 0; w < k_workers; ++w) {
    net::co_spawn(
        net::make_strand(m_ioc),
        [&]() -> net::awaitable<void> {
          for (int i = 0; i < k_requests; ++i) {
            const Fetched r = co_await fetch(*c, make_request(server.url("/")), 512);
            if (!r.error && r.body.size() == 3000) ++good;
          }
        },
        net::detached);
  }
  std::thread other([&] { m_ioc.run_for(10s); });
  m_ioc.run_for(10s);
  other.join();
  EXPECT_EQ(good, k_workers * k_requests);
  EXPECT_LE(server.connections(), k_workers);
}

// --- HTTPS ------------------------------------------------------------------

class HttpsTest : public HttpClientTest {
 protected:
  std::shared_ptr<net::ssl::context> server_tls(const test::TestPki& pki) {
    auto tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
    tls->use_certificate_chain(net::buffer(pki.cert_pem));
    tls->use_private_key(net::buffer(pki.key_pem), net::ssl::context::pem);
    return tls;
  }
  std::string write_ca(const test::TestPki& pki) {
    const auto path = m_dir.path() / "ca.pem";
    std::ofstream(path) << pki.ca_pem;
    return path.string();
  }
  ClientOptions trusting(const test::TestPki& pki) {
    ClientOptions options;
    options.extra_ca_file = write_ca(pki);
    return options;
  }

  test::TempDir m_dir;
};

TEST_F(HttpsTest, VerifiedByExtraCaForIpAndName) {
  const auto pki = test::make_test_pki("IP:127.0.0.1,DNS:localhost");
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls(pki));
  auto c = client(trusting(pki));
  for (const char* host : {"127.0.0.1", "localhost", "127.0.0.1"}) {
    const Fetched r = get(*c, server.url("/", host));
    EXPECT_FALSE(r.error) << host << ": " << r.error.message();
    EXPECT_EQ(r.body, "secure");
  }
  // One connection per origin; the third request reused the first.
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpsTest, UntrustedCertificateFails) {
  const auto pki = test::make_test_pki("IP:127.0.0.1,DNS:localhost");
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls(pki));
  auto c = client();
  EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_tls));
  // Another throwaway CA is not the one that signed the server certificate.
  auto other = client(trusting(test::make_test_pki("IP:127.0.0.1")));
  EXPECT_EQ(get(*other, server.url("/")).error, make_error_code(errc::upstream_tls));
}

TEST_F(HttpsTest, WrongHostNameFails) {
  const auto pki = test::make_test_pki("DNS:other.example,IP:10.1.2.3");
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls(pki));
  auto c = client(trusting(pki));
  EXPECT_EQ(get(*c, server.url("/", "127.0.0.1")).error, make_error_code(errc::upstream_tls));
  EXPECT_EQ(get(*c, server.url("/", "localhost")).error, make_error_code(errc::upstream_tls));
}

TEST_F(HttpsTest, ServerClosedPooledConnectionIsRetried) {
  const auto pki = test::make_test_pki("IP:127.0.0.1");
  TestServer server([](const auto&) { return Reply{http_response(200, "abc"), true}; }, server_tls(pki));
  auto c = client(trusting(pki));
  EXPECT_FALSE(get(*c, server.url("/")).error);
  const Fetched second = get(*c, server.url("/"));
  EXPECT_FALSE(second.error) << second.error.message();
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpsTest, StalledHandshakeTimesOut) {
  const auto pki = test::make_test_pki("IP:127.0.0.1");
  TestServer server([](const auto&) { return Reply{}; }, server_tls(pki), TestServer::Mode::stall_on_accept);
  ClientOptions options = trusting(pki);
  options.connect_timeout = 200ms;
  auto c = client(options);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_timeout));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(MakeHttpClient, MissingCaFileThrowsAtStartup) {
  net::io_context ioc;
  ClientOptions options;
  options.extra_ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(make_http_client(options), std::runtime_error);
}

}  // namespace
}  // namespace hubcache::upstream
