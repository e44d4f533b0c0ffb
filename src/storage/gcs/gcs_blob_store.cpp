// The GCS BlobStore. Contract and layout: gcs_blob_store.hpp; protocol
// details: gcs_client.hpp.
//
// Where work runs: append() writes the staging file on the caller's thread
// (page-cache writes, as the disk store does); creating staging files,
// reading them back for the upload and unlinking them run on the blocking
// pool; HTTP runs on the calling coroutine's io_context (upstream::HttpClient).
#include <hubcache/storage/gcs_blob_store.hpp>

#include "../posix_file.hpp"
#include "../staging_file.hpp"
#include "gcs_client.hpp"

#include <hubcache/util/blocking.hpp>
#include <hubcache/util/hash.hpp>

#include <boost/asio/post.hpp>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/file.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
using detail::UniqueFd;

constexpr std::string_view k_format = "1";  // object layout version, stored in each object's metadata
// GCS accepts resumable chunks only in multiples of this.
constexpr std::uint64_t k_chunk_granularity = 256 * 1024;
constexpr std::string_view k_default_endpoint = "https://storage.googleapis.com";
constexpr std::string_view k_default_metadata_server = "http://metadata.google.internal";
constexpr std::string_view k_lock_file = ".lock";
// Small objects (metadata records, leases) are read whole into memory; the
// largest is a cached API answer, bounded by the document store's limit.
constexpr std::size_t k_max_object_bytes = 32u << 20;

std::error_code make_err(errc e) { return make_error_code(e); }

// GCS reports md5Hash for every object and checks one sent with an upload.
class Md5Hasher {
 public:
  Md5Hasher() : m_ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    if (!m_ctx || EVP_DigestInit_ex(m_ctx.get(), EVP_md5(), nullptr) != 1) throw std::runtime_error("md5 unavailable");
  }
  void update(std::span<const std::byte> data) { EVP_DigestUpdate(m_ctx.get(), data.data(), data.size()); }
  // Base64, as GCS writes it.
  std::string finish() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(m_ctx.get(), digest, &length);
    return gcs::base64_encode(std::span(digest, length));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> m_ctx;
};

// Shared by the store and every reader and writer it hands out, which may
// outlive the store object.
class GcsState {
 public:
  GcsState(gcs::Client gcs_client, std::string prefix, fs::path staging, net::thread_pool& blocking)
      : client(std::move(gcs_client)),
        object_prefix(std::move(prefix)),
        blob_prefix(object_prefix + "blobs/"),
        staging_dir(std::move(staging)),
        pool(blocking) {}

  std::string object_name(const core::Sha256& key) const { return blob_prefix + key.hex(); }
  // The blob key of an object name, if it is one of ours ("<prefix>blobs/" +
  // 64 lower-case hex digits).
  std::optional<core::Sha256> key_of(std::string_view name) const {
    if (name.substr(0, blob_prefix.size()) != blob_prefix) return std::nullopt;
    const std::string_view hex = name.substr(blob_prefix.size());
    auto key = core::Sha256::from_hex(hex);
    if (!key || key->hex() != hex) return std::nullopt;
    return key;
  }
  fs::path new_staging_path() {
    return staging_dir / (m_staging_prefix + "-" + std::to_string(m_staging_counter.fetch_add(1)));
  }

  void reserve(std::uint64_t bytes) { update([&](StoreUsage& u) { u.reserved += bytes; }); }
  void release(std::uint64_t bytes) { update([&](StoreUsage& u) { u.reserved -= bytes; }); }
  void added(std::uint64_t bytes) {
    update([&](StoreUsage& u) {
      u.bytes += bytes;
      ++u.blobs;
    });
  }
  // Saturating: the blob may predate the last scan_usage().
  void removed(std::uint64_t bytes) {
    update([&](StoreUsage& u) {
      u.bytes -= std::min(u.bytes, bytes);
      u.blobs -= std::min<std::uint64_t>(u.blobs, 1);
    });
  }
  void scanned(std::uint64_t bytes, std::uint64_t blobs) {
    update([&](StoreUsage& u) {
      u.bytes = bytes;
      u.blobs = blobs;
    });
  }
  StoreUsage usage() const {
    std::lock_guard lock(m_mutex);
    return m_usage;
  }

