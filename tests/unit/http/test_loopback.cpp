// Loopback clients are served without pacing (src/http/loopback.hpp).
#include "http/loopback.hpp"

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <string>

namespace hubcache::http {
namespace {

namespace ip = boost::asio::ip;

std::string congestion_control(ip::tcp::socket& socket) {
  char name[32] = {};
  socklen_t len = sizeof name;
  if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0) return "?";
  return std::string(name);
}

TEST(Loopback, KnowsLoopbackAddressesOfBothFamilies) {
  EXPECT_TRUE(is_loopback(ip::make_address("127.0.0.1")));
  EXPECT_TRUE(is_loopback(ip::make_address("127.8.9.10")));
  EXPECT_TRUE(is_loopback(ip::make_address("::1")));
  EXPECT_TRUE(is_loopback(ip::make_address("::ffff:127.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("10.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("::ffff:10.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("2001:db8::1")));
  EXPECT_FALSE(is_loopback(ip::make_address("0.0.0.0")));
}

TEST(Loopback, AnAcceptedLoopbackConnectionUsesReno) {
  boost::asio::io_context io;
  ip::tcp::acceptor acceptor(io, {ip::make_address("127.0.0.1"), 0});
  ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  ip::tcp::socket served = acceptor.accept();
  // Can this process set Reno at all? (An administrator may have removed it
  // from net.ipv4.tcp_allowed_congestion_control.)
  ip::tcp::socket probe(io, ip::tcp::v4());
  static constexpr char k_reno[] = "reno";
  if (::setsockopt(probe.native_handle(), IPPROTO_TCP, TCP_CONGESTION, k_reno, sizeof k_reno - 1) != 0) {
    GTEST_SKIP() << "this process may not use reno";
  }
  const std::string before = congestion_control(served);
  unpace_local_peer(served);
  EXPECT_EQ(congestion_control(served), "reno") << "was " << before;
}

}  // namespace
}  // namespace hubcache::http
