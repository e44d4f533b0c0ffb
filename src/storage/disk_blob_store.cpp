// The local-disk BlobStore. Layout and startup contract: disk_blob_store.hpp.
//
// Where work runs:
// - append(), read_at() and open() run on the caller's thread: they are
//   page-cache writes/reads and a dentry lookup, the same class of cost the
//   BlobReader contract already accepts for reads.
// - create() (possible eviction unlinks + creating the staging file), the
//   commit steps (fsync, rename, directory fsync) and the unlink of discarded
//   staging files run on the `blocking` pool; util::run_blocking resumes the
//   caller on its own executor.
//
// Consistency between the index and the disk: every change to blobs/ (commit
// rename, eviction's rename into staging/) happens while holding
// StoreState::m_mutex. A committed file is in blobs/ before the index lists
// it (publish() follows the directory fsync), and a blob being placed is
// tracked so that no other writer or eviction touches its file meanwhile.
// Evicted files are unlinked after the mutex is released (a large unlink
// takes a while). These steps only ever run on the blocking pool.
#include <hubcache/storage/disk_blob_store.hpp>

#include "posix_file.hpp"
#include "staging_file.hpp"

#include <hubcache/util/blocking.hpp>
#include <hubcache/util/hash.hpp>

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
using detail::UniqueFd;

constexpr int k_format = 1;
// Space is accounted in file-system blocks, so many small files are not
// under-counted (the approximation bazel-remote uses).
constexpr std::uint64_t k_block_size = 4096;
constexpr std::string_view k_cachedir_tag =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by hubcache.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n";

std::uint64_t round_up(std::uint64_t size) {
  const std::uint64_t blocks = size / k_block_size + (size % k_block_size != 0 ? 1 : 0);
  if (blocks > std::numeric_limits<std::uint64_t>::max() / k_block_size) return std::numeric_limits<std::uint64_t>::max();
  return blocks * k_block_size;
}

bool is_lower_hex(std::string_view s, std::size_t length) {
  return s.size() == length &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::error_code make_err(errc e) { return make_error_code(e); }

// Startup helpers: these may throw (std::runtime_error and subclasses).
[[noreturn]] void fail_startup(const std::string& message) {
  throw std::runtime_error("blob store: " + message);
}

void write_startup_file(const fs::path& path, std::string_view data) {
  if (auto ec = detail::write_file_atomic(path, data)) fail_startup("cannot write " + path.string() + ": " + ec.message());
}

void make_startup_dir(const fs::path& dir) {
  if (auto ec = detail::make_dir_durable(dir)) fail_startup("cannot create " + dir.string() + ": " + ec.message());
}

// Removes crash leftovers and foreign files; failing to is not fatal, the
// file is simply not part of the store.
void remove_garbage(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) {
    spdlog::warn("blob store: cannot remove stray {}: {}", path.string(), ec.message());
  } else {
    spdlog::info("blob store: removed stray {}", path.string());
  }
}

