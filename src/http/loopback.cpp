#include "loopback.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <system_error>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace hubcache::http {

namespace ip = boost::asio::ip;

bool is_loopback(const ip::address& address) noexcept {
  if (address.is_v4()) return address.to_v4().is_loopback();
  const ip::address_v6 v6 = address.to_v6();
  if (v6.is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, v6).is_loopback();
  return v6.is_loopback();
}

void unpace_local_peer(ip::tcp::socket& socket) noexcept {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) return;
  if (!is_loopback(peer.address())) {
    const auto local = socket.local_endpoint(ec);
    if (ec || local.address() != peer.address()) return;
  }
  static constexpr char k_reno[] = "reno";
  if (::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_CONGESTION, k_reno, sizeof k_reno - 1) == 0) return;
  static std::atomic<bool> told{false};
  if (!told.exchange(true)) {
    spdlog::info("local clients keep the system's TCP congestion control (setting reno: {})",
                 std::error_code(errno, std::system_category()).message());
  }
}

}  // namespace hubcache::http
