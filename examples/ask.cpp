// Asks the QMesh network through the C++ API (qmesh/client.hpp): lists the workers, streams the
// answer to stdout, prints the stats to stderr.
//   usage: ask_cpp [-b HOST:PORT]... [-n MAX_TOKENS] PROMPT
// Without -b: the comma-separated $QMESH_BOOTSTRAP, else the config file's "bootstrap" list.
#include <qmesh/client.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

int main(int argc, char** argv) {
  qmesh::ClientOptions options;
  qmesh::AskOptions ask;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-b" && i + 1 < argc) {
      options.bootstrap.push_back(argv[++i]);
    } else if (a == "-n" && i + 1 < argc) {
      ask.max_tokens = std::atoi(argv[++i]);
    } else if (ask.prompt.empty() && !a.empty() && a[0] != '-') {
      ask.prompt = a;
    } else {
      std::cerr << "usage: " << argv[0] << " [-b HOST:PORT]... [-n MAX_TOKENS] PROMPT\n";
      return 2;
    }
  }
  if (ask.prompt.empty()) {
    std::cerr << "usage: " << argv[0] << " [-b HOST:PORT]... [-n MAX_TOKENS] PROMPT\n";
    return 2;
  }
  if (options.bootstrap.empty()) {
    if (const char* env = std::getenv("QMESH_BOOTSTRAP")) {
      std::stringstream list(env);
      for (std::string b; std::getline(list, b, ',');)
        if (!b.empty()) options.bootstrap.push_back(b);
    }
  }
  try {
    qmesh::Client client(options);
    const auto workers = client.workers();
    std::cerr << workers.size() << " worker(s)\n";
    for (const auto& w : workers)
      std::cerr << "  " << w.id.substr(0, 16) << "  " << w.model << "  slots " << w.slots_busy << "/" << w.slots_total
                << "  score " << w.score << "\n";
    const auto r = client.ask(ask, [](std::string_view piece) { std::cout << piece << std::flush; });
    std::cout << "\n";
    std::fprintf(stderr, "worker %.16s: %llu tokens, first after %.0f ms, %.1f tokens/s, %.0f ms in all, %d retries%s\n",
                 r.worker.c_str(), static_cast<unsigned long long>(r.tokens), r.ttft_ms, r.tokens_per_second,
                 r.total_ms, r.retries, r.resumed ? " (resumed)" : "");
    return 0;
  } catch (const qmesh::Error& e) {
    std::cerr << "error: " << e.kind() << ": " << e.what() << "\n";
    return 1;
  }
}
