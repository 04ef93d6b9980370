#include "core/model/fetch.hpp"

#include <algorithm>
#include <cmath>

#include "core/base/hex.hpp"

namespace qmesh::core::model {
namespace {

constexpr std::size_t kRateSamples = 8;

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
std::string whole_seconds(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

}  // namespace

Fetch::Fetch(ContentRoot root, std::vector<bool> have, FetchConfig config, Instant now)
    : root_(root), cfg_(config), start_(now) {
  cfg_.max_inflight = std::clamp<std::uint16_t>(cfg_.max_inflight, 1, kMaxInflight);
  cfg_.initial_window = std::clamp<std::uint16_t>(cfg_.initial_window, 1, cfg_.max_inflight);
  cfg_.endgame_copies = std::clamp<std::size_t>(cfg_.endgame_copies, 1, 8);
  if (root_.size > kMaxModelBytes) {  // a root no one may serve (bounds the bitmap below)
    fail("the file is larger than 1 TiB");
    return;
  }
  const std::uint64_t n = root_.chunks();
  have_.assign(n, false);
  copies_.assign(n, 0);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i < have.size() && have[i]) {
      have_[i] = true;
      ++verified_;
      resumed_bytes_ += root_.chunk_size(i);
    }
  }
  verified_bytes_ = resumed_bytes_;
  if (verified_ == n) {
    actions_.push_back(FetchDone{});
    finished_ = true;
    return;
  }
  update_timers(now);
}

void Fetch::add_holder(HolderId id, std::string label, Instant now) {
  if (finished_ || holders_.count(id)) return;
  Holder& h = holders_[id];
  h.label = std::move(label);
  h.last_heard = now;
  actions_.push_back(SendOpen{id});
  update_timers(now);
}

void Fetch::on_frame(HolderId id, TransferFrame frame, Instant now) {
  auto it = holders_.find(id);
  if (finished_ || it == holders_.end() || !live(it->second)) return;  // late frames of a dropped one
  Holder& h = it->second;
  if (auto* info = std::get_if<Info>(&frame)) {
    if (h.state != HolderState::Opening) {
      drop(id, "sent INFO twice", true);
    } else {
      on_info(id, h, *info, now);
    }
  } else if (auto* c = std::get_if<Chunk>(&frame)) {
    if (h.state == HolderState::Opening) {
      drop(id, "sent a chunk before INFO", true);
    } else if (h.cancelled.erase(c->index)) {  // begun before our CANCEL came: not used
      wasted_ += c->data.size();
      h.last_heard = now;
    } else if (!h.outstanding.count(c->index)) {
      drop(id, "sent chunk " + std::to_string(c->index) + " it was not asked for", true);
    } else {
      on_chunk(id, h, std::move(*c), now);
    }
  } else if (auto* b = std::get_if<Busy>(&frame)) {
    if (b->index == kNoIndex || !h.cancelled.erase(b->index)) on_busy(id, h, *b, now);
  } else if (auto* e = std::get_if<TransferErrorMsg>(&frame)) {
    h.not_held = e->code == TransferError::NotHeld;
    drop(id, h.not_held ? "does not have it" : std::string("answered ") + to_string(e->code) + ": " + e->text, true);
  } else {
    drop(id, "sent a getter's frame", true);
  }
  schedule(now);
  update_timers(now);
}

void Fetch::on_info(HolderId id, Holder& h, const Info& info, Instant now) {
  if (info.size != root_.size || info.chunks != root_.chunks()) {
    drop(id, "says the file is " + std::to_string(info.size) + " bytes, not " + std::to_string(root_.size), true);
    return;
  }
  h.state = HolderState::Ready;
  h.cap = std::clamp<std::size_t>(info.max_inflight, 1, cfg_.max_inflight);
  h.window = std::min<std::size_t>(cfg_.initial_window, h.cap);
  h.last_heard = now;
}

