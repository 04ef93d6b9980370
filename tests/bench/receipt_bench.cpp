// What receipts cost (issue 15): CPU time per receipt to sign (client), check and countersign
// (worker), verify (anyone, both signatures), encode, decode and store (add_receipt: an INSERT and
// a COMMIT with WAL + synchronous=FULL, so one fsync, and the store's own signature checks); the
// bytes on the wire per ask; and the database size per 100,000 receipts before and after fold().
//   receipt_bench [--ops N] [--stores N] [--receipts N] [--clients N] [--dir DIR]
// DIR must be on a real disk (not tmpfs) for the fsync to count; default: the current directory.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "../store/test_receipts.hpp"
#include "bench_util.hpp"
#include "store/score_db.hpp"

using namespace qmesh;
namespace trust = core::trust;
namespace fs = std::filesystem;

namespace {

template <class F>
double cpu_us_per(int n, F&& f) {
  const double c0 = bench::process_cpu_s();
  for (int i = 0; i < n; ++i) f(i);
  return (bench::process_cpu_s() - c0) / n * 1e6;
}

std::uintmax_t db_bytes(const std::string& path) {
  std::error_code ec;
  std::uintmax_t total = fs::file_size(path, ec);
  if (ec) total = 0;
  for (const char* suffix : {"-wal", "-shm"}) {
    const auto s = fs::file_size(path + suffix, ec);
    if (!ec) total += s;
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"receipt_bench: CPU, bytes and database size of receipts"};
  int ops = 5000, stores = 300, receipts = 100000, clients = 1000;
  std::string dir = ".";
  app.add_option("--ops", ops, "iterations of each in-memory step")->check(CLI::PositiveNumber);
  app.add_option("--stores", stores, "receipts stored one commit (fsync) each")->check(CLI::PositiveNumber);
  app.add_option("--receipts", receipts, "receipts for the size figure")->check(CLI::PositiveNumber);
  app.add_option("--clients", clients, "counterparties they are spread over")->check(CLI::PositiveNumber);
  app.add_option("--dir", dir, "where the database files go (a real disk)");
  CLI11_PARSE(app, argc, argv);

  const testing::TestKeys worker(1);
  std::vector<testing::TestKeys> client_keys;
  for (int i = 0; i < clients; ++i) client_keys.emplace_back(static_cast<std::uint32_t>(100 + i));
  const std::uint64_t now = 1'790'000'000;

  std::vector<trust::Receipt> rs(static_cast<std::size_t>(ops));
  for (int i = 0; i < ops; ++i) rs[static_cast<std::size_t>(i)] = testing::make_receipt(worker, client_keys[0], static_cast<std::uint64_t>(i), now, false);
  const double sign_us = cpu_us_per(ops, [&](int i) { trust::sign_as_client(rs[static_cast<std::size_t>(i)], client_keys[0].view()); });
  int bad = 0;
  const double check_us = cpu_us_per(ops, [&](int i) {
    const auto& r = rs[static_cast<std::size_t>(i)];
    trust::Served s{.worker = worker.pub, .client = client_keys[0].pub, .id = r.id, .model = r.model, .amount_in = r.amount_in,
                    .amount_out = r.amount_out, .parameters = r.parameters, .now_s = now};
    bad += trust::check_served(r, s) != trust::Verdict::Ok;
  });
  const double countersign_us = cpu_us_per(ops, [&](int i) { trust::countersign(rs[static_cast<std::size_t>(i)], worker.view()); });
  const double verify_us = cpu_us_per(ops, [&](int i) { bad += trust::verify_receipt(rs[static_cast<std::size_t>(i)]) != trust::Verdict::Ok; });
  std::vector<std::vector<std::uint8_t>> wire(static_cast<std::size_t>(ops));
  const double encode_us = cpu_us_per(ops, [&](int i) { wire[static_cast<std::size_t>(i)] = trust::encode_receipt(rs[static_cast<std::size_t>(i)]); });
  const double decode_us = cpu_us_per(ops, [&](int i) { bad += !trust::decode_receipt(wire[static_cast<std::size_t>(i)]); });
  if (bad) {
    std::fprintf(stderr, "receipt_bench: %d receipts failed a check\n", bad);
    return 1;
  }

  const fs::path base = fs::path(dir) / ("receipt_bench." + std::to_string(::getpid()));
  fs::create_directories(base);
  const std::string store_path = (base / "store.db").string();
  double store_us = 0, store_wall_ms = 0;
  {
    auto db = store::ScoreDb::open(store_path);
    if (!db) {
      std::fprintf(stderr, "receipt_bench: %s\n", db.error().message.c_str());
      return 1;
    }
    const int n = std::min(stores, ops);
    const auto w0 = std::chrono::steady_clock::now();
    store_us = cpu_us_per(n, [&](int i) { bad += !db->add_receipt(rs[static_cast<std::size_t>(i)]); });
    store_wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count() / n;
  }

  // Size: `receipts` receipts over `clients` counterparties, stored 1000 to a transaction, all
  // older than the fold age; then fold() everything into one row per pair.
  const std::string size_path = (base / "size.db").string();
  std::uintmax_t before = 0, after = 0;
  {
    auto db = store::ScoreDb::open(size_path);
    if (!db) return 1;
    std::vector<trust::Receipt> batch;
    for (int i = 0; i < receipts; ++i) {
      batch.push_back(testing::make_receipt(worker, client_keys[static_cast<std::size_t>(i % clients)],
                                            static_cast<std::uint64_t>(i), now - 40 * 86400 + static_cast<std::uint64_t>(i)));
      if (batch.size() == 1000 || i + 1 == receipts) {
        if (!db->add_receipts(batch)) return 1;
        batch.clear();
      }
    }
    if (!db->checkpoint()) return 1;
    before = db_bytes(size_path);
    const auto f = db->fold(now, 30 * 86400);
    if (!f || !db->checkpoint()) return 1;
    after = db_bytes(size_path);
  }
  fs::remove_all(base);

  const double per = 100000.0 / receipts;
  std::printf("receipt_bench (%d in-memory ops each; %d stores; %d receipts over %d clients for the size)\n", ops,
              std::min(stores, ops), receipts, clients);
  std::printf("  CPU per receipt: sign %.1f us, check+verify (worker) %.1f us, countersign %.1f us, verify both %.1f us, "
              "encode %.2f us, decode %.2f us, store %.1f us (wall %.2f ms, fsync included)\n",
              sign_us, check_us, countersign_us, verify_us, encode_us, decode_us, store_us, store_wall_ms);
  std::printf("  wire: %zu B client-signed (client -> worker) + %zu B countersigned (worker -> client) = %zu B per ask\n",
              trust::kClientSignedReceiptBytes, trust::kCountersignedReceiptBytes,
              trust::kClientSignedReceiptBytes + trust::kCountersignedReceiptBytes);
  std::printf("  database per 100,000 receipts: %.1f MB before fold (%.0f B/receipt), %.3f MB after (%d pair rows)\n",
              static_cast<double>(before) * per / 1e6, static_cast<double>(before) / receipts,
              static_cast<double>(after) * per / 1e6, clients);
  return 0;
}
