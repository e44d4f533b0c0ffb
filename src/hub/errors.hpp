// The one table that maps hubcache errors to HTTP answers.
//
// Hub errors (RepoNotFound, GatedRepo, EntryNotFound, ...) are never invented
// here: they come from upstream and are relayed with their own status and
// X-Error-Code. This table covers what hubcache itself decides.
#pragma once

#include <hubcache/http/server.hpp>

#include <string_view>
#include <system_error>

namespace hubcache::hub {

struct ErrorAnswer {
  unsigned status;
  std::string_view message;
};

ErrorAnswer answer_for(std::error_code ec) noexcept;

// A JSON error response `{"error": message}` with X-Error-Message, plus the
// CORS headers every hubcache answer carries.
http::StringResponse error_response(unsigned status, std::string_view message, unsigned version);
http::StringResponse error_response(std::error_code ec, unsigned version);

}  // namespace hubcache::hub
