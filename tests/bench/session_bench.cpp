// session_bench: QMesh sessions on real UDP sockets on 127.0.0.1. Three net::PeerServices in one
// process, each on its own libuv loop thread: a bootstrap peer (DHT, rendezvous, relay), a worker
// (announces a topic; echoes a stream whose first byte is 'E', swallows one whose first byte is
// 'S') and a client. Figures:
//   - connect: from Peer::connect() (the lookup is done before) to the first byte echoed back on a
//     new stream opened at SessionUp; and the handshake alone (HELLO sent to WELCOME taken).
//     Medians over --runs runs after one warm-up run; with --hyperdht-script, HyperDHT's connect
//     in the same run (tests/bench/hyperdht_connect_bench.js) and the ratio.
//   - throughput: one stream client -> worker (the worker reads and drops), on the punched direct
//     path; then through a UDP forwarder thread in this process that drops --loss of the datagrams
//     each way (a seeded Rng), and at 0% through the same forwarder for its own cost.
//   - memory: --sessions idle sessions client -> worker (direct HELLOs): RSS and malloc deltas,
//     SessionHost::memory_estimate() and one idle Connection::memory_estimate().
//
//   session_bench [--runs 40] [--mb 256] [--lossy-mb 64] [--loss 0.01] [--sessions 200] [--seed 1]
//                 [--hyperdht-script tests/bench/hyperdht_connect_bench.js]
#include "session_bench_harness.hpp"

