#include "hub_client.hpp"

#include "headers.hpp"

#include <hubcache/core/digest.hpp>
#include <hubcache/flight/watermark.hpp>

#include <nlohmann/json.hpp>

#include <charconv>

namespace hubcache::hub {
namespace {

namespace bhttp = boost::beast::http;

// Renames chain at most once or twice in practice; five bounds a loop.
constexpr int k_max_redirects = 5;
// Error bodies from the Hub are short JSON or text, as is a repo info of two
// fields; anything bigger is cut.
constexpr std::size_t k_max_error_body = 64 * 1024;
// A leader always ends (its exchange is bounded by the upstream timeouts, and
// a leader destroyed early releases its followers), so this bound only
// matters should both fail; a follower then asks again itself.
constexpr auto k_shared_wait = std::chrono::hours(1);

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

bool is_redirect(unsigned status) { return status == 301 || status == 302 || status == 303 || status == 307 || status == 308; }

bool is_relative(std::string_view location) {
  return !location.empty() && location.front() == '/' && !location.starts_with("//");
}

upstream::Request make_request(bhttp::verb method, upstream::Url url, const std::string& authorization) {
  upstream::Request req;
  req.method = method;
  req.url = std::move(url);
  if (!authorization.empty()) req.headers.set(bhttp::field::authorization, authorization);
  // Content is never compressed: sizes and hashes are of the raw bytes.
  req.headers.set(bhttp::field::accept_encoding, "identity");
  req.headers.set(bhttp::field::accept, "*/*");
  return req;
}

net::awaitable<UpstreamAnswer> capture_answer(upstream::Response& resp) {
  UpstreamAnswer a;
  a.status = resp.status();
  for (const auto& f : resp.headers()) {
    const auto name = std::string_view(f.name_string());
    if (is_hop_by_hop(name) || is_xet_header(name)) continue;
    // A relayed answer may be shared (see probe()): never with a cookie.
    if (f.name() == bhttp::field::content_length || f.name() == bhttp::field::link ||
        f.name() == bhttp::field::set_cookie) {
      continue;
    }
    a.headers.insert(f.name_string(), f.value());
  }
  auto body = co_await resp.read_all(k_max_error_body);
  if (body) a.body = std::move(*body);
  co_return a;
}

}  // namespace

HubClient::HubClient(std::shared_ptr<upstream::HttpClient> http, upstream::Url base)
    : m_http(std::move(http)), m_base(std::move(base)) {
  while (!m_base.target.empty() && m_base.target.back() == '/') m_base.target.pop_back();
}

upstream::Url HubClient::url_for(std::string_view target) const {
  upstream::Url u = m_base;
  u.target += target;
  return u;
}

// A Watermark to which no byte is ever added is a one-shot event that wakes
// waiters on any thread.
template <class T>
struct HubClient::Shared {
  flight::Watermark done;
  std::optional<result<T>> outcome;  // written once, before done.finish({})
};

template <class T, class Ask>
net::awaitable<result<T>> HubClient::shared(Flights<T>& flights, std::string key, Ask ask) {
  auto [flight, leader] = flights.join(key, [] { return new Shared<T>; });
  if (!leader) {
    auto waited = co_await flight->done.wait_beyond(0, k_shared_wait);
    // Read only after finish({}) was seen: the Watermark's mutex orders it
    // after the leader's write.
    if (waited && flight->outcome) co_return *flight->outcome;
    // The leader stopped without an answer (its coroutine was destroyed):
    // ask again, through a new shared exchange so the followers stay one.
    co_return co_await shared(flights, std::move(key), std::move(ask));
  }
  // Whatever way the leader leaves, its followers are released and the next
  // caller starts afresh; finish() after a finish is ignored.
  struct Release {
    Flights<T>& flights;
    const std::string& key;
    const std::shared_ptr<Shared<T>>& flight;
    ~Release() {
      flights.remove(key, flight);
      flight->done.finish(make_error_code(std::errc::operation_canceled));
    }
  } release{flights, key, flight};
  flight->outcome = co_await ask();  // before finish({}): see above
  flights.remove(key, flight);
  flight->done.finish({});
  co_return *flight->outcome;
}

net::awaitable<result<ProbeResult>> HubClient::probe(const core::FileRoute& route, const std::string& authorization) {
  auto ask = [this, &route, &authorization] { return probe_upstream(route, authorization); };
  std::string key = authorization + '\n' + route.upstream_target();
  co_return co_await shared(m_probes, std::move(key), std::move(ask));
}

net::awaitable<result<RepoAccess>> HubClient::access_of(core::RepoType type, const std::string& repo,
                                                        const std::string& commit) {
  auto ask = [this, type, &repo, &commit] { return ask_access(type, repo, commit); };
  std::string key = std::string(core::api_plural(type)) + '/' + repo + '@' + commit;
  co_return co_await shared(m_access, std::move(key), std::move(ask));
}

net::awaitable<result<RepoAccess>> HubClient::ask_access(core::RepoType type, const std::string& repo,
                                                         const std::string& commit) {
  // Only the two fields, so a repo of many files costs a small answer.
  upstream::Url url = url_for("/api/" + std::string(core::api_plural(type)) + "/" + repo + "/revision/" + commit +
                              "?expand=private&expand=gated");
  for (int hop = 0; hop <= k_max_redirects; ++hop) {
    auto sent = co_await m_http->send(make_request(bhttp::verb::get, url, ""));
    if (!sent) co_return sent.error();
    auto& resp = **sent;
    const unsigned status = resp.status();
    const auto location = std::string_view(resp.headers()[bhttp::field::location]);
    if (is_redirect(status) && !location.empty()) {  // a renamed repo
      auto next = url.resolve(location);
      if (!next || (!is_relative(location) && !next->same_origin(m_base))) co_return errc::upstream_protocol;
      url = std::move(*next);
      continue;
    }
    if (status >= 500 || status == 429) co_return errc::upstream_unavailable;
    if (status != 200) co_return RepoAccess::restricted;
    auto body = co_await resp.read_all(k_max_error_body);
    if (!body) co_return body.error();
    const auto info = nlohmann::json::parse(*body, nullptr, false);
    if (!info.is_object()) co_return RepoAccess::restricted;
    const auto is_false = [&info](const char* field) {
      auto it = info.find(field);
      return it != info.end() && it->is_boolean() && !it->get<bool>();
    };
    co_return is_false("private") && is_false("gated") ? RepoAccess::open : RepoAccess::restricted;
  }
  co_return errc::upstream_protocol;
}

net::awaitable<result<ProbeResult>> HubClient::probe_upstream(const core::FileRoute& route,
                                                              const std::string& authorization) {
  upstream::Url url = url_for(route.upstream_target());
  for (int hop = 0; hop <= k_max_redirects; ++hop) {
    auto sent = co_await m_http->send(make_request(bhttp::verb::head, url, authorization));
    if (!sent) co_return sent.error();
    auto& resp = **sent;
    const auto& h = resp.headers();
    const unsigned status = resp.status();
    const auto location = std::string_view(h[bhttp::field::location]);
    const auto linked_etag = std::string_view(h["X-Linked-Etag"]);

    if (is_redirect(status) && !location.empty() && linked_etag.empty()) {
      // Relative: a rename or /api/resolve-cache; follow it with the same
      // credentials, as the Python client does for HEAD.
      auto next = url.resolve(location);
      if (!next) co_return errc::upstream_protocol;
      if (!is_relative(location) && !next->same_origin(m_base)) co_return errc::upstream_protocol;
      url = std::move(*next);
      continue;
    }
    if (status >= 400 || (status >= 300 && !is_redirect(status)) || status < 200) {
      co_return ProbeResult{co_await capture_answer(resp)};
    }

    FileMeta meta;
    meta.commit = std::string(h["X-Repo-Commit"]);
    if (!core::is_commit_id(meta.commit)) co_return errc::upstream_protocol;
    if (!linked_etag.empty()) {
      meta.lfs = true;
      meta.etag = unquote_etag(linked_etag);
      auto size = parse_u64(h["X-Linked-Size"]);
      if (!core::Sha256::from_hex(meta.etag) || !size) co_return errc::upstream_protocol;
      meta.size = *size;
      meta.content_type = "application/octet-stream";
      if (is_redirect(status)) {
        // The Hub's LFS/xet 302 to a signed CDN URL: fetched by us, never shown.
        auto cdn = url.resolve(location);
        if (!cdn || location.empty()) co_return errc::upstream_protocol;
        meta.content_url = std::move(*cdn);
        meta.content_on_hub = meta.content_url.same_origin(m_base);
      } else {
        // A Hub-compatible upstream (another hubcache) serving LFS bytes
        // itself: fetched at the commit, so a push meanwhile cannot change
        // them (as for git files below).
        meta.content_url = core::is_commit_id(route.revision) ? url : url_for(route.upstream_target(meta.commit));
      }
    } else {
      if (status != 200) co_return errc::upstream_protocol;
      meta.etag = unquote_etag(h[bhttp::field::etag]);
      auto size = parse_u64(h[bhttp::field::content_length]);
      if (!core::GitSha1::from_hex(meta.etag) || !size) co_return errc::upstream_protocol;
      meta.size = *size;
      meta.content_type = std::string(h[bhttp::field::content_type]);
      // Pin the bytes to the commit so a concurrent push cannot change them
      // under us (the git sha1 check would reject them, but why fetch twice).
      meta.content_url = core::is_commit_id(route.revision) ? url : url_for(route.upstream_target(meta.commit));
    }
    if (meta.content_type.empty()) meta.content_type = "application/octet-stream";
    co_return ProbeResult{std::move(meta)};
  }
  co_return errc::upstream_protocol;  // redirect loop
}

net::awaitable<result<upstream::ResponsePtr>> HubClient::get_content(
    const upstream::Url& content_url, bool on_hub, const std::string& authorization,
    std::optional<std::pair<std::uint64_t, std::uint64_t>> range) {
  upstream::Url url = content_url;
  // The caller's token goes to the Hub only; a CDN URL is self-authorizing.
  const std::string& auth = on_hub ? authorization : std::string();
  for (int hop = 0; hop <= k_max_redirects; ++hop) {
    auto req = make_request(bhttp::verb::get, url, auth);
    if (range) req.headers.set(bhttp::field::range, "bytes=" + std::to_string(range->first) + "-" + std::to_string(range->second));
    auto sent = co_await m_http->send(std::move(req));
    if (!sent) co_return sent.error();
    auto& resp = **sent;
    const auto location = std::string_view(resp.headers()[bhttp::field::location]);
    if (is_redirect(resp.status()) && is_relative(location) && on_hub) {
      auto next = url.resolve(location);
      if (!next) co_return errc::upstream_protocol;
      url = std::move(*next);
      continue;
    }
    co_return std::move(*sent);
  }
  co_return errc::upstream_protocol;
}

net::awaitable<result<upstream::ResponsePtr>> HubClient::open_content(const FileMeta& meta,
                                                                     const std::string& authorization) {
  auto sent = co_await get_content(meta.content_url, meta.content_on_hub, authorization, std::nullopt);
  if (!sent) co_return sent.error();
  auto& resp = **sent;
  if (resp.status() != 200) co_return errc::upstream_protocol;
  if (auto len = resp.content_length(); len && *len != meta.size) co_return errc::integrity_mismatch;
  co_return std::move(*sent);
}

}  // namespace hubcache::hub
