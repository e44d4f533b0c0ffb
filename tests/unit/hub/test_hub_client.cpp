// HubClient::probe against a scripted Hub: concurrent probes of one file with
// one Authorization share an upstream exchange; other credentials never do.
#include "hub/hub_client.hpp"

#include "../upstream/test_server.hpp"
#include "test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

namespace hubcache::hub {

// For gtest's messages (found by ADL, so not in the unnamed namespace).
std::ostream& operator<<(std::ostream& os, RepoAccess a) { return os << (a == RepoAccess::open ? "open" : "restricted"); }

namespace {

using namespace std::chrono_literals;

const std::string k_commit(40, 'c');
const std::string k_blob(40, 'b');

// A git file's HEAD answer; anonymous callers are refused, as for a gated repo.
std::string head_answer(const test::http::request<test::http::string_body>& req) {
  if (req[test::http::field::authorization].empty()) {
    return "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nX-Error-Code: GatedRepo\r\nSet-Cookie: s=1\r\n\r\n";
  }
  return "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nETag: \"" + k_blob + "\"\r\nX-Repo-Commit: " + k_commit + "\r\n\r\n";
}

core::FileRoute route_of(std::string path) {
  core::FileRoute r;
  r.repo = "acme/gated";
  r.revision = k_commit;
  r.path = std::move(path);
  return r;
}

class HubClientProbeTest : public ::testing::Test {
 protected:
  // Answers after `m_delay`, so that probes started together overlap.
  HubClientProbeTest()
      : m_server([this](const test::http::request<test::http::string_body>& req) {
          std::this_thread::sleep_for(m_delay.load());
          if (m_stall_next.exchange(false)) return test::Reply{"", false, true};
          return test::Reply{head_answer(req)};
        }) {}

  // Starts a probe on `ioc`; its outcome lands in the returned slot.
  std::shared_ptr<std::optional<result<ProbeResult>>> start(net::io_context& ioc, core::FileRoute route,
                                                            std::string auth) {
    auto out = std::make_shared<std::optional<result<ProbeResult>>>();
    net::co_spawn(
        ioc,
        [](HubClient& hub, core::FileRoute r, std::string a) -> net::awaitable<result<ProbeResult>> {
          co_return co_await hub.probe(r, a);
        }(m_hub, std::move(route), std::move(auth)),
        [out](std::exception_ptr e, result<ProbeResult> value) {
          if (!e) out->emplace(std::move(value));
        });
    return out;
  }

  // Runs `ioc` in slices until `done()` or 10 s have passed.
  template <class Pred>
  static void run_until(net::io_context& ioc, Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      ioc.run_for(10ms);
      ioc.restart();
    }
  }

  // An io_context whose pending coroutines can be destroyed while the
  // HubClient they use still exists (as the application does at shutdown).
  struct Loop : net::io_context {
    using net::io_context::shutdown;
  };
  ~HubClientProbeTest() override { m_ioc.shutdown(); }

  std::atomic<std::chrono::milliseconds> m_delay{200ms};
  std::atomic<bool> m_stall_next{false};
  test::TestServer m_server;
  Loop m_ioc;
  HubClient m_hub{upstream::make_http_client({}), *upstream::Url::parse(m_server.url("/"))};
};

bool is_meta(const std::optional<result<ProbeResult>>& r) {
  return r && r->has_value() && std::holds_alternative<FileMeta>(**r) && std::get<FileMeta>(**r).etag == k_blob;
}
bool is_refusal(const std::optional<result<ProbeResult>>& r) {
  return r && r->has_value() && std::holds_alternative<UpstreamAnswer>(**r) &&
         std::get<UpstreamAnswer>(**r).status == 401;
}

TEST_F(HubClientProbeTest, ConcurrentProbesShareOneExchangePerAuthorization) {
  std::vector<std::shared_ptr<std::optional<result<ProbeResult>>>> anonymous, granted, other_file;
  for (int i = 0; i < 4; ++i) {
    anonymous.push_back(start(m_ioc, route_of("config.json"), ""));
    granted.push_back(start(m_ioc, route_of("config.json"), "Bearer hf_granted"));
    other_file.push_back(start(m_ioc, route_of("tokenizer.json"), "Bearer hf_granted"));
  }
  m_ioc.run_for(10s);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(is_refusal(*anonymous[i])) << "anonymous probe " << i << " gets the Hub's refusal";
    EXPECT_TRUE(is_meta(*granted[i])) << "authorized probe " << i << " gets the file";
    EXPECT_TRUE(is_meta(*other_file[i])) << "authorized probe " << i << " of another file";
  }
  EXPECT_EQ(m_server.requests(), 3) << "one exchange per (file, Authorization), not one per probe";
  ASSERT_TRUE(is_refusal(*anonymous[0]));
  const auto& refusal = std::get<UpstreamAnswer>(***anonymous[0]);
  EXPECT_EQ(refusal.headers["X-Error-Code"], "GatedRepo");
  EXPECT_EQ(refusal.headers.count(test::http::field::set_cookie), 0u) << "a shared answer carries no cookie";
}

