// The stream connection over an emulated link (tests/support/netem.hpp): delivery (every byte
// once, in order) under loss, reordering and duplication; resets; flow control; timers; path
// changes; rule violations.
#include <gtest/gtest.h>

#include "link_sim.hpp"
#include "netem.hpp"
#include "time_edge.hpp"

using namespace qmesh::test;
using namespace qmesh::core::stream;
using qmesh::core::ByteWriter;

namespace {

ConnectionConfig cfg() { return ConnectionConfig{}; }

// Streams opened by side s carry `up` bytes from their opener and `down` back.
LinkSim::SizeFn sizes(std::uint64_t up, std::uint64_t down) {
  return [=](StreamId id, int dir) {
    const int opener = static_cast<int>(id & 1);  // even ids: the initiator (side 0)
    return dir == opener ? up + (id % 5) * 777 : down + (id % 3) * 1111;
  };
}

void expect_clean_finish(LinkSim& sim) {
  for (int side = 0; side < 2; ++side) {
    for (const auto& [id, c] : sim.app(side).streams) {
      EXPECT_EQ(c.finished, 1) << "side " << side << " stream " << id;
      EXPECT_EQ(c.resets, 0) << "side " << side << " stream " << id;
      EXPECT_EQ(c.got, c.expected_in) << "side " << side << " stream " << id;
      EXPECT_FALSE(c.mismatch);
      EXPECT_LE(c.opened_events, 1);
    }
    EXPECT_TRUE(sim.app(side).closed.empty());
  }
}

struct LossCase {
  double loss;
  std::uint64_t bytes_per_stream;
};

class Transfer : public ::testing::TestWithParam<LossCase> {};

TEST_P(Transfer, EveryByteArrivesOnceInOrderOnEveryStream) {
  const auto [loss, per_stream] = GetParam();
  LinkSim sim(cfg(), cfg(), 42, sizes(per_stream, per_stream / 2));
  for (int i = 0; i < 2; ++i) {
    sim.link(i).delay = milliseconds(20);
    sim.link(i).jitter = microseconds(300);  // reorders packets sent close together
    sim.link(i).reorder = 0.01;              // and 1% arrive 3 ms late
    sim.link(i).loss = loss;
    sim.link(i).duplicate = 0.01;
    sim.link(i).rate = 25e6;  // 25 MB/s with a 256 KiB drop-tail queue: congestion loss too
  }
  for (int k = 0; k < 3; ++k) {
    sim.open(0);
    sim.open(1);
  }
  ASSERT_TRUE(sim.run([&] { return sim.all_finished() && sim.conn(0).stream_count() == 0 && sim.conn(1).stream_count() == 0; },
                      std::chrono::seconds(120)))
      << "delivered " << sim.app(0).bytes_read << " + " << sim.app(1).bytes_read;
  expect_clean_finish(sim);
  EXPECT_EQ(sim.app(0).streams.size(), 6u);
  EXPECT_EQ(sim.app(1).streams.size(), 6u);
  const auto s0 = sim.conn(0).stats();
  const auto s1 = sim.conn(1).stats();
  std::printf("loss %.2f: %.2f s virtual; side0 read %llu B, side1 read %llu B; sent %llu pkts, lost %llu, retx %llu B, "
              "srtt %lld us, cwnd %llu; side1 sent %llu pkts, lost %llu, dropped %llu/%llu\n",
              loss, sim.now.count() / 1e6, (unsigned long long)sim.app(0).bytes_read, (unsigned long long)sim.app(1).bytes_read,
              (unsigned long long)s0.packets_sent, (unsigned long long)s0.packets_lost,
              (unsigned long long)s0.stream_bytes_retransmitted, (long long)s0.srtt.count(), (unsigned long long)s0.cwnd,
              (unsigned long long)s1.packets_sent, (unsigned long long)s1.packets_lost, (unsigned long long)sim.dropped[0],
              (unsigned long long)sim.dropped[1]);
  if (loss > 0) {
    EXPECT_GT(s0.stream_bytes_retransmitted, 0u);
    EXPECT_GT(s0.packets_lost, 0u);
  }
  EXPECT_GT(s0.min_rtt.count(), 40000);  // 2 x 20 ms, never less
  EXPECT_LT(s0.srtt.count(), 1000000);
}

INSTANTIATE_TEST_SUITE_P(Loss, Transfer,
                         ::testing::Values(LossCase{0.0, 400'000}, LossCase{0.01, 300'000}, LossCase{0.10, 250'000}),
                         [](const auto& tp) { return "loss" + std::to_string(static_cast<int>(tp.param.loss * 100)); });

TEST(Connection, ResetOfOneStreamLeavesTheOthersIntact) {
  LinkSim sim(cfg(), cfg(), 7, sizes(300'000, 1000));
  for (int i = 0; i < 2; ++i) {
    sim.link(i).delay = milliseconds(10);
    sim.link(i).loss = 0.02;
  }
  std::vector<StreamId> ids;
  for (int k = 0; k < 4; ++k) ids.push_back(sim.open(0));
  // Let the transfer get going, then abort stream ids[1] from the sender.
  sim.run([&] { return sim.app(1).streams.count(ids[1]) && sim.app(1).streams[ids[1]].got > 50'000; },
          std::chrono::seconds(30));
  ASSERT_TRUE(sim.conn(0).reset(ids[1], 77).ok());
  sim.app(0).writers.erase(ids[1]);
  sim.app(0).streams.erase(ids[1]);  // side 0 gave it up: it expects nothing more
  ASSERT_TRUE(sim.run(
      [&] {
        for (StreamId id : {ids[0], ids[2], ids[3]})
          for (int s = 0; s < 2; ++s)
            if (sim.app(s).streams[id].finished != 1) return false;
        return sim.conn(0).stream_count() == 0 && sim.conn(1).stream_count() == 0;
      },
      std::chrono::seconds(60)));
  const auto& r = sim.app(1).streams[ids[1]];
  EXPECT_EQ(r.resets, 1);
  EXPECT_EQ(r.finished, 0);
  EXPECT_LT(r.got, r.expected_in);
  EXPECT_FALSE(r.mismatch);
  for (StreamId id : {ids[0], ids[2], ids[3]}) {
    for (int s = 0; s < 2; ++s) {
      EXPECT_EQ(sim.app(s).streams[id].got, sim.app(s).streams[id].expected_in);
      EXPECT_EQ(sim.app(s).streams[id].resets, 0);
    }
  }
  // The reset stream's bytes were returned to the connection window: a new stream still flows.
  const StreamId extra = sim.open(0);
  ASSERT_TRUE(sim.run([&] { return sim.app(1).streams[extra].finished == 1; }, std::chrono::seconds(30)));
}

TEST(Connection, FlowControlHoldsTheSenderAndResumesOnRead) {
  ConnectionConfig small = cfg();
  small.stream_window = 64 * 1024;  // the protocol's initial credit: no raise
  small.conn_window = 1 << 20;
  LinkSim sim(cfg(), small, 3, sizes(2'000'000, 0));
  sim.app(1).reading = false;
  const StreamId id = sim.open(0);
  sim.run_for(std::chrono::seconds(5));
  const auto blocked0 = sim.conn(0).stats();
  // The sender got the window's worth out and stopped; the receiver holds at most the window.
  EXPECT_LE(blocked0.stream_bytes_sent, 64u * 1024);
  EXPECT_GE(blocked0.stream_bytes_sent, 60u * 1024);
  EXPECT_LE(sim.conn(0).memory_estimate(), 2u * 1024 * 1024 + 64 * 1024);  // send_buffer bounds the sender
  EXPECT_LE(sim.conn(1).memory_estimate(), 256u * 1024);
  // write() accepted no more than send_buffer beyond what the peer acknowledged.
  EXPECT_LE(sim.app(0).streams[id].out_written - blocked0.stream_bytes_acked, cfg().send_buffer);
  const auto packets_before = sim.conn(0).stats().packets_sent;
  sim.run_for(std::chrono::seconds(5));
  EXPECT_LE(sim.conn(0).stats().packets_sent - packets_before, 4u);  // at most keepalives, no data
  // The reader catches up: the transfer completes.
  sim.app(1).reading = true;
  sim.read_everything(1);
  ASSERT_TRUE(sim.run([&] { return sim.all_finished(); }, std::chrono::seconds(60)));
  expect_clean_finish(sim);
}

TEST(Connection, IdleTimeoutFiresWhenTheLinkDies) {
  LinkSim sim(cfg(), cfg(), 1, sizes(10'000, 10'000));
  sim.open(0);
  ASSERT_TRUE(sim.run([&] { return sim.all_finished(); }, std::chrono::seconds(10)));
  const Instant died = sim.now;
  sim.link(0).up = sim.link(1).up = false;
  sim.run([&] { return !sim.app(0).closed.empty() && !sim.app(1).closed.empty(); }, std::chrono::seconds(60));
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(sim.app(s).closed.size(), 1u);
    EXPECT_EQ(sim.app(s).closed[0].reason, CloseReason::IdleTimeout);
    EXPECT_TRUE(sim.conn(s).is_closed());
  }
  // Not before the idle timeout has passed since the last packet, and not much after.
  EXPECT_GE(sim.now - died, std::chrono::seconds(25));
  EXPECT_LE(sim.now - died, std::chrono::seconds(31));
}

TEST(Connection, KeepaliveHoldsAnIdleButLiveConnectionOpen) {
  LinkSim sim(cfg(), cfg(), 1, sizes(0, 0));
  sim.run_for(std::chrono::seconds(120));  // four idle timeouts' worth
  for (int s = 0; s < 2; ++s) {
    EXPECT_TRUE(sim.app(s).closed.empty());
    EXPECT_FALSE(sim.conn(s).is_closed());
  }
  // About one PING per keepalive interval per side, not a flood.
  EXPECT_GE(sim.conn(0).stats().packets_sent, 10u);
  EXPECT_LE(sim.conn(0).stats().packets_sent, 60u);
  // And without keepalives the same silence would have closed it.
  ConnectionConfig lazy = cfg();
  lazy.keepalive = std::chrono::milliseconds(60000);
  LinkSim quiet(lazy, lazy, 1, sizes(0, 0));
  quiet.run_for(std::chrono::seconds(40));
  EXPECT_FALSE(quiet.app(0).closed.empty());
}

TEST(Connection, RtoBacksOffExponentiallyWhileNothingComesBack) {
  ConnectionConfig c = cfg();
  c.max_rto = std::chrono::milliseconds(10000);
  LinkSim sim(c, c, 1, sizes(50'000, 0));
  sim.link(0).delay = sim.link(1).delay = milliseconds(50);
  sim.run_for(std::chrono::seconds(1));  // handshake-ish exchange: an RTT sample
  std::vector<Instant> sends;
  sim.tap = [&](int from, const OutPacket& p) {
    if (from == 0 && p.ack_eliciting) sends.push_back(sim.now);
    return from != 0;  // side 0's packets all vanish
  };
  sim.open(0);
  sim.run_for(std::chrono::seconds(25));
  // Collapse bursts (packets sent at the same instant) into send episodes.
  std::vector<Instant> episodes;
  for (Instant t : sends)
    if (episodes.empty() || t - episodes.back() > milliseconds(1)) episodes.push_back(t);
  ASSERT_GE(episodes.size(), 6u);
  // episode 0: the initial window; 1: the tail-loss probe; 2: the first RTO, one RTO after the
  // first send; then each gap twice the last, up to max_rto.
  const auto base_rto = episodes[2] - episodes[0];
  EXPECT_GE(base_rto, c.min_rto);
  std::vector<std::int64_t> gaps{base_rto.count()};
  for (std::size_t i = 3; i < episodes.size(); ++i) gaps.push_back((episodes[i] - episodes[i - 1]).count());
  EXPECT_EQ(gaps.back(), 10'000'000);
  for (std::size_t i = 1; i < gaps.size(); ++i) {
    const std::int64_t want = std::min<std::int64_t>(2 * gaps[i - 1], 10'000'000);
    EXPECT_NEAR(static_cast<double>(gaps[i]), static_cast<double>(want), 2000.0) << "gap " << i;
  }
  EXPECT_GE(sim.conn(0).stats().rto_expiries, 4u);
  EXPECT_GE(sim.conn(0).stats().tlp_probes, 1u);
  EXPECT_EQ(sim.conn(0).stats().cwnd, 2u * c.max_payload);  // persistent congestion: minimum window
}

TEST(Connection, TransferSurvivesABlackout) {
  LinkSim sim(cfg(), cfg(), 11, sizes(1'000'000, 200'000));
  for (int i = 0; i < 2; ++i) {
    sim.link(i).delay = milliseconds(15);
    sim.link(i).rate = 10e6;
  }
  sim.open(0);
  sim.open(1);
  sim.run([&] { return sim.app(1).bytes_read > 300'000; }, std::chrono::seconds(30));
  sim.link(0).up = sim.link(1).up = false;
  sim.run_for(std::chrono::seconds(8));
  EXPECT_GE(sim.conn(0).stats().rto_expiries, 2u);
  EXPECT_LT(sim.app(1).bytes_read, 1'200'000u);
  sim.link(0).up = sim.link(1).up = true;
  ASSERT_TRUE(sim.run([&] { return sim.all_finished(); }, std::chrono::seconds(60)));
  expect_clean_finish(sim);
}

TEST(Connection, PathChangeMidTransferLosesAndDuplicatesNothing) {
  LinkSim sim(cfg(), cfg(), 5, sizes(1'500'000, 300'000));
  for (int i = 0; i < 2; ++i) {
    sim.link(i).delay = milliseconds(80);  // relayed
    sim.link(i).rate = 5e6;
  }
  sim.open(0);
  sim.open(1);
  sim.run([&] { return sim.app(1).bytes_read > 400'000; }, std::chrono::seconds(60));
  ASSERT_GT(sim.in_flight(), 0u);
  // Switch to the direct path: what was on the relay is gone; the new path is faster.
  sim.drop_in_flight();
  for (int i = 0; i < 2; ++i) {
    sim.link(i).delay = milliseconds(5);
    sim.link(i).rate = 20e6;
    sim.conn(i).on_path_changed(sim.now);
  }
  EXPECT_EQ(sim.conn(0).stats().bytes_in_flight, 0u);
  ASSERT_TRUE(sim.run([&] { return sim.all_finished(); }, std::chrono::seconds(60)));
  expect_clean_finish(sim);
  // The estimator now describes the direct path.
  EXPECT_LT(sim.conn(0).stats().srtt.count(), 40000);
  EXPECT_GE(sim.conn(0).stats().min_rtt.count(), 10000);
}

TEST(Connection, StreamLimitRefusesPastThePeersLimitAndReopensAsStreamsFinish) {
  ConnectionConfig few = cfg();
  few.max_streams = 16;  // == the initial credit, so no MAX_STREAMS at start
  LinkSim sim(cfg(), few, 1, sizes(100, 100));
  for (int k = 0; k < 16; ++k) sim.open(0);
  auto refused = sim.conn(0).open_stream();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, "busy");
  ASSERT_TRUE(sim.run([&] { return sim.all_finished() && sim.conn(0).stream_count() == 0; }, std::chrono::seconds(10)));
  // Finished streams are forgotten and the peer granted new ones.
  sim.run_for(std::chrono::milliseconds(500));
  for (int k = 0; k < 8; ++k) EXPECT_TRUE(sim.conn(0).open_stream().ok()) << k;
}

TEST(Connection, ThousandsOfStreamsLeaveNoStateBehind) {
  LinkSim sim(cfg(), cfg(), 9, sizes(700, 3000));
  sim.run_for(std::chrono::milliseconds(100));  // the peers' MAX_STREAMS (64) arrive
  const std::size_t idle_mem = sim.conn(1).memory_estimate();
  int opened = 0;
  for (int round = 0; round < 50; ++round) {
    sim.run_for(std::chrono::milliseconds(50));  // the peer's MAX_STREAMS for the last round arrives
    for (int k = 0; k < 40; ++k, ++opened) sim.open(0);
    ASSERT_TRUE(sim.run([&] { return sim.all_finished() && sim.conn(0).stream_count() == 0 && sim.conn(1).stream_count() == 0; },
                        std::chrono::seconds(20)))
        << "round " << round;
  }
  EXPECT_EQ(opened, 2000);
  expect_clean_finish(sim);
  sim.run_for(std::chrono::seconds(1));
  // Bounded: what an idle connection holds does not grow with the streams it carried.
  EXPECT_LT(sim.conn(0).memory_estimate(), idle_mem + 64 * 1024);
  EXPECT_LT(sim.conn(1).memory_estimate(), idle_mem + 64 * 1024);
}

TEST(Connection, CloseReachesThePeerWithCodeAndReason) {
  LinkSim sim(cfg(), cfg(), 1, sizes(1000, 1000));
  sim.open(0);
  ASSERT_TRUE(sim.run([&] { return sim.all_finished(); }, std::chrono::seconds(5)));
  sim.conn(0).close(42, "bye");
  sim.run([&] { return !sim.app(1).closed.empty(); }, std::chrono::seconds(5));
  ASSERT_EQ(sim.app(0).closed.size(), 1u);
  EXPECT_EQ(sim.app(0).closed[0].reason, CloseReason::Local);
  ASSERT_EQ(sim.app(1).closed.size(), 1u);
  EXPECT_EQ(sim.app(1).closed[0].reason, CloseReason::Peer);
  EXPECT_EQ(sim.app(1).closed[0].code, 42u);
  EXPECT_EQ(sim.app(1).closed[0].message, "bye");
  sim.run_for(std::chrono::seconds(2));
  EXPECT_TRUE(sim.conn(0).is_drained());
  EXPECT_EQ(sim.conn(0).next_wakeup(), kNever);
}

TEST(Connection, CloseIsRepeatedSoOneLossDoesNotStrandThePeer) {
  LinkSim sim(cfg(), cfg(), 1, sizes(0, 0));
  sim.run_for(std::chrono::milliseconds(500));
  int closes = 0;
  sim.tap = [&](int from, const OutPacket&) { return from != 0 || closes++ > 0; };  // the first CLOSE is lost
  sim.conn(0).close(7, "again");
  sim.run([&] { return !sim.app(1).closed.empty(); }, std::chrono::seconds(5));
  ASSERT_EQ(sim.app(1).closed.size(), 1u);
  EXPECT_EQ(sim.app(1).closed[0].code, 7u);
}

// ---------------------------------------------------------------------------------------------
// A peer that breaks the rules, driven by hand-made packets.

std::vector<std::uint8_t> payload(std::initializer_list<Frame> frames) {
  std::vector<Frame> v(frames);
  return encode_frames(std::span<const Frame>(v));
}

Closed expect_closed(Connection& c) {
  std::optional<Closed> closed;
  while (auto e = c.next_event())
    if (auto* cl = std::get_if<Closed>(&*e)) closed = *cl;
  EXPECT_TRUE(closed.has_value());
  return closed.value_or(Closed{CloseReason::Local, 0, {}});
}

TEST(Connection, PeerExceedingStreamCreditIsClosedWithAProtocolError) {
  ConnectionConfig c0 = cfg();
  c0.stream_window = kInitialStreamCredit;  // the credit stays the protocol's initial one
  Connection c(c0, Instant{0});
  std::vector<std::uint8_t> big(1000, 1);
  // The responder opens stream 1 and fills its 64 KiB of credit, then sends one byte more.
  c.on_packet(0, payload({StreamFrame{1, kInitialStreamCredit - 1000, false, big}}), Instant{1000});
  EXPECT_FALSE(c.is_closed());
  c.on_packet(1, payload({StreamFrame{1, kInitialStreamCredit, false, std::span<const std::uint8_t>(big).first(1)}}),
              Instant{2000});
  ASSERT_TRUE(c.is_closed());
  const Closed cl = expect_closed(c);
  EXPECT_EQ(cl.reason, CloseReason::ProtocolError);
  EXPECT_EQ(cl.code, kProtocolError);
  // It tells the peer: the next packet is a CLOSE with the protocol-error code.
  auto p = c.next_packet(Instant{2000});
  ASSERT_TRUE(p);
  auto frames = decode_frames(p->payload);
  ASSERT_TRUE(frames);
  ASSERT_TRUE(std::holds_alternative<Close>(frames->front()));
  EXPECT_EQ(std::get<Close>(frames->front()).code, kProtocolError);
}

TEST(Connection, PeerExceedingConnectionCreditIsClosed) {
  ConnectionConfig c0 = cfg();
  c0.conn_window = kInitialConnCredit;  // no raise either
  Connection c(c0, Instant{0});
  std::vector<std::uint8_t> chunk(1000, 2);
  std::uint64_t pn = 0, total = 0;
  StreamId id = 1;
  // Spread over streams so that no single stream's credit is exceeded first.
  for (; total + chunk.size() <= kInitialConnCredit; id += 2) {
    for (std::uint64_t off = 0; off + chunk.size() <= kInitialStreamCredit && total + chunk.size() <= kInitialConnCredit;
         off += chunk.size(), total += chunk.size())
      c.on_packet(pn++, payload({StreamFrame{id, off, false, chunk}}), Instant{1000});
  }
  ASSERT_FALSE(c.is_closed());
  c.on_packet(pn++, payload({StreamFrame{id, 0, false, chunk}}), Instant{1000});
  ASSERT_TRUE(c.is_closed());
  EXPECT_EQ(expect_closed(c).reason, CloseReason::ProtocolError);
}

TEST(Connection, OtherViolationsAreProtocolErrors) {
  auto closes_on = [](std::vector<std::uint8_t> bytes) {
    Connection c(cfg(), Instant{0});
    c.on_packet(0, bytes, Instant{1000});
    return c.is_closed() && expect_closed(c).reason == CloseReason::ProtocolError;
  };
  EXPECT_TRUE(closes_on({0x03}));                                      // unknown frame type
  EXPECT_TRUE(closes_on(payload({Ack{0, {{5, 9}}}})));                 // ACK of packets never sent
  EXPECT_TRUE(closes_on(payload({StreamFrame{4, 0, false, {}}})));     // our stream id, never opened
  EXPECT_TRUE(closes_on(payload({StreamFrame{2 * 64 + 1, 0, false, {}}})));  // past the stream limit (64)
  std::vector<std::uint8_t> d(10, 1);
  EXPECT_TRUE(closes_on(payload({StreamFrame{1, 0, true, d}, StreamFrame{1, 5, true, {}}})));  // FIN moved
  EXPECT_TRUE(closes_on(payload({ResetStream{1, 0, 5}, StreamFrame{1, 0, false, d}})));       // past final size
  EXPECT_FALSE(closes_on(payload({StreamFrame{1, 0, false, d}, StreamFrame{1, 2, false, std::span<const std::uint8_t>(d).first(3)}})));
}

// ---------------------------------------------------------------------------------------------
// Acknowledgement timing and pacing, observed on one connection.

TEST(Connection, AcksEverySecondPacketOrAfterTheDelayOrAtOnceOnAGap) {
  Connection c(cfg(), Instant{0});
  while (c.next_packet(Instant{0})) {
  }  // initial credit frames
  const std::vector<std::uint8_t> ping = payload({Ping{}});
  auto only_ack = [&](Instant now) {
    auto p = c.next_packet(now);
    if (!p) return false;
    auto f = decode_frames(p->payload);
    return f && std::holds_alternative<Ack>(f->front());
  };
  c.on_packet(0, ping, Instant{1000});
  EXPECT_FALSE(only_ack(Instant{1000}));  // one packet: wait
  EXPECT_EQ(c.next_wakeup(), Instant{1000} + kMaxAckDelay);
  c.on_tick(Instant{1000} + kMaxAckDelay);
  EXPECT_TRUE(only_ack(Instant{1000} + kMaxAckDelay));
  c.on_packet(1, ping, Instant{30000});
  c.on_packet(2, ping, Instant{30001});
  EXPECT_TRUE(only_ack(Instant{30001}));  // the second one: at once
  c.on_packet(5, ping, Instant{40000});   // a gap (3 and 4 missing): at once
  EXPECT_TRUE(only_ack(Instant{40000}));
}

TEST(Connection, PacerSpreadsAWindowInsteadOfBursting) {
  Connection c(cfg(), Instant{0});
  auto id = c.open_stream();
  ASSERT_TRUE(id.ok());
  std::vector<std::uint8_t> data(100'000, 3);
  ASSERT_EQ(c.write(*id, data), data.size());
  int burst = 0;
  while (c.next_packet(Instant{0})) ++burst;
  EXPECT_EQ(burst, 10);  // initial window of 10 packets = the pacer's burst
  EXPECT_GT(c.next_wakeup(), Instant{0});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// stop_reading: a server that has answered drops the rest of what a client sends (a worker that
// refused an unfinished request), without buffering it and without cutting its own answer.

namespace {

// Two connections on an emulated link with no delay and no loss: moves packets both ways until
// both are quiet. Counts the STOP_SENDING frames side 1 sends.
struct Pair {
  Connection c0{ConnectionConfig{}, Instant{0}};
  Connection c1{[] {
                  ConnectionConfig c;
                  c.initiator = false;
                  return c;
                }(),
                Instant{0}};
  Instant now{1000};
  std::uint64_t stops_sent = 0;
  qmesh::netem::Network net;
  qmesh::netem::SocketId s0 = net.bind(net.add_host(qmesh::core::Endpoint::v4(10, 0, 0, 1, 0)), 1);
  qmesh::netem::SocketId s1 = net.bind(net.add_host(qmesh::core::Endpoint::v4(10, 0, 0, 2, 0)), 1);

  // Puts what `from` has to send on the wire, then hands out what arrived. True if it sent any.
  bool carry(Connection& from, qmesh::netem::SocketId sock, qmesh::netem::SocketId to) {
    bool any = false;
    while (auto p = from.next_packet(now)) {
      if (&from == &c1) {
        const auto frames = decode_frames(p->payload);
        for (const auto& f : *frames) stops_sent += std::holds_alternative<StopSending>(f);
      }
      net.send(sock, net.local_endpoint(to), std::move(p->payload), to_instant(now), 0, p->pn);
      any = true;
    }
    while (auto d = net.poll_deliver(to_instant(now))) (d->socket == s1 ? c1 : c0).on_packet(d->tag, d->bytes, now);
    return any;
  }

  void shuttle() {
    for (int round = 0; round < 1000; ++round) {
      const bool sent0 = carry(c0, s0, s1);
      const bool sent1 = carry(c1, s1, s0);
      now += microseconds(30000);  // past the ACK delay: delayed ACKs go out too
      c0.on_tick(now);
      c1.on_tick(now);
      if (!sent0 && !sent1 && round > 4) return;
    }
  }
  static std::vector<Event> events(Connection& c) {
    std::vector<Event> out;
    while (auto e = c.next_event()) out.push_back(*e);
    return out;
  }
};

template <class T>
int count_of(const std::vector<Event>& es) {
  int n = 0;
  for (const auto& e : es) n += std::holds_alternative<T>(e);
  return n;
}

}  // namespace

TEST(Connection, StopReadingDropsThePeersDataButNotOurAnswer) {
  Pair p;
  const StreamId id = *p.c0.open_stream();
  std::vector<std::uint8_t> prefix(60 * 1024, 'r');  // an unfinished request: no FIN
  ASSERT_EQ(p.c0.write(id, prefix), prefix.size());
  p.shuttle();
  (void)Pair::events(p.c1);
  const auto held = p.c1.memory_estimate();
  ASSERT_GE(held, 60u * 1024);  // unread, in the receive buffer
  // The server answers, finishes and stops reading: the buffered bytes go at once.
  const std::string answer = "refused";
  ASSERT_EQ(p.c1.write(id, std::span(reinterpret_cast<const std::uint8_t*>(answer.data()), answer.size())), answer.size());
  ASSERT_TRUE(p.c1.finish(id).ok());
  ASSERT_TRUE(p.c1.stop_reading(id, 3).ok());
  EXPECT_LE(p.c1.memory_estimate() + 56 * 1024, held);
  std::uint8_t buf[64];
  EXPECT_EQ(p.c1.read(id, buf), 0u);
  p.shuttle();
  EXPECT_EQ(p.stops_sent, 1u);
  // The client got the whole answer and its FIN; its own sending was reset, so it writes no more.
  std::string got(64, '\0');
  got.resize(p.c0.read(id, std::span(reinterpret_cast<std::uint8_t*>(got.data()), got.size())));
  EXPECT_EQ(got, answer);
  EXPECT_EQ(count_of<Finished>(Pair::events(p.c0)), 1);
  EXPECT_EQ(p.c0.write(id, prefix), 0u);
  // The server saw no reset (the client's RESET_STREAM answered our STOP_SENDING), and both
  // sides forgot the stream.
  EXPECT_EQ(count_of<StreamReset>(Pair::events(p.c1)), 0);
  EXPECT_EQ(p.c1.stream_count(), 0u);
  EXPECT_EQ(p.c0.stream_count(), 0u);
  EXPECT_FALSE(p.c0.is_closed());
  EXPECT_FALSE(p.c1.is_closed());
}

TEST(Connection, StopReadingAfterThePeersFinSendsNoStopSending) {
  Pair p;
  const StreamId id = *p.c0.open_stream();
  std::vector<std::uint8_t> request(3000, 'q');
  ASSERT_EQ(p.c0.write(id, request), request.size());
  ASSERT_TRUE(p.c0.finish(id).ok());
  p.shuttle();
  ASSERT_TRUE(p.c1.stop_reading(id, 3).ok());  // unread, but the peer is done sending anyway
  const std::uint8_t e[] = {'e'};
  ASSERT_EQ(p.c1.write(id, e), 1u);
  ASSERT_TRUE(p.c1.finish(id).ok());
  p.shuttle();
  EXPECT_EQ(p.stops_sent, 0u);
  std::uint8_t buf[8];
  EXPECT_EQ(p.c0.read(id, buf), 1u);
  EXPECT_EQ(p.c1.stream_count(), 0u);
  EXPECT_EQ(p.c0.stream_count(), 0u);
}

TEST(Connection, BuffersAreReleasedWhenADirectionIsOver) {
  Pair p;
  const StreamId id = *p.c0.open_stream();
  std::vector<std::uint8_t> request(30 * 1024, 'q');
  ASSERT_EQ(p.c0.write(id, request), request.size());
  ASSERT_TRUE(p.c0.finish(id).ok());
  p.shuttle();
  // The client's sending is over (FIN acknowledged): its send buffer is gone though the stream lives on.
  EXPECT_LT(p.c0.memory_estimate(), 16u * 1024);
  std::vector<std::uint8_t> buf(64 * 1024);
  EXPECT_EQ(p.c1.read(id, buf), request.size());
  // The server read all of it and the FIN: its receive buffer is gone while it answers.
  EXPECT_EQ(p.c1.stream_count(), 1u);
  EXPECT_LT(p.c1.memory_estimate(), 16u * 1024);
}
