#include <hubcache/hub/service.hpp>

#include "api_handler.hpp"
#include "errors.hpp"
#include "fill.hpp"
#include "headers.hpp"
#include "hub_client.hpp"
#include "state.hpp"

#include <hubcache/util/text.hpp>

#include <hubcache/core/byte_range.hpp>
#include <hubcache/core/digest.hpp>
#include <hubcache/core/route.hpp>
#include <hubcache/util/blocking.hpp>
#include <hubcache/util/hash.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace hubcache::hub {
namespace {

namespace bhttp = boost::beast::http;

// Each streaming client holds one buffer of this size, so memory is bounded
// by connection counts, never by file size.
// 256 KiB amortises syscalls well on loopback and 10 GbE alike.
constexpr std::size_t k_copy_buffer = 256 * 1024;

// How long a client of a cold file waits for the fill to start before its
// headers are sent anyway (see stream_fill).
constexpr auto k_head_wait = std::chrono::seconds(3);

constexpr std::string_view k_warning_stale = "110 - \"Response is Stale\"";

storage::FileKey file_key(const core::FileRoute& r, const std::string& commit) {
  return {std::string(core::to_string(r.type)), r.repo, commit, r.path,
          r.kind == core::FileKind::raw ? "raw" : "resolve"};
}

bool is_get_or_head(bhttp::verb v) { return v == bhttp::verb::get || v == bhttp::verb::head; }

std::span<const std::byte> as_span(const std::vector<std::byte>& buf, std::size_t n) { return {buf.data(), n}; }

class Service final : public HubService {
 public:
  Service(ServiceOptions options, ServiceDeps deps)
      : m_options(std::move(options)),
        m_deps(std::move(deps)),
        m_hub(m_deps.http, m_options.upstream),
        m_state(m_options.policy, *m_deps.docs, *m_deps.blocking),
        m_api(m_hub, m_state, m_options.public_url),
        m_fills(std::make_shared<FillEngine>(m_options.fill, m_hub, *m_deps.store, m_deps.fill_loops)) {}

  net::awaitable<void> handle(http::Exchange& ex) override {
    const auto& req = ex.request();
    const auto target = std::string_view(req.target());
    // File routes first, in a small coroutine frame: a frame holds every
    // local of its body, and the API branch's made this one 1.2 KiB, a
    // malloc size that makes glibc consolidate its free lists (measured
    // on every cache hit).
    if (req.method() != bhttp::verb::options && target != "/healthz") {
      auto route = core::parse_file_route(target);
      if (route && *route) {
        co_await handle_file(ex, **route);
        co_return;
      }
      if (!route) {
        co_await ex.respond(error_response(400, "Malformed file path or revision", req.version()));
        co_return;
      }
    }
    co_await handle_other(ex);
  }

 private:
  // OPTIONS, /healthz and the API routes.
  net::awaitable<void> handle_other(http::Exchange& ex) {
    const auto& req = ex.request();
    const auto target = std::string_view(req.target());
    if (req.method() == bhttp::verb::options) {
      co_await m_api.preflight(ex);
      co_return;
    }
    if (target == "/healthz") {
      http::StringResponse res{bhttp::status::ok, req.version()};
      res.set(bhttp::field::content_type, "application/json");
      res.body() = R"({"status":"ok"})";
      co_await ex.respond(std::move(res));
      co_return;
    }
    if (req.method() == bhttp::verb::post && target.substr(0, target.find('?')).find("/paths-info/") != target.npos) {
      // A paths-info body selects the answer (and the cache key): read it
      // whole, bounded. Other request bodies stream through relay().
      if (auto read = co_await ex.read_body(); !read) {
        const bool too_large = read.error() == std::errc::message_size;
        co_await ex.respond(too_large ? error_response(413, "Request body too large", req.version())
                                      : error_response(read.error(), req.version()));
        co_return;
      }
    }
    auto api = parse_api_route(std::string_view(req.method_string()), target, req[bhttp::field::content_type],
                               req.body());
    if (!api) {
      co_await ex.respond(error_response(400, "Malformed API path or request body", req.version()));
    } else if (*api) {
      co_await m_api.handle(ex, **api);
    } else {
      co_await m_api.relay(ex);
    }
  }

