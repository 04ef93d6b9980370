// A long-lived client (one qmesh::Client for the whole run, as an app holds one) that asks every
// half second until the stop file appears, printing one line per ask: "ok" or "error KIND: ...",
// then "(t=SECONDS)" since start. The
// rejoin test keeps it running while the only bootstrap node is killed and restarted.
//   rejoin_client --bootstrap HOST:PORT --stop FILE
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <sys/stat.h>

#include "qmesh/client.hpp"

int main(int argc, char** argv) {
  std::string bootstrap, stop;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bootstrap") bootstrap = v;
    else if (k == "--stop") stop = v;
  }
  if (bootstrap.empty() || stop.empty()) {
    std::fprintf(stderr, "usage: rejoin_client --bootstrap HOST:PORT --stop FILE\n");
    return 2;
  }
  try {
    qmesh::ClientOptions opts;
    opts.bootstrap = {bootstrap};
    qmesh::Client client(opts);
    const auto t0 = std::chrono::steady_clock::now();
    auto t = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    struct stat st;
    while (::stat(stop.c_str(), &st) != 0) {
      qmesh::AskOptions a;
      a.prompt = "Hello";
      a.max_tokens = 4;
      a.timeout = std::chrono::seconds(10);
      try {
        client.ask(a, [](std::string_view) {});
        std::printf("ok (t=%.1f)\n", t());
      } catch (const qmesh::Error& e) {
        std::printf("error %s: %s (t=%.1f)\n", e.kind().c_str(), e.what(), t());
      }
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  } catch (const qmesh::Error& e) {
    std::fprintf(stderr, "rejoin_client: %s\n", e.what());
    return 1;
  }
  return 0;
}
