// The tiered store (disk L1 in front of GCS L2) against the GCS emulator:
// the BlobStore contract, background uploads, L2 hits copied into L1, the
// GCS-outage fallback, the bounded upload queue and leases between replicas.
#include <hubcache/storage/disk_blob_store.hpp>
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/tiered_blob_store.hpp>

#include "blob_store_contract.hpp"
#include "gcs_emulator.hpp"
#include "../upstream/test_server.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace hubcache::storage::test_contract {

using test_gcs::GcsEmulator;
using namespace std::chrono_literals;

namespace {

GcsRetryPolicy fast_retry() { return {2, 10ms, 50ms}; }

// One replica's stores: its own disk directory, a shared bucket prefix.
GcsOptions gcs_options(const fs::path& dir, const std::string& prefix, const std::string& endpoint) {
  GcsOptions options;
  options.bucket = test_gcs::k_bucket;
  options.prefix = prefix;
  options.endpoint = endpoint;
  options.credentials = GcsCredentials::none;
  options.staging_dir = dir / "gcs-staging";
  options.chunk_size = 256 * 1024;
  options.retry = fast_retry();
  return options;
}

// Runs `task` until it completes, not until the io_context runs out of work
// (test::run's way): a held lease renews itself until released.
template <class T>
T drive(boost::asio::io_context& ioc, boost::asio::awaitable<T> task) {
  std::optional<T> out;
  boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out.emplace(std::move(value));
  });
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!out && std::chrono::steady_clock::now() < deadline) ioc.run_one_for(100ms);
  if (!out) throw std::runtime_error("coroutine did not finish in time");
  return std::move(*out);
}

TieredOptions without_leases() {
  TieredOptions options;
  options.leases = false;
  return options;
}

std::string fresh_prefix() {
  static int counter = 0;
  return "tiered-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "/";
}

// An HTTP exchange with the emulator, bypassing hubcache's GCS client.
test::http::response<test::http::string_body> emulator_exchange(test::http::request<test::http::string_body> request) {
  namespace beast = boost::beast;
  const std::string emulator = GcsEmulator::endpoint();  // http://127.0.0.1:PORT
  const auto port = static_cast<std::uint16_t>(std::stoi(emulator.substr(emulator.rfind(':') + 1)));
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  request.set(test::http::field::host, "127.0.0.1:" + std::to_string(port));
  test::http::write(stream, request);
  beast::flat_buffer buffer;
  test::http::response<test::http::string_body> response;
  test::http::read(stream, buffer, response);
  return response;
}

// Stores `data` as object `name` with a simple media upload.
void plant_object(const std::string& name, const std::string& data) {
  std::string encoded;
  for (char c : name) encoded += c == '/' ? std::string("%2F") : std::string(1, c);
  test::http::request<test::http::string_body> request{
      test::http::verb::post,
      "/upload/storage/v1/b/" + std::string(test_gcs::k_bucket) + "/o?uploadType=media&name=" + encoded, 11};
  request.set(test::http::field::content_type, "application/octet-stream");
  request.body() = data;
  request.prepare_payload();
  const auto response = emulator_exchange(std::move(request));
  ASSERT_EQ(response.result_int(), 200u) << response.body();
}

std::unique_ptr<TieredBlobStore> open_tiered(const fs::path& dir, const std::string& prefix,
                                             boost::asio::io_context& ioc, boost::asio::thread_pool& pool,
                                             TieredOptions options = {},
                                             const std::string& endpoint = GcsEmulator::endpoint(),
                                             std::chrono::milliseconds io_timeout = 30s) {
  auto l1 = make_disk_blob_store({dir / "disk", 64 << 20}, pool);
  GcsOptions gcs = gcs_options(dir, prefix, endpoint);
  gcs.http.io_timeout = io_timeout;
  std::shared_ptr<GcsBlobStore> l2 = make_gcs_blob_store(gcs, pool);
  return make_tiered_blob_store(std::move(l1), std::move(l2), options, ioc.get_executor());
}

}  // namespace

struct TieredEnv {
  static std::optional<std::string> skip_reason() { return GcsEmulator::skip_reason(); }
  explicit TieredEnv(const fs::path& dir) : m_dir(dir), m_prefix(fresh_prefix()) {}
  std::unique_ptr<BlobStore> open(boost::asio::io_context& ioc, boost::asio::thread_pool& pool) {
    TieredOptions options;
    options.leases = false;  // the contract creates the same blob twice at once on purpose
    return open_tiered(m_dir, m_prefix, ioc, pool, options);
  }
  fs::path staging_dir() const { return m_dir / "disk" / "staging"; }
  fs::path m_dir;
  std::string m_prefix;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Tiered, BlobStoreContract, ::testing::Types<TieredEnv>);

