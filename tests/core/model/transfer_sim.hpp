// A model transfer on the emulated network (tests/support/netem): one getter (a Fetch) and holders
// (a Share each), every frame through the real encoders and decoders, cut into datagrams of at most
// 60000 bytes on links with their own rate and delay. A stream's end (FIN) is an empty datagram
// tagged 1. Holders can misbehave: flip a bit in every chunk they serve, vanish after some chunks
// (their links go down, nothing more is answered), or not have the file at all. With send_ahead, a
// holder hands its link at most that many chunks not yet sent (as the worker's read-ahead and stream
// buffer do); the chunks it was told to serve wait in a queue a CANCEL can still take them from.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/base/rng.hpp"
#include "core/model/content_root.hpp"
#include "core/model/fetch.hpp"
#include "core/model/share.hpp"
#include "core/model/transfer_frame.hpp"
#include "netem.hpp"

namespace qmesh::transfer_sim {

using namespace qmesh::core;
using namespace qmesh::core::model;
using namespace std::chrono_literals;

constexpr std::size_t kDatagram = 60000;
constexpr std::uint64_t kFin = 1;
constexpr double MiB = 1024.0 * 1024.0;

struct SimFile {
  std::vector<std::uint8_t> bytes;
  MerkleTree tree;
  ContentRoot root;
};

inline SimFile make_file(std::uint64_t size, std::uint64_t seed) {
  SimFile f;
  f.bytes.resize(size);
  Rng rng(seed);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t v = rng.next_u64();
    std::memcpy(f.bytes.data() + i, &v, std::min<std::size_t>(8, size - i));
  }
  for (std::uint64_t off = 0; off < size; off += kChunkBytes) {
    const std::size_t n = std::min<std::uint64_t>(kChunkBytes, size - off);
    EXPECT_TRUE(f.tree.add_chunk(std::span(f.bytes).subspan(off, n)));
  }
  f.root = f.tree.root();
  return f;
}

enum class Behaviour { Honest, FlipBits, Vanish, NotHeld };

struct HolderSpec {
  double link_rate = 0;  // bytes/s holder -> getter; 0: unlimited
  Duration delay = 10ms;  // one way, both directions
  ShareConfig share{};
  Behaviour behaviour = Behaviour::Honest;
  std::uint64_t vanish_after = 0;  // Vanish: after serving this many chunks
  bool loss_noticed = false;       // Vanish: the getter's session notices at once (on_holder_lost)
  std::size_t send_ahead = 0;      // chunks given to the link and not yet sent, at most; 0: no limit
  bool ignores_cancel = false;     // a holder from before CANCEL: the frame never reaches its Share
};

class TransferSim {
 public:
  struct Node {
    HolderSpec spec;
    netem::SocketId socket = 0;
    Endpoint ep;
    std::unique_ptr<Share> share;
    TransferDecoder from_getter{TransferSide::Holder};  // the holder's end of the stream
    TransferDecoder from_holder{TransferSide::Getter};  // the getter's end
    std::uint64_t served = 0;
    std::deque<ShareServe> to_send;  // send_ahead: told to serve, not yet given to the link
    std::deque<Instant> departs;     // send_ahead: when each chunk given to the link is sent
    bool gone = false, holder_closed = false, getter_closed = false;
  };

  TransferSim(const SimFile& file, std::vector<HolderSpec> specs, std::vector<bool> have = {}, FetchConfig cfg = {},
              std::uint64_t seed = 1)
      : file_(file), net_(config(seed)), fetch_(file.root, have, cfg, now_) {
    out.assign(file.bytes.size(), 0);
    writes.assign(file.root.chunks(), 0);
    gets.assign(file.root.chunks(), 0);
    for (std::uint64_t i = 0; i < have.size() && i < file.root.chunks(); ++i) {  // what the .part holds
      if (have[i]) std::memcpy(out.data() + i * kChunkBytes, file.bytes.data() + i * kChunkBytes, file.root.chunk_size(i));
    }
    getter_ = net_.bind(net_.add_host(Endpoint::v4(198, 51, 100, 1, 0)), 4000);
    const Endpoint g = net_.local_endpoint(getter_);
    for (std::size_t i = 0; i < specs.size(); ++i) {
      auto n = std::make_unique<Node>();
      n->spec = specs[i];
      n->socket = net_.bind(net_.add_host(Endpoint::v4(198, 51, 101, static_cast<std::uint8_t>(i + 1), 0)), 4000);
      n->ep = net_.local_endpoint(n->socket);
      net_.link(n->ep, g).rate = n->spec.link_rate;
      net_.link(n->ep, g).delay = n->spec.delay;
      net_.link(g, n->ep).delay = n->spec.delay;
      n->share = std::make_unique<Share>(n->spec.share, now_);
      if (n->spec.behaviour != Behaviour::NotHeld) n->share->add_model(file.root);
      nodes.push_back(std::move(n));
    }
  }

