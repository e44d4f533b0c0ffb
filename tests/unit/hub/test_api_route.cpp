#include "hub/api_route.hpp"

#include <gtest/gtest.h>

namespace hubcache::hub {
namespace {

ApiRoute ok(std::string_view method, std::string_view target, std::string_view ct = {}, std::string_view body = {}) {
  auto r = parse_api_route(method, target, ct, body);
  if (!r.has_value() || !r->has_value()) {
    ADD_FAILURE() << "not parsed: " << target;
    return {};
  }
  return **r;
}

bool relayed(std::string_view method, std::string_view target) {
  auto r = parse_api_route(method, target, {}, {});
  return r.has_value() && !r->has_value();
}

TEST(ApiRoute, Kinds) {
  auto info = ok("GET", "/api/models/acme/m");
  EXPECT_EQ(info.kind, ApiKind::info);
  EXPECT_EQ(info.repo, "acme/m");
  EXPECT_EQ(ok("GET", "/api/models/gpt2").repo, "gpt2");
  auto rev = ok("GET", "/api/datasets/a/b/revision/main?expand=sha");
  EXPECT_EQ(rev.kind, ApiKind::info_at_revision);
  EXPECT_EQ(rev.type, core::RepoType::dataset);
  EXPECT_EQ(rev.revision, "main");
  auto tree = ok("GET", "/api/models/a/b/tree/main/sub/dir?recursive=true");
  EXPECT_EQ(tree.kind, ApiKind::tree);
  EXPECT_EQ(tree.path, "sub/dir");
  EXPECT_EQ(ok("GET", "/api/models/a/b/refs").kind, ApiKind::refs);
  EXPECT_EQ(ok("GET", "/api/models/a/b/commits/main").kind, ApiKind::commits);
  EXPECT_EQ(ok("POST", "/api/models/a/b/paths-info/main", "application/json", R"({"paths":["x"]})").kind,
            ApiKind::paths_info);
}

TEST(ApiRoute, RevisionAndPathEncodings) {
  // Python encodes '/' in revisions and tree paths; hub.js sends them raw.
  auto py = ok("GET", "/api/models/a/b/tree/refs%2Fpr%2F1/sub%2Fdir?recursive=True&expand=False");
  auto js = ok("GET", "/api/models/a/b/tree/refs/pr/1/sub/dir?recursive=true&expand=false");
  EXPECT_EQ(py.revision, "refs/pr/1");
  EXPECT_EQ(py.path, "sub/dir");
  EXPECT_EQ(py.cache_key, js.cache_key);
}

TEST(ApiRoute, QueryNormalisation) {
  EXPECT_EQ(ok("GET", "/api/models/a/b?expand=likes&expand=downloads").cache_key,
            ok("GET", "/api/models/a/b?expand[]=downloads&expand%5B%5D=likes").cache_key);
  EXPECT_NE(ok("GET", "/api/models/a/b?expand=likes").cache_key, ok("GET", "/api/models/a/b").cache_key);
  EXPECT_EQ(ok("GET", "/api/models/a/b/tree/main?recursive=1").cache_key,
            ok("GET", "/api/models/a/b/tree/main?recursive=TRUE").cache_key);
  EXPECT_NE(ok("GET", "/api/models/a/b/tree/main?cursor=abc").cache_key,
            ok("GET", "/api/models/a/b/tree/main?cursor=abd").cache_key);
  EXPECT_NE(ok("GET", "/api/models/a/b/tree/main").cache_key, ok("GET", "/api/datasets/a/b/tree/main").cache_key);
  // Parameters hubcache does not know still select different answers.
  EXPECT_NE(ok("GET", "/api/models/a/b?full=true").cache_key, ok("GET", "/api/models/a/b").cache_key);
  EXPECT_NE(ok("GET", "/api/models/a/b/tree/main?foo=1").cache_key, ok("GET", "/api/models/a/b/tree/main?foo=2").cache_key);
}

TEST(ApiRoute, PathsInfoBodiesAgree) {
  auto form = ok("POST", "/api/models/a/b/paths-info/main", "application/x-www-form-urlencoded",
                 "paths=b.txt&paths=a+b.txt&expand=False");
  auto json = ok("POST", "/api/models/a/b/paths-info/main", "application/json",
                 R"({"paths":["a b.txt","b.txt"],"expand":false})");
  EXPECT_EQ(form.cache_key, json.cache_key);
  EXPECT_FALSE(form.expand);
  auto expanded = ok("POST", "/api/models/a/b/paths-info/main", "application/json",
                     R"({"paths":["a b.txt","b.txt"],"expand":true})");
  EXPECT_TRUE(expanded.expand);
  EXPECT_NE(expanded.cache_key, json.cache_key);
}

TEST(ApiRoute, NotCacheableIsRelayed) {
  EXPECT_TRUE(relayed("GET", "/api/whoami-v2"));
  EXPECT_TRUE(relayed("POST", "/api/models/a/b/commit/main"));
  EXPECT_TRUE(relayed("POST", "/api/models/a/b/preupload/main"));
  EXPECT_TRUE(relayed("GET", "/api/models/a/b/xet-read-token/main"));
  EXPECT_TRUE(relayed("DELETE", "/api/models/a/b"));
  EXPECT_TRUE(relayed("GET", "/api/agent-harnesses"));
  EXPECT_TRUE(relayed("GET", "/acme/m/resolve/main/x"));
}

TEST(ApiRoute, Malformed) {
  EXPECT_FALSE(parse_api_route("GET", "/api/models/a/b/tree/..", {}, {}).has_value());
  EXPECT_FALSE(parse_api_route("GET", "/api/models/a/b/tree/main/%zz", {}, {}).has_value());
  EXPECT_FALSE(parse_api_route("POST", "/api/models/a/b/paths-info/main", "application/json", "{nope").has_value());
}

TEST(ApiRoute, Booleans) {
  EXPECT_TRUE(parse_bool("true"));
  EXPECT_TRUE(parse_bool("True"));
  EXPECT_TRUE(parse_bool("1"));
  EXPECT_FALSE(parse_bool("false"));
  EXPECT_FALSE(parse_bool("False"));
  EXPECT_FALSE(parse_bool("0"));
  EXPECT_FALSE(parse_bool(""));
}

}  // namespace
}  // namespace hubcache::hub
