// Share, the holder's side: every frame goes in through the holder's decoder and comes out through
// the getter's, as on a stream.
#include "core/model/share.hpp"

#include <gtest/gtest.h>

#include <chrono>

using namespace qmesh::core;
using namespace qmesh::core::model;
using namespace std::chrono_literals;

namespace {

StreamId sid(std::uint64_t n) { return StreamId{n, n}; }  // stream n of session n

// A 5.5-chunk model; the tree is not needed (Share never reads chunk bytes).
const ContentRoot kRoot{Hash{1, 2, 3}, 5 * kChunkBytes + kChunkBytes / 2};

struct Wire {
  Share share;
  explicit Wire(ShareConfig c = {}) : share(c, Instant{}) { share.add_model(kRoot); }

  // Sends `frame` on stream `s` the way a getter would (encoded, decoded by the holder's end).
  void send(StreamId s, const TransferFrame& frame, Instant now = Instant{}) {
    TransferDecoder d(TransferSide::Holder);
    ASSERT_TRUE(d.feed(encode(frame))) << d.error();
    while (auto f = d.next()) share.on_frame(s, std::move(*f), now);
  }
  struct Out {
    std::vector<TransferFrame> frames;  // decoded by the getter's end
    std::vector<std::uint64_t> served;
    std::vector<std::uint64_t> cancelled;  // ShareCancel: drop the read if not begun
    bool closed = false;
    std::string close_reason;
  };
  Out drain(StreamId s) {
    Out o;
    TransferDecoder d(TransferSide::Getter);
    while (auto a = share.next_action()) {
      if (auto* m = std::get_if<ShareSend>(&*a); m && m->stream == s) {
        EXPECT_TRUE(d.feed(m->bytes)) << d.error();
        while (auto f = d.next()) o.frames.push_back(std::move(*f));
      } else if (auto* v = std::get_if<ShareServe>(&*a); v && v->stream == s) {
        o.served.push_back(v->index);
      } else if (auto* k = std::get_if<ShareCancel>(&*a); k && k->stream == s) {
        o.cancelled.push_back(k->index);
      } else if (auto* c = std::get_if<ShareClose>(&*a); c && c->stream == s) {
        o.closed = true;
        o.close_reason = c->reason;
      }
    }
    return o;
  }
  Out open(StreamId s) {
    send(s, Open{kRoot.hash, kRoot.size});
    return drain(s);
  }
};

}  // namespace

TEST(Share, AnOpenOfAHeldRootGetsInfo) {
  Wire w;
  auto o = w.open(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<Info>(o.frames[0]), (Info{kRoot.size, 6, kMaxInflight}));
  EXPECT_FALSE(o.closed);
  EXPECT_EQ(w.share.uploads(), 1u);
}

TEST(Share, AnOpenOfAnotherRootGetsNotHeldAndTheEnd) {
  Wire w;
  w.send(sid(1), Open{Hash{9}, kRoot.size});
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::NotHeld);
  EXPECT_TRUE(o.closed);
  EXPECT_EQ(w.share.uploads(), 0u);
  w.send(sid(1), Open{Hash{9}, kRoot.size});  // after its ERROR, a stream is not answered again
  EXPECT_TRUE(w.drain(sid(1)).frames.empty());
}

TEST(Share, AGetPastTheEndIsAnError) {
  Wire w;
  w.open(sid(1));
  w.send(sid(1), Get{6});
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  const auto& e = std::get<TransferErrorMsg>(o.frames[0]);
  EXPECT_EQ(e.code, TransferError::BadIndex);
  EXPECT_EQ(e.text, "chunk 6 is beyond the end (6 chunks)");
  EXPECT_TRUE(o.closed);
  EXPECT_TRUE(o.served.empty());
  EXPECT_EQ(w.share.uploads(), 0u);  // its slot is free again
  EXPECT_EQ(w.share.counters().gets_refused, 1u);
}

TEST(Share, AGetBeforeOpenIsAnError) {
  Wire w;
  w.send(sid(1), Get{0});
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::BadRequest);
  EXPECT_TRUE(o.closed);
}

TEST(Share, ServesEachGetOnceAndNothingUnasked) {
  Wire w;
  w.open(sid(1));
  for (std::uint64_t i : {3u, 0u, 5u}) w.send(sid(1), Get{i});
  auto o = w.drain(sid(1));
  EXPECT_EQ(o.served, (std::vector<std::uint64_t>{3, 0, 5}));
  EXPECT_EQ(w.share.counters().bytes_served, 2 * kChunkBytes + kChunkBytes / 2);
}

TEST(Share, MoreThanMaxInflightUnansweredEndsTheStream) {
  Wire w;
  w.open(sid(1));
  for (int i = 0; i < kMaxInflight; ++i) w.send(sid(1), Get{0});
  auto o = w.drain(sid(1));
  EXPECT_EQ(o.served.size(), std::size_t{kMaxInflight});
  EXPECT_FALSE(o.closed);
  w.share.on_chunk_written(sid(1), 0, Instant{});  // one answered: room for one more
  w.send(sid(1), Get{1});
  EXPECT_FALSE(w.drain(sid(1)).closed);
  w.send(sid(1), Get{2});  // the 17th unanswered
  o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::TooMany);
  EXPECT_TRUE(o.closed);
}

