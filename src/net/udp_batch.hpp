// Batched UDP sends on Linux for PeerService: one sendmmsg() for many datagrams, and UDP GSO
// (one message carrying a run of equal-size datagrams to one destination) where the kernel has it.
#pragma once

#include <spdlog/logger.h>

#include <cstddef>
#include <span>

#include "core/peer/peer.hpp"

namespace qmesh::net {

inline constexpr std::size_t kMaxSendBatch = 64;  // datagrams per sendmmsg()

#ifdef __linux__
// Whether the kernel takes UDP_SEGMENT on this socket (4.18+; an older one would ignore the cmsg).
bool gso_supported(int fd);

// sendmmsg() of the batch on the socket's fd; returns how many of the batch's datagrams are done
// (sent, or dropped as a failed uv_udp_try_send drops them); the caller queues the rest. With GSO
// one message carries a run of equal-size datagrams to one destination; a kernel or device that
// refuses GSO (EIO, EINVAL) turns `gso` off and the run goes again as single datagrams.
std::size_t send_direct(int fd, std::span<core::peer::Datagram> batch, bool& gso, spdlog::logger& log);
#endif

}  // namespace qmesh::net
