// HubState: what the Hub front remembers across requests, shared by the file
// and API handlers: which repos are public, revision -> commit mappings,
// upstream rate-limit backoff, and the caching policy.
//
// Thread safety: all members are safe from any coroutine.
#pragma once

#include "api_cache.hpp"
#include "public_repos.hpp"

#include <hubcache/hub/service.hpp>
#include <hubcache/storage/document_store.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/fields.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <string>

namespace hubcache::hub {

namespace net = boost::asio;

// What a repo was seen public for. They differ for gated repos: their
// metadata (repo info, tree) answers anonymous callers, their files do not.
enum class Access { files, metadata };

class HubState {
 public:
  HubState(CachePolicy policy, storage::DocumentStore& docs, net::thread_pool& blocking);

  const CachePolicy& policy() const noexcept { return m_policy; }
  PublicRepos& public_repos() noexcept { return m_public; }

  // The repo is public for that kind of request now: an anonymous API request
  // succeeded (metadata), or the repo info said neither private nor gated
  // (files; an anonymous file answer alone does not show it). Recorded in
  // memory (for public_ttl) and, once per process, durably (for serving while
  // upstream cannot be asked).
  net::awaitable<void> saw_public(core::RepoType type, const std::string& repo, Access access);
  // A refusal to an anonymous caller: not public for that any more (a refused
  // metadata request also ends the files' public status).
  net::awaitable<void> saw_refusal(core::RepoType type, const std::string& repo, Access access);
  // Public now (memory), or public when last seen (durable marker).
  bool public_now(core::RepoType type, const std::string& repo, Access access) const;
  // The repo info said private or gated (or could not be read) for public_ttl:
  // its files are not asked about again meanwhile. In memory only.
  void saw_files_restricted(core::RepoType type, const std::string& repo);
  bool files_restricted_now(core::RepoType type, const std::string& repo) const;
  // Files of this commit answered an anonymous request while the repo's files
  // were public (durable). Serving
  // while upstream cannot be asked needs this too, so a repo gated later
  // never has files filled by token holders served to anonymous callers.
  net::awaitable<void> saw_public_commit(core::RepoType type, const std::string& repo, const std::string& commit);
  net::awaitable<bool> commit_was_public(core::RepoType type, const std::string& repo, const std::string& commit);
  net::awaitable<bool> last_known_public(core::RepoType type, const std::string& repo, Access access);

  net::awaitable<std::optional<RevisionMapping>> mapping(core::RepoType type, const std::string& repo,
                                                         const std::string& revision);
  // Stores a mapping unless an identical one younger than revision_ttl is there.
  net::awaitable<void> remember_mapping(core::RepoType type, const std::string& repo, const std::string& revision,
                                        const std::string& commit, const std::string& cred);

  // Upstream said 429 to callers with credential id `cred` ("" anonymous):
  // stop asking it on their behalf until Retry-After / RateLimit t= passes.
  // Per credential, because the Hub's quotas are per token: one user's 429
  // must not stop everyone else's traffic.
  void back_off(const boost::beast::http::fields& headers, const std::string& cred);
  bool backing_off(const std::string& cred) const;

  // Durable document write off the I/O threads; failures are logged (a lost
  // record only costs a future upstream request).
  net::awaitable<void> put_document(std::string key, std::string value);
  // Awaitable: the document store may read a remote tier (GCS) on a local miss.
  net::awaitable<std::optional<std::string>> get_document(std::string key);

 private:
  const CachePolicy m_policy;
  storage::DocumentStore& m_docs;
  net::thread_pool& m_blocking;
  PublicRepos m_public;
  PublicRepos m_restricted;  // same expiry, opposite verdict: files of these repos are not public
  mutable std::mutex m_mutex;
  std::unordered_map<std::string, std::int64_t> m_backoff_until_ms;  // cred -> steady ms; guarded by m_mutex
  std::set<std::string> m_persisted_public;  // guarded by m_mutex
};

std::string repo_key(core::RepoType type, const std::string& repo);

}  // namespace hubcache::hub
