#include <hubcache/core/digest.hpp>
#include <hubcache/util/hash.hpp>
#include <hubcache/util/percent.hpp>

#include <gtest/gtest.h>

#include <cstring>

namespace hubcache::core {
namespace {

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(Digest, HexRoundTrip) {
  const std::string hex = "cd44947308b4b22228767cab8addd523d1de22abd9b23a10808e5fc295202e4f";
  auto d = Sha256::from_hex(hex);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->hex(), hex);
  EXPECT_EQ(Sha256::from_hex("CD44947308B4B22228767CAB8ADDD523D1DE22ABD9B23A10808E5FC295202E4F")->hex(), hex);
  EXPECT_FALSE(Sha256::from_hex(hex.substr(1)));
  EXPECT_FALSE(Sha256::from_hex(hex.substr(1) + "g"));
  EXPECT_FALSE(GitSha1::from_hex(hex));
}

TEST(Digest, CommitIds) {
  EXPECT_TRUE(is_commit_id("bcf51b2ec6fb5bc8215f4b365a0e48532e26abb8"));
  EXPECT_FALSE(is_commit_id("BCF51B2EC6FB5BC8215F4B365A0E48532E26ABB8"));  // clients require lower case
  EXPECT_FALSE(is_commit_id("bcf51b2"));
  EXPECT_FALSE(is_commit_id("main"));
}

TEST(Hash, KnownValues) {
  util::Sha256Hasher h;
  h.update(std::string_view("abc"));
  EXPECT_EQ(h.finish().hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // `git hash-object` of an empty file and of "hello\n".
  EXPECT_EQ(util::GitBlobHasher(0).finish().hex(), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  util::GitBlobHasher g(6);
  g.update(bytes("hel"));
  g.update(bytes("lo\n"));
  EXPECT_EQ(g.finish().hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
}

TEST(Percent, DecodeAndEncode) {
  EXPECT_EQ(util::percent_decode("a%20b%2Fc+d"), "a b/c+d");
  EXPECT_FALSE(util::percent_decode("%"));
  EXPECT_FALSE(util::percent_decode("%2"));
  EXPECT_FALSE(util::percent_decode("%g0"));
  EXPECT_FALSE(util::percent_decode("a%00"));
  EXPECT_EQ(util::percent_encode("refs/pr/1", util::KeepSlash::no), "refs%2Fpr%2F1");
  EXPECT_EQ(util::percent_encode("a b/\xC3\xBC~", util::KeepSlash::yes), "a%20b/%C3%BC~");
}

}  // namespace
}  // namespace hubcache::core
