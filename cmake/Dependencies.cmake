# Every dependency comes from a Debian 12 package through find_package or
# pkg-config; nothing is downloaded at configure time.
find_package(Boost 1.81 REQUIRED CONFIG)            # libboost1.81-dev: Asio, Beast, System (header-only)
find_package(OpenSSL 3 REQUIRED)                     # libssl-dev
find_package(nlohmann_json 3 REQUIRED)               # nlohmann-json3-dev
find_package(spdlog REQUIRED)                        # libspdlog-dev (uses the system fmt)
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)   # libxxhash-dev

if(HUBCACHE_BUILD_TESTS)
  find_package(GTest REQUIRED)                       # libgtest-dev
endif()
