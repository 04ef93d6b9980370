// standing_sim: runs the standing simulator and prints its figures, for each p given (default:
// 0, 0.01, 0.05, 0.2), with and without depletion.
//   standing_sim [--honest N] [--sybils N] [--asks N] [--p F]... [--evaluators N] [--presented N] [--window F]
//                [--queue N] [--arrivals N] [--sybil-arrivals F] [--aging N] [--no-displace] [--hint]
//                [--order tiers|standing|credit|credit+standing]
//                [--seed S]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "standing_sim.hpp"

namespace {

bool number(const char* s, double& out) {
  char* end = nullptr;
  out = std::strtod(s, &end);
  return end != s && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  qmesh::sim::StandingSimConfig c;
  std::vector<double> ps;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-displace") {
      c.displace = false;
      continue;
    }
    if (a == "--hint") {
      c.hint = true;
      continue;
    }
    if (a == "--order") {
      using O = qmesh::sim::StandingSimConfig::Order;
      const std::string o = i + 1 < argc ? argv[++i] : "";
      if (o == "tiers") c.order = O::Tiers;
      else if (o == "standing") c.order = O::Standing;
      else if (o == "credit") c.order = O::Credit;
      else if (o == "credit+standing") c.order = O::CreditStanding;
      else {
        std::fprintf(stderr, "standing_sim: --order is tiers, standing, credit or credit+standing\n");
        return 2;
      }
      continue;
    }
    double v = 0;
    if (i + 1 >= argc || !number(argv[i + 1], v) || v < 0) {
      std::fprintf(stderr, "standing_sim: %s needs a number >= 0 (see the usage at the top of standing_sim_main.cpp)\n",
                   a.c_str());
      return 2;
    }
    ++i;
    if (a == "--honest") c.honest = static_cast<std::size_t>(v);
    else if (a == "--sybils") c.sybils = static_cast<std::size_t>(v);
    else if (a == "--asks") c.asks = static_cast<std::size_t>(v);
    else if (a == "--p") ps.push_back(v);
    else if (a == "--evaluators") c.evaluators = static_cast<std::size_t>(v);
    else if (a == "--presented") c.presented = static_cast<std::size_t>(v);
    else if (a == "--window") c.window = v;
    else if (a == "--queue") c.queue = static_cast<std::size_t>(v);
    else if (a == "--arrivals") c.arrivals = static_cast<std::size_t>(v);
    else if (a == "--sybil-arrivals") c.sybil_arrivals = v;
    else if (a == "--aging") c.aging_ticks = static_cast<int>(v);
    else if (a == "--seed") c.seed = static_cast<std::uint64_t>(v);
    else {
      std::fprintf(stderr, "standing_sim: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (c.honest < 3 || c.queue == 0 || c.aging_ticks <= 0 || c.sybil_arrivals > 1 || c.presented == 0) {
    std::fprintf(stderr,
                 "standing_sim: need --honest >= 3, --queue >= 1, --aging >= 1, --presented >= 1, --sybil-arrivals <= 1\n");
    return 2;
  }
  for (double p : ps)
    if (p > 1) {
      std::fprintf(stderr, "standing_sim: --p must be in [0, 1]\n");
      return 2;
    }
  if (ps.empty()) ps = {0, 0.01, 0.05, 0.2};
  for (double p : ps) {
    c.p = p;
    std::fputs(qmesh::sim::format(c, qmesh::sim::run_standing_sim(c)).c_str(), stdout);
    std::fflush(stdout);
  }
  return 0;
}
