// Parsing and normalisation of the Hub's read-only metadata API
// (hub-protocol.md §1.2 E5-E10), so equivalent requests share a cache entry.
//
//   GET  /api/{type}s/{repo}                          repo info
//   GET  /api/{type}s/{repo}/revision/{rev}           repo info at a revision
//   GET  /api/{type}s/{repo}/tree/{rev}[/{path}]      listing (paginated)
//   POST /api/{type}s/{repo}/paths-info/{rev}         entries for given paths
//   GET  /api/{type}s/{repo}/refs                     branches and tags
//   GET  /api/{type}s/{repo}/commits/{rev}            history (paginated)
//
// Normalisation: percent-decoding of repo, revision and path (Python encodes
// '/' in them as %2F, hub.js does not); query booleans in any case ("true",
// "True", "1"); `expand[]=` read as `expand=`, repeated values sorted; the
// paths-info body in both encodings (form from Python, JSON from hub.js) read
// as the same {sorted paths, expand}.
#pragma once

#include <hubcache/core/error.hpp>
#include <hubcache/core/route.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace hubcache::hub {

enum class ApiKind { info, info_at_revision, tree, paths_info, refs, commits };

struct ApiRoute {
  core::RepoType type = core::RepoType::model;
  std::string repo;
  ApiKind kind = ApiKind::info;
  std::string revision;  // decoded; empty for info and refs
  std::string path;      // tree only; decoded, may be empty
  bool expand = false;   // tree / paths-info: entries carry lastCommit etc.
  // Everything that selects the answer, canonical: the cache key.
  std::string cache_key;
};

// Parses a GET/POST on /api/... . nullopt when the target is not one of the
// cacheable routes above (the caller relays it); errc::bad_request when the
// target or body is malformed. `content_type` and `body` matter for
// paths-info only.
result<std::optional<ApiRoute>> parse_api_route(std::string_view method, std::string_view target,
                                                std::string_view content_type, std::string_view body);

// "true"/"True"/"1"/"yes" -> true (any case); everything else false.
bool parse_bool(std::string_view value) noexcept;

}  // namespace hubcache::hub
