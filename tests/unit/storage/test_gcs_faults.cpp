// The GCS store against a scripted fake GCS (127.0.0.1, port 0), for what
// the emulator cannot be made to do: 5xx and 429 answers, a resumable
// session that kept only part of a chunk, a connection dropped mid-body, an
// upload stored with the wrong bytes.
#include <hubcache/storage/gcs_blob_store.hpp>

#include "../upstream/test_server.hpp"
#include "blob_store_contract.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace hubcache::storage::test_contract {
namespace {

using namespace std::chrono_literals;
using test::http_response;
using test::Reply;
using test::TestServer;
using Request = boost::beast::http::request<boost::beast::http::string_body>;

std::string md5_base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_md5(), nullptr);
  std::string out(4 * ((length + 2) / 3) + 1, '\0');
  out.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest,
                                                      static_cast<int>(length))));
  return out;
}

std::string object_json(const std::string& name, std::uint64_t size, const std::string& md5, int generation = 1) {
  return nlohmann::json{{"name", name}, {"size", std::to_string(size)}, {"generation", std::to_string(generation)},
                        {"md5Hash", md5}}
      .dump();
}

std::string header(const Request& request, std::string_view name) {
  const auto it = request.find(name);
  return it == request.end() ? std::string() : std::string(it->value());
}

std::string path_of(const Request& request) {
  const std::string target(request.target());
  return target.substr(0, target.find('?'));
}

class GcsFaultTest : public BlobStoreTestBase {
 protected:
  static constexpr std::uint64_t k_chunk = 256 * 1024;

  // Starts the fake with `handler` and a store pointed at it.
  void start(test::Handler handler) {
    m_server = std::make_unique<TestServer>(std::move(handler));
    GcsOptions options;
    options.bucket = "bkt";
    options.endpoint = m_server->url("");
    options.credentials = GcsCredentials::none;
    options.staging_dir = m_dir.path() / "staging";
    options.chunk_size = k_chunk;
    options.retry = {3, 1ms, 5ms};
    m_store = make_gcs_blob_store(options, m_pool);
  }
  void TearDown() override { m_store.reset(); }

  static std::string object_path(const core::Sha256& key) { return "/storage/v1/b/bkt/o/blobs%2F" + key.hex(); }

  std::unique_ptr<TestServer> m_server;  // declared after m_store: stops after the store is gone
  std::mutex m_mutex;                    // guards what the handlers record
};

TEST_F(GcsFaultTest, RetriesServerErrorsAndTooManyRequests) {
  const auto key = sha256_of("hello");
  std::atomic<int> calls{0};
  start([&](const Request&) {
    switch (++calls) {
      case 1: return Reply{http_response(503, "")};
      case 2: return Reply{http_response(429, "")};
      default: return Reply{http_response(200, object_json("blobs/" + key.hex(), 5, ""))};
    }
  });
  auto reader = open_blob(key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->size(), 5u);
  EXPECT_EQ(m_server->requests(), 3);
}

TEST_F(GcsFaultTest, GivesUpAfterMaxAttempts) {
  start([](const Request&) { return Reply{http_response(500, R"({"error":{"code":500,"message":"backend"}})")}; });
  auto reader = test::run(m_ioc, m_store->open(sha256_of("x")));
  ASSERT_FALSE(reader.has_value());
  EXPECT_EQ(reader.error(), errc::storage_io);
  EXPECT_EQ(m_server->requests(), 3);
}

TEST_F(GcsFaultTest, ClientErrorsAreNotRetriedAndNotFoundIsAbsence) {
  std::atomic<unsigned> status{403};
  start([&](const Request&) { return Reply{http_response(status, R"({"error":{"code":403,"message":"denied"}})")}; });
  auto denied = test::run(m_ioc, m_store->open(sha256_of("x")));
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error(), errc::storage_io);
  EXPECT_EQ(m_server->requests(), 1);

  status = 404;
  auto absent = test::run(m_ioc, m_store->open(sha256_of("x")));
  ASSERT_TRUE(absent.has_value());
  EXPECT_FALSE(absent->has_value());
  EXPECT_EQ(m_server->requests(), 2);
}

