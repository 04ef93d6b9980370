#include "core/model/sse_parser.hpp"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

using qmesh::core::model::SseEnd;
using qmesh::core::model::SseEvent;
using qmesh::core::model::SseLimits;
using qmesh::core::model::SseParser;
using namespace std::literals;

namespace {

struct Parsed {
  std::vector<SseEvent> events;
  SseEnd end = SseEnd::kClean;
  bool failed = false;
};

Parsed parse_chunks(const std::vector<std::string_view>& chunks, SseLimits limits = {}) {
  SseParser p(limits);
  Parsed r;
  for (auto c : chunks) {
    auto evs = p.feed(c);
    r.events.insert(r.events.end(), evs.begin(), evs.end());
  }
  r.failed = p.failed();
  r.end = p.finish();
  return r;
}

// Parses `stream` whole, split at every single byte boundary, split at every pair of boundaries
// (short streams), and in 1-byte chunks; all must agree. Returns the whole-stream result.
Parsed parse_every_way(std::string_view stream, SseLimits limits = {}) {
  const Parsed whole = parse_chunks({stream}, limits);
  auto same = [&](const Parsed& other, const std::string& how) {
    EXPECT_EQ(other.events, whole.events) << how;
    EXPECT_EQ(other.end, whole.end) << how;
    EXPECT_EQ(other.failed, whole.failed) << how;
  };
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    same(parse_chunks({stream.substr(0, i), stream.substr(i)}, limits), "split at " + std::to_string(i));
  }
  if (stream.size() <= 80) {
    for (std::size_t i = 0; i <= stream.size(); ++i) {
      for (std::size_t j = i; j <= stream.size(); ++j) {
        same(parse_chunks({stream.substr(0, i), stream.substr(i, j - i), stream.substr(j)}, limits),
             "split at " + std::to_string(i) + "," + std::to_string(j));
      }
    }
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(stream.substr(i, 1));
  same(parse_chunks(bytes, limits), "1-byte chunks");
  return whole;
}

}  // namespace

namespace qmesh::core {
void PrintTo(const SseEvent& e, std::ostream* os) {
  *os << "{event=\"" << e.event << "\" data=\"" << e.data << "\" id=\"" << e.id << "\"}";
}
}  // namespace qmesh::core

namespace {

SseEvent ev(std::string data, std::string event = "message", std::string id = "") {
  return SseEvent{std::move(event), std::move(data), std::move(id)};
}

}  // namespace

TEST(SseParser, SingleEvent) {
  auto r = parse_every_way("data: hello\n\n");
  EXPECT_EQ(r.events, std::vector<SseEvent>{ev("hello")});
  EXPECT_EQ(r.end, SseEnd::kClean);
}

TEST(SseParser, MultiLineDataJoinedWithLf) {
  auto r = parse_every_way("data: first\ndata:second\ndata:  third\n\n");
  EXPECT_EQ(r.events, std::vector<SseEvent>{ev("first\nsecond\n third")});
}

TEST(SseParser, CommentsIgnored) {
  auto r = parse_every_way(": this is a comment\ndata: a\n: another\n\n:\n\n");
  EXPECT_EQ(r.events, std::vector<SseEvent>{ev("a")});
  EXPECT_EQ(r.end, SseEnd::kClean);
}

TEST(SseParser, LineEndingMixes) {
  const std::string_view streams[] = {
      "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
      "data: a\rdata: b\r\rdata: c\r\r",
      "data: a\ndata: b\r\n\rdata: c\r\n\n",
      "data: a\r\ndata: b\n\r\ndata: c\n\r",
  };
  for (auto s : streams) {
    auto r = parse_every_way(s);
    EXPECT_EQ(r.events, (std::vector<SseEvent>{ev("a\nb"), ev("c")})) << s;
    EXPECT_EQ(r.end, SseEnd::kClean);
  }
}