namespace {

struct SinkResult {
  double mb_per_s = 0;
  double cpu_ms_per_mb = 0;  // the whole process's CPU time over the run (the bench's other threads idle)
  stream::ConnectionStats delta;  // client side, over the run
};

SinkResult sink_once(PeerService& client, Client& cl, PeerService& worker, Worker& wk, session::SessionId sid,
                     std::uint64_t bytes) {
  const auto sinks_before = worker.call([&](peer::Peer&, Instant) { return wk.sinks.size(); });
  auto stats = [&] {
    return client.call([&](peer::Peer& p, Instant) {
      auto i = p.sessions().info(sid);
      return i ? i->stats : stream::ConnectionStats{};
    });
  };
  const auto before = stats();
  const double cpu0 = qmesh::bench::process_cpu_s();
  const bool ok = client.call([&](peer::Peer& p, Instant now) {
    auto* c = p.sessions().connection(sid);
    auto id = c ? c->open_stream() : qmesh::core::Result<stream::StreamId>(qmesh::core::Error{"", ""});
    if (!id) return false;
    cl.w = Client::Writer{sid, *id, bytes, 0, true, false, now};
    cl.pump(p);
    return true;
  });
  if (!ok) die("throughput: cannot open a stream");
  if (!wait_until(worker, [&](peer::Peer&, Instant) { return wk.sinks.size() > sinks_before; },
                  milliseconds(300000)))
    die("throughput: the sink did not finish in 300 s");
  const auto [got, t_end] = worker.call([&](peer::Peer&, Instant) { return wk.sinks.back(); });
  const auto t0 = client.call([&](peer::Peer&, Instant) {
    cl.w.active = false;
    return cl.w.t0;
  });
  const double cpu1 = qmesh::bench::process_cpu_s();
  if (got != bytes) die("throughput: the sink got " + std::to_string(got) + " of " + std::to_string(bytes) + " bytes");
  const auto after = stats();
  SinkResult r;
  r.mb_per_s = static_cast<double>(bytes) / 1e3 / ms_between(t0, t_end);
  r.cpu_ms_per_mb = (cpu1 - cpu0) * 1e3 / (static_cast<double>(bytes) / 1e6);
  r.delta = after;
  r.delta.stream_bytes_sent = after.stream_bytes_sent - before.stream_bytes_sent;
  r.delta.stream_bytes_retransmitted = after.stream_bytes_retransmitted - before.stream_bytes_retransmitted;
  r.delta.packets_sent = after.packets_sent - before.packets_sent;
  r.delta.packets_lost = after.packets_lost - before.packets_lost;
  r.delta.tlp_probes = after.tlp_probes - before.tlp_probes;
  r.delta.rto_expiries = after.rto_expiries - before.rto_expiries;
  return r;
}

void print_sink(const std::string& what, const std::vector<SinkResult>& rs, std::uint64_t bytes) {
  std::vector<double> v, cpu;
  double retx = 0, lost = 0, sent = 0, tlp = 0, rto = 0;
  for (const auto& r : rs) {
    v.push_back(r.mb_per_s);
    cpu.push_back(r.cpu_ms_per_mb);
    retx += static_cast<double>(r.delta.stream_bytes_retransmitted);
    sent += static_cast<double>(r.delta.stream_bytes_sent);
    lost += static_cast<double>(r.delta.packets_lost);
    tlp += static_cast<double>(r.delta.tlp_probes);
    rto += static_cast<double>(r.delta.rto_expiries);
  }
  std::sort(v.begin(), v.end());
  std::printf("  %-34s: %7.1f MB/s median (min %.1f, max %.1f) over %zu x %.0f MB; retransmitted %.2f%% of "
              "stream bytes, %.0f packets lost, %.0f TLP, %.0f RTO per run; srtt %.3f ms, cwnd %.0f KB at the end; "
              "process CPU %.2f ms per MB (median)\n",
              what.c_str(), median(v), v.front(), v.back(), rs.size(), static_cast<double>(bytes) / 1e6,
              sent > 0 ? 100.0 * retx / sent : 0.0, lost / static_cast<double>(rs.size()),
              tlp / static_cast<double>(rs.size()), rto / static_cast<double>(rs.size()),
              static_cast<double>(rs.back().delta.srtt.count()) / 1000.0,
              static_cast<double>(rs.back().delta.cwnd) / 1024, median(cpu));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"session_bench"};
  std::size_t runs = 40, sessions = 200, tput_runs = 3;
  double mb = 256, lossy_mb = 64, loss = 0.01;
  std::uint64_t seed = 1;
  std::string script;
  app.add_option("--runs", runs, "timed connects (medians over them; one warm-up run is left out)");
  app.add_option("--mb", mb, "MB per throughput run on the direct path");
  app.add_option("--lossy-mb", lossy_mb, "MB per throughput run through the forwarder");
  app.add_option("--throughput-runs", tput_runs, "throughput runs per condition (median)");
  app.add_option("--loss", loss, "fraction of datagrams the forwarder drops, each way");
  app.add_option("--sessions", sessions, "idle sessions for the memory figure");
  app.add_option("--seed", seed, "seed of the forwarder's drops");
  app.add_option("--hyperdht-script", script, "tests/bench/hyperdht_connect_bench.js; HyperDHT is skipped without it");
  CLI11_PARSE(app, argc, argv);
  if (runs < 1 || tput_runs < 1 || sessions < 2) die("--runs, --throughput-runs must be >= 1 and --sessions >= 2");
  if (sodium_init() < 0) die("libsodium failed to initialize");
  spdlog::set_level(spdlog::level::warn);

  // Bootstrap: a full peer, as `qmesh-cli dht bootstrap` runs one. Every peer here shares
  // 127.0.0.1, so its per-IP relay limit is raised (each connect opens a relay channel, which
  // lives until it has been idle for a minute).
  qmesh::net::PeerServiceOptions bo;
  bo.listen_v4 = qmesh::core::Endpoint::v4(127, 0, 0, 1, 0);
  bo.config.serve_relay = true;
  bo.config.punch = false;
  bo.config.relay.max_channels = 4096;
  bo.config.relay.max_channels_per_ip = 4096;
  bo.config.sessions.identity = random_identity();
  bo.config.sessions.accept_incoming = false;
  auto boot = start(bo, nullptr);
  const auto seed_ep = *boot->local_endpoint(4);

