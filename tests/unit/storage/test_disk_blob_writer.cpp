// The disk BlobWriter's open_reader() at every phase, including from another
// thread while the owner commits (what a flight follower does).
#include <hubcache/storage/disk_blob_store.hpp>

#include "blob_store_contract.hpp"

#include <unistd.h>

#include <atomic>
#include <thread>

namespace hubcache::storage::test_contract {
namespace {

class DiskBlobWriterTest : public BlobStoreTestBase {
 protected:
  void SetUp() override { m_store = make_disk_blob_store({m_dir.path() / "store", 1 << 20}, m_pool); }
};

TEST_F(DiskBlobWriterTest, OpenReaderAfterCommitReadsTheBlob) {
  const std::string data = filler(10'000, 'c');
  auto writer = create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(m_ioc, writer->append(as_bytes(data))));
  ASSERT_TRUE(test::run(m_ioc, writer->commit()).has_value());
  auto reader = writer->open_reader();
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  EXPECT_EQ((*reader)->size(), data.size());
  EXPECT_EQ(read_all(**reader), data);
}

TEST_F(DiskBlobWriterTest, OpenReaderAfterFailureReportsTheFailure) {
  auto writer = create(expect_sha256("abc"));
  ASSERT_TRUE(writer);
  ASSERT_FALSE(test::run(m_ioc, writer->append(as_bytes("abcd"))).has_value());
  auto reader = writer->open_reader();
  ASSERT_FALSE(reader.has_value());
  EXPECT_EQ(reader.error(), errc::integrity_mismatch);
}

// The staging file is renamed in the middle of commit(); a reader opened from
// another thread at any moment must still find the bytes.
TEST_F(DiskBlobWriterTest, OpenReaderFromAnotherThreadDuringCommit) {
  for (int round = 0; round < 20; ++round) {
    const std::string data = filler(5000, static_cast<char>('a' + round));
    auto writer = create(expect_sha256(data));
    ASSERT_TRUE(writer);
    ASSERT_TRUE(test::run(m_ioc, writer->append(as_bytes(data))));

    std::atomic<bool> committed{false};
    std::atomic<bool> running{false};
    std::atomic<int> opened{0};
    std::atomic<int> failures{0};
    std::thread follower([&] {
      while (!committed.load()) {
        auto reader = writer->open_reader();
        if (!reader) {
          ++failures;
          continue;
        }
        ++opened;
        running = true;
        // pread directly: the reader's coroutine API needs an io_context.
        std::string head(16, '\0');
        if (::pread((*reader)->native_handle(), head.data(), head.size(), 0) != 16 || head != data.substr(0, 16)) {
          ++failures;
        }
      }
    });
    while (!running.load()) std::this_thread::yield();  // commit while the follower is busy
    auto key = test::run(m_ioc, writer->commit());
    committed = true;
    follower.join();
    ASSERT_TRUE(key.has_value()) << key.error().message();
    EXPECT_EQ(failures.load(), 0) << "round " << round;
  }
}

}  // namespace
}  // namespace hubcache::storage::test_contract
