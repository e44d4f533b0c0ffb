// hubcache: a caching proxy for the Hugging Face Hub.
// argv + environment -> Config -> Application; exit status 2 on a bad config.
#include <hubcache/app/application.hpp>
#include <hubcache/config/config.hpp>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);

  hubcache::config::Parsed parsed;
  try {
    parsed = hubcache::config::parse(args, env);
  } catch (const hubcache::config::ConfigError& e) {
    std::cerr << "hubcache: " << e.what() << "\n";
    return 2;
  }
  for (const auto& w : parsed.warnings) std::cerr << "hubcache: warning: " << w << "\n";
  switch (parsed.outcome) {
    case hubcache::config::ParseOutcome::help:
      std::cout << hubcache::config::help_text();
      return 0;
    case hubcache::config::ParseOutcome::version:
      std::cout << "hubcache " << HUBCACHE_VERSION << "\n";
      return 0;
    case hubcache::config::ParseOutcome::run:
      break;
  }
  try {
    return hubcache::app::run(parsed.config, HUBCACHE_VERSION, env);
  } catch (const std::exception& e) {
    std::cerr << "hubcache: " << e.what() << "\n";
    return 1;
  }
}