  // Worker: its session identity is the X25519 form of the key that signs its announcement.
  std::array<std::uint8_t, 32> key_seed;
  randombytes_buf(key_seed.data(), key_seed.size());
  const auto key = dht::KeyPair::from_seed(key_seed);
  noise::PrivateKey wx;
  crypto_sign_ed25519_sk_to_curve25519(wx.bytes.data(), key.secret_key.data());
  auto wo = edge_options();
  wo.config.sessions.identity = noise::KeyPair::from_private(wx);
  wo.config.sessions.accept_incoming = true;
  wo.config.sessions.handshakes_per_s = 100000;  // the memory figure opens --sessions at once
  wo.config.sessions.handshake_burst = 100000;
  wo.config.sessions.max_unconfirmed = 100000;  // every peer here is 127.0.0.1
  wo.config.sessions.max_unconfirmed_per_ip = 100000;
  auto wk = std::make_unique<Worker>();
  auto worker = start(wo, [w = wk.get()](const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    w->on_event(e, p, now);
  });
  const auto worker_ep = *worker->local_endpoint(4);
  const auto worker_static = *peer::Peer::session_key(key.public_key);

  auto co = edge_options();
  co.config.sessions.identity = random_identity();
  co.config.sessions.accept_incoming = false;
  auto cl = std::make_unique<Client>();
  cl->pattern.resize(1 << 20);
  randombytes_buf(cl->pattern.data(), cl->pattern.size());
  cl->pattern[0] = 'S';
  auto client = start(co, [c = cl.get()](const peer::PeerEvent& e, peer::Peer& p, Instant now) {
    c->on_event(e, p, now);
  });

  join(*worker, wk->dht, seed_ep);
  join(*client, cl->dht, seed_ep);
  const auto topic = dht::topic_from_name("qmesh-session-bench");
  const std::string payload = R"({"service":"bench"})";
  const auto aq = worker->call([&](peer::Peer& p, Instant now) {
    return p.dht().announce(topic, std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
                            key, now);
  });
  if (!wait_until(*worker, [&](peer::Peer&, Instant) { return wk->dht.done.count(aq) > 0; }, milliseconds(10000)) ||
      !worker->call([&](peer::Peer&, Instant) { return wk->dht.done[aq]; }))
    die("the announcement was not stored");
  const auto lq = client->call([&](peer::Peer& p, Instant now) {
    return p.dht().lookup(topic, now);
  });
  if (!wait_until(*client, [&](peer::Peer&, Instant) { return cl->dht.done.count(lq) > 0; }, milliseconds(10000)))
    die("the lookup did not finish");
  const auto found = client->call([&](peer::Peer&, Instant) {
    std::optional<dht::LookupRecord> f;
    for (const auto& r : cl->dht.records)
      if (r.query == lq && (!f || f->record.body.seq < r.record.body.seq)) f = r;
    return f;
  });
  if (!found) die("the lookup found no record");

  // ---- connect ----
  std::vector<double> connect_ms, handshake_ms;
  std::size_t relayed = 0, direct = 0;
  session::SessionId last_sid = 0;
  for (std::size_t i = 0; i <= runs; ++i) {
    client->call([&](peer::Peer& p, Instant now) {
      cl->run = Client::Run{};
      cl->run.t0 = now;
      cl->run.cid = p.connect(topic, *found, now);
    });
    if (!wait_until(*client, [&](peer::Peer&, Instant) { return cl->run.echoed_ok || !cl->run.error.empty(); },
                    milliseconds(10000)))
      die("connect: no echo within 10 s");
    const auto r = client->call([&](peer::Peer&, Instant) { return cl->run; });
    if (!r.error.empty()) die("connect: " + r.error);
    if (i > 0) {
      connect_ms.push_back(ms_between(r.t0, r.echoed));
      handshake_ms.push_back(ms_between(r.hs_start, r.up));
      relayed += r.relayed;
    }
    // The punch runs on after SessionUp; let it end so that runs do not overlap.
    wait_until(*client, [&](peer::Peer&, Instant) { return cl->decided.count(r.sid) > 0; }, milliseconds(3000));
    const bool is_direct = client->call([&](peer::Peer&, Instant) {
      auto it = cl->decided.find(r.sid);
      return it != cl->decided.end() && it->second.direct;
    });
    if (i > 0) direct += is_direct;
    if (i < runs) {
      client->call([&](peer::Peer& p, Instant now) { p.sessions().close(r.sid, 0, "done", now); });
      std::this_thread::sleep_for(milliseconds(5));
    } else {
      last_sid = r.sid;  // the throughput session
    }
  }

