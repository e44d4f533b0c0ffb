// config::parse: defaults, the three sources, their precedence, and the one-line
// errors that name where a bad value came from. Also checks that
// config/hubcache.example.json parses to the defaults.
#include <hubcache/config/config.hpp>

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace hubcache::config {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Args = std::vector<std::string>;

// Tests pass their own environment; this one only makes cache_dir predictable.
const Args k_env{"HOME=/home/op"};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}
bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

std::string error_of(const Args& args, const Args& env = k_env) {
  try {
    parse(args, env);
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    return message;
  }
  ADD_FAILURE() << "no ConfigError";
  return {};
}

fs::path write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

void expect_defaults_except_cache_dir(const Config& c) {
  const Config d;
  EXPECT_EQ(c.listen_host, d.listen_host);
  EXPECT_EQ(c.listen_port, d.listen_port);
  EXPECT_EQ(c.upstream, d.upstream);
  EXPECT_EQ(c.max_cache_size, d.max_cache_size);
  EXPECT_EQ(c.public_url, d.public_url);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.threads, d.threads);
  EXPECT_EQ(c.upstream_ca_file, d.upstream_ca_file);
  EXPECT_EQ(c.public_ttl, d.public_ttl);
  EXPECT_EQ(c.upstream_timeout, d.upstream_timeout);
  EXPECT_EQ(c.fill_stall_timeout, d.fill_stall_timeout);
  EXPECT_EQ(c.client_timeout, d.client_timeout);
  EXPECT_EQ(c.shutdown_grace, d.shutdown_grace);
  EXPECT_EQ(c.gcs_bucket, d.gcs_bucket);
  EXPECT_EQ(c.gcs_prefix, d.gcs_prefix);
  EXPECT_EQ(c.gcs_endpoint, d.gcs_endpoint);
  EXPECT_EQ(c.gcs_credentials, d.gcs_credentials);
  EXPECT_EQ(c.gcs_lease_wait, d.gcs_lease_wait);
}

fs::path example_file();

// --- Defaults ----------------------------------------------------------------

