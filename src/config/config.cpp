// hubcache configuration: one table of keys drives the flags, the environment
// and the JSON file (contract in config.hpp).
//
// Shaped like ccache's config.cpp: k_keys lists every key once, with the
// setter that validates and stores it, a printer for its value and its help
// line. Flag, variable and JSON names are all derived from the key name, so a
// new key is one row and cannot be forgotten by one of the sources. Sources
// are applied in increasing priority:
//   4. defaults: Config{}, plus cache_dir derived from XDG_CACHE_HOME / HOME
//   3. the JSON file named by --config, else by HUBCACHE_CONFIG
//   2. HUBCACHE_* environment variables
//   1. command-line flags
// Every value given is validated, even one that a higher-priority source then
// overrides: a bad value anywhere is a mistake the operator wants to hear of.
// Every error is one line that starts with where the value came from.
#include <hubcache/config/config.hpp>

#include "units.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace hubcache::config {
namespace {

using detail::quote;
using json = nlohmann::json;

// What a key accepts in the JSON file besides a string: sizes, durations and
// counts may be plain numbers (bytes, seconds, count).
enum class JsonKind { string, string_or_number, boolean };
// Where a key may be set. Only "config" is restricted: a file cannot name
// another file.
enum class Scope { anywhere, flag_and_env };

// Setters throw std::invalid_argument with a message that does not name the
// source; the caller prefixes "--flag: ", "HUBCACHE_X: " or "file: key "x": ".
using Setter = void (*)(Config&, const std::string&);
using Printer = std::string (*)(const Config&);

struct Key {
  std::string_view name;     // JSON key; flag and variable names derive from it
  std::string_view metavar;  // placeholder in --help
  JsonKind json_kind;
  Scope scope;
  Setter set;                     // nullptr for "config", which parse() handles itself
  Printer show;                   // prints the value in a form `set` accepts
  std::string_view default_note;  // replaces show(Config{}) in --help when the default is computed
  std::string_view help;
};

[[noreturn]] void bad(std::string message) { throw std::invalid_argument(std::move(message)); }

// --- Validators -------------------------------------------------------------

// Digits only, no sign or spaces, at most `max`.
std::optional<std::uint64_t> parse_bounded(std::string_view text, std::uint64_t max) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, static_cast<unsigned>(c - '0'), &value)) {
      return std::nullopt;
    }
  }
  if (value > max) return std::nullopt;
  return value;
}

bool is_ipv6(std::string_view text) {
  // A zone ("fe80::1%eth0") is allowed after the address; inet_pton does not take one.
  const std::size_t percent = text.find('%');
  if (percent != std::string_view::npos && percent + 1 == text.size()) return false;
  const std::string address(text.substr(0, percent));
  in6_addr out{};
  return ::inet_pton(AF_INET6, address.c_str(), &out) == 1;
}

// A DNS name or an IPv4 address (no brackets, no port).
void check_host_name(std::string_view host) {
  if (host.empty()) bad("missing host");
  const bool dotted_digits =
      std::all_of(host.begin(), host.end(), [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
  if (dotted_digits) {
    // "300.1.1.1" would otherwise pass as a name and fail much later, in the resolver.
    const std::string address(host);
    in_addr out{};
    if (::inet_pton(AF_INET, address.c_str(), &out) != 1) bad("invalid IPv4 address " + quote(host));
    return;
  }
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
    if (!ok) bad("invalid character in host name " + quote(host));
  }
}

struct HostPort {
  std::string host;  // IPv6 without brackets
  std::string_view port;
  bool has_port = false;
};

// "host", "host:port", "[v6]" or "[v6]:port".
HostPort split_host_port(std::string_view text) {
  HostPort out;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) bad("missing ']' after the IPv6 address");
    const std::string_view v6 = text.substr(1, close - 1);
    if (!is_ipv6(v6)) bad("invalid IPv6 address " + quote(v6));
    out.host = std::string(v6);
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') bad("expected ':' after ']'");
      out.port = after.substr(1);
      out.has_port = true;
    }
    return out;
  }
  const std::size_t colon = text.rfind(':');
  const std::string_view host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos) {
    bad("write an IPv6 address in brackets, e.g. [::1]:8080");
  }
  check_host_name(host);
  out.host = std::string(host);
  if (colon != std::string_view::npos) {
    out.port = text.substr(colon + 1);
    out.has_port = true;
  }
  return out;
}

