// connection_bench: two stream Connections over the network emulator (tests/support/netem.hpp;
// no crypto, no syscalls) on a virtual clock: one stream's goodput in wall-clock MB/s at 0% and
// 1% loss (the emulator's seeded loss), packets per second, what loss recovery cost, and the bytes
// an idle Connection holds.
//
//   connection_bench [--mb 256] [--lossy-mb 64] [--delay-us 100] [--seed 1]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <vector>

#include "core/stream/connection.hpp"
#include "netem.hpp"
#include "time_edge.hpp"

using namespace qmesh::core::stream;
using Clock = std::chrono::steady_clock;

namespace {

struct Result {
  double seconds = 0, virtual_seconds = 0;
  std::uint64_t bytes = 0, packets = 0;
  ConnectionStats sender;
};

Result run(std::uint64_t bytes, double loss, Duration delay, std::uint64_t seed) {
  using qmesh::test::from_instant;
  using qmesh::test::to_instant;
  qmesh::netem::NetConfig nc;
  nc.seed = seed;
  nc.internet.delay = delay;  // fixed: arrivals stay in order
  nc.internet.loss = loss;
  qmesh::netem::Network net(nc);
  const qmesh::netem::SocketId sock[2] = {net.bind(net.add_host(qmesh::core::Endpoint::v4(10, 0, 0, 1, 0)), 1),
                                          net.bind(net.add_host(qmesh::core::Endpoint::v4(10, 0, 0, 2, 0)), 1)};
  Instant now{0};
  ConnectionConfig a, b;
  a.initiator = true;
  b.initiator = false;
  Connection c[2] = {Connection(a, now), Connection(b, now)};
  const StreamId id = *c[0].open_stream();
  std::vector<std::uint8_t> src(64 * 1024), dst(256 * 1024);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 31);
  std::uint64_t written = 0, got = 0, packets = 0;
  bool finished = false;
  const auto t0 = Clock::now();
  while (!finished) {
    while (written < bytes) {
      const std::size_t n = c[0].write(id, std::span<const std::uint8_t>(src).first(
                                               static_cast<std::size_t>(std::min<std::uint64_t>(src.size(), bytes - written))));
      written += n;
      if (n == 0) break;
      if (written == bytes) (void)c[0].finish(id);
    }
    for (int s = 0; s < 2; ++s) {
      while (auto p = c[s].next_packet(now)) {
        ++packets;
        // The packet number travels as the datagram's tag (a session carries it in its header).
        net.send(sock[s], net.local_endpoint(sock[1 - s]), std::move(p->payload), to_instant(now), 0, p->pn);
      }
    }
    now = std::max(now, std::min({c[0].next_wakeup(), c[1].next_wakeup(), from_instant<Instant>(net.next_deadline())}));
    while (auto d = net.poll_deliver(to_instant(now))) c[d->socket == sock[0] ? 0 : 1].on_packet(d->tag, d->bytes, now);
    for (int s = 0; s < 2; ++s) {
      if (c[s].next_wakeup() <= now) c[s].on_tick(now);
      while (auto e = c[s].next_event()) {
        if (std::holds_alternative<Finished>(*e)) finished = true;
        if (std::holds_alternative<Closed>(*e)) {
          std::fprintf(stderr, "connection closed unexpectedly\n");
          return {};
        }
      }
    }
    for (std::size_t n; (n = c[1].read(id, dst)) > 0;) got += n;
  }
  for (std::size_t n; (n = c[1].read(id, dst)) > 0;) got += n;
  Result r;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.virtual_seconds = static_cast<double>(now.count()) / 1e6;
  r.bytes = got;
  r.packets = packets;
  r.sender = c[0].stats();
  if (got != bytes) std::fprintf(stderr, "delivered %llu of %llu bytes\n", (unsigned long long)got, (unsigned long long)bytes);
  return r;
}

void print(const char* name, const Result& r) {
  std::printf("%-10s %8.1f MB/s  %9.0f packets/s  %7.1f MB in %.3f s wall (%.2f s virtual)  "
              "lost %llu pkts, retransmitted %.2f%% of bytes, cwnd %llu, srtt %lld us\n",
              name, static_cast<double>(r.bytes) / 1e6 / r.seconds, static_cast<double>(r.packets) / r.seconds,
              static_cast<double>(r.bytes) / 1e6, r.seconds, r.virtual_seconds,
              static_cast<unsigned long long>(r.sender.packets_lost),
              100.0 * static_cast<double>(r.sender.stream_bytes_retransmitted) / static_cast<double>(std::max<std::uint64_t>(1, r.bytes)),
              static_cast<unsigned long long>(r.sender.cwnd), static_cast<long long>(r.sender.srtt.count()));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"QMesh stream connection benchmark (in memory, no crypto)"};
  std::uint64_t mb = 256, lossy_mb = 64, seed = 1;
  std::int64_t delay_us = 100;  // about a loopback RTT
  app.add_option("--mb", mb, "MB to move without loss");
  app.add_option("--lossy-mb", lossy_mb, "MB to move with 1% loss");
  app.add_option("--delay-us", delay_us, "one-way virtual link delay");
  app.add_option("--seed", seed, "loss pattern seed");
  CLI11_PARSE(app, argc, argv);

  print("0% loss", run(mb << 20, 0.0, Duration{delay_us}, seed));
  print("1% loss", run(lossy_mb << 20, 0.01, Duration{delay_us}, seed));

  // An idle connection after its opening exchange.
  Instant now{0};
  ConnectionConfig a, b;
  b.initiator = false;
  Connection x(a, now), y(b, now);
  for (int round = 0; round < 4; ++round) {
    now += Instant{1000};
    while (auto p = x.next_packet(now)) y.on_packet(p->pn, p->payload, now);
    while (auto p = y.next_packet(now)) x.on_packet(p->pn, p->payload, now);
    x.on_tick(now);
    y.on_tick(now);
  }
  std::printf("idle Connection: sizeof %zu B, with heap ~%zu B\n", sizeof(Connection), x.memory_estimate());
  return 0;
}
