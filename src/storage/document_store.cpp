#include <hubcache/storage/document_store.hpp>

#include "posix_file.hpp"

#include <hubcache/util/hash.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
using nlohmann::json;

constexpr int k_format = 1;

class DiskDocumentStore final : public DocumentStore {
 public:
  explicit DiskDocumentStore(fs::path dir) : m_dir(std::move(dir)) {}

  net::awaitable<result<std::optional<std::string>>> get(std::string key) override { co_return get_now(key); }

  result<std::optional<std::string>> get_now(std::string_view key) {
    const auto path = path_for(key);
    auto content = detail::read_small_file(path, k_max_document_bytes + key.size() * 6 + 64);
    if (!content) return detail::io_error("read document", path, content.error());
    if (!*content) return std::optional<std::string>{};
    auto value = decode_document(key, **content);
    if (!value) spdlog::warn("ignoring damaged or foreign document {}", path.string());
    return value;
  }

  result<void> put(std::string_view key, std::string_view value) override {
    if (value.size() > k_max_document_bytes) return errc::storage_io;
    const auto path = path_for(key);
    if (auto ec = detail::make_dir_durable(path.parent_path())) return detail::io_error("mkdir", path.parent_path(), ec);
    if (auto ec = detail::write_file_atomic(path, encode_document(key, value))) return detail::io_error("write document", path, ec);
    return {};
  }

 private:
  fs::path path_for(std::string_view key) const {
    const auto hex = document_id(key);
    return m_dir / hex.substr(0, 2) / hex;
  }

  const fs::path m_dir;
};

}  // namespace

std::string document_id(std::string_view key) {
  util::Sha256Hasher h;
  h.update(key);
  return h.finish().hex();
}

std::string encode_document(std::string_view key, std::string_view value) {
  std::string text = json(std::string(key)).dump(-1, ' ', false, json::error_handler_t::replace);
  text += '\n';
  text += value;
  return text;
}

std::optional<std::string> decode_document(std::string_view key, std::string_view text) {
  const auto nl = text.find('\n');
  if (nl == std::string_view::npos) return std::nullopt;
  auto stored = json::parse(text.substr(0, nl), nullptr, false);
  if (!stored.is_string() || stored.get<std::string>() != key) return std::nullopt;
  return std::string(text.substr(nl + 1));
}

std::unique_ptr<DocumentStore> make_disk_document_store(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("document store " + dir.string() + ": " + ec.message());
  const auto marker = dir / "docs.json";
  auto existing = detail::read_small_file(marker, 4096);
  if (!existing) throw std::runtime_error("document store " + marker.string() + ": " + existing.error().message());
  if (*existing) {
    auto j = json::parse(**existing, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("format", 0) != k_format) {
      throw std::runtime_error("document store " + dir.string() + " has an unknown format (expected " +
                               std::to_string(k_format) + "); move it away or point cache_dir elsewhere");
    }
  } else if (auto werr = detail::write_file_atomic(marker, json{{"format", k_format}}.dump())) {
    throw std::runtime_error("document store " + marker.string() + ": " + werr.message());
  }
  return std::make_unique<DiskDocumentStore>(dir);
}

}  // namespace hubcache::storage