  const gcs::Client client;
  const std::string object_prefix;  // the configured prefix
  const std::string blob_prefix;    // object_prefix + "blobs/"
  const fs::path staging_dir;
  net::thread_pool& pool;

 private:
  template <class Fn>
  void update(Fn fn) {
    std::lock_guard lock(m_mutex);
    fn(m_usage);
  }

  const std::string m_staging_prefix = detail::random_hex();
  std::atomic<std::uint64_t> m_staging_counter{0};
  mutable std::mutex m_mutex;
  StoreUsage m_usage;  // GUARDED_BY(m_mutex); limit stays 0 (none)
};



// Uploads `size` bytes from `read` as blob `key`, create-once, and checks
// what GCS stored: its size and MD5 must match the MD5 of what was read
// (`md5_read`, called after the upload), else that generation is deleted.
// `md5_ahead`, when known before the upload, is sent so that GCS itself
// refuses damaged bytes (emulators do not).
net::awaitable<result<void>> upload_blob(GcsState& state, const core::Sha256& key, std::uint64_t size,
                                         const std::string& md5_ahead, const gcs::ContentReader& read,
                                         const std::function<std::string()>& md5_read) {
  const std::string name = state.object_name(key);
  nlohmann::json resource = {
      {"contentType", "application/octet-stream"},
      {"metadata", {{"hubcache-sha256", key.hex()}, {"hubcache-size", std::to_string(size)}, {"hubcache-format", k_format}}}};
  if (!md5_ahead.empty()) resource["md5Hash"] = md5_ahead;
  auto created = co_await state.client.create_object(name, resource, size, read);
  if (!created) co_return created.error();
  if (!*created) {
    spdlog::debug("gcs: {} is stored already", name);
    co_return result<void>();
  }
  const gcs::ObjectInfo& object = **created;
  const std::string md5 = md5_read();
  if (object.size != size || (!object.md5_hash.empty() && object.md5_hash != md5)) {
    spdlog::error("gcs: {} was stored as {} bytes with md5 {}, but we sent {} bytes with md5 {}; deleting it", name,
                  object.size, object.md5_hash, size, md5);
    auto deleted = co_await state.client.delete_object(name, object.generation);
    (void)deleted;  // logged by the client on failure; the blob stays unusable either way
    co_return make_err(errc::integrity_mismatch);
  }
  state.added(size);
  co_return result<void>();
}

// Streams an object: one open-ended ranged GET, kept while the caller reads
// sequentially; a failure while reading the body reopens at the offset
// reached, up to the retry policy's attempts.
class GcsBlobReader final : public BlobReader {
 public:
  GcsBlobReader(std::shared_ptr<GcsState> state, std::string name, std::uint64_t size)
      : m_state(std::move(state)), m_name(std::move(name)), m_size(size) {}

  std::uint64_t size() const override { return m_size; }
  int native_handle() const noexcept override { return -1; }

  net::awaitable<result<std::size_t>> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    if (offset >= m_size || buf.empty()) co_return 0;
    const auto want = buf.first(static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), m_size - offset)));
    const gcs::Client& client = m_state->client;
    for (unsigned failures = 0;;) {
      if (!m_body || m_position != offset) {
        m_body.reset();  // a seek: drop the old GET (closes its connection)
        auto opened = co_await client.read_object(m_name, offset);
        if (!opened) co_return opened.error();
        m_body = std::move(*opened);
        m_position = offset;
      }
      auto n = co_await m_body->read_some(want);
      if (n && *n > 0) {
        m_position += *n;
        co_return *n;
      }
      // The body ended early (0 before m_size) or the connection failed.
      m_body.reset();
      if (++failures >= std::max(1u, client.retry_policy().max_attempts)) {
        spdlog::warn("gcs: read {} at {}: {}", m_name, offset, n ? "body ended early" : n.error().message());
        co_return n ? make_err(errc::storage_io) : gcs::to_storage_error(n.error());
      }
      co_await client.backoff(failures);
    }
  }

 private:
  std::shared_ptr<GcsState> m_state;
  const std::string m_name;
  const std::uint64_t m_size;
  upstream::ResponsePtr m_body;  // open GET, positioned at m_position
  std::uint64_t m_position = 0;
};

