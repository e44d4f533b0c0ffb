// Client connections from this machine: served without pacing.
//
// BBR, a common default congestion control, paces each connection at the
// bandwidth it has measured, with a kernel timer per burst when the
// interface has no fq qdisc (loopback has none). A connection within one
// machine has no link or queue to protect, so pacing only costs: on a
// 2-core machine whose default is bbr, hubcache sent one client a cached
// 1 GiB file at 3.0 GB/s paced and at 12.7 GB/s with Reno, and 32 clients
// at once took 4.3 s against 2.2 s (docs/benchmarks.md has the runs).
// Clients on the cache's own machine, a pod's containers beside a sidecar
// among them, are the local and sidecar deployments. Connections from other
// hosts keep the system's choice.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace hubcache::http {

// 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (a dual-stack
// listener sees 127.0.0.1 as ::ffff:127.0.0.1).
bool is_loopback(const boost::asio::ip::address& address) noexcept;

// Switches an accepted socket to Reno, which does not pace, when its peer is
// on this machine: a loopback address, or the address the connection came
// in on (a client using the host's or pod's own IP also goes over
// loopback). Behind NAT (Docker's published ports) the peer is the NAT's
// address and nothing changes. Reno is built into every Linux kernel and
// allowed to unprivileged processes unless an administrator removed it
// from net.ipv4.tcp_allowed_congestion_control; when setting it fails, the
// system's congestion control stays (logged once).
void unpace_local_peer(boost::asio::ip::tcp::socket& socket) noexcept;

}  // namespace hubcache::http
