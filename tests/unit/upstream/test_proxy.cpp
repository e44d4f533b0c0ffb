// Outbound proxies: environment precedence, proxy URLs, NO_PROXY matching,
// and requests through TestProxy (CONNECT tunnels and absolute-form).
#include <hubcache/upstream/http_client.hpp>

#include "test_pki.hpp"
#include "test_proxy.hpp"
#include "test_server.hpp"
#include "test_support.hpp"
#include "upstream/proxy.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

namespace hubcache::upstream {
namespace {

using test::http_response;
using test::Reply;
using test::TestProxy;
using test::TestServer;
using namespace std::chrono_literals;

// --- Environment ------------------------------------------------------------

TEST(ProxyEnvironment, PrecedenceTable) {
  struct Case {
    std::vector<std::string> env;
    std::string https, http, no;
  };
  const std::vector<Case> cases = {
      {{}, "", "", ""},
      {{"HTTPS_PROXY=http://U:1", "HTTP_PROXY=http://U:2", "NO_PROXY=up"}, "http://U:1", "http://U:2", "up"},
      {{"https_proxy=http://l:1", "http_proxy=http://l:2", "no_proxy=low"}, "http://l:1", "http://l:2", "low"},
      // Lower case wins whatever the order in the environment.
      {{"HTTPS_PROXY=http://U:1", "https_proxy=http://l:1", "NO_PROXY=up", "no_proxy=low"}, "http://l:1", "", "low"},
      {{"HTTP_PROXY=http://U:2", "http_proxy=http://l:2"}, "", "http://l:2", ""},
      // A lower-case variable set to "" turns the upper-case one off.
      {{"https_proxy=", "HTTPS_PROXY=http://U:1", "no_proxy=", "NO_PROXY=up"}, "", "", ""},
      // Like getenv, the first of duplicate entries counts.
      {{"https_proxy=http://first:1", "https_proxy=http://second:1"}, "http://first:1", "", ""},
      // Names are case-sensitive; mixed case is neither variable.
      {{"Https_Proxy=http://m:1", "No_Proxy=x"}, "", "", ""},
      // httpoxy: under CGI, HTTP_PROXY is request data; http_proxy still counts.
      {{"REQUEST_METHOD=GET", "HTTP_PROXY=http://evil:2", "HTTPS_PROXY=http://U:1"}, "http://U:1", "", ""},
      {{"REQUEST_METHOD=GET", "http_proxy=http://l:2"}, "", "http://l:2", ""},
      // Values are taken verbatim ('=' inside is fine); validation is make_http_client's job.
      {{"https_proxy=http://u:a=b@p:1"}, "http://u:a=b@p:1", "", ""},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const ClientOptions options = ClientOptions::from_environment(cases[i].env);
    EXPECT_EQ(options.https_proxy, cases[i].https) << "case " << i;
    EXPECT_EQ(options.http_proxy, cases[i].http) << "case " << i;
    EXPECT_EQ(options.no_proxy, cases[i].no) << "case " << i;
  }
  // The rest are the defaults.
  const ClientOptions defaults;
  const ClientOptions from_env = ClientOptions::from_environment({"https_proxy=http://p:1"});
  EXPECT_EQ(from_env.connect_timeout, defaults.connect_timeout);
  EXPECT_EQ(from_env.user_agent, defaults.user_agent);
}

// --- Proxy URLs ---------------------------------------------------------------

TEST(ProxyUrl, ParsesHostPortAndCredentials) {
  std::string why;
  auto p = parse_proxy_url("http://proxy.corp:3128", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->host, "proxy.corp");
  EXPECT_EQ(p->port, 3128);
  EXPECT_EQ(p->authorization, "");
  EXPECT_EQ(p->display, "http://proxy.corp:3128");

  // curl's defaults: no scheme means http://, no port means 1080.
  p = parse_proxy_url("  Proxy.Corp/ ", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->host, "proxy.corp");
  EXPECT_EQ(p->port, 1080);
  p = parse_proxy_url("HTTP://[::1]:8080/", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->host, "::1");
  EXPECT_EQ(p->port, 8080);
  EXPECT_EQ(p->display, "http://[::1]:8080");

  // Percent-decoded, then Basic; an unescaped '@' in the password is forgiven.
  p = parse_proxy_url("http://user:p%40ss%20w@proxy:1", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->authorization, "Basic dXNlcjpwQHNzIHc=");
  EXPECT_EQ(p->display, "http://proxy:1");
  p = parse_proxy_url("http://user:p@ss w@proxy:1", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->authorization, "Basic dXNlcjpwQHNzIHc=");
  // So are an unescaped '#' and '/': a proxy URL has no path or fragment.
  p = parse_proxy_url("http://alice:pa#s/s@proxy:3128", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->authorization, "Basic YWxpY2U6cGEjcy9z");
  EXPECT_EQ(p->display, "http://proxy:3128");
  p = parse_proxy_url("http://user@proxy:1", why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->authorization, "Basic dXNlcjo=");
  EXPECT_EQ(basic_authorization("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  EXPECT_EQ(basic_authorization("a", ""), "Basic YTo=");
}

TEST(ProxyUrl, RefusesUnsupportedAndMalformed) {
  for (const char* bad : {"https://proxy:443", "socks5://proxy:1080", "http://", "http://proxy:0",
                          "http://proxy:99999", "http://proxy:x", "http://pro xy:1", "http://[::1:1",
                          "http://proxy:1/path", "http://u:%zz@proxy:1", "http://u:%4@proxy:1"}) {
    std::string why;
    EXPECT_FALSE(parse_proxy_url(bad, why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  std::string why;
  ASSERT_FALSE(parse_proxy_url("https://proxy:443", why));
  EXPECT_NE(why.find("https:// proxies"), std::string::npos) << why;
}

TEST(ProxyUrl, RedactsCredentials) {
  EXPECT_EQ(redact_proxy_url("http://user:secret@proxy:1/"), "http://***@proxy:1/");
  EXPECT_EQ(redact_proxy_url("user:secret@proxy:1"), "***@proxy:1");
  EXPECT_EQ(redact_proxy_url("http://u:p@ss@proxy:1"), "http://***@proxy:1");
  EXPECT_EQ(redact_proxy_url("http://proxy:1"), "http://proxy:1");
  // Unescaped '#', '/' or '?' in a password: still all hidden.
  EXPECT_EQ(redact_proxy_url("http://alice:pa#ss@proxy:3128"), "http://***@proxy:3128");
  EXPECT_EQ(redact_proxy_url("http://alice:p/a?s@proxy:3128/"), "http://***@proxy:3128/");
}

TEST(ProxyUrl, BadProxyThrowsAtStartupWithoutCredentials) {
  net::io_context ioc;
  ClientOptions https;
  https.https_proxy = "https://user:s3cret@proxy:443";
  try {
    make_http_client(https);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("https_proxy https://***@proxy:443"), std::string::npos) << what;
    EXPECT_NE(what.find("not supported"), std::string::npos) << what;
    EXPECT_EQ(what.find("s3cret"), std::string::npos) << what;
  }
  ClientOptions socks;
  socks.http_proxy = "socks5://u:s3cret@proxy";
  EXPECT_THROW(make_http_client(socks), std::runtime_error);
  ClientOptions fine;
  fine.https_proxy = "http://u:s3cret@proxy:3128";
  fine.http_proxy = "proxy";
  fine.no_proxy = "garbage:port, *.ok, [::1";
  EXPECT_NO_THROW(make_http_client(fine));
  fine.https_proxy = " ";  // blank = unset
  EXPECT_NO_THROW(make_http_client(fine));
}

// --- NO_PROXY -----------------------------------------------------------------

TEST(NoProxy, MatchingTable) {
  struct Case {
    const char* list;
    const char* host;
    std::uint16_t port;
    bool bypass;
  };
  const Case cases[] = {
      {"", "example.com", 443, false},
      {"*", "anything.example", 443, true},
      {"a.test, *", "anything.example", 443, true},
      {"*.", "example.com", 443, false},  // not a wildcard, and no name either
      // Names: the domain and its subdomains, with or without a leading dot.
      {"example.com", "example.com", 443, true},
      {"example.com", "cdn.example.com", 443, true},
      {"example.com", "a.b.example.com", 443, true},
      {".example.com", "example.com", 443, true},
      {".example.com", "cdn.example.com", 443, true},
      {"*.example.com", "cdn.example.com", 443, true},
      {"example.com", "notexample.com", 443, false},
      {"example.com", "example.com.evil", 443, false},
      {"cdn.example.com", "example.com", 443, false},
      {"EXAMPLE.com.", "Cdn.Example.COM", 443, true},
      {"example.com", "example.com.", 443, true},
      // Separators: commas and/or whitespace, empty entries ignored.
      {" a.test ,, b.test\tc.test ", "c.test", 80, true},
      {"a.test,b.test", "b.test", 80, true},
      {"a.test,b.test", "d.test", 80, false},
      // Ports restrict an entry.
      {"example.com:8443", "example.com", 8443, true},
      {"example.com:8443", "example.com", 443, false},
      {"example.com:x", "example.com", 443, false},  // malformed entry: ignored
      // IP literals compare as addresses, not as names, and not via DNS.
      {"127.0.0.1", "127.0.0.1", 80, true},
      {"127.0.0.1", "localhost", 80, false},
      {"localhost", "127.0.0.1", 80, false},
      {"localhost", "localhost", 80, true},
      {"0.0.1", "127.0.0.1", 80, false},
      {"127.0.0.1:8080", "127.0.0.1", 8080, true},
      {"127.0.0.1:8080", "127.0.0.1", 80, false},
      {"::1", "::1", 443, true},
      {"[::1]", "::1", 443, true},
      {"[0:0::1]:443", "::1", 443, true},
      {"[::1]:443", "::1", 80, false},
      {"::1", "::2", 443, false},
      // CIDR ranges.
      {"10.0.0.0/8", "10.20.30.40", 443, true},
      {"10.0.0.0/8", "11.0.0.1", 443, false},
      {"10.1.2.3/16", "10.1.200.1", 443, true},
      {"192.168.1.0/24", "192.168.2.1", 443, false},
      {"fd00::/8", "fd12::1", 443, true},
      {"fd00::/8", "fe80::1", 443, false},
      {"2001:db8::/33", "2001:db8:7fff::1", 443, true},
      {"2001:db8::/33", "2001:db8:8000::1", 443, false},
      {"10.0.0.0/8", "ten.example", 443, false},
      // Not implicitly excluded (curl's behaviour).
      {"example.com", "localhost", 80, false},
      {"example.com", "127.0.0.1", 80, false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(NoProxy(c.list).matches(c.host, c.port), c.bypass)
        << "NO_PROXY=\"" << c.list << "\" host " << c.host << ":" << c.port;
  }
}

// --- Through a proxy ------------------------------------------------------------

struct Fetched {
  std::error_code error;
  unsigned status = 0;
  std::string body;
};

net::awaitable<Fetched> fetch(HttpClient& client, std::string url) {
  Fetched out;
  auto parsed = Url::parse(url);
  if (!parsed) throw std::runtime_error("bad test url " + url);
  Request request;
  request.url = std::move(*parsed);
  auto response = co_await client.send(std::move(request));
  if (!response) {
    out.error = response.error();
    co_return out;
  }
  out.status = (*response)->status();
  auto body = co_await (*response)->read_all(1 << 20);
  if (!body) {
    out.error = body.error();
  } else {
    out.body = std::move(*body);
  }
  co_return out;
}

class ProxyTest : public ::testing::Test {
 protected:
  static constexpr const char* k_userinfo = "user:p%40ss%20w";  // user "user", password "p@ss w"
  static constexpr const char* k_authorization = "Basic dXNlcjpwQHNzIHc=";

  std::shared_ptr<net::ssl::context> server_tls() {
    auto tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
    tls->use_certificate_chain(net::buffer(m_pki.cert_pem));
    tls->use_private_key(net::buffer(m_pki.key_pem), net::ssl::context::pem);
    return tls;
  }
  // Trusts the test CA; proxies as given.
  ClientOptions options(std::string https_proxy, std::string http_proxy = {}, std::string no_proxy = {}) {
    const auto path = m_dir.path() / "ca.pem";
    std::ofstream(path) << m_pki.ca_pem;
    ClientOptions o;
    o.extra_ca_file = path.string();
    o.https_proxy = std::move(https_proxy);
    o.http_proxy = std::move(http_proxy);
    o.no_proxy = std::move(no_proxy);
    return o;
  }
  std::shared_ptr<HttpClient> client(const ClientOptions& o) { return make_http_client(o); }
  Fetched get(HttpClient& c, const std::string& url) { return test::run(m_ioc, fetch(c, url)); }

  test::TempDir m_dir;
  test::TestPki m_pki = test::make_test_pki("IP:127.0.0.1,DNS:localhost");
  net::io_context m_ioc;
};

TEST_F(ProxyTest, HttpsGoesThroughAuthenticatedTunnelAndVerifiesTarget) {
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  TestProxy proxy({k_authorization});
  auto c = client(options(proxy.url(k_userinfo)));
  const Fetched r = get(*c, server.url("/file?x=1", "localhost"));
  ASSERT_FALSE(r.error) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "secure");
  EXPECT_EQ(proxy.connects(), 1);
  const auto connect = proxy.last_request();
  const std::string authority = "localhost:" + std::to_string(server.port());
  EXPECT_EQ(connect.method(), http::verb::connect);
  EXPECT_EQ(connect.target(), authority);
  EXPECT_EQ(connect[http::field::host], authority);
  EXPECT_EQ(connect[http::field::proxy_authorization], k_authorization);
  // Inside the tunnel: an ordinary origin-form request, without the proxy's credentials.
  const auto seen = server.last_request();
  EXPECT_EQ(seen.target(), "/file?x=1");
  EXPECT_EQ(seen[http::field::host], authority);
  EXPECT_EQ(seen.find(http::field::proxy_authorization), seen.end());
}

TEST_F(ProxyTest, TunnelVerifiesTheTargetsCertificateNotTheProxys) {
  m_pki = test::make_test_pki("DNS:other.example");
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  TestProxy proxy;
  auto c = client(options(proxy.url()));
  EXPECT_EQ(get(*c, server.url("/", "localhost")).error, make_error_code(errc::upstream_tls));
  EXPECT_EQ(proxy.connects(), 1);
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(ProxyTest, TunnelIsReused) {
  TestServer server([](const auto&) { return Reply{http_response(200, "abc")}; }, server_tls());
  TestProxy proxy;
  auto c = client(options(proxy.url()));
  for (int i = 0; i < 2; ++i) {
    const Fetched r = get(*c, server.url("/k"));
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.body, "abc");
  }
  EXPECT_EQ(proxy.connections(), 1);
  EXPECT_EQ(proxy.connects(), 1);
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(server.requests(), 2);
}

TEST_F(ProxyTest, MissingOrWrongCredentialsAre407AndUnavailable) {
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  TestProxy proxy({k_authorization});
  for (const std::string& userinfo : {std::string(), std::string("user:wrong")}) {
    auto c = client(options(proxy.url(userinfo)));
    EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_unavailable)) << userinfo;
  }
  EXPECT_EQ(proxy.connects(), 2);
  EXPECT_EQ(server.connections(), 0);
}

TEST_F(ProxyTest, RefusedConnectIsUnavailable) {
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  for (unsigned status : {403u, 502u, 503u}) {
    TestProxy proxy({{}, status});
    auto c = client(options(proxy.url()));
    EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_unavailable)) << status;
    EXPECT_EQ(proxy.connects(), 1) << status;
  }
  EXPECT_EQ(server.connections(), 0);
}

TEST_F(ProxyTest, StalledProxyTimesOutWithinConnectTimeout) {
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  TestProxy proxy({{}, 0, /*stall=*/true});
  ClientOptions o = options(proxy.url());
  o.connect_timeout = 200ms;
  auto c = client(o);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_timeout));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(proxy.connects(), 1);
}

