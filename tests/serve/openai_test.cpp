// The OpenAI translation (src/serve/openai.hpp): requests field by field, errors, and the shapes
// of responses, chunks and WebSocket messages.
#include "serve/openai.hpp"

#include <gtest/gtest.h>

using namespace qmesh::serve;
using nlohmann::json;

namespace {

Request ok(const std::string& body, Api api = Api::chat) {
  auto p = parse_request(body, api);
  if (auto* e = std::get_if<ApiError>(&p)) ADD_FAILURE() << body << " -> " << e->message;
  return std::holds_alternative<Request>(p) ? std::get<Request>(p) : Request{};
}

ApiError err(const std::string& body, Api api = Api::chat) {
  auto p = parse_request(body, api);
  EXPECT_TRUE(std::holds_alternative<ApiError>(p)) << body;
  return std::holds_alternative<ApiError>(p) ? std::get<ApiError>(p) : ApiError{};
}

std::vector<json> events(const std::string& sse) {
  std::vector<json> out;
  std::size_t at = 0;
  while (at < sse.size()) {
    const auto end = sse.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    const auto ev = sse.substr(at, end - at);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    const auto data = ev.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    at = end + 2;
  }
  return out;
}

qmesh::AskResult result(const std::string& stop_reason) {
  qmesh::AskResult r;
  r.text = "Hello";
  r.worker = "ab12";
  r.tokens = 3;
  r.prompt_tokens = 4;
  r.model = "m-served";
  r.stop_reason = stop_reason;
  r.ttft_ms = 12.5;
  r.tokens_per_second = 40;
  return r;
}

}  // namespace

TEST(OpenAi, ChatRequestFields) {
  auto q = ok(R"({"model":"m1","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
                  "max_tokens":7,"temperature":0.5,"seed":42,"user":"u-1","stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_EQ(q.model, "m1");
  EXPECT_EQ(q.ask.model, "m1");
  ASSERT_EQ(q.ask.messages.size(), 2u);
  EXPECT_EQ(q.ask.messages[0].role, "system");
  EXPECT_EQ(q.ask.messages[1].content, "hi");
  EXPECT_EQ(q.ask.max_tokens, 7);
  EXPECT_EQ(q.ask.temperature, 0.5);
  EXPECT_EQ(q.ask.seed, 42u);
  EXPECT_TRUE(q.stream);
  EXPECT_TRUE(q.include_usage);
  EXPECT_FALSE(q.ask.raw);
}

TEST(OpenAi, ModelAutoAndDefaults) {
  auto q = ok(R"({"model":"auto","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(q.ask.model, "");
  EXPECT_EQ(q.model, "auto");
  EXPECT_EQ(q.ask.max_tokens, kMaxTokens);  // the worker caps it
  EXPECT_FALSE(q.stream);
  auto none = ok(R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(none.model, "auto");
}

TEST(OpenAi, ContentAsTextParts) {
  auto q = ok(R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})");
  ASSERT_EQ(q.ask.messages.size(), 1u);
  EXPECT_EQ(q.ask.messages[0].content, "ab");
  auto e = err(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "messages[0].content[0].type");
}

TEST(OpenAi, DeveloperRoleIsSystemAndToolRoleRefused) {
  auto q = ok(R"({"messages":[{"role":"developer","content":"x"},{"role":"user","content":"y"}]})");
  EXPECT_EQ(q.ask.messages[0].role, "system");
  auto e = err(R"({"messages":[{"role":"tool","content":"x","tool_call_id":"1"}]})");
  EXPECT_EQ(e.param, "messages[0].role");
}

TEST(OpenAi, MaxCompletionTokensWins) {
  EXPECT_EQ(ok(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":9})").ask.max_tokens, 9);
  EXPECT_EQ(ok(R"({"max_completion_tokens":9,"max_tokens":5,"messages":[{"role":"user","content":"x"}]})").ask.max_tokens, 9);
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})").param, "max_tokens");
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":40000})").param, "max_completion_tokens");
}

TEST(OpenAi, UnsupportedParametersAreNamed) {
  const std::string m = R"("messages":[{"role":"user","content":"x"}])";
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"n", "2"}, {"tools", "[]"}, {"tool_choice", "\"auto\""}, {"functions", "[]"}, {"logprobs", "true"},
           {"top_logprobs", "2"}, {"response_format", R"({"type":"json_object"})"}, {"logit_bias", R"({"1":2})"},
           {"presence_penalty", "0.5"}, {"audio", "{}"}, {"frobnicate", "1"}}) {
    auto e = err("{" + m + ",\"" + field + "\":" + value + "}");
    EXPECT_EQ(e.status, 400) << field;
    EXPECT_EQ(e.param, field) << field;
    EXPECT_NE(e.message.find(field), std::string::npos) << e.message;
    EXPECT_EQ(e.code, "unsupported_parameter") << field;
  }
  // Their neutral values are fine.
  ok("{" + m + R"(,"n":1,"logprobs":false,"response_format":{"type":"text"},"presence_penalty":0,"tool_choice":"none","tools":null})");
}

