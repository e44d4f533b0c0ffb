#include "fill.hpp"

#include "headers.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <deque>
#include <vector>

namespace hubcache::hub {

namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

namespace {

// Each fill worker holds one buffer of this size, so memory is bounded by
// fills x parallelism, never by file size. 256 KiB amortises syscalls.
constexpr std::size_t k_copy_buffer = 256 * 1024;
// Writes to the staging file are page-aligned (see FillRun::drain), and at
// most this long apart while bytes arrive.
constexpr std::uint64_t k_page = 4096;
constexpr auto k_write_interval = std::chrono::milliseconds(20);
// A fill re-resolves an expired URL at most this often (per fill): a Hub
// that keeps handing out dead URLs is an error, not a loop.
constexpr unsigned k_max_reresolves = 8;
// Offsets remembered for Range clients; more are ignored (they are hints).
constexpr std::size_t k_max_preferred = 64;

std::span<const std::byte> as_span(const std::vector<std::byte>& buf, std::size_t n) { return {buf.data(), n}; }

bool retryable(std::error_code ec) {
  return ec == errc::upstream_unavailable || ec == errc::upstream_timeout || ec == errc::upstream_protocol ||
         ec == errc::upstream_tls;
}

}  // namespace

// ---- Fill --------------------------------------------------------------------

net::awaitable<result<storage::BlobReaderPtr>> Fill::open_reader(storage::BlobStore& store,
                                                                 std::chrono::milliseconds wait) {
  while (true) {
    std::optional<core::Sha256> committed;
    {
      std::lock_guard lock(m_mutex);
      if (m_writer != nullptr) co_return m_writer->open_reader();
      committed = m_committed;
    }
    if (committed) {
      auto r = co_await store.open(*committed);
      if (!r) co_return r.error();
      if (!*r) co_return errc::storage_io;  // evicted in between: the client retries
      co_return std::move(**r);
    }
    // No writer (yet, or any more): the fill waits for its turn or its
    // space, found the blob stored by another replica, or failed. Wait for
    // the outcome.
    auto st = co_await wm.wait_beyond(size, wait);
    if (!st) co_return st.error();
  }
}

void Fill::prefer(std::uint64_t offset) {
  std::lock_guard lock(m_mutex);
  if (m_preferred.size() < k_max_preferred) m_preferred.push_back(offset);
}

// ---- FillRun: one transfer ---------------------------------------------------

// Lives on one strand (or single-threaded loop); every coroutine of the run
// holds a shared_ptr to it. State below is touched only on that executor
// unless marked otherwise.
class FillRun : public std::enable_shared_from_this<FillRun> {
 public:
  FillRun(std::shared_ptr<FillEngine> engine, std::shared_ptr<Fill> fill, FillSource source,
          net::any_io_executor executor)
      : m_engine_owner(std::move(engine)),
        m_engine(*m_engine_owner),
        m_fill(std::move(fill)),
        m_source(std::move(source)),
        m_executor(std::move(executor)),
        m_url(m_source.meta.content_url) {}

  static void start(std::shared_ptr<FillEngine> engine, std::shared_ptr<Fill> fill, FillSource source,
                    net::any_io_executor executor) {
    auto run = std::make_shared<FillRun>(std::move(engine), std::move(fill), std::move(source), std::move(executor));
    run->spawn(run->main());
  }

 private:
  struct Chunk {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;  // exclusive
    std::uint64_t pos = 0;  // next byte to write
    enum class State { pending, active, done } state = State::pending;
    // While a response body is being read: the response, since when, and
    // `pos` then.
    upstream::Response* reading = nullptr;
    Clock::time_point reading_since{};
    std::uint64_t reading_from = 0;
  };

  // A response whose body carries the bytes from a chunk's `pos`, with the
  // host slot it occupies.
  struct Opened {
    upstream::ResponsePtr resp;
    flight::Semaphore::Permit slot;
    std::uint64_t end = 0;  // the end of the bytes asked for (exclusive)
    bool whole = false;     // a 200 with the whole file (upstream ignored Range)
  };