  static std::string label(std::size_t i) { return "holder" + std::to_string(i); }

  void add_all() {
    for (std::size_t i = 0; i < nodes.size(); ++i) fetch_.add_holder(i, label(i), now_);
  }

  // Runs until the fetch has finished (true) or nothing can happen before `limit` from now.
  bool run(Duration limit) {
    const Instant stop = now_ + limit;
    for (;;) {
      settle();
      if (done || failed) return true;
      if (fetch_.next_wakeup() <= now_) {
        fetch_.on_tick(now_);
        continue;
      }
      bool ticked = false;
      for (auto& n : nodes) {
        if (!n->gone && n->share->next_wakeup() <= now_) {
          n->share->on_tick(now_);
          ticked = true;
        }
      }
      if (ticked) continue;
      Instant next = std::min(net_.next_deadline(), fetch_.next_wakeup());
      for (auto& n : nodes) {
        if (!n->gone) next = std::min(next, n->share->next_wakeup());
        if (!n->gone && !n->departs.empty()) next = std::min(next, n->departs.front());
      }
      if (next > stop) return false;
      now_ = next;
    }
  }

  Fetch& fetch() { return fetch_; }
  Instant now() const { return now_; }
  double elapsed_s() const { return std::chrono::duration<double>(now_ - Instant{}).count(); }
  HolderStats stats(std::size_t i) const { return *fetch_.holder(i); }

  std::vector<std::uint8_t> out;
  std::vector<int> writes;          // WriteChunk per chunk
  std::vector<int> gets;            // GETs sent per chunk
  std::uint64_t chunk_bytes_received = 0;  // CHUNK data the getter decoded
  std::uint64_t cancels = 0;               // CANCELs the getter sent
  std::map<std::size_t, std::string> drops;  // DropHolder reasons
  bool done = false;
  std::optional<std::string> failed;
  std::vector<std::unique_ptr<Node>> nodes;

 private:
  static netem::NetConfig config(std::uint64_t seed) {
    netem::NetConfig c = netem::with_delay(10ms, seed);
    c.internet.queue_limit = std::size_t{1} << 30;  // a stream's send buffer: nothing is dropped
    return c;
  }

  void send(netem::SocketId from, const Endpoint& to, const std::vector<std::uint8_t>& bytes) {
    for (std::size_t off = 0; off < bytes.size(); off += kDatagram) {
      const std::size_t n = std::min(kDatagram, bytes.size() - off);
      net_.send(from, to, std::span(bytes).subspan(off, n), now_);
    }
  }
  void fin(netem::SocketId from, const Endpoint& to) { net_.send(from, to, std::vector<std::uint8_t>{}, now_, 0, kFin); }

  // Everything due now, until nothing moves.
  void settle() {
    for (bool moved = true; moved;) {
      moved = drain_fetch();
      for (std::size_t i = 0; i < nodes.size(); ++i) moved |= drain_share(i);
      while (auto d = net_.poll_deliver(now_)) {
        deliver(*d);
        moved = true;
      }
    }
  }

  bool drain_fetch() {
    bool any = false;
    const Endpoint g = net_.local_endpoint(getter_);
    (void)g;
    while (auto a = fetch_.next_action()) {
      any = true;
      if (auto* o = std::get_if<SendOpen>(&*a)) {
        send(getter_, nodes[o->holder]->ep, encode(Open{file_.root.hash, file_.root.size}));
      } else if (auto* s = std::get_if<SendGet>(&*a)) {
        ++gets[s->index];
        send(getter_, nodes[s->holder]->ep, encode(Get{s->index}));
      } else if (auto* k = std::get_if<SendCancel>(&*a)) {
        ++cancels;
        if (!nodes[k->holder]->spec.ignores_cancel) send(getter_, nodes[k->holder]->ep, encode(Cancel{k->index}));
      } else if (auto* d = std::get_if<DropHolder>(&*a)) {
        drops[d->holder] = d->reason;
        nodes[d->holder]->getter_closed = true;
        fin(getter_, nodes[d->holder]->ep);
      } else if (auto* w = std::get_if<WriteChunk>(&*a)) {
        ++writes[w->index];
        EXPECT_EQ(w->bytes.size(), file_.root.chunk_size(w->index));
        std::memcpy(out.data() + w->index * kChunkBytes, w->bytes.data(), w->bytes.size());
      } else if (std::get_if<FetchDone>(&*a)) {
        done = true;
      } else if (auto* f = std::get_if<FetchFailed>(&*a)) {
        failed = f->reason;
      }
    }
    return any;
  }