// Creates the root and its store.json if needed, takes an exclusive flock on
// store.json (so a second hubcache cannot share the root and delete the
// first one's staging files) and checks the format. Returns the locked
// descriptor; closing it releases the lock.
UniqueFd lock_root(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail_startup("cannot create " + root.string() + ": " + ec.message());

  const fs::path store_json = root / "store.json";
  if (!fs::exists(store_json)) {
    // store.json is written before blobs/ and staging/ exist, so finding those
    // without it means the directory is not ours: refuse rather than delete
    // someone's files at startup.
    for (const char* dir : {"blobs", "staging"}) {
      if (fs::exists(root / dir) && !fs::is_empty(root / dir)) {
        fail_startup(root.string() + " has a non-empty " + dir + "/ but no store.json; refusing to use it as a cache root");
      }
    }
    // Never replacing a store.json that appeared meanwhile: stores starting
    // on a fresh root at once must all lock the same file (a rename over it
    // gave each its own, and both went on). The hard link fails if it exists.
    const fs::path mine = root / ("store.json.new-" + std::to_string(::getpid()) + "-" +
                                  std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())));
    write_startup_file(mine, nlohmann::json{{"format", k_format}}.dump() + "\n");
    const bool linked = ::link(mine.c_str(), store_json.c_str()) == 0;
    const int link_errno = errno;
    if (!linked && (link_errno == EPERM || link_errno == ENOTSUP || link_errno == EOPNOTSUPP)) {
      // No hard links on this file system (some FUSE and SMB mounts): a
      // plain rename, as before; two stores starting at the very same moment
      // on a fresh root could then both go on.
      if (::rename(mine.c_str(), store_json.c_str()) != 0) {
        const int rename_errno = errno;
        ::unlink(mine.c_str());
        fail_startup("cannot create " + store_json.string() + ": " + std::generic_category().message(rename_errno));
      }
    } else if (!linked && link_errno != EEXIST) {
      ::unlink(mine.c_str());
      fail_startup("cannot create " + store_json.string() + ": " + std::generic_category().message(link_errno));
    }
    ::unlink(mine.c_str());
    if (auto dir_ec = detail::fsync_dir(root)) fail_startup("cannot fsync " + root.string() + ": " + dir_ec.message());
  }

  auto fd = detail::open_file(store_json, O_RDONLY);
  if (!fd) fail_startup("cannot open " + store_json.string() + ": " + fd.error().message());
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    fail_startup(root.string() + " is already in use by another blob store (flock on store.json)");
  }
  // A start that crashed between writing its store.json and linking it.
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.path().filename().string().starts_with("store.json.new-")) remove_garbage(entry.path());
  }

  auto text = detail::read_small_file(store_json, 4096);
  if (!text || !*text) fail_startup("cannot read " + store_json.string());
  const auto doc = nlohmann::json::parse(**text, nullptr, /*allow_exceptions=*/false);
  const auto format = doc.is_object() ? doc.find("format") : doc.end();
  if (format == doc.end() || !format->is_number_integer()) {
    fail_startup(store_json.string() + " is not a valid store description");
  }
  if (format->get<std::int64_t>() != k_format) {
    fail_startup(store_json.string() + " has format " + format->dump() + ", this hubcache supports format " +
                 std::to_string(k_format) + "; use a new cache directory or the matching hubcache version");
  }
  return std::move(*fd);
}

// A committed blob's descriptor and size, shared by its readers and by the
// store's cache of recently opened blobs. pread and sendfile take explicit
// offsets, so readers never disturb each other through a shared descriptor.
struct OpenBlob {
  UniqueFd fd;
  std::uint64_t size = 0;
};

// The state shared by the store and every reader and writer it hands out, so
// those may outlive the store object (their destructors unpin and unreserve
// here). Paths and limits are immutable after construction.
//
// REQUIRES at construction: the caller holds the root's lock (lock_root).
class StoreState {
 public:
  StoreState(const DiskStoreOptions& options, net::thread_pool& blocking);

  net::thread_pool& pool() const { return m_pool; }
  std::uint64_t limit() const { return m_max_bytes; }
  fs::path blob_path(const std::string& hex) const { return m_blobs / hex.substr(0, 2) / hex; }
  fs::path new_staging_path() {
    return m_staging / (m_staging_prefix + "-" + std::to_string(m_staging_counter.fetch_add(1)));
  }

  // Reserves `bytes` (already rounded), first evicting least recently used
  // unpinned blobs if needed. Evicts nothing when even evicting every
  // unpinned blob would not make room. Unlinks files: call on the pool.
  std::error_code reserve(std::uint64_t bytes);
  void release(std::uint64_t bytes);

  // Pins the blob against eviction and marks it recently used; `pinned` is
  // false when the blob is not stored. `persist_touches`: the caller should
  // run persist_touches() on the pool (see there).
  // `open`: the blob's cached descriptor, when cache_open() left one.
  struct Pin {
    bool pinned = false;
    bool persist_touches = false;
    std::shared_ptr<const OpenBlob> open;
  };
  Pin pin(const std::string& hex);
  // Keeps `blob` as the open descriptor of the stored blob `hex`, so the next
  // open() of a hot blob costs no open/fstat/close. At most k_open_blobs are
  // kept (least recently cached closed first); evicting a blob drops its
  // descriptor with its entry, so the space is freed once its last reader
  // ends, as without the cache.
  void cache_open(const std::string& hex, std::shared_ptr<const OpenBlob> blob);
  void unpin(const std::string& hex);
  // Drops an entry whose file has vanished from under us, unless pinned.
  void forget_if_unpinned(const std::string& hex);