  // What one request attempt came to when it did not open a body.
  struct Failure {
    std::error_code ec;
    bool retry = false;    // worth another attempt after a pause
    bool expired = false;  // the signed URL was refused: resolve it again
  };

  void spawn(net::awaitable<void> task) {
    auto self = shared_from_this();
    net::co_spawn(m_executor, std::move(task), [self](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& err) {
        spdlog::error("fill of {} ended by an internal error: {}", self->m_source.meta.etag, err.what());
      } catch (...) {
        spdlog::error("fill of {} ended by an internal error", self->m_source.meta.etag);
      }
      self->fail(make_error_code(errc::storage_io), "internal");
    });
  }

  const FileMeta& meta() const { return m_source.meta; }

  net::awaitable<void> main() {
    m_started = Clock::now();
    m_slot = co_await m_engine.m_fill_slots.acquire();
    m_fill->m_running.store(true);
    // Every client left while this fill waited for its turn: do not reserve
    // space (and evict) for it.
    if (stopped()) co_return fail(make_error_code(errc::cancelled), "queue");
    storage::ExpectedContent expected;
    expected.size = meta().size;
    if (meta().lfs) expected.sha256 = core::Sha256::from_hex(meta().etag);
    else expected.git_sha1 = core::GitSha1::from_hex(meta().etag);

    auto created = co_await m_engine.m_store.create(expected);
    if (!created && created.error() == errc::blob_available && expected.sha256) {
      // Another replica stored it while we waited for its lease. If it cannot
      // be read from here after all (GCS failed meanwhile), fill it from
      // upstream: the store then has no lease to wait for.
      auto stored = co_await m_engine.m_store.open(*expected.sha256);
      if (stored && *stored) {
        stored->reset();  // only looked: each client opens its own reader
        if (m_source.verified) m_source.verified(*expected.sha256);
        if (m_source.committed) co_await m_source.committed(*expected.sha256);
        finish_committed(*expected.sha256);
        co_return;
      }
      spdlog::warn("fill {}: stored by another replica but not readable here; filling it from upstream",
                   expected.sha256->hex());
      created = co_await m_engine.m_store.create(expected);
    }
    if (!created) co_return fail(created.error(), "reserve");
    m_writer = std::move(*created);
    {
      std::lock_guard lock(m_fill->m_mutex);
      m_fill->m_writer = m_writer.get();
    }
    if (meta().size == 0) {
      co_await finalize();
      co_return;
    }

    plan_chunks();

    // The first request also tells whether upstream honours Range; the
    // other workers start only once it did.
    const auto first = next_chunk();
    auto opened = co_await open_with_retries(m_chunks[*first]);
    if (!opened) co_return fail(opened.error(), "connect");
    if (opened->whole) {
      // One stream for the whole file: a single chunk from byte 0.
      m_chunks.assign(1, Chunk{0, meta().size, 0, Chunk::State::active});
      m_last_byte.reset();
      m_ranged = false;
    }
    const auto& opt = m_engine.m_options;
    m_workers = 1;
    if (m_ranged) {
      const unsigned extra = static_cast<unsigned>(std::min<std::size_t>(opt.parallelism, m_chunks.size())) - 1;
      for (unsigned i = 0; i < extra; ++i) {
        ++m_workers;
        spawn(worker(std::nullopt, {}));
      }
    }
    const std::size_t index = opened->whole ? 0 : *first;
    co_await worker(index, std::move(*opened));
  }