TEST(Share, UploadSlotsAreCappedAndFreedWhenAStreamEnds) {
  ShareConfig c;
  c.max_uploads = 2;
  c.busy_retry = 1500ms;
  Wire w(c);
  w.open(sid(1));
  w.open(sid(2));
  auto o = w.open(sid(3));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<Busy>(o.frames[0]), (Busy{kNoIndex, 1500}));
  EXPECT_FALSE(o.closed);  // it may OPEN again
  w.share.on_stream_closed(sid(1), Instant{});
  o = w.open(sid(3));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Info>(o.frames[0]));
  EXPECT_EQ(w.share.uploads(), 2u);
  EXPECT_EQ(w.share.counters().opens_busy, 1u);
}

TEST(Share, UploadsAreCountedBySessionAndStreamsPerSessionAreCapped) {
  ShareConfig c;
  c.max_uploads = 1;
  c.max_streams_per_session = 2;
  Wire w(c);
  EXPECT_TRUE(std::holds_alternative<Info>(w.open(StreamId{5, 1}).frames.at(0)));
  EXPECT_TRUE(std::holds_alternative<Info>(w.open(StreamId{5, 3}).frames.at(0)));  // the same session
  EXPECT_EQ(w.share.uploads(), 1u);
  EXPECT_TRUE(std::holds_alternative<Busy>(w.open(StreamId{6, 1}).frames.at(0)));  // another session waits
  auto o = w.open(StreamId{5, 5});  // a third stream of session 5
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames.at(0)).code, TransferError::TooMany);
  EXPECT_TRUE(o.closed);
  w.share.on_stream_closed(StreamId{5, 1}, Instant{});
  w.share.on_stream_closed(StreamId{5, 3}, Instant{});
  EXPECT_EQ(w.share.uploads(), 0u);
  EXPECT_TRUE(std::holds_alternative<Info>(w.open(StreamId{6, 1}).frames.at(0)));
}

// One chunk a second, a bucket of one chunk, GETs may wait 10 s for their tokens.
ShareConfig one_chunk_a_second() {
  ShareConfig c;
  c.rate = kChunkBytes;
  c.burst = kChunkBytes;
  c.max_queue_wait = 10s;
  return c;
}

TEST(Share, TheTokenBucketPacesChunks) {
  Wire w(one_chunk_a_second());
  w.open(sid(1));
  for (std::uint64_t i = 0; i < 3; ++i) w.send(sid(1), Get{i});
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{0}));  // the full bucket pays for one
  const Instant t1 = w.share.next_wakeup();
  EXPECT_GE(t1, Instant{} + 1s);
  EXPECT_LE(t1, Instant{} + 1s + 1ms);
  w.share.on_tick(t1 - 2ms);
  EXPECT_TRUE(w.drain(sid(1)).served.empty());
  w.share.on_tick(t1);
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{1}));
  w.share.on_tick(w.share.next_wakeup());
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(w.share.next_wakeup(), Instant::max());  // no idle timer while GETs are unanswered
  for (std::uint64_t i = 0; i < 3; ++i) w.share.on_chunk_written(sid(1), i, t1 + 1s);
  EXPECT_EQ(w.share.next_wakeup(), t1 + 1s + 30s);
}

TEST(Share, AGetThatWouldWaitTooLongForTheRateGetsBusy) {
  ShareConfig c;
  c.rate = kChunkBytes;
  c.burst = kChunkBytes;
  c.max_queue_wait = 1500ms;
  Wire w(c);
  w.open(sid(1));
  w.send(sid(1), Get{0});  // served from the bucket
  w.send(sid(1), Get{1});  // waits 1 s
  w.send(sid(1), Get{2});  // would wait 2 s: 0.5 s too long
  auto o = w.drain(sid(1));
  EXPECT_EQ(o.served, (std::vector<std::uint64_t>{0}));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<Busy>(o.frames[0]), (Busy{2, 500}));
  EXPECT_FALSE(o.closed);
  EXPECT_EQ(w.share.counters().gets_busy, 1u);
}

TEST(Share, AnIdleSlotIsTakenBack) {
  ShareConfig c;
  c.idle_timeout = 20s;
  Wire w(c);
  w.open(sid(1));
  EXPECT_EQ(w.share.next_wakeup(), Instant{} + 20s);
  w.send(sid(1), Get{0}, Instant{} + 5s);
  w.drain(sid(1));
  w.share.on_chunk_written(sid(1), 0, Instant{} + 6s);
  EXPECT_EQ(w.share.next_wakeup(), Instant{} + 26s);
  w.share.on_tick(Instant{} + 26s);
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::Idle);
  EXPECT_TRUE(o.closed);
  EXPECT_EQ(w.share.uploads(), 0u);
}

TEST(Share, RemovingAModelEndsItsStreams) {
  Wire w;
  w.open(sid(1));
  w.share.remove_model(kRoot.hash, Instant{});
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::Unavailable);
  EXPECT_FALSE(w.share.holds(kRoot.hash));
}

