// The BlobStore contract (include/hubcache/storage/blob_store.hpp) as one
// typed test suite that every store implementation instantiates:
//
//   INSTANTIATE_TYPED_TEST_SUITE_P(Disk, BlobStoreContract, ::testing::Types<DiskEnv>);
//
// An Env type opens the store under test:
//
//   struct Env {
//     // Why the store cannot be tested here (the tests are skipped), or nullopt.
//     static std::optional<std::string> skip_reason();
//     // A new, empty store for one test, with its local files under `dir`.
//     explicit Env(const std::filesystem::path& dir);
//     // Opens the store; a previous instance has been destroyed already.
//     std::unique_ptr<BlobStore> open(boost::asio::io_context& ioc, boost::asio::thread_pool& pool);
//     // Where the store keeps blobs being written (dot-files are ignored).
//     std::filesystem::path staging_dir() const;
//   };
//
// What only one store does (disk eviction, crash leftovers, GCS object
// layout) is tested in that store's own test file, with the helpers of
// BlobStoreTestBase.
#pragma once

#include <hubcache/storage/blob_store.hpp>
#include <hubcache/util/hash.hpp>

#include "test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace hubcache::storage::test_contract {

namespace fs = std::filesystem;

inline std::span<const std::byte> as_bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

inline core::Sha256 sha256_of(std::string_view data) {
  util::Sha256Hasher hasher;
  hasher.update(data);
  return hasher.finish();
}

inline ExpectedContent expect_sha256(std::string_view data) { return {data.size(), sha256_of(data), std::nullopt}; }

inline ExpectedContent expect_git(std::uint64_t size, std::string_view git_hex) {
  return {size, std::nullopt, core::GitSha1::from_hex(git_hex)};
}

// Deterministic bytes that differ per seed (blobs with distinct keys).
inline std::string filler(std::size_t size, char seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>(seed + static_cast<char>(i * 7 % 251));
  return out;
}

// A reader of bytes in memory: an upload source that need not match its key.
class StringReader final : public BlobReader {
 public:
  explicit StringReader(std::string data) : m_data(std::move(data)) {}
  std::uint64_t size() const override { return m_data.size(); }
  boost::asio::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= m_data.size()) co_return std::size_t{0};
    const std::size_t n = std::min<std::size_t>(buf.size(), m_data.size() - offset);
    std::memcpy(buf.data(), m_data.data() + offset, n);
    co_return n;
  }
  int native_handle() const noexcept override { return -1; }

 private:
  std::string m_data;
};

// Regular files below `dir`, dot-files (lock files) not counted.
inline std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    n += e.is_regular_file() && e.path().filename().string().front() != '.' ? 1 : 0;
  }
  return n;
}

// A store, the io_context its coroutines run on, a one-thread blocking pool,
// a temp directory, and helpers that drive the store synchronously.
class BlobStoreTestBase : public ::testing::Test {
 protected:
  // Waits until everything posted to the (single-threaded, FIFO) pool so far
  // has run, e.g. the deferred unlink of a discarded staging file.
  void drain_pool() {
    std::promise<void> done;
    boost::asio::post(m_pool, [&] { done.set_value(); });
    done.get_future().wait();
  }

  BlobWriterPtr create(const ExpectedContent& expected) {
    auto writer = test::run(m_ioc, m_store->create(expected));
    EXPECT_TRUE(writer.has_value()) << writer.error().message();
    return writer ? std::move(*writer) : nullptr;
  }

  // A writer told `data`'s size and another digest: `data` will not verify.
  BlobWriterPtr create_mismatched(std::string_view data) {
    ExpectedContent expected = expect_sha256(data);
    expected.sha256 = sha256_of(std::string(data) + " (other)");
    return create(expected);
  }

  result<core::Sha256> write_blob(std::string_view data, const ExpectedContent& expected) {
    auto writer = test::run(m_ioc, m_store->create(expected));
    if (!writer) return writer.error();
    // Several appends, so hashing across chunk boundaries is exercised.
    for (std::size_t off = 0; off < data.size(); off += 7000) {
      auto appended = test::run(m_ioc, (*writer)->append(as_bytes(data.substr(off, 7000))));
      if (!appended) return appended.error();
    }
    return test::run(m_ioc, (*writer)->commit());
  }

