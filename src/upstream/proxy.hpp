// Outbound HTTP proxies: parsing proxy URLs and NO_PROXY lists.
//
// Private to the upstream module (the tests include it for the matching
// tables). Only plain-HTTP proxies are supported: https:// targets go through
// an HTTP CONNECT tunnel (TLS end to end with the target), http:// targets
// are sent to the proxy in absolute form. A proxy's credentials live only in
// Proxy::authorization; Proxy::display and redact_proxy_url() are what logs,
// error messages and pool keys use, so user:password never reaches a log.
#pragma once

#include <hubcache/core/error.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace hubcache::upstream {

// curl's default when a proxy URL has no port.
inline constexpr std::uint16_t k_default_proxy_port = 1080;

struct Proxy {
  std::string host;           // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string authorization;  // "Basic <base64(user:password)>", or empty without credentials
  std::string display;        // "http://host:port": no credentials, safe to log
};

// Parses "[http://][user[:password]@]host[:port][/]" (the scheme is matched
// case-insensitively; user and password are percent-decoded). On failure
// returns errc::bad_request and says why in `why` (never quoting the
// credentials): https:// proxies (TLS to the proxy) and socks are refused.
result<Proxy> parse_proxy_url(std::string_view text, std::string& why);

// The URL with any user:password replaced by "***", for error messages.
std::string redact_proxy_url(std::string_view text);

// "Basic " + base64(user ":" password) as Proxy-Authorization wants it.
std::string basic_authorization(std::string_view user, std::string_view password);

// A NO_PROXY list: entries separated by commas and/or whitespace, matched
// case-insensitively against a URL's host as written (no DNS lookups):
//   "*"                      every host (alone or as an entry)
//   "example.com", ".example.com", "*.example.com"
//                            example.com itself and all its subdomains
//   "10.1.2.3", "::1", "[::1]"  that IP literal (compared as addresses)
//   "10.0.0.0/8", "fd00::/8" IP literals in that range
//   any of the above + ":port" (IPv6 in brackets: "[::1]:8080")
//                            only that port
// Malformed entries are ignored. localhost and 127.0.0.1 are not excluded
// unless listed, as in curl.
class NoProxy {
 public:
  NoProxy() = default;
  explicit NoProxy(std::string_view list);
  // host as in Url::host: lower case, no brackets around IPv6.
  bool matches(std::string_view host, std::uint16_t port) const;

 private:
  using Pattern = std::variant<std::string, boost::asio::ip::address, boost::asio::ip::network_v4,
                               boost::asio::ip::network_v6>;
  struct Entry {
    Pattern pattern;
    std::uint16_t port = 0;  // 0 = any port
  };
  bool m_all = false;
  std::vector<Entry> m_entries;
};

}  // namespace hubcache::upstream