  // The chunk grid. A file of one chunk (or parallelism 1) is one plain GET:
  // no Range, so CDNs and upstream hubcaches treat it as usual.
  //
  // The first `parallelism` chunks grow from chunk_size / parallelism to
  // chunk_size. Workers that start together on equal chunks finish together,
  // chunk after chunk, and the bytes readable from the start (all a
  // streaming client can use) would then advance by parallelism x chunk_size
  // (128 MiB by default) once per chunk time, with nothing in between.
  // Staggered from the start, the workers finish one after another and the
  // readable prefix advances by about a chunk at a time, at the speed of all
  // connections together. (With equal chunks, 32 clients of a cold 1 GiB
  // file at 25 MB/s per connection had only the first chunk's bytes to send
  // for 0.7 s, the machine 60-80 % idle, then up to 128 MiB each at once.)
  void plan_chunks() {
    const auto& opt = m_engine.m_options;
    const std::uint64_t size = meta().size;
    m_ranged = opt.parallelism > 1 && size > opt.chunk_size;
    if (!m_ranged) {
      m_chunks.push_back({0, size, 0});
      return;
    }
    std::uint64_t begin = 0;
    for (unsigned k = 1; begin < size; ++k) {
      std::uint64_t len = opt.chunk_size;
      if (k < opt.parallelism) len = std::max(k_page, opt.chunk_size * k / opt.parallelism / k_page * k_page);
      const std::uint64_t end = std::min(size, begin + len);
      m_chunks.push_back({begin, end, begin});
      begin = end;
    }
    if (m_chunks.back().end - m_chunks.back().begin > 1) {
      // The last byte gets a chunk of its own: it is released only once the
      // whole blob is verified, so its chunk is never fetched early, and the
      // bytes before it should not share that fate (a closed range near the
      // end of a large file would wait for the whole download).
      Chunk& last = m_chunks.back();
      last.end -= 1;
      m_chunks.push_back({last.end, size, last.end});
    }
    m_last_byte = m_chunks.size() - 1;
  }

  // Fetches chunks until none is left or the fill stopped; the last worker
  // to finish finalizes the fill.
  net::awaitable<void> worker(std::optional<std::size_t> index, Opened opened) {
    std::vector<std::byte> buf(k_copy_buffer);
    while (!m_error && !stopped()) {
      if (!index) index = next_chunk();
      if (!index) {
        // Nothing to start or take over now; a running chunk may still
        // turn slow (or stall) enough to be worth sharing.
        if (!could_split()) break;
        co_await idle(std::min<Clock::duration>(split_worth(), std::chrono::milliseconds(100)));
        continue;
      }
      auto fetched = co_await fetch(m_chunks[*index], std::move(opened), buf);
      opened = {};
      index.reset();
      wake_idle();
      if (!fetched) {
        if (!m_error) m_error = fetched.error();
        break;
      }
    }
    if (--m_workers == 0) co_await finalize();
  }

  // Waits `d`, or until wake_idle().
  net::awaitable<void> idle(Clock::duration d) {
    net::steady_timer timer(m_executor, d);
    m_idle.push_back(&timer);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    std::erase(m_idle, &timer);
  }
  void wake_idle() {
    for (auto* timer : m_idle) timer->cancel();
  }

  // The next chunk to fetch: one a Range client is waiting for, else the
  // first one not started, else the back half of a running one (split()).
  // Marks it active. The file's last byte (a chunk of its own when ranged) is
  // never fetched early: it is held back until the whole blob is verified,
  // so a client gains nothing from it.
  std::optional<std::size_t> next_chunk() {
    std::optional<std::size_t> pick;
    {
      std::lock_guard lock(m_fill->m_mutex);
      auto& wanted = m_fill->m_preferred;
      while (!wanted.empty() && !pick) {
        const std::uint64_t offset = wanted.front();
        wanted.erase(wanted.begin());
        // The planned grid comes first, in file order; only its chunks are
        // ever pending (pieces split off start active).
        const auto it = std::find_if(m_chunks.begin(), m_chunks.end(), [&](const Chunk& c) { return c.end > offset; });
        const auto i = static_cast<std::size_t>(it - m_chunks.begin());
        if (it != m_chunks.end() && it->begin <= offset && it->state == Chunk::State::pending && i != m_last_byte) {
          pick = i;
        }
      }
    }
    while (!pick && m_next < m_chunks.size()) {
      if (m_chunks[m_next].state == Chunk::State::pending) pick = m_next;
      ++m_next;
    }
    if (!pick) return split();
    m_chunks[*pick].state = Chunk::State::active;
    return pick;
  }

