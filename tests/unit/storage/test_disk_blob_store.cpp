// The disk store: the BlobStore contract (blob_store_contract.hpp) plus
// what only the disk store does: its on-disk layout, block accounting, LRU
// eviction and pinning, crash leftovers and startup checks.
#include <hubcache/storage/disk_blob_store.hpp>

#include "blob_store_contract.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <thread>

namespace hubcache::storage::test_contract {

struct DiskEnv {
  static std::optional<std::string> skip_reason() { return std::nullopt; }
  explicit DiskEnv(const fs::path& dir) : m_root(dir / "store") {}
  std::unique_ptr<BlobStore> open(boost::asio::io_context&, boost::asio::thread_pool& pool) {
    return make_disk_blob_store({m_root, 1 << 20}, pool);
  }
  fs::path staging_dir() const { return m_root / "staging"; }
  fs::path m_root;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Disk, BlobStoreContract, ::testing::Types<DiskEnv>);

namespace {

constexpr std::uint64_t k_block = 4096;

void set_atime(const fs::path& path, std::time_t seconds) {
  const struct timespec times[2] = {{seconds, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

class DiskBlobStoreTest : public BlobStoreTestBase {
 protected:
  void SetUp() override { open_store(); }

  fs::path root() const { return m_dir.path() / "store"; }
  fs::path blob_file(const core::Sha256& key) const {
    const std::string hex = key.hex();
    return root() / "blobs" / hex.substr(0, 2) / hex;
  }

  void open_store(std::uint64_t max_bytes = 1 << 20) {
    m_store.reset();  // releases the root's lock first
    m_store = make_disk_blob_store({root(), max_bytes}, m_pool);
  }
};

TEST_F(DiskBlobStoreTest, CreatesLayout) {
  EXPECT_TRUE(fs::is_regular_file(root() / "CACHEDIR.TAG"));
  std::ifstream tag(root() / "CACHEDIR.TAG");
  std::string first_line;
  std::getline(tag, first_line);
  EXPECT_EQ(first_line, "Signature: 8a477f597d28d172789f06886806bc55");
  std::ifstream store_json(root() / "store.json");
  std::string content((std::istreambuf_iterator<char>(store_json)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "{\"format\":1}\n");
  EXPECT_TRUE(fs::is_directory(root() / "staging"));
  EXPECT_TRUE(fs::is_directory(root() / "blobs" / "00"));
  EXPECT_TRUE(fs::is_directory(root() / "blobs" / "ff"));
}

// The disk specifics of a write: block rounding, the file appearing under
// blobs/ only at commit, the staging file renamed away, a real descriptor.
TEST_F(DiskBlobStoreTest, CommittedBlobLayoutAndBlockAccounting) {
  const std::string data = filler(100'000, 'a');
  auto writer = create(expect_sha256(data));
  ASSERT_TRUE(writer);
  EXPECT_EQ(m_store->usage().reserved, 25 * k_block);  // 100000 bytes round up to 25 blocks
  ASSERT_TRUE(test::run(m_ioc, writer->append(as_bytes(data))));
  EXPECT_EQ(count_files(root() / "staging"), 1u);
  EXPECT_FALSE(fs::exists(blob_file(sha256_of(data))));  // not visible before commit

  auto key = test::run(m_ioc, writer->commit());
  ASSERT_TRUE(key.has_value()) << key.error().message();
  EXPECT_TRUE(fs::is_regular_file(blob_file(*key)));
  EXPECT_EQ(count_files(root() / "staging"), 0u);
  const StoreUsage usage = m_store->usage();
  EXPECT_EQ(usage.bytes, 25 * k_block);
  EXPECT_EQ(usage.reserved, 0u);
  EXPECT_EQ(usage.limit, 1u << 20);

  auto reader = open_blob(*key);
  ASSERT_TRUE(reader);
  EXPECT_GE(reader->native_handle(), 0);
}

TEST_F(DiskBlobStoreTest, RejectedBlobsLeaveNoFiles) {
  EXPECT_FALSE(write_blob("the real bytes", expect_sha256("other bytes!!!")).has_value());
  EXPECT_FALSE(write_blob("hellO\n", expect_git(6, "ce013625030ba8dba906f756967f9e9ca394464a")).has_value());
  EXPECT_FALSE(fs::exists(blob_file(sha256_of("the real bytes"))));
  EXPECT_FALSE(fs::exists(blob_file(sha256_of("hellO\n"))));
  drain_pool();
  EXPECT_EQ(count_files(root() / "staging"), 0u);
  EXPECT_EQ(count_files(root() / "blobs"), 0u);
}

TEST_F(DiskBlobStoreTest, WriterReservesWholeBlocksUntilDestroyed) {
  const std::string data = filler(5000, 'x');
  auto writer = create(expect_sha256(data));
  ASSERT_TRUE(writer);
  EXPECT_EQ(m_store->usage().reserved, 2 * k_block);
  writer.reset();
  EXPECT_EQ(m_store->usage().reserved, 0u);
}

TEST_F(DiskBlobStoreTest, DuplicateContentTakesItsBlocksOnce) {
  const std::string data = "popular bytes";
  put(data);
  put(data);
  EXPECT_EQ(m_store->usage().bytes, k_block);
  EXPECT_EQ(count_files(root() / "blobs"), 1u);
}

TEST_F(DiskBlobStoreTest, RestartKeepsBlobsAndUsage) {
  const std::string a = filler(5000, 'a');
  const std::string b = filler(100, 'b');
  const auto key_a = put(a);
  const auto key_b = put(b);
  const StoreUsage before = m_store->usage();
  EXPECT_EQ(before.bytes, 3 * k_block);

  open_store();
  const StoreUsage after = m_store->usage();
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_EQ(after.blobs, 2u);
  EXPECT_EQ(after.reserved, 0u);
  auto reader_a = open_blob(key_a);
  auto reader_b = open_blob(key_b);
  ASSERT_TRUE(reader_a && reader_b);
  EXPECT_EQ(read_all(*reader_a), a);
  EXPECT_EQ(read_all(*reader_b), b);
}

TEST_F(DiskBlobStoreTest, StartupRemovesCrashLeftovers) {
  const std::string data = "survivor";
  const auto key = put(data);
  m_store.reset();

  const std::string hex = key.hex();
  const fs::path shard = root() / "blobs" / hex.substr(0, 2);
  const std::string wrong_shard = hex[0] == '0' ? "11" : "00";
  const std::vector<fs::path> garbage = {
      root() / "staging" / "half-written",
      root() / "staging" / "dir" / "nested",
      shard / "not-a-digest",
      shard / (hex + ".tmp-1234"),
      shard / std::string(64, 'A'),  // upper case is not our naming
      root() / "blobs" / wrong_shard / hex,
      root() / "blobs" / "zz" / "file",
      root() / "blobs" / "stray-file",
  };
  for (const auto& path : garbage) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << data;
  }

  open_store();
  for (const auto& path : garbage) EXPECT_FALSE(fs::exists(path)) << path;
  EXPECT_FALSE(fs::exists(root() / "staging" / "dir"));
  EXPECT_FALSE(fs::exists(root() / "blobs" / "zz"));
  EXPECT_EQ(m_store->usage().blobs, 1u);
  EXPECT_EQ(m_store->usage().bytes, k_block);
  auto reader = open_blob(key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(read_all(*reader), data);
}

TEST_F(DiskBlobStoreTest, EvictsLeastRecentlyUsedFirst) {
  open_store(3 * k_block);
  const auto a = put(filler(4000, 'a'));
  const auto b = put(filler(4000, 'b'));
  const auto c = put(filler(4000, 'c'));
  open_blob(a).reset();  // a is now the most recently used; b the least

  const auto d = put(filler(4000, 'd'));
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_FALSE(fs::exists(blob_file(b)));
  EXPECT_TRUE(fs::exists(blob_file(c)));
  EXPECT_TRUE(fs::exists(blob_file(d)));
  auto gone = test::run(m_ioc, m_store->open(b));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->has_value());

  put(filler(4000, 'e'));  // next in line is c
  EXPECT_FALSE(fs::exists(blob_file(c)));
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_EQ(m_store->usage().bytes, 3 * k_block);
  EXPECT_EQ(m_store->usage().blobs, 3u);
  // Evicted files are moved out under the lock and removed after it: none is left.
  EXPECT_TRUE(fs::is_empty(root() / "staging"));

  // An evicted blob committed again is a blob like any other.
  EXPECT_EQ(put(filler(4000, 'b')), b);
  EXPECT_EQ(read_all(*open_blob(b)), filler(4000, 'b'));
}

// Descriptors of this process whose target contains `needle`.
std::size_t open_descriptors(const std::string& needle) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = fs::read_symlink(e.path(), ec);
    if (!ec && target.string().find(needle) != std::string::npos) ++n;
  }
  return n;
}

TEST_F(DiskBlobStoreTest, EvictionClosesTheCachedDescriptor) {
  open_store(2 * k_block);
  const auto a = put(filler(4000, 'a'));
  EXPECT_EQ(read_all(*open_blob(a)), filler(4000, 'a'));  // its descriptor stays cached
  EXPECT_EQ(open_descriptors(a.hex()), 1u);
  put(filler(4000, 'b'));
  put(filler(4000, 'c'));  // evicts a
  EXPECT_FALSE(fs::exists(blob_file(a)));
  EXPECT_EQ(open_descriptors(a.hex()), 0u);  // its space is really free
  auto gone = test::run(m_ioc, m_store->open(a));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->has_value());
}

TEST_F(DiskBlobStoreTest, CachedDescriptorsAreBounded) {
  std::vector<std::pair<core::Sha256, std::string>> blobs;
  for (int i = 0; i < 200; ++i) {
    std::string data = "blob " + std::to_string(i);
    blobs.emplace_back(put(data), data);
  }
  for (int round = 0; round < 2; ++round) {
    for (const auto& [key, data] : blobs) EXPECT_EQ(read_all(*open_blob(key)), data);
  }
  const std::size_t cached = open_descriptors((root() / "blobs").string());
  EXPECT_GT(cached, 0u);
  EXPECT_LE(cached, 128u);
}

TEST_F(DiskBlobStoreTest, NeverEvictsAPinnedBlob) {
  open_store(2 * k_block);
  const std::string data_a = filler(4000, 'a');
  const auto a = put(data_a);
  auto pinned = open_blob(a);
  ASSERT_TRUE(pinned);
  const auto b = put(filler(4000, 'b'));
  open_blob(b).reset();  // a is the least recently used, but pinned

  const auto c = put(filler(4000, 'c'));
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_FALSE(fs::exists(blob_file(b)));
  EXPECT_TRUE(fs::exists(blob_file(c)));
  EXPECT_EQ(read_all(*pinned), data_a);
}

TEST_F(DiskBlobStoreTest, InsufficientStorageWhenEverythingIsPinned) {
  open_store(2 * k_block);
  const auto a = put(filler(4000, 'a'));
  const auto b = put(filler(4000, 'b'));
  auto pin_a = open_blob(a);
  auto pin_b = open_blob(b);
  ASSERT_TRUE(pin_a && pin_b);

  auto full = test::run(m_ioc, m_store->create(expect_sha256(filler(10, 'c'))));
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), errc::insufficient_storage);
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_TRUE(fs::exists(blob_file(b)));
  EXPECT_EQ(m_store->usage().reserved, 0u);

