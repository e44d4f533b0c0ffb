// The GCS mirrors of the metadata index and the document store, against the
// emulator: what one replica writes, another with an empty disk reads (and
// keeps locally); misses are remembered; a GCS outage is a miss, not an error.
#include <hubcache/storage/document_store.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/gcs_mirror.hpp>
#include <hubcache/storage/metadata_index.hpp>

#include "gcs_emulator.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>

namespace hubcache::storage {
namespace {

using test_gcs::GcsEmulator;
using namespace std::chrono_literals;

const std::string k_commit = "0123456789abcdef0123456789abcdef01234567";

FileKey file_key(std::string path) { return {"model", "acme/tiny-model", k_commit, std::move(path), "resolve"}; }

FileRecord file_record(std::string etag, char fill) {
  return {std::move(etag), false, 42, *core::Sha256::from_hex(std::string(64, fill)), "text/plain"};
}

class GcsMirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = GcsEmulator::skip_reason()) GTEST_SKIP() << *why;
    static int counter = 0;
    m_prefix = "mirror-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "/";
  }

  std::shared_ptr<GcsBlobStore> gcs(const std::string& name, const std::string& endpoint = GcsEmulator::endpoint()) {
    GcsOptions options;
    options.bucket = test_gcs::k_bucket;
    options.prefix = m_prefix;
    options.endpoint = endpoint;
    options.credentials = GcsCredentials::none;
    options.staging_dir = m_dir.path() / name / "gcs-staging";
    options.retry = {2, 10ms, 50ms};
    return make_gcs_blob_store(options, m_pool);
  }

  struct Replica {
    std::unique_ptr<MetadataIndex> index;
    std::unique_ptr<DocumentStore> docs;
    std::shared_ptr<GcsBreaker> breaker;
  };
  Replica replica(const std::string& name, MirrorOptions options = {},
                  const std::string& endpoint = GcsEmulator::endpoint()) {
    auto store = gcs(name, endpoint);
    auto breaker = std::make_shared<GcsBreaker>(60s);
    const auto dir = m_dir.path() / name;
    return {make_gcs_mirrored_index(make_disk_metadata_index(dir / "index"), store, breaker, options,
                                    m_ioc.get_executor(), m_pool),
            make_gcs_mirrored_documents(make_disk_document_store(dir / "docs"), store, breaker, options,
                                        m_ioc.get_executor(), m_pool),
            breaker};
  }

  // put() runs on the blocking pool in the service; here directly. The GCS
  // write is in the background: run the io_context until it is done.
  void put_record(Replica& r, const FileKey& key, const FileRecord& rec) {
    ASSERT_TRUE(r.index->put(key, rec).has_value());
    m_ioc.restart();
    m_ioc.run_for(10s);
  }
  void put_doc(Replica& r, const std::string& key, const std::string& value) {
    ASSERT_TRUE(r.docs->put(key, value).has_value());
    m_ioc.restart();
    m_ioc.run_for(10s);
  }

  test::TempDir m_dir;
  boost::asio::io_context m_ioc;
  boost::asio::thread_pool m_pool{1};
  std::string m_prefix;
};

TEST_F(GcsMirrorTest, AnotherReplicaReadsWhatOneWroteAndKeepsItLocally) {
  auto a = replica("a");
  const auto key = file_key("config.json");
  const auto rec = file_record("4b825dc642cb6eb9a060e54bf8d69288fbee4904", 'c');
  put_record(a, key, rec);
  put_doc(a, "rev|main", "{\"commit\":\"x\"}");

  auto b = replica("b");
  auto got = test::run(m_ioc, b.index->get(key));
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->sha256, rec.sha256);
  EXPECT_EQ((*got)->etag, rec.etag);
  EXPECT_EQ((*got)->content_type, rec.content_type);
  auto blob = test::run(m_ioc, b.index->blob_for_etag(rec.etag));
  ASSERT_TRUE(blob && *blob);
  EXPECT_EQ(**blob, rec.sha256);
  auto doc = test::run(m_ioc, b.docs->get("rev|main"));
  ASSERT_TRUE(doc && *doc);
  EXPECT_EQ(**doc, "{\"commit\":\"x\"}");

  // Kept on b's disk: a plain disk index over b's directory has them now.
  auto local_index = make_disk_metadata_index(m_dir.path() / "b" / "index");
  auto local = test::run(m_ioc, local_index->get(key));
  ASSERT_TRUE(local && *local);
  EXPECT_EQ((*local)->sha256, rec.sha256);
  auto local_docs = make_disk_document_store(m_dir.path() / "b" / "docs");
  auto local_doc = test::run(m_ioc, local_docs->get("rev|main"));
  ASSERT_TRUE(local_doc && *local_doc);
}

TEST_F(GcsMirrorTest, LaterWritesReplaceEarlierOnes) {
  auto a = replica("a");
  put_doc(a, "rev|main", "one");
  put_doc(a, "rev|main", "two");
  auto b = replica("b");
  auto doc = test::run(m_ioc, b.docs->get("rev|main"));
  ASSERT_TRUE(doc && *doc);
  EXPECT_EQ(**doc, "two");
}

TEST_F(GcsMirrorTest, MissesAreRememberedForTheNegativeTtl) {
  MirrorOptions long_ttl;
  long_ttl.negative_ttl = 1h;
  auto b = replica("b", long_ttl);
  auto missing = test::run(m_ioc, b.docs->get("api|later"));
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());

  auto a = replica("a");
  put_doc(a, "api|later", "now there");
  // b remembers the miss and does not ask GCS again...
  auto still = test::run(m_ioc, b.docs->get("api|later"));
  ASSERT_TRUE(still.has_value());
  EXPECT_FALSE(still->has_value());
  // ...while a replica without that memory finds it.
  auto c = replica("c", long_ttl);
  auto found = test::run(m_ioc, c.docs->get("api|later"));
  ASSERT_TRUE(found && *found);
}

TEST_F(GcsMirrorTest, GcsOutageIsAMissNotAnError) {
  auto r = replica("r", {}, "http://127.0.0.1:1");  // nothing listens there
  const auto key = file_key("README.md");
  auto got = test::run(m_ioc, r.index->get(key));
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(r.breaker->failures(), 1u);
  EXPECT_FALSE(r.breaker->usable());
  // Local writes still work, and are served locally.
  put_record(r, key, file_record("abc", 'e'));
  auto again = test::run(m_ioc, r.index->get(key));
  ASSERT_TRUE(again && *again);
  auto doc = test::run(m_ioc, r.docs->get("anything"));
  ASSERT_TRUE(doc.has_value());
  EXPECT_FALSE(doc->has_value());
}

}  // namespace
}  // namespace hubcache::storage