  // The worker's id of the last session (the throughput session when its punch succeeded).
  auto worker_sid = worker->call([&](peer::Peer&, Instant) { return wk->last_accepted; });

  // ---- memory: idle sessions ----
  std::this_thread::sleep_for(milliseconds(3500));  // closed sessions linger 3 s
  malloc_trim(0);
  const long rss0 = rss_bytes(), heap0 = heap_bytes();
  const std::size_t batch = 50;
  for (std::size_t done = 0; done < sessions;) {
    const std::size_t n = std::min(batch, sessions - done);
    client->call([&](peer::Peer& p, Instant now) {
      for (std::size_t k = 0; k < n; ++k) {
        auto sid = p.sessions().connect(session::Path{worker_ep, std::nullopt, 0}, worker_static, now);
        if (!sid) die("idle session: " + sid.error().message);
        cl->idle.insert(*sid);
      }
    });
    done += n;
    if (!wait_until(*client, [&](peer::Peer&, Instant) { return cl->idle_up + cl->idle_failed >= done; },
                    milliseconds(20000)))
      die("idle sessions: handshakes did not finish");
  }
  if (cl->idle_failed) die("idle sessions: " + std::to_string(cl->idle_failed) + " handshakes failed");
  std::this_thread::sleep_for(milliseconds(300));  // the first ACKs and MAX_DATA frames settle
  const long rss1 = rss_bytes(), heap1 = heap_bytes();
  struct Est {
    std::size_t host = 0, sessions = 0, conn = 0;
  };
  auto estimate = [](PeerService& svc, session::SessionId probe) {
    return svc.call([&](peer::Peer& p, Instant) {
      Est e{p.sessions().memory_estimate(), p.sessions().size(), 0};
      if (auto* c = p.sessions().connection(probe)) e.conn = c->memory_estimate();
      return e;
    });
  };
  const auto probe_sid = client->call([&](peer::Peer&, Instant) { return *cl->idle.begin(); });
  const auto est_c = estimate(*client, probe_sid);
  const auto worker_probe = worker->call([&](peer::Peer&, Instant) { return wk->last_accepted; });
  const auto est_w = estimate(*worker, worker_probe);
  // ---- throughput (the idle sessions stay open meanwhile: a worker with many clients) ----
  const bool last_direct = client->call([&](peer::Peer&, Instant) {
    auto it = cl->decided.find(last_sid);
    return it != cl->decided.end() && it->second.direct;
  });
  session::SessionId tsid = last_sid;
  if (!last_direct) {  // the punch did not open a direct path: a direct session, as the idle ones
    tsid = client->call([&](peer::Peer& p, Instant now) {
      auto sid = p.sessions().connect(session::Path{worker_ep, std::nullopt, 0}, worker_static, now);
      if (!sid) die("throughput session: " + sid.error().message);
      cl->idle.insert(*sid);
      return *sid;
    });
    if (!wait_until(*client, [&](peer::Peer& p, Instant) { return p.sessions().connection(tsid) != nullptr; },
                    milliseconds(5000)))
      die("throughput session: no handshake");
    wait_until(*worker, [&](peer::Peer& p, Instant) { return p.sessions().connection(wk->last_accepted); },
               milliseconds(5000));
    worker_sid = worker->call([&](peer::Peer&, Instant) { return wk->last_accepted; });
  }
  const auto tinfo = client->call([&](peer::Peer& p, Instant) { return p.sessions().info(tsid); });
  if (!tinfo || tinfo->path.relayed()) {
    const auto why = client->call([&](peer::Peer&, Instant) {
      auto it = cl->decided.find(tsid);
      return it == cl->decided.end() ? std::string("no punch outcome")
                                     : std::string(it->second.direct ? "punched " : "punch failed: ") +
                                           it->second.failure;
    });
    die("throughput session: not on a direct path (" + why + ")");
  }
  const auto bytes = static_cast<std::uint64_t>(mb * 1e6), lossy_bytes = static_cast<std::uint64_t>(lossy_mb * 1e6);
  std::vector<SinkResult> direct_runs, fwd0_runs, lossy_runs;
  for (std::size_t i = 0; i < tput_runs; ++i) direct_runs.push_back(sink_once(*client, *cl, *worker, *wk, tsid, bytes));
  client->call([&](peer::Peer& p, Instant now) {
    for (auto sid : cl->idle)
      if (sid != tsid) p.sessions().close(sid, 0, "done", now);
  });

