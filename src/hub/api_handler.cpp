#include "api_handler.hpp"

#include "errors.hpp"
#include "headers.hpp"

#include <hubcache/core/digest.hpp>
#include <hubcache/flight/watermark.hpp>
#include <hubcache/storage/document_store.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <vector>

namespace hubcache::hub {
namespace {

using boost::beast::iequals;

// Relayed bodies stream through buffers of this size.
constexpr std::size_t k_relay_buffer = 256 * 1024;

// Headers of an API answer that are worth keeping with it.
constexpr std::array<std::string_view, 7> k_kept_headers = {
    "Content-Type", "Link", "X-Total-Count", "ETag", "X-Repo-Commit", "X-Error-Code", "X-Error-Message"};

constexpr std::string_view k_warning_stale = "110 - \"Response is Stale\"";
// A follower of a shared fetch gives up waiting after this and asks upstream
// itself; the leader's own fetch is bounded by the upstream timeouts.
constexpr auto k_shared_fetch_wait = std::chrono::seconds(120);
constexpr std::string_view k_warning_revalidation_failed = "111 - \"Revalidation Failed\"";

// The request's Content-Length, when it has a valid one.
std::optional<std::uint64_t> content_length(const http::Request& req) {
  const auto text = std::string_view(req[bhttp::field::content_length]);
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

bool is_entry_not_found(unsigned status, const bhttp::fields& h) {
  return status == 404 && h["X-Error-Code"] == "EntryNotFound";
}

std::int64_t age_ms(const CachedAnswer& a) { return (unix_now() - a.fetched_at) * 1000; }

// Conditional and range headers are one caller's: the answer to a fetch is
// shared with the callers that join it and kept for later ones, so it must
// be the whole document (a 200 is a valid answer to any of them).
bool is_conditional(bhttp::field name) {
  using F = bhttp::field;
  return name == F::if_none_match || name == F::if_modified_since || name == F::if_match ||
         name == F::if_unmodified_since || name == F::if_range || name == F::range;
}

}  // namespace

struct ApiHandler::Fetched {
  unsigned status = 0;
  bhttp::fields headers;
  std::string body;
};

// One upstream fetch of a cacheable miss, awaited by the identical requests
// that arrive while it runs.
struct ApiHandler::Flight {
  flight::Watermark done;                  // finished once `outcome` is set
  std::optional<result<Fetched>> outcome;  // written once, before done.finish()
};

// Ends a flight when destroyed: releases waiting followers (with an error
// if no answer was published) and unregisters it, so the next miss asks
// upstream again.
struct FlightEnd {
  flight::FlightRegistry<std::string, ApiHandler::Flight>& flights;
  std::string key;
  std::shared_ptr<ApiHandler::Flight> flight;
  ~FlightEnd();
};

struct ApiHandler::SharedFetch {
  result<Fetched> fetched;
  // True when this request asked upstream itself: it records the answer
  // (cache, public marks, mappings); a follower only serves it.
  bool leader = true;
  // The leader's flight stays joinable until the leader has recorded the
  // answer, so a request arriving meanwhile does not ask upstream again.
  std::unique_ptr<FlightEnd> end;
};

FlightEnd::~FlightEnd() {
  flights.remove(key, flight);
  flight->done.finish(make_error_code(errc::cancelled));  // ignored after a finish({})
}

ApiHandler::ApiHandler(HubClient& hub, HubState& state, std::string public_url)
    : m_hub(hub), m_state(state), m_public_url(std::move(public_url)) {}

std::string credential_id(const http::Request& req) {
  return credential_id(std::string_view(req[bhttp::field::authorization]), std::string_view(req[bhttp::field::cookie]));
}

http::StringResponse answer_response(UpstreamAnswer answer, unsigned version) {
  http::StringResponse res{static_cast<bhttp::status>(answer.status), version};
  for (const auto& f : answer.headers) res.insert(f.name_string(), f.value());
  add_cors_headers(res.base());
  res.body() = std::move(answer.body);
  return res;
}

std::string ApiHandler::rewrite_urls(std::string_view value, const http::Request& req) const {
  const std::string from = m_hub.base().origin() + m_hub.base().target;
  std::string out(value);
  const std::string to = m_public_url.empty() ? "http://" + std::string(req[bhttp::field::host]) : m_public_url;
  for (auto pos = out.find(from); pos != std::string::npos; pos = out.find(from, pos + to.size())) {
    out.replace(pos, from.size(), to);
  }
  return out;
}

std::chrono::milliseconds ApiHandler::ttl_for(const ApiRoute& route, const CachedAnswer& answer) const {
  const auto& p = m_state.policy();
  if (answer.status != 200) return p.negative_ttl;
  const bool at_commit = core::is_commit_id(route.revision);
  switch (route.kind) {
    case ApiKind::tree:
    case ApiKind::paths_info:
      // A listing at a commit never changes; with expand it carries security
      // scan results, which do.
      if (at_commit) return route.expand ? p.metadata_ttl : std::chrono::milliseconds::max();
      return p.revision_ttl;
    case ApiKind::info_at_revision:
    case ApiKind::commits:
      return at_commit ? p.metadata_ttl : p.revision_ttl;
    case ApiKind::refs:
      return p.revision_ttl;  // where the branches point now: as mutable as a branch
    case ApiKind::info:
      return p.metadata_ttl;
  }
  return p.metadata_ttl;
}

net::awaitable<result<ApiHandler::Fetched>> ApiHandler::fetch(const http::Request& req, bool anonymous) {
  upstream::Request up;
  up.method = req.method();
  up.url = m_hub.url_for(req.target());
  for (const auto& f : req) {
    const auto name = std::string_view(f.name_string());
    if (is_hop_by_hop(name) || f.name() == bhttp::field::host || f.name() == bhttp::field::content_length ||
        f.name() == bhttp::field::accept_encoding || is_conditional(f.name())) {
      continue;
    }
    if (anonymous && (f.name() == bhttp::field::authorization || f.name() == bhttp::field::cookie)) continue;
    if (f.name() == bhttp::field::accept) {
      const auto accept = strip_xet_accept(f.value());
      if (!accept.empty()) up.headers.set(bhttp::field::accept, accept);
      continue;
    }
    up.headers.insert(f.name_string(), f.value());
  }
  // Identity, so the body can be inspected (xetHash removal, revision sha).
  up.headers.set(bhttp::field::accept_encoding, "identity");
  up.body = req.body();
  up.read_only = true;  // routes are reads, paths-info's POST included
  auto sent = co_await m_hub.http().send(std::move(up));
  if (!sent) co_return sent.error();
  Fetched f;
  f.status = (*sent)->status();
  f.headers = (*sent)->headers();
  auto body = co_await (*sent)->read_all(storage::k_max_document_bytes);
  if (!body) co_return body.error();
  f.body = std::move(*body);
  co_return f;
}

net::awaitable<ApiHandler::SharedFetch> ApiHandler::fetch_shared(const http::Request& req, const ApiRoute& route,
                                                                  const std::string& cred) {
  std::string key = route.cache_key;
  key += '\0';
  key += cred;
  auto [flight, leader] = m_flights.join(key, [] { return new Flight(); });
  if (!leader) {
    auto waited = co_await flight->done.wait_beyond(0, k_shared_fetch_wait);
    if (waited && flight->outcome) co_return SharedFetch{*flight->outcome, false, nullptr};
    // The leader went away or is stuck: ask upstream ourselves.
    auto own = co_await fetch(req, false);
    co_return SharedFetch{std::move(own), true, nullptr};
  }
  // However this coroutine ends (even destroyed while suspended), followers
  // are released.
  // Built in place: a FlightEnd temporary would end the flight when destroyed.
  std::unique_ptr<FlightEnd> end(new FlightEnd{m_flights, std::move(key), flight});
  auto fetched = co_await fetch(req, false);
  flight->outcome = fetched;
  flight->done.finish({});
  co_return SharedFetch{std::move(fetched), true, std::move(end)};
}

net::awaitable<void> ApiHandler::serve(http::Exchange& ex, const CachedAnswer& answer, std::string_view warning) {
  const auto& req = ex.request();
  http::StringResponse res{static_cast<bhttp::status>(answer.status), req.version()};
  for (const auto& [name, value] : answer.headers) {
    if (iequals(name, "Link")) {
      res.insert(bhttp::field::link, rewrite_urls(value, req));
    } else {
      res.insert(name, value);
    }
  }
  add_cors_headers(res.base());
  res.set(bhttp::field::age, std::to_string(std::max<std::int64_t>(0, unix_now() - answer.fetched_at)));
  if (!warning.empty()) res.set(bhttp::field::warning, warning);
  res.body() = answer.body;
  co_await ex.respond(std::move(res));
}

net::awaitable<void> ApiHandler::store(const ApiRoute& route, const CachedAnswer& answer) {
  const auto key = answer_key(route.cache_key);
  if (!answer.cred.empty()) {
    // Keep a shareable (anonymous) copy rather than replace it with an
    // identical one only its token may reuse.
    if (auto doc = co_await m_state.get_document(key)) {
      if (auto old = decode_answer(*doc); old && old->cred.empty() && old->status == answer.status &&
                                          old->body == answer.body) {
        co_return;
      }
    }
  }
  co_await m_state.put_document(key, encode(answer));
}

net::awaitable<bool> ApiHandler::superseded(const ApiRoute& route, const CachedAnswer& answer) {
  // A stale revision answer must not contradict a newer branch -> commit
  // mapping learnt through another request (another expand= variant, or a
  // file request): a client would see main move back in time.
  if (route.kind != ApiKind::info_at_revision || core::is_commit_id(route.revision)) co_return false;
  auto m = co_await m_state.mapping(route.type, route.repo, route.revision);
  if (!m || m->fetched_at <= answer.fetched_at) co_return false;
  auto j = nlohmann::json::parse(answer.body, nullptr, false);
  co_return !(j.is_object() && j.contains("sha") && j["sha"] == m->commit);
}

net::awaitable<void> ApiHandler::handle(http::Exchange& ex, const ApiRoute& route) {
  const auto& req = ex.request();
  const std::string cred = credential_id(req);
  const bool anonymous = cred.empty();
  const auto& policy = m_state.policy();

  std::optional<CachedAnswer> stored;
  if (auto doc = co_await m_state.get_document(answer_key(route.cache_key))) stored = decode_answer(*doc);
  // Who may get the stored answer: anyone when it was fetched anonymously,
  // else only the caller whose token fetched it.
  const bool usable = stored && (stored->cred.empty() || stored->cred == cred);
  const bool shared_now = stored && stored->cred.empty() && m_state.public_now(route.type, route.repo, Access::metadata);
  // A token's own answer is reused without asking upstream for public_ttl at
  // most, whatever its freshness: the token may have been revoked, or its user
  // removed from the repo's org or from a gated repo's list, since.
  const bool own = stored && !cred.empty() && stored->cred == cred &&
                   age_ms(*stored) < std::chrono::duration_cast<std::chrono::milliseconds>(policy.public_ttl).count();
  const auto ttl = stored ? ttl_for(route, *stored) : std::chrono::milliseconds(0);
  const bool fresh = stored && (ttl == std::chrono::milliseconds::max() || age_ms(*stored) < ttl.count());
  // For serving without upstream: anonymous answers only for repos that were
  // public when last seen.
  auto usable_offline = [&]() -> net::awaitable<bool> {
    co_return usable &&
        (!stored->cred.empty() || co_await m_state.last_known_public(route.type, route.repo, Access::metadata));
  };

  if (policy.offline) {
    if (co_await usable_offline()) {
      ex.set_outcome("offline");
      co_await serve(ex, *stored, fresh ? std::string_view{} : k_warning_stale);
    } else {
      co_await ex.respond(error_response(503, "hubcache is offline and has no cached answer for this request",
                                         req.version()));
    }
    co_return;
  }
  if ((shared_now || own) && fresh) {
    ex.set_outcome("hit");
    co_await serve(ex, *stored, {});
    co_return;
  }
  const auto swr = policy.stale_while_revalidate.count();
  if (shared_now && swr > 0 && ttl != std::chrono::milliseconds::max() && age_ms(*stored) < ttl.count() + swr &&
      !co_await superseded(route, *stored)) {
    ex.set_outcome("stale");
    refresh_in_background(route, req, ex.executor());
    co_await serve(ex, *stored, k_warning_stale);
    co_return;
  }
  if (m_state.backing_off(cred)) {
    if (co_await usable_offline()) {
      ex.set_outcome("stale");
      co_await serve(ex, *stored, k_warning_stale);
    } else {
      auto res = error_response(429, "Upstream Hub rate limit reached; retry later", req.version());
      res.set(bhttp::field::retry_after, "5");
      co_await ex.respond(std::move(res));
    }
    co_return;
  }

  auto shared = co_await fetch_shared(req, route, cred);
  auto& fetched = shared.fetched;
  const bool leader = shared.leader;
  const bool upstream_failed = !fetched || fetched->status >= 500 || fetched->status == 429;
  if (fetched && fetched->status == 429 && leader) m_state.back_off(fetched->headers, cred);
  if (upstream_failed) {
    if (co_await usable_offline()) {
      ex.set_outcome("stale");
      co_await serve(ex, *stored, k_warning_revalidation_failed);
      co_return;
    }
    if (!fetched) {
      spdlog::warn("upstream failed for {}: {}", std::string_view(req.target()), fetched.error().message());
      co_await ex.respond(error_response(fetched.error(), req.version()));
      co_return;
    }
  }

  auto& f = *fetched;
  if (f.status == 200 || is_entry_not_found(f.status, f.headers)) {
    CachedAnswer answer;
    answer.status = f.status;
    for (const auto& h : f.headers) {
      for (auto kept : k_kept_headers) {
        if (iequals(std::string_view(h.name_string()), kept)) {
          std::string value(h.value());
          if (kept == "Link") value = strip_xet_links(value);
          if (!value.empty()) answer.headers.emplace_back(std::string(kept), std::move(value));
        }
      }
    }
    answer.body = std::move(f.body);
    if (f.status == 200 && (route.kind == ApiKind::tree || route.kind == ApiKind::paths_info)) {
      // Keep clients off xet: without xetHash they download through us.
      if (auto stripped = strip_xet_hash(answer.body)) answer.body = std::move(*stripped);
    }
    answer.fetched_at = unix_now();
    answer.cred = cred;
    if (!leader) {
      ex.set_outcome("shared");
      co_await serve(ex, answer, {});
      co_return;
    }
    if (anonymous) co_await m_state.saw_public(route.type, route.repo, Access::metadata);
    if (f.status == 200 && route.kind == ApiKind::info_at_revision && !core::is_commit_id(route.revision)) {
      auto j = nlohmann::json::parse(answer.body, nullptr, false);
      if (j.is_object() && j.contains("sha") && j["sha"].is_string() && core::is_commit_id(j["sha"].get<std::string>())) {
        co_await m_state.remember_mapping(route.type, route.repo, route.revision, j["sha"].get<std::string>(), cred);
      }
    }
    co_await store(route, answer);
    ex.set_outcome("miss");
    co_await serve(ex, answer, {});
    co_return;
  }

  // Refusals, renames and the rest: relayed, never cached or shared.
  // A missing revision says nothing about who may read the repo.
  const bool refusal = f.status == 401 || f.status == 403 ||
                       (f.status == 404 && f.headers["X-Error-Code"] != "RevisionNotFound");
  if (leader && anonymous && refusal) {
    co_await m_state.saw_refusal(route.type, route.repo, Access::metadata);
  }
  ex.set_outcome("upstream");
  http::StringResponse res{static_cast<bhttp::status>(f.status), req.version()};
  for (const auto& h : f.headers) {
    const auto name = std::string_view(h.name_string());
    if (is_hop_by_hop(name) || is_xet_header(name) || h.name() == bhttp::field::content_length) continue;
    if (h.name() == bhttp::field::location || h.name() == bhttp::field::link) {
      res.insert(h.name(), rewrite_urls(h.name() == bhttp::field::link ? strip_xet_links(h.value()) : std::string(h.value()), req));
      continue;
    }
    res.insert(h.name_string(), h.value());
  }
  add_cors_headers(res.base());
  res.body() = std::move(f.body);
  co_await ex.respond(std::move(res));
}

void ApiHandler::refresh_in_background(const ApiRoute& route, const http::Request& req,
                                       net::any_io_executor executor) {
  {
    std::lock_guard lock(m_mutex);
    if (!m_refreshing.insert(route.cache_key).second) return;  // one refresh per answer at a time
  }
  // The refresh runs anonymously: it renews the shared (public) answer.
  http::Request copy = req;
  copy.erase(bhttp::field::authorization);
  copy.erase(bhttp::field::cookie);
  auto task = [this, route, copy = std::move(copy)]() -> net::awaitable<void> {
    auto fetched = co_await fetch(copy, true);
    if (fetched && (fetched->status == 200 || is_entry_not_found(fetched->status, fetched->headers))) {
      CachedAnswer answer;
      answer.status = fetched->status;
      for (const auto& h : fetched->headers) {
        for (auto kept : k_kept_headers) {
          if (iequals(std::string_view(h.name_string()), kept)) {
            std::string value(h.value());
            if (kept == "Link") value = strip_xet_links(value);
            if (!value.empty()) answer.headers.emplace_back(std::string(kept), std::move(value));
          }
        }
      }
      answer.body = std::move(fetched->body);
      if (route.kind == ApiKind::tree || route.kind == ApiKind::paths_info) {
        if (auto stripped = strip_xet_hash(answer.body)) answer.body = std::move(*stripped);
      }
      answer.fetched_at = unix_now();
      co_await m_state.saw_public(route.type, route.repo, Access::metadata);
      co_await store(route, answer);
    } else if (fetched && (fetched->status == 401 || fetched->status == 403 || fetched->status == 404)) {
      co_await m_state.saw_refusal(route.type, route.repo, Access::metadata);
    } else if (fetched && fetched->status == 429) {
      m_state.back_off(fetched->headers, "");
    }
    std::lock_guard lock(m_mutex);
    m_refreshing.erase(route.cache_key);
  };
  net::co_spawn(executor, std::move(task), [this, key = route.cache_key](std::exception_ptr e) {
    if (e) {
      std::lock_guard lock(m_mutex);
      m_refreshing.erase(key);
    }
  });
}

net::awaitable<void> ApiHandler::preflight(http::Exchange& ex) {
  const auto& req = ex.request();
  http::StringResponse res{bhttp::status::no_content, req.version()};
  add_cors_headers(res.base());
  res.set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  const auto asked = req["Access-Control-Request-Headers"];
  res.set("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Range, Content-Type, Accept" : asked);
  res.set("Access-Control-Max-Age", "86400");
  co_await ex.respond(std::move(res));
}

net::awaitable<void> ApiHandler::relay(http::Exchange& ex) {
  const auto& req = ex.request();
  ex.set_outcome("relay");
  const auto method = req.method();
  if (m_state.policy().offline) {
    co_await ex.respond(error_response(503, "hubcache is offline: this request needs the upstream Hub", req.version()));
    co_return;
  }
  if (m_state.policy().read_only && method != bhttp::verb::get && method != bhttp::verb::head) {
    auto res = error_response(405, "hubcache is read-only: uploads and other writes are disabled", req.version());
    res.set(bhttp::field::allow, "GET, HEAD, OPTIONS");
    co_await ex.respond(std::move(res));
    co_return;
  }
  upstream::Request up;
  up.method = method;
  up.url = m_hub.url_for(req.target());
  for (const auto& f : req) {
    const auto name = std::string_view(f.name_string());
    if (is_hop_by_hop(name) || f.name() == bhttp::field::host || f.name() == bhttp::field::content_length) continue;
    if (f.name() == bhttp::field::accept) {
      const auto accept = strip_xet_accept(f.value());
      if (!accept.empty()) up.headers.set(bhttp::field::accept, accept);
      continue;
    }
    up.headers.insert(f.name_string(), f.value());
  }
  const bool may_have_body = method == bhttp::verb::post || method == bhttp::verb::put || method == bhttp::verb::patch;
  const auto declared = content_length(req);
  if (may_have_body && req.body().empty() && (!declared || *declared > 0) &&
      (declared || req.find(bhttp::field::transfer_encoding) != req.end())) {
    // Uploads and commits: streamed to upstream as they arrive, through one
    // bounded buffer, whatever their size (upstream enforces its limits).
    up.body_source = [&ex](std::span<std::byte> buf) { return ex.read_body_some(buf); };
    up.body_length = declared;
  } else {
    up.body = req.body();
  }
  auto sent = co_await m_hub.http().send(std::move(up));
  if (!sent) {
    co_await ex.respond(error_response(sent.error(), req.version()));
    co_return;
  }
  auto& resp = **sent;
  if (resp.status() < 200) {
    // Interim answers are never final: relaying one would desynchronise the
    // client, and the connection must not be reused.
    co_await ex.respond(error_response(errc::upstream_protocol, req.version()));
    co_return;
  }
  if (resp.status() == 429) m_state.back_off(resp.headers(), credential_id(req));
  http::HeadResponse res{static_cast<bhttp::status>(resp.status()), req.version()};
  for (const auto& f : resp.headers()) {
    const auto name = std::string_view(f.name_string());
    if (is_hop_by_hop(name) || is_xet_header(name) || f.name() == bhttp::field::content_length) continue;
    if (f.name() == bhttp::field::link) {
      const auto link = strip_xet_links(f.value());
      if (!link.empty()) res.insert(bhttp::field::link, rewrite_urls(link, req));
      continue;
    }
    if (f.name() == bhttp::field::location) {
      res.insert(bhttp::field::location, rewrite_urls(f.value(), req));
      continue;
    }
    res.insert(f.name_string(), f.value());
  }
  add_cors_headers(res.base());
  const auto status = resp.status();
  const bool bodyless = method == bhttp::verb::head || status == 204 || status == 304 || status < 200;
  const auto length = resp.content_length();
  if (bodyless) {
    if (length) res.content_length(*length);
    co_await ex.write_head(res);
    co_return;
  }
  if (length) res.content_length(*length);
  else res.chunked(true);
  if (!co_await ex.write_head(res)) co_return;
  std::vector<std::byte> buf(k_relay_buffer);
  while (true) {
    auto n = co_await resp.read_some(buf);
    if (!n) {
      ex.close_after();  // upstream broke mid-body: the client sees a short body
      co_return;
    }
    if (*n == 0) break;
    const std::span<const std::byte> chunk(buf.data(), *n);
    auto w = length ? co_await ex.write_body(chunk) : co_await ex.write_chunk(chunk);
    if (!w) co_return;
  }
  if (!length) co_await ex.finish_chunks();
}

}  // namespace hubcache::hub