TEST_F(ProxyTest, UnreachableProxyIsUnavailable) {
  std::uint16_t port = 0;
  {
    net::ip::tcp::acceptor probe(m_ioc, {net::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  TestServer server([](const auto&) { return Reply{http_response(200, "secure")}; }, server_tls());
  auto c = client(options("http://127.0.0.1:" + std::to_string(port)));
  EXPECT_EQ(get(*c, server.url("/")).error, make_error_code(errc::upstream_unavailable));
  EXPECT_EQ(server.connections(), 0);
}

TEST_F(ProxyTest, NoProxyHostBypassesTheProxy) {
  TestServer tls_server([](const auto&) { return Reply{http_response(200, "direct")}; }, server_tls());
  TestServer plain_server([](const auto&) { return Reply{http_response(200, "direct")}; });
  TestProxy proxy;
  auto c = client(options(proxy.url(), proxy.url(), "example.com, 127.0.0.1"));
  for (const std::string& url : {tls_server.url("/"), plain_server.url("/")}) {
    const Fetched r = get(*c, url);
    EXPECT_FALSE(r.error) << url << ": " << r.error.message();
    EXPECT_EQ(r.body, "direct") << url;
  }
  EXPECT_EQ(proxy.connections(), 0);
  EXPECT_EQ(tls_server.requests(), 1);
  EXPECT_EQ(plain_server.requests(), 1);
  // The same servers by a name NO_PROXY does not list go through the proxy.
  EXPECT_FALSE(get(*c, tls_server.url("/", "localhost")).error);
  EXPECT_EQ(proxy.connects(), 1);
}

TEST_F(ProxyTest, HttpTargetUsesAbsoluteFormAndIsNotResolvedLocally) {
  TestProxy proxy({k_authorization});
  // Only http_proxy: https requests stay direct.
  auto c = client(options({}, proxy.url(k_userinfo)));
  // .invalid never resolves (RFC 6761): only the proxy can answer this.
  const std::string url = "http://cdn.example.invalid:8080/models/x?sig=1";
  for (int i = 0; i < 2; ++i) {
    const Fetched r = get(*c, url);
    ASSERT_FALSE(r.error) << r.error.message();
    EXPECT_EQ(r.body, "proxied GET " + url);
  }
  const auto seen = proxy.last_request();
  EXPECT_EQ(seen.target(), url);
  EXPECT_EQ(seen[http::field::host], "cdn.example.invalid:8080");
  EXPECT_EQ(seen[http::field::proxy_authorization], k_authorization);
  EXPECT_EQ(proxy.forwarded(), 2);
  EXPECT_EQ(proxy.connections(), 1);  // keep-alive to the proxy
  EXPECT_EQ(proxy.connects(), 0);

  TestServer tls_server([](const auto&) { return Reply{http_response(200, "direct")}; }, server_tls());
  EXPECT_EQ(get(*c, tls_server.url("/")).body, "direct");
  EXPECT_EQ(proxy.connections(), 1);
}

}  // namespace
}  // namespace hubcache::upstream
