// A deterministic simulated link between two stream Connections, for tests and the benchmark:
// a virtual clock in microseconds, per-direction delay + jitter (which reorders), random loss,
// duplication, a bandwidth limit with a drop-tail queue, and a switch to take a direction down.
// Apps on each side open streams, write a pattern and check every byte they read against it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "core/stream/connection.hpp"
#include "core/base/rng.hpp"

namespace qmesh::test {

using namespace qmesh::core::stream;
using std::chrono::microseconds;
using std::chrono::milliseconds;

// The byte at `off` of stream `id` in direction `dir` (0: sent by the initiator).
inline std::uint8_t pattern_byte(StreamId id, int dir, std::uint64_t off) {
  std::uint64_t x = (off >> 4) * 0x9E3779B97F4A7C15ULL ^ ((id << 1) | static_cast<std::uint64_t>(dir)) * 0xC2B2AE3D27D4EB4FULL;
  return static_cast<std::uint8_t>((x >> 56) + off);
}

struct LinkParams {
  microseconds delay{10000};
  microseconds jitter{0};     // uniform extra delay in [0, jitter): reorders packets
  double loss = 0;            // probability a packet is dropped
  double dup = 0;             // probability a packet arrives twice
  double reorder = 0;         // probability a packet is held back by reorder_delay
  microseconds reorder_delay{3000};
  double bytes_per_us = 0;    // bandwidth; 0: unlimited
  std::size_t queue_bytes = 256 * 1024;  // drop-tail bound on what waits for the bandwidth
  bool up = true;             // false: everything is dropped (blackout)
};

struct StreamCheck {
  std::uint64_t expected_in = 0, got = 0;
  std::uint64_t out_total = 0, out_written = 0;
  bool fin_called = false;
  int finished = 0, resets = 0, opened_events = 0;
  bool mismatch = false;
};

struct SideApp {
  int side = 0;  // 0: initiator
  bool reading = true;  // false: the app stops reading (flow control tests)
  std::map<StreamId, StreamCheck> streams;
  std::set<StreamId> writers;
  std::vector<Closed> closed;
  std::uint64_t bytes_read = 0;
  std::size_t max_read_chunk = 65536;
};

class LinkSim {
 public:
  // out_size(id, dir): bytes stream `id` carries in direction `dir` (0: initiator to responder).
  using SizeFn = std::function<std::uint64_t(StreamId, int)>;

  LinkSim(ConnectionConfig a, ConnectionConfig b, std::uint64_t seed, SizeFn sizes)
      : rng_(seed), sizes_(std::move(sizes)) {
    a.initiator = true;
    b.initiator = false;
    conn_[0] = std::make_unique<Connection>(a, now);
    conn_[1] = std::make_unique<Connection>(b, now);
    app_[0].side = 0;
    app_[1].side = 1;
  }

  Connection& conn(int i) { return *conn_[i]; }
  SideApp& app(int i) { return app_[i]; }
  LinkParams link[2];  // link[i]: from side i to side 1 - i
  Instant now{0};
  std::uint64_t delivered[2] = {0, 0}, dropped[2] = {0, 0};
  // Optional hook: sees each packet leaving side i; return false to drop it.
  std::function<bool(int, const OutPacket&)> tap;

  StreamId open(int side) {
    auto r = conn(side).open_stream();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    if (!r.ok()) return ~StreamId{0};
    const StreamId id = *r;
    StreamCheck& c = app_[side].streams[id];
    c.out_total = sizes_(id, side);
    c.expected_in = sizes_(id, 1 - side);
    app_[side].writers.insert(id);
    pump_writes(side);
    return id;
  }

  // Runs until done() holds (checked between steps) or the virtual deadline passes. Returns done().
  bool run(std::function<bool()> done, microseconds limit) {
    const Instant end = now + limit;
    int same_time = 0;
    Instant last = now;
    while (!done()) {
      flush();
      if (done()) return true;
      Instant t = std::min(conn(0).next_wakeup(), conn(1).next_wakeup());
      if (!q_.empty()) t = std::min(t, q_.top().at);
      if (t > end) {
        now = end;
        return done();
      }
      now = std::max(now, t);
      if (now == last) {
        if (++same_time > 200000) {
          ADD_FAILURE() << "simulation stuck at t=" << now.count();
          return false;
        }
      } else {
        same_time = 0;
        last = now;
      }
      while (!q_.empty() && q_.top().at <= now) {
        Pkt p = q_.top();
        q_.pop();
        ++delivered[1 - p.to];
        conn(p.to).on_packet(p.pn, p.payload, now);
        handle_events(p.to);
      }
      for (int i = 0; i < 2; ++i) {
        if (conn(i).next_wakeup() <= now) {
          conn(i).on_tick(now);
          handle_events(i);
        }
      }
    }
    return true;
  }

  bool run_for(microseconds d) {
    return run([] { return false; }, d) || true;
  }

  // Every stream both apps know has delivered all it should, exactly once, and finished.
  bool all_finished() const {
    for (int i = 0; i < 2; ++i)
      for (const auto& [id, c] : app_[i].streams)
        if (c.finished != 1 || c.got != c.expected_in) return false;
    return true;
  }

  void flush() {
    for (int i = 0; i < 2; ++i) {
      handle_events(i);
      pump_writes(i);
      while (auto p = conn(i).next_packet(now)) send(i, std::move(*p));
      handle_events(i);
    }
  }