  pin_a.reset();  // once a is released it can go
  const auto c = put(filler(10, 'c'));
  EXPECT_FALSE(fs::exists(blob_file(a)));
  EXPECT_TRUE(fs::exists(blob_file(b)));
  EXPECT_TRUE(fs::exists(blob_file(c)));
}

TEST_F(DiskBlobStoreTest, ReservationsCountAgainstTheLimit) {
  open_store(2 * k_block);
  auto first = create(expect_sha256(filler(5000, 'a')));  // reserves both blocks
  ASSERT_TRUE(first);
  auto second = test::run(m_ioc, m_store->create(expect_sha256("x")));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error(), errc::insufficient_storage);
  first.reset();
  EXPECT_TRUE(test::run(m_ioc, m_store->create(expect_sha256("x"))).has_value());
}

TEST_F(DiskBlobStoreTest, BlobLargerThanTheLimitEvictsNothing) {
  open_store(2 * k_block);
  const auto a = put(filler(10, 'a'));
  auto huge = test::run(m_ioc, m_store->create(expect_sha256(filler(3 * k_block, 'h'))));
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error(), errc::insufficient_storage);
  EXPECT_TRUE(fs::exists(blob_file(a)));
}

TEST_F(DiskBlobStoreTest, RestartRebuildsLruOrderFromAccessTimes) {
  const auto a = put(filler(4000, 'a'));
  const auto b = put(filler(4000, 'b'));
  const auto c = put(filler(4000, 'c'));
  set_atime(blob_file(a), 3000);
  set_atime(blob_file(b), 1000);
  set_atime(blob_file(c), 2000);

  open_store(2 * k_block);  // the startup limit drops the oldest, b
  EXPECT_EQ(m_store->usage().blobs, 2u);
  EXPECT_EQ(m_store->usage().bytes, 2 * k_block);
  EXPECT_FALSE(fs::exists(blob_file(b)));

  put(filler(4000, 'd'));  // then c, older than a
  EXPECT_FALSE(fs::exists(blob_file(c)));
  EXPECT_TRUE(fs::exists(blob_file(a)));
}

