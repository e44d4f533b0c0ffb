// Token sources for GCS; the contract is in gcs_credentials.hpp.
//
// Secrets policy: the access token, the JWT and the key only ever go into a
// request; logs name the source and the HTTP status, and for token endpoint
// refusals the OAuth error code ("invalid_grant"), which carries no secret.
#include <hubcache/storage/gcs_credentials.hpp>

#include "gcs_client.hpp"

#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <stdexcept>

namespace hubcache::storage {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

// Token answers are about 1 KiB.
constexpr std::size_t k_token_body_limit = 64 * 1024;
constexpr std::string_view k_default_token_uri = "https://oauth2.googleapis.com/token";
// The longest lifetime Google accepts for a JWT assertion.
constexpr std::chrono::seconds k_jwt_lifetime{3600};
// Refresh this long before expiry: requests in flight then never carry a
// token that expires under them, and it matches when GKE's metadata server
// itself hands out a new token.
constexpr std::chrono::seconds k_refresh_margin{300};

struct FetchedToken {
  std::string value;
  std::chrono::seconds lifetime{0};
};

std::error_code fetch_failure(std::string_view source, std::error_code ec) {
  spdlog::warn("gcs credentials: {}: {}", source, ec.message());
  return gcs::to_storage_error(ec);
}

std::error_code bad_answer(std::string_view source, std::string_view why) {
  spdlog::warn("gcs credentials: {}: {}", source, why);
  return make_error_code(errc::storage_io);
}

// {"access_token": "...", "expires_in": 3599, "token_type": "Bearer"}, the
// answer of both the metadata server and OAuth token endpoints.
result<FetchedToken> parse_token_answer(std::string_view body, std::string_view source) {
  const auto doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return bad_answer(source, "answer is not a JSON object");
  const auto token = doc.find("access_token");
  const auto expires = doc.find("expires_in");
  const auto type = doc.find("token_type");
  if (token == doc.end() || !token->is_string() || token->get<std::string>().empty()) {
    return bad_answer(source, "answer has no access_token");
  }
  if (expires == doc.end() || !expires->is_number_integer() || expires->get<std::int64_t>() <= 0) {
    return bad_answer(source, "answer has no positive expires_in");
  }
  if (type != doc.end() && (!type->is_string() || (type->get<std::string>() != "Bearer" &&
                                                   type->get<std::string>() != "bearer"))) {
    return bad_answer(source, "token_type is not Bearer");
  }
  return FetchedToken{token->get<std::string>(), std::chrono::seconds(expires->get<std::int64_t>())};
}

class AnonymousTokenSource final : public TokenSource {
 public:
  net::awaitable<result<std::string>> token() override { co_return std::string(); }
  void invalidate() noexcept override {}
};

// The cache shared by the fetching sources: one token, refreshed ahead of
// expiry by whichever caller sees it first.
class CachingTokenSource : public TokenSource {
 public:
  net::awaitable<result<std::string>> token() final {
    const auto now = Clock::now();
    {
      std::lock_guard lock(m_mutex);
      if (!m_token.empty() && now < m_refresh_at) co_return m_token;
      // Another caller is fetching; the old token is still good meanwhile.
      if (m_refreshing && !m_token.empty() && now < m_expires_at) co_return m_token;
      m_refreshing = true;
    }
    auto fetched = co_await fetch();
    std::lock_guard lock(m_mutex);
    m_refreshing = false;
    if (!fetched) {
      // A failed refresh is not fatal while the old token lasts.
      if (!m_token.empty() && Clock::now() < m_expires_at) co_return m_token;
      co_return fetched.error();
    }
    // Half the lifetime at most, so a short-lived token is not fetched again
    // on every request.
    const auto margin = std::min<Clock::duration>(k_refresh_margin, fetched->lifetime / 2);
    m_token = std::move(fetched->value);
    m_expires_at = now + fetched->lifetime;
    m_refresh_at = m_expires_at - margin;
    co_return m_token;
  }

  void invalidate() noexcept final {
    std::lock_guard lock(m_mutex);
    m_token.clear();
  }

 protected:
  virtual net::awaitable<result<FetchedToken>> fetch() = 0;

 private:
  std::mutex m_mutex;
  // GUARDED_BY(m_mutex): the cached token (empty: none) and its times.
  std::string m_token;
  Clock::time_point m_refresh_at;
  Clock::time_point m_expires_at;
  bool m_refreshing = false;
};

upstream::Url parse_url_or_throw(std::string_view text, std::string_view what) {
  auto url = upstream::Url::parse(text);
  if (!url) throw std::invalid_argument(std::string(what) + " is not an http(s) URL: " + std::string(text));
  return *url;
}

class MetadataTokenSource final : public CachingTokenSource {
 public:
  MetadataTokenSource(std::shared_ptr<upstream::HttpClient> http, std::string_view metadata_url)
      : m_http(std::move(http)), m_url(parse_url_or_throw(metadata_url, "metadata server")) {
    m_url.target = "/computeMetadata/v1/instance/service-accounts/default/token";
  }

 private:
  net::awaitable<result<FetchedToken>> fetch() override {
    constexpr std::string_view k_source = "metadata server";
    upstream::Request request{http::verb::get, m_url, {}, {}};
    request.headers.set("Metadata-Flavor", "Google");
    auto response = co_await m_http->send(std::move(request));
    if (!response) co_return fetch_failure(k_source, response.error());
    // The flavor header in the answer proves it came from a metadata server
    // and not, say, a proxy's error page.
    const auto flavor = (*response)->headers().find("Metadata-Flavor");
    if ((*response)->status() != 200 || flavor == (*response)->headers().end() || flavor->value() != "Google") {
      co_return bad_answer(k_source, "HTTP " + std::to_string((*response)->status()) +
                                         (flavor == (*response)->headers().end() ? " without Metadata-Flavor" : ""));
    }
    auto body = co_await (*response)->read_all(k_token_body_limit);
    if (!body) co_return fetch_failure(k_source, body.error());
    co_return parse_token_answer(*body, k_source);
  }