namespace {

class TieredBlobStoreTest : public BlobStoreTestBase {
 protected:
  void SetUp() override {
    if (auto why = GcsEmulator::skip_reason()) GTEST_SKIP() << *why;
    m_prefix = fresh_prefix();
  }
  void TearDown() override {
    m_store.reset();
    m_tiered = nullptr;
  }
  void open_replica(const std::string& name, TieredOptions options = without_leases(),
                    const std::string& endpoint = GcsEmulator::endpoint(), std::chrono::milliseconds io_timeout = 30s) {
    m_store.reset();
    auto store = open_tiered(m_dir.path() / name, m_prefix, m_ioc, m_pool, std::move(options), endpoint, io_timeout);
    m_tiered = store.get();
    m_store = std::move(store);
  }
  // A plain GCS store on the same prefix: what is in the bucket.
  std::unique_ptr<GcsBlobStore> bucket() {
    return make_gcs_blob_store(gcs_options(m_dir.path() / ("raw" + std::to_string(++m_raw)), m_prefix,
                                           GcsEmulator::endpoint()),
                               m_pool);
  }
  bool in_bucket(const core::Sha256& key) {
    auto raw = bucket();
    auto info = test::run(m_ioc, raw->stat(key));
    EXPECT_TRUE(info.has_value());
    return info && info->has_value();
  }
  void wait_idle() { test::run(m_ioc, m_tiered->idle()); }
  // `data` stored (and uploaded) by replica "a"; then replica "b" is open:
  // an empty disk, the same bucket.
  core::Sha256 stored_by_replica_a(const std::string& data) {
    open_replica("a");
    const auto key = put(data);
    wait_idle();
    open_replica("b");
    return key;
  }