TEST_F(DiskBlobStoreTest, OpenIsRememberedAcrossRestart) {
  const auto a = put(filler(4000, 'a'));
  const auto b = put(filler(4000, 'b'));
  set_atime(blob_file(a), 1000);
  set_atime(blob_file(b), 2000);
  open_blob(a).reset();  // refreshes a's access time on the pool
  drain_pool();

  open_store(k_block);
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_FALSE(fs::exists(blob_file(b)));
}

TEST_F(DiskBlobStoreTest, BatchedOpensAreRememberedAcrossRestart) {
  const auto a = put(filler(4000, 'a'));
  const auto b = put(filler(4000, 'b'));
  open_blob(b).reset();
  drain_pool();
  set_atime(blob_file(a), 1000);
  set_atime(blob_file(b), 2000);
  // Within a second of the last one, this open's access time may only be
  // queued; closing the store persists what is queued.
  open_blob(a).reset();

  open_store(k_block);
  EXPECT_TRUE(fs::exists(blob_file(a)));
  EXPECT_FALSE(fs::exists(blob_file(b)));
}

TEST_F(DiskBlobStoreTest, UnknownFormatVersionRefusesToStart) {
  const fs::path other = m_dir.path() / "v2";
  fs::create_directories(other);
  std::ofstream(other / "store.json") << R"({"format": 2})";
  try {
    make_disk_blob_store({other, 1 << 20}, m_pool);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("format 2"), std::string::npos) << e.what();
  }

  std::ofstream(other / "store.json", std::ios::trunc) << "not json";
  EXPECT_THROW(make_disk_blob_store({other, 1 << 20}, m_pool), std::runtime_error);
}