  std::shared_ptr<upstream::HttpClient> m_http;
  upstream::Url m_url;
};

struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;

std::string base64url(std::span<const unsigned char> data) {
  std::string out = gcs::base64_encode(data);
  std::replace(out.begin(), out.end(), '+', '-');
  std::replace(out.begin(), out.end(), '/', '_');
  out.erase(std::find(out.begin(), out.end(), '='), out.end());
  return out;
}

std::string base64url(std::string_view text) {
  return base64url(std::span(reinterpret_cast<const unsigned char*>(text.data()), text.size()));
}

// Reads an unencrypted PEM private key; never prompts for a passphrase.
KeyPtr read_rsa_key(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  ERR_clear_error();  // leave no stale errors for the next TLS operation on this thread
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) return nullptr;
  return key;
}

class ServiceAccountTokenSource final : public CachingTokenSource {
 public:
  ServiceAccountTokenSource(std::shared_ptr<upstream::HttpClient> http, std::string_view key_json,
                            std::string_view scope)
      : m_http(std::move(http)), m_scope(scope) {
    // Messages name fields, never values: the file holds the private key.
    const auto doc = json::parse(key_json, nullptr, /*allow_exceptions=*/false);
    auto field = [&](const char* key) {
      const auto it = doc.is_object() ? doc.find(key) : doc.end();
      return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (!doc.is_object()) throw std::invalid_argument("service-account key: not a JSON object");
    if (const std::string type = field("type"); !type.empty() && type != "service_account") {
      throw std::invalid_argument("service-account key: type is \"" + type + "\", not \"service_account\"");
    }
    m_email = field("client_email");
    m_key_id = field("private_key_id");
    m_key = read_rsa_key(field("private_key"));
    const std::string token_uri = field("token_uri").empty() ? std::string(k_default_token_uri) : field("token_uri");
    if (m_email.empty()) throw std::invalid_argument("service-account key: no client_email");
    if (!m_key) throw std::invalid_argument("service-account key: private_key is not an unencrypted RSA key in PEM");
    m_token_url = parse_url_or_throw(token_uri, "service-account key token_uri");
    m_audience = token_uri;
  }

 private:
  // header.claims.signature, RS256 (RFC 7515, 7519; Google's "OAuth 2.0 for
  // server to server applications").
  result<std::string> make_jwt() const {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    json header = {{"alg", "RS256"}, {"typ", "JWT"}};
    if (!m_key_id.empty()) header["kid"] = m_key_id;
    const json claims = {{"iss", m_email}, {"scope", m_scope}, {"aud", m_audience},
                         {"iat", now}, {"exp", now + k_jwt_lifetime.count()}};
    const std::string signing_input = base64url(header.dump()) + "." + base64url(claims.dump());

    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    std::size_t length = 0;
    bool ok = ctx && EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, m_key.get()) == 1 &&
              EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<const unsigned char*>(signing_input.data()),
                             signing_input.size()) == 1;
    std::vector<unsigned char> signature(length);
    ok = ok && EVP_DigestSign(ctx.get(), signature.data(), &length,
                              reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
    ERR_clear_error();
    if (!ok) return bad_answer("service account", "cannot sign the JWT");
    signature.resize(length);
    return signing_input + "." + base64url(signature);
  }

  net::awaitable<result<FetchedToken>> fetch() override {
    constexpr std::string_view k_source = "token endpoint";
    auto jwt = make_jwt();
    if (!jwt) co_return jwt.error();
    // The JWT is base64url and dots: nothing to escape in a form body.
    upstream::Request request{http::verb::post, m_token_url, {},
                              "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + *jwt};
    request.headers.set(http::field::content_type, "application/x-www-form-urlencoded");
    auto response = co_await m_http->send(std::move(request));
    if (!response) co_return fetch_failure(k_source, response.error());
    auto body = co_await (*response)->read_all(k_token_body_limit);
    if (!body) co_return fetch_failure(k_source, body.error());
    if ((*response)->status() != 200) {
      // {"error": "invalid_grant", "error_description": "..."}: safe to log.
      const auto doc = json::parse(*body, nullptr, /*allow_exceptions=*/false);
      const auto error = doc.is_object() ? doc.find("error") : doc.end();
      co_return bad_answer(k_source, "HTTP " + std::to_string((*response)->status()) + " " +
                                         (error != doc.end() && error->is_string() ? error->get<std::string>() : ""));
    }
    co_return parse_token_answer(*body, k_source);
  }

  std::shared_ptr<upstream::HttpClient> m_http;
  std::string m_scope;
  std::string m_email;
  std::string m_key_id;
  KeyPtr m_key;  // read-only after construction; OpenSSL allows concurrent signing with it
  upstream::Url m_token_url;
  std::string m_audience;  // token_uri exactly as the key file has it
};

}  // namespace

TokenSourcePtr make_anonymous_token_source() { return std::make_shared<AnonymousTokenSource>(); }

TokenSourcePtr make_metadata_token_source(std::shared_ptr<upstream::HttpClient> http, std::string_view metadata_url) {
  return std::make_shared<MetadataTokenSource>(std::move(http), metadata_url);
}

TokenSourcePtr make_service_account_token_source(std::shared_ptr<upstream::HttpClient> http, std::string_view key_json,
                                                 std::string_view scope) {
  return std::make_shared<ServiceAccountTokenSource>(std::move(http), key_json, scope);
}

}  // namespace hubcache::storage
