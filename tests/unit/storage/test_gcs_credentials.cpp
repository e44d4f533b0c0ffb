// GCS credentials against in-process fakes on 127.0.0.1: a metadata server
// and an OAuth token endpoint that verifies the RS256 signature of the JWT
// with the public half of a key generated here, so a wrongly signed or
// wrongly addressed assertion fails the test. Then the store end to end:
// the bearer token reaches GCS, a 401 fetches a new one, and no token is
// ever logged.
#include <hubcache/storage/gcs_blob_store.hpp>
#include <hubcache/storage/gcs_credentials.hpp>

#include "../upstream/test_pki.hpp"
#include "../upstream/test_server.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using test::http_response;
using test::Reply;
using test::TestServer;
using Request = boost::beast::http::request<boost::beast::http::string_body>;
using KeyPtr = test::pki_detail::KeyPtr;

constexpr const char* k_token_path = "/computeMetadata/v1/instance/service-accounts/default/token";
constexpr const char* k_email = "cache@project.iam.gserviceaccount.com";

KeyPtr make_rsa_key() {
  // EVP_RSA_gen is a macro with a C cast; this is what it expands to.
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048)));
  if (!key) throw std::runtime_error("RSA keygen failed");
  return key;
}

std::string header(const Request& request, std::string_view name) {
  const auto it = request.find(name);
  return it == request.end() ? std::string() : std::string(it->value());
}

std::string token_answer(const std::string& token, int expires_in) {
  return json{{"access_token", token}, {"expires_in", expires_in}, {"token_type", "Bearer"}}.dump();
}

// JWT parts are base64url without padding.
std::optional<std::string> base64url_decode(std::string_view in) {
  std::string b64(in);
  for (auto& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
  const std::size_t padding = (4 - b64.size() % 4) % 4;
  b64.append(padding, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - padding);  // DecodeBlock counts the padding as zero bytes
  return out;
}

// What the fake token endpoint checked; a non-empty `error` is the reason it
// refused the assertion.
struct JwtCheck {
  std::string error;
  json header;
  json claims;
};

// Verifies an RS256 JWT the way Google's token endpoint does: signature with
// the service account's public key, then audience, issuer, scope and times.
JwtCheck verify_jwt(const std::string& jwt, EVP_PKEY* public_key, const std::string& audience) {
  JwtCheck check;
  const auto dot1 = jwt.find('.');
  const auto dot2 = jwt.find('.', dot1 + 1);
  if (dot1 == std::string::npos || dot2 == std::string::npos) return {"not three parts", {}, {}};
  const auto head = base64url_decode(std::string_view(jwt).substr(0, dot1));
  const auto body = base64url_decode(std::string_view(jwt).substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = base64url_decode(std::string_view(jwt).substr(dot2 + 1));
  if (!head || !body || !signature) return {"bad base64url", {}, {}};
  check.header = json::parse(*head, nullptr, false);
  check.claims = json::parse(*body, nullptr, false);

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  const std::string signed_part = jwt.substr(0, dot2);
  const bool valid = EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, public_key) == 1 &&
                     EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()),
                                      signature->size(), reinterpret_cast<const unsigned char*>(signed_part.data()),
                                      signed_part.size()) == 1;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  if (!valid) {
    check.error = "bad signature";
  } else if (check.header.value("alg", "") != "RS256" || check.header.value("typ", "") != "JWT") {
    check.error = "bad header";
  } else if (check.claims.value("aud", "") != audience || check.claims.value("iss", "") != k_email ||
             check.claims.value("scope", "") != k_gcs_read_write_scope) {
    check.error = "bad claims";
  } else if (std::abs(check.claims.value("iat", std::int64_t{0}) - now) > 60 ||
             check.claims.value("exp", std::int64_t{0}) - check.claims.value("iat", std::int64_t{0}) != 3600) {
    check.error = "bad times";
  }
  return check;
}

// The form field `name` of an application/x-www-form-urlencoded body (the
// values here need no decoding).
std::string form_field(const std::string& body, const std::string& name) {
  const std::string key = name + "=";
  for (std::size_t pos = 0; pos < body.size();) {
    const auto end = std::min(body.find('&', pos), body.size());
    if (body.compare(pos, key.size(), key) == 0) return body.substr(pos + key.size(), end - pos - key.size());
    pos = end + 1;
  }
  return {};
}

class GcsCredentialsTest : public ::testing::Test {
 protected:
  // One key for the whole suite: RSA generation takes a while.
  static EVP_PKEY* key() {
    static const KeyPtr k = make_rsa_key();
    return k.get();
  }
  static std::string key_json(const std::string& token_uri, EVP_PKEY* pkey = key()) {
    return json{{"type", "service_account"}, {"project_id", "p"}, {"private_key_id", "kid-1"},
                {"private_key", test::pki_detail::key_pem(pkey)}, {"client_email", k_email},
                {"token_uri", token_uri}}
        .dump();
  }