  std::string m_prefix;
  TieredBlobStore* m_tiered = nullptr;
  int m_raw = 0;
};

TEST_F(TieredBlobStoreTest, CommitUploadsToGcsInTheBackground) {
  open_replica("a");
  const std::string data = filler(700'000, 'u');  // several resumable chunks
  const auto key = put(data);
  wait_idle();
  EXPECT_TRUE(in_bucket(key));
  EXPECT_EQ(m_tiered->stats().uploads, 1u);
  EXPECT_EQ(m_tiered->stats().uploads_failed, 0u);
  // The object holds the same bytes.
  auto raw = bucket();
  auto reader = test::run(m_ioc, raw->open(key));
  ASSERT_TRUE(reader && *reader);
  EXPECT_EQ(read_all(***reader), data);
}

TEST_F(TieredBlobStoreTest, SecondReplicaReadsFromGcsAndKeepsACopyOnDisk) {
  const std::string data = filler(300'000, 's');
  const auto key = stored_by_replica_a(data);
  auto reader = open_blob(key);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), data.size());
  EXPECT_EQ(read_all(*reader), data);
  reader.reset();
  wait_idle();
  EXPECT_EQ(m_tiered->stats().l2_hits, 1u);
  EXPECT_EQ(m_tiered->stats().promoted, 1u);

  // Now a disk hit: L2 is not asked again.
  auto again = open_blob(key);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(read_all(*again), data);
  EXPECT_EQ(m_tiered->stats().l2_hits, 1u);
}

TEST_F(TieredBlobStoreTest, PartialReadOfAGcsHitLeavesTheDiskAlone) {
  const std::string data = filler(100'000, 'p');
  const auto key = stored_by_replica_a(data);
  auto reader = open_blob(key);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(read_all(*reader, 50'000), data.substr(50'000));  // a range, not from the start
  reader.reset();
  wait_idle();
  EXPECT_EQ(m_tiered->stats().promoted, 0u);
  EXPECT_EQ(count_files(m_dir.path() / "b" / "disk" / "blobs"), 0u);
}

// A bucket object whose bytes are not those of its name (uploaded from a disk
// that rotted): the copy into L1 fails its sha256 check, is not committed,
// and the object is deleted so that no replica serves it again.
TEST_F(TieredBlobStoreTest, AGcsBlobThatFailsItsCheckIsDeleted) {
  open_replica("b");
  const std::string good = filler(50'000, 'g');
  std::string bad = good;
  bad[12'345] ^= 1;
  const auto key = sha256_of(good);
  // hubcache's own upload refuses such bytes; a plain media upload does not.
  plant_object(m_prefix + "blobs/" + key.hex(), bad);
  ASSERT_TRUE(in_bucket(key));

  auto reader = open_blob(key);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(read_all(*reader), bad) << "streamed before the check, as any GCS hit";
  reader.reset();
  wait_idle();
  EXPECT_EQ(m_tiered->stats().promoted, 0u);
  EXPECT_EQ(m_tiered->stats().l2_corrupt, 1u);
  EXPECT_FALSE(in_bucket(key)) << "deleted";
  EXPECT_FALSE(is_stored(key)) << "not on disk either";
}

// What a HEAD does: open, look at the size, drop the reader. No disk space is
// reserved for a copy (reserving evicts other blobs when the disk is full).
TEST_F(TieredBlobStoreTest, AGcsHitOpenedButNotReadReservesNoDisk) {
  const std::string data = filler(200'000, 'h');
  const auto key = stored_by_replica_a(data);
  auto reader = open_blob(key);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->size(), data.size());
  EXPECT_EQ(m_store->usage().reserved, 0u) << "nothing reserved before the first read";
  EXPECT_EQ(count_files(m_dir.path() / "b" / "disk" / "staging"), 0u);
  reader.reset();
  wait_idle();
  EXPECT_EQ(m_tiered->stats().l2_hits, 1u);
  EXPECT_EQ(m_tiered->stats().promoted, 0u);
  EXPECT_EQ(m_store->usage().reserved, 0u);
  EXPECT_EQ(count_files(m_dir.path() / "b" / "disk" / "blobs"), 0u);
}

TEST_F(TieredBlobStoreTest, GcsOutageDegradesToDisk) {
  TieredOptions options = without_leases();
  options.breaker = std::make_shared<GcsBreaker>(60s);
  // Nothing listens on port 1: every GCS request fails at once.
  open_replica("a", options, "http://127.0.0.1:1");
  const std::string data = filler(5000, 'o');
  const auto key = put(data);  // the fill itself never waits for GCS
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_failed, 1u);
  EXPECT_TRUE(is_stored(key));  // from disk

  const auto errors = m_tiered->stats().l2_errors;
  const auto unknown = sha256_of("not stored anywhere");
  auto missing = test::run(m_ioc, m_store->open(unknown));
  ASSERT_TRUE(missing.has_value()) << "an L2 failure is a miss, not an error";
  EXPECT_FALSE(missing->has_value());
  // The breaker is open: the miss did not ask GCS again.
  EXPECT_EQ(m_tiered->stats().l2_errors, errors);
}

// A GCS endpoint that answers 503 while down, and relays to the emulator
// once up (a resumable upload's session URL then points at the emulator).
class SwitchableGcs {
 public:
  std::atomic<bool> down{true};
  std::string endpoint() const { return m_server.url(""); }

 private:
  static test::Reply relay(const test::http::request<test::http::string_body>& request) {
    auto response = emulator_exchange(request);
    response.chunked(false);
    response.prepare_payload();
    std::ostringstream raw;
    raw << response;
    return test::Reply{raw.str(), true};
  }

  test::TestServer m_server{[this](const test::http::request<test::http::string_body>& request) {
    return down ? test::Reply{test::http_response(503, "")} : relay(request);
  }};
};

// GCS down while blobs are filled: their uploads fail, or find the queue
// full. Once GCS is back, the next upload that succeeds queues them again.
TEST_F(TieredBlobStoreTest, FailedUploadsAreTriedAgainOnceGcsWorks) {
  SwitchableGcs gcs;
  TieredOptions options = without_leases();
  options.breaker = std::make_shared<GcsBreaker>(0ms);  // every upload is tried
  options.upload_queue = 4;
  options.upload_workers = 1;
  options.upload_retry = 1h;  // no pass while GCS is down
  open_replica("a", options, gcs.endpoint(), 2s);
  std::vector<core::Sha256> keys;
  for (char seed : {'x', 'y', 'z', 'w'}) keys.push_back(put(filler(3000, seed)));
  wait_idle();
  EXPECT_GE(m_tiered->stats().uploads_failed, 1u);
  EXPECT_EQ(m_tiered->stats().uploads, 0u);
  EXPECT_EQ(m_tiered->stats().uploads_retried, 0u);
  for (const auto& key : keys) EXPECT_FALSE(in_bucket(key));

  gcs.down = false;
  keys.push_back(put(filler(3000, 'v')));  // a new fill: its upload works, and brings the others
  wait_idle();
  const auto stats = m_tiered->stats();
  EXPECT_EQ(stats.uploads, keys.size());
  EXPECT_EQ(stats.uploads_retried, keys.size() - 1);
  EXPECT_EQ(stats.uploads_dropped, 0u);
  for (const auto& key : keys) EXPECT_TRUE(in_bucket(key)) << key.hex();
}

// While uploads keep failing, a new blob's upload queues the remembered ones
// again once upload_retry has passed since the last pass (here: at once).
TEST_F(TieredBlobStoreTest, WhileGcsIsDownANewUploadRetriesTheOthers) {
  SwitchableGcs gcs;
  TieredOptions options = without_leases();
  options.breaker = std::make_shared<GcsBreaker>(0ms);  // every upload is tried
  options.upload_retry = 0ms;
  open_replica("a", options, gcs.endpoint(), 2s);
  const auto first = put(filler(3000, 'f'));
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_retried, 0u);
  put(filler(3000, 'g'));
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_retried, 1u) << "the first blob was queued again with the second";
  put(filler(3000, 'h'));
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_retried, 3u) << "both again with the third";
  EXPECT_EQ(m_tiered->stats().uploads, 0u);
  EXPECT_EQ(m_tiered->stats().uploads_failed, 6u);  // 1 + 2 + 3 attempts
  EXPECT_FALSE(in_bucket(first));
}