  // ---- file routes -------------------------------------------------------

  net::awaitable<void> handle_file(http::Exchange& ex, const core::FileRoute& route) {
    const auto& req = ex.request();
    if (!is_get_or_head(req.method())) {
      auto res = error_response(errc::method_not_allowed, req.version());
      res.set(bhttp::field::allow, "GET, HEAD, OPTIONS");
      co_await ex.respond(std::move(res));
      co_return;
    }
    const auto& policy = m_state.policy();

    // A commit, or a branch whose mapping from an anonymous answer is still
    // fresh: a public repo's cached file is answered without asking upstream.
    std::string commit;
    if (core::is_commit_id(route.revision)) {
      commit = route.revision;
    } else if (auto m = co_await m_state.mapping(route.type, route.repo, route.revision);
               m && m->cred.empty() && (unix_now() - m->fetched_at) * 1000 < policy.revision_ttl.count()) {
      commit = m->commit;
    }
    if (!commit.empty() && m_state.public_now(route.type, route.repo, Access::files) &&
        co_await serve_cached(ex, route, commit, {})) {
      ex.set_outcome("hit");
      co_return;
    }
    co_await handle_file_upstream(ex, route);
  }

  // An anonymous request for a file of `commit` succeeded upstream: are all
  // the repo's files open to anyone? That one file does not tell (a gated
  // repo's README answers anyone), so the Hub's repo info decides, once per
  // public_ttl: only that answer starts or renews the files' public status.
  // A restricted verdict (or none) is kept as long, so that a gated repo's
  // README, or an /api in trouble, does not cost every request a second round
  // trip; a restricted one also ends what was known public before (the repo
  // was gated since).
  net::awaitable<bool> files_open(core::RepoType type, const std::string& repo, const std::string& commit) {
    if (m_state.public_now(type, repo, Access::files)) co_return true;
    if (m_state.files_restricted_now(type, repo)) co_return false;
    auto access = co_await m_hub.access_of(type, repo, commit);
    if (access && *access == RepoAccess::open) {
      co_await m_state.saw_public(type, repo, Access::files);
      co_return true;
    }
    m_state.saw_files_restricted(type, repo);
    if (!access) {
      spdlog::info("could not ask upstream whether {} is public: {}", repo_key(type, repo), access.error().message());
    } else {
      co_await m_state.saw_refusal(type, repo, Access::files);
    }
    co_return false;
  }

