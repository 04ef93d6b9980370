// Two stream Connections over the network emulator (tests/support/netem.hpp): one emulated link
// per direction (delay, jitter, loss, reordering, duplication, a bandwidth limit with a drop-tail
// queue, a switch to take it down) on a virtual clock in microseconds. Apps on each side open
// streams, write a pattern and check every byte they read against it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/stream/connection.hpp"
#include "netem.hpp"
#include "time_edge.hpp"

namespace qmesh::test {

using namespace qmesh::core::stream;
using std::chrono::microseconds;
using std::chrono::milliseconds;

// The byte at `off` of stream `id` in direction `dir` (0: sent by the initiator).
inline std::uint8_t pattern_byte(StreamId id, int dir, std::uint64_t off) {
  std::uint64_t x = (off >> 4) * 0x9E3779B97F4A7C15ULL ^ ((id << 1) | static_cast<std::uint64_t>(dir)) * 0xC2B2AE3D27D4EB4FULL;
  return static_cast<std::uint8_t>((x >> 56) + off);
}

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
      : net_(netem::with_delay(milliseconds(10), seed)), sizes_(std::move(sizes)) {
    for (int i = 0; i < 2; ++i)
      socket_[i] = net_.bind(net_.add_host(core::Endpoint::v4(10, 0, 0, static_cast<std::uint8_t>(i + 1), 0)), 1);
    a.initiator = true;
    b.initiator = false;
    conn_[0] = std::make_unique<Connection>(a, now);
    conn_[1] = std::make_unique<Connection>(b, now);
    app_[0].side = 0;
    app_[1].side = 1;
  }

  Connection& conn(int i) { return *conn_[i]; }
  SideApp& app(int i) { return app_[i]; }
  // From side i to side 1 - i: change it at any time (later packets only).
  netem::LinkConfig& link(int i) { return net_.link(endpoint(i), endpoint(1 - i)); }
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
      const Instant arrival = test::from_instant<Instant>(net_.next_deadline());
      Instant t = std::min({conn(0).next_wakeup(), conn(1).next_wakeup(), arrival});
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
      while (auto d = net_.poll_deliver(test::to_instant(now))) {
        const int to = d->socket == socket_[0] ? 0 : 1;
        ++delivered[1 - to];
        conn(to).on_packet(d->tag, d->bytes, now);  // the packet number rides as the tag
        handle_events(to);
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
    if ((tap && !tap(from, p)) ||
        !net_.send(socket_[from], endpoint(1 - from), std::move(p.payload), test::to_instant(now), 0, p.pn))
      ++dropped[from];
  }

  // Drops every packet still on the wire (a path that vanished).
  void drop_in_flight() { net_.drop_in_flight(); }
  std::size_t in_flight() const { return net_.in_flight(); }

 private:
  core::Endpoint endpoint(int side) const { return net_.local_endpoint(socket_[side]); }

  netem::Network net_;
  netem::SocketId socket_[2] = {0, 0};
  SizeFn sizes_;
  std::unique_ptr<Connection> conn_[2];
  SideApp app_[2];
};

}  // namespace qmesh::test
