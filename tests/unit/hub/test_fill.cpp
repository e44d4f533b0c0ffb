// FillEngine against a scripted upstream and a disk store whose commit the
// test holds: what a fill's clients see while the blob is being made durable.
#include "hub/fill.hpp"
#include "hub/hub_client.hpp"

#include "../upstream/test_server.hpp"
#include "test_support.hpp"

#include <hubcache/storage/disk_blob_store.hpp>
#include <hubcache/util/hash.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace hubcache::hub {
namespace {

using namespace std::chrono_literals;

// A slow fsync, or a slow disk: commit() waits until the test opens the gate,
// then commits, or fails as a full disk would.
struct Gate {
  std::atomic<bool> open{false};
  std::atomic<bool> fail{false};
  std::atomic<int> commits_waiting{0};
  // create() answers blob_available this many times, as the tiered store does
  // when another replica stored the blob while this one waited for its lease.
  std::atomic<int> stored_elsewhere{0};
};

class GatedWriter final : public storage::BlobWriter {
 public:
  GatedWriter(storage::BlobWriterPtr inner, Gate& gate) : m_inner(std::move(inner)), m_gate(gate) {}
  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data) override {
    return m_inner->write_at(offset, data);
  }
  net::awaitable<result<void>> append(std::span<const std::byte> data) override { return m_inner->append(data); }
  std::uint64_t written() const noexcept override { return m_inner->written(); }
  result<storage::BlobReaderPtr> open_reader() override { return m_inner->open_reader(); }
  net::awaitable<result<core::Sha256>> verify() override { return m_inner->verify(); }
  net::awaitable<result<core::Sha256>> commit() override {
    ++m_gate.commits_waiting;
    net::steady_timer timer(co_await net::this_coro::executor);
    while (!m_gate.open.load()) {
      timer.expires_after(2ms);
      co_await timer.async_wait(net::use_awaitable);
    }
    --m_gate.commits_waiting;
    if (m_gate.fail.load()) co_return make_error_code(errc::insufficient_storage);
    co_return co_await m_inner->commit();
  }

 private:
  storage::BlobWriterPtr m_inner;
  Gate& m_gate;
};

class GatedStore final : public storage::BlobStore {
 public:
  GatedStore(storage::BlobStore& inner, Gate& gate) : m_inner(inner), m_gate(gate) {}
  net::awaitable<result<std::optional<storage::BlobReaderPtr>>> open(const core::Sha256& key) override {
    return m_inner.open(key);
  }
  net::awaitable<result<storage::BlobWriterPtr>> create(const storage::ExpectedContent& expected) override {
    if (m_gate.stored_elsewhere.load() > 0) {
      --m_gate.stored_elsewhere;
      co_return make_error_code(errc::blob_available);
    }
    auto writer = co_await m_inner.create(expected);
    if (!writer) co_return writer.error();
    co_return storage::BlobWriterPtr(std::make_unique<GatedWriter>(std::move(*writer), m_gate));
  }
  storage::StoreUsage usage() const override { return m_inner.usage(); }

 private:
  storage::BlobStore& m_inner;
  Gate& m_gate;
};

std::string content_of(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>('a' + (i * 13 + i / 251) % 26);
  return out;
}

