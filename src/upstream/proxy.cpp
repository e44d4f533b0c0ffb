#include "proxy.hpp"

#include <hubcache/upstream/http_client.hpp>

#include <boost/asio/ip/address_v6.hpp>

#include <algorithm>
#include <charconv>

namespace hubcache::upstream {
namespace {

namespace ip = boost::asio::ip;

char to_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Same host rule as Url::parse: a DNS name or IPv4 address.
bool valid_reg_name(std::string_view host) noexcept {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](char c) { return is_alnum(c) || c == '-' || c == '.' || c == '_'; });
}

std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// Where the authority of a "scheme://authority/..." or "authority/..." text starts and ends.
std::pair<std::size_t, std::size_t> authority_bounds(std::string_view text) noexcept {
  const auto sep = text.find("://");
  const std::size_t begin = sep == std::string_view::npos ? 0 : sep + 3;
  // A proxy URL has no path, so the last '@' ends the credentials even when
  // an unescaped '/', '?' or '#' in a password comes before it.
  const auto at = text.rfind('@');
  const std::size_t host = at != std::string_view::npos && at >= begin ? at + 1 : begin;
  const auto end = text.find_first_of("/?#", host);
  return {begin, end == std::string_view::npos ? text.size() : end};
}

// "host" or "host:port" or "[v6]" or "[v6]:port"; host lower-cased, brackets removed.
struct HostPort {
  std::string host;
  std::optional<std::uint16_t> port;
  bool ok = false;
};

HostPort split_host_port(std::string_view text) {
  HostPort out;
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return out;
    out.host = lowered(text.substr(1, close - 1));
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return out;
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = text.find(':');
    out.host = lowered(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = text.substr(colon + 1);
    }
  }
  if (has_port) {
    out.port = parse_port(port_text);
    if (!out.port) return out;
  }
  out.ok = true;
  return out;
}

bool valid_ipv6(const std::string& host) {
  boost::system::error_code ec;
  ip::make_address_v6(host, ec);
  return !ec && host.find('%') == std::string::npos;  // no zone ids
}

// Like getenv: the first entry named exactly `name`; nullopt when absent.
std::optional<std::string> find_env(const std::vector<std::string>& env, std::string_view name) {
  for (const std::string& entry : env) {
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

// The lower-case variable when it is set, even to "" (so `https_proxy=`
// turns an inherited HTTPS_PROXY off), else the upper-case one.
std::string lower_then_upper(const std::vector<std::string>& env, std::string_view lower, std::string_view upper) {
  if (auto value = find_env(env, lower)) return *value;
  return find_env(env, upper).value_or("");
}

}  // namespace

std::string basic_authorization(std::string_view user, std::string_view password) {
  static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string plain(user);
  plain += ':';
  plain += password;
  std::string out = "Basic ";
  for (std::size_t i = 0; i < plain.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, plain.size() - i);
    std::uint32_t chunk = 0;
    for (std::size_t k = 0; k < 3; ++k) {
      chunk <<= 8;
      if (k < n) chunk |= static_cast<unsigned char>(plain[i + k]);
    }
    for (std::size_t k = 0; k < 4; ++k) {
      out += k <= n ? k_alphabet[(chunk >> (18 - 6 * k)) & 0x3f] : '=';
    }
  }
  return out;
}

std::string redact_proxy_url(std::string_view text) {
  const auto [begin, end] = authority_bounds(text);
  const auto at = text.substr(begin, end - begin).rfind('@');
  if (at == std::string_view::npos) return std::string(text);
  return std::string(text.substr(0, begin)) + "***" + std::string(text.substr(begin + at));
}

result<Proxy> parse_proxy_url(std::string_view text, std::string& why) {
  text = trim(text);
  const auto sep = text.find("://");
  if (sep != std::string_view::npos) {
    const std::string scheme = lowered(text.substr(0, sep));
    if (scheme == "https") {
      why = "https:// proxies (TLS to the proxy) are not supported; use an http:// proxy URL "
            "(https:// requests still go through it encrypted, in a CONNECT tunnel)";
      return make_error_code(errc::bad_request);
    }
    if (scheme != "http") {
      why = "unsupported proxy scheme \"" + scheme + "\" (only http:// proxies are supported)";
      return make_error_code(errc::bad_request);
    }
  }
  const auto [begin, end] = authority_bounds(text);
  const std::string_view path = text.substr(end);
  if (!path.empty() && path != "/") {
    why = "a proxy URL has no path";
    return make_error_code(errc::bad_request);
  }
  std::string_view authority = text.substr(begin, end - begin);

  Proxy proxy;
  // The last '@' ends the credentials: an unescaped '@' in a password is a
  // common mistake that this forgives.
  const auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const auto colon = userinfo.find(':');
    const auto user = percent_decode(userinfo.substr(0, colon));
    const auto password =
        percent_decode(colon == std::string_view::npos ? std::string_view{} : userinfo.substr(colon + 1));
    if (!user || !password) {
      why = "malformed %-escape in the proxy credentials";
      return make_error_code(errc::bad_request);
    }
    proxy.authorization = basic_authorization(*user, *password);
    authority.remove_prefix(at + 1);
  }

  const bool bracketed = !authority.empty() && authority.front() == '[';
  HostPort hp = split_host_port(authority);
  if (!hp.ok || !(bracketed ? valid_ipv6(hp.host) : valid_reg_name(hp.host))) {
    why = "expected [http://][user:password@]host[:port]";
    return make_error_code(errc::bad_request);
  }
  proxy.host = std::move(hp.host);
  proxy.port = hp.port.value_or(k_default_proxy_port);
  proxy.display = "http://" + (bracketed ? "[" + proxy.host + "]" : proxy.host) + ":" + std::to_string(proxy.port);
  return proxy;
}

