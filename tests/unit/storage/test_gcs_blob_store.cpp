// The GCS store against a real GCS JSON API: firebase-tools' storage
// emulator with the compat layer, started by tests/gcs/emulator.mjs once per
// test process. Runs the BlobStore contract plus what only the GCS store
// does: object layout and metadata, create-once, stat/list/remove, endpoint
// and startup options.
//
// Skipped (with the command to fix it) when tests/gcs/node_modules is
// missing; any other failure to start the emulator fails the tests.
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/upstream/http_client.hpp>

#include "blob_store_contract.hpp"
#include "gcs_emulator.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace hubcache::storage::test_contract {
namespace {

using namespace std::chrono_literals;

using test_gcs::GcsEmulator;
using test_gcs::k_bucket;

// Small waits: the emulator is local, and failures should show up fast.
GcsRetryPolicy fast_retry() { return {3, 10ms, 100ms}; }

}  // namespace

struct GcsEnv {
  static std::optional<std::string> skip_reason() { return GcsEmulator::skip_reason(); }

  // A fresh prefix per test in one bucket: tests never see each other's objects.
  explicit GcsEnv(const fs::path& dir) : m_dir(dir) {
    static int counter = 0;
    m_prefix = "test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "/";
  }

  GcsOptions options() const {
    GcsOptions options;
    options.bucket = k_bucket;
    options.prefix = m_prefix;
    options.endpoint = GcsEmulator::endpoint();
    options.credentials = GcsCredentials::none;
    options.staging_dir = staging_dir();
    options.chunk_size = 256 * 1024;  // the smallest chunk: many chunks for small test blobs
    options.retry = fast_retry();
    return options;
  }
  std::unique_ptr<BlobStore> open(boost::asio::io_context& /*ioc: HTTP runs on the caller's*/, boost::asio::thread_pool& pool) {
    return make_gcs_blob_store(options(), pool);
  }
  fs::path staging_dir() const { return m_dir / "gcs-staging"; }

  fs::path m_dir;
  std::string m_prefix;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Gcs, BlobStoreContract, ::testing::Types<GcsEnv>);

namespace {

std::string md5_base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_md5(), nullptr);
  std::string out(4 * ((length + 2) / 3) + 1, '\0');
  out.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest,
                                                      static_cast<int>(length))));
  return out;
}

class GcsBlobStoreTest : public BlobStoreTestBase {
 protected:
  void SetUp() override {
    if (auto why = GcsEnv::skip_reason()) GTEST_SKIP() << *why;
    m_env.emplace(m_dir.path());
    open_store(m_env->options());
  }
  void TearDown() override { m_store.reset(); }

  void open_store(const GcsOptions& options) {
    m_store.reset();
    auto store = make_gcs_blob_store(options, m_pool);
    m_gcs = store.get();
    m_store = std::move(store);
  }

  std::string object_name(const core::Sha256& key) const { return m_env->m_prefix + "blobs/" + key.hex(); }

  // A raw exchange with the emulator, bypassing the store.
  struct Raw {
    unsigned status = 0;
    std::string body;
  };
  Raw raw(boost::beast::http::verb method, const std::string& target, std::string body = {}) {
    auto client = upstream::make_http_client({});
    auto url = upstream::Url::parse(GcsEmulator::endpoint() + target);
    EXPECT_TRUE(url.has_value());
    auto task = [&]() -> boost::asio::awaitable<Raw> {
      upstream::Request request{method, *url, {}, std::move(body)};
      auto response = co_await client->send(std::move(request));
      if (!response) co_return Raw{};
      auto text = co_await (*response)->read_all(64 << 20);
      co_return Raw{(*response)->status(), text ? *text : std::string()};
    };
    return test::run(m_ioc, task());
  }
  nlohmann::json object_resource(const std::string& name) {
    const Raw got = raw(boost::beast::http::verb::get, "/storage/v1/b/" + std::string(k_bucket) + "/o/" + encode(name));
    EXPECT_EQ(got.status, 200u) << got.body;
    return nlohmann::json::parse(got.body, nullptr, false);
  }
  Raw upload_raw(const std::string& name, std::string data) {
    return raw(boost::beast::http::verb::post,
               "/upload/storage/v1/b/" + std::string(k_bucket) + "/o?uploadType=media&name=" + encode(name),
               std::move(data));
  }
  static std::string encode(const std::string& name) {
    std::string out;
    for (unsigned char c : name) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
        out.push_back(static_cast<char>(c));
      } else {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", c);
        out += buf;
      }
    }
    return out;
  }

  std::optional<GcsEnv> m_env;
  GcsBlobStore* m_gcs = nullptr;  // m_store, with the GCS-only operations
};

TEST_F(GcsBlobStoreTest, ObjectLayoutAndMetadata) {
  const std::string data = filler(1000, 'm');
  const auto key = put(data);
  const auto object = object_resource(object_name(key));
  ASSERT_TRUE(object.is_object());
  EXPECT_EQ(object["name"], object_name(key));
  EXPECT_EQ(object["size"], "1000");
  EXPECT_EQ(object["contentType"], "application/octet-stream");
  EXPECT_EQ(object["md5Hash"], md5_base64(data));
  EXPECT_EQ(object["metadata"]["hubcache-sha256"], key.hex());
  EXPECT_EQ(object["metadata"]["hubcache-size"], "1000");
  EXPECT_EQ(object["metadata"]["hubcache-format"], "1");
}