class GcsBlobWriter final : public BlobWriter {
 public:
  GcsBlobWriter(std::shared_ptr<GcsState> state, const ExpectedContent& expected, fs::path staging, UniqueFd fd)
      : m_state(std::move(state)),
        m_expected(expected),
        m_staging(std::move(staging)),
        m_fd(std::make_shared<UniqueFd>(std::move(fd))),
        m_data(m_fd->get(), m_staging, m_expected, m_state->pool,
               [this](std::span<const std::byte> data) { m_md5.update(data); }) {
    m_state->reserve(m_expected.size);
  }
  ~GcsBlobWriter() override {
    release();
    remove_staging();
  }
  GcsBlobWriter(const GcsBlobWriter&) = delete;
  GcsBlobWriter& operator=(const GcsBlobWriter&) = delete;

  result<void> write_at(std::uint64_t offset, std::span<const std::byte> data) override {
    const Phase phase = m_phase.load();
    if (phase == Phase::failed) return m_failure;
    if (data.empty()) return {};
    if (phase != Phase::open || m_data.verified()) return make_err(errc::integrity_mismatch);  // every byte is in already
    if (auto written = m_data.write_at(offset, data); !written) return fail(written.error());
    return {};
  }

  net::awaitable<result<void>> append(std::span<const std::byte> data) override {
    co_return write_at(m_data.prefix(), data);
  }

  std::uint64_t written() const noexcept override { return m_data.prefix(); }

  // May run on another thread than the owner's: it reads only m_phase and
  // what was published before it.
  result<BlobReaderPtr> open_reader() override {
    Phase phase = m_phase.load();
    if (phase == Phase::open || phase == Phase::committing) {
      auto fd = detail::open_file(m_staging, O_RDONLY);
      if (fd) return BlobReaderPtr(std::make_unique<detail::FileReader>(std::move(*fd), m_expected.size, m_staging));
      // The upload finished and the staging file went since we looked.
      phase = m_phase.load();
      if (phase != Phase::committed && phase != Phase::failed) return detail::io_error("open", m_staging, fd.error());
    }
    if (phase == Phase::failed) return m_failure;
    // After the commit the staging file is gone; the object has the bytes.
    return BlobReaderPtr(std::make_unique<GcsBlobReader>(m_state, m_state->object_name(m_key), m_expected.size));
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
    if (phase != Phase::open) co_return phase == Phase::failed ? m_failure : make_err(errc::bad_request);
    auto verified = co_await verify();
    if (!verified) co_return verified.error();
    const core::Sha256 key = *verified;
    m_key = key;  // published to open_reader() by the phase
    m_phase.store(Phase::committing);
    const std::string md5 = m_md5.finish();
    auto uploaded = co_await upload(key, md5);
    if (!uploaded) co_return fail(uploaded.error());
    m_phase.store(Phase::committed);
    release();
    remove_staging();  // readers from open_reader() keep their own descriptor
    co_return key;
  }

 private:
  enum class Phase { open, committing, committed, failed };

  net::awaitable<result<void>> upload(const core::Sha256& key, const std::string& md5) {
    // The staging file is read back in chunks on the blocking pool. The job
    // shares the descriptor, so it stays valid even if this writer goes away.
    const gcs::ContentReader read = [state = m_state, fd = m_fd, path = m_staging](
                                        std::uint64_t offset, std::size_t length) -> net::awaitable<result<std::string>> {
      auto job = [fd, path, offset, length]() -> result<std::string> {
        std::string chunk(length, '\0');
        auto n = detail::pread_full(fd->get(), std::as_writable_bytes(std::span(chunk)), offset);
        if (!n) return detail::io_error("read", path, n.error());
        if (*n != length) return detail::io_error("read", path, std::make_error_code(std::errc::io_error));
        return chunk;
      };
      co_return co_await util::run_blocking(state->pool, std::move(job));
    };
    const std::function<std::string()> md5_read = [&md5] { return md5; };
    co_return co_await upload_blob(*m_state, key, m_expected.size, md5, read, md5_read);
  }

