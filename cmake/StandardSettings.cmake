# INTERFACE targets that every hubcache library links: warnings and sanitizers
# are set once here, not per target.
add_library(hubcache_settings INTERFACE)
target_compile_options(hubcache_settings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                                   -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual)
# GCC 12 reports a false positive on Asio's awaitable frame allocator
# (aligned_alloc paired with its own operator delete); see GCC PR 109224.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(hubcache_settings INTERFACE -Wno-mismatched-new-delete)
endif()
if(HUBCACHE_WERROR)
  target_compile_options(hubcache_settings INTERFACE -Werror)
endif()
# Asio: no deprecated APIs, and io_uring stays off (epoll is what Debian's kernels reliably have).
target_compile_definitions(hubcache_settings INTERFACE BOOST_ASIO_NO_DEPRECATED
                                                       $<$<CONFIG:Debug>:_GLIBCXX_ASSERTIONS>)
if(HUBCACHE_SANITIZE)
  # -O1 keeps the ASan build fast enough for the integration suites.
  target_compile_options(hubcache_settings INTERFACE -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
                                                     -fno-sanitize-recover=undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang 14 cannot emit UBSan's function-type check for split coroutine
    # functions ("Cannot represent a difference across sections").
    target_compile_options(hubcache_settings INTERFACE -fno-sanitize=function)
  endif()
  target_link_options(hubcache_settings INTERFACE -fsanitize=address,undefined)
endif()
target_include_directories(hubcache_settings INTERFACE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(hubcache_settings INTERFACE Boost::headers Threads::Threads)