TEST_F(HubClientProbeTest, AProbeAfterTheSharedOneEndedAsksAgain) {
  m_delay = 0ms;
  auto first = start(m_ioc, route_of("config.json"), "Bearer hf_granted");
  m_ioc.run_for(5s);
  m_ioc.restart();
  auto second = start(m_ioc, route_of("config.json"), "Bearer hf_granted");
  m_ioc.run_for(5s);
  EXPECT_TRUE(is_meta(*first));
  EXPECT_TRUE(is_meta(*second));
  EXPECT_EQ(m_server.requests(), 2) << "answers are shared while in flight, never kept";
}

// As in the server: the leader on one I/O thread, followers on another.
TEST_F(HubClientProbeTest, FollowersOnAnotherThreadGetTheLeadersAnswer) {
  Loop other;
  auto led = start(m_ioc, route_of("config.json"), "Bearer hf_granted");
  std::thread leader_thread([&] { run_until(m_ioc, [&] { return led->has_value(); }); });
  // Join once the leader's request is out, so it is the leader.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (m_server.requests() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  std::vector<std::shared_ptr<std::optional<result<ProbeResult>>>> followers;
  for (int i = 0; i < 4; ++i) followers.push_back(start(other, route_of("config.json"), "Bearer hf_granted"));
  run_until(other, [&] {
    for (const auto& f : followers) {
      if (!f->has_value()) return false;
    }
    return true;
  });
  leader_thread.join();
  EXPECT_TRUE(is_meta(*led));
  for (const auto& f : followers) EXPECT_TRUE(is_meta(*f));
  EXPECT_EQ(m_server.requests(), 1) << "the followers joined the leader's exchange";
  other.shutdown();
}

// A leader whose coroutine is destroyed (its event loop shut down) releases
// its followers, which then ask upstream themselves.
TEST_F(HubClientProbeTest, FollowersOfALeaderThatStopsAskThemselves) {
  m_delay = 0ms;
  m_stall_next = true;  // the leader's request is never answered
  auto leader_ioc = std::make_unique<net::io_context>();
  auto led = start(*leader_ioc, route_of("config.json"), "Bearer hf_granted");
  run_until(*leader_ioc, [&] { return m_server.requests() == 1; });  // its answer never comes
  ASSERT_EQ(m_server.requests(), 1);
  auto follower = start(m_ioc, route_of("config.json"), "Bearer hf_granted");
  m_ioc.run_for(200ms);
  EXPECT_FALSE(follower->has_value()) << "the follower waits for the leader";
  EXPECT_EQ(m_server.requests(), 1);

  leader_ioc.reset();  // destroys the leader's coroutine mid-probe
  m_ioc.restart();
  run_until(m_ioc, [&] { return follower->has_value(); });
  EXPECT_FALSE(led->has_value());
  EXPECT_TRUE(is_meta(*follower)) << "the follower asked upstream itself";
  EXPECT_EQ(m_server.requests(), 2);
}