  std::shared_ptr<upstream::HttpClient> client() { return upstream::make_http_client({}); }
  result<std::string> token(TokenSource& source) { return test::run(m_ioc, source.token()); }

  // A fake token endpoint at /token that checks JWTs against `verify_with`.
  test::Handler token_endpoint(EVP_PKEY* verify_with) {
    return [this, verify_with](const Request& request) {
      std::lock_guard lock(m_mutex);
      const std::string audience = m_server->url("/token");
      if (request.method() != boost::beast::http::verb::post || request.target() != "/token" ||
          header(request, "Content-Type") != "application/x-www-form-urlencoded" ||
          form_field(request.body(), "grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return Reply{http_response(400, R"({"error":"invalid_request"})")};
      }
      m_last_check = verify_jwt(form_field(request.body(), "assertion"), verify_with, audience);
      if (!m_last_check.error.empty()) return Reply{http_response(400, R"({"error":"invalid_grant"})")};
      return Reply{http_response(200, token_answer("sa-token-" + std::to_string(++m_issued), 3600))};
    };
  }

  // A fake metadata server issuing "meta-token-N" valid for m_expires_in s.
  test::Handler metadata_server() {
    return [this](const Request& request) {
      std::lock_guard lock(m_mutex);
      if (request.target() != k_token_path || header(request, "Metadata-Flavor") != "Google") {
        return Reply{http_response(403, "missing Metadata-Flavor")};
      }
      if (m_metadata_fails) return Reply{http_response(500, "")};
      return Reply{http_response(200, token_answer("meta-token-" + std::to_string(++m_issued), m_expires_in),
                                 m_send_flavor ? "Metadata-Flavor: Google\r\n" : "")};
    };
  }

  boost::asio::io_context m_ioc;
  std::mutex m_mutex;  // guards the fields below, written by the fakes
  int m_issued = 0;
  int m_expires_in = 3600;
  bool m_send_flavor = true;
  bool m_metadata_fails = false;
  JwtCheck m_last_check;
  std::unique_ptr<TestServer> m_server;
};

TEST_F(GcsCredentialsTest, MetadataServerTokenIsCached) {
  m_server = std::make_unique<TestServer>(metadata_server());
  auto source = make_metadata_token_source(client(), m_server->url(""));
  auto first = token(*source);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_EQ(*first, "meta-token-1");
  EXPECT_EQ(*token(*source), "meta-token-1");
  EXPECT_EQ(m_server->requests(), 1);

  source->invalidate();  // as after a 401
  EXPECT_EQ(*token(*source), "meta-token-2");
}

TEST_F(GcsCredentialsTest, MetadataServerTokenIsRefreshedBeforeItExpires) {
  m_expires_in = 2;  // refreshed after half its lifetime
  m_server = std::make_unique<TestServer>(metadata_server());
  auto source = make_metadata_token_source(client(), m_server->url(""));
  EXPECT_EQ(*token(*source), "meta-token-1");
  EXPECT_EQ(*token(*source), "meta-token-1");
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(*token(*source), "meta-token-2");

  // A failed refresh is no failure while the old token is still valid.
  std::this_thread::sleep_for(1100ms);
  {
    std::lock_guard lock(m_mutex);
    m_metadata_fails = true;
  }
  auto kept = token(*source);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(*kept, "meta-token-2");
}

TEST_F(GcsCredentialsTest, MetadataAnswerWithoutFlavorHeaderIsRefused) {
  m_send_flavor = false;
  m_server = std::make_unique<TestServer>(metadata_server());
  auto source = make_metadata_token_source(client(), m_server->url(""));
  auto answer = token(*source);
  ASSERT_FALSE(answer.has_value());
  EXPECT_EQ(answer.error(), errc::storage_io);
}

TEST_F(GcsCredentialsTest, ServiceAccountJwtIsSignedAndExchanged) {
  m_server = std::make_unique<TestServer>(token_endpoint(key()));
  auto source = make_service_account_token_source(client(), key_json(m_server->url("/token")));
  auto first = token(*source);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_EQ(*first, "sa-token-1");
  EXPECT_EQ(*token(*source), "sa-token-1");
  EXPECT_EQ(m_server->requests(), 1);
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(m_last_check.error, "");
  EXPECT_EQ(m_last_check.header.value("kid", ""), "kid-1");
}

// The fake really verifies: an assertion signed with another key is refused.
TEST_F(GcsCredentialsTest, TokenEndpointRefusesAJwtSignedWithAnotherKey) {
  const KeyPtr other = make_rsa_key();
  m_server = std::make_unique<TestServer>(token_endpoint(other.get()));
  auto source = make_service_account_token_source(client(), key_json(m_server->url("/token")));
  auto answer = token(*source);
  ASSERT_FALSE(answer.has_value());
  EXPECT_EQ(answer.error(), errc::storage_io);
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(m_last_check.error, "bad signature");
}

TEST_F(GcsCredentialsTest, UnusableKeyFilesAreRejectedAtStartupWithoutTheKey) {
  const std::string pem = test::pki_detail::key_pem(key());
  auto without = [&](const char* field) {
    auto doc = json::parse(key_json("http://127.0.0.1:1/token"));
    doc.erase(field);
    return doc.dump();
  };
  auto with = [&](const char* field, const std::string& value) {
    auto doc = json::parse(key_json("http://127.0.0.1:1/token"));
    doc[field] = value;
    return doc.dump();
  };
  const KeyPtr ec_key = test::pki_detail::make_key();
  for (const std::string& bad : {std::string("not json"), without("client_email"), without("private_key"),
                                 with("private_key", "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"),
                                 with("private_key", test::pki_detail::key_pem(ec_key.get())),
                                 with("type", "authorized_user"), with("token_uri", "not a url")}) {
    try {
      make_service_account_token_source(client(), bad);
      ADD_FAILURE() << "accepted: " << bad.substr(0, 80);
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("PRIVATE KEY"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find(pem.substr(40, 20)), std::string::npos) << e.what();
    }
  }
}

// The store end to end with the metadata server: the token goes to GCS, a
// 401 makes it fetch another, and neither token appears in the logs.
TEST_F(GcsCredentialsTest, StoreSendsBearerTokensAndNeverLogsThem) {
  std::vector<std::string> authorizations;
  m_server = std::make_unique<TestServer>([&, meta = metadata_server()](const Request& request) {
    if (request.target() == k_token_path) return meta(request);
    std::lock_guard lock(m_mutex);
    authorizations.push_back(header(request, "Authorization"));
    // The first token is "revoked".
    if (authorizations.back() == "Bearer meta-token-1") return Reply{http_response(401, "")};
    return Reply{http_response(404, R"({"error":{"code":404,"message":"No such object"}})")};
  });

  std::ostringstream logs;
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
  capture->set_level(spdlog::level::trace);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(capture);

  test::TempDir dir;
  boost::asio::thread_pool pool{1};
  GcsOptions options;
  options.bucket = "bkt";
  options.endpoint = m_server->url("");
  options.credentials = GcsCredentials::metadata_server;
  options.metadata_server = m_server->url("");
  options.staging_dir = dir.path() / "staging";
  options.retry = {3, 1ms, 5ms};
  auto store = make_gcs_blob_store(options, pool);
  auto absent = test::run(m_ioc, store->open(core::Sha256{}));
  auto status = test::run(m_ioc, store->stat(core::Sha256{}));
  store.reset();
  spdlog::set_default_logger(previous);

  ASSERT_TRUE(absent.has_value()) << absent.error().message();
  EXPECT_FALSE(absent->has_value());
  ASSERT_TRUE(status.has_value());
  std::lock_guard lock(m_mutex);
  const std::vector<std::string> expected = {"Bearer meta-token-1", "Bearer meta-token-2", "Bearer meta-token-2"};
  EXPECT_EQ(authorizations, expected);
  EXPECT_EQ(m_issued, 2);
  EXPECT_NE(logs.str().find("gcs blob store"), std::string::npos) << logs.str();  // the capture works
  EXPECT_EQ(logs.str().find("meta-token"), std::string::npos) << logs.str();
  EXPECT_EQ(logs.str().find("Bearer"), std::string::npos) << logs.str();
}

// The key file named in the options is read at startup; its token reaches GCS.
TEST_F(GcsCredentialsTest, StoreUsesTheServiceAccountKeyFile) {
  std::string authorization;
  m_server = std::make_unique<TestServer>([&, endpoint = token_endpoint(key())](const Request& request) {
    if (request.target() == "/token") return endpoint(request);
    std::lock_guard lock(m_mutex);
    authorization = header(request, "Authorization");
    return Reply{http_response(404, "")};
  });
  test::TempDir dir;
  std::ofstream(dir.path() / "key.json") << key_json(m_server->url("/token"));
  boost::asio::thread_pool pool{1};
  GcsOptions options;
  options.bucket = "bkt";
  options.endpoint = m_server->url("");
  options.credentials_file = dir.path() / "key.json";  // automatic: a key file wins
  options.staging_dir = dir.path() / "staging";
  auto store = make_gcs_blob_store(options, pool);
  auto absent = test::run(m_ioc, store->open(core::Sha256{}));
  ASSERT_TRUE(absent.has_value()) << absent.error().message();
  std::lock_guard lock(m_mutex);
  EXPECT_EQ(authorization, "Bearer sa-token-1");
  EXPECT_EQ(m_last_check.error, "");
}

}  // namespace
}  // namespace hubcache::storage
