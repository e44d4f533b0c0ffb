#include "api_route.hpp"

#include <hubcache/util/percent.hpp>
#include <hubcache/util/text.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

namespace hubcache::hub {
namespace {

using util::split;

std::optional<core::RepoType> type_from_plural(std::string_view s) {
  if (s == "models") return core::RepoType::model;
  if (s == "datasets") return core::RepoType::dataset;
  if (s == "spaces") return core::RepoType::space;
  if (s == "kernels") return core::RepoType::kernel;
  return std::nullopt;
}

// Query strings and form bodies: '+' means space there, unlike in paths.
std::optional<std::string> form_decode(std::string_view s) {
  std::string plus_as_space(s);
  std::replace(plus_as_space.begin(), plus_as_space.end(), '+', ' ');
  return util::percent_decode(plus_as_space);
}

// name -> values, with "name[]" read as "name".
result<std::multimap<std::string, std::string>> parse_form(std::string_view query) {
  std::multimap<std::string, std::string> out;
  if (query.empty()) return out;
  for (auto pair : split(query, '&')) {
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto name = form_decode(pair.substr(0, eq));
    auto value = form_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!name || !value) return errc::bad_request;
    if (name->ends_with("[]")) name->resize(name->size() - 2);
    out.emplace(std::move(*name), std::move(*value));
  }
  return out;
}

std::string join_sorted(const std::multimap<std::string, std::string>& q, const std::string& name) {
  std::set<std::string> values;
  auto [b, e] = q.equal_range(name);
  for (auto it = b; it != e; ++it) values.insert(it->second);
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ',';
    out += v;
  }
  return out;
}

std::string last_value(const std::multimap<std::string, std::string>& q, const std::string& name) {
  auto [b, e] = q.equal_range(name);
  return b == e ? std::string() : std::prev(e)->second;
}

// Length-prefixed fields: unambiguous whatever the bytes.
void add_field(std::string& key, std::string_view name, std::string_view value) {
  key += name;
  key += '=';
  key += std::to_string(value.size());
  key += ':';
  key += value;
  key += ';';
}

bool valid_rev_or_path(std::string_view s, bool allow_empty) {
  if (s.empty()) return allow_empty;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  for (auto seg : split(s, '/')) {
    if (seg.empty() || seg == "." || seg == "..") return false;
  }
  return true;
}

}  // namespace

bool parse_bool(std::string_view v) noexcept {
  std::string lower;
  for (char c : v) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  return lower == "true" || lower == "1" || lower == "yes";
}