  // Nothing is left to start: takes over the back half of the running chunk
  // that will take longest at its pace so far, so every connection works
  // until the end of the download instead of the last chunks finishing on
  // one or two of them, and a stalled request no longer holds a whole chunk
  // up for long (its front part still waits for the request to time out and
  // resume). The chunk's own request stops at the new end: its connection is
  // closed with the rest of the body unread, so whatever upstream had sent
  // past it is wasted. That is little when upstream is the slow end (bytes
  // in flight are about the connection's rate times the round trip), and
  // another connection gains nothing when the fill's reading is: a chunk is
  // split only if it would take more than 4 request latencies at its pace,
  // and not when more than a buffer of its bytes already wait to be read,
  // nor into pieces smaller than an eighth of a chunk.
  std::optional<std::size_t> split() {
    if (!splitting_pays()) return std::nullopt;
    const auto now = Clock::now();
    const auto worth = split_worth();
    using Seconds = std::chrono::duration<double>;
    Chunk* victim = nullptr;
    Seconds longest{};
    for (auto& c : m_chunks) {
      if (!splittable(c) || c.reading == nullptr || c.reading->waiting() > k_copy_buffer) {
        continue;
      }
      const Seconds elapsed = now - c.reading_since;
      const std::uint64_t got = c.pos - c.reading_from;
      // Nothing yet: stalled once it is late, else too early to tell.
      const Seconds left = got > 0 ? elapsed * static_cast<double>(c.end - c.pos) / static_cast<double>(got)
                                   : Seconds(elapsed > worth ? std::numeric_limits<double>::infinity() : 0.0);
      if (left > worth && left > longest) {
        victim = &c;
        longest = left;
      }
    }
    if (!victim) return std::nullopt;
    // The victim may hold up to a buffer of bytes past its `pos`, read but
    // not yet written: the new end lies beyond them (piece >= buffer).
    const std::uint64_t mid = (victim->pos + (victim->end - victim->pos) / 2 + k_page - 1) / k_page * k_page;
    m_chunks.push_back({mid, victim->end, mid, Chunk::State::active});
    victim->end = mid;
    ++m_splits;
    return m_chunks.size() - 1;
  }

  Clock::duration split_worth() const { return std::max<Clock::duration>(4 * m_latency, std::chrono::milliseconds(20)); }
  // A running chunk with at least two pieces (an eighth of a chunk, and no
  // less than a copy buffer) left.
  bool splittable(const Chunk& c) const {
    const std::uint64_t piece = std::max<std::uint64_t>(m_engine.m_options.chunk_size / 8, k_copy_buffer);
    return c.state == Chunk::State::active && c.end - c.pos >= 2 * piece;
  }
  // Whether a running chunk is large enough to be split if it turns slow.
  bool could_split() const {
    return splitting_pays() &&
           std::any_of(m_chunks.begin(), m_chunks.end(), [&](const Chunk& c) { return splittable(c); });
  }
  // Splits stop once the bytes they threw away (found waiting in a split
  // chunk's socket when it was closed) pass 1 % of the file: upstream then is
  // not the slow end, and a split gains nothing. (Against a local CDN without
  // a cap, on a loaded machine, a 64 MiB fill left 0.1-0.7 MiB unread per
  // split.)
  bool splitting_pays() const { return m_ranged && m_split_waste <= meta().size / 100; }

  bool stopped() const {
    std::lock_guard lock(m_fill->m_mutex);
    return m_fill->m_stopped;
  }

  // Writes chunk `c` from its `pos` to its end, resuming after failures.
  net::awaitable<result<void>> fetch(Chunk& c, Opened opened, std::vector<std::byte>& buf) {
    unsigned failures = 0;
    while (c.pos < c.end) {
      if (!opened.resp) {
        auto next = co_await open_with_retries(c);
        if (!next) co_return next.error();
        opened = std::move(*next);
      }
      const std::uint64_t before = c.pos;
      c.reading = opened.resp.get();
      c.reading_since = Clock::now();
      c.reading_from = c.pos;
      auto drained = co_await drain(*opened.resp, c, opened.end, buf);
      c.reading = nullptr;
      // Split: what already arrived past the new end is thrown away with the
      // connection.
      if (drained && c.end < opened.end) m_split_waste += opened.resp->waiting();
      opened = {};  // the connection goes back to the pool, or is closed
      if (drained) break;
      if (c.pos > before) failures = 0;  // progress: a new run of attempts
      if (m_error || !retryable(drained.error()) || stopped() || ++failures >= m_engine.m_options.chunk_attempts) {
        co_return drained.error();
      }
      ++m_retries;
      spdlog::debug("fill of {}: chunk at {} interrupted at {} ({}), resuming", meta().etag, c.begin, c.pos,
                    drained.error().message());
      co_await pause(failures);
    }
    c.state = Chunk::State::done;
    co_return result<void>();
  }

