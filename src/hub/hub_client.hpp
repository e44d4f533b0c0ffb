// HubClient: the Hub's redirect and header rules on top of the HTTP client.
//
// probe() asks upstream what a file is (HEAD, as huggingface_hub does),
// following the Hub's relative redirects (renamed repos, /api/resolve-cache)
// itself, and stopping at the absolute 302 of an LFS/xet file to read
// X-Linked-*. open_content() starts the GET of the bytes: from the CDN for LFS
// files (never with the caller's Authorization), from the Hub pinned to the
// commit for git files.
//
// Thread safety: safe from any coroutine; the only shared state is the table
// of probes in flight.
#pragma once

#include <hubcache/core/route.hpp>
#include <hubcache/flight/registry.hpp>
#include <hubcache/upstream/http_client.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace hubcache::hub {

namespace net = boost::asio;

// What upstream says a file is (huggingface_hub's HfFileMetadata).
struct FileMeta {
  std::string commit;        // X-Repo-Commit
  std::string etag;          // unquoted; sha256 for LFS (X-Linked-Etag), git sha1 otherwise
  bool lfs = false;
  std::uint64_t size = 0;
  std::string content_type;  // for the client's answer
  upstream::Url content_url; // where the bytes are
  bool content_on_hub = true; // false: CDN URL, fetched without Authorization
};

// A non-success upstream answer, relayed to the client as it was (with
// hop-by-hop and xet headers removed).
struct UpstreamAnswer {
  unsigned status = 0;
  upstream::http::fields headers;
  std::string body;
};

using ProbeResult = std::variant<FileMeta, UpstreamAnswer>;

// Whether anonymous callers may read every file of a repo.
enum class RepoAccess { open, restricted };

class HubClient {
 public:
  HubClient(std::shared_ptr<upstream::HttpClient> http, upstream::Url base);
  HubClient(const HubClient&) = delete;
  HubClient& operator=(const HubClient&) = delete;

  // `authorization` is the caller's header value ("" for anonymous).
  // Concurrent probes of the same route with the same `authorization` share
  // one upstream exchange and all get its outcome: when a public repo's
  // --public-ttl runs out under load, every request in flight for a file
  // would otherwise ask the Hub at once. Different authorizations never share,
  // so no caller is answered with another's rights. A caller that joins a
  // probe in flight gets an answer (or error) from up to one round trip
  // before its own request; nothing is kept once the probe ends. Relayed
  // answers never carry Set-Cookie.
  net::awaitable<result<ProbeResult>> probe(const core::FileRoute& route, const std::string& authorization);

  // open when the repo's info, asked without credentials, says it is neither
  // private nor gated. A file answering an anonymous request does not show
  // that: the Hub gives a gated repo's README to anyone, so that the card can
  // be read before access is asked for. restricted for a refusal, or an answer
  // without both fields as booleans; an error when upstream could not be asked
  // (5xx and 429 included). Concurrent calls for the same repo and commit
  // share one exchange, as probes do.
  net::awaitable<result<RepoAccess>> access_of(core::RepoType type, const std::string& repo,
                                                 const std::string& commit);

  // GET of the content at `url` (FileMeta::content_url or a re-resolved
  // one), the bytes [first, last] of it when `range` is set. Relative
  // redirects of content on the Hub are followed with the caller's
  // Authorization; a CDN GET sends none. Returns whatever upstream answered
  // (status unchecked): the fill decides what a status means.
  net::awaitable<result<upstream::ResponsePtr>> get_content(const upstream::Url& url, bool on_hub,
                                                            const std::string& authorization,
                                                            std::optional<std::pair<std::uint64_t, std::uint64_t>> range);

  // GET of the full content. A git file's GET follows relative redirects with
  // the caller's Authorization; a CDN GET sends none. Errors:
  // errc::upstream_protocol when the answer is not a 200 of the right size.
  net::awaitable<result<upstream::ResponsePtr>> open_content(const FileMeta& meta, const std::string& authorization);

  // The upstream URL for a request target of ours (path prefix of the
  // configured upstream kept).
  upstream::Url url_for(std::string_view target) const;
  const upstream::Url& base() const noexcept { return m_base; }
  upstream::HttpClient& http() noexcept { return *m_http; }

 private:
  // One upstream exchange and the callers waiting for its outcome.
  template <class T>
  struct Shared;
  template <class T>
  using Flights = flight::FlightRegistry<std::string, Shared<T>>;
  // Runs `ask()` once for all concurrent callers with the same `key`.
  template <class T, class Ask>
  net::awaitable<result<T>> shared(Flights<T>& flights, std::string key, Ask ask);

  net::awaitable<result<ProbeResult>> probe_upstream(const core::FileRoute& route, const std::string& authorization);
  net::awaitable<result<RepoAccess>> ask_access(core::RepoType type, const std::string& repo, const std::string& commit);

  std::shared_ptr<upstream::HttpClient> m_http;
  upstream::Url m_base;  // scheme, host, port; target = path prefix ("" or "/prefix")
  // Keyed by Authorization + "\n" + the upstream target (a header value has no newline).
  Flights<ProbeResult> m_probes;
  Flights<RepoAccess> m_access;  // keyed by the upstream target of the repo info
};

}  // namespace hubcache::hub
