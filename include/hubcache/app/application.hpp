// The composition root: builds the store, index, upstream client, Hub
// service and HTTP server from a Config, runs them on `threads` I/O threads
// and returns when SIGINT/SIGTERM has drained the server.
#pragma once

#include <hubcache/config/config.hpp>

#include <string>
#include <vector>

namespace hubcache::app {

// Prints "hubcache listening on http://HOST:PORT" on stdout once it accepts
// connections (tests and scripts wait for that line). Throws on startup
// errors (unusable cache dir, port in use); returns the process exit status.
// `env` ("NAME=value", as in environ) supplies HTTPS_PROXY / HTTP_PROXY /
// NO_PROXY for upstream connections.
int run(const config::Config& config, const std::string& version, const std::vector<std::string>& env);

}  // namespace hubcache::app
