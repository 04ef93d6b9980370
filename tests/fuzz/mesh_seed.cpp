// Writes mesh fuzz seeds: a worker record and a stream of each frame type.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/mesh/frame.hpp"
#include "core/mesh/record.hpp"

using namespace qmesh::core;

namespace {
void write(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: mesh_fuzz_seed DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  mesh::WorkerRecord r;
  r.available = true;
  mesh::ModelEntry m;
  m.name = "tiny";
  m.architecture = "llama";
  m.quantization = "F16";
  m.loaded = true;
  m.slots_total = 2;
  r.models = {m, m};
  r.models[1].name = "second";
  r.models[1].loaded = false;
  r.queue_capacity = 10;
  r.software = "qmesh-worker 0.1.0";
  write(dir + "/record", mesh::encode_worker_record(r));
  mesh::Request q;
  q.messages = {{"user", "hi"}};
  q.temperature = 0.5;
  q.resume = "he";
  std::vector<std::uint8_t> s = mesh::encode_frame(mesh::FrameType::Request, mesh::to_json(q));
  write(dir + "/request", s);
  mesh::Request t;  // the sampling fields of issue 13
  t.prompt = "Once";
  t.top_p = 0.9;
  t.stop = {"\n", "END"};
  write(dir + "/request_top_p_stop", mesh::encode_frame(mesh::FrameType::Request, mesh::to_json(t)));
  std::vector<std::uint8_t> reply;
  for (const auto& f : {mesh::encode_frame(mesh::FrameType::Token, "Hello"),
                        mesh::encode_frame(mesh::FrameType::Done, mesh::to_json(mesh::Done{1, 1, 2, 3, "word", 17, "tiny"})),
                        mesh::encode_frame(mesh::FrameType::Error, mesh::to_json(mesh::ErrorReply{"busy", "full", 500}))})
    reply.insert(reply.end(), f.begin(), f.end());
  write(dir + "/reply", reply);
  return 0;
}