  enum class Placed { renamed, existed };
  // Renames a verified, fsynced staging file to the blob `hex`'s path, not
  // yet visible: publish() does that once the rename is durable. If the blob
  // is already stored or being placed (another writer won) the staging file
  // is left alone and the reservation released. On a rename failure nothing
  // changes.
  result<Placed> place(const fs::path& staging, const std::string& hex, std::uint64_t reserved);
  // After place() returned renamed and the directory was fsynced: makes the
  // blob visible, converting the reservation into committed bytes.
  void publish(const std::string& hex, std::uint64_t reserved);
  // After place() returned renamed and the directory fsync failed: removes
  // the file and releases the reservation.
  void unplace(const std::string& hex, std::uint64_t reserved);

  StoreUsage usage() const;

  // Records "recently used" on disk (the atime that load_blobs() orders the
  // LRU by at the next start) for the blobs pin() touched since the last
  // call. Explicit, because relatime/noatime mounts would not record it.
  // Batched, at most once per k_touch_interval: one utimensat and one
  // hand-off to the pool per hit cost more than the rest of a small hit, and
  // a crash only loses the order of the last second's hits. Blocks: call on
  // the pool.
  void persist_touches();
  ~StoreState();

 private:
  static constexpr auto k_touch_interval = std::chrono::seconds(1);

  // Descriptors kept open by cache_open(). Bounded well below the usual
  // 1024-descriptor soft limit, which connections need more.
  static constexpr std::size_t k_open_blobs = 128;

  struct Entry {
    std::uint64_t bytes = 0;                   // rounded to blocks
    unsigned pins = 0;                         // open readers from open()
    std::list<std::string>::iterator lru_pos;  // position in m_lru
    bool touched = false;                      // in m_touched
    std::shared_ptr<const OpenBlob> open{};     // cached descriptor
    std::list<std::string>::iterator open_pos{};  // in m_open_order while `open` is set
  };

  void init_layout();
  void clear_staging();
  void load_blobs();
  // REQUIRES: m_mutex held (or single-threaded startup).
  void insert_locked(const std::string& hex, std::uint64_t bytes);
  // What an eviction leaves for after the lock: unlinking a large file
  // truncates it inside the call (tens of ms for GBs) and so may closing its
  // cached descriptor, while every hit on every I/O thread takes the lock.
  struct Evicted {
    fs::path path;                          // moved into staging/; empty if it was gone
    std::shared_ptr<const OpenBlob> open;   // the cached descriptor, if any
  };
  // Drops `hex` from the index and moves its file out of blobs/ (a rename,
  // so a new commit of the same blob cannot be hit by the later unlink).
  Evicted evict_locked(std::string hex);
  static void finish_evictions(std::vector<Evicted>& evicted);

  const fs::path m_root;
  const fs::path m_blobs;
  const fs::path m_staging;
  const std::uint64_t m_max_bytes;
  net::thread_pool& m_pool;
  const std::string m_staging_prefix = detail::random_hex();
  std::atomic<std::uint64_t> m_staging_counter{0};

  mutable std::mutex m_mutex;
  // Guarded by m_mutex: the index of committed blobs, their LRU order, the
  // space accounting, and the files under blobs/ themselves (see the file
  // comment). m_lru holds hex keys, most recently used first.
  std::list<std::string> m_lru;
  std::unordered_map<std::string, Entry> m_entries;
  std::uint64_t m_committed = 0;
  std::uint64_t m_reserved = 0;
  // Guarded by m_mutex: blobs used since the last persist_touches(), and
  // whether one is queued on the pool.
  std::vector<std::string> m_touched;
  std::chrono::steady_clock::time_point m_last_persist{};
  bool m_persist_queued = false;
  // Guarded by m_mutex: blobs with a cached descriptor, most recently used
  // first. A blob forgotten meanwhile may leave its name behind; such a name
  // is skipped when it reaches the end (its entry's open_pos is another node).
  std::list<std::string> m_open_order;
  // Guarded by m_mutex: blobs renamed into blobs/ whose publish() or
  // unplace() is still to come.
  std::unordered_set<std::string> m_placing;
};

StoreState::StoreState(const DiskStoreOptions& options, net::thread_pool& blocking)
    : m_root(options.root),
      m_blobs(options.root / "blobs"),
      m_staging(options.root / "staging"),
      m_max_bytes(options.max_bytes),
      m_pool(blocking) {
  if (m_max_bytes == 0) fail_startup("max_bytes must be > 0");
  init_layout();
  clear_staging();
  load_blobs();
}

