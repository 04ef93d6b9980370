// Fuzz target: a model transfer stream as each end reads it. The input goes (in two pieces) to the
// holder's decoder, whose frames drive a Share, and to the getter's decoder, whose frames drive a
// Fetch (of transfer_fuzz_fixture's model, missing only its last chunk). Whatever a decoder
// accepts must re-encode to bytes that decode to the same frame; the Share serves no more chunks
// than it was asked for and none past the end, and asks to drop only chunks it served; the Fetch writes each chunk at most once and only
// the real bytes of that chunk.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>

#include "core/model/fetch.hpp"
#include "core/model/share.hpp"
#include "core/model/transfer_frame.hpp"
#include "transfer_fuzz_fixture.hpp"

using namespace qmesh::core;
using namespace qmesh::core::model;

namespace {

void round_trip(TransferSide side, const TransferFrame& f) {
  TransferDecoder d(side);
  if (!d.feed(encode(f))) __builtin_trap();
  auto again = d.next();
  if (!again || !(*again == f) || d.next()) __builtin_trap();
}

void as_holder(std::span<const std::uint8_t> in) {
  const auto& fx = transfer_fuzz::fixture();
  Share share(ShareConfig{}, Instant{});
  share.add_model(fx.root);
  TransferDecoder d(TransferSide::Holder);
  const std::size_t cut = in.size() / 2;
  std::uint64_t gets = 0, served = 0;
  Instant now{};
  for (auto piece : {in.first(cut), in.subspan(cut)}) {
    now += std::chrono::milliseconds(10);
    if (!d.feed(piece)) share.on_stream_error(StreamId{1, 1}, d.error(), now);
    while (auto f = d.next()) {
      round_trip(TransferSide::Holder, *f);
      if (std::holds_alternative<Get>(*f)) ++gets;
      share.on_frame(StreamId{1, 1}, std::move(*f), now);
    }
    share.on_tick(now);
    while (auto a = share.next_action()) {
      if (auto* s = std::get_if<ShareServe>(&*a)) {
        if (s->index >= fx.root.chunks()) __builtin_trap();
        ++served;
        // Every other one is still queued when a CANCEL comes (the caller drops its read).
        if (served % 2 == 0) share.on_chunk_written(s->stream, s->index, now);
      } else if (auto* k = std::get_if<ShareCancel>(&*a)) {
        if (k->index >= fx.root.chunks()) __builtin_trap();
        share.on_serve_dropped(k->stream, k->index, now);
      }
    }
  }
  if (served > gets) __builtin_trap();
}

void as_getter(std::span<const std::uint8_t> in) {
  const auto& fx = transfer_fuzz::fixture();
  Fetch fetch(fx.root, {true, true, false}, FetchConfig{}, Instant{});
  fetch.add_holder(1, "fuzz", Instant{});
  TransferDecoder d(TransferSide::Getter);
  const std::size_t cut = in.size() / 3;
  std::vector<int> written(fx.root.chunks(), 0);
  Instant now{};
  for (auto piece : {in.first(cut), in.subspan(cut)}) {
    now += std::chrono::milliseconds(10);
    if (!d.feed(piece)) fetch.on_holder_error(1, d.error(), now);
    while (auto f = d.next()) {
      round_trip(TransferSide::Getter, *f);
      fetch.on_frame(1, std::move(*f), now);
    }
    fetch.on_tick(now);
    while (auto a = fetch.next_action()) {
      if (auto* w = std::get_if<WriteChunk>(&*a)) {
        const auto real = fx.chunk(w->index);
        if (++written[w->index] > 1 || w->bytes.size() != real.size() ||
            std::memcmp(w->bytes.data(), real.data(), real.size()) != 0)
          __builtin_trap();
      }
    }
  }
  // No more frames: following its own timers, it must end (within a few: OPEN again, its timeout).
  fetch.on_search_done(now);
  for (int i = 0; i < 8 && !fetch.finished(); ++i) fetch.on_tick(std::max(now, fetch.next_wakeup()));
  if (!fetch.finished()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  as_holder(in);
  as_getter(in);
  return 0;
}