// While the breaker is open, uploads are not tried (each would spend GCS's
// retry budget, seconds, and a SIGTERM waits for running uploads): they are
// remembered, and the next open() after the breaker has closed queues them
// again, without a new blob to start the pass.
TEST_F(TieredBlobStoreTest, WhileTheBreakerIsOpenUploadsWaitForIt) {
  SwitchableGcs gcs;
  TieredOptions options = without_leases();
  options.breaker = std::make_shared<GcsBreaker>(1h);
  options.upload_workers = 1;
  options.upload_retry = 0ms;
  open_replica("a", options, gcs.endpoint(), 2s);
  std::vector<core::Sha256> keys;
  for (char seed : {'p', 'q', 'r'}) keys.push_back(put(filler(3000, seed)));
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_failed, 1u) << "only the first upload was tried";
  EXPECT_EQ(m_tiered->stats().l2_errors, 1u);

  gcs.down = false;
  EXPECT_TRUE(is_stored(keys[0]));
  wait_idle();
  EXPECT_EQ(m_tiered->stats().uploads_retried, 0u) << "nothing is tried while the breaker is open";

  options.breaker->succeeded();  // e.g. a GCS read worked again
  EXPECT_TRUE(is_stored(keys[0]));
  wait_idle();
  const auto stats = m_tiered->stats();
  EXPECT_EQ(stats.uploads, keys.size());
  EXPECT_EQ(stats.uploads_retried, keys.size());
  EXPECT_EQ(stats.uploads_failed, 1u);
  for (const auto& key : keys) EXPECT_TRUE(in_bucket(key)) << key.hex();
}