class FillEngineTest : public ::testing::Test {
 protected:
  explicit FillEngineTest(std::size_t size = 300'000)
      : m_content(content_of(size)),
        m_server([this](const test::http::request<test::http::string_body>& request) {
          return m_script ? m_script(request) : test::Reply{test::http_response(200, m_content)};
        }),
        m_disk(storage::make_disk_blob_store({m_dir.path() / "blobs", 64 << 20}, m_pool)),
        m_store(*m_disk, m_gate) {}

  // An LFS file served by the CDN at the test server, whole (one chunk).
  FillSource source() const {
    util::Sha256Hasher hasher;
    hasher.update(m_content);
    FileMeta meta;
    meta.commit = std::string(40, 'c');
    meta.etag = hasher.finish().hex();
    meta.lfs = true;
    meta.size = m_content.size();
    meta.content_url = *upstream::Url::parse(m_server.url("/blob"));
    meta.content_on_hub = false;
    return FillSource{meta, "", {}, {}, {}};
  }

  // Until `task` is done: a held commit keeps the context busy meanwhile.
  template <class T>
  T run(net::awaitable<T> task) {
    return test::run(m_ioc, std::move(task), std::chrono::seconds(30), false);
  }

  std::string read_all(storage::BlobReader& reader) {
    std::string out;
    std::vector<std::byte> buf(64 << 10);
    while (true) {
      auto n = run(reader.read_at(out.size(), buf));
      if (!n || *n == 0) return out;
      out.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
  }

  // A fill of source() run to its end, then read by a client arriving then;
  // "" when either fails.
  std::string fill_to_end_and_read() {
    auto engine = std::make_shared<FillEngine>(FillOptions{}, m_hub, m_store);
    bool leader = false;
    auto member = engine->join(source(), std::nullopt, leader, m_ioc.get_executor());
    Fill& fill = member.fill();
    auto done = run(fill.wm.wait_beyond(m_content.size(), 5s));
    if (!done) return "";
    auto reader = run(fill.open_reader(m_store, 1000ms));
    return reader ? read_all(**reader) : "";
  }

  // A fill of `src` with `options` (commits not held), from `hub` if given,
  // run to its end; the committed blob must be the file.
  void expect_filled(const FillOptions& options, const FillSource& src, HubClient* hub = nullptr) {
    m_gate.open = true;
    auto engine = std::make_shared<FillEngine>(options, hub != nullptr ? *hub : m_hub, m_store);
    bool leader = false;
    auto member = engine->join(src, std::nullopt, leader, m_ioc.get_executor());
    auto done = run(member.fill().wm.wait_beyond(m_content.size(), 10s));
    ASSERT_TRUE(done.has_value()) << done.error().message();
    EXPECT_TRUE(done->finished);
    auto stored = run(m_store.open(*core::Sha256::from_hex(src.meta.etag)));
    ASSERT_TRUE(stored.has_value() && stored->has_value());
    EXPECT_EQ(read_all(***stored), m_content);
  }

  // A 206 with the bytes `request` asks for (one "bytes=a-b" range); with
  // `stall_after`, only that many of them, then nothing more.
  test::Reply ranged(const test::http::request<test::http::string_body>& request,
                     std::optional<std::size_t> stall_after = std::nullopt) const {
    const auto [first, last] = range_of(request);
    if (last < first) return {test::http_response(400, "")};
    test::Reply reply{test::http_response(206, m_content.substr(first, last - first + 1),
                                          "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) +
                                              "/" + std::to_string(m_content.size()) + "\r\n")};
    if (stall_after) {
      reply.raw.resize(reply.raw.size() - (last - first + 1) + *stall_after);
      reply.stall = true;
    }
    return reply;
  }
  // The first and last byte of a "bytes=a-b" request; {1, 0} for any other.
  static std::pair<std::size_t, std::size_t> range_of(const test::http::request<test::http::string_body>& request) {
    const std::string range(request[test::http::field::range]);
    std::size_t first = 0, last = 0;
    if (std::sscanf(range.c_str(), "bytes=%zu-%zu", &first, &last) != 2) return {1, 0};
    return {first, last};
  }

  const std::string m_content;
  // When set, answers the CDN's requests instead of the whole file (set
  // before the first request; read on the server's thread).
  std::function<test::Reply(const test::http::request<test::http::string_body>&)> m_script;
  test::TempDir m_dir;
  net::thread_pool m_pool{1};  // outlives m_ioc: a fill it destroys posts to the pool
  net::io_context m_ioc;
  test::TestServer m_server;
  std::unique_ptr<storage::BlobStore> m_disk;
  Gate m_gate;
  GatedStore m_store;
  HubClient m_hub{upstream::make_http_client({}), *upstream::Url::parse(m_server.url("/"))};
};

TEST_F(FillEngineTest, LastByteGoesOutOnceVerifiedWithoutWaitingForTheCommit) {
  auto engine = std::make_shared<FillEngine>(FillOptions{}, m_hub, m_store);
  bool leader = false;
  auto member = engine->join(source(), std::nullopt, leader, m_ioc.get_executor());
  ASSERT_TRUE(leader);
  Fill& fill = member.fill();
  const std::uint64_t size = m_content.size();

  // The last byte: before the change that this tests, it waited for the
  // commit, so this wait ran into its timeout.
  auto last = run(fill.wm.wait_beyond(size - 1, 5s));
  ASSERT_TRUE(last.has_value()) << last.error().message();
  EXPECT_EQ(last->available, size);
  EXPECT_FALSE(last->finished);
  EXPECT_EQ(m_gate.commits_waiting.load(), 1) << "the commit is held";

  // A request arriving now is served by this fill, not asked upstream.
  const FileMeta meta = source().meta;
  EXPECT_TRUE(engine->join_if_verified(meta).has_value());
  // A client arriving now reads the whole file from the staging file.
  auto reader = run(fill.open_reader(m_store, 1000ms));
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  EXPECT_EQ(read_all(**reader), m_content);
  auto stored = run(m_store.open(*core::Sha256::from_hex(source().meta.etag)));
  ASSERT_TRUE(stored.has_value());
  EXPECT_FALSE(stored->has_value()) << "nothing is visible before the commit";

  m_gate.open = true;
  auto done = run(fill.wm.wait_beyond(size, 5s));
  ASSERT_TRUE(done.has_value()) << done.error().message();
  EXPECT_TRUE(done->finished);
  stored = run(m_store.open(*core::Sha256::from_hex(source().meta.etag)));
  ASSERT_TRUE(stored.has_value() && stored->has_value()) << "committed";
  EXPECT_EQ(read_all(***stored), m_content);
  EXPECT_FALSE(engine->join_if_verified(meta).has_value()) << "the fill is over";
  // A reader opened now gets the committed blob.
  auto later = run(fill.open_reader(m_store, 1000ms));
  ASSERT_TRUE(later.has_value()) << later.error().message();
  EXPECT_EQ(read_all(**later), m_content);
}

// The index record is made findable before the last byte goes out, so a
// client's next request finds the file; its durable write (fsyncs that may
// wait behind the writeback of the file) comes after the commit, and no
// client waits for it.
TEST_F(FillEngineTest, TheRecordIsFindableBeforeTheLastByteAndWrittenAfterTheCommit) {
  auto engine = std::make_shared<FillEngine>(FillOptions{}, m_hub, m_store);
  FillSource src = source();
  Fill* fill = nullptr;
  std::vector<std::string> seen;
  src.verified = [&](core::Sha256) {
    seen.push_back(fill->wm.state(0).available < m_content.size() ? "verified, last byte held" : "verified, all out");
  };
  Gate* gate = &m_gate;
  src.committed = [&, gate](core::Sha256) -> net::awaitable<void> {
    seen.push_back(gate->commits_waiting.load() == 0 ? "committed" : "commit still held");
    co_return;
  };
  bool leader = false;
  auto member = engine->join(src, std::nullopt, leader, m_ioc.get_executor());
  fill = &member.fill();
  ASSERT_TRUE(run(fill->wm.wait_beyond(m_content.size() - 1, 5s)).has_value());
  EXPECT_EQ(seen, std::vector<std::string>{"verified, last byte held"}) << "the commit is held: no durable record yet";
  m_gate.open = true;
  auto done = run(fill->wm.wait_beyond(m_content.size(), 5s));
  ASSERT_TRUE(done.has_value() && done->finished);
  EXPECT_EQ(seen, (std::vector<std::string>{"verified, last byte held", "committed"}));
}

// What a client streaming the file relies on when the commit fails after the
// blob was verified: every byte stays readable through the reader it has.
TEST_F(FillEngineTest, CommitFailingAfterVerifyLeavesTheBytesReadable) {
  auto engine = std::make_shared<FillEngine>(FillOptions{}, m_hub, m_store);
  bool leader = false;
  auto member = engine->join(source(), std::nullopt, leader, m_ioc.get_executor());
  Fill& fill = member.fill();
  const std::uint64_t size = m_content.size();
  ASSERT_TRUE(run(fill.wm.wait_beyond(size - 1, 5s)).has_value());
  auto reader = run(fill.open_reader(m_store, 1000ms));
  ASSERT_TRUE(reader.has_value()) << reader.error().message();

  m_gate.fail = true;
  m_gate.open = true;
  auto done = run(fill.wm.wait_beyond(size, 5s));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error(), errc::insufficient_storage);
  EXPECT_EQ(fill.wm.state(0).available, size);
  EXPECT_EQ(read_all(**reader), m_content);
  EXPECT_FALSE(engine->join_if_verified(source().meta).has_value()) << "a failed fill is not joined";
  EXPECT_EQ(m_store.usage().blobs, 0u);
  EXPECT_EQ(m_store.usage().reserved, 0u);
}

// Another replica stored the blob while this one waited: its clients read
// the stored blob, and upstream is not asked.
TEST_F(FillEngineTest, ABlobStoredElsewhereIsServedFromTheStore) {
  m_gate.open = true;
  auto writer = run(m_disk->create({m_content.size(), core::Sha256::from_hex(source().meta.etag), std::nullopt}));
  ASSERT_TRUE(writer.has_value());
  ASSERT_TRUE(run((*writer)->append(std::as_bytes(std::span(m_content)))).has_value());
  ASSERT_TRUE(run((*writer)->commit()).has_value());
  m_gate.stored_elsewhere = 1;

  EXPECT_EQ(fill_to_end_and_read(), m_content);
  EXPECT_EQ(m_server.requests(), 0) << "nothing fetched from upstream";
}

// ... but when it cannot be read here after all (GCS failed in between), the
// fill fetches it from upstream instead of failing its clients.
TEST_F(FillEngineTest, ABlobStoredElsewhereButUnreadableHereIsFilledFromUpstream) {
  m_gate.open = true;
  m_gate.stored_elsewhere = 1;
  EXPECT_EQ(fill_to_end_and_read(), m_content);
  EXPECT_EQ(m_server.requests(), 1);
  auto stored = run(m_store.open(*core::Sha256::from_hex(source().meta.etag)));
  ASSERT_TRUE(stored.has_value() && stored->has_value()) << "committed here";
}

// A signed URL that expires mid-fill refuses every worker in flight at
// once: they share one refresh, whatever their number (each used to spend
// one of the fill's 8 re-resolves, and a 9th refusal failed the fill).
TEST_F(FillEngineTest, WorkersRefusedTogetherShareOneFreshUrl) {
  std::atomic<int> refused{0};
  std::atomic<int> served_old{0};
  m_script = [&](const auto& request) {
    if (request.target() == "/fresh") return ranged(request);
    if (served_old++ == 0) return ranged(request);  // the first chunk, before the URL expired
    ++refused;
    return test::Reply{test::http_response(403, "Request has expired")};
  };
  FillOptions options;
  options.chunk_size = 16 << 10;  // 19 chunks
  options.parallelism = 16;
  std::atomic<int> resolves{0};
  FillSource expiring = source();
  expiring.resolve_again = [&]() -> net::awaitable<result<upstream::Url>> {
    ++resolves;
    // The Hub takes a moment: every worker's request is refused meanwhile.
    net::steady_timer slow(co_await net::this_coro::executor, 300ms);
    co_await slow.async_wait(net::use_awaitable);
    co_return *upstream::Url::parse(m_server.url("/fresh"));
  };
  expect_filled(options, expiring);
  EXPECT_GT(refused.load(), 8) << "more workers were refused than the fill may re-resolve";
  EXPECT_EQ(resolves.load(), 1);
}

// The Hub failing to answer a refresh is not the CDN refusing fresh URLs:
// the refresh is tried again (with backoff) and the fill's budget of fresh
// URLs is not spent on it.
TEST_F(FillEngineTest, AHubThatFailsToRefreshIsAskedAgain) {
  std::atomic<int> served_old{0};
  m_script = [&](const auto& request) {
    if (request.target() == "/fresh" || served_old++ == 0) return ranged(request);
    return test::Reply{test::http_response(403, "Request has expired")};
  };
  FillOptions options;
  options.chunk_size = 16 << 10;
  options.parallelism = 8;
  options.chunk_attempts = 10;  // per worker: the 9 failures below may fall on any of them
  options.retry_backoff = 5ms;
  std::atomic<int> asked{0};
  FillSource expiring = source();
  expiring.resolve_again = [&]() -> net::awaitable<result<upstream::Url>> {
    if (++asked <= 9) co_return make_error_code(errc::upstream_unavailable);  // more than the 8 fresh URLs
    co_return *upstream::Url::parse(m_server.url("/fresh"));
  };
  expect_filled(options, expiring);
  EXPECT_EQ(asked.load(), 10);
}

// A closed range near the end of a large file (a reader seeking in it) is
// fetched first like any other, although it lies in the file's last chunk,
// whose last byte waits for the whole blob's verification.
TEST_F(FillEngineTest, ARangeInTheLastChunkIsFetchedFirst) {
  const std::uint64_t size = m_content.size();   // 300,000: 18 chunks of 16 KiB and 5,088 bytes
  const std::uint64_t wanted = size - 5000;      // in that last chunk
  m_script = [&](const auto& request) {
    const std::string range(request[test::http::field::range]);
    std::size_t first = 0;
    // The first chunk (which tells that Range works) and the one holding
    // `wanted` are answered; the CDN stalls on every other.
    if (std::sscanf(range.c_str(), "bytes=%zu-", &first) == 1 && (first == 0 || (first <= wanted && first + (16 << 10) > wanted))) {
      return ranged(request);
    }
    return test::Reply{"", false, /*stall=*/true};
  };
  FillOptions options;
  options.chunk_size = 16 << 10;
  options.parallelism = 2;
  auto engine = std::make_shared<FillEngine>(options, m_hub, m_store);
  bool leader = false;
  auto member = engine->join(source(), wanted, leader, m_ioc.get_executor());
  auto got = run(member.fill().wm.wait_beyond(wanted, 5s, 1000));
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_GE(got->available, wanted + 1000);
  EXPECT_LT(got->available, size) << "the last byte waits for the whole blob";
  auto reader = run(member.fill().open_reader(m_store, 1000ms));
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  std::vector<std::byte> buf(1000);
  auto n = run((*reader)->read_at(wanted, buf));
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, 1000u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), 1000), m_content.substr(wanted, 1000));
}