  // The rest of handle_file: everything that may ask upstream. A separate
  // coroutine so the hit path above runs in a small frame (a coroutine's
  // frame holds every local of its body; this one's are many).
  net::awaitable<void> handle_file_upstream(http::Exchange& ex, const core::FileRoute& route) {
    const auto& req = ex.request();
    const std::string auth(req[bhttp::field::authorization]);
    const std::string cred = credential_id(req);
    const auto& policy = m_state.policy();
    if (policy.offline || m_state.backing_off(cred)) {
      if (co_await serve_last_known(ex, route, cred)) co_return;
      if (policy.offline) {
        co_await ex.respond(error_response(503, "hubcache is offline and does not have this file", req.version()));
      } else {
        auto res = error_response(429, "Upstream Hub rate limit reached; retry later", req.version());
        res.set(bhttp::field::retry_after, "5");
        co_await ex.respond(std::move(res));
      }
      co_return;
    }

    // Everything else is authorized upstream with the caller's own credentials.
    auto probed = co_await m_hub.probe(route, auth);
    if (!probed) {
      if (co_await serve_last_known(ex, route, cred)) co_return;
      ex.set_outcome("upstream-error");
      spdlog::warn("upstream check failed for {} {}: {}", repo_key(route.type, route.repo), route.path,
                   probed.error().message());
      co_await ex.respond(error_response(probed.error(), req.version()));
      co_return;
    }
    if (auto* answer = std::get_if<UpstreamAnswer>(&*probed)) {
      const unsigned status = answer->status;
      if (status == 429) m_state.back_off(answer->headers, cred);
      if ((status >= 500 || status == 429) && co_await serve_last_known(ex, route, cred)) co_return;
      // A missing file or revision says nothing about who may read the repo.
      const auto code = answer->headers["X-Error-Code"];
      const bool missing = status == 404 && (code == "EntryNotFound" || code == "RevisionNotFound");
      if (auth.empty() && (status == 401 || status == 403 || (status == 404 && !missing))) {
        co_await m_state.saw_refusal(route.type, route.repo, Access::files);
      }
      ex.set_outcome("upstream");
      if (answer->body.empty() && req.method() == bhttp::verb::get) {
        // The check was a HEAD, which has no body; a GET caller (hub.js
        // shows it) gets the Hub's message the way the Hub's GET carries it.
        const auto message = std::string(answer->headers["X-Error-Message"]);
        if (!message.empty()) {
          answer->body = nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          answer->headers.set(bhttp::field::content_type, "application/json; charset=utf-8");
        }
      }
      co_await ex.respond(answer_response(std::move(*answer), req.version()));
      co_return;
    }
    const auto& meta = std::get<FileMeta>(*probed);
    if (auth.empty() && co_await files_open(route.type, route.repo, meta.commit)) {
      co_await m_state.saw_public_commit(route.type, route.repo, meta.commit);
    }
    if (!core::is_commit_id(route.revision)) {
      co_await m_state.remember_mapping(route.type, route.repo, route.revision, meta.commit, cred);
    }
    const auto key = file_key(route, meta.commit);

    std::optional<core::Sha256> sha;
    if (meta.lfs) {
      sha = core::Sha256::from_hex(meta.etag);
    } else if (auto known = co_await m_deps.index->blob_for_etag(meta.etag); known) {
      sha = *known;
    }
    if (sha) {
      auto reader = co_await m_deps.store->open(*sha);
      if (reader && *reader) {
        co_await remember(key, meta, *sha);
        ex.set_outcome("hit");
        co_await serve_blob(ex, route, meta, std::move(**reader));
        co_return;
      }
    }
    if (auto reader = co_await read_verified_fill(meta)) {
      ex.set_outcome("join");
      co_await serve_blob(ex, route, meta, std::move(reader));
      co_return;
    }

    if (req.method() == bhttp::verb::head) {
      // Metadata only: a HEAD never starts a download (fileExists and
      // metadata probes must stay cheap).
      ex.set_outcome("miss");
      http::HeadResponse res{bhttp::status::ok, req.version()};
      set_file_headers(res, route, meta);
      res.content_length(meta.size);
      co_await ex.write_head(res);
      co_return;
    }

    const auto decision = core::decide_range(range_of(req, meta), meta.size);
    if (decision.outcome == core::RangeOutcome::unsatisfiable) {
      co_await respond_416(ex, route, meta);
      co_return;
    }
    if (is_footer_read(req, decision, meta) && co_await relay_tail(ex, route, meta, decision, auth)) co_return;
    std::optional<std::uint64_t> prefer;
    if (decision.outcome == core::RangeOutcome::partial) prefer = decision.range.first;
    bool leader = false;
    auto member = m_fills->join(fill_source(route, meta, auth, key), prefer, leader, ex.executor());
    ex.set_outcome(leader ? "fill" : "join");
    co_await stream_fill(ex, route, meta, member.fill(), decision, auth);
  }

  // A closed or suffix range (`bytes=A-B`, `bytes=-N`) that ends at the
  // file's last byte and is at most one chunk long, of a file larger than
  // one chunk: how readers fetch a parquet footer or the tail of a file read
  // by offset. Not an open-ended `bytes=A-` (how downloads resume: they get
  // the last byte only verified, from the fill), and not another hubcache's
  // fill (its User-Agent), which verifies the whole blob before using any of
  // it, so relaying would only fetch the tail twice.
  bool is_footer_read(const http::Request& req, const core::RangeDecision& d, const FileMeta& meta) const {
    if (d.outcome != core::RangeOutcome::partial || d.range.first == 0 || d.range.last + 1 != meta.size ||
        meta.size <= m_options.fill.chunk_size || d.range.length() > m_options.fill.chunk_size) {
      return false;
    }
    return !util::trim(req[bhttp::field::range]).ends_with('-') &&
           !req[bhttp::field::user_agent].starts_with("hubcache/");
  }