  // Reads a body into the blob at c.pos until the chunk is complete.
  //
  // Bytes are written in page-aligned pieces of up to a buffer, not as each
  // socket read returns them (tens of KiB at arbitrary offsets): a write that
  // starts or ends inside a page makes the file system zero the rest of that
  // page first, which was a third of a fill's CPU (measured). A piece goes
  // out when the buffer is full, when the chunk is complete, or
  // k_write_interval after the last one, so a slow download still trickles
  // to clients; on an error the bytes held are written before it is
  // returned, so a resumed request starts after them.
  // `asked_end` is where the response's bytes end: beyond c.end when the
  // chunk was split meanwhile, and then the rest of the body is left unread.
  net::awaitable<result<void>> drain(upstream::Response& resp, Chunk& c, std::uint64_t asked_end,
                                     std::vector<std::byte>& buf) {
    std::size_t held = 0;  // bytes at the front of buf that belong at c.pos
    auto written_at = Clock::now();
    while (c.pos + held < c.end) {
      const auto room = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - held, c.end - c.pos - held));
      auto n = co_await resp.read_some(std::span(buf.data() + held, room));
      if (!n || *n == 0) {
        if (auto w = write_held(c, buf, held, true); !w) co_return w.error();
        if (!n) co_return n.error();
        co_return errc::upstream_unavailable;  // the body ended short
      }
      // The body flows: from now on a read that waits stall_timeout means a
      // stall (idempotent, so no flag to keep).
      resp.shorten_read_timeout(m_engine.m_options.stall_timeout);
      held += *n;
      const auto now = Clock::now();
      if (held == buf.size() || c.pos + held == c.end || now - written_at >= k_write_interval) {
        if (auto w = write_held(c, buf, held, c.pos + held == c.end); !w) co_return w.error();
        written_at = now;
      }
    }
    if (c.end < asked_end) co_return result<void>();  // split: the connection is closed
    // Read the end of the body so the connection can be reused.
    std::array<std::byte, 1> probe{};
    auto end = co_await resp.read_some(probe);
    if (end && *end != 0) co_return errc::upstream_protocol;  // more than announced
    co_return result<void>();
  }

  // Writes the first `held` bytes of buf at c.pos (only its whole pages
  // unless `all`) and moves what is left to the front of buf.
  result<void> write_held(Chunk& c, std::vector<std::byte>& buf, std::size_t& held, bool all) {
    std::size_t n = held;
    if (!all) {
      const std::uint64_t page_end = (c.pos + held) / k_page * k_page;
      n = page_end > c.pos ? static_cast<std::size_t>(page_end - c.pos) : 0;
    }
    if (n == 0) return {};
    if (!m_writer) return m_error ? m_error : make_error_code(errc::cancelled);  // the fill failed meanwhile
    if (auto written = m_writer->write_at(c.pos, as_span(buf, n)); !written) return written.error();
    // The file's last byte stays back until the blob is verified.
    const std::uint64_t from = c.pos;
    c.pos += n;
    m_fill->wm.add(from, std::min(c.pos, meta().size - 1));
    std::memmove(buf.data(), buf.data() + n, held - n);
    held -= n;
    {
      std::lock_guard lock(m_fill->m_mutex);
      m_fill->m_received += n;
      if (m_fill->m_stopped) return errc::cancelled;
    }
    if (m_error) return m_error;  // another chunk failed the fill: stop downloading
    return {};
  }

  // Opens a body for c.pos..c.end, retrying transient failures and
  // re-resolving expired URLs.
  net::awaitable<result<Opened>> open_with_retries(const Chunk& c) {
    unsigned failures = 0;
    while (true) {
      if (stopped()) co_return errc::cancelled;
      if (m_error) co_return m_error;
      const unsigned generation = m_url_generation;
      auto attempt = co_await open(c);
      if (attempt) co_return std::move(*attempt);
      const Failure& f = attempt.error();
      if (f.expired) {
        auto refreshed = co_await refresh_url(generation);
        if (refreshed) continue;
        // The Hub did not answer (retried like a failed request), or the
        // CDN keeps refusing fresh URLs (the budget is spent: the fill fails).
        if (refreshed.error() == errc::upstream_protocol || !retryable(refreshed.error()) ||
            ++failures >= m_engine.m_options.chunk_attempts) {
          co_return refreshed.error();
        }
        co_await pause(failures);
        continue;
      }
      if (!f.retry || ++failures >= m_engine.m_options.chunk_attempts) co_return f.ec;
      ++m_retries;
      spdlog::debug("fill of {}: request for bytes {}- failed ({}), retrying", meta().etag, c.pos, f.ec.message());
      co_await pause(failures);
    }
  }

  // One request attempt.
  net::awaitable<boost::system::result<Opened, Failure>> open(const Chunk& c) {
    Opened opened;
    opened.slot = co_await m_engine.host_slots(m_url.origin()).acquire();
    std::optional<std::pair<std::uint64_t, std::uint64_t>> range;
    const bool whole_file = c.pos == 0 && c.end == meta().size && !m_ranged;
    if (!whole_file) range.emplace(c.pos, c.end - 1);
    opened.end = c.end;
    const auto asked = Clock::now();
    auto sent = co_await m_engine.m_hub.get_content(m_url, meta().content_on_hub, m_source.authorization, range);
    if (!sent) co_return Failure{sent.error(), retryable(sent.error()), false};
    m_latency = Clock::now() - asked;
    auto& resp = **sent;
    const unsigned status = resp.status();
    const auto len = resp.content_length();
    if (status == 206 && range) {
      if (!is_exact_range(resp.headers(), len, range->first, range->second, meta().size)) {
        spdlog::warn("fill of {}: upstream answered bytes {}-{} with Content-Range '{}'", meta().etag, range->first,
                     range->second, std::string_view(resp.headers()[bhttp::field::content_range]));
        co_return Failure{make_error_code(errc::upstream_protocol), false, false};
      }
      opened.resp = std::move(*sent);
      co_return opened;
    }
    if (status == 200) {
      // The whole file: asked for, or upstream ignores Range. Usable only
      // before other workers write (on the first request), read from byte 0.
      if (len && *len != meta().size) co_return Failure{make_error_code(errc::integrity_mismatch), false, false};
      if (whole_file || m_workers == 0) {
        opened.whole = !whole_file;
        opened.end = meta().size;
        opened.resp = std::move(*sent);
        co_return opened;
      }
      // Range worked for the first request: an edge that ignores it now and
      // then is asked again (with backoff) rather than failing the fill.
      spdlog::warn("fill of {}: upstream answered 200 to a Range request for bytes {}-", meta().etag, c.pos);
      co_return Failure{make_error_code(errc::upstream_protocol), true, false};
    }
    if ((status == 403 || status == 410) && !meta().content_on_hub) {
      spdlog::info("fill of {}: the CDN refused its signed URL ({}); asking the Hub for a new one", meta().etag, status);
      co_return Failure{make_error_code(errc::upstream_protocol), false, true};
    }
    const bool transient = status == 408 || status == 429 || status >= 500;
    spdlog::warn("fill of {}: upstream answered {} for bytes {}-", meta().etag, status, c.pos);
    co_return Failure{make_error_code(transient ? errc::upstream_unavailable : errc::upstream_protocol), transient,
                      false};
  }

  // Gets a new content URL unless another worker already did since
  // `generation`. Only a fresh URL obtained counts against the fill's
  // budget: when a URL expires, every worker in flight is refused at once
  // and they share one refresh, and a Hub that fails to answer is the
  // callers' retry (with backoff), not the CDN refusing fresh URLs.
  net::awaitable<result<void>> refresh_url(unsigned generation) {
    while (m_refreshing) co_await pause(0);
    if (m_url_generation != generation) co_return result<void>();
    if (m_reresolves >= k_max_reresolves) {
      spdlog::warn("fill of {}: the CDN refused its URL again after {} fresh ones; giving up", meta().etag,
                   k_max_reresolves);
      co_return make_error_code(errc::upstream_protocol);
    }
    m_refreshing = true;
    auto url = co_await m_source.resolve_again();
    m_refreshing = false;
    if (!url) co_return url.error();
    ++m_reresolves;
    m_url = std::move(*url);
    ++m_url_generation;
    co_return result<void>();
  }

  net::awaitable<void> pause(unsigned failures) {
    auto delay = failures == 0 ? std::chrono::milliseconds(20)
                               : m_engine.m_options.retry_backoff * (1u << std::min(failures - 1, 6u));
    net::steady_timer timer(m_executor, delay);
    co_await timer.async_wait(net::use_awaitable);
  }

  net::awaitable<void> finalize() {
    if (m_done) co_return;  // failed already
    if (m_error) co_return fail(m_error, "download");
    if (stopped()) co_return fail(make_error_code(errc::cancelled), "abandoned");
    if (m_writer->written() != meta().size) co_return fail(make_error_code(errc::integrity_mismatch), "size check");
    auto verified = co_await m_writer->verify();
    if (!verified) co_return fail(verified.error(), "verify");
    // Every byte is right: the index record becomes findable (in memory,
    // so a client's next request, made the moment it has its file, finds
    // it) and the last byte goes out, waking its waiters at once. The
    // clients wait neither for the commit, whose fsync of a large file may
    // take longer than a client waits for a byte, nor for the durable index
    // record, whose fsyncs queue behind that file's writeback. Requests that
    // find the record meanwhile read the staging file: open_reader() stays
    // valid during commit().
    if (m_source.verified) m_source.verified(*verified);
    m_fill->wm.add(0, meta().size, true);
    auto sha = co_await m_writer->commit();
    if (!sha) co_return fail(sha.error(), "commit");
    {
      std::lock_guard lock(m_fill->m_mutex);
      m_fill->m_writer = nullptr;
      m_fill->m_committed = *sha;  // in the same step: open_reader() never finds neither
    }
    m_writer.reset();
    if (m_source.committed) co_await m_source.committed(*sha);
    finish_committed(*sha);
  }

  void finish_committed(const core::Sha256& sha) {
    {
      std::lock_guard lock(m_fill->m_mutex);
      m_fill->m_committed = sha;
    }
    // Out of the registry first: a request arriving meanwhile finds the
    // committed blob, never a finished fill.
    m_engine.m_fills.remove(m_fill->key, m_fill);
    m_fill->wm.add(0, meta().size);
    m_fill->wm.finish({});
    m_done = true;
    const auto secs = std::chrono::duration<double>(Clock::now() - m_started).count();
    spdlog::info(
        "filled {} ({} bytes in {} chunk(s) of which {} split off ({} bytes received unread), {:.2f}s, {:.1f} MB/s, {} "
        "retries) -> {}",
        meta().etag, meta().size, m_chunks.size(), m_splits, m_split_waste, secs,
        secs > 0 ? static_cast<double>(meta().size) / secs / 1e6 : 0.0, m_retries, sha.hex());
  }

  void fail(std::error_code ec, std::string_view stage) {
    if (m_done) return;
    m_done = true;
    if (!m_error) m_error = ec;  // stops the other workers
    wake_idle();
    if (ec != errc::cancelled) {
      spdlog::warn("fill of {} failed at {}: {}", meta().etag, stage, ec.message());
    } else {
      spdlog::info("fill of {} stopped: no client is left", meta().etag);
    }
    {
      std::lock_guard lock(m_fill->m_mutex);
      m_fill->m_writer = nullptr;
    }
    m_writer.reset();  // discards the staging file and the reservation
    // Out of the registry first: a request arriving meanwhile starts a new
    // fill instead of joining this failed one.
    m_engine.m_fills.remove(m_fill->key, m_fill);
    m_fill->wm.finish(ec);
  }

  const std::shared_ptr<FillEngine> m_engine_owner;
  FillEngine& m_engine;
  const std::shared_ptr<Fill> m_fill;
  const FillSource m_source;
  const net::any_io_executor m_executor;
  upstream::Url m_url;  // the content URL; replaced when re-resolved
  unsigned m_url_generation = 0;
  unsigned m_reresolves = 0;  // for the whole fill (k_max_reresolves)
  bool m_refreshing = false;
  flight::Semaphore::Permit m_slot;  // one of FillOptions::max_fills
  storage::BlobWriterPtr m_writer;
  std::deque<Chunk> m_chunks;  // the grid, then pieces split off; a deque keeps workers' Chunk& valid
  std::size_t m_next = 0;      // chunks before it are not pending
  std::optional<std::size_t> m_last_byte;  // the chunk of the file's last byte, when ranged
  unsigned m_splits = 0;
  std::uint64_t m_split_waste = 0;  // bytes received past a split chunk's new end, unread
  Clock::duration m_latency{};  // of the last request answered: its time to the head
  std::vector<net::steady_timer*> m_idle;  // workers waiting in idle()
  bool m_ranged = false;
  unsigned m_workers = 0;
  std::error_code m_error;  // the first chunk failure
  unsigned m_retries = 0;
  bool m_done = false;
  Clock::time_point m_started;
};

