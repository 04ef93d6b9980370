// Writes one seed per DHT message type for the fuzz smoke test (generated at test time so no
// binary file is committed). Usage: dht_fuzz_seed DIR
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "core/dht/message.hpp"
#include "core/dht/record_store.hpp"

using namespace qmesh::core::dht;
using qmesh::core::Endpoint;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::array<std::uint8_t, 32> seed{};
  seed[0] = 1;
  const auto key = KeyPair::from_seed(seed);
  const Topic topic = topic_from_name("seed");
  const NodeId id = node_id_for(*Endpoint::parse("10.0.0.1:4000"));
  Token token{};
  token.fill(3);
  const std::vector<std::uint8_t> payload = {'{', '}'};
  std::vector<std::pair<std::string, Message>> msgs;
  Message m;
  m.txid = 1;
  m.id = node_id_for(*Endpoint::parse("10.0.0.2:4000"));
  m.body = Ping{};
  msgs.emplace_back("ping", m);
  m.body = FindNode{topic};
  msgs.emplace_back("find_node", m);
  m.token = token;
  m.body = Lookup{topic};
  msgs.emplace_back("lookup", m);
  m.body = Announce{topic, sign_record(topic, id, token, 1, 60, payload, key)};
  msgs.emplace_back("announce", m);
  m.body = Unannounce{topic, key.public_key, 2, sign_unannounce(topic, id, token, 2, key)};
  msgs.emplace_back("unannounce", m);
  Reply r;
  r.to = *Endpoint::parse("10.0.0.2:4000");
  r.nodes.push_back({id, *Endpoint::parse("10.0.0.1:4000")});
  r.nodes.push_back({node_id_for(*Endpoint::parse("[2001:db8::1]:4000")), *Endpoint::parse("[2001:db8::1]:4000")});
  r.records.push_back({sign_record(topic, id, token, 1, 60, payload, key), token, 30});
  r.truncated = true;
  m.body = r;
  msgs.emplace_back("reply", m);
  for (const auto& [name, msg] : msgs) {
    const std::string path = std::string(argv[1]) + "/" + name + ".bin";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
      std::perror(path.c_str());
      return 1;
    }
    const auto bytes = encode_message(msg, name == "ping" ? 300 : 0);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  return 0;
}