  // From a fill, the file's last byte is released only once the whole blob
  // is verified, so a cold footer read would wait for the whole download (a
  // dataset reader's first request would take as long as the file). Such a
  // range is answered straight from upstream instead, as the CDN itself
  // answers it: unverified, like any range a CDN serves. It starts no fill:
  // a reader that goes on to read the rest starts one then. Each such
  // request is one upstream request (within upstream_connections_per_host).
  // False when upstream gave no usable answer before anything was sent: the
  // caller then serves the range from a fill.
  net::awaitable<bool> relay_tail(http::Exchange& ex, const core::FileRoute& route, const FileMeta& meta,
                                  const core::RangeDecision& decision, const std::string& auth) {
    const core::ByteRange range = decision.range;
    const std::optional<std::pair<std::uint64_t, std::uint64_t>> wanted{{range.first, range.last}};
    auto slot = co_await m_fills->host_slots(meta.content_url.origin()).acquire();
    auto resp = co_await m_hub.get_content(meta.content_url, meta.content_on_hub, auth, wanted);
    if (!resp) co_return false;
    auto& up = **resp;
    if (up.status() != 206 || !is_exact_range(up.headers(), up.content_length(), range.first, range.last, meta.size)) {
      co_return false;
    }
    ex.set_outcome("tail");
    if (!co_await write_file_head(ex, route, meta, decision)) co_return true;
    std::vector<std::byte> buf(std::min<std::uint64_t>(k_copy_buffer, range.length()));
    for (std::uint64_t sent = 0; sent < range.length();) {
      auto n = co_await up.read_some(buf);
      if (!n || *n == 0 || sent + *n > range.length()) {
        ex.close_after();  // cut short: the client sees an error, as from the CDN
        co_return true;
      }
      if (!co_await ex.write_body(as_span(buf, *n))) co_return true;
      sent += *n;
    }
    co_return true;
  }

  // What a fill needs from the Hub side: a way to refresh an expired CDN URL
  // (asking at the commit, so the content cannot change under it) and the
  // index record to write once the blob is verified.
  FillSource fill_source(const core::FileRoute& route, const FileMeta& meta, const std::string& auth,
                         const storage::FileKey& key) {
    FillSource source{meta, auth, {}, {}, {}};
    core::FileRoute at_commit = route;
    at_commit.revision = meta.commit;
    source.resolve_again = [this, at_commit, auth, etag = meta.etag,
                            size = meta.size]() -> net::awaitable<result<upstream::Url>> {
      auto probed = co_await m_hub.probe(at_commit, auth);
      if (!probed) co_return probed.error();
      const auto* fresh = std::get_if<FileMeta>(&*probed);
      if (fresh == nullptr || fresh->etag != etag || fresh->size != size) co_return errc::upstream_protocol;
      co_return fresh->content_url;
    };
    source.verified = [index = m_deps.index, key, meta](core::Sha256 sha) { index->remember(key, record_of(meta, sha)); };
    source.committed = [this, key, meta](core::Sha256 sha) -> net::awaitable<void> { co_await record(key, meta, sha); };
    return source;
  }