void Fetch::on_chunk(HolderId id, Holder& h, Chunk&& c, Instant now) {
  const Instant sent = h.outstanding.at(c.index);
  h.outstanding.erase(c.index);
  release(c.index);
  h.last_heard = now;
  if (c.data.size() != root_.chunk_size(c.index) || !verify_chunk(root_, c.index, c.data, c.proof)) {
    wasted_ += c.data.size();
    drop(id, "sent chunk " + std::to_string(c.index) + " that fails its proof", true);
    return;
  }
  measure(h, sent, c.data.size(), now);
  if (have_[c.index]) {  // the endgame's second copy
    wasted_ += c.data.size();
    return;
  }
  have_[c.index] = true;
  requeued_.erase(c.index);
  cancel_copies(id, c.index);
  ++verified_;
  verified_bytes_ += c.data.size();
  ++h.chunks;
  h.bytes += c.data.size();
  recent_.emplace_back(now, static_cast<std::uint32_t>(c.data.size()));
  while (!recent_.empty() && recent_.front().first + cfg_.rate_window <= now) recent_.pop_front();
  actions_.push_back(WriteChunk{c.index, std::move(c.data)});
  if (verified_ == root_.chunks()) {
    actions_.push_back(FetchDone{});
    finished_ = true;
    timers_.stop_all();
  }
}

// A delivery-rate sample per chunk (its bytes over the time since the later of its GET and the
// previous arrival), the rate the largest of the last few, the window gain x rate x least latency.
void Fetch::measure(Holder& h, Instant sent, std::size_t bytes, Instant now) {
  const Instant from = h.arrived ? std::max(sent, h.last_arrival) : sent;
  const double span = std::max(seconds(now - from), 1e-6);
  h.rate_samples.push_back(static_cast<double>(bytes) / span);
  if (h.rate_samples.size() > kRateSamples) h.rate_samples.pop_front();
  h.rate = *std::max_element(h.rate_samples.begin(), h.rate_samples.end());
  h.arrived = true;
  h.last_arrival = now;
  h.least_latency = std::min(h.least_latency, now - sent);
  const double want = std::ceil(cfg_.window_gain * h.rate * seconds(h.least_latency) / kChunkBytes);
  h.window = static_cast<std::size_t>(std::clamp(want, 1.0, static_cast<double>(h.cap)));
}

void Fetch::on_busy(HolderId id, Holder& h, const Busy& b, Instant now) {
  const Duration wait = std::min<Duration>(std::chrono::milliseconds(b.retry_ms), cfg_.max_busy_wait);
  if (b.index != kNoIndex) {
    if (!h.outstanding.count(b.index)) {
      drop(id, "sent BUSY for chunk " + std::to_string(b.index) + " it was not asked for", true);
      return;
    }
    h.outstanding.erase(b.index);
    release(b.index);
    h.window = std::max<std::size_t>(1, h.window / 2);
  }
  if (h.state == HolderState::Opening) h.reopen = true;  // no upload slot: OPEN again after the wait
  h.state = HolderState::Paused;
  h.paused_until = now + wait;
  h.last_heard = now;
}

void Fetch::on_holder_lost(HolderId id, Instant now) {
  auto it = holders_.find(id);
  if (finished_ || it == holders_.end() || !live(it->second)) return;
  drop(id, "its stream ended", false);
  schedule(now);
  update_timers(now);
}

void Fetch::on_holder_error(HolderId id, const std::string& why, Instant now) {
  auto it = holders_.find(id);
  if (finished_ || it == holders_.end() || !live(it->second)) return;
  drop(id, "sent a malformed frame: " + why, true);
  schedule(now);
  update_timers(now);
}

void Fetch::on_search_done(Instant now) {
  search_done_ = true;
  update_timers(now);
}

Duration Fetch::silence_limit(const Holder& h) const {
  if (h.rate <= 0) return cfg_.silence_timeout;
  const auto per = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(4.0 * kChunkBytes / h.rate));
  return std::max(cfg_.silence_timeout, per);
}

