#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <charconv>

namespace hubcache::upstream {
namespace {

char to_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::uint16_t default_port(std::string_view scheme) noexcept { return scheme == "https" ? 443 : 80; }

bool is_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// A DNS name or IPv4 address: RFC 3986 reg-name without percent-escapes or
// sub-delims, which no real upstream host needs.
bool valid_reg_name(std::string_view host) noexcept {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](char c) { return is_alnum(c) || c == '-' || c == '.' || c == '_'; });
}

bool valid_ipv6(const std::string& host) {
  const bool plain_chars = std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
  });
  boost::system::error_code ec;
  boost::asio::ip::make_address_v6(host, ec);
  return plain_chars && !ec;
}

// The target goes on the request line verbatim, so anything that could end
// or split it (spaces, CR, LF, other controls, non-ASCII) is refused.
bool valid_target(std::string_view target) noexcept {
  return !target.empty() && target.front() == '/' &&
         std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// "/p?q#frag" -> "/p?q" (fragments never go on the wire); "" or "?q" get
// the root path in front.
std::string normalize_target(std::string_view rest) {
  rest = rest.substr(0, rest.find('#'));
  if (rest.empty() || rest.front() == '?') return "/" + std::string(rest);
  return std::string(rest);
}

}  // namespace

result<Url> Url::parse(std::string_view text) {
  Url url;
  if (starts_with_nocase(text, "https://")) {
    url.scheme = "https";
  } else if (starts_with_nocase(text, "http://")) {
    url.scheme = "http";
  } else {
    return make_error_code(errc::bad_request);
  }
  text.remove_prefix(url.scheme.size() + 3);

  const auto authority_end = text.find_first_of("/?#");
  const std::string_view authority = text.substr(0, authority_end);
  const std::string_view rest = authority_end == std::string_view::npos ? std::string_view{} : text.substr(authority_end);

  // Credentials in URLs would end up in logs and Host headers; the Hub
  // authenticates with a header instead.
  if (authority.find('@') != std::string_view::npos) return make_error_code(errc::bad_request);

  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return make_error_code(errc::bad_request);
    url.host = std::string(authority.substr(1, close - 1));
    std::transform(url.host.begin(), url.host.end(), url.host.begin(), to_lower);
    if (!valid_ipv6(url.host)) return make_error_code(errc::bad_request);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return make_error_code(errc::bad_request);
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    std::transform(url.host.begin(), url.host.end(), url.host.begin(), to_lower);
    if (!valid_reg_name(url.host)) return make_error_code(errc::bad_request);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
  }

  url.port = default_port(url.scheme);
  if (has_port) {
    unsigned value = 0;
    const auto* end = port_text.data() + port_text.size();
    const auto [ptr, ec] = std::from_chars(port_text.data(), end, value);
    if (port_text.empty() || ec != std::errc{} || ptr != end || value == 0 || value > 65535) {
      return make_error_code(errc::bad_request);
    }
    url.port = static_cast<std::uint16_t>(value);
  }

  url.target = normalize_target(rest);
  if (!valid_target(url.target)) return make_error_code(errc::bad_request);
  return url;
}

std::string Url::origin() const {
  std::string out = scheme + "://";
  const bool ipv6 = host.find(':') != std::string::npos;
  out += ipv6 ? "[" + host + "]" : host;
  if (port != default_port(scheme)) out += ":" + std::to_string(port);
  return out;
}

bool Url::same_origin(const Url& other) const noexcept {
  return scheme == other.scheme && host == other.host && port == other.port;
}

result<Url> Url::resolve(std::string_view location) const {
  if (starts_with_nocase(location, "http://") || starts_with_nocase(location, "https://")) return parse(location);
  if (location.starts_with("//")) return parse(scheme + ":" + std::string(location));
  if (location.starts_with("/")) {
    Url out = *this;
    out.target = normalize_target(location);
    if (!valid_target(out.target)) return make_error_code(errc::bad_request);
    return out;
  }
  // Document-relative references ("file", "../x", "?q") and other schemes:
  // the Hub never sends them.
  return make_error_code(errc::bad_request);
}

}  // namespace hubcache::upstream
