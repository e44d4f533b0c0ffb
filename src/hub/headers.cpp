#include "headers.hpp"

#include <hubcache/util/percent.hpp>
#include <hubcache/util/text.hpp>

#include <array>
#include <strings.h>

namespace hubcache::hub {
namespace {

using util::trim;

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

void add_cors_headers(bhttp::fields& h) {
  h.set("Access-Control-Allow-Origin", "*");
  h.set("Access-Control-Expose-Headers",
        "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,"
        "Content-Range,Content-Length,X-Linked-Size,X-Linked-ETag,X-Cache");
}

bool is_hop_by_hop(std::string_view name) noexcept {
  // "expect" too: hubcache answers 100-continue itself and sends upstream a
  // complete request; a forwarded Expect would make upstream send a 100 first.
  static constexpr std::array<std::string_view, 10> k_names = {
      "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
      "trailer",    "transfer-encoding", "upgrade",      "proxy-connection",    "expect"};
  for (auto n : k_names) {
    if (iequals(name, n)) return true;
  }
  return false;
}

bool is_xet_header(std::string_view name) noexcept {
  return name.size() >= 6 && ::strncasecmp(name.data(), "x-xet-", 6) == 0;
}

std::string strip_xet_links(std::string_view link) {
  // Entries are separated by commas outside <...>.
  std::string out;
  std::size_t start = 0;
  bool in_uri = false;
  for (std::size_t i = 0; i <= link.size(); ++i) {
    if (i < link.size()) {
      if (link[i] == '<') in_uri = true;
      else if (link[i] == '>') in_uri = false;
      if (link[i] != ',' || in_uri) continue;
    }
    const auto entry = trim(link.substr(start, i - start));
    start = i + 1;
    if (entry.empty() || entry.find("rel=\"xet-") != std::string_view::npos) continue;
    if (!out.empty()) out += ", ";
    out += entry;
  }
  return out;
}

std::string strip_xet_accept(std::string_view accept) {
  std::string out;
  std::size_t start = 0;
  while (start <= accept.size()) {
    auto end = accept.find(',', start);
    if (end == std::string_view::npos) end = accept.size();
    const auto item = trim(accept.substr(start, end - start));
    if (!item.empty() && item.find("vnd.xet") == std::string_view::npos) {
      if (!out.empty()) out += ", ";
      out += item;
    }
    start = end + 1;
  }
  return out;
}

std::string unquote_etag(std::string_view etag) {
  etag = trim(etag);
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

std::string content_disposition(std::string_view path) {
  const auto slash = path.rfind('/');
  const auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::string encoded = util::percent_encode(name, util::KeepSlash::no);
  std::string out;  // built in one allocation: this runs on every file answer
  out.reserve(40 + encoded.size() + name.size());
  out += "inline; filename*=UTF-8''";
  out += encoded;
  out += "; filename=\"";
  for (unsigned char c : name) {
    out.push_back(c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ? '_' : static_cast<char>(c));
  }
  out += "\";";
  return out;
}

bool is_exact_range(const bhttp::fields& h, std::optional<std::uint64_t> content_length, std::uint64_t first,
                    std::uint64_t last, std::uint64_t total) {
  const std::string want =
      "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(total);
  return h[bhttp::field::content_range] == want && (!content_length || *content_length == last - first + 1);
}

}  // namespace hubcache::hub