// ---- FillEngine ----------------------------------------------------------------

FillEngine::FillEngine(FillOptions options, HubClient& hub, storage::BlobStore& store,
                       std::vector<net::any_io_executor> loops)
    : m_options(std::move(options)),
      m_loops(std::move(loops)),
      m_hub(hub),
      m_store(store),
      m_fill_slots(m_options.max_fills) {}

namespace {
// Keyed by digest and size: a client told another size for the same digest
// must not share (and be sized by) this fill.
std::string fill_key(const FileMeta& meta) { return meta.etag + "/" + std::to_string(meta.size); }
}  // namespace

FillEngine::Membership FillEngine::join(FillSource source, std::optional<std::uint64_t> prefer, bool& leader,
                                        net::any_io_executor executor) {
  while (true) {
    const std::string key = fill_key(source.meta);
    auto [fill, lead] = m_fills.join(key, [&] { return new Fill(source.meta.size, key); });
    {
      std::lock_guard lock(fill->m_mutex);
      if (fill->m_stopped) continue;  // abandoned a moment ago: it leaves the registry at once
      ++fill->m_clients;
    }
    leader = lead;
    if (prefer) fill->prefer(*prefer);
    Membership member(shared_from_this(), fill);
    if (lead) {
      if (!m_loops.empty()) executor = m_loops[m_next_loop++ % m_loops.size()];
      FillRun::start(shared_from_this(), std::move(fill), std::move(source), std::move(executor));
    }
    return member;
  }
}