void StoreState::init_layout() {
  if (!fs::exists(m_root / "CACHEDIR.TAG")) write_startup_file(m_root / "CACHEDIR.TAG", k_cachedir_tag);
  make_startup_dir(m_staging);
  make_startup_dir(m_blobs);
  // All 256 shard directories exist from the start, so a commit never has to
  // create (and fsync) a directory. One fsync of blobs/ covers them all.
  bool created = false;
  for (int i = 0; i < 256; ++i) {
    char shard[3];
    std::snprintf(shard, sizeof shard, "%02x", i);
    if (::mkdir((m_blobs / shard).c_str(), 0755) == 0) {
      created = true;
    } else if (const auto ec = detail::last_errno(); ec != std::errc::file_exists) {
      fail_startup("cannot create " + (m_blobs / shard).string() + ": " + ec.message());
    }
  }
  if (created) {
    if (auto ec = detail::fsync_dir(m_blobs)) fail_startup("cannot fsync " + m_blobs.string() + ": " + ec.message());
  }
}

void StoreState::clear_staging() {
  // Everything in staging/ belongs to writers of a previous run (we hold the
  // root's lock): their reservations are gone, so are they.
  for (const auto& entry : fs::directory_iterator(m_staging)) remove_garbage(entry.path());
}

void StoreState::load_blobs() {
  struct Found {
    std::string hex;
    std::uint64_t bytes;
    struct timespec atime;
  };
  std::vector<Found> found;
  for (const auto& shard : fs::directory_iterator(m_blobs)) {
    const std::string shard_name = shard.path().filename().string();
    if (!is_lower_hex(shard_name, 2) || !fs::is_directory(shard.symlink_status())) {
      remove_garbage(shard.path());
      continue;
    }
    for (const auto& file : fs::directory_iterator(shard.path())) {
      const std::string name = file.path().filename().string();
      struct stat st {};
      if (!is_lower_hex(name, 64) || name.compare(0, 2, shard_name) != 0 || ::lstat(file.path().c_str(), &st) != 0 ||
          !S_ISREG(st.st_mode)) {
        remove_garbage(file.path());
        continue;
      }
      found.push_back({name, round_up(static_cast<std::uint64_t>(st.st_size)), st.st_atim});
    }
  }
  // Oldest access first, so that inserting each as most recent rebuilds the
  // LRU order of the previous run (open() refreshes atime explicitly).
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.atime.tv_sec, a.atime.tv_nsec, a.hex) < std::tie(b.atime.tv_sec, b.atime.tv_nsec, b.hex);
  });
  for (const auto& f : found) insert_locked(f.hex, f.bytes);

  std::vector<Evicted> evicted;
  while (m_committed > m_max_bytes && !m_lru.empty()) evicted.push_back(evict_locked(m_lru.back()));
  finish_evictions(evicted);
  spdlog::info("blob store: {} blobs, {} bytes of {} in {}{}", m_entries.size(), m_committed, m_max_bytes,
               m_root.string(), evicted.empty() ? "" : " (evicted " + std::to_string(evicted.size()) + " to fit the limit)");
}

void StoreState::insert_locked(const std::string& hex, std::uint64_t bytes) {
  m_lru.push_front(hex);
  m_entries.emplace(hex, Entry{bytes, 0, m_lru.begin()});
  m_committed += bytes;
}

StoreState::Evicted StoreState::evict_locked(std::string hex) {  // a copy: callers pass m_lru's own strings
  Evicted out;
  const auto it = m_entries.find(hex);
  if (it == m_entries.end()) return out;
  const fs::path path = blob_path(hex);
  const fs::path doomed = m_staging / ("evicted-" + hex);
  if (::rename(path.c_str(), doomed.c_str()) == 0) {
    out.path = doomed;
  } else if (const auto ec = detail::last_errno(); ec != std::errc::no_such_file_or_directory) {
    // Not moved: unlinked here, under the lock, rather than left behind.
    spdlog::warn("blob store: cannot move {} out for eviction: {}", path.string(), ec.message());
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("blob store: cannot evict {}: {}", path.string(), detail::last_errno().message());
    }
  }
  out.open = std::move(it->second.open);
  if (out.open) m_open_order.erase(it->second.open_pos);
  m_committed -= it->second.bytes;
  m_lru.erase(it->second.lru_pos);
  m_entries.erase(it);
  return out;
}