// access_of: only the repo info, asked without credentials, opens a
// repo's files; a refusal, a gated or private repo, or an answer without both
// fields does not.
class HubClientOpenTest : public ::testing::Test {
 protected:
  HubClientOpenTest()
      : m_server([this](const test::http::request<test::http::string_body>& req) {
          std::this_thread::sleep_for(m_delay.load());
          const std::string target(req.target());
          if (!req[test::http::field::authorization].empty() || req.method() != test::http::verb::get ||
              !target.ends_with("/revision/" + k_commit + "?expand=private&expand=gated")) {
            return test::Reply{test::http_response(400, "unexpected request " + target)};
          }
          const auto repo = target.substr(0, target.find("/revision/"));
          const std::string json = "Content-Type: application/json\r\n";
          if (repo == "/api/models/acme/public") return test::Reply{test::http_response(200, R"({"_id":"1","id":"acme/public","private":false,"gated":false})", json)};
          if (repo == "/api/datasets/acme/public") return test::Reply{test::http_response(200, R"({"private":false,"gated":false})", json)};
          if (repo == "/api/models/acme/gated") return test::Reply{test::http_response(200, R"({"private":false,"gated":"auto"})", json)};
          if (repo == "/api/models/acme/no-gated-field") return test::Reply{test::http_response(200, R"({"private":false})", json)};
          if (repo == "/api/models/acme/not-json") return test::Reply{test::http_response(200, "<html>", "")};
          if (repo == "/api/models/acme/private") return test::Reply{test::http_response(401, R"({"error":"Invalid username or password."})", json)};
          if (repo == "/api/models/acme/down") return test::Reply{test::http_response(503, "")};
          if (repo == "/api/models/acme/old-name") {
            return test::Reply{test::http_response(307, "", "Location: /api/models/acme/public/revision/" + k_commit + "?expand=private&expand=gated\r\n")};
          }
          return test::Reply{test::http_response(404, R"({"error":"Repository not found"})", json)};
        }) {}

  std::shared_ptr<std::optional<result<RepoAccess>>> start(core::RepoType type, std::string repo) {
    auto out = std::make_shared<std::optional<result<RepoAccess>>>();
    net::co_spawn(
        m_ioc,
        [](HubClient& hub, core::RepoType t, std::string r) -> net::awaitable<result<RepoAccess>> {
          co_return co_await hub.access_of(t, r, k_commit);
        }(m_hub, type, std::move(repo)),
        [out](std::exception_ptr e, result<RepoAccess> value) {
          if (!e) out->emplace(std::move(value));
        });
    return out;
  }
  result<RepoAccess> ask(core::RepoType type, std::string repo) {
    auto out = start(type, std::move(repo));
    m_ioc.run_for(10s);
    m_ioc.restart();
    return out->value_or(make_error_code(std::errc::timed_out));
  }

  std::atomic<std::chrono::milliseconds> m_delay{0ms};
  test::TestServer m_server;
  net::io_context m_ioc;
  HubClient m_hub{upstream::make_http_client({}), *upstream::Url::parse(m_server.url("/"))};
};

TEST_F(HubClientOpenTest, OnlyAnInfoSayingNeitherPrivateNorGatedOpensTheFiles) {
  EXPECT_EQ(ask(core::RepoType::model, "acme/public"), result<RepoAccess>(RepoAccess::open));
  EXPECT_EQ(ask(core::RepoType::dataset, "acme/public"), result<RepoAccess>(RepoAccess::open)) << "datasets are asked at /api/datasets";
  EXPECT_EQ(ask(core::RepoType::model, "acme/old-name"), result<RepoAccess>(RepoAccess::open)) << "a renamed repo's 307 is followed";
  EXPECT_EQ(ask(core::RepoType::model, "acme/gated"), result<RepoAccess>(RepoAccess::restricted));
  EXPECT_EQ(ask(core::RepoType::model, "acme/no-gated-field"), result<RepoAccess>(RepoAccess::restricted));
  EXPECT_EQ(ask(core::RepoType::model, "acme/not-json"), result<RepoAccess>(RepoAccess::restricted));
  EXPECT_EQ(ask(core::RepoType::model, "acme/private"), result<RepoAccess>(RepoAccess::restricted));
  EXPECT_EQ(ask(core::RepoType::model, "acme/unknown"), result<RepoAccess>(RepoAccess::restricted));
  const auto down = ask(core::RepoType::model, "acme/down");
  EXPECT_FALSE(down.has_value()) << "a Hub that cannot answer is an error, not a verdict";
  EXPECT_EQ(m_server.requests(), 10);
}

TEST_F(HubClientOpenTest, ConcurrentCallsForOneRepoShareOneExchange) {
  m_delay = 200ms;
  std::vector<std::shared_ptr<std::optional<result<RepoAccess>>>> calls;
  for (int i = 0; i < 6; ++i) calls.push_back(start(core::RepoType::model, i % 2 ? "acme/public" : "acme/gated"));
  m_ioc.run_for(10s);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(calls[i]->has_value() && (*calls[i])->has_value()) << "call " << i;
    EXPECT_EQ(***calls[i], i % 2 == 1 ? RepoAccess::open : RepoAccess::restricted) << "call " << i;
  }
  EXPECT_EQ(m_server.requests(), 2) << "one exchange per repo";
}

}  // namespace
}  // namespace hubcache::hub
