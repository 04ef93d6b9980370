// An ask: its request, the pick of a worker, the session and stream to it, failover to another
// worker, resume after a lost one, and waiting for a worker that is coming back.
#include "client_impl.hpp"

namespace qmesh {

// ---- the ask ----

namespace {

// A prompt that is not UTF-8 would reach the model with its bad bytes replaced: refuse it instead.
void check_utf8(std::string_view text, const char* what) {
  if (auto at = core::invalid_utf8_offset(text))
    throw Error("bad_request", std::string(what) + " is not valid UTF-8 (byte offset " + std::to_string(*at) + ")");
}

mesh::Request base_request(const AskOptions& o) {
  check_utf8(o.prompt, "the prompt");
  check_utf8(o.system, "the system message");
  for (const auto& m : o.messages) check_utf8(m.content, "a message");
  if (o.max_tokens < 1 || o.max_tokens > mesh::kMaxAskTokens)
    throw Error("bad_request", "max_tokens must be 1.." + std::to_string(mesh::kMaxAskTokens));
  if (o.temperature && !(*o.temperature >= 0 && *o.temperature <= 2))
    throw Error("bad_request", "temperature must be 0..2");
  if (o.top_p && !(*o.top_p >= 0 && *o.top_p <= 1)) throw Error("bad_request", "top_p must be 0..1");
  if (o.stop.size() > mesh::kMaxStops)
    throw Error("bad_request", "at most " + std::to_string(mesh::kMaxStops) + " stop strings");
  for (const auto& s : o.stop) {
    if (s.empty() || s.size() > mesh::kMaxStopBytes)
      throw Error("bad_request", "a stop string must be 1.." + std::to_string(mesh::kMaxStopBytes) + " bytes");
    check_utf8(s, "a stop string");
  }
  mesh::Request r;
  if (o.raw) {
    if (!o.messages.empty()) throw Error("bad_request", "a raw completion takes a prompt, not messages");
    r.prompt = o.prompt;
  } else {
    if (!o.system.empty()) r.messages.push_back({"system", o.system});
    for (const auto& m : o.messages) r.messages.push_back({m.role, m.content});
    if (!o.prompt.empty() || o.messages.empty()) r.messages.push_back({"user", o.prompt});
  }
  r.max_tokens = o.max_tokens;
  r.temperature = o.temperature;
  r.seed = o.seed;
  r.top_p = o.top_p;
  r.stop = o.stop;
  r.model = o.model;
  // The worker checks it again; checking here turns a bad ask into an error before any network.
  if (auto v = mesh::parse_request(mesh::to_json(r)); !v) throw Error("bad_request", v.error().message);
  return r;
}

// When every other worker is out of this ask, a worker that lost its llama-server and said it is
// coming back gets the ask again after its hint (bounded by the deadline): its index in `of`.
// Its record may say "not available" meanwhile; the worker itself waits for llama-server.
std::optional<std::size_t> wait_for_comeback(const std::vector<const dht::LookupRecord*>& of,
                                             std::map<dht::PublicKey, std::uint32_t>& coming_back,
                                             std::set<dht::PublicKey>& failed, Clock::time_point deadline,
                                             AskCancel& cancelled) {
  for (std::size_t i = 0; i < of.size(); ++i) {
    const auto key = of[i]->record.body.pubkey;
    auto it = coming_back.find(key);
    if (it == coming_back.end()) continue;
    const auto until = std::min(deadline, Clock::now() + milliseconds(it->second));
    if (cancelled.sleep_until(until)) throw Error("cancelled", "the ask was cancelled");
    coming_back.erase(it);
    failed.erase(key);
    return i;
  }
  return std::nullopt;
}

Error busy_error(std::uint32_t retry_ms) {
  return Error("busy", "all workers are busy; retry in " + std::to_string(retry_ms) + " ms", milliseconds(retry_ms));
}

// Every worker tried failed: "bad_request" when each refused the ask (an older worker refuses
// top_p and stop as unknown fields), else "workers_failed".
Error failed_error(std::size_t tried, int bad_requests, const std::string& last) {
  if (bad_requests > 0 && static_cast<std::size_t>(bad_requests) == tried) return Error("bad_request", last);
  return Error("workers_failed", "every worker tried failed (" + std::to_string(tried) + "); the last: " + last);
}

}  // namespace

AskResult Client::Impl::run_ask(const AskOptions& o, const std::function<void(std::string_view)>& emit,
                                AskCancel& cancelled) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + o.timeout;
  mesh::Request req = base_request(o);
  close_idle_sessions();
  AskResult res;
  std::set<dht::PublicKey> failed;  // workers that failed this ask
  // Workers that lost their llama-server in this ask and said when to retry: the supervisor is
  // bringing it back. Tried again, after the hint, when no other worker is left.
  std::map<dht::PublicKey, std::uint32_t> coming_back;
  std::optional<Clock::time_point> first_token;
  std::string last_error = "no worker could be reached";
  std::string last_kind = "network";
  std::string resume_root;  // the content root of the model the ask went to last
  bool saw_busy = false;
  int bad_requests = 0;
  std::uint32_t busy_retry_ms = 0;
  for (int attempt = 0; attempt < std::max(1, o.max_attempts); ++attempt) {
    if (cancelled) throw Error("cancelled", "the ask was cancelled");
    if (Clock::now() >= deadline) throw Error("timeout", "no answer within " + std::to_string(o.timeout.count()) + " ms");
    // After a failure, look again: the failed worker may be gone and others may have come.
    const auto recs = attempt == 0 ? lookup(kLookupFresh, deadline, &cancelled.flag, kLookupUsable)
                                   : lookup(milliseconds(500), deadline, &cancelled.flag);
    const auto rtt = rtts();
    // An answer begun on one model goes on with that model, whatever the ask named.
    const std::string query = res.text.empty() ? o.model : resume_root;
    std::vector<mesh::Candidate> cands;
    std::vector<const dht::LookupRecord*> of;
    std::size_t busy_now = 0, usable = 0, have_model = 0;
    {
      std::lock_guard lk(mu);
      for (const auto& r : recs) {
        auto w = mesh::decode_worker_record(r.record.body.payload);
        if (!w) continue;
        const auto& key = r.record.body.pubkey;
        const bool busy = busy_until.count(key) && busy_until[key] > Clock::now();
        if (busy) ++busy_now;
        if (mesh::model_matches(*w, query)) ++have_model;
        if (w->available && mesh::model_matches(*w, query)) ++usable;
        auto it = rtt.find(key);
        mesh::Candidate c{*w, it != rtt.end() ? std::optional(it->second) : std::nullopt, busy || failed.count(key) > 0, std::nullopt};
        c.measured_tps = measured_tps(key);
        cands.push_back(std::move(c));
        of.push_back(&r);
      }
    }
    if (const auto n = attempt == 0 ? mesh::roots_with_prefix(cands, o.model) : 0; n > 1)
      throw Error("bad_request", "model " + o.model + " is ambiguous: " + std::to_string(n) +
                                     " content roots begin with it; give more digits");
    auto pick = [&] {
      mesh::SelectConfig sc;
      sc.ask_tokens = std::max(1, req.max_tokens - static_cast<int>(res.tokens));  // what is left to generate
      std::lock_guard lk(mu);
      return mesh::select_worker(cands, query, *rng, sc);
    }();

    if (!pick) pick = wait_for_comeback(of, coming_back, failed, deadline, cancelled);
    if (!pick) {
      if (recs.empty()) throw Error("no_workers", "no worker announces '" + opts.topic + "'");
      if (have_model == 0 && !o.model.empty())
        throw Error("unknown_model", "no workers serve " + o.model + " (on '" + opts.topic + "')");
      if (usable == 0)
        throw Error("no_workers", o.model.empty() ? "no worker of '" + opts.topic + "' is ready"
                                                  : "no ready worker serves model '" + o.model + "'");
      if (busy_now > 0 && attempt + 1 < o.max_attempts) {
        // Every worker said busy: wait for the earliest retry hint (with jitter, so that clients
        // turned away together do not return together), then look again.
        Clock::time_point until;
        {
          std::lock_guard lk(mu);
          until = Clock::time_point::max();
          for (const auto& [k, t] : busy_until)
            if (t > Clock::now()) until = std::min(until, t);
          if (until == Clock::time_point::max()) until = Clock::now();  // every hint ran out meanwhile
          const auto wait = until - Clock::now();
          until = Clock::now() + std::chrono::duration_cast<Clock::duration>(wait * (0.75 + 0.5 * rng->uniform()));
        }
        if (until >= deadline) throw busy_error(busy_retry_ms);
        if (cancelled.sleep_until(until)) throw Error("cancelled", "the ask was cancelled");
        continue;
      }
      if (saw_busy || busy_now > 0) throw busy_error(std::max<std::uint32_t>(busy_retry_ms, 50));
      // Every usable worker failed this ask already.
      throw failed_error(res.workers_tried.size(), bad_requests, last_error);
    }
    const auto& rec = *of[*pick];
    // A worker coming back (wait_for_comeback) may announce no matching model while it restarts:
    // it is asked for the model the ask had, by the root already chosen or the ask's own query.
    std::string announced_model;
    if (const auto at = mesh::model_for(cands[*pick].record, query)) {
      const auto& chosen = cands[*pick].record.models[*at];
      announced_model = chosen.name;
      resume_root = core::to_hex(chosen.root);
    }
    const auto key = rec.record.body.pubkey;
    const auto wid = core::to_hex(key);
    if (!res.workers_tried.empty()) ++res.retries;
    res.workers_tried.push_back(wid);
    if (!res.text.empty()) res.resumed = true;
    session::SessionId sid = 0;
    try {
      // A worker that does not answer in a few seconds is likely gone (its record outlives it by
      // up to a minute): try the next one rather than wait the whole connect timeout.
      const auto limit = cands.size() > 1 ? milliseconds(3000) : opts.join_timeout;
      sid = session_for(rec, std::min(deadline, Clock::now() + limit), cancelled.flag, &res.handshake_ms);
    } catch (const Error& e) {
      if (e.kind() == "cancelled") throw;
      failed.insert(key);
      last_error = e.what();
      last_kind = "network";
      continue;
    }
    mesh::Request r = req;
    r.model = resume_root.empty() ? o.model : resume_root;  // by root: the model the record says
    r.resume = res.text;
    r.max_tokens = req.max_tokens - static_cast<int>(res.tokens);
    if (r.max_tokens <= 0) break;  // the earlier worker gave every token asked for
    if (!r.resume.empty() && mesh::to_json(r).size() > mesh::kMaxRequestBytes)
      throw Error("workers_failed", last_error + "; the prompt and the answer so far are too long to resume on another worker");
    stream::StreamId id = 0;
    std::shared_ptr<Channel> ch;
    try {
      std::tie(id, ch) = send_request(sid, r);
    } catch (const Error& e) {
      failed.insert(key);
      last_error = e.what();
      continue;
    }
    InFlight flight(*this, key, sid, id);
    cancelled.watch(ch);  // a cancel wakes the wait for the answer below
    struct Unwatch {
      AskCancel& c;
      ~Unwatch() { c.watch(nullptr); }  // what is left unread goes with the channel
    } unwatch{cancelled};
    // A worker may not send more than was asked (a little slack for how llama-server counts).
    const std::uint64_t max_tokens = static_cast<std::uint64_t>(req.max_tokens) + 8;
    const std::size_t max_text = static_cast<std::size_t>(max_tokens) * 1024;
    bool retry = false;
    std::optional<Clock::time_point> attempt_first;  // this worker's first token
    std::size_t attempt_tokens = 0;
    while (!retry) {
      if (cancelled) throw Error("cancelled", "the ask was cancelled");
      if (Clock::now() >= deadline) throw Error("timeout", "no answer within " + std::to_string(o.timeout.count()) + " ms");
      auto a = ch->pop(deadline);
      if (!a) continue;
      if (!a->frame) {  // the stream ended without DONE or ERROR: the worker is lost
        failed.insert(key);
        last_error = "worker " + wid.substr(0, 12) + ": " + a->ended;
        last_kind = "network";
        retry = true;
        break;
      }
      const auto& f = *a->frame;
      if (f.type == mesh::FrameType::Token) {
        if (res.tokens + 1 > max_tokens || res.text.size() + f.body.size() > max_text) {
          failed.insert(key);
          last_error = "worker " + wid.substr(0, 12) + " sent more than was asked";
          last_kind = "network";
          retry = true;
          break;
        }
        if (!first_token) first_token = Clock::now();
        if (!attempt_first) attempt_first = Clock::now();
        ++attempt_tokens;
        res.text += f.body;
        ++res.tokens;
        if (emit) emit(f.body);
      } else if (f.type == mesh::FrameType::Done) {
        flight.whole = true;
        auto d = mesh::parse_done(f.body);
        res.stop_reason = d ? d->stop_reason : "";
        res.worker_ttft_ms = d ? d->ttft_ms : 0;
        res.load_ms = d ? d->load_ms : 0;
        res.tier = d && d->tier ? std::string(core::trust::to_string(*d->tier)) : "";
        res.prompt_tokens = d ? d->prompt_tokens : 0;
        res.model = d && !d->model.empty() ? d->model : announced_model;  // an older worker does not say
        res.worker = wid;
        const auto end = Clock::now();
        res.total_ms = ms_since(t0, end);
        res.ttft_ms = first_token ? ms_since(t0, *first_token) : res.total_ms;
        const double gen_ms = first_token ? ms_since(*first_token, end) : 0;
        res.tokens_per_second = gen_ms > 0 && res.tokens > 1 ? (res.tokens - 1) * 1000.0 / gen_ms : 0;
        note_speed(key, attempt_first, attempt_tokens, end);
        return res;
      } else if (f.type == mesh::FrameType::Error) {
        flight.whole = true;
        auto e = mesh::parse_error_reply(f.body);
        const std::string kind = e ? e->kind : "internal";
        const std::string msg = e ? e->message : "malformed error from the worker";
        // The client checked the request already, so one worker's "bad request" may be its own
        // limit (a smaller context): a second worker decides.
        if (kind == "bad_request" && ++bad_requests >= 2) throw Error("bad_request", msg);
        if (kind == "worker_lost" && e && e->retry_after_ms > 0) coming_back[key] = e->retry_after_ms;
        if (kind == "busy") {
          saw_busy = true;
          busy_retry_ms = std::max(busy_retry_ms, e ? e->retry_after_ms : 1000u);
          std::lock_guard lk(mu);
          busy_until[key] = Clock::now() + milliseconds(e ? e->retry_after_ms : 1000);
        } else {
          failed.insert(key);
        }
        last_error = "worker " + wid.substr(0, 12) + ": " + msg;
        last_kind = kind == "busy" || kind == "bad_request" ? kind : "network";
        retry = true;
      } else {
        failed.insert(key);
        last_error = "worker " + wid.substr(0, 12) + " sent an unexpected frame";
        retry = true;
      }
    }
  }
  if (res.tokens > 0 && req.max_tokens - static_cast<int>(res.tokens) <= 0) {
    res.stop_reason = "limit";
    res.worker = res.workers_tried.empty() ? "" : res.workers_tried.back();
    res.total_ms = ms_since(t0);
    res.ttft_ms = first_token ? ms_since(t0, *first_token) : res.total_ms;
    return res;
  }
  if (saw_busy && last_kind == "busy") throw busy_error(std::max<std::uint32_t>(busy_retry_ms, 1000));
  throw failed_error(res.workers_tried.size(), bad_requests, last_error);
}

}  // namespace qmesh