TEST(ConfigDefaults, NoSourcesGiveTheDocumentedDefaults) {
  const Parsed p = parse({}, k_env);
  EXPECT_EQ(p.outcome, ParseOutcome::run);
  const Config& c = p.config;
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.upstream, "https://huggingface.co");
  EXPECT_EQ(c.cache_dir, fs::path("/home/op/.cache/hubcache"));
  EXPECT_EQ(c.max_cache_size, 100ull << 30);
  EXPECT_EQ(c.public_url, "");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.threads, 0u);
  EXPECT_EQ(c.upstream_ca_file, "");
  EXPECT_EQ(c.public_ttl, seconds(60));
  EXPECT_EQ(c.upstream_timeout, milliseconds(30'000));
  EXPECT_EQ(c.fill_stall_timeout, milliseconds(5'000));
  EXPECT_EQ(c.client_timeout, milliseconds(60'000));
  EXPECT_EQ(c.shutdown_grace, milliseconds(10'000));
  EXPECT_EQ(c.gcs_bucket, "");
  EXPECT_EQ(c.gcs_prefix, "");
  EXPECT_EQ(c.gcs_endpoint, "");
  EXPECT_EQ(c.gcs_credentials, "");
  EXPECT_EQ(c.gcs_lease_wait, milliseconds(20'000));
  EXPECT_FALSE(c.cache_dir_given);
}

// The GCS-only mode is chosen by cache_dir being absent from every source.
TEST(ConfigDefaults, CacheDirGivenFromAnySource) {
  EXPECT_TRUE(parse({"--cache-dir", "/srv/c"}, k_env).config.cache_dir_given);
  EXPECT_TRUE(parse({}, {"HOME=/home/op", "HUBCACHE_CACHE_DIR=/srv/c"}).config.cache_dir_given);
  EXPECT_TRUE(parse({"--config", example_file().string()}, k_env).config.cache_dir_given);
  EXPECT_FALSE(parse({"--gcs-bucket", "fleet-cache"}, k_env).config.cache_dir_given);
  EXPECT_EQ(parse({"--gcs-credentials", "none"}, k_env).config.gcs_credentials, "none");
}

TEST(ConfigDefaults, CacheDirPrefersXdgCacheHome) {
  EXPECT_EQ(parse({}, {"HOME=/home/op", "XDG_CACHE_HOME=/xdg"}).config.cache_dir, fs::path("/xdg/hubcache"));
}

TEST(ConfigDefaults, CacheDirIgnoresEmptyOrRelativeXdgCacheHome) {
  EXPECT_EQ(parse({}, {"XDG_CACHE_HOME=", "HOME=/home/op"}).config.cache_dir, fs::path("/home/op/.cache/hubcache"));
  EXPECT_EQ(parse({}, {"XDG_CACHE_HOME=rel", "HOME=/home/op"}).config.cache_dir, fs::path("/home/op/.cache/hubcache"));
}

TEST(ConfigDefaults, CacheDirWithoutHomeIsLocal) {
  EXPECT_EQ(parse({}, {}).config.cache_dir, fs::path("./hubcache-cache"));
  EXPECT_EQ(parse({}, {"HOME="}).config.cache_dir, fs::path("./hubcache-cache"));
}

TEST(ConfigDefaults, ProcessEnvironmentIsNotRead) {
  ::setenv("HUBCACHE_THREADS", "7", 1);
  ::setenv("XDG_CACHE_HOME", "/from-process", 1);
  const Parsed p = parse({}, {});
  ::unsetenv("HUBCACHE_THREADS");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(p.config.threads, 0u);
  EXPECT_EQ(p.config.cache_dir, fs::path("./hubcache-cache"));
}

// --- Every key through every source -------------------------------------------

struct KeyCase {
  std::string key;    // JSON name
  std::string value;  // as text
  std::function<void(const Config&)> check;
};

std::string flag_of(const std::string& key) {
  std::string flag = "--" + key;
  for (auto& c : flag) c = c == '_' ? '-' : c;
  return flag;
}

std::string env_of(const std::string& key) {
  std::string name = "HUBCACHE_" + key;
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

// One non-default value per key; `ca_file` must exist.
std::vector<KeyCase> key_cases(const fs::path& ca_file) {
  return {
      {"listen", "0.0.0.0:9000",
       [](const Config& c) {
         EXPECT_EQ(c.listen_host, "0.0.0.0");
         EXPECT_EQ(c.listen_port, 9000);
       }},
      {"upstream", "http://hub.local:8081/mirror/",
       [](const Config& c) { EXPECT_EQ(c.upstream, "http://hub.local:8081/mirror"); }},
      {"cache_dir", "/srv/a=b", [](const Config& c) { EXPECT_EQ(c.cache_dir, fs::path("/srv/a=b")); }},
      {"max_cache_size", "64MiB", [](const Config& c) { EXPECT_EQ(c.max_cache_size, 64ull << 20); }},
      {"public_url", "https://cache.example.com/",
       [](const Config& c) { EXPECT_EQ(c.public_url, "https://cache.example.com"); }},
      {"log_level", "debug", [](const Config& c) { EXPECT_EQ(c.log_level, "debug"); }},
      {"threads", "8", [](const Config& c) { EXPECT_EQ(c.threads, 8u); }},
      {"upstream_ca_file", ca_file.string(),
       [ca_file](const Config& c) { EXPECT_EQ(c.upstream_ca_file, ca_file.string()); }},
      {"public_ttl", "5m", [](const Config& c) { EXPECT_EQ(c.public_ttl, seconds(300)); }},
      {"upstream_timeout", "250ms", [](const Config& c) { EXPECT_EQ(c.upstream_timeout, milliseconds(250)); }},
      {"client_timeout", "2m", [](const Config& c) { EXPECT_EQ(c.client_timeout, milliseconds(120'000)); }},
      {"shutdown_grace", "1.5s", [](const Config& c) { EXPECT_EQ(c.shutdown_grace, milliseconds(1500)); }},
      {"revision_ttl", "2s", [](const Config& c) { EXPECT_EQ(c.revision_ttl, milliseconds(2000)); }},
      {"metadata_ttl", "3m", [](const Config& c) { EXPECT_EQ(c.metadata_ttl, milliseconds(180'000)); }},
      {"stale_while_revalidate", "0",
       [](const Config& c) { EXPECT_EQ(c.stale_while_revalidate, milliseconds(0)); }},
      {"negative_ttl", "90s", [](const Config& c) { EXPECT_EQ(c.negative_ttl, milliseconds(90'000)); }},
      {"offline", "true", [](const Config& c) { EXPECT_TRUE(c.offline); }},
      {"read_only", "1", [](const Config& c) { EXPECT_TRUE(c.read_only); }},
      {"fill_chunk_size", "4MiB", [](const Config& c) { EXPECT_EQ(c.fill_chunk_size, 4ull << 20); }},
      {"fill_parallelism", "3", [](const Config& c) { EXPECT_EQ(c.fill_parallelism, 3u); }},
      {"fill_stall_timeout", "1.5s", [](const Config& c) { EXPECT_EQ(c.fill_stall_timeout, milliseconds(1500)); }},
      {"max_fills", "2", [](const Config& c) { EXPECT_EQ(c.max_fills, 2u); }},
      {"upstream_connections_per_host", "12",
       [](const Config& c) { EXPECT_EQ(c.upstream_connections_per_host, 12u); }},
      {"abandon_fill_above", "1G", [](const Config& c) { EXPECT_EQ(c.abandon_fill_above, 1ull << 30); }},
      {"gcs_bucket", "team-cache.eu_1", [](const Config& c) { EXPECT_EQ(c.gcs_bucket, "team-cache.eu_1"); }},
      {"gcs_prefix", "fleet/hubcache", [](const Config& c) { EXPECT_EQ(c.gcs_prefix, "fleet/hubcache/"); }},
      {"gcs_endpoint", "http://127.0.0.1:9199/",
       [](const Config& c) { EXPECT_EQ(c.gcs_endpoint, "http://127.0.0.1:9199"); }},
      {"gcs_credentials", ca_file.string(),
       [ca_file](const Config& c) { EXPECT_EQ(c.gcs_credentials, ca_file.string()); }},
      {"gcs_lease_wait", "0", [](const Config& c) { EXPECT_EQ(c.gcs_lease_wait, milliseconds(0)); }},
  };
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

TEST(ConfigSources, KeyCasesCoverEveryOptionInHelp) {
  test::TempDir dir;
  std::set<std::string> in_help;
  std::istringstream lines(help_text());
  for (std::string line; std::getline(lines, line);) {
    if (starts_with(line, "  --")) in_help.insert(line.substr(2, line.find(' ', 2) - 2));
  }
  std::set<std::string> covered{"--config"};
  for (const auto& k : key_cases(dir.path() / "ca.pem")) covered.insert(flag_of(k.key));
  EXPECT_EQ(in_help, covered);
}

TEST(ConfigSources, FlagWithSeparateValue) {
  test::TempDir dir;
  for (const auto& k : key_cases(write_file(dir.path() / "ca.pem", "pem"))) {
    SCOPED_TRACE(k.key);
    k.check(parse({flag_of(k.key), k.value}, k_env).config);
  }
}

TEST(ConfigSources, FlagWithEqualsValue) {
  test::TempDir dir;
  for (const auto& k : key_cases(write_file(dir.path() / "ca.pem", "pem"))) {
    SCOPED_TRACE(k.key);
    k.check(parse({flag_of(k.key) + "=" + k.value}, k_env).config);
  }
}

TEST(ConfigSources, EnvironmentVariable) {
  test::TempDir dir;
  for (const auto& k : key_cases(write_file(dir.path() / "ca.pem", "pem"))) {
    SCOPED_TRACE(k.key);
    k.check(parse({}, {"HOME=/home/op", env_of(k.key) + "=" + k.value}).config);
  }
}

TEST(ConfigSources, ConfigFileWithStrings) {
  test::TempDir dir;
  for (const auto& k : key_cases(write_file(dir.path() / "ca.pem", "pem"))) {
    SCOPED_TRACE(k.key);
    const fs::path file =
        write_file(dir.path() / "c.json", "{" + json_string(k.key) + ": " + json_string(k.value) + "}");
    k.check(parse({"--config", file.string()}, k_env).config);
  }
}

TEST(ConfigSources, ConfigFileWithAllKeysAtOnce) {
  test::TempDir dir;
  const auto cases = key_cases(write_file(dir.path() / "ca.pem", "pem"));
  std::string text = "{\n";
  for (const auto& k : cases) text += "  " + json_string(k.key) + ": " + json_string(k.value) + ",\n";
  text += "  \"_doc\": {\"listen\": \"ignored\"}\n}\n";
  const Config c = parse({"--config=" + write_file(dir.path() / "c.json", text).string()}, k_env).config;
  for (const auto& k : cases) {
    SCOPED_TRACE(k.key);
    k.check(c);
  }
}

TEST(ConfigSources, ConfigFileNumbersAreBytesSecondsAndCounts) {
  test::TempDir dir;
  const fs::path file = write_file(dir.path() / "c.json",
                                   R"({"max_cache_size": 1048576, "public_ttl": 90, "upstream_timeout": 0.25,
                                       "client_timeout": 120, "shutdown_grace": 1.5, "threads": 4})");
  const Config c = parse({"--config", file.string()}, k_env).config;
  EXPECT_EQ(c.max_cache_size, 1048576u);
  EXPECT_EQ(c.public_ttl, seconds(90));
  EXPECT_EQ(c.upstream_timeout, milliseconds(250));
  EXPECT_EQ(c.client_timeout, milliseconds(120'000));
  EXPECT_EQ(c.shutdown_grace, milliseconds(1500));
  EXPECT_EQ(c.threads, 4u);
}

TEST(ConfigSources, ConfigFileFromEnvironment) {
  test::TempDir dir;
  const fs::path file = write_file(dir.path() / "c.json", R"({"threads": 3})");
  EXPECT_EQ(parse({}, {"HUBCACHE_CONFIG=" + file.string()}).config.threads, 3u);
}

TEST(ConfigSources, UnderscoreKeysInFileAreIgnored) {
  test::TempDir dir;
  const fs::path file = write_file(dir.path() / "c.json",
                                   R"({"_doc": {"threads": "x"}, "_comment_threads": 5, "_": null, "threads": 2})");
  EXPECT_EQ(parse({"--config", file.string()}, k_env).config.threads, 2u);
}

TEST(ConfigSources, IPv6ListenAddress) {
  const Config c = parse({"--listen", "[::1]:0"}, k_env).config;
  EXPECT_EQ(c.listen_host, "::1");
  EXPECT_EQ(c.listen_port, 0);
  EXPECT_EQ(parse({"--listen=[fe80::1%eth0]:65535"}, k_env).config.listen_host, "fe80::1%eth0");
  EXPECT_EQ(parse({"--listen=localhost:80"}, k_env).config.listen_host, "localhost");
}

TEST(ConfigSources, UrlForms) {
  EXPECT_EQ(parse({"--upstream=https://[::1]:8443/"}, k_env).config.upstream, "https://[::1]:8443");
  EXPECT_EQ(parse({"--upstream=http://hub//"}, k_env).config.upstream, "http://hub");
  EXPECT_EQ(parse({"--upstream=https://hub.example.com/a/b"}, k_env).config.upstream, "https://hub.example.com/a/b");
}

TEST(ConfigSources, EmptyOptionalStringsMeanUnset) {
  test::TempDir dir;
  const fs::path file = write_file(dir.path() / "c.json", R"({"public_url": "https://x.example"})");
  const Config c = parse({"--upstream-ca-file="}, {"HUBCACHE_CONFIG=" + file.string(), "HUBCACHE_PUBLIC_URL="}).config;
  EXPECT_EQ(c.public_url, "");
  EXPECT_EQ(c.upstream_ca_file, "");
}

// --- Precedence ----------------------------------------------------------------

TEST(ConfigPrecedence, FlagsBeatEnvironmentBeatsFileBeatsDefaults) {
  test::TempDir dir;
  const fs::path file = write_file(dir.path() / "c.json",
                                   R"({"threads": 1, "log_level": "warn", "listen": "0.0.0.0:1", "public_ttl": "1h"})");
  const Config c = parse({"--threads", "3", "--config", file.string()},
                         {"HOME=/home/op", "HUBCACHE_THREADS=2", "HUBCACHE_LOG_LEVEL=error", "HUBCACHE_PUBLIC_TTL=2h"})
                       .config;
  EXPECT_EQ(c.threads, 3u);                         // flag over env and file
  EXPECT_EQ(c.log_level, "error");                  // env over file
  EXPECT_EQ(c.public_ttl, seconds(7200));           // env over file
  EXPECT_EQ(c.listen_port, 1);                      // file over default
  EXPECT_EQ(c.upstream, "https://huggingface.co");  // default
}

TEST(ConfigPrecedence, ConfigFlagBeatsConfigVariable) {
  test::TempDir dir;
  const fs::path from_flag = write_file(dir.path() / "flag.json", R"({"threads": 5})");
  const fs::path from_env = write_file(dir.path() / "env.json", R"({"threads": 6})");
  EXPECT_EQ(parse({"--config", from_flag.string()}, {"HUBCACHE_CONFIG=" + from_env.string()}).config.threads, 5u);
}

TEST(ConfigPrecedence, LastRepeatedFlagWins) {
  EXPECT_EQ(parse({"--threads", "1", "--threads=9"}, k_env).config.threads, 9u);
}

TEST(ConfigPrecedence, FirstDuplicateEnvironmentEntryWinsLikeGetenv) {
  EXPECT_EQ(parse({}, {"HUBCACHE_THREADS=4", "HUBCACHE_THREADS=5"}).config.threads, 4u);
}

// --- Help and version ----------------------------------------------------------

TEST(ConfigHelp, HelpAndVersionWinEvenOverBadValues) {
  const Args bad_env{"HUBCACHE_THREADS=many", "HUBCACHE_TYPO=1"};
  EXPECT_EQ(parse({"--help"}, bad_env).outcome, ParseOutcome::help);
  EXPECT_EQ(parse({"--threads", "x", "-h"}, bad_env).outcome, ParseOutcome::help);
  EXPECT_EQ(parse({"--version"}, bad_env).outcome, ParseOutcome::version);
  EXPECT_EQ(parse({"--bogus", "--version", "--help"}, bad_env).outcome, ParseOutcome::version);
}

TEST(ConfigHelp, OneLinePerOptionWithDefaultAndVariable) {
  const std::string help = help_text();
  EXPECT_TRUE(starts_with(help, "Usage: hubcache")) << help;
  std::istringstream lines(help);
  int options = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!starts_with(line, "  --")) continue;
    ++options;
    const std::string flag = line.substr(2, line.find(' ', 2) - 2);
    std::string key = flag.substr(2);
    for (auto& c : key) c = c == '-' ? '_' : c;
    EXPECT_TRUE(contains(line, "[default: ")) << line;
    EXPECT_TRUE(contains(line, "env: " + env_of(key) + "]")) << line;
  }
  EXPECT_EQ(options, 30);
  for (const char* text :
       {"--listen HOST:PORT", "default: 127.0.0.1:8080", "default: 100GiB", "default: https://huggingface.co",
        "default: 30s", "default: 1m", "default: $XDG_CACHE_HOME/hubcache", "-h, --help", "--version", "powers of 1024",
        "HUBCACHE_CONFIG"}) {
    EXPECT_TRUE(contains(help, text)) << text;
  }
}

// --- Errors: each names its source and the key --------------------------------

struct BadValue {
  std::string key;
  std::string value;
  std::string detail;  // expected somewhere after the source label
};

TEST(ConfigErrors, EveryBadValueNamesItsSourceAndKey) {
  test::TempDir dir;
  const std::vector<BadValue> cases{
      {"listen", "abc", "expected HOST:PORT or [IPv6]:PORT, got \"abc\""},
      {"listen", "host", "expected HOST:PORT"},
      {"listen", ":80", "expected HOST:PORT"},
      {"listen", "host:", "port must be a number from 0 to 65535"},
      {"listen", "host:65536", "port must be a number from 0 to 65535, got \"host:65536\""},
      {"listen", "host:8o", "port must be"},
      {"listen", "::1:80", "got \"::1:80\" (write an IPv6 address in brackets, e.g. [::1]:8080)"},
      {"listen", "[::1:80", "missing ']'"},
      {"listen", "[zz]:80", "invalid IPv6 address \"zz\""},
      {"listen", "300.1.1.1:80", "invalid IPv4 address"},
      {"listen", "a b:80", "invalid character"},
      {"upstream", "ftp://hub", "must start with http:// or https://"},
      {"upstream", "huggingface.co", "must start with http:// or https://"},
      {"upstream", "", "must start with http:// or https://"},
      {"upstream", "https://", "missing host"},
      {"upstream", "https:///path", "missing host"},
      {"upstream", "https://::1:8443", "invalid host in \"https://::1:8443\" (write an IPv6 address in brackets"},
      {"upstream", "https://[::1", "invalid host"},
      {"upstream", "https://hub:0", "port must be a number from 1 to 65535"},
      {"upstream", "https://hub:99999", "port must be a number from 1 to 65535"},
      {"upstream", "https://hub/?x=1", "must not contain a query"},
      {"upstream", "https://hub/a b", "must not contain a query"},
      {"public_url", "cache.local", "must start with http:// or https://"},
      {"cache_dir", "", "must not be empty"},
      {"max_cache_size", "12XB", "invalid size \"12XB\""},
      {"max_cache_size", "0", "must be greater than 0"},
      {"fill_chunk_size", "64KiB", "must be from 256KiB to 1GiB"},
      {"fill_parallelism", "0", "must be a whole number from 1 to 64"},
      {"fill_parallelism", "65", "must be a whole number from 1 to 64"},
      {"fill_stall_timeout", "0s", "must be greater than 0"},
      {"max_fills", "many", "must be a whole number from 1 to 4096"},
      {"max_cache_size", "16777216TiB", "too large"},
      {"log_level", "verbose", "must be one of trace, debug, info, warn, error, critical, off"},
      {"log_level", "INFO", "must be one of"},
      {"threads", "1025", "from 0 to 1024"},
      {"threads", "-1", "from 0 to 1024"},
      {"threads", "two", "from 0 to 1024"},
      {"upstream_ca_file", (dir.path() / "missing.pem").string(), "cannot read"},
      {"upstream_ca_file", dir.path().string(), "is not a regular file"},
      {"public_ttl", "1500ms", "must be a whole number of seconds"},
      {"public_ttl", "0", "must be greater than 0"},
      {"upstream_timeout", "0ms", "must be greater than 0"},
      {"upstream_timeout", "5x", "invalid duration \"5x\""},
      {"client_timeout", "876001h", "too large"},
      {"shutdown_grace", "-1s", "invalid duration"},
      {"gcs_bucket", "My_Bucket", "not a GCS bucket name"},
      {"gcs_bucket", "ab", "not a GCS bucket name"},
      {"gcs_bucket", "-bucket", "not a GCS bucket name"},
      {"gcs_prefix", "/abs", "must not start with '/'"},
      {"gcs_endpoint", "127.0.0.1:9199", "must start with http:// or https://"},
      {"gcs_credentials", (dir.path() / "missing.json").string(), "cannot read"},
      {"gcs_lease_wait", "soon", "invalid duration"},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.key + " = " + bad.value);
    const std::string flag = error_of({flag_of(bad.key) + "=" + bad.value});
    EXPECT_TRUE(starts_with(flag, flag_of(bad.key) + ": ")) << flag;
    EXPECT_TRUE(contains(flag, bad.detail)) << flag;

    const std::string env = error_of({}, {env_of(bad.key) + "=" + bad.value});
    EXPECT_TRUE(starts_with(env, env_of(bad.key) + ": ")) << env;
    EXPECT_TRUE(contains(env, bad.detail)) << env;

    const fs::path file =
        write_file(dir.path() / "c.json", "{" + json_string(bad.key) + ": " + json_string(bad.value) + "}");
    const std::string in_file = error_of({"--config", file.string()});
    EXPECT_TRUE(starts_with(in_file, file.string() + ": key \"" + bad.key + "\": ")) << in_file;
    EXPECT_TRUE(contains(in_file, bad.detail)) << in_file;
  }
}

TEST(ConfigErrors, ExamplesFromTheSpec) {
  EXPECT_EQ(error_of({"--listen", "abc"}), "--listen: expected HOST:PORT or [IPv6]:PORT, got \"abc\"");
  EXPECT_TRUE(
      starts_with(error_of({}, {"HUBCACHE_MAX_CACHE_SIZE=12XB"}), "HUBCACHE_MAX_CACHE_SIZE: invalid size \"12XB\""));
}

TEST(ConfigErrors, CredentialsInUrlAreRejectedWithoutEchoingThem) {
  const std::string message = error_of({"--upstream", "https://user:s3cret@hub.example.com"});
  EXPECT_TRUE(starts_with(message, "--upstream: must not contain user:password@")) << message;
  EXPECT_FALSE(contains(message, "s3cret")) << message;
}

TEST(ConfigErrors, ControlCharactersAreEscapedToKeepOneLine) {
  const std::string message = error_of({}, {"HUBCACHE_LOG_LEVEL=info\nx"});
  EXPECT_TRUE(contains(message, "\"info\\x0ax\"")) << message;
}

TEST(ConfigErrors, WrongJsonTypes) {
  test::TempDir dir;
  const auto message = [&](const std::string& text) {
    return error_of({"--config", write_file(dir.path() / "c.json", text).string()});
  };
  const std::string prefix = (dir.path() / "c.json").string() + ": key ";
  EXPECT_EQ(message(R"({"threads": true})"), prefix + "\"threads\": expected a string or a number, got boolean");
  EXPECT_EQ(message(R"({"upstream": 5})"), prefix + "\"upstream\": expected a string, got number");
  EXPECT_EQ(message(R"({"public_ttl": null})"), prefix + "\"public_ttl\": expected a string or a number, got null");
  EXPECT_EQ(message(R"({"listen": ["a"]})"), prefix + "\"listen\": expected a string, got array");
  EXPECT_TRUE(starts_with(message(R"({"threads": -1})"), prefix + "\"threads\": must be a whole number"))
      << message(R"({"threads": -1})");
  EXPECT_TRUE(starts_with(message(R"({"threads": 1.5})"), prefix + "\"threads\": must be a whole number"));
  EXPECT_TRUE(contains(message(R"({"max_cache_size": 0.5})"), "not a whole number of bytes"));
}

TEST(ConfigErrors, UnknownFlags) {
  EXPECT_EQ(error_of({"--listn", "x"}), "--listn: unknown option (did you mean --listen?)");
  EXPECT_EQ(error_of({"--cache_dir=/x"}), "--cache_dir: unknown option (did you mean --cache-dir?)");
  EXPECT_EQ(error_of({"--frobnicate"}), "--frobnicate: unknown option");
  EXPECT_TRUE(starts_with(error_of({"-x"}), "-x: unknown option"));
  EXPECT_TRUE(starts_with(error_of({"serve"}), "unexpected argument \"serve\""));
  EXPECT_TRUE(starts_with(error_of({"--"}), "unexpected argument \"--\""));
  EXPECT_EQ(error_of({"--help=yes"}), "--help: takes no value");
}

TEST(ConfigErrors, MissingFlagValue) {
  EXPECT_TRUE(starts_with(error_of({"--listen"}), "--listen: missing value (expected HOST:PORT"))
      << error_of({"--listen"});
  // The next option is not swallowed as a value.
  EXPECT_TRUE(starts_with(error_of({"--cache-dir", "--threads", "4"}), "--cache-dir: missing value"));
  EXPECT_TRUE(starts_with(error_of({"--config"}), "--config: missing value"));
}

TEST(ConfigErrors, UnknownEnvironmentVariablesWarn) {
  // Kubernetes injects HUBCACHE_PORT etc. for a Service named hubcache: warn, start anyway.
  const Parsed p = parse({}, {"HUBCACHE_CACHEDIR=/x", "HUBCACHE_PORT=tcp://10.0.0.1:8080"});
  ASSERT_EQ(p.warnings.size(), 2u);
  EXPECT_EQ(p.warnings[0],
            "HUBCACHE_CACHEDIR: unknown variable, ignored; hubcache reads only the HUBCACHE_* names listed in --help "
            "(did you mean HUBCACHE_CACHE_DIR?)");
  EXPECT_NE(p.config.cache_dir, fs::path("/x"));
  // Other programs' variables are none of our business.
  EXPECT_NO_THROW(parse({}, {"HUBCACHEX=1", "PATH=/bin", "NOEQUALS"}));
}

TEST(ConfigErrors, UnknownAndMisplacedFileKeys) {
  test::TempDir dir;
  const fs::path file = dir.path() / "c.json";
  write_file(file, R"({"cache-dir": "/x"})");
  EXPECT_EQ(error_of({"--config", file.string()}),
            file.string() +
                ": key \"cache-dir\": unknown key (keys starting with '_' are ignored) (did you mean \"cache_dir\"?)");
  write_file(file, R"({"config": "/other.json"})");
  EXPECT_TRUE(
      starts_with(error_of({"--config", file.string()}), file.string() + ": key \"config\": only allowed as --config"));
}

TEST(ConfigErrors, BadConfigFiles) {
  test::TempDir dir;
  const fs::path file = dir.path() / "c.json";
  write_file(file, "{\n  \"threads\": 4,\n}\n");
  const std::string syntax = error_of({"--config", file.string()});
  EXPECT_TRUE(starts_with(syntax, file.string() + ": invalid JSON: parse error at line 3, column 1")) << syntax;
  write_file(file, "");
  EXPECT_TRUE(starts_with(error_of({"--config", file.string()}), file.string() + ": invalid JSON: "));
  write_file(file, "[1, 2]");
  EXPECT_EQ(error_of({"--config", file.string()}),
            file.string() + ": expected a JSON object at the top level, got array");
  write_file(file, R"({"threads": 1, "_doc": {"threads": 1}, "threads": 2})");
  EXPECT_EQ(error_of({"--config", file.string()}), file.string() + ": key \"threads\" appears more than once");

  const std::string missing = (dir.path() / "nope.json").string();
  EXPECT_EQ(error_of({"--config", missing}), "--config: cannot read \"" + missing + "\": No such file or directory");
  EXPECT_EQ(error_of({}, {"HUBCACHE_CONFIG=" + missing}),
            "HUBCACHE_CONFIG: cannot read \"" + missing + "\": No such file or directory");
  EXPECT_TRUE(starts_with(error_of({"--config", dir.path().string()}), "--config: cannot read"));
  EXPECT_EQ(error_of({"--config="}), "--config: expected a file name, got \"\"");
}

// --- The shipped example -------------------------------------------------------

fs::path example_file() {
  // tests/unit/config/ -> repository root. CMake compiles sources by absolute path.
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / "config" /
         "hubcache.example.json";
}

TEST(ConfigExample, ParsesToTheDefaultsExceptCacheDir) {
  ASSERT_TRUE(fs::exists(example_file())) << example_file();
  const Config c = parse({"--config", example_file().string()}, k_env).config;
  expect_defaults_except_cache_dir(c);
  EXPECT_NE(c.cache_dir, fs::path("/home/op/.cache/hubcache"));  // the example shows an explicit directory
}

TEST(ConfigExample, DocumentsEveryKey) {
  std::ifstream in(example_file());
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  test::TempDir dir;
  for (const auto& k : key_cases(dir.path() / "ca.pem")) {
    // Once as a setting and once in "_doc".
    const std::string needle = json_string(k.key) + ":";
    const std::size_t first = text.find(needle);
    ASSERT_NE(first, std::string::npos) << k.key;
    EXPECT_NE(text.find(needle, first + 1), std::string::npos) << k.key << " has no _doc line";
  }
}

TEST(ConfigSources, BareSwitchFlags) {
  const Parsed p = parse({"--offline", "--read-only", "--threads", "2"}, {});
  EXPECT_TRUE(p.config.offline);
  EXPECT_TRUE(p.config.read_only);
  EXPECT_EQ(p.config.threads, 2u);
  EXPECT_FALSE(parse({"--offline=false"}, {}).config.offline);
  EXPECT_THROW(parse({"--offline=maybe"}, {}), ConfigError);
  EXPECT_THROW(parse({}, {"HUBCACHE_READ_ONLY=sure"}), ConfigError);
}

}  // namespace
}  // namespace hubcache::config