  bool drain_share(std::size_t i) {
    Node& n = *nodes[i];
    bool any = false;
    const Endpoint g = net_.local_endpoint(getter_);
    while (auto a = n.share->next_action()) {
      any = true;
      if (n.gone || n.holder_closed) continue;
      if (auto* s = std::get_if<ShareSend>(&*a)) {
        send(n.socket, g, s->bytes);
      } else if (auto* c = std::get_if<ShareServe>(&*a)) {
        n.to_send.push_back(*c);
      } else if (auto* k = std::get_if<ShareCancel>(&*a)) {
        auto q = std::find_if(n.to_send.begin(), n.to_send.end(), [&](const ShareServe& v) { return v.index == k->index; });
        if (q != n.to_send.end()) {
          n.to_send.erase(q);
          n.share->on_serve_dropped(k->stream, k->index, now_);
        }
      } else if (std::get_if<ShareClose>(&*a)) {
        n.holder_closed = true;
        n.to_send.clear();
        fin(n.socket, g);
      }
    }
    return send_chunks(i) || any;
  }

  // Gives the link the chunks the holder was told to serve, at most send_ahead not yet sent.
  bool send_chunks(std::size_t i) {
    Node& n = *nodes[i];
    const Endpoint g = net_.local_endpoint(getter_);
    while (!n.departs.empty() && n.departs.front() <= now_) n.departs.pop_front();
    bool any = false;
    while (!n.to_send.empty() && !n.gone && !n.holder_closed &&
           (n.spec.send_ahead == 0 || n.departs.size() < n.spec.send_ahead)) {
      const ShareServe c = n.to_send.front();
      n.to_send.pop_front();
      any = true;
      std::vector<std::uint8_t> data(file_.bytes.begin() + static_cast<std::ptrdiff_t>(c.index * kChunkBytes),
                                     file_.bytes.begin() + static_cast<std::ptrdiff_t>(c.index * kChunkBytes +
                                                                                      c.root.chunk_size(c.index)));
      if (n.spec.behaviour == Behaviour::FlipBits) data[data.size() / 2] ^= 0x10;
      const auto frame = encode_chunk(c.index, file_.tree.proof(c.index), data);
      send(n.socket, g, frame);
      if (n.spec.send_ahead > 0 && n.spec.link_rate > 0) {
        const Instant from = n.departs.empty() ? now_ : std::max(now_, n.departs.back());
        n.departs.push_back(from + std::chrono::duration_cast<Duration>(
                                      std::chrono::duration<double>(static_cast<double>(frame.size()) / n.spec.link_rate)));
      }
      n.share->on_chunk_written(c.stream, c.index, now_);
      ++n.served;
      if (n.spec.behaviour == Behaviour::Vanish && n.served == n.spec.vanish_after) vanish(i);
    }
    return any;
  }

  void vanish(std::size_t i) {
    Node& n = *nodes[i];
    n.gone = true;
    const Endpoint g = net_.local_endpoint(getter_);
    net_.link(n.ep, g).up = false;
    net_.link(g, n.ep).up = false;
    if (n.spec.loss_noticed) fetch_.on_holder_lost(i, now_);
  }

  void deliver(const netem::Datagram& d) {
    if (d.socket == getter_) {
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i]->ep == d.from) return from_holder(i, d);
      }
      return;
    }
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      Node& n = *nodes[i];
      if (n.socket != d.socket || n.gone || n.holder_closed) continue;
      if (d.tag == kFin) {
        n.holder_closed = true;
        n.share->on_stream_closed(StreamId{}, now_);
        return;
      }
      if (!n.from_getter.feed(d.bytes)) {
        n.share->on_stream_error(StreamId{}, n.from_getter.error(), now_);
        return;
      }
      while (auto f = n.from_getter.next()) n.share->on_frame(StreamId{}, std::move(*f), now_);
    }
  }

  void from_holder(std::size_t i, const netem::Datagram& d) {
    Node& n = *nodes[i];
    if (n.getter_closed) return;
    if (d.tag == kFin) {
      n.getter_closed = true;
      fetch_.on_holder_lost(i, now_);
      return;
    }
    if (!n.from_holder.feed(d.bytes)) {
      n.getter_closed = true;
      fetch_.on_holder_error(i, n.from_holder.error(), now_);
      return;
    }
    while (auto f = n.from_holder.next()) {
      if (auto* c = std::get_if<Chunk>(&*f)) chunk_bytes_received += c->data.size();
      fetch_.on_frame(i, std::move(*f), now_);
    }
  }

  const SimFile& file_;
  Instant now_{};
  netem::Network net_;
  netem::SocketId getter_ = 0;
  Fetch fetch_;
};

}  // namespace qmesh::transfer_sim