std::optional<FillEngine::Membership> FillEngine::join_if_verified(const FileMeta& meta) {
  if (meta.size == 0) return std::nullopt;  // nothing to tell verified from not
  auto fill = m_fills.find(fill_key(meta));
  if (!fill) return std::nullopt;
  // Only a verified fill releases the file's last byte.
  if (const auto st = fill->wm.state(0); st.error || st.available < fill->size) return std::nullopt;
  {
    std::lock_guard lock(fill->m_mutex);
    if (fill->m_stopped) return std::nullopt;
    ++fill->m_clients;
  }
  return Membership(shared_from_this(), std::move(fill));
}

FillEngine::Membership::~Membership() {
  if (m_engine && m_fill) m_engine->leave(m_fill);
}

void FillEngine::leave(const std::shared_ptr<Fill>& fill) {
  std::lock_guard lock(fill->m_mutex);
  if (--fill->m_clients > 0 || fill->m_committed || fill->m_stopped) return;
  if (fill->size - std::min(fill->size, fill->m_received) <= m_options.abandon_above) return;
  fill->m_stopped = true;
  // Under the fill's lock, so a join sees either the live fill or none.
  m_fills.remove(fill->key, fill);
}

flight::Semaphore& FillEngine::host_slots(const std::string& origin) {
  std::lock_guard lock(m_hosts_mutex);
  auto& slot = m_hosts[origin];
  if (!slot) slot = std::make_unique<flight::Semaphore>(m_options.connections_per_host);
  return *slot;
}

}  // namespace hubcache::hub
