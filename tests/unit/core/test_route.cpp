#include <hubcache/core/route.hpp>

#include <gtest/gtest.h>

namespace hubcache::core {
namespace {

FileRoute ok(std::string_view target) {
  auto r = parse_file_route(target);
  EXPECT_TRUE(r.has_value()) << target;
  if (!r.has_value() || !r->has_value()) {
    ADD_FAILURE() << "not a file route: " << target;
    return {};
  }
  return **r;
}

bool rejected(std::string_view target) {
  auto r = parse_file_route(target);
  return !r.has_value() && r.error() == make_error_code(errc::bad_request);
}

bool not_a_file_route(std::string_view target) {
  auto r = parse_file_route(target);
  return r.has_value() && !r->has_value();
}

TEST(Route, ModelWithNamespace) {
  auto r = ok("/acme/tiny-model/resolve/main/config.json");
  EXPECT_EQ(r.type, RepoType::model);
  EXPECT_EQ(r.repo, "acme/tiny-model");
  EXPECT_EQ(r.revision, "main");
  EXPECT_EQ(r.path, "config.json");
  EXPECT_EQ(r.kind, FileKind::resolve);
}

TEST(Route, LegacySingleSegmentId) {
  auto r = ok("/gpt2/resolve/main/config.json");
  EXPECT_EQ(r.repo, "gpt2");
  EXPECT_EQ(r.path, "config.json");
}

TEST(Route, RepoTypesAndRaw) {
  EXPECT_EQ(ok("/datasets/acme/data/resolve/main/a.csv").type, RepoType::dataset);
  EXPECT_EQ(ok("/spaces/acme/app/resolve/main/app.py").type, RepoType::space);
  EXPECT_EQ(ok("/kernels/acme/k/resolve/main/k.py").type, RepoType::kernel);
  auto r = ok("/acme/m/raw/main/model.bin");
  EXPECT_EQ(r.kind, FileKind::raw);
}

TEST(Route, EncodedAndRawRevisions) {
  EXPECT_EQ(ok("/acme/m/resolve/refs%2Fpr%2F1/config.json").revision, "refs/pr/1");
  auto raw = ok("/acme/m/resolve/refs/pr/1/config.json");
  EXPECT_EQ(raw.revision, "refs/pr/1");
  EXPECT_EQ(raw.path, "config.json");
  EXPECT_EQ(ok("/datasets/a/b/resolve/refs%2Fconvert%2Fparquet/default/train/0.parquet").path,
            "default/train/0.parquet");
}

TEST(Route, OddFileNames) {
  EXPECT_EQ(ok("/acme/m/resolve/main/dir%20with%20space/file%20%2B%23%C3%BC.txt").path, "dir with space/file +#\xC3\xBC.txt");
  EXPECT_EQ(ok("/acme/m/resolve/main/a+b.txt").path, "a+b.txt");  // '+' is literal in paths
  EXPECT_EQ(ok("/acme/m/resolve/main/sub/deeper/leaf.txt?download=true").path, "sub/deeper/leaf.txt");
  EXPECT_EQ(ok("/acme/m/resolve/main/\xC3\xBC.txt").path, "\xC3\xBC.txt");  // raw UTF-8
}

TEST(Route, ResolveCache) {
  auto r = ok("/api/resolve-cache/models/acme/m/0123456789abcdef0123456789abcdef01234567/config.json?%2Facme=&etag=%22x%22");
  EXPECT_EQ(r.repo, "acme/m");
  EXPECT_EQ(r.revision, "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(r.path, "config.json");
  EXPECT_EQ(ok("/api/resolve-cache/datasets/a/b/0123456789abcdef0123456789abcdef01234567/x/y").type,
            RepoType::dataset);
}

TEST(Route, RejectsMalformed) {
  EXPECT_TRUE(rejected("/acme/m/resolve/main/../secret"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a/%2E%2E/b"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a%00b"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a%zzb"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a%4"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a//b"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main"));
  EXPECT_TRUE(rejected("/acme/m/resolve/%2E%2E/x"));
  EXPECT_TRUE(rejected("/ac%20me/m/resolve/main/x"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/a%0Ab"));
  EXPECT_TRUE(rejected("/acme/m/resolve/main/" + std::string(9000, 'a')));
  EXPECT_TRUE(rejected("/acme/m/resolve/" + std::string(300, 'r') + "/x"));
}

TEST(Route, OtherPathsAreNotFileRoutes) {
  EXPECT_TRUE(not_a_file_route("/api/models/acme/m"));
  EXPECT_TRUE(not_a_file_route("/api/models/acme/m/tree/main"));
  EXPECT_TRUE(not_a_file_route("/healthz"));
  EXPECT_TRUE(not_a_file_route("/"));
  EXPECT_TRUE(not_a_file_route("/acme/m/blob/main/x"));
  EXPECT_TRUE(not_a_file_route("relative"));
}

TEST(Route, UpstreamTargetIsCanonical) {
  auto r = ok("/datasets/a/b/resolve/refs%2Fpr%2F1/dir with space/f+#.txt");
  EXPECT_EQ(r.upstream_target(), "/datasets/a/b/resolve/refs%2Fpr%2F1/dir%20with%20space/f%2B%23.txt");
  EXPECT_EQ(r.upstream_target("0123"), "/datasets/a/b/resolve/0123/dir%20with%20space/f%2B%23.txt");
  EXPECT_EQ(ok("/x/raw/main/y").upstream_target(), "/x/raw/main/y");
}

TEST(Route, RepoIdValidation) {
  EXPECT_TRUE(valid_repo_id("acme/tiny-model"));
  EXPECT_TRUE(valid_repo_id("gpt2"));
  EXPECT_TRUE(valid_repo_id("Org_1/model.v2"));
  EXPECT_FALSE(valid_repo_id("a/b/c"));
  EXPECT_FALSE(valid_repo_id(".hidden/x"));
  EXPECT_FALSE(valid_repo_id("a..b/x"));
  EXPECT_FALSE(valid_repo_id(""));
  EXPECT_FALSE(valid_repo_id("a/"));
}

}  // namespace
}  // namespace hubcache::core