TEST(SseParser, CrThenLfIsOneLineEndButLfThenCrIsTwo) {
  // "\r\n" ends one line; "\n\r" ends a line and then a blank line, dispatching the event.
  auto r = parse_every_way("data: x\r\ndata: y\n\rdata: z\n\n");
  EXPECT_EQ(r.events, (std::vector<SseEvent>{ev("x\ny"), ev("z")}));
}

TEST(SseParser, FieldWithoutColonAndSpaceHandling) {
  // "data" alone is a data field with an empty value; only one leading space is stripped.
  auto r = parse_every_way("data\ndata\n\ndata:no-space\n\ndata:   three\n\n");
  EXPECT_EQ(r.events, (std::vector<SseEvent>{ev("\n"), ev("no-space"), ev("  three")}));
}

TEST(SseParser, EventWithoutDataIsNotDispatched) {
  // Per spec only an empty data *buffer* suppresses dispatch; "data:" with an empty value is an
  // event with empty data.
  auto r = parse_every_way("event: ping\n\nid: 1\n\ndata:\n\n");
  EXPECT_EQ(r.events, std::vector<SseEvent>{ev("", "message", "1")});
}

TEST(SseParser, EventTypeAndIdPersistence) {
  auto r = parse_every_way(
      "event: delta\nid: 7\ndata: {\"x\":1}\n\n"
      "data: second\n\n"
      "id\ndata: third\n\n"
      "id: a\0b\ndata: nul-id-ignored\n\n"sv);
  EXPECT_EQ(r.events, (std::vector<SseEvent>{ev("{\"x\":1}", "delta", "7"), ev("second", "message", "7"),
                                             ev("third", "message", ""),
                                             ev("nul-id-ignored", "message", "")}));
}

TEST(SseParser, RetryAndUnknownFields) {
  SseParser p;
  auto evs = p.feed("retry: 1500\nfoo: bar\ndata: x\n\nretry: 12a\n\nretry: -5\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "x");
  ASSERT_TRUE(p.retry_ms().has_value());
  EXPECT_EQ(*p.retry_ms(), 1500u);
}

TEST(SseParser, ByteOrderMarkStrippedOnlyAtStart) {
  auto r = parse_every_way("\xEF\xBB\xBF" "data: bom\n\n\xEF\xBB\xBF" "data: kept\n\n");
  // The second BOM is part of a field name ("\uFEFFdata"), which is unknown and ignored.
  EXPECT_EQ(r.events, std::vector<SseEvent>{ev("bom")});

  auto partial = parse_every_way("\xEF\xBB" "data: x\n\n");  // not a BOM: ordinary bytes
  EXPECT_TRUE(partial.events.empty());

  auto no_bom = parse_every_way("data: plain\n\n");
  EXPECT_EQ(no_bom.events, std::vector<SseEvent>{ev("plain")});
}

TEST(SseParser, LlamaServerCompletionStream) {
  const std::string_view stream =
      "data: {\"content\":\"Hi\",\"stop\":false,\"id_slot\":0}\n\n"
      "data: {\"content\":\" there\",\"stop\":false,\"id_slot\":0}\n\n"
      ":\n\n"  // llama-server's keep-alive ping
      "data: {\"content\":\"\",\"stop\":true,\"tokens_predicted\":2}\n\n";
  auto r = parse_every_way(stream);
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.events[0].data, "{\"content\":\"Hi\",\"stop\":false,\"id_slot\":0}");
  EXPECT_EQ(r.events[2].data, "{\"content\":\"\",\"stop\":true,\"tokens_predicted\":2}");
  EXPECT_EQ(r.end, SseEnd::kClean);
}

TEST(SseParser, OpenAiStreamWithDoneIsAnOrdinaryEvent) {
  const std::string_view stream =
      "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}],\"object\":\"chat.completion.chunk\"}\n\n"
      "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}]}\n\n"
      "data: [DONE]\n\n";
  auto r = parse_every_way(stream);
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.events[2], ev("[DONE]"));
}