  core::Sha256 put(std::string_view data) {
    auto key = write_blob(data, expect_sha256(data));
    EXPECT_TRUE(key.has_value()) << key.error().message();
    return key ? *key : core::Sha256{};
  }

  BlobReaderPtr open_blob(const core::Sha256& key) {
    auto reader = test::run(m_ioc, m_store->open(key));
    EXPECT_TRUE(reader.has_value()) << reader.error().message();
    return reader && *reader ? std::move(**reader) : nullptr;
  }

  bool is_stored(const core::Sha256& key) {
    auto reader = test::run(m_ioc, m_store->open(key));
    EXPECT_TRUE(reader.has_value()) << reader.error().message();
    return reader && reader->has_value();
  }

  std::string read_all(BlobReader& reader, std::uint64_t from = 0) {
    std::string out;
    std::vector<std::byte> buf(4000);
    for (;;) {
      auto n = test::run(m_ioc, reader.read_at(from + out.size(), buf));
      EXPECT_TRUE(n.has_value());
      if (!n || *n == 0) return out;
      out.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
  }

  test::TempDir m_dir;
  boost::asio::io_context m_ioc;
  boost::asio::thread_pool m_pool{1};
  std::unique_ptr<BlobStore> m_store;  // declared last: destroyed before the pool
};

template <class Env>
class BlobStoreContract : public BlobStoreTestBase {
 protected:
  void SetUp() override {
    if (auto why = Env::skip_reason()) GTEST_SKIP() << *why;
    m_env.emplace(m_dir.path());
    reopen();
  }
  void TearDown() override { m_store.reset(); }

  void reopen() {
    m_store.reset();
    m_store = m_env->open(m_ioc, m_pool);
  }
  // Files in the staging area once pending unlinks have run.
  std::size_t staging_files() {
    drain_pool();
    return count_files(m_env->staging_dir());
  }

  std::optional<Env> m_env;
};

TYPED_TEST_SUITE_P(BlobStoreContract);

TYPED_TEST_P(BlobStoreContract, WriteCommitOpenReadRoundTrip) {
  const std::string data = filler(100'000, 'a');
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  EXPECT_GE(this->m_store->usage().reserved, data.size());
  for (std::size_t off = 0; off < data.size(); off += 7000) {
    ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes(std::string_view(data).substr(off, 7000)))));
  }
  EXPECT_EQ(writer->written(), data.size());
  EXPECT_FALSE(this->is_stored(sha256_of(data)));  // not visible before commit

  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_EQ(*key, sha256_of(data));
  EXPECT_EQ(this->staging_files(), 0u);

  const StoreUsage usage = this->m_store->usage();
  EXPECT_GE(usage.bytes, data.size());
  EXPECT_EQ(usage.reserved, 0u);
  EXPECT_EQ(usage.blobs, 1u);

  auto reader = this->open_blob(*key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->size(), data.size());
  EXPECT_EQ(this->read_all(*reader), data);
  std::vector<std::byte> buf(10);
  EXPECT_EQ(*test::run(this->m_ioc, reader->read_at(data.size() - 3, buf)), 3u);
  EXPECT_EQ(*test::run(this->m_ioc, reader->read_at(data.size(), buf)), 0u);
  EXPECT_EQ(*test::run(this->m_ioc, reader->read_at(data.size() + 100, buf)), 0u);
}

TYPED_TEST_P(BlobStoreContract, OpenOfUnknownBlobIsAbsent) {
  auto reader = test::run(this->m_ioc, this->m_store->open(sha256_of("never stored")));
  ASSERT_TRUE(reader.has_value());
  EXPECT_FALSE(reader->has_value());
}

TYPED_TEST_P(BlobStoreContract, Sha256MismatchIsRejectedAndInvisible) {
  const std::string data = "the real bytes";
  ExpectedContent expected = expect_sha256("other bytes!!!");  // same size, other digest
  auto key = this->write_blob(data, expected);
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error(), errc::integrity_mismatch);

  EXPECT_FALSE(this->is_stored(sha256_of(data)));
  EXPECT_EQ(this->m_store->usage().bytes, 0u);
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
}