void Fetch::on_tick(Instant now) {
  if (finished_) return;
  for (auto& [id, h] : holders_) {
    if (!live(h)) continue;
    if (h.state == HolderState::Opening && now >= h.last_heard + cfg_.open_timeout) {
      drop(id, "did not answer OPEN within " + whole_seconds(cfg_.open_timeout), true);
    } else if (!h.outstanding.empty() && now >= h.last_heard + silence_limit(h)) {
      drop(id, "sent nothing for " + whole_seconds(now - h.last_heard) + " with " +
                   std::to_string(h.outstanding.size()) + " chunks asked", true);
    } else if (h.state == HolderState::Paused && now >= h.paused_until) {
      h.state = h.reopen ? HolderState::Opening : HolderState::Ready;
      h.last_heard = now;
      if (h.reopen) actions_.push_back(SendOpen{id});
      h.reopen = false;
    }
  }
  if (timers_.due(Timer::NoHolder, now)) {
    fail(failure_summary());
    return;
  }
  schedule(now);
  update_timers(now);
}

void Fetch::drop(HolderId id, std::string reason, bool tell) {
  Holder& h = holders_.at(id);
  h.state = HolderState::Dropped;
  h.failure = std::move(reason);
  for (const auto& [index, sent] : h.outstanding) release(index);
  h.outstanding.clear();
  h.cancelled.clear();
  if (tell) actions_.push_back(DropHolder{id, h.failure});
}

void Fetch::release(std::uint64_t index) {
  if (copies_[index] > 0) --copies_[index];
  if (copies_[index] == 0 && !have_[index]) requeued_.insert(index);
}

// The endgame's other GETs of a chunk just verified are taken back: each holder frees the GET's
// place at once (its CANCEL comes before any later GET on the stream), so the window counts stay
// the same on both ends.
void Fetch::cancel_copies(HolderId verified_by, std::uint64_t index) {
  if (copies_[index] == 0) return;
  for (auto& [other, h] : holders_) {
    if (other == verified_by || !live(h) || !h.outstanding.erase(index)) continue;
    release(index);
    h.cancelled.insert(index);
    ++cancels_;
    actions_.push_back(SendCancel{other, index});
  }
}

// The chunk outstanding longest elsewhere that `id` has not been asked for and that fewer than
// endgame_copies holders have been asked for.
std::optional<std::uint64_t> Fetch::endgame_pick(HolderId id) const {
  const Holder& me = holders_.at(id);
  std::optional<std::uint64_t> best;
  Instant best_sent = Instant::max();
  for (const auto& [other, h] : holders_) {
    if (other == id) continue;
    for (const auto& [index, sent] : h.outstanding) {
      if (have_[index] || copies_[index] >= cfg_.endgame_copies || me.outstanding.count(index)) continue;
      if (sent < best_sent) {
        best = index;
        best_sent = sent;
      }
    }
  }
  return best;
}

// The lowest chunk missing and asked of nobody.
std::optional<std::uint64_t> Fetch::take_next() {
  while (fresh_ < have_.size() && have_[fresh_]) ++fresh_;
  if (!requeued_.empty() && (fresh_ >= have_.size() || *requeued_.begin() < fresh_)) {
    const std::uint64_t i = *requeued_.begin();
    requeued_.erase(requeued_.begin());
    return i;
  }
  if (fresh_ >= have_.size()) return std::nullopt;
  return fresh_++;
}

