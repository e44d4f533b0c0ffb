// Runs blocking work (fsync, rename, directory scans) on a thread pool and
// resumes the calling coroutine on its own executor, so I/O threads never
// block on the disk.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <type_traits>
#include <utility>

namespace hubcache::util {

// REQUIRES: `f` does not throw (data-path code returns error codes).
template <class F>
auto run_blocking(boost::asio::thread_pool& pool, F f) -> boost::asio::awaitable<std::invoke_result_t<F&>> {
  using R = std::invoke_result_t<F&>;
  // co_spawn onto the pool; its completion resumes us on our own executor.
  co_return co_await boost::asio::co_spawn(
      pool.get_executor(), [fn = std::move(f)]() mutable -> boost::asio::awaitable<R> { co_return fn(); },
      boost::asio::use_awaitable);
}

}  // namespace hubcache::util