void set_listen(Config& config, const std::string& value) {
  const std::string expected = "expected HOST:PORT or [IPv6]:PORT, got " + quote(value);
  if (value.empty()) bad(expected);
  HostPort hp;
  try {
    hp = split_host_port(value);
  } catch (const std::invalid_argument& e) {
    bad(expected + " (" + e.what() + ")");
  }
  if (!hp.has_port) bad(expected);
  const auto port = parse_bounded(hp.port, 65535);
  if (!port) bad("port must be a number from 0 to 65535, got " + quote(value));
  config.listen_host = hp.host;
  config.listen_port = static_cast<std::uint16_t>(*port);
}

// http(s)://host[:port][/path], returned without trailing slashes so callers
// can append "/api/..." without doubling them.
std::string normalize_url(const std::string& value) {
  std::string_view rest = value;
  std::string_view scheme;
  for (std::string_view s : {"http://", "https://"}) {
    if (rest.starts_with(s)) scheme = s;
  }
  if (scheme.empty()) bad("must start with http:// or https://, got " + quote(value));
  rest.remove_prefix(scheme.size());
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  // Not echoed: the value holds a password.
  if (authority.find('@') != std::string_view::npos) {
    bad("must not contain user:password@ (credentials would end up in logs)");
  }
  if (authority.empty()) bad("missing host in " + quote(value));
  HostPort hp;
  try {
    hp = split_host_port(authority);
  } catch (const std::invalid_argument& e) {
    bad("invalid host in " + quote(value) + " (" + e.what() + ")");
  }
  if (hp.has_port && !parse_bounded(hp.port, 65535).value_or(0)) {
    bad("port must be a number from 1 to 65535 in " + quote(value));
  }
  for (char c : path) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '?' || c == '#' || byte <= 0x20 || byte == 0x7f) {
      bad("must not contain a query, a fragment, spaces or control characters, got " + quote(value));
    }
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  return std::string(scheme) + std::string(authority) + std::string(path);
}

void check_readable_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) bad("cannot read " + quote(path) + ": " + std::strerror(errno));
  struct stat st {};
  // fopen succeeds on a directory; reading it would fail later, far from here.
  if (::fstat(::fileno(file.get()), &st) != 0 || !S_ISREG(st.st_mode)) bad(quote(path) + " is not a regular file");
}

std::chrono::milliseconds positive_duration(const std::string& value) {
  const std::chrono::milliseconds d = parse_duration(value);
  if (d.count() <= 0) bad("must be greater than 0, got " + quote(value));
  return d;
}

// --- Setters and printers, one pair per key -----------------------------------

void set_upstream(Config& config, const std::string& value) { config.upstream = normalize_url(value); }

void set_cache_dir(Config& config, const std::string& value) {
  if (value.empty()) bad("must not be empty");
  config.cache_dir = value;
  config.cache_dir_given = true;
}

