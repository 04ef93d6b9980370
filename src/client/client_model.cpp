// A model download (Client::fetch_model): the holders of a content root found in the DHT, a
// session and one transfer stream to each, and ONE core Fetch (core/model/fetch.hpp) that decides
// what to ask of whom, driven on the caller's thread. The loop thread decodes each stream's bytes
// (TransferDecoder, Getter side) and queues the frames; a helper thread looks holders up and opens
// sessions while fewer than the wanted number are in use, so the Fetch never waits for the DHT or
// a handshake. docs/architecture.md ("Model transfer on the network").
#include "client_impl.hpp"

#include "core/model/fetch.hpp"
#include "core/model/holder_record.hpp"

namespace qmesh {

namespace model = core::model;

// ---- loop thread ----

void Client::Impl::pump_xfer(stream::Connection& c, stream::StreamId id, XferStream& x) {
  while (x.out_off < x.out.size()) {
    const auto n = c.write(id, std::span(reinterpret_cast<const std::uint8_t*>(x.out.data()) + x.out_off, x.out.size() - x.out_off));
    if (n == 0) return;
    x.out_off += n;
  }
  x.out.clear();
  x.out_off = 0;
}

void Client::Impl::on_xfer(peer::Peer& p, session::SessionId sid, stream::StreamId id, const stream::Event& ev,
                           std::shared_ptr<XferStream> x) {
  auto* c = p.sessions().connection(sid);
  if (const auto* r = std::get_if<stream::StreamReset>(&ev)) {
    x->q->push(XferEvent{XferEvent::Ended, x->holder, std::nullopt, "the holder reset the stream (code " + std::to_string(r->code) + ")"});
    xfers.erase({sid, id});
    return;
  }
  if (!c) return;
  if (std::holds_alternative<stream::Writable>(ev)) return pump_xfer(*c, id, *x);
  std::uint8_t buf[16384];
  while (const auto n = c->read(id, buf)) {
    if (!x->dec.feed(std::span(buf, n))) {
      x->q->push(XferEvent{XferEvent::Bad, x->holder, std::nullopt, x->dec.error()});
      (void)c->reset(id, kResetCancel);
      xfers.erase({sid, id});
      return;
    }
    while (auto f = x->dec.next()) {
      if (!x->q->push(XferEvent{XferEvent::Frame, x->holder, std::move(*f), {}})) {
        x->q->push(XferEvent{XferEvent::Bad, x->holder, std::nullopt, "the holder sent more than was asked"});
        (void)c->reset(id, kResetCancel);
        xfers.erase({sid, id});
        return;
      }
    }
  }
  if (std::holds_alternative<stream::Finished>(ev)) {
    x->q->push(XferEvent{XferEvent::Ended, x->holder, std::nullopt, x->dec.partial() ? "the stream was cut short" : "the holder ended the stream"});
    xfers.erase({sid, id});
  }
}

// ---- any thread ----

std::vector<dht::LookupRecord> Client::Impl::lookup_topic(const dht::Topic& t, milliseconds limit, const std::atomic<bool>* cancelled) {
  const auto q = svc->call([&](peer::Peer& p, core::Instant now) {
    auto id = p.dht().lookup(t, now);
    await.expect(id);
    return id;
  });
  auto out = await.wait(q, limit, cancelled);
  if (!out) return {};
  // The newest record per node.
  std::map<dht::PublicKey, dht::LookupRecord> newest;
  for (auto& r : out->records) {
    auto it = newest.find(r.record.body.pubkey);
    if (it == newest.end() || it->second.record.body.seq <= r.record.body.seq) newest[r.record.body.pubkey] = r;
  }
  std::vector<dht::LookupRecord> v;
  for (auto& [k, r] : newest) v.push_back(std::move(r));
  return v;
}

namespace {

model::Hash parse_root(const std::string& hex) {
  auto b = hex.size() == 64 ? core::from_hex(hex) : std::nullopt;
  if (!b || b->size() != 32) throw Error("bad_request", "a content root is 64 hex digits, not '" + core::printable_line(hex) + "'");
  model::Hash h{};
  std::copy(b->begin(), b->end(), h.begin());
  return h;
}

// The holder record of `r` when it names `root` (and `size`, unless 0).
std::optional<model::HolderRecord> holder_of(const dht::LookupRecord& r, const model::Hash& root, std::uint64_t size) {
  auto h = model::decode_holder_record(r.record.body.payload);
  if (!h || h->root.hash != root || (size != 0 && h->root.size != size)) return std::nullopt;
  return h;
}

// What the download's thread and its helper share.
struct FetchShared {
  std::shared_ptr<XferQueue> q = std::make_shared<XferQueue>();
  std::atomic<bool> stop{false};
  std::atomic<int> want{0};  // holders to add now
  std::atomic<int> added{0};  // streams opened by the helper (Added events pushed)
  std::atomic<std::uint64_t> next_id{1};
};

}  // namespace

std::vector<ModelHolder> Client::model_holders(const std::string& root, milliseconds timeout) {
  const auto hash = parse_root(root);
  const auto t = impl_->topic_for(model::holder_topic_name(hash));
  std::vector<ModelHolder> out;
  for (const auto& r : impl_->lookup_topic(t, timeout, nullptr)) {
    auto h = holder_of(r, hash, 0);
    if (!h) continue;
    out.push_back({core::to_hex(r.record.body.pubkey), r.from.to_string(), h->name, h->root.size, h->uploads_free});
  }
  return out;
}

ModelFetchResult Client::fetch_model(const ModelFetchOptions& o, ChunkSink& sink) {
  auto& m = *impl_;
  const auto t0 = Clock::now();
  const auto hash = parse_root(o.root);
  if (o.holders < 1 || o.holders > 16) throw Error("bad_request", "holders must be 1..16");
  if (o.size > model::kMaxModelBytes) throw Error("bad_request", "size " + std::to_string(o.size) + " is past the limit");
  const auto cancelled = [&] { return o.cancel && o.cancel->load(); };
  const auto topic = m.topic_for(model::holder_topic_name(hash));
  std::uint64_t size = o.size;
  if (size == 0) {  // as the holders say (the first that says; the root checks it in the end)
    const auto until = t0 + o.timeout;
    while (size == 0) {
      for (const auto& r : m.lookup_topic(topic, milliseconds(5000), o.cancel))
        if (auto h = holder_of(r, hash, 0)) size = h->root.size;
      if (cancelled()) throw Error("cancelled", "the download was cancelled");
      if (size == 0 && Clock::now() >= until) throw Error("no_workers", "no holder has " + o.root);
      if (size == 0) std::this_thread::sleep_for(milliseconds(500));
    }
  }
  const model::ContentRoot root{hash, size};
  auto have = sink.have();
  if (!have.empty() && have.size() != root.chunks())
    throw Error("bad_request", "the sink has " + std::to_string(have.size()) + " chunk entries, the root " + std::to_string(root.chunks()));
  model::FetchConfig cfg;
  cfg.no_holder_timeout = std::chrono::duration_cast<core::Duration>(o.timeout);
  model::Fetch fetch(root, std::move(have), cfg, net::to_instant(Clock::now()));

  // The helper: lookups and sessions while fewer holders than wanted are in use.
  auto sh = std::make_shared<FetchShared>();
  sh->want = o.holders;
  std::thread helper([&m, sh, topic, hash, size] {
    std::set<dht::PublicKey> tried;
    while (!sh->stop) {
      if (sh->want <= 0) {
        std::this_thread::sleep_for(milliseconds(200));
        continue;
      }
      const auto looked = Clock::now();
      for (const auto& r : m.lookup_topic(topic, milliseconds(5000), &sh->stop)) {
        if (sh->stop || sh->want <= 0) break;
        const auto key = r.record.body.pubkey;
        if (tried.count(key) || !holder_of(r, hash, size)) continue;
        tried.insert(key);
        session::SessionId sid = 0;
        try {
          sid = m.session_for(r, Clock::now() + std::chrono::seconds(10), sh->stop, nullptr, &topic);
        } catch (const Error& e) {
          spdlog::debug("holder {}: {}", core::to_hex(key).substr(0, 12), e.what());
          continue;
        }
        const auto holder = sh->next_id++;
        auto x = std::make_shared<XferStream>();
        x->holder = holder;
        x->q = sh->q;
        auto id = m.svc->call([&](peer::Peer& p, core::Instant) -> std::optional<stream::StreamId> {
          auto* c = p.sessions().connection(sid);
          if (!c) return std::nullopt;
          auto s = c->open_stream();
          if (!s) return std::nullopt;
          m.xfers[{sid, *s}] = x;
          return *s;
        });
        if (!id) continue;
        --sh->want;
        ++sh->added;
        sh->q->push(XferEvent{XferEvent::Added, holder, std::nullopt, core::to_hex(key).substr(0, 12) + "@" + r.from.to_string(), sid, *id});
      }
      // Not more than one lookup every 2 s.
      while (!sh->stop && Clock::now() < looked + std::chrono::seconds(2)) std::this_thread::sleep_for(milliseconds(50));
    }
  });
  struct Stream {
    session::SessionId sid = 0;
    stream::StreamId id = 0;
    bool live = true;
  };
  std::map<model::HolderId, Stream> streams;
  int added_seen = 0;  // Added events taken
  // Ends every stream still open and the helper, however the download ends.
  struct Cleanup {
    Impl& m;
    FetchShared& sh;
    std::thread& helper;
    std::map<model::HolderId, Stream>& streams;
    ~Cleanup() {
      sh.stop = true;
      m.wake_waiters();
      helper.join();
      std::vector<std::pair<session::SessionId, stream::StreamId>> open;
      for (auto& [h, st] : streams)
        if (st.live) open.emplace_back(st.sid, st.id);
      m.svc->post([&m = m, open](peer::Peer& p, core::Instant) {
        for (auto& k : open) {
          m.xfers.erase(k);
          if (auto* c = p.sessions().connection(k.first)) (void)c->reset(k.second, kResetCancel);
        }
      });
    }
  } cleanup{m, *sh, helper, streams};

  auto send = [&](model::HolderId h, std::vector<std::uint8_t> bytes) {
    auto it = streams.find(h);
    if (it == streams.end() || !it->second.live) return;
    const auto key = std::make_pair(it->second.sid, it->second.id);
    m.svc->post([&m, key, bytes = std::move(bytes)](peer::Peer& p, core::Instant) {
      auto x = m.xfers.find(key);
      auto* c = p.sessions().connection(key.first);
      if (x == m.xfers.end() || !c) return;
      x->second->out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      Impl::pump_xfer(*c, key.second, *x->second);
    });
  };
  auto close = [&](model::HolderId h) {
    auto it = streams.find(h);
    if (it == streams.end() || !it->second.live) return;
    it->second.live = false;
    const auto key = std::make_pair(it->second.sid, it->second.id);
    m.svc->post([&m, key](peer::Peer& p, core::Instant) {
      m.xfers.erase(key);
      if (auto* c = p.sessions().connection(key.first)) (void)c->reset(key.second, kResetCancel);
    });
  };

  auto progress_at = Clock::now() + std::chrono::seconds(1);
  auto report = [&](core::Instant now) {
    if (!o.on_progress) return;
    const auto p = fetch.progress(now);
    o.on_progress({p.bytes_total, p.bytes_verified, p.bytes_resumed, p.bytes_per_second,
                   static_cast<int>(p.holders_in_use), static_cast<int>(p.holders_dropped)});
  };
  report(net::to_instant(Clock::now()));
  while (true) {
    if (cancelled()) throw Error("cancelled", "the download was cancelled");
    auto now = net::to_instant(Clock::now());
    // Wait for frames until the Fetch's next timer, the next progress report, or 200 ms.
    auto until = std::min(progress_at, Clock::now() + milliseconds(200));
    const auto wake = fetch.next_wakeup();
    if (wake > now) until = std::min(until, Clock::now() + std::chrono::duration_cast<Clock::duration>(wake - now));
    else until = Clock::now();
    auto events = sh->q->take(until);
    now = net::to_instant(Clock::now());
    for (auto& e : events) {
      switch (e.kind) {
        case XferEvent::Added:
          streams[e.holder] = Stream{e.sid, e.stream, true};
          ++added_seen;
          fetch.add_holder(e.holder, e.text, now);
          break;
        case XferEvent::Frame:
          fetch.on_frame(e.holder, std::move(*e.frame), now);
          break;
        case XferEvent::Ended:
          if (auto it = streams.find(e.holder); it != streams.end()) it->second.live = false;
          fetch.on_holder_lost(e.holder, now);
          break;
        case XferEvent::Bad:
          if (auto it = streams.find(e.holder); it != streams.end()) it->second.live = false;
          fetch.on_holder_error(e.holder, e.text, now);
          break;
      }
    }
    fetch.on_tick(now);
    std::map<model::HolderId, std::vector<std::uint8_t>> out;  // frames to send, one post per holder
    auto flush = [&] {
      for (auto& [h, b] : out) send(h, std::move(b));
      out.clear();
    };
    while (auto a = fetch.next_action()) {
      if (const auto* s = std::get_if<model::SendOpen>(&*a)) {
        auto f = model::encode(model::Open{hash, size});
        out[s->holder].insert(out[s->holder].end(), f.begin(), f.end());
      } else if (const auto* g = std::get_if<model::SendGet>(&*a)) {
        auto f = model::encode(model::Get{g->index});
        out[g->holder].insert(out[g->holder].end(), f.begin(), f.end());
      } else if (const auto* k = std::get_if<model::SendCancel>(&*a)) {
        auto f = model::encode(model::Cancel{k->index});
        out[k->holder].insert(out[k->holder].end(), f.begin(), f.end());
      } else if (const auto* d = std::get_if<model::DropHolder>(&*a)) {
        spdlog::info("dropped holder {}: {}", streams.count(d->holder) ? fetch.holder(d->holder)->label : "?", d->reason);
        out.erase(d->holder);
        close(d->holder);
      } else if (auto* w = std::get_if<model::WriteChunk>(&*a)) {
        flush();  // the GETs go out before the disk write
        if (auto err = sink.write(w->index, w->bytes); !err.empty()) throw Error("disk", err);
      } else if (std::holds_alternative<model::FetchDone>(*a)) {
        const auto p = fetch.progress(net::to_instant(Clock::now()));
        ModelFetchResult r;
        r.root = o.root;
        r.size = size;
        r.bytes_resumed = p.bytes_resumed;
        r.bytes_fetched = p.bytes_verified - p.bytes_resumed;
        r.bytes_wasted = p.bytes_wasted;
        r.seconds = ms_since(t0) / 1000.0;
        for (const auto& kv : streams)
          if (auto st = fetch.holder(kv.first); st && st->chunks > 0) ++r.holders_used;
        r.holders_dropped = static_cast<int>(p.holders_dropped);
        if (o.on_progress) report(net::to_instant(Clock::now()));
        return r;
      } else if (const auto* f = std::get_if<model::FetchFailed>(&*a)) {
        throw Error(streams.empty() ? "no_workers" : "workers_failed", f->reason);
      }
    }
    flush();
    // Holders live or opening: the helper adds more while fewer than wanted.
    int live = 0;
    for (const auto& [h, s] : streams)
      if (auto st = fetch.holder(h); s.live && st && st->state != model::HolderState::Dropped) ++live;
    sh->want = std::max(0, o.holders - live - (sh->added - added_seen));
    if (Clock::now() >= progress_at) {
      report(net::to_instant(Clock::now()));
      progress_at = Clock::now() + std::chrono::seconds(1);
    }
  }
}

}  // namespace qmesh