void StoreState::finish_evictions(std::vector<Evicted>& evicted) {
  for (auto& e : evicted) {
    // Readers that still have the file open keep its bytes until they close.
    if (!e.path.empty() && ::unlink(e.path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("blob store: cannot remove evicted {}: {}", e.path.string(), detail::last_errno().message());
    }
    e.open.reset();
  }
  evicted.clear();
}

std::error_code StoreState::reserve(std::uint64_t bytes) {
  std::unique_lock lock(m_mutex);
  if (bytes > m_max_bytes) return make_err(errc::insufficient_storage);
  // committed + reserved <= max holds whenever the mutex is free, so none of
  // these sums overflow for any realistic limit.
  auto fits = [&](std::uint64_t freed) { return m_committed + m_reserved + bytes <= m_max_bytes + freed; };
  std::vector<std::string> victims;
  std::uint64_t freed = 0;
  for (auto it = m_lru.rbegin(); it != m_lru.rend() && !fits(freed); ++it) {
    const Entry& entry = m_entries.at(*it);
    if (entry.pins > 0) continue;
    victims.push_back(*it);
    freed += entry.bytes;
  }
  if (!fits(freed)) return make_err(errc::insufficient_storage);
  std::vector<Evicted> evicted;
  for (const auto& hex : victims) evicted.push_back(evict_locked(hex));
  m_reserved += bytes;
  lock.unlock();
  finish_evictions(evicted);
  return {};
}

void StoreState::release(std::uint64_t bytes) {
  std::lock_guard lock(m_mutex);
  m_reserved -= bytes;
}

StoreState::Pin StoreState::pin(const std::string& hex) {
  std::lock_guard lock(m_mutex);
  const auto it = m_entries.find(hex);
  if (it == m_entries.end()) return {};
  ++it->second.pins;
  m_lru.splice(m_lru.begin(), m_lru, it->second.lru_pos);
  if (!it->second.touched) {
    it->second.touched = true;
    m_touched.push_back(hex);
  }
  Pin out{true, false, it->second.open};
  if (out.open) m_open_order.splice(m_open_order.begin(), m_open_order, it->second.open_pos);
  if (!m_persist_queued && std::chrono::steady_clock::now() - m_last_persist >= k_touch_interval) {
    m_persist_queued = true;
    out.persist_touches = true;
  }
  return out;
}

void StoreState::cache_open(const std::string& hex, std::shared_ptr<const OpenBlob> blob) {
  std::lock_guard lock(m_mutex);
  const auto it = m_entries.find(hex);
  if (it == m_entries.end() || it->second.open) return;
  m_open_order.push_front(hex);
  it->second.open = std::move(blob);
  it->second.open_pos = m_open_order.begin();
  while (m_open_order.size() > k_open_blobs) {
    const auto last = std::prev(m_open_order.end());
    if (const auto victim = m_entries.find(*last); victim != m_entries.end() && victim->second.open &&
                                                   victim->second.open_pos == last) {
      victim->second.open.reset();  // closes unless a reader still uses it
    }
    m_open_order.erase(last);
  }
}

void StoreState::persist_touches() {
  std::vector<std::string> touched;
  {
    std::lock_guard lock(m_mutex);
    touched.swap(m_touched);
    for (const auto& hex : touched) {
      if (const auto it = m_entries.find(hex); it != m_entries.end()) it->second.touched = false;
    }
    m_last_persist = std::chrono::steady_clock::now();
    m_persist_queued = false;
  }
  // Best effort: a blob evicted meanwhile is simply not there any more.
  const struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  for (const auto& hex : touched) ::utimensat(AT_FDCWD, blob_path(hex).c_str(), times, 0);
}

StoreState::~StoreState() { persist_touches(); }

void StoreState::unpin(const std::string& hex) {
  std::lock_guard lock(m_mutex);
  // A pinned entry is never removed, so it is still here.
  const auto it = m_entries.find(hex);
  if (it != m_entries.end() && it->second.pins > 0) --it->second.pins;
}

void StoreState::forget_if_unpinned(const std::string& hex) {
  std::lock_guard lock(m_mutex);
  const auto it = m_entries.find(hex);
  if (it == m_entries.end() || it->second.pins > 0) return;
  m_committed -= it->second.bytes;
  m_lru.erase(it->second.lru_pos);
  m_entries.erase(it);
}

result<StoreState::Placed> StoreState::place(const fs::path& staging, const std::string& hex, std::uint64_t reserved) {
  std::lock_guard lock(m_mutex);
  if (const auto it = m_entries.find(hex); it != m_entries.end()) {
    m_lru.splice(m_lru.begin(), m_lru, it->second.lru_pos);
    m_reserved -= reserved;
    return Placed::existed;
  }
  if (m_placing.contains(hex)) {
    // Another writer of the same bytes is between its rename and publish():
    // its file is this blob, and must not be renamed over.
    m_reserved -= reserved;
    return Placed::existed;
  }
  const fs::path target = blob_path(hex);
  if (::rename(staging.c_str(), target.c_str()) != 0) return detail::last_errno();
  m_placing.insert(hex);
  return Placed::renamed;
}

void StoreState::publish(const std::string& hex, std::uint64_t reserved) {
  std::lock_guard lock(m_mutex);
  m_placing.erase(hex);
  m_reserved -= reserved;
  insert_locked(hex, reserved);
}

void StoreState::unplace(const std::string& hex, std::uint64_t reserved) {
  std::lock_guard lock(m_mutex);
  m_placing.erase(hex);
  m_reserved -= reserved;
  ::unlink(blob_path(hex).c_str());
}

StoreUsage StoreState::usage() const {
  std::lock_guard lock(m_mutex);
  return {m_committed, m_reserved, m_max_bytes, m_entries.size()};
}

// A reader over a staging file (BlobWriter::open_reader); it pins nothing.
// Readers from open() are CommittedBlobReaders.
class DiskBlobReader final : public detail::FileReader {
 public:
  DiskBlobReader(UniqueFd fd, std::uint64_t size, fs::path path) : FileReader(std::move(fd), size, std::move(path)) {}
};

// A reader from open(): shares the blob's descriptor and unpins it when
// destroyed.
class CommittedBlobReader final : public BlobReader {
 public:
  CommittedBlobReader(std::shared_ptr<const OpenBlob> blob, std::shared_ptr<StoreState> store, std::string hex)
      : m_blob(std::move(blob)), m_store(std::move(store)), m_hex(std::move(hex)) {}
  ~CommittedBlobReader() override { m_store->unpin(m_hex); }
  CommittedBlobReader(const CommittedBlobReader&) = delete;
  CommittedBlobReader& operator=(const CommittedBlobReader&) = delete;

  std::uint64_t size() const override { return m_blob->size; }
  net::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    auto n = detail::pread_full(m_blob->fd.get(), buf, offset);
    if (!n) co_return detail::io_error("read", m_store->blob_path(m_hex), n.error());
    co_return *n;
  }
  int native_handle() const noexcept override { return m_blob->fd.get(); }

 private:
  std::shared_ptr<const OpenBlob> m_blob;
  std::shared_ptr<StoreState> m_store;
  std::string m_hex;
};