void Fetch::schedule(Instant now) {
  if (finished_) return;
  std::set<HolderId> full;  // ready with room, but nothing left it could be asked
  for (;;) {
    HolderId pick = 0;
    Holder* best = nullptr;
    for (auto& [id, h] : holders_) {
      if (h.state != HolderState::Ready || h.outstanding.size() >= h.window || full.count(id)) continue;
      if (!best || h.rate > best->rate) {
        best = &h;
        pick = id;
      }
    }
    if (!best) return;
    std::uint64_t index = 0;
    if (auto next = take_next()) {
      index = *next;
    } else if (auto e = endgame_pick(pick)) {
      index = *e;
    } else {
      full.insert(pick);
      continue;
    }
    if (best->outstanding.empty()) best->last_heard = now;  // the silence clock starts now
    best->outstanding.emplace(index, now);
    ++copies_[index];
    ++best->gets;
    actions_.push_back(SendGet{pick, index});
  }
}

void Fetch::update_timers(Instant now) {
  if (finished_) return;
  Instant silence = Instant::max(), retry = Instant::max();
  bool any_live = false;
  for (const auto& [id, h] : holders_) {
    if (!live(h)) continue;
    any_live = true;
    if (h.state == HolderState::Opening) silence = std::min(silence, h.last_heard + cfg_.open_timeout);
    if (!h.outstanding.empty()) silence = std::min(silence, h.last_heard + silence_limit(h));
    if (h.state == HolderState::Paused) retry = std::min(retry, h.paused_until);
  }
  timers_.set(Timer::Silence, silence);
  timers_.set(Timer::Retry, retry);
  if (any_live) {
    timers_.stop(Timer::NoHolder);
  } else if (search_done_) {
    fail(failure_summary());
  } else if (!timers_.armed(Timer::NoHolder)) {
    timers_.set(Timer::NoHolder, now + cfg_.no_holder_timeout);
  }
}

void Fetch::fail(std::string reason) {
  if (finished_) return;
  actions_.push_back(FetchFailed{std::move(reason)});
  finished_ = true;
  timers_.stop_all();
}

std::string Fetch::failure_summary() const {
  const std::string no_one = "no holder has " + to_hex(root_.hash);
  std::string list;
  std::size_t listed = 0, failed = 0;
  for (const auto& [id, h] : holders_) {
    if (h.not_held) continue;
    ++failed;
    if (listed < 4) {
      list += (listed ? "; " : "") + h.label + ": " + h.failure;
      ++listed;
    }
  }
  if (failed == 0) return no_one;
  if (failed > listed) list += "; and " + std::to_string(failed - listed) + " more";
  return "every holder failed: " + list;
}

std::optional<FetchAction> Fetch::next_action() {
  if (actions_.empty()) return std::nullopt;
  FetchAction a = std::move(actions_.front());
  actions_.pop_front();
  return a;
}

Instant Fetch::next_wakeup() const { return finished_ ? Instant::max() : timers_.next(); }

FetchProgress Fetch::progress(Instant now) const {
  FetchProgress p;
  p.bytes_total = root_.size;
  p.bytes_verified = verified_bytes_;
  p.bytes_resumed = resumed_bytes_;
  p.bytes_wasted = wasted_;
  p.cancels = cancels_;
  p.chunks_total = root_.chunks();
  p.chunks_verified = verified_;
  std::uint64_t recent = 0;
  for (const auto& [at, bytes] : recent_) {
    if (at + cfg_.rate_window > now) recent += bytes;
  }
  const double span = seconds(std::min(cfg_.rate_window, now - start_));
  p.bytes_per_second = span > 0 ? static_cast<double>(recent) / span : 0;
  for (const auto& [id, h] : holders_) {
    if (h.state == HolderState::Ready || (h.state == HolderState::Paused && !h.reopen)) ++p.holders_in_use;
    if (h.state == HolderState::Dropped) ++p.holders_dropped;
  }
  return p;
}

std::optional<HolderStats> Fetch::holder(HolderId id) const {
  auto it = holders_.find(id);
  if (it == holders_.end()) return std::nullopt;
  const Holder& h = it->second;
  return HolderStats{h.label, h.state, h.chunks, h.bytes, h.gets, h.rate, h.window, h.outstanding.size(), h.failure};
}

}  // namespace qmesh::core::model