// GCS bucket naming rules: 3 to 222 characters of a-z, 0-9, '-', '_' and
// '.', starting and ending with a letter or digit. Empty turns GCS off.
void set_gcs_bucket(Config& config, const std::string& value) {
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!value.empty()) {
    const bool chars_ok = std::all_of(value.begin(), value.end(),
                                      [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
    if (value.size() < 3 || value.size() > 222 || !chars_ok || !alnum(value.front()) || !alnum(value.back())) {
      bad("not a GCS bucket name (3-222 of a-z 0-9 - _ ., starting and ending with a letter or digit): " +
          quote(value));
    }
  }
  config.gcs_bucket = value;
}

// A prefix names a "directory": "team/hubcache" becomes "team/hubcache/".
void set_gcs_prefix(Config& config, const std::string& value) {
  if (value.starts_with('/')) bad("must not start with '/', got " + quote(value));
  if (value.find('\n') != std::string::npos || value.find('\r') != std::string::npos) bad("must not contain line breaks");
  config.gcs_prefix = value.empty() || value.ends_with('/') ? value : value + "/";
}

void set_gcs_endpoint(Config& config, const std::string& value) {
  config.gcs_endpoint = value.empty() ? std::string() : normalize_url(value);
}

// "none": send no credentials (an emulator, or an endpoint that
// authenticates another way).
void set_gcs_credentials(Config& config, const std::string& value) {
  if (!value.empty() && value != "none") check_readable_file(value);
  config.gcs_credentials = value;
}

void set_gcs_lease_wait(Config& config, const std::string& value) {
  config.gcs_lease_wait = parse_duration(value);
  if (config.gcs_lease_wait.count() < 0) bad("must not be negative, got " + quote(value));
}

void set_max_cache_size(Config& config, const std::string& value) {
  const std::uint64_t size = parse_size(value);
  if (size == 0) bad("must be greater than 0, got " + quote(value));
  config.max_cache_size = size;
}

// Empty means "not set": it is the default, and lets an environment override a
// value from the file back to the default.
void set_public_url(Config& config, const std::string& value) {
  config.public_url = value.empty() ? std::string() : normalize_url(value);
}

constexpr std::array<std::string_view, 7> k_log_levels{"trace", "debug", "info", "warn", "error", "critical", "off"};

void set_log_level(Config& config, const std::string& value) {
  if (std::find(k_log_levels.begin(), k_log_levels.end(), value) == k_log_levels.end()) {
    bad("must be one of trace, debug, info, warn, error, critical, off; got " + quote(value));
  }
  config.log_level = value;
}

// More threads than this is a typo, not a machine: I/O threads beyond the core
// count only add contention.
constexpr unsigned k_max_threads = 1024;

void set_threads(Config& config, const std::string& value) {
  const auto threads = parse_bounded(value, k_max_threads);
  if (!threads) bad("must be a whole number from 0 to 1024 (0 = one per core), got " + quote(value));
  config.threads = static_cast<unsigned>(*threads);
}

// Fill tuning: bounds that catch typos, not policies.
void set_fill_chunk_size(Config& config, const std::string& value) {
  const std::uint64_t size = parse_size(value);
  if (size < (256u << 10) || size > (1ull << 30)) bad("must be from 256KiB to 1GiB, got " + quote(value));
  config.fill_chunk_size = size;
}

unsigned bounded_count(const std::string& value, unsigned max) {
  const auto n = parse_bounded(value, max);
  if (!n || *n == 0) bad("must be a whole number from 1 to " + std::to_string(max) + ", got " + quote(value));
  return static_cast<unsigned>(*n);
}

void set_fill_parallelism(Config& config, const std::string& value) { config.fill_parallelism = bounded_count(value, 64); }
void set_fill_stall_timeout(Config& config, const std::string& value) {
  config.fill_stall_timeout = positive_duration(value);
}
void set_max_fills(Config& config, const std::string& value) { config.max_fills = bounded_count(value, 4096); }
void set_upstream_connections_per_host(Config& config, const std::string& value) {
  config.upstream_connections_per_host = bounded_count(value, 4096);
}

void set_abandon_fill_above(Config& config, const std::string& value) {
  config.abandon_fill_above = value == "never" ? UINT64_MAX : parse_size(value);
}

void set_upstream_ca_file(Config& config, const std::string& value) {
  if (!value.empty()) check_readable_file(value);
  config.upstream_ca_file = value;
}

void set_public_ttl(Config& config, const std::string& value) {
  const std::chrono::milliseconds d = positive_duration(value);
  // The field is in seconds; truncating "1500ms" would silently change it.
  if (d.count() % 1000 != 0) bad("must be a whole number of seconds, got " + quote(value));
  config.public_ttl = std::chrono::duration_cast<std::chrono::seconds>(d);
}

void set_upstream_timeout(Config& config, const std::string& value) {
  config.upstream_timeout = positive_duration(value);
}
void set_client_timeout(Config& config, const std::string& value) { config.client_timeout = positive_duration(value); }
void set_shutdown_grace(Config& config, const std::string& value) { config.shutdown_grace = positive_duration(value); }
void set_revision_ttl(Config& config, const std::string& value) { config.revision_ttl = positive_duration(value); }
void set_metadata_ttl(Config& config, const std::string& value) { config.metadata_ttl = positive_duration(value); }
void set_negative_ttl(Config& config, const std::string& value) { config.negative_ttl = positive_duration(value); }
// 0 is meaningful here: it turns stale-while-revalidate off.
void set_stale_while_revalidate(Config& config, const std::string& value) {
  config.stale_while_revalidate = value == "0" ? std::chrono::milliseconds(0) : positive_duration(value);
}

// Strict, so a typo does not silently mean false.
bool parse_switch(const std::string& value) {
  if (value == "true" || value == "1" || value == "yes") return true;
  if (value == "false" || value == "0" || value == "no") return false;
  bad("must be true or false (or 1/0, yes/no), got " + quote(value));
  return false;
}
void set_offline(Config& config, const std::string& value) { config.offline = parse_switch(value); }
void set_read_only(Config& config, const std::string& value) { config.read_only = parse_switch(value); }
std::string show_bool(bool v) { return v ? "true" : "false"; }

std::string show_listen(const Config& c) {
  const bool v6 = c.listen_host.find(':') != std::string::npos;
  return (v6 ? "[" + c.listen_host + "]" : c.listen_host) + ":" + std::to_string(c.listen_port);
}

// --- The table ---------------------------------------------------------------

// One row per key: name, metavar, JSON kind, scope, setter, printer,
// default note, help. Flag, variable and JSON names derive from the name.
// clang-format off
const std::array k_keys{
    Key{"config", "FILE", JsonKind::string, Scope::flag_and_env, nullptr,
        nullptr,
        "none", "JSON file with any of the keys below (dashes become underscores)"},
    Key{"listen", "HOST:PORT", JsonKind::string, Scope::anywhere, set_listen,
        show_listen,
        "", "address to serve on, HOST:PORT or [IPv6]:PORT; port 0 picks a free one"},
    Key{"upstream", "URL", JsonKind::string, Scope::anywhere, set_upstream,
        [](const Config& c) { return c.upstream; },
        "", "the Hub to fetch from, http(s)://host[:port][/path]"},
    Key{"cache_dir", "DIR", JsonKind::string, Scope::anywhere, set_cache_dir,
        [](const Config& c) { return c.cache_dir.string(); },
        "$XDG_CACHE_HOME/hubcache, else $HOME/.cache/hubcache, else ./hubcache-cache",
        "root directory of the disk cache"},
    Key{"max_cache_size", "SIZE", JsonKind::string_or_number, Scope::anywhere, set_max_cache_size,
        [](const Config& c) { return detail::format_size(c.max_cache_size); },
        "", "bytes of cached files kept before the least recently used are evicted"},
    Key{"public_url", "URL", JsonKind::string, Scope::anywhere, set_public_url,
        [](const Config& c) { return c.public_url; },
        "", "URL clients reach hubcache at, used in redirects; none = the request's Host"},
    Key{"log_level", "LEVEL", JsonKind::string, Scope::anywhere, set_log_level,
        [](const Config& c) { return c.log_level; },
        "", "trace, debug, info, warn, error, critical or off"},
    Key{"threads", "N", JsonKind::string_or_number, Scope::anywhere, set_threads,
        [](const Config& c) { return std::to_string(c.threads); },
        "", "I/O threads, 0 to 1024; 0 = one per core"},
    Key{"upstream_ca_file", "FILE", JsonKind::string, Scope::anywhere, set_upstream_ca_file,
        [](const Config& c) { return c.upstream_ca_file; },
        "", "PEM CA bundle trusted for upstream TLS in addition to the system store"},
    Key{"public_ttl", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_public_ttl,
        [](const Config& c) { return detail::format_duration(c.public_ttl); },
        "", "how long a repo seen public is served from cache without asking upstream (whole seconds)"},
    Key{"upstream_timeout", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_upstream_timeout,
        [](const Config& c) { return detail::format_duration(c.upstream_timeout); },
        "", "deadline for connecting upstream and for each upstream read or write"},
    Key{"fill_chunk_size", "SIZE", JsonKind::string_or_number, Scope::anywhere, set_fill_chunk_size,
        [](const Config& c) { return detail::format_size(c.fill_chunk_size); },
        "", "bytes per ranged upstream request of a parallel fill (256KiB to 1GiB)"},
    Key{"fill_parallelism", "N", JsonKind::string_or_number, Scope::anywhere, set_fill_parallelism,
        [](const Config& c) { return std::to_string(c.fill_parallelism); },
        "", "ranged upstream requests in flight per file being filled, 1 to 64"},
    Key{"fill_stall_timeout", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_fill_stall_timeout,
        [](const Config& c) { return detail::format_duration(c.fill_stall_timeout); },
        "", "drop and resume a fill's upstream request whose body stops flowing this long (capped at upstream_timeout)"},
    Key{"max_fills", "N", JsonKind::string_or_number, Scope::anywhere, set_max_fills,
        [](const Config& c) { return std::to_string(c.max_fills); },
        "", "files filled from upstream at once; more wait their turn"},
    Key{"upstream_connections_per_host", "N", JsonKind::string_or_number, Scope::anywhere,
        set_upstream_connections_per_host,
        [](const Config& c) { return std::to_string(c.upstream_connections_per_host); },
        "", "concurrent fill requests (and footer reads, pass-through streams) to one upstream host; more queue"},
    Key{"abandon_fill_above", "SIZE", JsonKind::string_or_number, Scope::anywhere, set_abandon_fill_above,
        [](const Config& c) { return c.abandon_fill_above == UINT64_MAX ? std::string("never")
                                                                          : detail::format_size(c.abandon_fill_above); },
        "", "when all clients of a fill left, stop it if more than SIZE is left to fetch ('never' = always finish)"},
    Key{"client_timeout", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_client_timeout,
        [](const Config& c) { return detail::format_duration(c.client_timeout); },
        "", "deadline for each client read or write, idle keep-alive included"},
    Key{"shutdown_grace", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_shutdown_grace,
        [](const Config& c) { return detail::format_duration(c.shutdown_grace); },
        "", "on SIGTERM/SIGINT, how long in-flight responses may take to finish"},
    Key{"revision_ttl", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_revision_ttl,
        [](const Config& c) { return detail::format_duration(c.revision_ttl); },
        "", "how long a branch/tag -> commit answer is reused before asking upstream again"},
    Key{"metadata_ttl", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_metadata_ttl,
        [](const Config& c) { return detail::format_duration(c.metadata_ttl); },
        "", "how long repo info, refs and commit lists are reused"},
    Key{"stale_while_revalidate", "DURATION", JsonKind::string_or_number, Scope::anywhere,
        set_stale_while_revalidate,
        [](const Config& c) { return c.stale_while_revalidate.count() == 0 ? std::string("0")
                                                                             : detail::format_duration(c.stale_while_revalidate); },
        "", "after an answer expires, how long it is still served while refreshed in the background (0 = off)"},
    Key{"negative_ttl", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_negative_ttl,
        [](const Config& c) { return detail::format_duration(c.negative_ttl); },
        "", "how long 'entry not found at this commit' is reused"},
    Key{"offline", "BOOL", JsonKind::boolean, Scope::anywhere, set_offline,
        [](const Config& c) { return show_bool(c.offline); },
        "", "never contact upstream; serve only what the cache holds (a bare --offline means true)"},
    Key{"read_only", "BOOL", JsonKind::boolean, Scope::anywhere, set_read_only,
        [](const Config& c) { return show_bool(c.read_only); },
        "", "refuse uploads and other writes with 405 (a bare --read-only means true)"},
    Key{"gcs_bucket", "NAME", JsonKind::string, Scope::anywhere, set_gcs_bucket,
        [](const Config& c) { return c.gcs_bucket; },
        "", "GCS bucket shared by replicas; with --cache-dir disk is L1 in front of it, else disk only stages"},
    Key{"gcs_prefix", "PREFIX", JsonKind::string, Scope::anywhere, set_gcs_prefix,
        [](const Config& c) { return c.gcs_prefix; },
        "", "put before every GCS object name (a '/' is added)"},
    Key{"gcs_endpoint", "URL", JsonKind::string, Scope::anywhere, set_gcs_endpoint,
        [](const Config& c) { return c.gcs_endpoint; },
        "$STORAGE_EMULATOR_HOST, else https://storage.googleapis.com", "GCS JSON API endpoint"},
    Key{"gcs_credentials", "FILE", JsonKind::string, Scope::anywhere, set_gcs_credentials,
        [](const Config& c) { return c.gcs_credentials; },
        "automatic: $GOOGLE_APPLICATION_CREDENTIALS, else the metadata server",
        "service-account JSON key for GCS, or none"},
    Key{"gcs_lease_wait", "DURATION", JsonKind::string_or_number, Scope::anywhere, set_gcs_lease_wait,
        [](const Config& c) { return c.gcs_lease_wait.count() == 0 ? std::string("0")
                                                                     : detail::format_duration(c.gcs_lease_wait); },
        "", "longest a fill waits for another replica filling the same LFS file (0 = no leases)"},
};
// clang-format on

constexpr std::string_view k_env_prefix = "HUBCACHE_";

std::string flag_name(const Key& key) {
  std::string out = "--" + std::string(key.name);
  std::replace(out.begin(), out.end(), '_', '-');
  return out;
}

std::string env_name(const Key& key) {
  std::string out(k_env_prefix);
  for (char c : key.name) out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string json_name(const Key& key) { return quote(key.name); }

const Key& config_key() { return k_keys.front(); }

// --- Typo hints ------------------------------------------------------------------

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean X?)" when `name` is within two edits of a key usable in
// `where`, comparing in key spelling so "cache-dir" in a file and
// HUBCACHE_CACHEDIR both find cache_dir. `spell` writes the suggestion.
std::string did_you_mean(std::string_view name, Scope where, std::string (*spell)(const Key&)) {
  std::string normal;
  for (char c : name) normal += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Key* best = nullptr;
  std::size_t best_distance = 3;
  for (const Key& key : k_keys) {
    if (where == Scope::anywhere && key.scope != Scope::anywhere) continue;
    const std::size_t d = edit_distance(normal, key.name);
    if (d < best_distance) {
      best = &key;
      best_distance = d;
    }
  }
  return best == nullptr ? std::string() : " (did you mean " + spell(*best) + "?)";
}

// --- Sources -----------------------------------------------------------------

struct Setting {
  const Key* key;
  std::string value;
  std::string label;  // where it came from, the prefix of error messages
};

void apply(Config& config, const Setting& setting) {
  try {
    setting.key->set(config, setting.value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(setting.label + ": " + e.what());
  }
}

bool looks_like_flag(const std::string& arg) { return arg.size() > 1 && arg.front() == '-'; }

// Flags in the order given (a repeated flag: the last one wins).
std::vector<Setting> read_flags(const std::vector<std::string>& args) {
  std::vector<Setting> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--") || arg == "--") {
      if (looks_like_flag(arg) && arg != "--") throw ConfigError(arg + ": unknown option (see --help)");
      throw ConfigError("unexpected argument " + quote(arg) + " (options are --key VALUE or --key=VALUE)");
    }
    const std::size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    if (name == "--help" || name == "--version") throw ConfigError(name + ": takes no value");
    const auto key = std::find_if(k_keys.begin(), k_keys.end(), [&](const Key& k) { return flag_name(k) == name; });
    if (key == k_keys.end()) {
      throw ConfigError(name + ": unknown option" +
                        did_you_mean(std::string_view(name).substr(2), Scope::flag_and_env, flag_name));
    }
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (key->json_kind == JsonKind::boolean) {
      // A switch: its presence means true, and an explicit word may follow.
      static const std::set<std::string, std::less<>> k_words{"true", "false", "1", "0", "yes", "no"};
      value = i + 1 < args.size() && k_words.count(args[i + 1]) != 0 ? args[++i] : "true";
    } else if (i + 1 < args.size() && !looks_like_flag(args[i + 1])) {
      value = args[++i];
    } else {
      // A following "-x" is taken as the next option, not as this one's value,
      // so "--cache-dir --threads 4" fails here instead of creating "./--threads".
      throw ConfigError(name + ": missing value (expected " + std::string(key->metavar) + "; use " + name +
                        "=VALUE for a value that starts with '-')");
    }
    out.push_back({&*key, std::move(value), name});
  }
  return out;
}

