#include "core/model/share.hpp"

#include <algorithm>
#include <cmath>

namespace qmesh::core::model {
namespace {

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
Duration from_seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s)) + Duration(1);  // round up
}

}  // namespace

Share::Share(ShareConfig config, Instant now) : cfg_(config), refilled_(now) {
  cfg_.burst = std::max<std::uint64_t>(cfg_.burst, kChunkBytes);
  tokens_ = static_cast<double>(cfg_.burst);
}

void Share::add_model(const ContentRoot& root) { models_[root.hash] = root; }

void Share::remove_model(const Hash& root, Instant now) {
  models_.erase(root);
  for (auto& [id, s] : streams_) {
    if (s.slot && s.root.hash == root) refuse(id, TransferError::Unavailable, "no longer shared here");
  }
  pump(now);
  update_timers(now);
}

void Share::on_frame(StreamId id, TransferFrame frame, Instant now) {
  Stream& s = streams_[id];
  if (s.closed) return;
  if (auto* open = std::get_if<Open>(&frame)) {
    on_open(id, s, *open, now);
  } else if (auto* get = std::get_if<Get>(&frame)) {
    on_get(id, s, *get, now);
  } else if (auto* cancel = std::get_if<Cancel>(&frame)) {
    on_cancel(id, s, *cancel);
  } else {
    refuse(id, TransferError::BadRequest, "a holder's frame from the getter");
  }
  update_timers(now);
}

void Share::on_open(StreamId id, Stream& s, const Open& m, Instant now) {
  if (s.slot) {
    refuse(id, TransferError::BadRequest, "a second OPEN on one stream");
    return;
  }
  ++counters_.opens;
  auto it = models_.find(m.root);
  if (it == models_.end() || it->second.size != m.size) {
    ++counters_.not_held;
    refuse(id, TransferError::NotHeld, "not shared here");
    return;
  }
  auto session = sessions_.find(id.session);
  if (session != sessions_.end() && session->second >= cfg_.max_streams_per_session) {
    refuse(id, TransferError::TooMany, "more than " + std::to_string(cfg_.max_streams_per_session) +
                                           " transfer streams in one session");
    return;
  }
  if (session == sessions_.end() && sessions_.size() >= cfg_.max_uploads) {
    ++counters_.opens_busy;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.busy_retry).count();
    actions_.push_back(ShareSend{id, encode(Busy{kNoIndex, static_cast<std::uint32_t>(std::clamp<std::int64_t>(ms, 1, kMaxRetryMs))})});
    return;
  }
  s.slot = true;
  ++sessions_[id.session];
  s.root = it->second;
  s.last_active = now;
  actions_.push_back(ShareSend{id, encode(info_for(s.root))});
}

void Share::on_get(StreamId id, Stream& s, const Get& m, Instant now) {
  if (!s.slot) {
    ++counters_.gets_refused;
    refuse(id, TransferError::BadRequest, "GET before an accepted OPEN");
    return;
  }
  if (m.index >= s.root.chunks()) {
    ++counters_.gets_refused;
    refuse(id, TransferError::BadIndex, "chunk " + std::to_string(m.index) + " is beyond the end (" +
                                            std::to_string(s.root.chunks()) + " chunks)");
    return;
  }
  if (s.asked.size() >= kMaxInflight) {
    ++counters_.gets_refused;
    refuse(id, TransferError::TooMany, "more than " + std::to_string(kMaxInflight) + " GETs unanswered");
    return;
  }
  const std::uint32_t bytes = s.root.chunk_size(m.index);
  s.last_active = now;
  if (cfg_.rate > 0) {
    refill(now);
    const double wait = (static_cast<double>(pending_bytes_) + bytes - tokens_) / static_cast<double>(cfg_.rate);
    const double over = wait - seconds(cfg_.max_queue_wait);
    if (over > 0) {
      ++counters_.gets_busy;
      const double ms = std::clamp(std::ceil(over * 1000), 100.0, static_cast<double>(kMaxRetryMs));
      actions_.push_back(ShareSend{id, encode(Busy{m.index, static_cast<std::uint32_t>(ms)})});
      return;
    }
  }
  s.asked.insert(m.index);
  pending_.push_back(Pending{id, m.index, bytes});
  pending_bytes_ += bytes;
  pump(now);
}

// Takes a GET back: waiting for the rate, it is dropped here; handed out, the caller is asked to
// drop its read. Either way it no longer counts as unanswered.
void Share::on_cancel(StreamId id, Stream& s, const Cancel& m) {
  ++counters_.cancels;
  auto it = s.asked.find(m.index);
  if (!s.slot || it == s.asked.end()) {
    ++counters_.cancels_ignored;
    return;
  }
  s.asked.erase(it);
  auto queued = std::find_if(pending_.begin(), pending_.end(),
                             [&](const Pending& p) { return p.stream == id && p.index == m.index; });
  if (queued != pending_.end()) {
    pending_bytes_ -= queued->bytes;
    pending_.erase(queued);
    ++counters_.cancels_dropped;
    return;
  }
  s.withdrawn.insert(m.index);
  actions_.push_back(ShareCancel{id, m.index});
}