  // Serves `route` at `commit` from the index and the store; false when either
  // lacks it.
  net::awaitable<bool> serve_cached(http::Exchange& ex, const core::FileRoute& route, const std::string& commit,
                                    std::string_view warning) {
    auto fkey = file_key(route, commit);
    auto rec = co_await m_deps.index->get(std::move(fkey));
    if (!rec || !*rec) co_return false;
    auto& r = **rec;  // our copy: its strings move into meta
    auto reader = co_await m_deps.store->open(r.sha256);
    FileMeta meta{commit, std::move(r.etag), r.lfs, r.size, std::move(r.content_type), {}, true};
    if (reader && *reader) {
      co_await serve_blob(ex, route, meta, std::move(**reader), warning);
      co_return true;
    }
    // The record comes before the commit: the blob may be verified and
    // still committing, or committed a moment ago (the fill gone).
    auto from_fill = co_await read_verified_fill(meta);
    if (!from_fill) {
      reader = co_await m_deps.store->open(r.sha256);
      if (!reader || !*reader) co_return false;
      from_fill = std::move(**reader);
    }
    co_await serve_blob(ex, route, meta, std::move(from_fill), warning);
    co_return true;
  }

  // A reader over the file of a live fill that has verified `meta`'s blob and
  // is committing it; null when there is none.
  net::awaitable<storage::BlobReaderPtr> read_verified_fill(const FileMeta& meta) {
    auto member = m_fills->join_if_verified(meta);  // a client of the fill while we open it
    if (!member) co_return nullptr;
    auto reader = co_await member->fill().open_reader(*m_deps.store, m_options.fill_wait_timeout);
    co_return reader ? std::move(*reader) : nullptr;
  }

  // Upstream cannot be asked (down, 5xx, 429, offline): serve the last known
  // answer if the repo was public when last seen, marked stale.
  net::awaitable<bool> serve_last_known(http::Exchange& ex, const core::FileRoute& route, const std::string& cred) {
    std::string commit = route.revision;
    if (!core::is_commit_id(commit)) {
      auto m = co_await m_state.mapping(route.type, route.repo, route.revision);
      if (!m || !(m->cred.empty() || m->cred == cred)) co_return false;
      commit = m->commit;
    }
    if (!co_await m_state.last_known_public(route.type, route.repo, Access::files) ||
        !co_await m_state.commit_was_public(route.type, route.repo, commit)) {
      co_return false;
    }
    if (!co_await serve_cached(ex, route, commit, k_warning_stale)) co_return false;
    ex.set_outcome("stale");
    co_return true;
  }

  void set_file_headers(http::HeadResponse& res, const core::FileRoute& route, const FileMeta& meta) const {
    res.set("X-Repo-Commit", meta.commit);
    std::string quoted;
    quoted.reserve(meta.etag.size() + 2);
    quoted += '"';
    quoted += meta.etag;
    quoted += '"';
    res.set(bhttp::field::etag, quoted);
    if (meta.lfs) {
      res.set("X-Linked-Etag", quoted);
      res.set("X-Linked-Size", std::to_string(meta.size));
    }
    res.set(bhttp::field::accept_ranges, "bytes");
    res.set(bhttp::field::content_type, meta.content_type);
    res.set(bhttp::field::content_disposition, content_disposition(route.path));
    res.set(bhttp::field::vary, "Origin, Accept");
    // As the Hub answers: a repo's HTML or SVG opened from hubcache's origin
    // runs no script and loads nothing.
    res.set("Content-Security-Policy", "default-src 'none'; sandbox");
    add_cors_headers(res.base());
  }

  // The Range to honour: none when an If-Range names another version of the
  // file (RFC 9110 13.1.5: the whole file is the answer then). Only the strong
  // ETag matches; a date cannot, as no Last-Modified is sent.
  static std::string_view range_of(const http::Request& req, const FileMeta& meta) {
    const auto if_range = req[bhttp::field::if_range];
    const bool same = if_range.empty() || (if_range.size() == meta.etag.size() + 2 && if_range.front() == '"' &&
                                           if_range.back() == '"' && if_range.substr(1, meta.etag.size()) == meta.etag);
    return same ? std::string_view(req[bhttp::field::range]) : std::string_view{};
  }