std::optional<std::string> find_env(const std::vector<std::string>& env, std::string_view name) {
  for (const std::string& entry : env) {
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

// An unknown HUBCACHE_* variable is a warning, not an error: Kubernetes
// injects HUBCACHE_PORT, HUBCACHE_SERVICE_HOST, ... into every pod of a
// namespace that has a Service named "hubcache", and the daemon must still
// start there. The warning names the likely intended key.
std::vector<Setting> read_env(const std::vector<std::string>& env, std::vector<std::string>& warnings) {
  std::vector<Setting> out;
  std::set<std::string, std::less<>> seen;
  for (const std::string& entry : env) {
    const std::size_t equals = entry.find('=');
    if (!entry.starts_with(k_env_prefix) || equals == std::string::npos) continue;
    std::string name = entry.substr(0, equals);
    // Like getenv: the first of duplicate entries counts.
    if (!seen.insert(name).second) continue;
    const auto key = std::find_if(k_keys.begin(), k_keys.end(), [&](const Key& k) { return env_name(k) == name; });
    if (key == k_keys.end()) {
      warnings.push_back(
          name + ": unknown variable, ignored; hubcache reads only the HUBCACHE_* names listed in --help" +
          did_you_mean(std::string_view(name).substr(k_env_prefix.size()), Scope::flag_and_env, env_name));
      continue;
    }
    out.push_back({&*key, entry.substr(equals + 1), std::move(name)});
  }
  return out;
}

std::filesystem::path default_cache_dir(const std::vector<std::string>& env) {
  // XDG base-directory spec: an empty or relative XDG_CACHE_HOME is ignored.
  const auto xdg = find_env(env, "XDG_CACHE_HOME");
  if (xdg && xdg->starts_with('/')) return std::filesystem::path(*xdg) / "hubcache";
  const auto home = find_env(env, "HOME");
  if (home && !home->empty()) return std::filesystem::path(*home) / ".cache" / "hubcache";
  return "./hubcache-cache";
}

std::string read_whole_file(const std::string& path, const std::string& label) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw ConfigError(label + ": cannot read " + quote(path) + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, n);
  if (std::ferror(file.get()) != 0) {
    throw ConfigError(label + ": cannot read " + quote(path) + ": " + std::strerror(errno));
  }
  return text;
}

std::string json_value_text(const Key& key, const json& value, const std::string& label) {
  if (value.is_string()) return value.get<std::string>();
  if (key.json_kind == JsonKind::boolean) {
    if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
    throw ConfigError(label + ": expected true or false, got " + value.type_name());
  }
  if (key.json_kind == JsonKind::string_or_number) {
    if (value.is_number()) return value.dump();
    throw ConfigError(label + ": expected a string or a number, got " + value.type_name());
  }
  throw ConfigError(label + ": expected a string, got " + value.type_name());
}

std::vector<Setting> read_file(const std::string& path, const std::string& label) {
  if (path.empty()) throw ConfigError(label + ": expected a file name, got \"\"");
  const std::string text = read_whole_file(path, label);
  // nlohmann keeps the last of duplicate keys silently; a key written twice is
  // almost always an edit that forgot the first one, so it is an error.
  std::string duplicate;
  std::set<std::string, std::less<>> seen;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
        duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(text, on_event);
  } catch (const json::parse_error& e) {
    // Drop the "[json.exception.parse_error.101] " prefix: operators need the line and column.
    std::string_view message = e.what();
    const std::size_t tag_end = message.find("] ");
    if (message.starts_with('[') && tag_end != std::string_view::npos) message.remove_prefix(tag_end + 2);
    throw ConfigError(path + ": invalid JSON: " + std::string(message));
  }
  if (!doc.is_object()) throw ConfigError(path + ": expected a JSON object at the top level, got " + doc.type_name());
  if (!duplicate.empty()) throw ConfigError(path + ": key " + quote(duplicate) + " appears more than once");
  std::vector<Setting> out;
  for (const auto& item : doc.items()) {
    // Plain references rather than a structured binding: clang 14 cannot capture those in the lambda below.
    const std::string& name = item.key();
    const json& value = item.value();
    // "_doc", "_comment" and the like: documentation, see config/hubcache.example.json.
    if (name.starts_with('_')) continue;
    std::string key_label = path + ": key " + quote(name);
    const auto key = std::find_if(k_keys.begin(), k_keys.end(), [&](const Key& k) { return k.name == name; });
    if (key == k_keys.end()) {
      throw ConfigError(key_label + ": unknown key (keys starting with '_' are ignored)" +
                        did_you_mean(name, Scope::anywhere, json_name));
    }
    if (key->scope != Scope::anywhere) {
      throw ConfigError(key_label + ": only allowed as --config or HUBCACHE_CONFIG, not inside a config file");
    }
    out.push_back({&*key, json_value_text(*key, value, key_label), std::move(key_label)});
  }
  return out;
}

}  // namespace

