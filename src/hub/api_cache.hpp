// Durable records behind metadata caching and offline serving: cached Hub
// API answers, revision -> commit mappings, and which repos were public.
//
// All of them live as small documents in the MetadataIndex (so they survive
// restarts and, later, replicate with it). `cred` records who an answer was
// fetched for: "" for an anonymous fetch (a public answer anyone may get),
// else a sha256 of the caller's Authorization value (never the token).
#pragma once

#include <hubcache/core/route.hpp>
#include <hubcache/storage/metadata_index.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hubcache::hub {

struct CachedAnswer {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // as upstream sent them (Link unrewritten)
  std::string body;
  std::int64_t fetched_at = 0;  // unix seconds
  std::string cred;
};

struct RevisionMapping {
  std::string commit;
  std::int64_t fetched_at = 0;
  std::string cred;
};

// Document keys: one namespace per record kind, fields length-prefixed.
std::string answer_key(const std::string& api_cache_key);
std::string mapping_key(core::RepoType type, const std::string& repo, const std::string& revision);
std::string public_key(core::RepoType type, const std::string& repo);

std::string encode(const CachedAnswer& a);
std::optional<CachedAnswer> decode_answer(const std::string& doc);
std::string encode(const RevisionMapping& m);
std::optional<RevisionMapping> decode_mapping(const std::string& doc);

// Who a request speaks for: sha256 hex of its Authorization and Cookie
// values ("" for anonymous), never the secret itself.
std::string credential_id(std::string_view authorization, std::string_view cookie = {});

// Wall-clock seconds (records outlive processes, so not steady_clock).
std::int64_t unix_now();

// Removes "xetHash" members from the entries of a tree / paths-info JSON
// array, keeping key order; returns nullopt when the body is not such JSON.
std::optional<std::string> strip_xet_hash(std::string_view json_body);

}  // namespace hubcache::hub