// Owned by one coroutine (append/commit/destruction), as BlobWriter says.
// written() and open_reader() may also be called from other threads while
// the owner works: they read only atomics and fields published before them.
class DiskBlobWriter final : public BlobWriter {
 public:
  DiskBlobWriter(std::shared_ptr<StoreState> store, const ExpectedContent& expected, std::uint64_t reserved,
                 fs::path staging, UniqueFd fd)
      : m_store(std::move(store)),
        m_expected(expected),
        m_reserved(reserved),
        m_staging(std::move(staging)),
        m_fd(std::move(fd)),
        m_data(m_fd.get(), m_staging, m_expected, m_store->pool()) {}
  ~DiskBlobWriter() override {
    if (m_phase.load() == Phase::open) discard();
  }
  DiskBlobWriter(const DiskBlobWriter&) = delete;
  DiskBlobWriter& operator=(const DiskBlobWriter&) = delete;

  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data) override {
    const Phase phase = m_phase.load();
    if (phase == Phase::failed) return m_failure;
    if (data.empty()) return {};
    // Once verified or committing, every expected byte is there, so any more
    // is too many. (The commit owns the staging file now: do not discard.)
    if (phase != Phase::open || m_data.verified()) return make_err(errc::integrity_mismatch);
    if (auto written = m_data.write_at(offset, data); !written) return fail(written.error());
    return {};
  }

  net::awaitable<result<void>> append(std::span<const std::byte> data) override {
    co_return write_at(m_data.prefix(), data);
  }

  std::uint64_t written() const noexcept override { return m_data.prefix(); }

  result<BlobReaderPtr> open_reader() override {
    Phase phase = m_phase.load();
    if (phase == Phase::failed) return m_failure;
    fs::path path = phase == Phase::committed ? m_store->blob_path(m_key_hex) : m_staging;
    auto fd = detail::open_file(path, O_RDONLY);
    if (!fd && phase != Phase::committed && fd.error() == std::errc::no_such_file_or_directory) {
      // A commit renamed the staging file since we looked at the phase (this
      // may run on another thread); its final name has the same bytes.
      phase = m_phase.load();
      if (phase == Phase::failed) return m_failure;
      if (phase != Phase::open) {
        path = m_store->blob_path(m_key_hex);
        fd = detail::open_file(path, O_RDONLY);
      }
    }
    if (!fd) return detail::io_error("open", path, fd.error());
    return BlobReaderPtr(std::make_unique<DiskBlobReader>(std::move(*fd), m_expected.size, path));
  }

  net::awaitable<result<core::Sha256>> verify() override {
    if (m_phase.load() == Phase::failed) co_return m_failure;
    // REQUIRES: one verify or commit at a time (a second one gets bad_request).
    auto verified = co_await m_data.verify();
    if (!verified && verified.error() != errc::bad_request) co_return fail(verified.error());
    co_return verified;
  }

  net::awaitable<result<core::Sha256>> commit() override {
    const Phase phase = m_phase.load();
    if (phase == Phase::committed) co_return m_key;
    if (phase == Phase::failed) co_return m_failure;
    if (phase == Phase::committing) co_return make_err(errc::bad_request);  // REQUIRES: one commit at a time
    auto verified = co_await verify();
    if (!verified) co_return verified.error();
    const core::Sha256 key = *verified;

    // From here the pool job owns the staging file, its descriptor and the
    // reservation, and cleans up on every path, so nothing dangles even if
    // this coroutine is destroyed while suspended.
    m_key = key;
    m_key_hex = key.hex();
    m_phase.store(Phase::committing);  // publishes m_key/m_key_hex to open_reader()
    auto job = [store = m_store, staging = m_staging, fd = std::move(m_fd), hex = m_key_hex,
                reserved = m_reserved]() mutable -> result<void> {
      auto discard = [&] {
        ::unlink(staging.c_str());
        store->release(reserved);
      };
      if (auto ec = detail::fsync_fd(fd.get())) {
        discard();
        return detail::io_error("fsync", staging, ec);
      }
      fd.reset();
      auto placed = store->place(staging, hex, reserved);
      if (!placed) {
        discard();
        return detail::io_error("rename", staging, placed.error());
      }
      if (*placed == StoreState::Placed::existed) {
        ::unlink(staging.c_str());  // place() already released the reservation
        return {};
      }
      // Visible only once the rename is durable: a crash can then never
      // lose a blob that a client was told is there.
      const fs::path dir = store->blob_path(hex).parent_path();
      if (auto ec = detail::fsync_dir(dir)) {
        store->unplace(hex, reserved);
        return detail::io_error("fsync", dir, ec);
      }
      store->publish(hex, reserved);
      return {};
    };
    // Named, not a temporary inside co_await: see util/blocking.hpp.
    auto done = co_await util::run_blocking(m_store->pool(), std::move(job));
    if (!done) {
      m_failure = done.error();
      m_phase.store(Phase::failed);
      co_return m_failure;
    }
    m_phase.store(Phase::committed);
    co_return key;
  }

 private:
  enum class Phase { open, committing, committed, failed };

  // Drops the staging data and the reservation, remembering `ec` for later
  // calls. Returns `ec`.
  std::error_code fail(std::error_code ec) {
    m_failure = ec;  // before discard() publishes Phase::failed
    discard();
    return ec;
  }

  void discard() {
    m_phase.store(Phase::failed);
    m_data.cancel();  // before the descriptor it reads goes
    m_fd.reset();
    // Unlinking a large file can take a while on some file systems; keep it
    // off the caller's (I/O) thread. If the pool is stopped first, startup
    // removes the leftover.
    net::post(m_store->pool(), [path = m_staging] { ::unlink(path.c_str()); });
    m_store->release(m_reserved);
  }

  std::shared_ptr<StoreState> m_store;
  const ExpectedContent m_expected;
  const std::uint64_t m_reserved;  // bytes reserved in m_store until commit or discard
  const fs::path m_staging;
  UniqueFd m_fd;  // O_RDWR on m_staging while open
  detail::StagingFile m_data;  // written through m_fd, hashed on the pool
  std::atomic<Phase> m_phase{Phase::open};
  // Written before m_phase becomes committing / failed, read only after
  // seeing that phase.
  core::Sha256 m_key;
  std::string m_key_hex;
  std::error_code m_failure;
};

