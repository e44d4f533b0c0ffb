#include "api_cache.hpp"

#include <hubcache/util/hash.hpp>

#include <nlohmann/json.hpp>

#include <chrono>

namespace hubcache::hub {
namespace {

using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

std::string field(std::string_view v) { return std::to_string(v.size()) + ":" + std::string(v); }

}  // namespace

std::string answer_key(const std::string& api_cache_key) { return "api|" + api_cache_key; }

std::string mapping_key(core::RepoType type, const std::string& repo, const std::string& revision) {
  return "rev|" + field(core::to_string(type)) + field(repo) + field(revision);
}

std::string public_key(core::RepoType type, const std::string& repo) {
  return "public|" + field(core::to_string(type)) + field(repo);
}

// One JSON line of metadata, a newline, then the body bytes as they came
// (bodies need not be valid UTF-8, so they stay out of the JSON).
std::string encode(const CachedAnswer& a) {
  json headers = json::array();
  for (const auto& [n, v] : a.headers) headers.push_back({n, v});
  std::string out = json{{"status", a.status}, {"headers", headers}, {"fetched_at", a.fetched_at}, {"cred", a.cred}}
                        .dump(-1, ' ', false, json::error_handler_t::replace);
  out += '\n';
  out += a.body;
  return out;
}

std::optional<CachedAnswer> decode_answer(const std::string& doc) {
  const auto nl = doc.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  auto j = json::parse(std::string_view(doc).substr(0, nl), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    CachedAnswer a;
    a.status = j.at("status").get<unsigned>();
    for (const auto& h : j.at("headers")) a.headers.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
    a.body = doc.substr(nl + 1);
    a.fetched_at = j.at("fetched_at").get<std::int64_t>();
    a.cred = j.at("cred").get<std::string>();
    return a;
  } catch (const json::exception&) {
    return std::nullopt;  // a damaged record is a cache miss
  }
}

std::string encode(const RevisionMapping& m) {
  return json{{"commit", m.commit}, {"fetched_at", m.fetched_at}, {"cred", m.cred}}.dump();
}

std::optional<RevisionMapping> decode_mapping(const std::string& doc) {
  auto j = json::parse(doc, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    return RevisionMapping{j.at("commit").get<std::string>(), j.at("fetched_at").get<std::int64_t>(),
                           j.at("cred").get<std::string>()};
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string credential_id(std::string_view authorization, std::string_view cookie) {
  if (authorization.empty() && cookie.empty()) return {};
  util::Sha256Hasher h;
  h.update(authorization);
  h.update(std::string_view("\n"));  // unambiguous split between the two values
  h.update(cookie);
  return h.finish().hex();
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<std::string> strip_xet_hash(std::string_view json_body) {
  auto doc = ordered_json::parse(json_body, nullptr, false);
  if (doc.is_discarded() || !doc.is_array()) return std::nullopt;
  bool changed = false;
  for (auto& entry : doc) {
    if (entry.is_object() && entry.erase("xetHash") > 0) changed = true;
  }
  if (!changed) return std::string(json_body);
  return doc.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace hubcache::hub