TYPED_TEST_P(BlobStoreContract, GitSha1IsVerified) {
  // Known git blob ids (`git hash-object`).
  auto hello = this->write_blob("hello\n", expect_git(6, "ce013625030ba8dba906f756967f9e9ca394464a"));
  ASSERT_TRUE(hello.has_value()) << hello.error().message();
  // The storage key is still the sha256 of the content.
  EXPECT_EQ(hello->hex(), "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");

  auto empty = this->write_blob("", expect_git(0, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"));
  ASSERT_TRUE(empty.has_value()) << empty.error().message();
  EXPECT_EQ(empty->hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  auto reader = this->open_blob(*empty);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->size(), 0u);
  EXPECT_EQ(this->read_all(*reader), "");

  auto wrong = this->write_blob("hellO\n", expect_git(6, "ce013625030ba8dba906f756967f9e9ca394464a"));
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error(), errc::integrity_mismatch);
  EXPECT_FALSE(this->is_stored(sha256_of("hellO\n")));
  EXPECT_EQ(this->m_store->usage().blobs, 2u);
}

TYPED_TEST_P(BlobStoreContract, ContentWithoutDigestIsRefused) {
  auto writer = test::run(this->m_ioc, this->m_store->create(ExpectedContent{5, std::nullopt, std::nullopt}));
  ASSERT_FALSE(writer.has_value());
  EXPECT_EQ(writer.error(), errc::bad_request);
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
}

TYPED_TEST_P(BlobStoreContract, ShortContentFailsCommit) {
  // The digest matches the bytes written; only the announced size does not.
  ExpectedContent expected = expect_sha256("01234");
  expected.size = 10;
  auto key = this->write_blob("01234", expected);
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error(), errc::integrity_mismatch);
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->m_store->usage().blobs, 0u);
}

TYPED_TEST_P(BlobStoreContract, AppendingPastExpectedSizeFails) {
  auto writer = this->create(expect_sha256("abc"));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes("ab"))));
  auto over = test::run(this->m_ioc, writer->append(as_bytes("cd")));
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error(), errc::integrity_mismatch);
  // The writer is finished: commit reports the same failure, nothing is stored.
  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error(), errc::integrity_mismatch);
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->m_store->usage().blobs, 0u);
}

TYPED_TEST_P(BlobStoreContract, CommitTwiceReturnsTheKeyAndRejectsLaterBytes) {
  auto writer = this->create(expect_sha256("abc"));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes("abc"))));
  auto first = test::run(this->m_ioc, writer->commit());
  ASSERT_TRUE(first.has_value());
  auto second = test::run(this->m_ioc, writer->commit());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(*first, *second);
  auto more = test::run(this->m_ioc, writer->append(as_bytes("d")));
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error(), errc::integrity_mismatch);
  EXPECT_EQ(this->m_store->usage().blobs, 1u);
}

TYPED_TEST_P(BlobStoreContract, VerifyChecksTheBytesWithoutStoringThem) {
  const std::string data = filler(20'000, 'v');
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write_at(0, as_bytes(data)));
  auto verified = test::run(this->m_ioc, writer->verify());
  ASSERT_TRUE(verified.has_value()) << verified.error().message();
  EXPECT_EQ(*verified, sha256_of(data));
  // Right, but neither visible nor durable yet: still staged and reserved.
  EXPECT_FALSE(this->is_stored(*verified));
  EXPECT_EQ(this->m_store->usage().blobs, 0u);
  EXPECT_EQ(this->staging_files(), 1u);
  auto again = test::run(this->m_ioc, writer->verify());
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *verified);
  auto more = writer->write_at(data.size(), as_bytes("x"));
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error(), errc::integrity_mismatch);

  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_EQ(*key, *verified);
  EXPECT_TRUE(this->is_stored(*key));
  EXPECT_EQ(this->staging_files(), 0u);
}

TYPED_TEST_P(BlobStoreContract, VerifyMismatchFailsTheWriter) {
  const std::string data = "bytes that do not match";
  auto writer = this->create_mismatched(data);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write_at(0, as_bytes(data)));
  auto verified = test::run(this->m_ioc, writer->verify());
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error(), errc::integrity_mismatch);
  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error(), errc::integrity_mismatch);
  EXPECT_FALSE(this->is_stored(sha256_of(data)));
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
}

