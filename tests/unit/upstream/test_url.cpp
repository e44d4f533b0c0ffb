// Test that the header is self-contained.
#include <hubcache/upstream/http_client.hpp>

#include <gtest/gtest.h>

namespace hubcache::upstream {
namespace {

Url parsed(std::string_view text) {
  auto url = Url::parse(text);
  if (!url) throw std::runtime_error("parse failed: " + std::string(text));
  return *url;
}

TEST(Url, ParsesSchemeHostPortTarget) {
  const Url url = parsed("https://huggingface.co/gpt2/resolve/main/config.json?download=true");
  EXPECT_EQ(url.scheme, "https");
  EXPECT_EQ(url.host, "huggingface.co");
  EXPECT_EQ(url.port, 443);
  EXPECT_EQ(url.target, "/gpt2/resolve/main/config.json?download=true");

  const Url plain = parsed("http://127.0.0.1:8080/x");
  EXPECT_EQ(plain.scheme, "http");
  EXPECT_EQ(plain.host, "127.0.0.1");
  EXPECT_EQ(plain.port, 8080);
  EXPECT_EQ(plain.target, "/x");
}

TEST(Url, DefaultsAndNormalisation) {
  EXPECT_EQ(parsed("http://example.com").port, 80);
  EXPECT_EQ(parsed("http://example.com").target, "/");
  EXPECT_EQ(parsed("http://example.com?q=1").target, "/?q=1");
  EXPECT_EQ(parsed("http://example.com/a#frag").target, "/a");
  const Url upper = parsed("HTTPS://Example.COM/Path");
  EXPECT_EQ(upper.scheme, "https");
  EXPECT_EQ(upper.host, "example.com");
  EXPECT_EQ(upper.target, "/Path");  // the path stays case-sensitive
}

TEST(Url, Ipv6Literal) {
  const Url url = parsed("http://[::1]:9000/p");
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 9000);
  EXPECT_EQ(url.origin(), "http://[::1]:9000");
  EXPECT_EQ(parsed("https://[2001:DB8::1]/").host, "2001:db8::1");
}

TEST(Url, RejectsMalformed) {
  for (const char* text : {
           "",
           "huggingface.co/x",
           "ftp://example.com/",
           "file:///etc/passwd",
           "http:/example.com/",
           "http://user:pw@example.com/",
           "http://user@example.com/",
           "http:///path",
           "http://:80/",
           "http://example.com:0/",
           "http://example.com:65536/",
           "http://example.com:http/",
           "http://example.com:/",
           "http://example.com:80:81/",
           "http://exa mple.com/",
           "http://[::1/",
           "http://[::1]x/",
           "http://[not-ipv6]/",
           "http://example.com/a b",
           "http://example.com/a\r\nX-Injected: 1",
       }) {
    EXPECT_FALSE(Url::parse(text)) << text;
    EXPECT_EQ(Url::parse(text).error(), make_error_code(errc::bad_request)) << text;
  }
}

TEST(Url, OriginOmitsDefaultPort) {
  EXPECT_EQ(parsed("https://huggingface.co:443/a").origin(), "https://huggingface.co");
  EXPECT_EQ(parsed("http://huggingface.co:80/a").origin(), "http://huggingface.co");
  EXPECT_EQ(parsed("https://huggingface.co:80/a").origin(), "https://huggingface.co:80");
  EXPECT_EQ(parsed("http://localhost:8080").origin(), "http://localhost:8080");
}

TEST(Url, SameOrigin) {
  const Url a = parsed("https://hf.co/a");
  EXPECT_TRUE(a.same_origin(parsed("https://HF.co:443/b?c")));
  EXPECT_FALSE(a.same_origin(parsed("http://hf.co/a")));
  EXPECT_FALSE(a.same_origin(parsed("https://hf.co:8443/a")));
  EXPECT_FALSE(a.same_origin(parsed("https://cdn.hf.co/a")));
}

TEST(Url, ResolveAbsoluteAndSchemeRelative) {
  const Url base = parsed("https://huggingface.co/gpt2/resolve/main/model.bin");
  auto cdn = base.resolve("https://cdn-lfs.hf.co/repos/ab/cd?X-Amz-Signature=s");
  ASSERT_TRUE(cdn);
  EXPECT_EQ(cdn->host, "cdn-lfs.hf.co");
  EXPECT_EQ(cdn->target, "/repos/ab/cd?X-Amz-Signature=s");

  auto scheme_relative = base.resolve("//cdn.example:8443/x");
  ASSERT_TRUE(scheme_relative);
  EXPECT_EQ(scheme_relative->scheme, "https");
  EXPECT_EQ(scheme_relative->host, "cdn.example");
  EXPECT_EQ(scheme_relative->port, 8443);
  EXPECT_EQ(scheme_relative->target, "/x");
}

TEST(Url, ResolveAbsolutePathKeepsOrigin) {
  const Url base = parsed("http://127.0.0.1:8080/gpt2/resolve/main/config.json?a=1");
  auto moved = base.resolve("/api/resolve-cache/models/gpt2/abc/config.json?etag=1#f");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->scheme, "http");
  EXPECT_EQ(moved->host, "127.0.0.1");
  EXPECT_EQ(moved->port, 8080);
  EXPECT_EQ(moved->target, "/api/resolve-cache/models/gpt2/abc/config.json?etag=1");
  EXPECT_TRUE(moved->same_origin(base));
}

TEST(Url, ResolveRejectsWhatTheHubNeverSends) {
  const Url base = parsed("https://huggingface.co/a/b");
  for (const char* location : {"", "c", "../c", "?q=1", "ftp://x/", "/a\r\nSet-Cookie: x", "/a b"}) {
    EXPECT_FALSE(base.resolve(location)) << location;
  }
}

}  // namespace
}  // namespace hubcache::upstream
