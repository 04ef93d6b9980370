// dht_sim: runs the DHT simulator and prints its figures.
//   dht_sim [--nodes N] [--lookups N] [--churn F] [--loss F] [--seed S] [--alpha A] [--ephemeral F]
//           [--join-refresh] [--reachable-ephemeral F] [--auto-promote]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dht_sim.hpp"

int main(int argc, char** argv) {
  qmesh::sim::SimConfig c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nodes") c.nodes = std::strtoull(next(), nullptr, 10);
    else if (a == "--lookups") c.lookups = std::strtoull(next(), nullptr, 10);
    else if (a == "--churn") c.churn = std::strtod(next(), nullptr);
    else if (a == "--loss") c.loss = std::strtod(next(), nullptr);
    else if (a == "--seed") c.seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--alpha") c.alpha = std::strtoull(next(), nullptr, 10);
    else if (a == "--ephemeral") c.ephemeral = std::strtod(next(), nullptr);
    else if (a == "--join-refresh") c.join_refresh = true;
    else if (a == "--reachable-ephemeral") c.reachable_ephemeral = std::strtod(next(), nullptr);
    else if (a == "--auto-promote") c.auto_promote = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--nodes N] [--lookups N] [--churn F] [--loss F] [--seed S] [--alpha A] [--ephemeral F]\n"
                   "          [--join-refresh] [--reachable-ephemeral F] [--auto-promote]\n",
                   argv[0]);
      return 2;
    }
  }
  if (c.nodes < 3 || c.churn < 0 || c.churn > 1 || c.loss < 0 || c.loss >= 1 || c.ephemeral < 0 ||
      c.reachable_ephemeral < 0 || c.ephemeral + c.reachable_ephemeral > 1) {
    std::fprintf(stderr, "dht_sim: need --nodes >= 3, 0 <= --churn <= 1, 0 <= --loss < 1, --ephemeral + --reachable-ephemeral <= 1\n");
    return 2;
  }
  const auto r = qmesh::sim::run_dht_sim(c);
  std::fputs(qmesh::sim::format(c, r, true).c_str(), stdout);
  return 0;
}