// A fill's clients open readers from their own threads while the fill's
// coroutine commits (fsync and rename, or an upload): every reader opened
// before, during or after the commit has the whole blob.
TYPED_TEST_P(BlobStoreContract, ReadersOpenedWhileCommittingReadTheWholeBlob) {
  const std::string data = filler(300'000, 'r');
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write_at(0, as_bytes(data)));
  ASSERT_TRUE(test::run(this->m_ioc, writer->verify()).has_value());
  auto before = writer->open_reader();
  ASSERT_TRUE(before.has_value()) << before.error().message();

  // The commit's blocking step (fsync, or reading the file to upload) waits
  // on the one-thread pool behind this job until readers were opened.
  std::promise<void> unblock;
  boost::asio::post(this->m_pool, [gate = unblock.get_future().share()] { gate.wait(); });
  std::atomic<bool> committing{false};
  std::vector<BlobReaderPtr> during;
  std::vector<std::error_code> errors;
  std::thread opener([&] {
    while (!committing.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the commit has reached the pool by now
    for (int i = 0; i < 3; ++i) {
      auto r = writer->open_reader();
      if (r) during.push_back(std::move(*r));
      else errors.push_back(r.error());
    }
    unblock.set_value();
  });
  committing.store(true);
  auto key = test::run(this->m_ioc, writer->commit());
  opener.join();
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_TRUE(errors.empty()) << errors.size() << " failed, the first: " << errors.front().message();
  auto after = writer->open_reader();
  ASSERT_TRUE(after.has_value()) << after.error().message();

  EXPECT_EQ(this->read_all(**before), data);
  for (auto& r : during) EXPECT_EQ(this->read_all(*r), data);
  EXPECT_EQ(this->read_all(**after), data);
}

TYPED_TEST_P(BlobStoreContract, DestroyedWriterRemovesStagingAndReservation) {
  const std::string data = filler(5000, 'x');
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes(std::string_view(data).substr(0, 1000)))));
  EXPECT_EQ(this->staging_files(), 1u);
  EXPECT_GE(this->m_store->usage().reserved, data.size());

  writer.reset();
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->m_store->usage().bytes, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
  EXPECT_FALSE(this->is_stored(sha256_of(data)));
}

TYPED_TEST_P(BlobStoreContract, StagingReaderStaysValidAfterCommit) {
  const std::string data = "hello streaming world";
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes(std::string_view(data).substr(0, 6)))));

  auto opened = writer->open_reader();
  ASSERT_TRUE(opened.has_value()) << opened.error().message();
  BlobReaderPtr reader = std::move(*opened);
  EXPECT_EQ(reader->size(), data.size());        // the size the blob will have
  EXPECT_EQ(this->read_all(*reader), "hello ");  // only what is present

  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes(std::string_view(data).substr(6)))));
  ASSERT_TRUE(test::run(this->m_ioc, writer->commit()).has_value());
  EXPECT_EQ(this->staging_files(), 0u);  // gone from staging; the reader keeps the inode
  EXPECT_EQ(this->read_all(*reader), data);
  EXPECT_EQ(this->read_all(*reader, 6), data.substr(6));

  // A reader opened after the commit reads the stored blob.
  auto later = writer->open_reader();
  ASSERT_TRUE(later.has_value()) << later.error().message();
  EXPECT_EQ(this->read_all(**later), data);
}

TYPED_TEST_P(BlobStoreContract, StagingReaderStaysValidAfterFailure) {
  const std::string data = "bytes that will not verify";
  auto writer = this->create_mismatched(data);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(test::run(this->m_ioc, writer->append(as_bytes(data))));
  auto opened = writer->open_reader();
  ASSERT_TRUE(opened.has_value());
  BlobReaderPtr reader = std::move(*opened);

  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(this->staging_files(), 0u);           // unlinked
  EXPECT_EQ(this->read_all(*reader), data);       // still readable through our descriptor
}