void Share::refuse(StreamId id, TransferError code, const std::string& text) {
  Stream& s = streams_[id];
  actions_.push_back(ShareSend{id, encode(TransferErrorMsg{code, text})});
  actions_.push_back(ShareClose{id, std::string(to_string(code)) + ": " + text});
  s.closed = true;
  free_slot(id, s);
  s.asked.clear();
  s.withdrawn.clear();
  std::erase_if(pending_, [&](const Pending& p) {
    if (p.stream != id) return false;
    pending_bytes_ -= p.bytes;
    return true;
  });
}

void Share::free_slot(StreamId id, Stream& s) {
  if (!s.slot) return;
  s.slot = false;
  auto it = sessions_.find(id.session);
  if (it != sessions_.end() && --it->second == 0) sessions_.erase(it);
}

void Share::on_stream_error(StreamId id, const std::string& why, Instant now) {
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second.closed) return;
  refuse(id, TransferError::BadRequest, "malformed: " + why);
  update_timers(now);
}

void Share::on_chunk_written(StreamId id, std::uint64_t index, Instant now) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.closed) return;
  Stream& s = it->second;
  if (auto w = s.withdrawn.find(index); w != s.withdrawn.end()) {
    s.withdrawn.erase(w);  // cancelled too late: its place was freed at the CANCEL
  } else if (auto a = s.asked.find(index); a != s.asked.end()) {
    s.asked.erase(a);
  }
  s.last_active = now;
  update_timers(now);
}

void Share::on_serve_dropped(StreamId id, std::uint64_t index, Instant now) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  auto w = it->second.withdrawn.find(index);
  if (w == it->second.withdrawn.end()) return;
  it->second.withdrawn.erase(w);
  ++counters_.cancels_dropped;
  if (counters_.chunks_served > 0) --counters_.chunks_served;
  const std::uint64_t bytes = it->second.root.chunk_size(index);
  counters_.bytes_served -= std::min(counters_.bytes_served, bytes);
  it->second.last_active = now;
  update_timers(now);
}

void Share::on_stream_closed(StreamId id, Instant now) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  if (!it->second.closed) {
    std::erase_if(pending_, [&](const Pending& p) {
      if (p.stream != id) return false;
      pending_bytes_ -= p.bytes;
      return true;
    });
    free_slot(id, it->second);
  }
  streams_.erase(it);
  pump(now);
  update_timers(now);
}

void Share::on_tick(Instant now) {
  for (auto& [id, s] : streams_) {
    if (s.slot && s.asked.empty() && now >= s.last_active + cfg_.idle_timeout)
      refuse(id, TransferError::Idle, "no GET for " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(cfg_.idle_timeout).count()) + " s");
  }
  pump(now);
  update_timers(now);
}

void Share::refill(Instant now) {
  if (cfg_.rate == 0 || now <= refilled_) return;
  tokens_ = std::min(static_cast<double>(cfg_.burst), tokens_ + static_cast<double>(cfg_.rate) * seconds(now - refilled_));
  refilled_ = now;
}

// Serves the waiting GETs the bucket pays for, in arrival order.
void Share::pump(Instant now) {
  refill(now);
  while (!pending_.empty()) {
    const Pending p = pending_.front();
    if (cfg_.rate > 0) {
      if (tokens_ < p.bytes) break;
      tokens_ -= p.bytes;
    }
    pending_.pop_front();
    pending_bytes_ -= p.bytes;
    ++counters_.chunks_served;
    counters_.bytes_served += p.bytes;
    actions_.push_back(ShareServe{p.stream, streams_.at(p.stream).root, p.index});
  }
}

void Share::update_timers(Instant) {
  if (!pending_.empty() && cfg_.rate > 0) {
    const double need = std::max(0.0, pending_.front().bytes - tokens_);
    timers_.set(Timer::Rate, refilled_ + from_seconds(need / static_cast<double>(cfg_.rate)));
  } else {
    timers_.stop(Timer::Rate);
  }
  Instant idle = Instant::max();
  for (const auto& [id, s] : streams_) {
    if (s.slot && s.asked.empty()) idle = std::min(idle, s.last_active + cfg_.idle_timeout);
  }
  timers_.set(Timer::Idle, idle);
}

std::optional<ShareAction> Share::next_action() {
  if (actions_.empty()) return std::nullopt;
  ShareAction a = std::move(actions_.front());
  actions_.pop_front();
  return a;
}

}  // namespace qmesh::core::model