// A CDN edge that honoured Range for the first request and ignores it for a
// later one (a 200 with the whole file): that request is asked again, not
// the fill failed.
TEST_F(FillEngineTest, ALaterRangeAnsweredWithTheWholeFileIsAskedAgain) {
  // The first request after the one from byte 0 is answered with the whole
  // file, once; then the requests for the same bytes are counted.
  std::mutex mutex;
  std::string refused;
  int asked = 0;
  m_script = [&](const auto& request) {
    const std::string range(request[test::http::field::range]);
    std::lock_guard lock(mutex);
    if (refused.empty() && range.rfind("bytes=0-", 0) != 0) {
      refused = range;
      ++asked;
      return test::Reply{test::http_response(200, m_content)};
    }
    if (range == refused) ++asked;
    return ranged(request);
  };
  FillOptions options;
  options.chunk_size = 16 << 10;
  options.parallelism = 4;
  options.retry_backoff = 10ms;
  expect_filled(options, source());
  std::lock_guard lock(mutex);
  EXPECT_EQ(asked, 2) << "the chunk was asked twice: " << refused;
}

// Workers that start together on equal chunks finish together, and the bytes
// readable from the start advance in leaps of all their chunks at once. The
// first chunks grow instead, one worker's step at a time.
TEST_F(FillEngineTest, TheFirstChunksGrowSoThatWorkersFinishInTurn) {
  std::mutex mutex;
  std::vector<std::pair<std::size_t, std::size_t>> asked;
  m_script = [&](const auto& request) {
    std::lock_guard lock(mutex);
    asked.push_back(range_of(request));
    return ranged(request);
  };
  FillOptions options;
  options.chunk_size = 16 << 10;
  options.parallelism = 4;
  expect_filled(options, source());
  std::lock_guard lock(mutex);
  std::sort(asked.begin(), asked.end());
  ASSERT_EQ(asked.size(), 21u) << "3 growing chunks, 17 of 16 KiB (the last one short), the last byte";
  std::size_t next = 0;
  for (std::size_t i = 0; i < asked.size(); ++i) {
    const auto [first, last] = asked[i];
    EXPECT_EQ(first, next) << "request " << i;
    const std::size_t expected = i < 3 ? (i + 1) * 4096 : i + 2 < asked.size() ? 16384 : i + 1 < asked.size() ? 300'000 - 1 - first : 1;
    EXPECT_EQ(last - first + 1, expected) << "request " << i;
    next = last + 1;
  }
}