  std::error_code fail(std::error_code ec) {
    m_failure = ec;  // before the phase publishes it
    m_phase.store(Phase::failed);
    release();
    remove_staging();  // open readers keep their own descriptor
    return ec;
  }

  void release() {
    if (!std::exchange(m_released, true)) m_state->release(m_expected.size);
  }

  // Unlinking a large file can take a while on some file systems; keep it
  // off the caller's (I/O) thread. If the pool has stopped, the next start
  // removes the leftover.
  void remove_staging() {
    if (std::exchange(m_staging_removed, true)) return;
    m_data.cancel();  // before the descriptor it reads goes
    m_fd.reset();  // upload reads hold their own reference while they run
    net::post(m_state->pool, [path = m_staging] { ::unlink(path.c_str()); });
  }

  std::shared_ptr<GcsState> m_state;
  const ExpectedContent m_expected;
  const fs::path m_staging;
  std::shared_ptr<UniqueFd> m_fd;  // O_RDWR on m_staging until it is removed; shared with upload reads
  Md5Hasher m_md5;
  detail::StagingFile m_data;  // written and hashed through *m_fd; feeds m_md5
  std::atomic<Phase> m_phase{Phase::open};
  bool m_released = false;         // reservation returned
  bool m_staging_removed = false;  // unlink posted
  // Written before m_phase becomes committing / failed, read only after
  // seeing that phase.
  core::Sha256 m_key;
  std::error_code m_failure;
};

class GcsStoreImpl final : public GcsBlobStore {
 public:
  GcsStoreImpl(UniqueFd staging_lock, std::shared_ptr<GcsState> state)
      : m_staging_lock(std::move(staging_lock)), m_state(std::move(state)) {}

  net::awaitable<result<std::optional<BlobReaderPtr>>> open(const core::Sha256& key) override {
    const std::string name = m_state->object_name(key);
    auto info = co_await m_state->client.get_object(name);
    if (!info) co_return info.error();
    if (!*info) co_return std::optional<BlobReaderPtr>();
    BlobReaderPtr reader = std::make_unique<GcsBlobReader>(m_state, name, (*info)->size);
    co_return std::optional<BlobReaderPtr>(std::move(reader));
  }

  net::awaitable<result<BlobWriterPtr>> create(const ExpectedContent& expected) override {
    if (!expected.sha256 && !expected.git_sha1) co_return make_err(errc::bad_request);
    auto job = [state = m_state, content = expected]() -> result<BlobWriterPtr> {
      const fs::path staging = state->new_staging_path();
      auto fd = detail::open_file(staging, O_RDWR | O_CREAT | O_EXCL, 0600);
      if (!fd) return detail::io_error("create", staging, fd.error());
      return BlobWriterPtr(std::make_unique<GcsBlobWriter>(state, content, staging, std::move(*fd)));
    };
    co_return co_await util::run_blocking(m_state->pool, std::move(job));
  }

  StoreUsage usage() const override { return m_state->usage(); }

  net::awaitable<result<std::optional<GcsBlobInfo>>> stat(const core::Sha256& key) override {
    const std::string name = m_state->object_name(key);
    auto info = co_await m_state->client.get_object(name);
    if (!info) co_return info.error();
    if (!*info) co_return std::optional<GcsBlobInfo>();
    co_return std::optional<GcsBlobInfo>(GcsBlobInfo{key, (*info)->size, (*info)->generation});
  }

  net::awaitable<result<bool>> remove(const core::Sha256& key) override {
    const std::string name = m_state->object_name(key);
    auto info = co_await m_state->client.get_object(name);
    // (result<bool> would take a bare error_code as a bool.)
    if (!info) co_return result<bool>(boost::system::in_place_error, info.error());
    if (!*info) co_return false;
    auto deleted = co_await m_state->client.delete_object(name, (*info)->generation);
    if (!deleted) co_return deleted;
    if (*deleted) m_state->removed((*info)->size);
    co_return *deleted;
  }

  net::awaitable<result<GcsListPage>> list(std::string page_token, unsigned max_results) override {
    const std::string token = std::move(page_token);
    auto page = co_await m_state->client.list_objects(m_state->blob_prefix, token, max_results);
    if (!page) co_return page.error();
    GcsListPage out;
    out.next_page_token = std::move(page->next_page_token);
    for (const auto& object : page->objects) {
      if (auto key = m_state->key_of(object.name)) out.blobs.push_back({*key, object.size, object.generation});
    }
    co_return out;
  }