result<std::optional<ApiRoute>> parse_api_route(std::string_view method, std::string_view target,
                                                std::string_view content_type, std::string_view body) {
  const auto qpos = target.find('?');
  const auto path = target.substr(0, qpos);
  const auto query = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
  if (!path.starts_with("/api/")) return std::optional<ApiRoute>{};
  const auto segs = split(path.substr(5), '/');
  if (segs.size() < 2) return std::optional<ApiRoute>{};
  const auto type = type_from_plural(segs[0]);
  if (!type) return std::optional<ApiRoute>{};

  ApiRoute r;
  r.type = *type;
  // The repo id is one or two segments; the route keyword follows it.
  std::size_t kw = 0;
  for (std::size_t i = 2; i <= 3 && i < segs.size(); ++i) {
    const auto s = segs[i];
    if (s == "revision" || s == "tree" || s == "paths-info" || s == "refs" || s == "commits") {
      kw = i;
      break;
    }
  }
  const std::size_t repo_end = kw != 0 ? kw : segs.size();
  if (repo_end < 2 || repo_end > 3) return std::optional<ApiRoute>{};
  for (std::size_t i = 1; i < repo_end; ++i) {
    auto d = util::percent_decode(segs[i]);
    if (!d) return errc::bad_request;
    if (i > 1) r.repo += '/';
    r.repo += *d;
  }
  if (!core::valid_repo_id(r.repo)) return std::optional<ApiRoute>{};  // not ours to judge: relay

  const std::string_view keyword = kw != 0 ? segs[kw] : std::string_view{};
  const bool post = method == "POST";
  if ((keyword == "paths-info") != post) return std::optional<ApiRoute>{};
  if (!post && method != "GET") return std::optional<ApiRoute>{};

  // Revision (one encoded segment, or raw refs/pr/N and refs/convert/X) and
  // the rest of the path.
  std::size_t rest = kw != 0 ? kw + 1 : segs.size();
  if (keyword == "revision" || keyword == "tree" || keyword == "paths-info" || keyword == "commits") {
    if (rest >= segs.size()) return errc::bad_request;
    auto rev = util::percent_decode(segs[rest]);
    if (!rev) return errc::bad_request;
    ++rest;
    if (*rev == "refs" && rest + 1 < segs.size() && (segs[rest] == "pr" || segs[rest] == "convert")) {
      auto sub = util::percent_decode(segs[rest + 1]);
      if (!sub) return errc::bad_request;
      *rev += "/" + std::string(segs[rest]) + "/" + *sub;
      rest += 2;
    }
    if (!valid_rev_or_path(*rev, false)) return errc::bad_request;
    r.revision = std::move(*rev);
  }
  std::string sub_path;
  for (std::size_t i = rest; i < segs.size(); ++i) {
    auto d = util::percent_decode(segs[i]);
    if (!d) return errc::bad_request;
    if (i > rest) sub_path += '/';
    sub_path += *d;
  }
  while (!sub_path.empty() && sub_path.back() == '/') sub_path.pop_back();

  auto q = parse_form(query);
  if (!q) return q.error();

  if (keyword.empty()) {
    r.kind = ApiKind::info;
  } else if (keyword == "revision") {
    r.kind = ApiKind::info_at_revision;
  } else if (keyword == "tree") {
    r.kind = ApiKind::tree;
  } else if (keyword == "paths-info") {
    r.kind = ApiKind::paths_info;
  } else if (keyword == "refs") {
    r.kind = ApiKind::refs;
  } else {
    r.kind = ApiKind::commits;
  }
  if (r.kind != ApiKind::tree && !sub_path.empty()) return std::optional<ApiRoute>{};
  if (!valid_rev_or_path(sub_path, true)) return errc::bad_request;
  r.path = sub_path;

  std::string& key = r.cache_key;
  add_field(key, "v", "1");
  add_field(key, "type", core::to_string(r.type));
  add_field(key, "repo", r.repo);
  add_field(key, "kind", keyword.empty() ? "info" : keyword);
  add_field(key, "rev", r.revision);
  switch (r.kind) {
    case ApiKind::info:
    case ApiKind::info_at_revision: {
      add_field(key, "expand", join_sorted(*q, "expand"));
      for (const char* flag : {"blobs", "securityStatus", "files_metadata"}) {
        if (q->count(flag) != 0) add_field(key, flag, parse_bool(last_value(*q, flag)) ? "1" : "0");
      }
      break;
    }
    case ApiKind::tree:
      r.expand = parse_bool(last_value(*q, "expand"));
      add_field(key, "path", r.path);
      add_field(key, "recursive", parse_bool(last_value(*q, "recursive")) ? "1" : "0");
      add_field(key, "expand", r.expand ? "1" : "0");
      add_field(key, "cursor", last_value(*q, "cursor"));
      add_field(key, "limit", last_value(*q, "limit"));
      break;
    case ApiKind::paths_info: {
      std::set<std::string> paths;
      if (content_type.find("application/json") != std::string_view::npos) {
        auto doc = nlohmann::json::parse(body, nullptr, false);
        if (doc.is_discarded() || !doc.is_object()) return errc::bad_request;
        auto it = doc.find("paths");
        if (it != doc.end()) {
          if (it->is_string()) paths.insert(it->get<std::string>());
          else if (it->is_array()) {
            for (const auto& p : *it) {
              if (!p.is_string()) return errc::bad_request;
              paths.insert(p.get<std::string>());
            }
          } else {
            return errc::bad_request;
          }
        }
        auto e = doc.find("expand");
        r.expand = e != doc.end() && ((e->is_boolean() && e->get<bool>()) ||
                                      (e->is_string() && parse_bool(e->get<std::string>())));
      } else {
        auto form = parse_form(body);
        if (!form) return form.error();
        auto [b, e] = form->equal_range("paths");
        for (auto it = b; it != e; ++it) paths.insert(it->second);
        r.expand = parse_bool(last_value(*form, "expand"));
      }
      std::string joined;
      for (const auto& p : paths) add_field(joined, "p", p);
      add_field(key, "paths", joined);
      add_field(key, "expand", r.expand ? "1" : "0");
      break;
    }
    case ApiKind::refs:
      add_field(key, "include_prs", parse_bool(last_value(*q, "include_prs")) ? "1" : "0");
      break;
    case ApiKind::commits:
      add_field(key, "expand", join_sorted(*q, "expand"));
      add_field(key, "p", last_value(*q, "p"));
      add_field(key, "limit", last_value(*q, "limit"));
      break;
  }
  // Parameters we do not normalise still select the answer upstream, so they
  // stay in the key verbatim (sorted by name): different queries never
  // share an entry.
  static const std::set<std::string> k_normalised{"expand", "blobs", "securityStatus", "files_metadata", "recursive",
                                                  "cursor", "limit", "include_prs", "p"};
  for (const auto& [name, value] : *q) {
    if (k_normalised.count(name) == 0) add_field(key, "q:" + name, value);
  }
  return std::optional<ApiRoute>{std::move(r)};
}

}  // namespace hubcache::hub