class LargeFillTest : public FillEngineTest {
 protected:
  LargeFillTest() : FillEngineTest(4 << 20) {}
};

// When nothing is left to start, an idle worker takes over the back half of
// the running chunk with the most left, and the chunk's own request stops
// there: a stalled connection no longer holds the whole chunk up.
TEST_F(LargeFillTest, AnIdleWorkerTakesOverTheBackOfAStalledChunk) {
  // Chunks of 1 MiB, the first one 512 KiB: [0.5 MiB, 1.5 MiB) is the
  // second worker's first chunk. Its first request sends 3000 bytes (less
  // than a page: they stay unwritten until the request fails) and stalls.
  constexpr std::size_t begin = 512 << 10, sent = 3000;
  std::mutex mutex;
  std::vector<std::pair<std::size_t, std::size_t>> asked;
  bool stalled = false;
  m_script = [&](const auto& request) {
    const auto range = range_of(request);
    std::lock_guard lock(mutex);
    asked.push_back(range);
    if (range.first == begin && !stalled) {
      stalled = true;
      return ranged(request, sent);
    }
    return ranged(request);
  };
  FillOptions options;
  options.chunk_size = 1 << 20;
  options.parallelism = 2;
  upstream::ClientOptions client;
  client.io_timeout = 1000ms;  // ends the stalled request
  HubClient hub{upstream::make_http_client(client), *upstream::Url::parse(m_server.url("/"))};
  expect_filled(options, source(), &hub);

  std::lock_guard lock(mutex);
  std::string shown;
  for (const auto& [first, last] : asked) shown += std::to_string(first) + "-" + std::to_string(last) + " ";
  const auto was_asked = [&](std::size_t first, std::size_t last) {
    return std::find(asked.begin(), asked.end(), std::pair{first, last}) != asked.end();
  };
  // The other worker, out of chunks, took the back half of the stalled
  // chunk, then half of the rest; a quarter (256 KiB, a copy buffer) is not
  // split again.
  EXPECT_TRUE(was_asked(1 << 20, (3 << 19) - 1)) << shown;
  EXPECT_TRUE(was_asked(768 << 10, (1 << 20) - 1)) << shown;
  // The stalled request timed out and was resumed after its bytes, only up
  // to where the pieces split off begin.
  EXPECT_TRUE(was_asked(begin + sent, (768 << 10) - 1)) << shown;
  EXPECT_EQ(asked.size(), 9u) << "6 planned chunks, 2 split off, 1 resumed: " << shown;
}