// Both upload paths (multipart for small blobs, resumable for large ones)
// are conditional: an object that exists is never overwritten, and the
// commit still succeeds (the name is the content's digest).
TEST_F(GcsBlobStoreTest, NeverOverwritesAnExistingObject) {
  for (std::size_t size : {100u, 600'000u}) {
    const std::string data = filler(size, 'o');
    const auto key = sha256_of(data);
    ASSERT_EQ(upload_raw(object_name(key), "placed by someone else").status, 200u);
    const auto before = object_resource(object_name(key));

    EXPECT_EQ(put(data), key);
    const auto after = object_resource(object_name(key));
    EXPECT_EQ(after["generation"], before["generation"]) << size;
    EXPECT_EQ(after["size"], before["size"]) << size;
    EXPECT_EQ(m_store->usage().blobs, 0u);  // this process created nothing
  }
}

TEST_F(GcsBlobStoreTest, StatListRemoveAndUsageScan) {
  const std::vector<std::string> contents = {filler(10, 'a'), filler(2000, 'b'), filler(300'000, 'c')};
  std::vector<core::Sha256> keys;
  for (const auto& data : contents) keys.push_back(put(data));
  // Not blobs: ignored by list and the usage scan.
  ASSERT_EQ(upload_raw(m_env->m_prefix + "blobs/not-a-digest", "x").status, 200u);
  ASSERT_EQ(upload_raw(m_env->m_prefix + "blobs/" + std::string(64, 'A'), "x").status, 200u);
  ASSERT_EQ(upload_raw(m_env->m_prefix + "other", "x").status, 200u);

  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    auto page = test::run(m_ioc, m_gcs->list(token, 2));
    ASSERT_TRUE(page.has_value()) << page.error().message();
    for (const auto& blob : page->blobs) listed.push_back(blob.key.hex());
    token = page->next_page_token;
    ++pages;
  } while (!token.empty());
  std::vector<std::string> expected;
  for (const auto& key : keys) expected.push_back(key.hex());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(listed, expected);
  EXPECT_GE(pages, 2);

  auto stat = test::run(m_ioc, m_gcs->stat(keys[1]));
  ASSERT_TRUE(stat.has_value() && stat->has_value());
  EXPECT_EQ((*stat)->size, 2000u);
  EXPECT_GT((*stat)->generation, 0);

  // A fresh store knows nothing until it scans.
  open_store(m_env->options());
  EXPECT_EQ(m_store->usage().blobs, 0u);
  auto usage = test::run(m_ioc, m_gcs->scan_usage());
  ASSERT_TRUE(usage.has_value()) << usage.error().message();
  EXPECT_EQ(usage->blobs, 3u);
  EXPECT_EQ(usage->bytes, 302'010u);
  EXPECT_EQ(usage->limit, 0u);

  auto removed = test::run(m_ioc, m_gcs->remove(keys[0]));
  ASSERT_TRUE(removed.has_value());
  EXPECT_TRUE(*removed);
  auto again = test::run(m_ioc, m_gcs->remove(keys[0]));
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(*again);
  EXPECT_FALSE(is_stored(keys[0]));
  auto gone = test::run(m_ioc, m_gcs->stat(keys[0]));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(m_store->usage().blobs, 2u);
  EXPECT_EQ(m_store->usage().bytes, 302'000u);
}

// The variable the Google client libraries honour; as "host:port" it needs
// no scheme, and it implies no credentials.
TEST_F(GcsBlobStoreTest, EndpointFromStorageEmulatorHost) {
  const std::string endpoint = GcsEmulator::endpoint();
  ASSERT_EQ(::setenv("STORAGE_EMULATOR_HOST", endpoint.substr(endpoint.find("://") + 3).c_str(), 1), 0);
  GcsOptions options = m_env->options();
  options.endpoint.clear();
  options.credentials = GcsCredentials::automatic;
  try {
    open_store(options);
  } catch (...) {
    ::unsetenv("STORAGE_EMULATOR_HOST");
    throw;
  }
  ::unsetenv("STORAGE_EMULATOR_HOST");
  const std::string data = "via STORAGE_EMULATOR_HOST";
  const auto key = put(data);
  auto reader = open_blob(key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(read_all(*reader), data);
}

// Needs no emulator: startup checks only.
TEST(GcsBlobStoreStartup, RejectsBadOptionsAndSharedStaging) {
  test::TempDir dir;
  boost::asio::io_context ioc;
  boost::asio::thread_pool pool{1};
  auto valid = [&] {
    GcsOptions options;
    options.bucket = "b";
    options.endpoint = "http://127.0.0.1:1";
    options.credentials = GcsCredentials::none;
    options.staging_dir = dir.path() / "staging";
    return options;
  };
  auto make = [&](const GcsOptions& options) { return make_gcs_blob_store(options, pool); };

  auto options = valid();
  options.chunk_size = 1000 * 1000;
  EXPECT_THROW(make(options), std::invalid_argument);
  options = valid();
  options.bucket.clear();
  EXPECT_THROW(make(options), std::invalid_argument);
  options = valid();
  options.staging_dir.clear();
  EXPECT_THROW(make(options), std::invalid_argument);
  options = valid();
  options.endpoint = "ftp://example.com";
  EXPECT_THROW(make(options), std::invalid_argument);
  options = valid();
  options.credentials = GcsCredentials::service_account_key;
  EXPECT_THROW(make(options), std::invalid_argument);
  options.credentials_file = dir.path() / "missing.json";
  EXPECT_THROW(make(options), std::invalid_argument);

  // Leftovers of a previous run go; a second store may not share the directory.
  fs::create_directories(dir.path() / "staging");
  std::ofstream(dir.path() / "staging" / "leftover") << "x";
  auto store = make(valid());
  EXPECT_FALSE(fs::exists(dir.path() / "staging" / "leftover"));
  EXPECT_THROW(make(valid()), std::runtime_error);
  store.reset();
  EXPECT_NO_THROW(make(valid()));
}

}  // namespace
}  // namespace hubcache::storage::test_contract
