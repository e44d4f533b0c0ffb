// The GCS emulator (tests/gcs/emulator.mjs) for tests that need a real GCS
// JSON API: started on first use, once per test process (ctest runs one
// process per test), stopped when the process exits.
#pragma once

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace hubcache::storage::test_gcs {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline const fs::path k_gcs_dir = fs::path(HUBCACHE_SOURCE_DIR) / "tests" / "gcs";
inline constexpr const char* k_bucket = "hubcache-test";


// The emulator process: started on first use, stopped (SIGTERM, then wait)
// when the test process exits. PR_SET_PDEATHSIG stops it too if this
// process dies without running destructors.
class GcsEmulator {
 public:
  static std::optional<std::string> skip_reason() {
    if (fs::exists(k_gcs_dir / "node_modules" / "firebase-tools" / "package.json")) return std::nullopt;
    return "the GCS emulator is not installed; run `npm ci --ignore-scripts --no-audit --no-fund` in " +
           k_gcs_dir.string();
  }

  // "http://127.0.0.1:PORT". Throws std::runtime_error if it cannot start.
  static const std::string& endpoint() {
    static GcsEmulator instance;
    return instance.m_endpoint;
  }

  GcsEmulator(const GcsEmulator&) = delete;
  GcsEmulator& operator=(const GcsEmulator&) = delete;

  ~GcsEmulator() {
    ::kill(m_pid, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (::waitpid(m_pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(m_pid, SIGKILL);
        ::waitpid(m_pid, &status, 0);
        break;
      }
      ::usleep(20'000);
    }
    ::close(m_stdout);
    std::error_code ec;
    fs::remove_all(m_tmp, ec);
  }

 private:
  GcsEmulator() {
    // Its own TMPDIR: the emulator keeps blobs there (and the launcher makes
    // a fresh directory inside it).
    std::string tmp = (fs::temp_directory_path() / "hubcache-gcs-emulator-XXXXXX").string();
    if (::mkdtemp(tmp.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    m_tmp = tmp;

    // Everything the child needs is prepared before fork: after it, only
    // async-signal-safe calls (this process has other threads).
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "TMPDIR=", 7) != 0) env_strings.emplace_back(*e);
    }
    env_strings.push_back("TMPDIR=" + tmp);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string script = (k_gcs_dir / "emulator.mjs").string();
    std::string node = "node";
    char* argv[] = {node.data(), script.data(), nullptr};

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const pid_t parent = ::getpid();
    m_pid = ::fork();
    if (m_pid < 0) throw std::runtime_error("fork failed");
    if (m_pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      ::dup2(fds[1], STDOUT_FILENO);
      ::execvpe(argv[0], argv, envp.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    m_stdout = fds[0];
    const std::string line = read_ready_line();
    // {"endpoint":"http://127.0.0.1:PORT"}
    const auto doc = nlohmann::json::parse(line, nullptr, false);
    if (!doc.is_object() || !doc.contains("endpoint") || !doc["endpoint"].is_string()) {
      throw std::runtime_error("GCS emulator printed an unexpected ready line: " + line);
    }
    m_endpoint = doc["endpoint"].get<std::string>();
  }

  std::string read_ready_line() {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (out.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd pfd{m_stdout, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
        throw std::runtime_error("GCS emulator did not get ready within 60 s");
      }
      char buf[512];
      const ssize_t n = ::read(m_stdout, buf, sizeof buf);
      if (n <= 0) {
        int status = 0;
        ::waitpid(m_pid, &status, 0);
        throw std::runtime_error("GCS emulator exited before it was ready (wait status " + std::to_string(status) +
                                 "; 127: node not found); its stderr is above");
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out.substr(0, out.find('\n'));
  }

  pid_t m_pid = -1;
  int m_stdout = -1;
  fs::path m_tmp;
  std::string m_endpoint;
};

}  // namespace hubcache::storage::test_gcs