TEST(Share, AMalformedStreamIsAnsweredAndEnded) {
  Wire w;
  w.open(sid(1));
  TransferDecoder d(TransferSide::Holder);
  ASSERT_FALSE(d.feed(encode(Info{1, 1, 1})));  // a holder's frame from the getter
  w.share.on_stream_error(sid(1), d.error(), Instant{});
  auto o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::BadRequest);
  EXPECT_TRUE(o.closed);
}

// ---- CANCEL ----

TEST(Share, ACancelOfAGetWaitingForTheRateDropsIt) {
  Wire w(one_chunk_a_second());
  w.open(sid(1));
  for (std::uint64_t i = 0; i < 3; ++i) w.send(sid(1), Get{i});
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{0}));
  w.send(sid(1), Cancel{1});  // waiting for its tokens: dropped here, nothing for the caller to do
  auto o = w.drain(sid(1));
  EXPECT_TRUE(o.frames.empty());
  EXPECT_TRUE(o.cancelled.empty());
  EXPECT_FALSE(o.closed);
  // The next second's tokens pay for chunk 2, not 1.
  w.share.on_tick(w.share.next_wakeup());
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(w.share.next_wakeup(), Instant::max());  // nothing left waiting
  const auto& k = w.share.counters();
  EXPECT_EQ(k.cancels, 1u);
  EXPECT_EQ(k.cancels_dropped, 1u);
  EXPECT_EQ(k.chunks_served, 2u);
}

TEST(Share, ACancelOfAGetHandedOutAsksTheCallerToDropItsRead) {
  Wire w;
  w.open(sid(1));
  for (std::uint64_t i = 0; i < 3; ++i) w.send(sid(1), Get{i});
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{0, 1, 2}));
  w.send(sid(1), Cancel{2});
  w.send(sid(1), Cancel{1});
  auto o = w.drain(sid(1));
  EXPECT_EQ(o.cancelled, (std::vector<std::uint64_t>{2, 1}));
  EXPECT_TRUE(o.frames.empty());  // no answer on the wire
  // The caller dropped 2 before reading it; 1 had begun and is written anyway.
  w.share.on_serve_dropped(sid(1), 2, Instant{});
  w.share.on_chunk_written(sid(1), 1, Instant{});
  w.share.on_chunk_written(sid(1), 0, Instant{});
  const auto& k = w.share.counters();
  EXPECT_EQ(k.cancels, 2u);
  EXPECT_EQ(k.cancels_dropped, 1u);
  EXPECT_EQ(k.chunks_served, 2u);
  EXPECT_EQ(k.bytes_served, 2 * kChunkBytes);
  // A second report of the same drop changes nothing.
  w.share.on_serve_dropped(sid(1), 2, Instant{});
  EXPECT_EQ(w.share.counters().cancels_dropped, 1u);
}

TEST(Share, ACancelFreesItsPlaceAtOnceAndALateChunkDoesNotFreeAnother) {
  Wire w;
  w.open(sid(1));
  for (int i = 0; i < kMaxInflight; ++i) w.send(sid(1), Get{static_cast<std::uint64_t>(i % 5)});
  EXPECT_EQ(w.drain(sid(1)).served.size(), std::size_t{kMaxInflight});
  w.send(sid(1), Cancel{0});  // 15 unanswered, as the getter counts
  w.send(sid(1), Get{5});     // the 16th: fine
  auto o = w.drain(sid(1));
  EXPECT_FALSE(o.closed);
  EXPECT_EQ(o.served, (std::vector<std::uint64_t>{5}));
  // The cancelled chunk had begun: its write must not free a place the getter still counts.
  w.share.on_chunk_written(sid(1), 0, Instant{});
  w.send(sid(1), Get{4});  // would be the 17th
  o = w.drain(sid(1));
  ASSERT_EQ(o.frames.size(), 1u);
  EXPECT_EQ(std::get<TransferErrorMsg>(o.frames[0]).code, TransferError::TooMany);
}

TEST(Share, ACancelOfNothingUnansweredIsCountedAndIgnored) {
  Wire w;
  w.send(sid(1), Cancel{0});  // before OPEN
  w.open(sid(1));
  w.send(sid(1), Get{1});
  w.drain(sid(1));
  w.share.on_chunk_written(sid(1), 1, Instant{});
  for (std::uint64_t i : {std::uint64_t{1}, std::uint64_t{3}, std::uint64_t{1} << 40, kNoIndex}) w.send(sid(1), Cancel{i});  // answered, never asked, past the end
  auto o = w.drain(sid(1));
  EXPECT_TRUE(o.frames.empty());
  EXPECT_TRUE(o.cancelled.empty());
  EXPECT_FALSE(o.closed);
  EXPECT_EQ(w.share.counters().cancels, 5u);
  EXPECT_EQ(w.share.counters().cancels_ignored, 5u);
  w.send(sid(1), Get{2});  // the stream goes on
  EXPECT_EQ(w.drain(sid(1)).served, (std::vector<std::uint64_t>{2}));
}