TEST(SseParser, ResponsesApiStyleNamedEvents) {
  auto r = parse_every_way(
      "event: response.output_text.delta\r\ndata: {\"delta\":\"Hi\"}\r\n\r\n"
      "event: response.completed\r\ndata: {}\r\n\r\n");
  EXPECT_EQ(r.events, (std::vector<SseEvent>{ev("{\"delta\":\"Hi\"}", "response.output_text.delta"),
                                             ev("{}", "response.completed")}));
}

TEST(SseParser, OversizeLineIsAnError) {
  SseLimits lim{.max_line_bytes = 16, .max_event_bytes = 1024};
  auto ok = parse_every_way("data: 0123456789\n\n", lim);  // exactly 16 bytes: allowed
  EXPECT_FALSE(ok.failed);
  EXPECT_EQ(ok.events.size(), 1u);

  auto bad = parse_every_way("data: 01234567890\n\ndata: after\n\n", lim);
  EXPECT_TRUE(bad.failed);
  EXPECT_TRUE(bad.events.empty());
  EXPECT_EQ(bad.end, SseEnd::kError);

  // An unterminated line that never ends must not grow without bound either.
  SseParser p(lim);
  for (int i = 0; i < 100 && !p.failed(); ++i) (void)p.feed("xxxxxxxx");
  ASSERT_TRUE(p.failed());
  EXPECT_NE(p.error()->find("16 bytes"), std::string::npos);
  EXPECT_TRUE(p.feed("\n\ndata: x\n\n").empty());  // stays failed
}

TEST(SseParser, OversizeEventIsAnError) {
  SseLimits lim{.max_line_bytes = 64, .max_event_bytes = 10};
  auto ok = parse_every_way("data: 01234\ndata: 678\n\n", lim);  // 5+1+3+1 = 10 bytes buffered
  EXPECT_FALSE(ok.failed);
  auto bad = parse_every_way("data: 01234\ndata: 6789\n\n", lim);
  EXPECT_TRUE(bad.failed);
  EXPECT_TRUE(bad.events.empty());
}

TEST(SseParser, FinishReportsTruncation) {
  EXPECT_EQ(parse_every_way("data: a\n\n").end, SseEnd::kClean);
  EXPECT_EQ(parse_every_way("").end, SseEnd::kClean);
  EXPECT_EQ(parse_every_way(": only a comment\n").end, SseEnd::kClean);
  auto no_blank = parse_every_way("data: a\n\ndata: b\n");
  EXPECT_EQ(no_blank.events, std::vector<SseEvent>{ev("a")});
  EXPECT_EQ(no_blank.end, SseEnd::kTruncated);
  EXPECT_EQ(parse_every_way("data: a\n\ndata: b").end, SseEnd::kTruncated);
  EXPECT_EQ(parse_every_way("data: a\n\nevent: x\n").end, SseEnd::kTruncated);
  EXPECT_EQ(parse_every_way("data: a\r\n\r").end, SseEnd::kClean);
}

TEST(SseParser, FinishResetsForANewStream) {
  SseParser p;
  (void)p.feed("id: 3\ndata: partial");
  EXPECT_EQ(p.finish(), SseEnd::kTruncated);
  auto evs = p.feed("\xEF\xBB\xBF" "data: fresh\n\n");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0], ev("fresh", "message", "3"));  // last event ID survives, as on reconnect
  EXPECT_EQ(p.finish(), SseEnd::kClean);
}

TEST(SseParser, ManyEventsInOneChunkAndLargeStream) {
  std::string stream;
  for (int i = 0; i < 200; ++i) stream += "data: token " + std::to_string(i) + "\r\n\r\n";
  SseParser p;
  auto evs = p.feed(stream);
  ASSERT_EQ(evs.size(), 200u);
  EXPECT_EQ(evs[199].data, "token 199");
  // Every single split of a long stream, too.
  for (std::size_t i = 0; i <= stream.size(); i += 3) {
    SseParser q;
    auto a = q.feed(std::string_view(stream).substr(0, i));
    auto b = q.feed(std::string_view(stream).substr(i));
    EXPECT_EQ(a.size() + b.size(), 200u);
  }
}
