#include "state.hpp"

#include <hubcache/util/blocking.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace hubcache::hub {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

std::optional<std::int64_t> parse_seconds(std::string_view s) {
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || v < 0) return std::nullopt;
  return v;
}

// Without a usable hint, wait this long; and never longer than the cap, so a
// bogus header cannot take the Hub away for hours.
constexpr std::int64_t k_default_backoff_s = 5;
constexpr std::int64_t k_max_backoff_s = 300;

}  // namespace

std::string repo_key(core::RepoType type, const std::string& repo) {
  return std::string(core::to_string(type)) + ":" + repo;
}

HubState::HubState(CachePolicy policy, storage::DocumentStore& docs, net::thread_pool& blocking)
    : m_policy(policy), m_docs(docs), m_blocking(blocking), m_public(policy.public_ttl), m_restricted(policy.public_ttl) {}

namespace {

std::string access_key(core::RepoType type, const std::string& repo, Access access) {
  return repo_key(type, repo) + (access == Access::files ? "#files" : "#metadata");
}

// "open": files markers written before the repo info decided them could be
// left by a gated repo's README, so they are not read any more.
std::string marker_key(core::RepoType type, const std::string& repo, Access access) {
  return public_key(type, repo) + (access == Access::files ? "files-open" : "metadata");
}

std::string commit_key(core::RepoType type, const std::string& repo, const std::string& commit) {
  return public_key(type, repo) + "open-commit:" + commit;
}

}  // namespace

net::awaitable<void> HubState::saw_public(core::RepoType type, const std::string& repo, Access access) {
  const auto key = access_key(type, repo, access);
  m_public.mark(key);
  m_restricted.forget(key);
  {
    std::lock_guard lock(m_mutex);
    if (!m_persisted_public.insert(key).second) co_return;
  }
  co_await put_document(marker_key(type, repo, access), std::to_string(unix_now()));
}

net::awaitable<void> HubState::saw_refusal(core::RepoType type, const std::string& repo, Access access) {
  for (Access a : {Access::files, Access::metadata}) {
    if (access == Access::files && a == Access::metadata) continue;  // gated: metadata may still be public
    const auto key = access_key(type, repo, a);
    m_public.forget(key);
    bool persisted = false;
    {
      std::lock_guard lock(m_mutex);
      persisted = m_persisted_public.erase(key) > 0;
    }
    if (persisted || co_await get_document(marker_key(type, repo, a))) co_await put_document(marker_key(type, repo, a), "0");
  }
}

net::awaitable<void> HubState::saw_public_commit(core::RepoType type, const std::string& repo,
                                                 const std::string& commit) {
  const auto key = commit_key(type, repo, commit);
  {
    std::lock_guard lock(m_mutex);
    // Only spares repeated writes; forgetting is harmless.
    if (m_persisted_public.size() > 100'000) m_persisted_public.clear();
    if (!m_persisted_public.insert(key).second) co_return;
  }
  co_await put_document(key, std::to_string(unix_now()));
}

net::awaitable<bool> HubState::commit_was_public(core::RepoType type, const std::string& repo,
                                                 const std::string& commit) {
  std::string key = commit_key(type, repo, commit);
  co_return (co_await get_document(std::move(key))).has_value();
}

bool HubState::public_now(core::RepoType type, const std::string& repo, Access access) const {
  return m_public.is_public(access_key(type, repo, access));
}

void HubState::saw_files_restricted(core::RepoType type, const std::string& repo) {
  m_restricted.mark(access_key(type, repo, Access::files));
}

bool HubState::files_restricted_now(core::RepoType type, const std::string& repo) const {
  return m_restricted.is_public(access_key(type, repo, Access::files));
}

net::awaitable<bool> HubState::last_known_public(core::RepoType type, const std::string& repo, Access access) {
  if (public_now(type, repo, access)) co_return true;
  auto doc = co_await get_document(marker_key(type, repo, access));
  co_return doc && !doc->empty() && *doc != "0";
}

net::awaitable<std::optional<RevisionMapping>> HubState::mapping(core::RepoType type, const std::string& repo,
                                                                 const std::string& revision) {
  auto doc = co_await get_document(mapping_key(type, repo, revision));
  if (!doc) co_return std::nullopt;
  co_return decode_mapping(*doc);
}

net::awaitable<void> HubState::remember_mapping(core::RepoType type, const std::string& repo,
                                                const std::string& revision, const std::string& commit,
                                                const std::string& cred) {
  const auto revision_ttl_s = std::chrono::duration_cast<std::chrono::seconds>(m_policy.revision_ttl).count();
  if (auto old = co_await mapping(type, repo, revision);
      old && old->commit == commit && old->cred == cred && unix_now() - old->fetched_at < std::max<std::int64_t>(1, revision_ttl_s)) {
    co_return;  // nothing new: spare the fsync
  }
  co_await put_document(mapping_key(type, repo, revision), encode(RevisionMapping{commit, unix_now(), cred}));
}

void HubState::back_off(const boost::beast::http::fields& headers, const std::string& cred) {
  std::int64_t seconds = k_default_backoff_s;
  if (auto ra = parse_seconds(headers["Retry-After"])) {
    seconds = *ra;
  } else {
    // RateLimit: "api";r=0;t=42
    const auto rl = std::string_view(headers["RateLimit"]);
    if (auto t = rl.find("t="); t != std::string_view::npos) {
      auto end = rl.find(';', t);
      if (auto v = parse_seconds(rl.substr(t + 2, end == std::string_view::npos ? end : end - t - 2))) seconds = *v;
    }
  }
  seconds = std::clamp<std::int64_t>(seconds, 1, k_max_backoff_s);
  {
    std::lock_guard lock(m_mutex);
    const auto now = now_ms();
    if (m_backoff_until_ms.size() > 4096) std::erase_if(m_backoff_until_ms, [&](const auto& kv) { return kv.second <= now; });
    m_backoff_until_ms[cred] = now + seconds * 1000;
  }
  spdlog::warn("upstream rate-limited {} (429): not asking it for them for {} s, serving from cache meanwhile",
               cred.empty() ? "anonymous callers" : "one token", seconds);
}

bool HubState::backing_off(const std::string& cred) const {
  std::lock_guard lock(m_mutex);
  auto it = m_backoff_until_ms.find(cred);
  return it != m_backoff_until_ms.end() && now_ms() < it->second;
}

net::awaitable<void> HubState::put_document(std::string key, std::string value) {
  auto* docs = &m_docs;
  // Named, not a temporary: GCC 12 double-destroys capturing lambda temporaries in co_await.
  auto job = [docs, key = std::move(key), value = std::move(value)] { return docs->put(key, value); };
  auto r = co_await util::run_blocking(m_blocking, std::move(job));
  if (!r) spdlog::warn("could not store a metadata record: {}", r.error().message());
}

net::awaitable<std::optional<std::string>> HubState::get_document(std::string key) {
  auto r = co_await m_docs.get(std::move(key));
  if (!r) co_return std::nullopt;
  co_return std::move(*r);
}

}  // namespace hubcache::hub
