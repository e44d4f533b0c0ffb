// Runs blocking work (fsync, rename, directory scans) on a thread pool and
// resumes the calling coroutine on its own executor, so I/O threads never
// block on the disk.
//
// GCC 12 destroys a capturing lambda temporary that appears inside a
// co_await expression twice (double free seen under ASan): callers must name
// the lambda and pass it with std::move.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <type_traits>
#include <utility>

namespace hubcache::util {

// REQUIRES: `f` does not throw (data-path code returns error codes) and
// returns a non-void value.
template <class F>
auto run_blocking(boost::asio::thread_pool& pool, F f) -> boost::asio::awaitable<std::invoke_result_t<F&>> {
  namespace net = boost::asio;
  using R = std::invoke_result_t<F&>;
  return net::async_initiate<const net::use_awaitable_t<>, void(R)>(
      [&pool](auto handler, F fn) {
        net::post(pool, [handler = std::move(handler), fn = std::move(fn)]() mutable {
          R value = fn();
          auto ex = net::get_associated_executor(handler);
          net::dispatch(ex, [handler = std::move(handler), value = std::move(value)]() mutable {
            std::move(handler)(std::move(value));
          });
        });
      },
      net::use_awaitable, std::move(f));
}

}  // namespace hubcache::util