  void pump_writes(int side) {
    SideApp& a = app_[side];
    std::vector<std::uint8_t> buf;
    for (auto it = a.writers.begin(); it != a.writers.end();) {
      StreamCheck& c = a.streams[*it];
      bool blocked = false;
      while (c.out_written < c.out_total && !blocked) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(c.out_total - c.out_written, 64 * 1024));
        buf.resize(n);
        for (std::size_t k = 0; k < n; ++k) buf[k] = pattern_byte(*it, side, c.out_written + k);
        const std::size_t w = conn(side).write(*it, buf);
        c.out_written += w;
        blocked = w < n;
      }
      if (c.out_written == c.out_total && !c.fin_called) {
        c.fin_called = conn(side).finish(*it).ok();
      }
      if (c.fin_called) {
        it = a.writers.erase(it);
      } else {
        ++it;
      }
    }
  }

  void read_all(int side, StreamId id) {
    SideApp& a = app_[side];
    StreamCheck& c = a.streams[id];
    std::vector<std::uint8_t> buf(a.max_read_chunk);
    for (;;) {
      const std::size_t n = conn(side).read(id, buf);
      if (n == 0) break;
      for (std::size_t k = 0; k < n; ++k)
        if (buf[k] != pattern_byte(id, 1 - side, c.got + k)) c.mismatch = true;
      c.got += n;
      a.bytes_read += n;
    }
    EXPECT_FALSE(c.mismatch) << "side " << side << " stream " << id << " read wrong bytes";
    EXPECT_LE(c.got, c.expected_in) << "side " << side << " stream " << id << " read too much";
  }

  void handle_events(int side) {
    SideApp& a = app_[side];
    while (auto e = conn(side).next_event()) {
      if (auto* o = std::get_if<StreamOpened>(&*e)) {
        StreamCheck& c = a.streams[o->id];
        ++c.opened_events;
        c.out_total = sizes_(o->id, side);
        c.expected_in = sizes_(o->id, 1 - side);
        a.writers.insert(o->id);
      } else if (auto* r = std::get_if<Readable>(&*e)) {
        if (a.reading) read_all(side, r->id);
      } else if (std::get_if<Writable>(&*e)) {
        // pump_writes runs on every flush
      } else if (auto* f = std::get_if<Finished>(&*e)) {
        StreamCheck& c = a.streams[f->id];
        ++c.finished;
        if (a.reading) {
          read_all(side, f->id);
          EXPECT_EQ(c.got, c.expected_in) << "side " << side << " stream " << f->id;
        }
      } else if (auto* rs = std::get_if<StreamReset>(&*e)) {
        ++a.streams[rs->id].resets;
        a.writers.erase(rs->id);
      } else if (auto* cl = std::get_if<Closed>(&*e)) {
        a.closed.push_back(*cl);
      }
    }
  }

  // Reads everything readable on every stream of a side (after it stopped reading for a while).
  void read_everything(int side) {
    for (auto& [id, c] : app_[side].streams) read_all(side, id);
  }

  void send(int from, OutPacket p) {
    if (tap && !tap(from, p)) {
      ++dropped[from];
      return;
    }
    const LinkParams& l = link[from];
    if (!l.up || (l.loss > 0 && rng_.uniform() < l.loss)) {
      ++dropped[from];
      return;
    }
    Instant depart = now;
    if (l.bytes_per_us > 0) {
      Instant& free_at = free_at_[from];
      if (free_at < now) free_at = now;
      const double backlog = static_cast<double>((free_at - now).count()) * l.bytes_per_us;
      if (backlog > static_cast<double>(l.queue_bytes)) {
        ++dropped[from];
        return;
      }
      free_at += microseconds{static_cast<std::int64_t>(static_cast<double>(p.payload.size() + 28) / l.bytes_per_us) + 1};
      depart = free_at;
    }
    auto at = depart + l.delay;
    if (l.jitter.count() > 0) at += microseconds{static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(l.jitter.count())))};
    if (l.reorder > 0 && rng_.uniform() < l.reorder) at += l.reorder_delay;
    if (l.dup > 0 && rng_.uniform() < l.dup) {
      q_.push(Pkt{at + microseconds{static_cast<std::int64_t>(rng_.below(5000))}, seq_++, 1 - from, p.pn, p.payload});
    }
    q_.push(Pkt{at, seq_++, 1 - from, p.pn, std::move(p.payload)});
  }

  // Drops every packet still on the wire (a path that vanished).
  void drop_in_flight() {
    while (!q_.empty()) q_.pop();
  }
  std::size_t in_flight() const { return q_.size(); }

 private:
  struct Pkt {
    Instant at;
    std::uint64_t seq;
    int to;
    std::uint64_t pn;
    std::vector<std::uint8_t> payload;
    bool operator>(const Pkt& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  qmesh::core::Rng rng_;
  SizeFn sizes_;
  std::unique_ptr<Connection> conn_[2];
  SideApp app_[2];
  std::priority_queue<Pkt, std::vector<Pkt>, std::greater<Pkt>> q_;
  std::uint64_t seq_ = 0;
  Instant free_at_[2] = {Instant{0}, Instant{0}};
};

}  // namespace qmesh::test