TEST_F(DiskBlobStoreTest, ForeignDirectoryRefusesToStart) {
  const fs::path other = m_dir.path() / "foreign";
  fs::create_directories(other / "blobs");
  std::ofstream(other / "blobs" / "precious.txt") << "not ours";
  EXPECT_THROW(make_disk_blob_store({other, 1 << 20}, m_pool), std::runtime_error);
  EXPECT_TRUE(fs::exists(other / "blobs" / "precious.txt"));
}

TEST_F(DiskBlobStoreTest, SecondStoreOnSameRootRefusesToStart) {
  EXPECT_THROW(make_disk_blob_store({root(), 1 << 20}, m_pool), std::runtime_error);
}

// Stores starting on the same fresh root at once (two containers on one
// volume): exactly one gets it. store.json used to be written by each, the
// last rename replacing the file another had already locked.
TEST_F(DiskBlobStoreTest, StoresStartingTogetherOnAFreshRootGetItOnce) {
  for (int round = 0; round < 20; ++round) {
    const fs::path fresh = m_dir.path() / ("fresh-" + std::to_string(round));
    std::atomic<int> ready{0};
    std::atomic<int> opened{0};
    std::vector<std::unique_ptr<BlobStore>> stores(4);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < stores.size(); ++i) {
      threads.emplace_back([&, i] {
        ++ready;
        while (ready.load() < static_cast<int>(stores.size())) std::this_thread::yield();
        try {
          stores[i] = make_disk_blob_store({fresh, 1 << 20}, m_pool);
          ++opened;
        } catch (const std::runtime_error&) {
        }
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(opened.load(), 1) << "round " << round;
  }
}

// Many writers and readers on two threads with constant eviction: the
// accounting must come out exact and within the limit.
TEST_F(DiskBlobStoreTest, ConcurrentWritersAndReadersKeepAccountingConsistent) {
  open_store(8 * k_block);
  constexpr int k_tasks = 8;
  constexpr int k_rounds = 20;
  std::atomic<int> failures{0};
  for (int t = 0; t < k_tasks; ++t) {
    boost::asio::co_spawn(
        m_ioc,
        [&]() -> boost::asio::awaitable<void> {
          for (int i = 0; i < k_rounds; ++i) {
            // Some contents repeat across tasks, so commits also race on the same key.
            const std::string data = filler(3000 + static_cast<std::size_t>(i % 5) * 1000, static_cast<char>('a' + i % 7));
            auto writer = co_await m_store->create(expect_sha256(data));
            if (!writer) {
              if (writer.error() != errc::insufficient_storage) ++failures;
              continue;
            }
            if (!co_await (*writer)->append(as_bytes(data))) ++failures;
            auto key = co_await (*writer)->commit();
            if (!key) {
              ++failures;
              continue;
            }
            auto reader = co_await m_store->open(*key);
            if (!reader) ++failures;
          }
        },
        boost::asio::detached);
  }
  std::thread helper([&] { m_ioc.run(); });
  m_ioc.run();
  helper.join();
  EXPECT_EQ(failures.load(), 0);
  const StoreUsage usage = m_store->usage();
  EXPECT_EQ(usage.reserved, 0u);
  EXPECT_LE(usage.bytes, usage.limit);
  drain_pool();
  EXPECT_EQ(count_files(root() / "staging"), 0u);
  EXPECT_EQ(count_files(root() / "blobs"), usage.blobs);

  // A restart sees exactly what the index saw.
  open_store(8 * k_block);
  EXPECT_EQ(m_store->usage().bytes, usage.bytes);
  EXPECT_EQ(m_store->usage().blobs, usage.blobs);
}

}  // namespace
}  // namespace hubcache::storage::test_contract