TEST(OpenAi, StopAndTopP) {
  const std::string m = R"("messages":[{"role":"user","content":"x"}])";
  auto q = ok("{" + m + R"(,"stop":["a","b"],"top_p":0.5})");
  EXPECT_EQ(q.ask.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(q.ask.top_p, 0.5);
  EXPECT_EQ(ok("{" + m + R"(,"stop":"END"})").ask.stop, (std::vector<std::string>{"END"}));
  EXPECT_EQ(err("{" + m + R"(,"stop":["a","b","c","d","e"]})").param, "stop");
  EXPECT_EQ(err("{" + m + R"(,"stop":[""]})").param, "stop");
  EXPECT_EQ(err("{" + m + R"(,"stop":5})").param, "stop");
  EXPECT_EQ(err("{" + m + R"(,"top_p":1.5})").param, "top_p");
  ok("{" + m + R"(,"stop":null,"top_p":null})");
}

TEST(OpenAi, BadBodies) {
  EXPECT_EQ(err("{nope").code, "invalid_json");
  EXPECT_EQ(err("[1,2]").status, 400);
  EXPECT_EQ(err(R"({"messages":[]})").param, "messages");
  EXPECT_EQ(err(R"({"model":"m"})").param, "messages");
  EXPECT_EQ(err(R"({"messages":[{"role":"user"}]})").param, "messages[0].content");
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}],"temperature":3})").param, "temperature");
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}],"seed":-5})").param, "seed");
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})").param, "stream_options");
  EXPECT_EQ(err(std::string(kMaxBodyBytes + 1, ' ')).status, 413);
  std::string many = R"({"messages":[)";
  for (std::size_t i = 0; i <= kMaxMessages; ++i) many += std::string(i ? "," : "") + R"({"role":"user","content":"x"})";
  EXPECT_EQ(err(many + "]}").param, "messages");
  EXPECT_EQ(err("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}").code, "invalid_json");  // not UTF-8
}

TEST(OpenAi, CompletionRequest) {
  auto q = ok(R"({"model":"m","prompt":"Once","max_tokens":4,"echo":false,"best_of":1})", Api::completion);
  EXPECT_TRUE(q.ask.raw);
  EXPECT_EQ(q.ask.prompt, "Once");
  EXPECT_EQ(ok(R"({"prompt":["One"]})", Api::completion).ask.prompt, "One");
  EXPECT_EQ(err(R"({"prompt":["a","b"]})", Api::completion).param, "prompt");
  EXPECT_EQ(err(R"({"prompt":""})", Api::completion).param, "prompt");
  EXPECT_EQ(err(R"({"messages":[{"role":"user","content":"x"}]})", Api::completion).param, "messages");
  EXPECT_EQ(err(R"({"prompt":"x","suffix":"y"})", Api::completion).param, "suffix");
}

TEST(OpenAi, WebSocketAsk) {
  auto j = json::parse(R"({"type":"ask","id":"a1","messages":[{"role":"user","content":"x"}],"max_tokens":3})");
  auto p = decode_request(j, Api::websocket);
  ASSERT_TRUE(std::holds_alternative<Request>(p));
  EXPECT_TRUE(std::get<Request>(p).stream);
  auto s = decode_request(json::parse(R"({"type":"ask","id":"a1","messages":[{"role":"user","content":"x"}],"stream":true})"), Api::websocket);
  ASSERT_TRUE(std::holds_alternative<ApiError>(s));
  EXPECT_EQ(std::get<ApiError>(s).param, "stream");
  EXPECT_TRUE(valid_ws_id("a1"));
  EXPECT_FALSE(valid_ws_id(""));
  EXPECT_FALSE(valid_ws_id(std::string(65, 'a')));
  EXPECT_FALSE(valid_ws_id("a\n"));
}