TYPED_TEST_P(BlobStoreContract, SecondWriterOfSameContentSucceedsWithoutDuplicate) {
  const std::string data = "popular bytes";
  auto first = this->create(expect_sha256(data));
  auto second = this->create(expect_sha256(data));
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(test::run(this->m_ioc, first->append(as_bytes(data))));
  ASSERT_TRUE(test::run(this->m_ioc, second->append(as_bytes(data))));
  auto key1 = test::run(this->m_ioc, first->commit());
  auto key2 = test::run(this->m_ioc, second->commit());
  ASSERT_TRUE(key1.has_value() && key2.has_value());
  EXPECT_EQ(*key1, *key2);
  const StoreUsage usage = this->m_store->usage();
  EXPECT_EQ(usage.blobs, 1u);
  EXPECT_EQ(usage.reserved, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
  auto reader = this->open_blob(*key1);
  ASSERT_TRUE(reader);
  EXPECT_EQ(this->read_all(*reader), data);
}

TYPED_TEST_P(BlobStoreContract, ReopenedStoreServesCommittedBlobs) {
  const std::string a = filler(5000, 'a');
  const std::string b = filler(100, 'b');
  const auto key_a = this->put(a);
  const auto key_b = this->put(b);
  auto pending = this->create(expect_sha256(filler(10, 'c')));  // never committed
  pending.reset();

  this->reopen();
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
  auto reader_a = this->open_blob(key_a);
  auto reader_b = this->open_blob(key_b);
  ASSERT_TRUE(reader_a && reader_b);
  EXPECT_EQ(this->read_all(*reader_a), a);
  EXPECT_EQ(this->read_all(*reader_b), b);
}

// Many chunks of staging and (for remote stores) of upload; reads out of
// order, which make a streaming reader start over at another offset.
TYPED_TEST_P(BlobStoreContract, LargeBlobReadsAtAnyOffset) {
  const std::string data = filler(700'000, 'L');
  const auto key = this->put(data);
  auto reader = this->open_blob(key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->size(), data.size());
  for (std::uint64_t offset : {650'000u, 10u, 300'000u, 299'990u, 0u, 699'999u}) {
    std::vector<std::byte> buf(1000);
    auto n = test::run(this->m_ioc, reader->read_at(offset, buf));
    ASSERT_TRUE(n.has_value()) << n.error().message();
    ASSERT_GT(*n, 0u);
    ASSERT_LE(*n, data.size() - offset);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), data.substr(offset, *n)) << offset;
  }
  EXPECT_EQ(this->read_all(*reader, 123), data.substr(123));
}

// Writers on two threads, some of them racing to commit the same content.
TYPED_TEST_P(BlobStoreContract, ConcurrentWritersAndReaders) {
  constexpr int k_tasks = 6;
  constexpr int k_rounds = 4;
  std::atomic<int> failures{0};
  for (int t = 0; t < k_tasks; ++t) {
    boost::asio::co_spawn(
        this->m_ioc,
        [&, t]() -> boost::asio::awaitable<void> {
          for (int i = 0; i < k_rounds; ++i) {
            const std::string data = filler(3000 + static_cast<std::size_t>((t + i) % 3) * 1000, static_cast<char>('a' + i));
            auto writer = co_await this->m_store->create(expect_sha256(data));
            if (!writer || !co_await (*writer)->append(as_bytes(data))) {
              ++failures;
              continue;
            }
            auto key = co_await (*writer)->commit();
            if (!key) {
              ++failures;
              continue;
            }
            auto reader = co_await this->m_store->open(*key);
            if (!reader || !*reader || (**reader)->size() != data.size()) ++failures;
          }
        },
        boost::asio::detached);
  }
  std::thread helper([&] { this->m_ioc.run(); });
  this->m_ioc.run();
  helper.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(this->m_store->usage().reserved, 0u);
  EXPECT_EQ(this->staging_files(), 0u);
}

