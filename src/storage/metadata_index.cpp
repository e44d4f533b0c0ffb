// The on-disk MetadataIndex: one small JSON file per record, written with
// posix_file's atomic write. Layout under `dir` (format 1):
//   dir/index.json                       {"format": 1}; another version refuses to start
//   dir/files/<aa>/<hex>.json            hex = sha256 of the key's canonical encoding;
//                                        {"key": {...FileKey}, "record": {...FileRecord}}
//   dir/etags/<aa>/<hex>.json            hex = sha256 of the unquoted etag (upstream
//                                        etags are not trusted as file names);
//                                        {"etag": "...", "sha256": "..."}
//   <any of the above>.tmp-<random>      leftover of a crash mid-write; never read
//
// Each file holds its own key, so a lookup verifies it found what it asked
// for. A file that does not parse or does not match is treated as absent
// (and logged): the worst case is a refetch from upstream, never a crash.
//
// Every record is a whole file replaced by rename, so readers see the old or
// the new version, never a mix. In front of the files sits a bounded
// in-memory copy of recently used records and etag mappings: a cache hit
// looks its record up on every request, and a file read plus a JSON parse
// cost more than the rest of the hit. It stays exact because this object is
// the only writer of its directory while it is open (the blob store's flock
// on the cache root keeps a second hubcache out), and put() updates it once
// the files are durable. A get() that read the disk while a put() ran does
// not store what it read (the generation check), so it cannot overwrite the
// newer record with the older one.
#include <hubcache/storage/metadata_index.hpp>

#include "lru_map.hpp"
#include "posix_file.hpp"

#include <hubcache/util/hash.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
using nlohmann::json;

constexpr int k_format = 1;
// Records are a few hundred bytes; anything much larger is not ours.
constexpr std::size_t k_max_file_bytes = 64 * 1024;
// Records kept in memory (and as many etag mappings). A record takes about
// 400 bytes with its key, so this bounds the cache near 6 MiB while holding
// the hot files of many repos.
constexpr std::size_t k_cached_records = 16 * 1024;

std::string sha256_hex(std::string_view data) {
  util::Sha256Hasher hasher;
  hasher.update(data);
  return hasher.finish().hex();
}

// Length-prefixed fields: unambiguous for any bytes ("a/b"+"c" differs from
// "a"+"b/c") and independent of how a JSON library escapes strings.
std::string canonical_key(const FileKey& key) {
  std::string out;
  out.reserve(key.repo_type.size() + key.repo.size() + key.commit.size() + key.path.size() + key.kind.size() + 20);
  for (const std::string* field : {&key.repo_type, &key.repo, &key.commit, &key.path, &key.kind}) {
    out += std::to_string(field->size());
    out += ':';
    out += *field;
  }
  return out;
}

json key_to_json(const FileKey& key) {
  return {{"repo_type", key.repo_type}, {"repo", key.repo}, {"commit", key.commit}, {"path", key.path},
          {"kind", key.kind}};
}

// These throw nlohmann::json::exception on a malformed document; callers
// catch it.
FileKey key_from_json(const json& j) {
  return {j.at("repo_type").get<std::string>(), j.at("repo").get<std::string>(), j.at("commit").get<std::string>(),
          j.at("path").get<std::string>(), j.at("kind").get<std::string>()};
}

core::Sha256 sha256_from_json(const json& j) {
  auto digest = core::Sha256::from_hex(j.get<std::string>());
  if (!digest) throw json::other_error::create(501, "sha256 is not 64 hex digits", &j);
  return *digest;
}

json record_json(const FileKey& key, const FileRecord& record) {
  return {{"key", key_to_json(key)},
          {"record",
           {{"etag", record.etag},
            {"lfs", record.lfs},
            {"size", record.size},
            {"sha256", record.sha256.hex()},
            {"content_type", record.content_type}}}};
}

json etag_json(const std::string& etag, const core::Sha256& blob) { return {{"etag", etag}, {"sha256", blob.hex()}}; }

std::optional<json> parse_object(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  return doc;
}

