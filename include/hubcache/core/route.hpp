// Parsing of Hub file URLs: what a client asks for, as validated values.
//
// Accepted forms (hub-protocol.md §1.1):
//   /{repo}/resolve/{rev}/{path}            models; repo is "ns/name" or a legacy "name"
//   /{datasets|spaces|kernels}/{repo}/resolve/{rev}/{path}
//   the same with /raw/ instead of /resolve/
//   /api/resolve-cache/{models|datasets|spaces|kernels}/{ns}/{name}/{commit}/{path}
// The revision may be percent-encoded ("refs%2Fpr%2F1") or, for refs/pr/N
// and refs/convert/X, written raw; file paths may be raw or encoded. Every
// segment is decoded once and validated: no "." or ".." segments, no NUL or
// control characters, bounded lengths.
#pragma once

#include <hubcache/core/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hubcache::core {

enum class RepoType { model, dataset, space, kernel };

// "model", "dataset", ... as used in cache keys and logs.
std::string_view to_string(RepoType type) noexcept;
// URL prefix before the repo id in file URLs: "", "datasets/", "spaces/", "kernels/".
std::string_view url_prefix(RepoType type) noexcept;
// Plural used by /api paths: "models", "datasets", ...
std::string_view api_plural(RepoType type) noexcept;

enum class FileKind { resolve, raw };

struct FileRoute {
  RepoType type = RepoType::model;
  std::string repo;      // decoded repo id, "ns/name" or "name"
  std::string revision;  // decoded, e.g. "main", "refs/pr/1", or a commit id
  std::string path;      // decoded path inside the repo, '/'-separated
  FileKind kind = FileKind::resolve;

  // Canonical, percent-encoded upstream target for this file at `revision`:
  // "/{prefix}{repo}/{resolve|raw}/{enc(revision)}/{enc(path)}".
  std::string upstream_target(std::string_view revision_override = {}) const;
};

// Limits that keep parsing cheap and logs readable. The Hub's own limits are
// lower for repo names; paths in git can be long but not this long.
inline constexpr std::size_t k_max_target_length = 8192;
inline constexpr std::size_t k_max_revision_length = 256;

// Parses a request target (path plus optional query). Returns nullopt when
// the target is not a file route at all (other handlers may take it), and
// errc::bad_request when it is one but malformed.
result<std::optional<FileRoute>> parse_file_route(std::string_view target);

// Validates a repo id ("ns/name" or "name"): letters, digits, '-', '_', '.',
// not starting with '.' or '-', no "..", at most 96 characters per part.
bool valid_repo_id(std::string_view repo) noexcept;

}  // namespace hubcache::core
