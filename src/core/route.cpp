#include <hubcache/core/route.hpp>

#include <hubcache/util/percent.hpp>
#include <hubcache/util/text.hpp>

#include <algorithm>
#include <array>
#include <vector>

namespace hubcache::core {
namespace {

using util::split;

bool has_control_char(std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool plain_segment(std::string_view seg) noexcept { return !seg.empty() && seg != "." && seg != ".."; }

// A decoded path: non-empty '/'-separated segments, none "." or "..".
bool valid_path(std::string_view path) noexcept {
  if (path.empty() || has_control_char(path)) return false;
  return util::all_fields(path, '/', plain_segment);
}

bool valid_revision(std::string_view rev) noexcept {
  if (rev.empty() || rev.size() > k_max_revision_length || has_control_char(rev)) return false;
  return util::all_fields(rev, '/', plain_segment);
}

std::optional<RepoType> type_from_prefix(std::string_view seg) {
  if (seg == "datasets") return RepoType::dataset;
  if (seg == "spaces") return RepoType::space;
  if (seg == "kernels") return RepoType::kernel;
  return std::nullopt;
}

std::optional<RepoType> type_from_plural(std::string_view seg) {
  if (seg == "models") return RepoType::model;
  return type_from_prefix(seg);
}

result<std::string> decode(std::string_view raw) {
  auto d = util::percent_decode(raw);
  if (!d) return errc::bad_request;
  return std::move(*d);
}

// Joins decoded segments [from, end) with '/'.
result<std::string> decode_join(const std::vector<std::string_view>& segs, std::size_t from) {
  std::string out;
  for (std::size_t i = from; i < segs.size(); ++i) {
    auto d = decode(segs[i]);
    if (!d) return d.error();
    if (i != from) out.push_back('/');
    out += *d;
  }
  return out;
}

}  // namespace

std::string_view to_string(RepoType type) noexcept {
  switch (type) {
    case RepoType::model: return "model";
    case RepoType::dataset: return "dataset";
    case RepoType::space: return "space";
    case RepoType::kernel: return "kernel";
  }
  return "model";
}

std::string_view url_prefix(RepoType type) noexcept {
  switch (type) {
    case RepoType::model: return "";
    case RepoType::dataset: return "datasets/";
    case RepoType::space: return "spaces/";
    case RepoType::kernel: return "kernels/";
  }
  return "";
}

std::string_view api_plural(RepoType type) noexcept {
  switch (type) {
    case RepoType::model: return "models";
    case RepoType::dataset: return "datasets";
    case RepoType::space: return "spaces";
    case RepoType::kernel: return "kernels";
  }
  return "models";
}

bool valid_repo_id(std::string_view repo) noexcept {
  if (std::count(repo.begin(), repo.end(), '/') > 1) return false;
  return util::all_fields(repo, '/', [](std::string_view part) {
    if (part.empty() || part.size() > 96 || part.front() == '.' || part.front() == '-') return false;
    if (part.find("..") != std::string_view::npos) return false;
    for (char c : part) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.';
      if (!ok) return false;
    }
    return true;
  });
}

std::string FileRoute::upstream_target(std::string_view revision_override) const {
  const std::string_view rev = revision_override.empty() ? std::string_view(revision) : revision_override;
  std::string t = "/";
  t += url_prefix(type);
  t += repo;  // validated: only unreserved characters
  t += kind == FileKind::raw ? "/raw/" : "/resolve/";
  t += util::percent_encode(rev, util::KeepSlash::no);
  t += '/';
  t += util::percent_encode(path, util::KeepSlash::yes);
  return t;
}

result<std::optional<FileRoute>> parse_file_route(std::string_view target) {
  const auto q = target.find('?');
  const std::string_view path = target.substr(0, q);
  if (path.empty() || path.front() != '/') return std::optional<FileRoute>{};
  const auto segs = split(path.substr(1), '/');

  FileRoute route;
  std::size_t rev_index = 0;

  if (segs.size() >= 2 && segs[0] == "api" && segs[1] == "resolve-cache") {
    // /api/resolve-cache/{type}s/{ns}/{name}/{commit}/{path...}
    if (target.size() > k_max_target_length) return errc::bad_request;
    if (segs.size() < 7) return errc::bad_request;
    const auto type = type_from_plural(segs[2]);
    if (!type) return errc::bad_request;
    route.type = *type;
    auto ns = decode(segs[3]);
    auto name = decode(segs[4]);
    if (!ns || !name) return errc::bad_request;
    route.repo = *ns + "/" + *name;
    rev_index = 5;
  } else {
    // Find "resolve" or "raw" after a one- or two-segment repo id.
    std::size_t start = 0;
    if (!segs.empty()) {
      if (auto t = type_from_prefix(segs[0]); t && segs.size() > 1) {
        route.type = *t;
        start = 1;
      }
    }
    if (segs[start] == "api") return std::optional<FileRoute>{};
    std::size_t kind_index = 0;
    for (std::size_t i = start + 1; i <= start + 2 && i < segs.size(); ++i) {
      if (segs[i] == "resolve" || segs[i] == "raw") {
        kind_index = i;
        break;
      }
    }
    if (kind_index == 0) return std::optional<FileRoute>{};
    if (target.size() > k_max_target_length) return errc::bad_request;
    route.kind = segs[kind_index] == "raw" ? FileKind::raw : FileKind::resolve;
    std::string repo_id;
    for (std::size_t i = start; i < kind_index; ++i) {
      auto d = decode(segs[i]);
      if (!d) return errc::bad_request;
      if (i != start) repo_id.push_back('/');
      repo_id += *d;
    }
    route.repo = std::move(repo_id);
    rev_index = kind_index + 1;
  }

  if (!valid_repo_id(route.repo)) return errc::bad_request;
  if (rev_index + 1 >= segs.size()) return errc::bad_request;  // need a revision and a path

  // Revisions are normally one encoded segment; refs/pr/N and refs/convert/X
  // also arrive unencoded from hand-written URLs.
  std::size_t path_index = rev_index + 1;
  auto rev = decode(segs[rev_index]);
  if (!rev) return rev.error();
  if (*rev == "refs" && rev_index + 3 < segs.size() &&
      (segs[rev_index + 1] == "pr" || segs[rev_index + 1] == "convert")) {
    auto sub = decode(segs[rev_index + 2]);
    if (!sub) return sub.error();
    *rev += "/" + std::string(segs[rev_index + 1]) + "/" + *sub;
    path_index = rev_index + 3;
  }
  if (!valid_revision(*rev)) return errc::bad_request;
  route.revision = std::move(*rev);

  if (path_index >= segs.size()) return errc::bad_request;
  auto file = decode_join(segs, path_index);
  if (!file) return file.error();
  if (!valid_path(*file)) return errc::bad_request;
  route.path = std::move(*file);
  return std::optional<FileRoute>{std::move(route)};
}

}  // namespace hubcache::core