class DiskMetadataIndex final : public MetadataIndex {
 public:
  explicit DiskMetadataIndex(const fs::path& dir) : m_files(dir / "files"), m_etags(dir / "etags") {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error("metadata index: cannot create " + dir.string() + ": " + ec.message());
    const fs::path index_json = dir / "index.json";
    auto text = detail::read_small_file(index_json, 4096);
    if (!text) throw std::runtime_error("metadata index: cannot read " + index_json.string() + ": " + text.error().message());
    if (!*text) {
      if (auto wec = detail::write_file_atomic(index_json, json{{"format", k_format}}.dump() + "\n")) {
        throw std::runtime_error("metadata index: cannot write " + index_json.string() + ": " + wec.message());
      }
    } else {
      const auto doc = json::parse(**text, nullptr, /*allow_exceptions=*/false);
      const auto format = doc.is_object() ? doc.find("format") : doc.end();
      if (format == doc.end() || !format->is_number_integer()) {
        throw std::runtime_error("metadata index: " + index_json.string() + " is not a valid index description");
      }
      if (format->get<std::int64_t>() != k_format) {
        throw std::runtime_error("metadata index: " + index_json.string() + " has format " + format->dump() +
                                 ", this hubcache supports format " + std::to_string(k_format) +
                                 "; use a new directory or the matching hubcache version");
      }
    }
    for (const auto& sub : {m_files, m_etags}) {
      if (auto mec = detail::make_dir_durable(sub)) {
        throw std::runtime_error("metadata index: cannot create " + sub.string() + ": " + mec.message());
      }
    }
  }

  net::awaitable<result<std::optional<FileRecord>>> get(FileKey key) override { co_return get_now(key); }

  result<std::optional<FileRecord>> get_now(const FileKey& key) {
    return read_through(m_record_cache, canonical_key(key), [&] { return read_record(key); });
  }

  result<void> put(const FileKey& key, const FileRecord& record) override {
    if (auto written = write_json(record_path(key), record_json(key, record)); !written) {
      // What remember() put in memory is not on disk: forget it, so that a
      // later put() is not skipped as already done.
      std::lock_guard lock(m_mutex);
      ++m_generation;
      m_record_cache.erase(canonical_key(key));
      if (!record.etag.empty()) m_etag_cache.erase(record.etag);
      return written;
    }
    {
      std::lock_guard lock(m_mutex);
      ++m_generation;
      m_record_cache.put(canonical_key(key), record);
    }
    // The etag mapping goes second: a crash in between loses only the
    // shortcut, never leaves a mapping to a record that was not written.
    if (record.etag.empty()) return {};
    if (auto written = write_json(etag_path(record.etag), etag_json(record.etag, record.sha256)); !written) {
      return written;
    }
    std::lock_guard lock(m_mutex);
    ++m_generation;
    m_etag_cache.put(record.etag, record.sha256);
    return {};
  }

  void remember(const FileKey& key, const FileRecord& record) override {
    std::lock_guard lock(m_mutex);
    ++m_generation;
    m_record_cache.put(canonical_key(key), record);
    if (!record.etag.empty()) m_etag_cache.put(record.etag, record.sha256);
  }

  net::awaitable<result<std::optional<core::Sha256>>> blob_for_etag(std::string etag) override {
    co_return blob_for_etag_now(etag);
  }

  result<std::optional<core::Sha256>> blob_for_etag_now(const std::string& etag) {
    return read_through(m_etag_cache, etag, [&] { return read_etag(etag); });
  }

 private:
  // `cache`'s entry for `key`, else `read()` from disk, remembered unless a
  // put() ran meanwhile (see the file comment).
  template <class V, class Read>
  result<std::optional<V>> read_through(detail::LruMap<V>& cache, const std::string& key, Read read) {
    std::uint64_t generation = 0;
    {
      std::lock_guard lock(m_mutex);
      if (auto hit = cache.get(key)) return std::optional<V>(std::move(*hit));
      generation = m_generation;
    }
    result<std::optional<V>> found = read();
    if (found && *found) {
      std::lock_guard lock(m_mutex);
      if (generation == m_generation) cache.put(key, **found);
    }
    return found;
  }