// Hashing runs on the pool, behind the writes: a writer destroyed (or failed)
// while those jobs are queued or running must leave nothing behind, and the
// jobs must not touch it afterwards (ASan watches). A second writer of the
// same content is unaffected.
TYPED_TEST_P(BlobStoreContract, WriterDestroyedWhileHashingLeavesNothing) {
  const std::string data = filler(600'000, 'h');
  const std::string_view v(data);
  for (int round = 0; round < 10; ++round) {
    auto writer = this->create(expect_sha256(data));
    ASSERT_TRUE(writer);
    for (std::size_t off = 0; off < 300'000; off += 4096) {
      ASSERT_TRUE(writer->write_at(off, as_bytes(v.substr(off, std::min<std::size_t>(4096, 300'000 - off)))));
    }
    if (round % 2 == 1) {  // the failure path: bytes written twice
      ASSERT_FALSE(writer->write_at(0, as_bytes(v.substr(0, 10))).has_value());
    }
    writer.reset();
    EXPECT_EQ(this->m_store->usage().reserved, 0u);
    EXPECT_EQ(this->staging_files(), 0u);
  }
  auto key = this->write_blob(data, expect_sha256(data));
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_EQ(*key, sha256_of(data));
}

TYPED_TEST_P(BlobStoreContract, OutOfOrderWritesAreHashedInFileOrder) {
  // Pieces arrive as a parallel fill delivers them: the middle first, the
  // end, then the start; the prefix grows only when the gaps close.
  const std::string data = filler(300'000, 'p');
  const std::string_view v(data);
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write_at(100'000, as_bytes(v.substr(100'000, 100'000))));
  ASSERT_TRUE(writer->write_at(200'000, as_bytes(v.substr(200'000))));
  EXPECT_EQ(writer->written(), 0u);
  ASSERT_TRUE(writer->write_at(0, as_bytes(v.substr(0, 50'000))));
  EXPECT_EQ(writer->written(), 50'000u);
  // A staging reader sees the written prefix while the rest is missing.
  auto staging = writer->open_reader();
  ASSERT_TRUE(staging.has_value());
  EXPECT_EQ(this->read_all(**staging).substr(0, 50'000), data.substr(0, 50'000));
  ASSERT_TRUE(writer->write_at(50'000, as_bytes(v.substr(50'000, 50'000))));
  EXPECT_EQ(writer->written(), data.size());
  auto key = test::run(this->m_ioc, writer->commit());
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_EQ(*key, sha256_of(data));
  auto reader = this->open_blob(*key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(this->read_all(*reader), data);
}

TYPED_TEST_P(BlobStoreContract, BytesWrittenTwiceFailTheWriter) {
  const std::string data = filler(10'000, 'd');
  const std::string_view v(data);
  auto writer = this->create(expect_sha256(data));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write_at(5'000, as_bytes(v.substr(5'000, 1'000))));
  // Overlapping bytes ahead of the prefix, then bytes of the prefix.
  auto again = writer->write_at(5'500, as_bytes(v.substr(5'500, 1'000)));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), errc::bad_request);
  auto key = test::run(this->m_ioc, writer->commit());
  EXPECT_FALSE(key.has_value());
  EXPECT_EQ(this->m_store->usage().reserved, 0u);

  auto second = this->create(expect_sha256(data));
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->write_at(0, as_bytes(v.substr(0, 2'000))));
  auto rewrite = second->write_at(1'000, as_bytes(v.substr(1'000, 10)));
  ASSERT_FALSE(rewrite.has_value());
  EXPECT_EQ(rewrite.error(), errc::bad_request);
}

REGISTER_TYPED_TEST_SUITE_P(BlobStoreContract, WriteCommitOpenReadRoundTrip, OpenOfUnknownBlobIsAbsent,
                            Sha256MismatchIsRejectedAndInvisible, GitSha1IsVerified, ContentWithoutDigestIsRefused,
                            ShortContentFailsCommit, AppendingPastExpectedSizeFails,
                            CommitTwiceReturnsTheKeyAndRejectsLaterBytes, DestroyedWriterRemovesStagingAndReservation,
                            StagingReaderStaysValidAfterCommit, StagingReaderStaysValidAfterFailure,
                            SecondWriterOfSameContentSucceedsWithoutDuplicate, ReopenedStoreServesCommittedBlobs,
                            LargeBlobReadsAtAnyOffset, ConcurrentWritersAndReaders,
                            WriterDestroyedWhileHashingLeavesNothing, OutOfOrderWritesAreHashedInFileOrder,
                            BytesWrittenTwiceFailTheWriter, VerifyChecksTheBytesWithoutStoringThem,
                            VerifyMismatchFailsTheWriter, ReadersOpenedWhileCommittingReadTheWholeBlob);

}  // namespace hubcache::storage::test_contract