  // The head of a 200/206 answer of `d` into `res`; returns the byte span to send.
  core::ByteRange file_head(http::HeadResponse& res, const core::FileRoute& route, const FileMeta& meta,
                            const core::RangeDecision& d, std::string_view warning) const {
    res.result(d.outcome == core::RangeOutcome::partial ? bhttp::status::partial_content : bhttp::status::ok);
    set_file_headers(res, route, meta);
    if (!warning.empty()) res.set(bhttp::field::warning, warning);
    core::ByteRange span{0, meta.size == 0 ? 0 : meta.size - 1};
    if (d.outcome == core::RangeOutcome::partial) {
      span = d.range;
      res.set(bhttp::field::content_range, "bytes " + std::to_string(span.first) + "-" + std::to_string(span.last) +
                                               "/" + std::to_string(meta.size));
      res.content_length(span.length());
    } else {
      res.content_length(meta.size);
    }
    return span;
  }

  // Writes the head for a 200/206 answer of `decision` and returns the byte
  // span to send.
  net::awaitable<result<core::ByteRange>> write_file_head(http::Exchange& ex, const core::FileRoute& route,
                                                          const FileMeta& meta, const core::RangeDecision& d,
                                                          std::string_view warning = {}) {
    http::HeadResponse res{bhttp::status::ok, ex.request().version()};
    const auto span = file_head(res, route, meta, d, warning);
    auto w = co_await ex.write_head(res);
    if (!w) co_return w.error();
    co_return span;
  }

  net::awaitable<void> respond_416(http::Exchange& ex, const core::FileRoute& route, const FileMeta& meta) {
    http::HeadResponse res{bhttp::status::range_not_satisfiable, ex.request().version()};
    set_file_headers(res, route, meta);
    res.set(bhttp::field::content_range, "bytes */" + std::to_string(meta.size));
    res.content_length(0);
    co_await ex.write_head(res);
  }

  net::awaitable<void> serve_blob(http::Exchange& ex, const core::FileRoute& route, const FileMeta& meta,
                                  storage::BlobReaderPtr reader, std::string_view warning = {}) {
    const auto& req = ex.request();
    const auto decision = core::decide_range(range_of(req, meta), meta.size);
    if (decision.outcome == core::RangeOutcome::unsatisfiable) {
      co_await respond_416(ex, route, meta);
      co_return;
    }
    if (req.method() == bhttp::verb::head) {  // the head alone, in this frame
      http::HeadResponse res{bhttp::status::ok, req.version()};
      file_head(res, route, meta, decision, warning);
      co_await ex.write_head(res);
      co_return;
    }
    const int fd = reader->native_handle();
    if (fd >= 0 && meta.size > 0) {
      // From the page cache: small bodies in one write with the head, large
      // ones zero-copy. The reader keeps the blob pinned and the fd open.
      http::HeadResponse res{bhttp::status::ok, req.version()};
      const auto range = file_head(res, route, meta, decision, warning);
      auto sent = co_await ex.write_head_and_file(res, fd, range.first, range.length());
      if (!sent && !ex.head_sent()) {
        spdlog::error("cache read failed for {}: {}", route.path, sent.error().message());
        co_await ex.respond(error_response(errc::storage_io, req.version()));
      } else if (!sent) {
        spdlog::debug("sending {} ended: {}", route.path, sent.error().message());
      }
      co_return;
    }
    auto span = co_await write_file_head(ex, route, meta, decision, warning);
    if (!span || meta.size == 0) co_return;
    std::vector<std::byte> buf(std::min<std::uint64_t>(k_copy_buffer, span->length()));
    for (std::uint64_t pos = span->first; pos <= span->last;) {
      const auto want = std::min<std::uint64_t>(buf.size(), span->last + 1 - pos);
      auto n = co_await reader->read_at(pos, {buf.data(), static_cast<std::size_t>(want)});
      if (!n || *n == 0) {
        spdlog::error("cache read failed for {}: {}", route.path, n ? "short blob" : n.error().message());
        ex.close_after();
        co_return;
      }
      if (!co_await ex.write_body(as_span(buf, *n))) co_return;  // client went away
      pos += *n;
    }
  }

  // ---- fills -------------------------------------------------------------