  auto through = [&](double drop, std::uint64_t per_run, std::vector<SinkResult>& out) -> std::pair<std::uint64_t, std::uint64_t> {
    Forwarder fwd(tinfo->path.to, drop, seed);
    // The client's PING on the new path makes the worker roam to the forwarder. A packet of the
    // worker's still on its way on the direct path (a late ACK) pulls the client back: try again.
    bool moved = false;
    for (int tries = 0; tries < 10 && !moved; ++tries) {
      std::this_thread::sleep_for(milliseconds(50));
      client->call([&](peer::Peer& p, Instant now) {
        p.sessions().set_path(tsid, session::Path{fwd.endpoint(), std::nullopt, tinfo->path.socket}, now);
      });
      moved = wait_until(*worker, [&](peer::Peer& p, Instant) {
        auto i = p.sessions().info(worker_sid);
        return i && i->path.to == fwd.endpoint();
      }, milliseconds(500)) && client->call([&](peer::Peer& p, Instant) {
        auto i = p.sessions().info(tsid);
        return i && i->path.to == fwd.endpoint();
      });
    }
    if (!moved) {
      const auto wi = worker->call([&](peer::Peer& p, Instant) { return p.sessions().info(worker_sid); });
      die("forwarder " + fwd.endpoint().to_string() + ": the worker did not move to it (worker session " +
          std::to_string(worker_sid) + (wi ? " on " + wi->path.to.to_string() : " gone") + ", " +
          std::to_string(fwd.forwarded()) + " datagrams forwarded)");
    }
    for (std::size_t i = 0; i < tput_runs; ++i) out.push_back(sink_once(*client, *cl, *worker, *wk, tsid, per_run));
    const bool still = client->call([&](peer::Peer& p, Instant) {
      auto i = p.sessions().info(tsid);
      return i && i->path.to == fwd.endpoint();
    });
    if (!still) die("forwarder: the client left it during the run");
    // Back to the direct path before the forwarder goes.
    client->call([&](peer::Peer& p, Instant now) { p.sessions().set_path(tsid, tinfo->path, now); });
    wait_until(*worker, [&](peer::Peer& p, Instant) {
      auto i = p.sessions().info(worker_sid);
      return i && i->path.to != fwd.endpoint();
    }, milliseconds(2000));
    return {fwd.forwarded(), fwd.dropped()};
  };
  const auto f0 = through(0.0, lossy_bytes, fwd0_runs);
  const auto f1 = through(loss, lossy_bytes, lossy_runs);