TEST(OpenAi, MeshErrorsMapToStatuses) {
  EXPECT_EQ(mesh_error("bad_request", "x").status, 400);
  EXPECT_EQ(mesh_error("unknown_model", "x").status, 404);
  EXPECT_EQ(mesh_error("unknown_model", "x").code, "model_not_found");
  auto busy = mesh_error("busy", "x", std::chrono::milliseconds(1500));
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(busy.retry_after.count(), 1500);
  EXPECT_EQ(mesh_error("workers_failed", "x").status, 502);
  EXPECT_EQ(mesh_error("network", "x").status, 502);
  EXPECT_EQ(mesh_error("no_workers", "x").status, 503);
  EXPECT_EQ(mesh_error("timeout", "x").status, 504);
  EXPECT_EQ(mesh_error("cancelled", "x").status, 499);
  EXPECT_EQ(mesh_error("config", "x").status, 500);
  auto body = json::parse(error_body(mesh_error("no_workers", "none")));
  EXPECT_EQ(body["error"]["message"], "none");
  EXPECT_TRUE(body["error"].contains("param"));
  EXPECT_EQ(body["error"]["code"], "no_workers");
}

TEST(OpenAi, NonStreamingResponses) {
  Request q = ok(R"({"model":"m","messages":[{"role":"user","content":"x"}]})");
  auto j = json::parse(response_body(Api::chat, {"chatcmpl-1", 1700000000}, q, result("limit")));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"], "chatcmpl-1");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
  EXPECT_EQ(j["model"], "m-served");
  auto c = json::parse(response_body(Api::completion, {"cmpl-1", 1}, q, result("eos")));
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "Hello");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
}

TEST(OpenAi, StreamingChunks) {
  Request q = ok(R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}})");
  Meta m{"chatcmpl-9", 5};
  auto all = events(sse_role_chunk(m, q) + sse_delta(Api::chat, m, q, "He") + sse_delta(Api::chat, m, q, "llo") +
                    sse_end(Api::chat, m, q, result("word")));
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(all[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(all[0]["usage"].is_null());
  EXPECT_EQ(all[1]["choices"][0]["delta"]["content"], "He");
  EXPECT_TRUE(all[1]["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(all[3]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(all[4]["choices"].empty());
  EXPECT_EQ(all[4]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(all[4]["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(all[1]["model"], "m");         // as asked, until the answer says which model served
  EXPECT_EQ(all[3]["model"], "m-served");
  EXPECT_EQ(all[5], "[DONE]");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(all[i]["id"], "chatcmpl-9");
  // Without include_usage: no usage chunk.
  q.include_usage = false;
  EXPECT_EQ(events(sse_end(Api::chat, m, q, result("eos"))).size(), 2u);
  auto e = events(sse_error(mesh_error("network", "lost")));
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0]["error"]["message"], "lost");
  EXPECT_EQ(e[1], "[DONE]");
}

TEST(OpenAi, WebSocketMessages) {
  Request q = ok(R"({"model":"m","messages":[{"role":"user","content":"x"}]})");
  auto d = json::parse(ws_delta("a1", "hi"));
  EXPECT_EQ(d, json::parse(R"({"type":"delta","id":"a1","content":"hi"})"));
  auto done = json::parse(ws_done("a1", q, result("limit")));
  EXPECT_EQ(done["type"], "done");
  EXPECT_EQ(done["finish_reason"], "length");
  EXPECT_EQ(done["worker"], "ab12");
  EXPECT_EQ(done["usage"]["completion_tokens"], 3);
  EXPECT_EQ(done["ttft_ms"], 12.5);
  auto e = json::parse(ws_error(std::string("a1"), mesh_error("cancelled", "gone")));
  EXPECT_EQ(e["status"], 499);
  EXPECT_EQ(e["error"]["code"], "cancelled");
  EXPECT_FALSE(json::parse(ws_error(std::nullopt, bad_request("x")))
                   .contains("id"));
}

TEST(OpenAi, ModelsGroupByName) {
  std::vector<qmesh::WorkerInfo> ws(3);
  auto model = [](const std::string& name) {
    qmesh::WorkerModel m;
    m.name = name;
    return m;
  };
  ws[0].models = {model("b"), model("c")};  // a worker with two models lists both
  ws[1].models = {model("a")};
  ws[2].models = {model("b")};
  auto j = json::parse(models_body(ws));
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 3u);
  EXPECT_EQ(j["data"][0]["id"], "a");
  EXPECT_EQ(j["data"][1]["workers"], 2);
  EXPECT_EQ(j["data"][2]["id"], "c");
  EXPECT_EQ(j["data"][1]["owned_by"], "qmesh");
}

TEST(OpenAi, WholeUtf8Characters) {
  std::string carry;
  const std::string euro = "\xe2\x82\xac";
  EXPECT_EQ(take_whole_utf8(carry, "a" + euro.substr(0, 1)), "a");
  EXPECT_EQ(take_whole_utf8(carry, euro.substr(1, 1)), "");
  EXPECT_EQ(take_whole_utf8(carry, euro.substr(2) + "b"), euro + "b");
  EXPECT_TRUE(carry.empty());
}