class DiskBlobStore final : public BlobStore {
 public:
  DiskBlobStore(UniqueFd root_lock, std::shared_ptr<StoreState> state)
      : m_root_lock(std::move(root_lock)), m_state(std::move(state)) {}

  net::awaitable<result<std::optional<BlobReaderPtr>>> open(const core::Sha256& key) override {
    const std::string hex = key.hex();
    // Pin first: from here on eviction leaves the file alone.
    auto pin = m_state->pin(hex);
    if (!pin.pinned) co_return std::optional<BlobReaderPtr>();
    if (pin.persist_touches) net::post(m_state->pool(), [state = m_state] { state->persist_touches(); });
    if (!pin.open) {
      const fs::path path = m_state->blob_path(hex);
      auto fd = detail::open_file(path, O_RDONLY);
      struct stat st {};
      if (fd && ::fstat(fd->get(), &st) != 0) fd = detail::last_errno();
      if (!fd) {
        m_state->unpin(hex);
        if (fd.error() == std::errc::no_such_file_or_directory) {
          spdlog::warn("blob store: {} vanished from disk; dropping it from the index", path.string());
          m_state->forget_if_unpinned(hex);
          co_return std::optional<BlobReaderPtr>();
        }
        co_return detail::io_error("open", path, fd.error());
      }
      auto blob = std::make_shared<OpenBlob>();
      blob->fd = std::move(*fd);
      blob->size = static_cast<std::uint64_t>(st.st_size);
      pin.open = blob;
      m_state->cache_open(hex, std::move(blob));
    }
    BlobReaderPtr reader = std::make_unique<CommittedBlobReader>(std::move(pin.open), m_state, hex);
    co_return std::optional<BlobReaderPtr>(std::move(reader));
  }