// A chunk fails after the session kept part of it: the store asks the
// session what it has and goes on from there, not from its own boundary.
TEST_F(GcsFaultTest, ResumableUploadResumesFromWhatTheSessionKept) {
  const std::string data = filler(600'000, 'r');
  const auto key = sha256_of(data);
  std::string received;
  std::vector<std::string> ranges;
  bool failed_once = false;
  start([&](const Request& request) {
    std::lock_guard lock(m_mutex);
    const std::string path = path_of(request);
    if (request.method() == boost::beast::http::verb::get) return Reply{http_response(404, "")};
    if (request.method() == boost::beast::http::verb::post) {
      EXPECT_NE(std::string(request.target()).find("uploadType=resumable"), std::string::npos);
      EXPECT_NE(std::string(request.target()).find("ifGenerationMatch=0"), std::string::npos);
      EXPECT_EQ(header(request, "X-Upload-Content-Length"), "600000");
      const auto metadata = nlohmann::json::parse(request.body());
      EXPECT_EQ(metadata["name"], "blobs/" + key.hex());
      EXPECT_EQ(metadata["md5Hash"], md5_base64(data));
      return Reply{http_response(200, "", "Location: " + m_server->url("/session/1?upload_id=x") + "\r\n")};
    }
    EXPECT_EQ(path, "/session/1");
    const std::string range = header(request, "Content-Range");
    ranges.push_back(range);
    if (range.rfind("bytes */", 0) != 0) {
      const std::uint64_t first = std::stoull(range.substr(6));
      EXPECT_EQ(first, received.size());
      if (first == k_chunk && !failed_once) {
        failed_once = true;
        received += request.body().substr(0, 100'000);  // kept part of the chunk, then failed
        return Reply{http_response(503, "")};
      }
      received += request.body();
    }
    if (received.size() == data.size()) {
      return Reply{http_response(200, object_json("blobs/" + key.hex(), received.size(), md5_base64(received)))};
    }
    return Reply{http_response(308, "", "Range: bytes=0-" + std::to_string(received.size() - 1) + "\r\n")};
  });

  EXPECT_EQ(put(data), key);
  std::lock_guard lock(m_mutex);
  EXPECT_TRUE(received == data);
  const std::vector<std::string> expected = {"bytes 0-262143/600000", "bytes 262144-524287/600000",
                                             "bytes */600000", "bytes 362144-599999/600000"};
  EXPECT_EQ(ranges, expected);
  EXPECT_EQ(m_store->usage().blobs, 1u);
}

// GCS verifies md5Hash; an emulator or a broken proxy may not. The store
// checks what GCS says it stored and deletes exactly that generation.
TEST_F(GcsFaultTest, UploadStoredWithOtherBytesIsDeletedAndFails) {
  const std::string data = "small blob";
  const auto key = sha256_of(data);
  std::string multipart_type;
  std::string multipart_body;
  std::string deleted;
  start([&](const Request& request) {
    std::lock_guard lock(m_mutex);
    if (request.method() == boost::beast::http::verb::post) {
      multipart_type = header(request, "Content-Type");
      multipart_body = request.body();
      return Reply{http_response(200, object_json("blobs/" + key.hex(), data.size(), md5_base64("other"), 7))};
    }
    deleted = std::string(request.target());
    return Reply{http_response(204, "")};
  });

  auto result = write_blob(data, expect_sha256(data));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), errc::integrity_mismatch);
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(deleted, object_path(key) + "?ifGenerationMatch=7");
  // One multipart request: the JSON resource, then the bytes.
  EXPECT_EQ(multipart_type.rfind("multipart/related; boundary=", 0), 0u) << multipart_type;
  EXPECT_NE(multipart_body.find("\"hubcache-sha256\":\"" + key.hex() + "\""), std::string::npos);
  EXPECT_NE(multipart_body.find("\r\n\r\nsmall blob\r\n--"), std::string::npos);
  EXPECT_EQ(m_store->usage().blobs, 0u);
}