Parsed parse(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  Parsed parsed;
  parsed.config.cache_dir = default_cache_dir(env);
  // --help and --version win over everything else, so they work even when the
  // environment holds a bad value. A value never starts with '-' (read_flags),
  // so these tokens are always options, never some flag's value.
  for (const std::string& arg : args) {
    if (arg == "-h" || arg == "--help") {
      parsed.outcome = ParseOutcome::help;
      return parsed;
    }
    if (arg == "--version") {
      parsed.outcome = ParseOutcome::version;
      return parsed;
    }
  }
  // Read every source before applying any, so that a syntax error (unknown
  // flag or variable) is reported even if a value error comes earlier.
  std::vector<Setting> flags = read_flags(args);
  std::vector<Setting> env_settings = read_env(env, parsed.warnings);
  const auto is_config = [](const Setting& s) { return s.key == &config_key(); };

  std::optional<Setting> file;
  for (const Setting& s : flags) {
    if (is_config(s)) file = s;
  }
  if (!file) {
    const auto it = std::find_if(env_settings.begin(), env_settings.end(), is_config);
    if (it != env_settings.end()) file = *it;
  }
  if (file) {
    for (const Setting& s : read_file(file->value, file->label)) apply(parsed.config, s);
  }
  for (const std::vector<Setting>* layer : {&env_settings, &flags}) {
    for (const Setting& s : *layer) {
      if (!is_config(s)) apply(parsed.config, s);
    }
  }
  return parsed;
}