  net::awaitable<result<BlobWriterPtr>> create(const ExpectedContent& expected) override {
    const ExpectedContent content = expected;
    if (!content.sha256 && !content.git_sha1) co_return make_err(errc::bad_request);
    auto job = [state = m_state, content]() -> result<BlobWriterPtr> {
      const std::uint64_t bytes = round_up(content.size);
      if (auto ec = state->reserve(bytes)) {
        spdlog::info("blob store: no room for a blob of {} bytes: {}", content.size, ec.message());
        return ec;
      }
      const fs::path staging = state->new_staging_path();
      auto fd = detail::open_file(staging, O_RDWR | O_CREAT | O_EXCL, 0644);
      if (!fd) {
        state->release(bytes);
        return detail::io_error("create", staging, fd.error());
      }
      return BlobWriterPtr(std::make_unique<DiskBlobWriter>(state, content, bytes, staging, std::move(*fd)));
    };
    co_return co_await util::run_blocking(m_state->pool(), std::move(job));
  }

  StoreUsage usage() const override { return m_state->usage(); }

 private:
  // Held by the store object, not the shared state: readers, writers and
  // finishing pool jobs may keep the state alive a little longer, and a
  // restart must not trip over them.
  UniqueFd m_root_lock;
  std::shared_ptr<StoreState> m_state;
};

}  // namespace

std::unique_ptr<BlobStore> make_disk_blob_store(const DiskStoreOptions& options, net::thread_pool& blocking) {
  if (options.root.empty()) fail_startup("no root directory configured");
  UniqueFd lock = lock_root(options.root);
  auto state = std::make_shared<StoreState>(options, blocking);
  return std::make_unique<DiskBlobStore>(std::move(lock), std::move(state));
}

}  // namespace hubcache::storage