  net::awaitable<result<void>> upload(const core::Sha256& key, BlobReader& source) override {
    // MD5 (what GCS checks) and sha256 (the name) of the bytes as they are
    // read. A failed resumable chunk is read again from an earlier offset;
    // only bytes past `hashed` are new. The last chunk is handed over only
    // once the sha256 matched: before it, GCS has no object, so bytes that
    // changed on disk since their verification never become visible.
    Md5Hasher md5;
    util::Sha256Hasher sha256;
    std::optional<bool> sha256_matches;
    std::uint64_t hashed = 0;
    const std::uint64_t size = source.size();
    const gcs::ContentReader read = [&](std::uint64_t offset, std::size_t length) -> net::awaitable<result<std::string>> {
      std::string chunk(length, '\0');
      std::size_t got = 0;
      while (got < length) {
        auto n = co_await source.read_at(offset + got, std::as_writable_bytes(std::span(chunk)).subspan(got));
        if (!n) co_return n.error();
        if (*n == 0) co_return make_err(errc::storage_io);  // the source is shorter than it said
        got += *n;
      }
      if (offset + length > hashed && offset <= hashed) {
        const auto fresh = std::as_bytes(std::span(chunk)).subspan(static_cast<std::size_t>(hashed - offset));
        md5.update(fresh);
        sha256.update(fresh);
        hashed = offset + length;
      }
      if (hashed == size && !sha256_matches) sha256_matches = sha256.finish() == key;
      if (offset + length == size && !sha256_matches.value_or(false)) {
        spdlog::error("gcs: not uploading {}: the bytes read do not match the name", key.hex());
        co_return make_err(errc::integrity_mismatch);
      }
      co_return chunk;
    };
    const std::function<std::string()> md5_read = [&md5] { return md5.finish(); };
    const std::string no_md5_ahead;
    co_return co_await upload_blob(*m_state, key, source.size(), no_md5_ahead, read, md5_read);
  }

  net::awaitable<result<std::optional<GcsObject>>> read_object(std::string name) override {
    const std::string full = m_state->object_prefix + name;
    auto got = co_await m_state->client.read_small(full, k_max_object_bytes);
    if (!got) co_return got.error();
    if (!*got) co_return std::optional<GcsObject>();
    co_return std::optional<GcsObject>(GcsObject{std::move((*got)->data), (*got)->generation});
  }

  net::awaitable<result<std::optional<std::int64_t>>> write_object(std::string name, std::string data,
                                                                   std::optional<std::int64_t> if_generation) override {
    const std::string full = m_state->object_prefix + name;
    const nlohmann::json resource = {{"contentType", "application/octet-stream"},
                                     {"metadata", {{"hubcache-format", k_format}}}};
    auto written = co_await m_state->client.write_small(full, resource, std::move(data), if_generation);
    if (!written) co_return written.error();
    if (!*written) co_return std::optional<std::int64_t>();
    co_return std::optional<std::int64_t>((*written)->generation);
  }

  net::awaitable<result<bool>> delete_object(std::string name, std::int64_t generation) override {
    const std::string full = m_state->object_prefix + name;
    co_return co_await m_state->client.delete_object(full, generation);
  }

  net::awaitable<result<StoreUsage>> scan_usage() override {
    std::uint64_t bytes = 0;
    std::uint64_t blobs = 0;
    std::string token;
    do {
      auto page = co_await list(token, 1000);
      if (!page) co_return page.error();
      for (const auto& blob : page->blobs) bytes += blob.size;
      blobs += page->blobs.size();
      token = std::move(page->next_page_token);
    } while (!token.empty());
    m_state->scanned(bytes, blobs);
    co_return m_state->usage();
  }

 private:
  UniqueFd m_staging_lock;  // flock on <staging>/.lock for the store's lifetime
  std::shared_ptr<GcsState> m_state;
};

// --- Startup (may throw) ---

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string with_scheme(std::string url) {
  if (url.find("://") == std::string::npos) url = "http://" + url;
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  return url;
}