// A body that stops flowing is dropped after FillOptions::stall_timeout, not
// after the upstream client's read timeout (60 s here, past the test's
// 10 s wait), and resumed after the bytes it brought.
TEST_F(FillEngineTest, ABodyThatGoesQuietIsResumedAfterTheStallTimeout) {
  constexpr std::size_t sent = 5000;
  std::mutex mutex;
  std::vector<std::string> asked;
  m_script = [&](const auto& request) {
    std::lock_guard lock(mutex);
    asked.emplace_back(request[test::http::field::range]);
    if (asked.size() > 1) return ranged(request);
    test::Reply quiet{"HTTP/1.1 200 X\r\nContent-Length: " + std::to_string(m_content.size()) + "\r\n\r\n" +
                      m_content.substr(0, sent)};
    quiet.stall = true;
    return quiet;
  };
  FillOptions options;
  options.stall_timeout = 100ms;
  upstream::ClientOptions client;
  client.io_timeout = 60s;
  HubClient hub{upstream::make_http_client(client), *upstream::Url::parse(m_server.url("/"))};
  expect_filled(options, source(), &hub);
  std::lock_guard lock(mutex);
  EXPECT_EQ(asked, (std::vector<std::string>{"", "bytes=5000-" + std::to_string(m_content.size() - 1)}));
}