  net::awaitable<void> stream_fill(http::Exchange& ex, const core::FileRoute& route, const FileMeta& meta, Fill& fill,
                                   const core::RangeDecision& decision, const std::string& auth) {
    // Promise 200/206 only once the fill has its space and upstream's bytes
    // are flowing, so a failure there is a clean 507/502, not a short body.
    // Bounded, so a slow upstream still gets headers to the client well within
    // Python's 10 s read timeout. A Range client waits for its own first byte
    // (its chunk is fetched first).
    const std::uint64_t first_byte = decision.outcome == core::RangeOutcome::partial ? decision.range.first : 0;
    auto started = co_await fill.wm.wait_beyond(first_byte, k_head_wait, 1);
    if (!started && started.error() == make_error_code(errc::insufficient_storage) &&
        decision.outcome == core::RangeOutcome::full) {
      co_await pass_through(ex, route, meta, auth);
      co_return;
    }
    if (!started && started.error() != make_error_code(errc::timeout)) {
      co_await ex.respond(error_response(started.error(), ex.request().version()));
      co_return;
    }
    auto span = co_await write_file_head(ex, route, meta, decision);
    if (!span || meta.size == 0) {
      if (span) co_await fill.wm.wait_beyond(0, m_options.fill_wait_timeout);  // an empty file: just the outcome
      co_return;
    }
    storage::BlobReaderPtr reader;
    std::vector<std::byte> buf;  // only for a reader without a file descriptor
    std::uint64_t pos = span->first;
    const std::uint64_t end = span->last + 1;
    while (pos < end) {
      const auto worth_sending = std::min<std::uint64_t>(k_copy_buffer, end - pos);
      // Nothing here yet: ask for this chunk next, so a client reading a
      // range keeps its own bytes coming first.
      if (fill.wm.state(pos).available == pos) fill.prefer(pos);
      auto st = co_await fill.wm.wait_beyond(pos, m_options.fill_wait_timeout, worth_sending);
      if (!st && st.error() == errc::timeout && !fill.running()) continue;  // queued behind max_fills: keep waiting
      if (!st && reader) {
        // The fill failed after verifying the blob (its commit failed): our
        // reader still holds the verified bytes. A fill that failed before
        // has not released its last byte.
        if (auto now = fill.wm.state(pos); now.available >= fill.size) st = now;
      }
      if (!st || st->available <= pos) {
        // The fill failed: end the body short so the client sees an error.
        spdlog::warn("client of {} stopped at byte {}: {}", route.path, pos,
                     st ? "fill ended early" : st.error().message());
        ex.close_after();
        co_return;
      }
      if (!reader) {
        auto opened = co_await fill.open_reader(*m_deps.store, m_options.fill_wait_timeout);
        if (!opened) {
          ex.close_after();
          co_return;
        }
        reader = std::move(*opened);
      }
      const std::uint64_t avail = std::min(st->available, end);
      if (const int fd = reader->native_handle(); fd >= 0) {
        // sendfile: with 32 followers, copying every byte through user
        // space twice (pread, then send) cost more CPU than the fill itself.
        if (!co_await ex.write_file(fd, pos, avail - pos)) co_return;  // the fill goes on without us
        pos = avail;
        continue;
      }
      if (buf.empty()) buf.resize(std::min<std::uint64_t>(k_copy_buffer, span->length()));
      while (pos < avail) {
        const auto want = std::min<std::uint64_t>(buf.size(), avail - pos);
        auto n = co_await reader->read_at(pos, {buf.data(), static_cast<std::size_t>(want)});
        if (!n || *n == 0) {
          ex.close_after();
          co_return;
        }
        if (!co_await ex.write_body(as_span(buf, *n))) co_return;  // the fill goes on without us
        pos += *n;
      }
    }
  }

