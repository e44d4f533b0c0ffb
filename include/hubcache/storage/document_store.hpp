// DocumentStore: small durable documents by opaque key.
//
// Holds the records behind metadata caching and offline serving (cached Hub
// API answers, revision -> commit mappings, which repos were public). A put()
// is durable when it returns (temp file, fsync, rename, fsync dir), and a
// reader sees the old or the new value, never a mix.
//
// Layout under `dir` (format 1):
//   dir/docs.json                    {"format": 1}; another version refuses to start
//   dir/<aa>/<sha256(key)>           the key as a JSON string, a newline, the value bytes
//
// Thread safety: all methods are safe from any thread. put() blocks on
// fsync: call it from the blocking pool. get() is awaitable because an
// implementation may ask a remote tier on a local miss (the GCS mirror); the
// disk store answers it inline from a small file.
#pragma once

#include <hubcache/core/error.hpp>

#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace hubcache::storage {

class DocumentStore {
 public:
  virtual ~DocumentStore() = default;
  // nullopt when absent; a damaged file counts as absent (and is logged).
  virtual boost::asio::awaitable<result<std::optional<std::string>>> get(std::string key) = 0;
  virtual result<void> put(std::string_view key, std::string_view value) = 0;
};

// Largest value accepted: bounds what one lookup may read into memory. Tree
// pages of 1000 entries are ~200 KB; 32 MiB leaves room for huge READMEs.
inline constexpr std::size_t k_max_document_bytes = 32u << 20;

// The stored form of a document, shared by the disk store and its GCS mirror:
// the key as a JSON string, a newline, the value. decode_document returns
// nullopt for a damaged document or one that holds another key.
std::string document_id(std::string_view key);  // sha256 hex of the key
std::string encode_document(std::string_view key, std::string_view value);
std::optional<std::string> decode_document(std::string_view key, std::string_view text);

// Throws std::runtime_error on an unusable directory or another format (startup).
std::unique_ptr<DocumentStore> make_disk_document_store(const std::filesystem::path& dir);

}  // namespace hubcache::storage