// Until the first body byte, the read timeout applies: an upstream hubcache
// may be waiting for its own fill's turn before it sends any.
TEST_F(FillEngineTest, TheFirstBodyByteIsNotHeldToTheStallTimeout) {
  m_script = [&](const auto&) {
    test::Reply slow{"HTTP/1.1 200 X\r\nContent-Length: " + std::to_string(m_content.size()) + "\r\n\r\n"};
    slow.later = m_content;
    slow.later_after = 1s;
    return slow;
  };
  FillOptions options;
  options.stall_timeout = 200ms;
  expect_filled(options, source());
  EXPECT_EQ(m_server.requests(), 1) << "the wait for the first byte was not cut short";
}

TEST_F(FillEngineTest, WrongBytesNeverReleaseTheLastByte) {
  auto engine = std::make_shared<FillEngine>(FillOptions{}, m_hub, m_store);
  FillSource wrong = source();
  wrong.meta.etag = std::string(64, '0');  // a digest the bytes do not have
  bool leader = false;
  auto member = engine->join(wrong, std::nullopt, leader, m_ioc.get_executor());
  m_gate.open = true;
  auto last = run(member.fill().wm.wait_beyond(m_content.size() - 1, 5s));
  ASSERT_FALSE(last.has_value());
  EXPECT_EQ(last.error(), errc::integrity_mismatch);
  EXPECT_EQ(member.fill().wm.state(0).available, m_content.size() - 1) << "every byte but the last went out";
  EXPECT_FALSE(engine->join_if_verified(wrong.meta).has_value()) << "a failed fill is not joined";
  EXPECT_EQ(m_store.usage().blobs, 0u);
}

}  // namespace
}  // namespace hubcache::hub