  // A file the cache cannot hold is streamed from upstream without being
  // stored. It is still verified on the way: its last byte goes out only once
  // the digest matched, so a wrong file never arrives complete. Its request
  // counts against upstream_connections_per_host like a fill's, for as long
  // as it streams (the connection is held that long, slow client or not).
  net::awaitable<void> pass_through(http::Exchange& ex, const core::FileRoute& route, const FileMeta& meta,
                                    const std::string& auth) {
    ex.set_outcome("pass");
    const core::RangeDecision whole;
    auto& slots = m_fills->host_slots(meta.content_url.origin());
    auto slot = slots.try_acquire();
    bool head_sent = false;
    if (!slot) {
      // Every slot is taken, perhaps for minutes by streams like this one:
      // the head goes out now, as a client of a queued fill gets it (a
      // client sent nothing gives up; huggingface_hub after 10 s). An
      // upstream failure then ends the body short instead of answering an
      // error status.
      if (!co_await write_file_head(ex, route, meta, whole)) co_return;
      head_sent = true;
      slot = co_await slots.acquire();
    }
    auto resp = co_await m_hub.open_content(meta, auth);
    if (!resp && head_sent) {
      spdlog::warn("pass-through of {} {}: {}; the client's body ends short", route.repo, route.path,
                   resp.error().message());
      ex.close_after();
      co_return;
    }
    if (!resp) {
      co_await ex.respond(error_response(resp.error(), ex.request().version()));
      co_return;
    }
    if (!head_sent && !co_await write_file_head(ex, route, meta, whole)) co_return;
    util::Sha256Hasher sha256;
    std::optional<util::GitBlobHasher> git;
    if (!meta.lfs) git.emplace(meta.size);
    std::vector<std::byte> buf(k_copy_buffer);
    std::uint64_t received = 0;
    std::byte last{};
    while (true) {
      auto n = co_await (*resp)->read_some(buf);
      if (!n || received + *n > meta.size) {
        ex.close_after();
        co_return;
      }
      if (*n == 0) break;
      const auto piece = as_span(buf, *n);
      if (git) git->update(piece);
      else sha256.update(piece);
      std::size_t now = *n;
      if (received + *n == meta.size) {  // hold the file's last byte back
        last = buf[*n - 1];
        --now;
      }
      if (now > 0 && !co_await ex.write_body(as_span(buf, now))) co_return;
      received += *n;
    }
    const bool verified = received == meta.size &&
                          (git ? core::GitSha1::from_hex(meta.etag) == git->finish()
                               : core::Sha256::from_hex(meta.etag) == sha256.finish());
    if (!verified) {
      spdlog::warn("pass-through of {} {} failed verification; the client's body ends short", route.repo, route.path);
      ex.close_after();
      co_return;
    }
    if (meta.size > 0) co_await ex.write_body(std::span<const std::byte>(&last, 1));
  }

  static storage::FileRecord record_of(const FileMeta& meta, const core::Sha256& sha) {
    return {meta.etag, meta.lfs, meta.size, sha, meta.content_type};
  }

  // Records (coordinates -> blob) unless the index has that already.
  net::awaitable<void> remember(const storage::FileKey& key, const FileMeta& meta, const core::Sha256& sha) {
    auto existing = co_await m_deps.index->get(key);
    if (existing && *existing && (*existing)->sha256 == sha) co_return;
    co_await record(key, meta, sha);
  }

  // Records durably, off the I/O thread. A failure only costs a future
  // upstream check, so it is logged, not returned.
  net::awaitable<void> record(const storage::FileKey& key, const FileMeta& meta, const core::Sha256& sha) {
    const storage::FileRecord rec = record_of(meta, sha);
    auto* index = m_deps.index;
    // Named, not a temporary: GCC 12 destroys a capturing lambda temporary
    // inside a co_await expression twice.
    auto job = [index, key, rec] { return index->put(key, rec); };
    auto put = co_await util::run_blocking(*m_deps.blocking, std::move(job));
    if (!put) spdlog::warn("could not record {} {} in the index: {}", key.repo, key.path, put.error().message());
  }

  ServiceOptions m_options;
  ServiceDeps m_deps;
  HubClient m_hub;
  HubState m_state;
  ApiHandler m_api;
  std::shared_ptr<FillEngine> m_fills;  // shared with running fills (see FillEngine)
};

}  // namespace

std::unique_ptr<HubService> make_hub_service(ServiceOptions options, ServiceDeps deps) {
  return std::make_unique<Service>(std::move(options), std::move(deps));
}

}  // namespace hubcache::hub
