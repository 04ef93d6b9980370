// Writes one of each rendezvous message as fuzz seeds.
#include <cstdio>
#include <fstream>
#include <string>

#include "core/nat/rendezvous.hpp"

using namespace qmesh::core;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: rendezvous_fuzz_seed DIR\n");
    return 2;
  }
  rendezvous::Connect c;
  c.info.local = {qmesh::core::Endpoint::v4(10, 0, 0, 2, 4000)};
  rendezvous::ConnectReply r;
  r.worker = qmesh::core::Endpoint::v4(198, 18, 0, 1, 1);
  r.client = *qmesh::core::Endpoint::parse("[fd00::1]:2");
  rendezvous::Introduce i;
  i.client = r.worker;
  i.info = c.info;
  int n = 0;
  for (const rendezvous::Message& m : {rendezvous::Message(c), rendezvous::Message(r), rendezvous::Message(i)}) {
    auto b = rendezvous::encode_message(m);
    std::ofstream(std::string(argv[1]) + "/msg" + std::to_string(n++), std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  return 0;
}