  result<std::optional<FileRecord>> read_record(const FileKey& key) const {
    const fs::path path = record_path(key);
    auto text = read_text(path);
    if (!text) return text.error();
    if (!*text) return std::optional<FileRecord>();
    auto record = decode_index_record(key, **text);
    if (!record) spdlog::warn("metadata index: ignoring malformed or foreign record {}", path.string());
    return record;
  }

  result<std::optional<core::Sha256>> read_etag(const std::string& etag) const {
    const fs::path path = etag_path(etag);
    auto text = read_text(path);
    if (!text) return text.error();
    if (!*text) return std::optional<core::Sha256>();
    auto blob = decode_etag_mapping(etag, **text);
    if (!blob) spdlog::warn("metadata index: ignoring malformed or foreign etag mapping {}", path.string());
    return blob;
  }

  static fs::path fanned_out(const fs::path& base, const std::string& hex) {
    return base / hex.substr(0, 2) / (hex + ".json");
  }
  fs::path record_path(const FileKey& key) const { return fanned_out(m_files, index_record_id(key)); }
  fs::path etag_path(const std::string& etag) const { return fanned_out(m_etags, etag_id(etag)); }

  // The file's text; nullopt when it is absent or oversized (logged).
  static result<std::optional<std::string>> read_text(const fs::path& path) {
    auto text = detail::read_small_file(path, k_max_file_bytes);
    if (!text) {
      if (text.error().value() == EFBIG) {
        spdlog::warn("metadata index: ignoring oversized {}", path.string());
        return std::optional<std::string>();
      }
      return detail::io_error("read", path, text.error());
    }
    return std::move(*text);
  }

  // Returns result<void> rather than a bare error_code on purpose: a
  // result<void> built from a zero error_code is still an error.
  static result<void> write_json(const fs::path& path, const json& doc) {
    std::string text;
    try {
      text = doc.dump();
    } catch (const json::exception& e) {
      // Only strings that are not valid UTF-8 fail to serialize; the Hub's
      // paths and etags are UTF-8, so this is a malformed request.
      spdlog::warn("metadata index: cannot encode record for {}: {}", path.string(), e.what());
      return make_error_code(errc::bad_request);
    }
    if (auto ec = detail::make_dir_durable(path.parent_path())) return detail::io_error("mkdir", path.parent_path(), ec);
    if (auto ec = detail::write_file_atomic(path, text)) return detail::io_error("write", path, ec);
    return {};
  }

  const fs::path m_files;
  const fs::path m_etags;
  std::mutex m_mutex;
  // Guarded by m_mutex. m_generation counts put()s, see the file comment.
  detail::LruMap<FileRecord> m_record_cache{k_cached_records};  // by canonical key
  detail::LruMap<core::Sha256> m_etag_cache{k_cached_records};  // by etag
  std::uint64_t m_generation = 0;
};

}  // namespace

std::string index_record_id(const FileKey& key) { return sha256_hex(canonical_key(key)); }

std::string encode_index_record(const FileKey& key, const FileRecord& record) {
  return record_json(key, record).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<FileRecord> decode_index_record(const FileKey& key, std::string_view text) {
  const auto doc = parse_object(text);
  if (!doc) return std::nullopt;
  try {
    if (key_from_json(doc->at("key")) != key) return std::nullopt;
    const json& r = doc->at("record");
    return FileRecord{r.at("etag").get<std::string>(), r.at("lfs").get<bool>(), r.at("size").get<std::uint64_t>(),
                      sha256_from_json(r.at("sha256")), r.at("content_type").get<std::string>()};
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string etag_id(const std::string& etag) { return sha256_hex(etag); }

std::string encode_etag_mapping(const std::string& etag, const core::Sha256& blob) {
  return etag_json(etag, blob).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<core::Sha256> decode_etag_mapping(const std::string& etag, std::string_view text) {
  const auto doc = parse_object(text);
  if (!doc) return std::nullopt;
  try {
    if (doc->at("etag").get<std::string>() != etag) return std::nullopt;
    return sha256_from_json(doc->at("sha256"));
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::unique_ptr<MetadataIndex> make_disk_metadata_index(const std::filesystem::path& dir) {
  return std::make_unique<DiskMetadataIndex>(dir);
}

}  // namespace hubcache::storage
