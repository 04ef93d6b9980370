// The kill -9 test's writer (tests/store/kill9_receipts.sh): stores signed receipts in a loop and
// prints each one's id on stdout only after add_receipt returned, i.e. only once it may be
// acknowledged to the other side. Killed with -9 at random moments; never ends on its own.
//
//   receipt_writer --db PATH --role worker|client --start N
// worker: checks each client-signed receipt, countersigns it, stores it, then acks "<id hex> 1"
//         (the countersigned receipt goes back to the client).
// client: stores the receipt it signed, acks "<id hex> 0" (it is sent to the worker), then stores
//         the worker's countersigned copy and acks "<id hex> 1".
// Every 20 receipts it runs fold() (a cutoff 30 days back, so nothing acked is folded away), so the
// kills land in folds and incremental vacuums too.
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "store/score_db.hpp"
#include "test_receipts.hpp"

using namespace qmesh;

namespace {

void ack(const core::trust::ReceiptId& id, bool countersigned) {
  char hex[2 * sizeof(id) + 1];
  for (std::size_t i = 0; i < id.size(); ++i) std::snprintf(hex + 2 * i, 3, "%02X", id[i]);
  std::printf("%s %d\n", hex, countersigned ? 1 : 0);
  std::fflush(stdout);
}

int fail(const std::string& what) {
  std::fprintf(stderr, "receipt_writer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string db_path, role;
  std::uint64_t start = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--db") db_path = argv[i + 1];
    else if (flag == "--role") role = argv[i + 1];
    else if (flag == "--start") start = std::strtoull(argv[i + 1], nullptr, 10);
    else return fail("unknown flag " + flag);
  }
  if (db_path.empty() || (role != "worker" && role != "client"))
    return fail("usage: receipt_writer --db PATH --role worker|client --start N");
  auto db = store::ScoreDb::open(db_path);
  if (!db) return fail(db.error().message);
  const testing::TestKeys worker(1), client(2);
  for (std::uint64_t n = start;; ++n) {
    const auto now = static_cast<std::uint64_t>(std::time(nullptr));
    auto r = testing::make_receipt(worker, client, n, now, /*worker_signs=*/false);
    if (role == "client") {
      auto a = db->add_receipt(r);
      if (!a || *a != store::AddResult::Added) return fail(a ? "unexpected " + std::string(to_string(*a)) : a.error().message);
      ack(r.id, false);
    }
    core::trust::Served served{.worker = worker.pub, .client = client.pub, .id = r.id, .model = r.model,
                               .amount_in = r.amount_in, .amount_out = r.amount_out, .parameters = r.parameters,
                               .now_s = now};
    if (core::trust::check_served(r, served) != core::trust::Verdict::Ok) return fail("check_served failed");
    if (core::trust::countersign(r, worker.view()) != core::trust::Verdict::Ok) return fail("countersign failed");
    auto a = db->add_receipt(r);
    const auto want = role == "client" ? store::AddResult::Upgraded : store::AddResult::Added;
    if (!a || *a != want) return fail(a ? "unexpected " + std::string(to_string(*a)) : a.error().message);
    ack(r.id, true);
    if (n % 20 == 0) {
      if (auto f = db->fold(now, 30 * 86400); !f) return fail(f.error().message);
    }
  }
}
