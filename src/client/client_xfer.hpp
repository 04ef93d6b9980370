// libqmesh-client's insides, private to src/client (client_impl.hpp includes it): what a model
// download's transfer streams (client_model.cpp) hand from the loop thread to the download's thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "core/model/transfer_frame.hpp"
#include "core/session/host.hpp"
#include "core/stream/frame.hpp"

namespace qmesh {

namespace session = core::session;
namespace stream = core::stream;
using Clock = std::chrono::steady_clock;

// ---- a model download's streams (client_model.cpp) ----

// What the loop thread (and the download's helper thread) tell the download's thread.
struct XferEvent {
  enum Kind { Added, Frame, Ended, Bad } kind = Frame;
  std::uint64_t holder = 0;
  std::optional<core::model::TransferFrame> frame;  // Frame
  std::string text;                                 // Added: the holder's label; Ended, Bad: why
  session::SessionId sid = 0;                       // Added
  stream::StreamId stream = 0;                      // Added
};

struct XferQueue {
  // Frame bytes queued and not yet taken, per holder: a holder sends at most one CHUNK per GET
  // (kMaxInflight unanswered), so more than this is a holder sending what nobody asked for.
  static constexpr std::size_t kMaxQueuedPerHolder = (core::model::kMaxInflight + 2) * core::model::kMaxChunkFrameBody;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<XferEvent> q;
  std::map<std::uint64_t, std::size_t> queued;  // under mu
  static std::size_t weight(const XferEvent& e) {
    const auto* c = e.frame ? std::get_if<core::model::Chunk>(&*e.frame) : nullptr;
    return c ? c->data.size() + c->proof.size() * 32 + 16 : 16;
  }
  // False when the holder is this far ahead of the download's thread (the event is queued all the same).
  bool push(XferEvent e) {
    bool ok;
    {
      std::lock_guard lk(mu);
      auto& n = queued[e.holder];
      n += weight(e);
      ok = n <= kMaxQueuedPerHolder;
      q.push_back(std::move(e));
    }
    cv.notify_all();
    return ok;
  }
  void wake() {
    { std::lock_guard lk(mu); }
    cv.notify_all();
  }
  // Everything queued, waiting until `until` for the first.
  std::deque<XferEvent> take(Clock::time_point until) {
    std::unique_lock lk(mu);
    cv.wait_until(lk, until, [&] { return !q.empty(); });
    for (const auto& e : q)
      if (auto it = queued.find(e.holder); it != queued.end() && (it->second -= std::min(it->second, weight(e))) == 0) queued.erase(it);
    return std::exchange(q, {});
  }
};

// One transfer stream to a holder (loop thread only; the frames the decoder yields go to q).
struct XferStream {
  std::uint64_t holder = 0;
  std::shared_ptr<XferQueue> q;
  core::model::TransferDecoder dec{core::model::TransferSide::Getter};
  std::string out;
  std::size_t out_off = 0;
};

}  // namespace qmesh