std::string read_key_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) throw std::invalid_argument("gcs: cannot read credentials file " + path.string());
  return text.str();
}

// Takes the staging directory (exclusive flock, so two stores cannot delete
// each other's files) and removes what a previous run left there.
UniqueFd take_staging_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("gcs: cannot create staging directory " + dir.string() + ": " + ec.message());
  auto fd = detail::open_file(dir / k_lock_file, O_RDWR | O_CREAT, 0600);
  if (!fd) throw std::runtime_error("gcs: cannot open " + (dir / k_lock_file).string() + ": " + fd.error().message());
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("gcs: staging directory " + dir.string() + " is in use by another store");
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename() == k_lock_file) continue;
    fs::remove_all(entry.path(), ec);
    if (ec) spdlog::warn("gcs: cannot remove stray {}: {}", entry.path().string(), ec.message());
  }
  return std::move(*fd);
}

}  // namespace

std::unique_ptr<GcsBlobStore> make_gcs_blob_store(const GcsOptions& options, net::thread_pool& blocking) {
  if (options.bucket.empty()) throw std::invalid_argument("gcs: no bucket configured");
  if (options.staging_dir.empty()) throw std::invalid_argument("gcs: no staging directory configured");
  if (options.chunk_size == 0 || options.chunk_size % k_chunk_granularity != 0) {
    throw std::invalid_argument("gcs: chunk size " + std::to_string(options.chunk_size) +
                                " is not a positive multiple of 256 KiB");
  }

  const std::string emulator_host = env("STORAGE_EMULATOR_HOST");
  const bool from_emulator_env = options.endpoint.empty() && !emulator_host.empty();
  const std::string endpoint_text = with_scheme(
      !options.endpoint.empty() ? options.endpoint : from_emulator_env ? emulator_host : std::string(k_default_endpoint));
  auto endpoint = upstream::Url::parse(endpoint_text);
  if (!endpoint) throw std::invalid_argument("gcs: endpoint is not an http(s) URL: " + endpoint_text);

  GcsCredentials kind = options.credentials;
  fs::path key_file = options.credentials_file;
  if (kind == GcsCredentials::automatic) {
    if (!key_file.empty()) {
      kind = GcsCredentials::service_account_key;
    } else if (from_emulator_env) {
      kind = GcsCredentials::none;
    } else if (const std::string adc = env("GOOGLE_APPLICATION_CREDENTIALS"); !adc.empty()) {
      kind = GcsCredentials::service_account_key;
      key_file = adc;
    } else {
      kind = GcsCredentials::metadata_server;
    }
  }

  auto http = upstream::make_http_client(options.http);
  TokenSourcePtr tokens;
  std::string described;
  switch (kind) {
    case GcsCredentials::service_account_key:
      if (key_file.empty()) throw std::invalid_argument("gcs: service-account credentials need a credentials file");
      tokens = make_service_account_token_source(http, read_key_file(key_file));
      described = "service-account key " + key_file.string();
      break;
    case GcsCredentials::metadata_server: {
      const std::string host = env("GCE_METADATA_HOST");
      const std::string server = !options.metadata_server.empty() ? with_scheme(options.metadata_server)
                                 : !host.empty()                  ? with_scheme(host)
                                                                  : std::string(k_default_metadata_server);
      tokens = make_metadata_token_source(http, server);
      described = "metadata server " + server;
      break;
    }
    case GcsCredentials::none:
    case GcsCredentials::automatic:
      tokens = make_anonymous_token_source();
      described = "none";
      break;
  }

  UniqueFd lock = take_staging_dir(options.staging_dir);
  gcs::Client client(std::move(http), std::move(tokens),
                     gcs::ClientConfig{*endpoint, options.bucket, options.chunk_size, options.retry});
  spdlog::info("gcs blob store: gs://{}/{}blobs/ via {}, credentials: {}", options.bucket, options.prefix,
               endpoint->origin(), described);
  auto state = std::make_shared<GcsState>(std::move(client), options.prefix, options.staging_dir, blocking);
  return std::make_unique<GcsStoreImpl>(std::move(lock), std::move(state));
}

}  // namespace hubcache::storage
