// hubcache configuration.
//
// Every key can be set in a JSON file (--config FILE), by a HUBCACHE_<KEY>
// environment variable, and by a --<key> flag (underscores become dashes);
// flags beat environment beat file beat defaults. The defaults below are the
// embedded default configuration. config/hubcache.example.json documents every
// key and docs/configuration.md explains them.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace hubcache::config {

struct Config {
  // listen: address and port of the front HTTP server.
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;  // 0 picks a free port (printed at startup)
  // upstream: the Hub, http:// or https://, no trailing slash.
  std::string upstream = "https://huggingface.co";
  // cache_dir: root of the disk store. Default: $XDG_CACHE_HOME/hubcache, else ~/.cache/hubcache.
  std::filesystem::path cache_dir;
  // max_cache_size: bytes of blobs kept before LRU eviction. Default 100 GiB.
  std::uint64_t max_cache_size = 100ull << 30;
  // public_url: how clients reach hubcache (scheme://host[:port]); empty = the request's Host.
  std::string public_url;
  // log_level: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
  // threads: I/O threads; 0 = one per core.
  unsigned threads = 0;
  // upstream_ca_file: extra PEM CA bundle trusted for upstream TLS, on top of the system store.
  std::string upstream_ca_file;
  // public_ttl: how long a repo that answered an anonymous request stays "public"
  // (its cached bytes are then served without asking upstream).
  std::chrono::seconds public_ttl{60};
  // upstream_timeout: deadline for connecting and for each upstream read or write.
  std::chrono::milliseconds upstream_timeout{30'000};
  // fill_chunk_size: bytes per ranged upstream request when a file is filled
  // in parallel (files up to this size are one plain GET).
  std::uint64_t fill_chunk_size = 16u << 20;
  // fill_parallelism: ranged requests in flight per fill (1 = one stream).
  unsigned fill_parallelism = 8;
  // fill_stall_timeout: a fill's upstream body that stops flowing for this
  // long is dropped and resumed (capped at upstream_timeout).
  std::chrono::milliseconds fill_stall_timeout{5'000};
  // max_fills: files filled from upstream at once; more wait their turn.
  unsigned max_fills = 16;
  // upstream_connections_per_host: concurrent fill (and footer, pass-through) requests to one host; more queue.
  unsigned upstream_connections_per_host = 64;
  // abandon_fill_above: when every client of a fill has left, the fill stops
  // if more than this many bytes are left. Default (max): fills always finish.
  std::uint64_t abandon_fill_above = UINT64_MAX;
  // client_timeout: deadline for each read or write on a client connection (idle keep-alive included).
  std::chrono::milliseconds client_timeout{60'000};
  // shutdown_grace: on SIGTERM/SIGINT, how long in-flight responses may take to finish.
  std::chrono::milliseconds shutdown_grace{10'000};
  // revision_ttl: how long a branch/tag/PR -> commit answer (and listings at a
  // branch) is reused before upstream is asked again. Seconds, because the Hub
  // itself has been seen serving a stale revision briefly after a push.
  std::chrono::milliseconds revision_ttl{5'000};
  // metadata_ttl: how long repo info, refs and commit lists are reused.
  std::chrono::milliseconds metadata_ttl{60'000};
  // stale_while_revalidate: once an answer of a public repo stops being fresh,
  // how long it is still served at once while one background request
  // refreshes it. 0 turns this off.
  std::chrono::milliseconds stale_while_revalidate{10'000};
  // negative_ttl: how long "entry not found at this commit" is reused.
  std::chrono::milliseconds negative_ttl{60'000};
  // offline: never contact upstream; serve what the cache has (public repos only).
  bool offline = false;
  // read_only: refuse uploads and other writes relayed to upstream (405).
  bool read_only = false;
  // gcs_bucket: a Google Cloud Storage bucket shared by replicas; empty = disk
  // only. With cache_dir also given, disk is L1 in front of the bucket (L2);
  // without it, the disk under the default cache_dir only stages fills.
  std::string gcs_bucket;
  // gcs_prefix: put before every object name; "" or ending in '/'.
  std::string gcs_prefix;
  // gcs_endpoint: http(s)://host[:port]; empty = $STORAGE_EMULATOR_HOST, else Google's.
  std::string gcs_endpoint;
  // gcs_credentials: a service-account JSON key file, or "none"; empty =
  // automatic (none for STORAGE_EMULATOR_HOST, else GOOGLE_APPLICATION_CREDENTIALS,
  // else the metadata server / Workload Identity).
  std::string gcs_credentials;
  // gcs_lease_wait: longest a fill waits for another replica that is filling
  // the same LFS blob before pulling it too; 0 = no leases. 20 s: the
  // waiting replica's clients already have their headers (after 3 s) and
  // wait for bytes at most twice upstream_timeout (60 s by default), so the
  // wait plus a fill's first bytes must stay well below that.
  std::chrono::milliseconds gcs_lease_wait{20'000};
  // Not a key: whether cache_dir was given (file, env or flag) rather than
  // defaulted; it chooses between the GCS-only and the L1/L2 mode.
  bool cache_dir_given = false;
};

// A bad value: the message names the key and what is wrong, in one line.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ParseOutcome { run, help, version };

struct Parsed {
  ParseOutcome outcome = ParseOutcome::run;
  Config config;
  std::vector<std::string> warnings;  // one line each, for stderr (e.g. unknown HUBCACHE_* variables)
};

// Builds the configuration from defaults, the JSON file named by --config (or
// HUBCACHE_CONFIG), HUBCACHE_* variables in `env` ("NAME=value" strings, as in
// environ) and the flags in `args` (argv without argv[0]). Throws ConfigError.
Parsed parse(const std::vector<std::string>& args, const std::vector<std::string>& env);

// Text printed for --help.
std::string help_text();

// Parses sizes like "500G", "64MiB", "1048576" (bytes; K/M/G/T and KiB/MiB... are powers of 1024).
std::uint64_t parse_size(const std::string& text);  // throws std::invalid_argument
// Parses durations like "250ms", "30s", "10m", "2h"; a bare number is seconds.
std::chrono::milliseconds parse_duration(const std::string& text);  // throws std::invalid_argument

}  // namespace hubcache::config