std::string help_text() {
  // Options column width: the longest "--upstream-timeout DURATION" plus a gap.
  constexpr std::size_t k_column = 32;
  const Config defaults;
  std::string out =
      "Usage: hubcache [OPTION]...\n"
      "Caching proxy for Hugging Face Hub downloads.\n"
      "\n"
      "Options:\n";
  for (const Key& key : k_keys) {
    std::string left = "  " + flag_name(key) + " " + std::string(key.metavar);
    left.resize(std::max(k_column, left.size() + 1), ' ');
    std::string default_text(key.default_note);
    if (default_text.empty()) default_text = key.show(defaults);
    if (default_text.empty()) default_text = "none";
    out += left + std::string(key.help) + " [default: " + default_text + "; env: " + env_name(key) + "]\n";
  }
  std::string help_left = "  -h, --help";
  help_left.resize(k_column, ' ');
  std::string version_left = "      --version";
  version_left.resize(k_column, ' ');
  out += help_left + "print this help and exit\n";
  out += version_left + "print the version and exit\n";
  out +=
      "\n"
      "Write options as --key VALUE or --key=VALUE. Every option except --config is also\n"
      "a key of the JSON config file, with underscores for dashes (\"cache_dir\").\n"
      "Precedence: flags, then environment variables, then the config file, then defaults.\n"
      "SIZE: bytes, or a number with K, M, G or T (optionally followed by B or iB), all\n"
      "  powers of 1024: 64MiB, 500G, 1.5GiB. A JSON number is bytes.\n"
      "DURATION: a number with ms, s, m or h: 250ms, 30s, 10m, 1.5h; a bare number is\n"
      "  seconds, in the file too.\n"
      "An invalid value makes hubcache print one line naming it and exit with status 2.\n";
  return out;
}

}  // namespace hubcache::config
