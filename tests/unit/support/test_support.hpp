// Shared helpers for the unit tests: a temp directory per test that is kept
// when the test fails (so the state can be inspected), and a way to run a
// coroutine to completion with a timeout.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace hubcache::test {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "hubcache-test";
    if (info != nullptr) name += std::string("-") + info->test_suite_name() + "-" + info->name();
    for (auto& c : name) {
      if (c == '/') c = '_';
    }
    std::string templ = (std::filesystem::temp_directory_path() / (name + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    m_path = templ;
  }
  ~TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    if (info != nullptr && info->result()->Failed()) {
      std::fprintf(stderr, "test data kept in %s\n", m_path.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

namespace detail {
// Runs `ioc` until it is out of work, or only until `done` when `drain` is false.
inline void run_context(boost::asio::io_context& ioc, const bool& done, bool drain, std::chrono::seconds limit) {
  ioc.restart();
  if (drain) {
    ioc.run_for(limit);
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && ioc.run_one_until(deadline) > 0) {
  }
}
}  // namespace detail

// Runs `ioc` until `task` completes and nothing else is left to run (so
// what the task started in the background has finished too); fails the test
// (and stops the context) if `task` did not complete within `limit`.
// Rethrows exceptions thrown by the coroutine. With `drain` false it stops
// as soon as `task` completes: for a context that always has work queued
// (a coroutine polling, a pooled connection's read).
template <class T>
T run(boost::asio::io_context& ioc, boost::asio::awaitable<T> task,
      std::chrono::seconds limit = std::chrono::seconds(30), bool drain = true) {
  std::optional<T> out;
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) out.emplace(std::move(value));
    done = true;
  });
  detail::run_context(ioc, done, drain, limit);
  if (!done) {
    ioc.stop();
    throw std::runtime_error("coroutine did not finish in time");
  }
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

inline void run(boost::asio::io_context& ioc, boost::asio::awaitable<void> task,
                std::chrono::seconds limit = std::chrono::seconds(30), bool drain = true) {
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  detail::run_context(ioc, done, drain, limit);
  if (!done) {
    ioc.stop();
    throw std::runtime_error("coroutine did not finish in time");
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace hubcache::test