  // ---- report ----
  std::vector<double> cms = connect_ms;
  std::sort(cms.begin(), cms.end());
  const double q_connect = median(connect_ms), q_hs = median(handshake_ms);
  std::printf("session_bench: bootstrap (DHT, rendezvous, relay), worker and client peers in one process, each a "
              "net::PeerService on its own libuv loop thread, UDP on 127.0.0.1\n");
  std::printf("  connect (lookup excluded, %zu runs): Peer::connect -> first byte echoed %.3f ms median (min %.3f, "
              "max %.3f); handshake HELLO -> WELCOME %.3f ms median; first byte relayed in %zu/%zu runs, punched "
              "direct in %zu/%zu\n",
              connect_ms.size(), q_connect, cms.front(), cms.back(), q_hs, relayed, connect_ms.size(), direct,
              connect_ms.size());
  print_sink("throughput, direct path (" + std::to_string(sessions) + " idle sessions open)", direct_runs, bytes);
  print_sink("throughput, forwarder, 0% loss", fwd0_runs, lossy_bytes);
  char lbl[64];
  std::snprintf(lbl, sizeof lbl, "throughput, forwarder, %.1f%% loss", loss * 100);
  print_sink(lbl, lossy_runs, lossy_bytes);
  std::printf("  %-34s: forwarded %llu / dropped %llu datagrams (0%% run), %llu / %llu (lossy run)\n", "forwarder",
              static_cast<unsigned long long>(f0.first), static_cast<unsigned long long>(f0.second),
              static_cast<unsigned long long>(f1.first), static_cast<unsigned long long>(f1.second));
  const double n = static_cast<double>(sessions);
  std::printf("  memory, %zu idle sessions         : RSS +%.1f KB per session (both ends live in this process: %.1f KB "
              "per end); malloc'd +%.1f KB per session\n",
              sessions, static_cast<double>(rss1 - rss0) / n / 1024, static_cast<double>(rss1 - rss0) / n / 2048,
              static_cast<double>(heap1 - heap0) / n / 1024);
  std::printf("  %-34s: SessionHost::memory_estimate() %.2f KB per session (client, %zu sessions), %.2f KB (worker, "
              "%zu); Connection::memory_estimate() of an idle session %.2f KB\n",
              "core's own estimate", static_cast<double>(est_c.host) / static_cast<double>(est_c.sessions) / 1024,
              est_c.sessions, static_cast<double>(est_w.host) / static_cast<double>(est_w.sessions) / 1024,
              est_w.sessions, static_cast<double>(est_c.conn) / 1024);
  std::fflush(stdout);
  client->stop();
  worker->stop();
  boot->stop();

  if (script.empty()) {
    std::printf("  hyperdht : skipped (no --hyperdht-script)\n");
    return 0;
  }
  const std::string cmd = "node '" + script + "' " + std::to_string(runs) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = p ? ::pclose(p) : -1;
  auto j = nlohmann::json::parse(out.substr(out.find('{') == std::string::npos ? 0 : out.find('{')), nullptr, false);
  if (rc != 0 || !j.is_object() || !j.contains("open")) {
    std::printf("  hyperdht : skipped (%s)\n", out.empty() ? "node did not run" : out.substr(0, out.find('\n')).c_str());
    return 0;
  }
  for (const char* kind : {"open", "firewalled"}) {
    const auto& h = j[kind];
    std::printf("  hyperdht, %-10s server: connect -> first byte echoed %.3f ms median (min %.3f, max %.3f); "
                "connect -> 'open' %.3f ms (%d runs)\n",
                kind, h.value("connect_ms", 0.0), h.value("connect_min_ms", 0.0), h.value("connect_max_ms", 0.0),
                h.value("open_ms", 0.0), h.value("runs", 0));
  }
  std::printf("  ratio qmesh/hyperdht connect: %.3f (open server), %.3f (firewalled server) (target <= 0.5)\n",
              q_connect / j["open"].value("connect_ms", 1.0), q_connect / j["firewalled"].value("connect_ms", 1.0));
  return 0;
}