NoProxy::NoProxy(std::string_view list) {
  std::size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (list[i] == ',' || is_space(list[i]))) ++i;
    std::size_t j = i;
    while (j < list.size() && list[j] != ',' && !is_space(list[j])) ++j;
    std::string_view token = list.substr(i, j - i);
    i = j;
    if (token.empty()) continue;
    if (token == "*") {
      m_all = true;
      continue;
    }

    Entry entry;
    std::string host;
    boost::system::error_code ec;
    // A CIDR range: its '/' is unambiguous, and a port cannot follow it.
    if (token.find('/') != std::string_view::npos) {
      const std::string text(token);
      if (text.find(':') == std::string::npos) {
        const auto net4 = ip::make_network_v4(text, ec);
        if (!ec) entry.pattern = net4.canonical();
      } else {
        const auto net6 = ip::make_network_v6(text, ec);
        if (!ec) entry.pattern = net6.canonical();
      }
      if (!ec) m_entries.push_back(std::move(entry));
      continue;
    }
    // More than one ':' without brackets is a bare IPv6 literal, not host:port.
    if (token.front() != '[' && std::count(token.begin(), token.end(), ':') > 1) {
      host = lowered(token);
    } else {
      HostPort hp = split_host_port(token);
      if (!hp.ok) continue;
      host = std::move(hp.host);
      entry.port = hp.port.value_or(0);
    }
    const auto address = ip::make_address(host, ec);
    if (!ec) {
      entry.pattern = address;
    } else {
      // "*.example.com" and ".example.com" mean what "example.com" means,
      // and so does "example.com." (the root label).
      if (host.starts_with("*.")) host.erase(0, 1);
      if (host.starts_with(".")) host.erase(0, 1);
      if (host.ends_with(".")) host.pop_back();
      if (host.empty()) continue;
      entry.pattern = std::move(host);
    }
    m_entries.push_back(std::move(entry));
  }
}

bool NoProxy::matches(std::string_view host_in, std::uint16_t port) const {
  if (m_all) return true;
  std::string host = lowered(host_in);
  if (host.ends_with(".")) host.pop_back();
  boost::system::error_code ec;
  const auto address = ip::make_address(host, ec);
  const bool is_ip = !ec;
  for (const Entry& entry : m_entries) {
    if (entry.port != 0 && entry.port != port) continue;
    const bool hit = std::visit(
        [&](const auto& pattern) -> bool {
          using T = std::decay_t<decltype(pattern)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (is_ip) return false;
            return host == pattern ||
                   (host.size() > pattern.size() && host.ends_with(pattern) &&
                    host[host.size() - pattern.size() - 1] == '.');
          } else if constexpr (std::is_same_v<T, ip::address>) {
            return is_ip && address == pattern;
          } else if constexpr (std::is_same_v<T, ip::network_v4>) {
            return is_ip && address.is_v4() &&
                   (address.to_v4().to_uint() & pattern.netmask().to_uint()) == pattern.address().to_uint();
          } else {
            if (!is_ip || !address.is_v6()) return false;
            const auto bytes = address.to_v6().to_bytes();
            const auto net = pattern.address().to_bytes();
            const unsigned prefix = pattern.prefix_length();
            for (unsigned b = 0; b < 16; ++b) {
              const unsigned bits = prefix >= (b + 1) * 8 ? 8 : (prefix > b * 8 ? prefix - b * 8 : 0);
              const auto mask = static_cast<unsigned char>(0xff00u >> bits);
              if ((bytes[b] & mask) != (net[b] & mask)) return false;
            }
            return true;
          }
        },
        entry.pattern);
    if (hit) return true;
  }
  return false;
}

ClientOptions ClientOptions::from_environment(const std::vector<std::string>& env) {
  ClientOptions options;
  options.https_proxy = lower_then_upper(env, "https_proxy", "HTTPS_PROXY");
  // In a CGI program HTTP_PROXY comes from the request's "Proxy:" header
  // ("httpoxy"), so, like Go and Python, it is ignored when REQUEST_METHOD
  // says we run as one; http_proxy cannot be set by a request.
  options.http_proxy = find_env(env, "REQUEST_METHOD") ? find_env(env, "http_proxy").value_or("")
                                                       : lower_then_upper(env, "http_proxy", "HTTP_PROXY");
  options.no_proxy = lower_then_upper(env, "no_proxy", "NO_PROXY");
  return options;
}

}  // namespace hubcache::upstream
