#include <hubcache/storage/document_store.hpp>

#include "posix_file.hpp"

#include <hubcache/util/hash.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int k_format = 1;

class DiskDocumentStore final : public DocumentStore {
 public:
  explicit DiskDocumentStore(fs::path dir) : m_dir(std::move(dir)) {}

  result<std::optional<std::string>> get(std::string_view key) override {
    const auto path = path_for(key);
    auto content = detail::read_small_file(path, k_max_document_bytes + key.size() * 6 + 64);
    if (!content) return detail::io_error("read document", path, content.error());
    if (!*content) return std::optional<std::string>{};
    const std::string& text = **content;
    const auto nl = text.find('\n');
    if (nl != std::string::npos) {
      auto stored = json::parse(std::string_view(text).substr(0, nl), nullptr, false);
      if (stored.is_string() && stored.get<std::string>() == key) return std::optional<std::string>{text.substr(nl + 1)};
    }
    spdlog::warn("ignoring damaged or foreign document {}", path.string());
    return std::optional<std::string>{};
  }

  result<void> put(std::string_view key, std::string_view value) override {
    if (value.size() > k_max_document_bytes) return errc::storage_io;
    const auto path = path_for(key);
    if (auto ec = detail::make_dir_durable(path.parent_path())) return detail::io_error("mkdir", path.parent_path(), ec);
    std::string text = json(std::string(key)).dump(-1, ' ', false, json::error_handler_t::replace);
    text += '\n';
    text += value;
    if (auto ec = detail::write_file_atomic(path, text)) return detail::io_error("write document", path, ec);
    return {};
  }

 private:
  fs::path path_for(std::string_view key) const {
    util::Sha256Hasher h;
    h.update(key);
    const auto hex = h.finish().hex();
    return m_dir / hex.substr(0, 2) / hex;
  }

  const fs::path m_dir;
};

}  // namespace

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
