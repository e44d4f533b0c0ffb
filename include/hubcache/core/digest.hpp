// Content digests as value types.
//
// Sha256 is the content address of every blob in the store. GitSha1 is the
// git blob id (sha1 of "blob <size>\0<content>") that the Hub uses as ETag for
// files stored in git; it is verified but never used as a storage key.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hubcache::core {

template <std::size_t N>
struct Digest {
  std::array<std::uint8_t, N> bytes{};

  // Parses exactly 2*N hex digits (either case). Returns nullopt otherwise.
  static std::optional<Digest> from_hex(std::string_view hex);
  // Lower-case hex, 2*N characters.
  std::string hex() const;

  friend bool operator==(const Digest&, const Digest&) = default;
};

using Sha256 = Digest<32>;
using GitSha1 = Digest<20>;

extern template struct Digest<32>;
extern template struct Digest<20>;

// True for exactly 40 lower-case hex characters: the only revision form that
// names an immutable commit (the rule the official clients use).
bool is_commit_id(std::string_view revision) noexcept;

}  // namespace hubcache::core