// A blob in memory, as the disk tier's reader would hand it to upload().
// upload() (the tiered store's path, straight from the disk tier) checks
// what GCS stored against the MD5 of the bytes it read, like commit().
TEST_F(GcsFaultTest, UploadFromAReaderIsVerified) {
  const std::string data = "verified blob";
  const auto key = sha256_of(data);
  std::string stored_md5 = md5_base64("other");
  std::string deleted;
  start([&](const Request& request) {
    std::lock_guard lock(m_mutex);
    if (request.method() == boost::beast::http::verb::post) {
      return Reply{http_response(200, object_json("blobs/" + key.hex(), data.size(), stored_md5, 9))};
    }
    deleted = std::string(request.target());
    return Reply{http_response(204, "")};
  });
  auto& gcs = dynamic_cast<GcsBlobStore&>(*m_store);
  StringReader wrong(data);
  auto failed = test::run(m_ioc, gcs.upload(key, wrong));
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error(), errc::integrity_mismatch);
  {
    std::lock_guard lock(m_mutex);
    EXPECT_EQ(deleted, object_path(key) + "?ifGenerationMatch=9");
    stored_md5 = md5_base64(data);
    deleted.clear();
  }
  StringReader right(data);
  auto uploaded = test::run(m_ioc, gcs.upload(key, right));
  EXPECT_TRUE(uploaded.has_value());
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(deleted, "");
  EXPECT_EQ(m_store->usage().blobs, 1u);
}

// Bytes that are not their name (a disk that rotted after the blob was
// verified): nothing is sent that would make an object of them, in one
// request or resumable.
TEST_F(GcsFaultTest, UploadOfBytesThatAreNotTheirNameStoresNothing) {
  int sends = 0;
  start([&](const Request& request) {
    std::lock_guard lock(m_mutex);
    if (request.method() == boost::beast::http::verb::get) return Reply{http_response(404, "")};
    if (request.method() == boost::beast::http::verb::post && std::string(request.target()).find("uploadType=resumable") != std::string::npos) {
      return Reply{http_response(200, "", "Location: " + m_server->url("/upload/session/1") + "\r\n")};
    }
    ++sends;  // a multipart upload, or a chunk of the session
    return Reply{http_response(308, "", "Range: bytes=0-" + std::to_string(k_chunk - 1) + "\r\n")};
  });
  auto& gcs = dynamic_cast<GcsBlobStore&>(*m_store);
  for (const std::size_t size : {std::size_t{1000}, std::size_t{k_chunk + 1000}}) {
    const std::string data = filler(size, 'r');
    std::string rotted = data;
    rotted[size / 2] ^= 1;
    StringReader source(rotted);
    auto failed = test::run(m_ioc, gcs.upload(sha256_of(data), source));
    ASSERT_FALSE(failed.has_value()) << size;
    EXPECT_EQ(failed.error(), errc::integrity_mismatch) << size;
  }
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(sends, 1) << "only the resumable upload's first chunk went out; never a last one";
}

// The connection drops after part of the body: the reader asks again from
// where it got to.
TEST_F(GcsFaultTest, ReaderResumesAfterADroppedConnection) {
  const std::string data = filler(10'000, 'd');
  const auto key = sha256_of(data);
  std::vector<std::string> ranges;
  start([&](const Request& request) {
    std::lock_guard lock(m_mutex);
    if (std::string(request.target()).find("alt=media") == std::string::npos) {
      return Reply{http_response(200, object_json("blobs/" + key.hex(), data.size(), md5_base64(data)))};
    }
    const std::string range = header(request, "Range");
    ranges.push_back(range);
    const std::uint64_t first = std::stoull(range.substr(6));
    const std::string head = "HTTP/1.1 206 Partial Content\r\nContent-Length: " + std::to_string(data.size() - first) +
                             "\r\nContent-Range: bytes " + std::to_string(first) + "-" +
                             std::to_string(data.size() - 1) + "/" + std::to_string(data.size()) + "\r\n\r\n";
    if (ranges.size() == 1) return Reply{head + data.substr(0, 4000), /*close=*/true};
    return Reply{head + data.substr(first)};
  });

  auto reader = open_blob(key);
  ASSERT_TRUE(reader);
  EXPECT_EQ(read_all(*reader), data);
  std::lock_guard lock(m_mutex);
  const std::vector<std::string> expected = {"bytes=0-", "bytes=4000-"};
  EXPECT_EQ(ranges, expected);
}

}  // namespace
}  // namespace hubcache::storage::test_contract