// A blob whose bytes on disk changed after their verification (while its
// upload waited for GCS): its upload is refused before GCS makes an object of
// it, without counting against GCS or being tried again.
TEST_F(TieredBlobStoreTest, ABlobThatChangedOnDiskIsNotUploaded) {
  SwitchableGcs gcs;
  TieredOptions options = without_leases();
  options.upload_retry = 1h;
  options.breaker = std::make_shared<GcsBreaker>(0ms);  // every upload is tried
  open_replica("a", options, gcs.endpoint(), 2s);
  const auto key = put(filler(5000, 'c'));
  wait_idle();
  ASSERT_EQ(m_tiered->stats().uploads, 0u);
  {
    const auto hex = key.hex();
    std::fstream blob(m_dir.path() / "a" / "disk" / "blobs" / hex.substr(0, 2) / hex,
                      std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(blob.good());
    blob.seekp(1234);
    blob.put('#');
  }
  gcs.down = false;
  const auto errors = m_tiered->stats().l2_errors;
  const auto next = put(filler(5000, 'n'));  // uploaded; then the changed one is tried again
  wait_idle();
  const auto stats = m_tiered->stats();
  EXPECT_EQ(stats.uploads, 1u);
  EXPECT_EQ(stats.uploads_retried, 1u);
  EXPECT_EQ(stats.uploads_dropped, 1u);
  EXPECT_EQ(stats.l2_errors, errors) << "not counted as a GCS failure";
  EXPECT_TRUE(in_bucket(next));
  EXPECT_FALSE(in_bucket(key));
}

// More blobs waiting for a retry than upload_queue: the rest are dropped
// (logged and counted), and every blob stays on disk.
TEST_F(TieredBlobStoreTest, UploadsBeyondTheBoundAreDropped) {
  // A GCS that accepts connections and never answers: the first upload
  // occupies the only worker until the HTTP deadline (2 s, once per attempt).
  boost::asio::ip::tcp::acceptor black_hole(m_ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  black_hole.listen();
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(black_hole.local_endpoint().port());
  TieredOptions options = without_leases();
  options.upload_queue = 1;
  options.upload_workers = 1;
  open_replica("a", options, endpoint, 2s);
  // One upload runs, one waits in the queue, the third is remembered for a
  // retry; the failed ones then find the retry list full, however the worker
  // interleaves with the commits. Every blob is committed to disk.
  std::vector<core::Sha256> keys;
  for (char seed : {'1', '2', '3'}) {
    const std::string data = filler(1000, seed);
    auto writer = drive(m_ioc, m_store->create(expect_sha256(data)));
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE(drive(m_ioc, (*writer)->append(as_bytes(data))));
    auto key = drive(m_ioc, (*writer)->commit());
    ASSERT_TRUE(key.has_value());
    keys.push_back(*key);
  }
  wait_idle();
  // None was uploaded, and at most one (upload_queue) waits for a retry.
  const auto stats = m_tiered->stats();
  EXPECT_EQ(stats.uploads, 0u);
  EXPECT_GE(stats.uploads_dropped, 2u);
  for (const auto& key : keys) EXPECT_TRUE(is_stored(key));
}

// Two replicas missing the same blob: the second waits for the first's
// upload and is told the blob is available instead of filling it too.
TEST_F(TieredBlobStoreTest, SecondReplicaWaitsForTheLeaseHolder) {
  open_replica("b", TieredOptions{});
  auto& second = *m_tiered;
  auto second_store = std::move(m_store);
  open_replica("a", TieredOptions{});

  const std::string data = filler(400'000, 'l');
  const ExpectedContent expected = expect_sha256(data);
  auto created = drive(m_ioc, m_store->create(expected));
  ASSERT_TRUE(created.has_value()) << created.error().message();
  auto writer = std::move(*created);

  std::optional<result<BlobWriterPtr>> waited;
  auto wait_task = [&]() -> boost::asio::awaitable<void> { waited.emplace(co_await second_store->create(expected)); };
  boost::asio::co_spawn(m_ioc, wait_task(), boost::asio::detached);
  // Let the second replica find the lease before the first fills.
  auto found_lease = [&]() -> boost::asio::awaitable<bool> {
    while (second.stats().lease_waits == 0) {
      boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, 10ms);
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
    co_return true;
  };
  ASSERT_TRUE(drive(m_ioc, found_lease()));
  ASSERT_FALSE(waited.has_value());

  ASSERT_TRUE(drive(m_ioc, writer->append(as_bytes(data))));
  ASSERT_TRUE(drive(m_ioc, writer->commit()));
  writer.reset();
  wait_idle();  // runs the io_context until the second create() is done too
  ASSERT_TRUE(waited.has_value());
  ASSERT_FALSE(waited->has_value());
  EXPECT_EQ(waited->error(), make_error_code(errc::blob_available));
  EXPECT_EQ(second.stats().lease_waits, 1u);
  EXPECT_EQ(m_tiered->stats().uploads, 1u);
  second_store.reset();
}

// A holder that died leaves a lease that expires; the next replica takes
// it over and fills.
TEST_F(TieredBlobStoreTest, ExpiredLeaseIsTakenOver) {
  open_replica("a", TieredOptions{});
  const std::string data = filler(2000, 'd');
  const auto key = sha256_of(data);
  auto raw = bucket();
  const std::int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const std::string dead = nlohmann::json{{"holder", "dead"}, {"expires_unix_ms", now_ms + 600}}.dump();
  auto placed = test::run(m_ioc, raw->write_object("leases/" + key.hex(), dead, std::int64_t{0}));
  ASSERT_TRUE(placed && *placed);

  auto created = drive(m_ioc, m_store->create(expect_sha256(data)));
  ASSERT_TRUE(created.has_value()) << created.error().message();
  EXPECT_EQ(m_tiered->stats().lease_waits, 1u);
  auto lease = drive(m_ioc, raw->read_object("leases/" + key.hex()));
  ASSERT_TRUE(lease && *lease);
  EXPECT_EQ((*lease)->data.find("dead"), std::string::npos);  // ours now
  auto writer = std::move(*created);
  writer.reset();  // given up: the lease is released
  wait_idle();
  auto after = test::run(m_ioc, raw->read_object("leases/" + key.hex()));
  ASSERT_TRUE(after.has_value());
  EXPECT_FALSE(after->has_value());
}

}  // namespace
}  // namespace hubcache::storage::test_contract
