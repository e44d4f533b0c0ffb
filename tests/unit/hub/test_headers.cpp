#include "hub/errors.hpp"
#include "hub/headers.hpp"
#include "hub/public_repos.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace hubcache::hub {
namespace {

TEST(Headers, StripXetLinksKeepsOtherRels) {
  const std::string link =
      "<https://huggingface.co/api/models/a/b/xet-read-token/abc>; rel=\"xet-auth\", "
      "<https://cas-server.xethub.hf.co/v1/reconstructions/f857>; rel=\"xet-reconstruction-info\"";
  EXPECT_EQ(strip_xet_links(link), "");
  EXPECT_EQ(strip_xet_links("<https://h/api/x?cursor=a,b>; rel=\"next\", " + link),
            "<https://h/api/x?cursor=a,b>; rel=\"next\"");
}

TEST(Headers, StripXetAccept) {
  EXPECT_EQ(strip_xet_accept("application/vnd.xet-fileinfo+json, */*"), "*/*");
  EXPECT_EQ(strip_xet_accept("application/vnd.xet-fileinfo+json"), "");
  EXPECT_EQ(strip_xet_accept("application/json"), "application/json");
}

TEST(Headers, HopByHopAndXet) {
  EXPECT_TRUE(is_hop_by_hop("Transfer-Encoding"));
  EXPECT_TRUE(is_hop_by_hop("connection"));
  EXPECT_FALSE(is_hop_by_hop("Content-Length"));
  EXPECT_TRUE(is_hop_by_hop("Expect"));  // never forwarded: upstream would answer 100 first
  EXPECT_TRUE(is_xet_header("X-Xet-Hash"));
  EXPECT_TRUE(is_xet_header("x-xet-refresh-route"));
  EXPECT_FALSE(is_xet_header("X-Linked-Etag"));
}

TEST(Headers, Etags) {
  EXPECT_EQ(unquote_etag("\"abc\""), "abc");
  EXPECT_EQ(unquote_etag("W/\"abc\""), "abc");
  EXPECT_EQ(unquote_etag("abc"), "abc");
}

TEST(Headers, ContentDispositionLikeTheHub) {
  EXPECT_EQ(content_disposition("regression/ref-regular.txt"),
            "inline; filename*=UTF-8''ref-regular.txt; filename=\"ref-regular.txt\";");
  EXPECT_EQ(content_disposition("dir/f \"q\" \xC3\xBC.txt"),
            "inline; filename*=UTF-8''f%20%22q%22%20%C3%BC.txt; filename=\"f _q_ __.txt\";");
}

TEST(Errors, TableMapsKindsToStatuses) {
  EXPECT_EQ(answer_for(make_error_code(errc::upstream_timeout)).status, 504u);
  EXPECT_EQ(answer_for(make_error_code(errc::upstream_unavailable)).status, 502u);
  EXPECT_EQ(answer_for(make_error_code(errc::insufficient_storage)).status, 507u);
  EXPECT_EQ(answer_for(make_error_code(errc::integrity_mismatch)).status, 502u);
  EXPECT_EQ(answer_for(std::make_error_code(std::errc::io_error)).status, 500u);
  auto res = error_response(make_error_code(errc::bad_request), 11);
  EXPECT_EQ(res.result_int(), 400u);
  EXPECT_EQ(res.body(), R"({"error":"Bad request"})");
  EXPECT_EQ(res["X-Error-Message"], "Bad request");
}

TEST(PublicRepos, ExpiresAndForgets) {
  PublicRepos repos(std::chrono::seconds(1));
  EXPECT_FALSE(repos.is_public("model:a/b"));
  repos.mark("model:a/b");
  EXPECT_TRUE(repos.is_public("model:a/b"));
  EXPECT_FALSE(repos.is_public("dataset:a/b"));
  repos.forget("model:a/b");
  EXPECT_FALSE(repos.is_public("model:a/b"));
  repos.mark("model:a/b");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_FALSE(repos.is_public("model:a/b"));
}

}  // namespace
}  // namespace hubcache::hub
