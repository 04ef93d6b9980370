#include "store/score_db.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_receipts.hpp"

using namespace qmesh;
using namespace qmesh::store;
using qmesh::testing::make_receipt;
using qmesh::testing::TestKeys;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kNow = 1'790'000'000;
constexpr std::uint64_t kDay = 86400;

class ScoreDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qmesh-score-db-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    path_ = (dir_ / "sub" / "scores.db").string();  // the directory is created by open
  }
  void TearDown() override { fs::remove_all(dir_); }

  ScoreDb open() {
    auto db = ScoreDb::open(path_);
    EXPECT_TRUE(db) << (db ? "" : db.error().message);
    return std::move(db.value());
  }

  // A second, raw connection (as another process or the sqlite3 CLI would have).
  std::int64_t pragma(const std::string& name) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    std::int64_t v = -1;
    if (sqlite3_prepare_v2(db, ("PRAGMA " + name).c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      v = sqlite3_column_type(s, 0) == SQLITE_TEXT ? (std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "wal" ? 1 : 0)
                                                   : sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
  }

  void raw_exec(const std::string& text) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  fs::path dir_;
  std::string path_;
  const TestKeys worker_{1}, client_{2}, other_client_{3}, other_worker_{4};
};

}  // namespace

TEST_F(ScoreDbTest, NewFileHasTheSchemaAndPragmas) {
  { auto db = open(); }
  EXPECT_EQ(pragma("user_version"), kSchemaVersion);
  EXPECT_EQ(pragma("application_id"), kApplicationId);
  EXPECT_EQ(pragma("journal_mode"), 1);  // wal
  EXPECT_EQ(pragma("auto_vacuum"), 2);   // incremental
}

TEST_F(ScoreDbTest, AddedReceiptsSurviveReopenAndCountInTotals) {
  const auto a = make_receipt(worker_, client_, 1, kNow);
  const auto b = make_receipt(worker_, other_client_, 2, kNow + 1);
  const auto c = make_receipt(other_worker_, client_, 3, kNow + 2);
  {
    auto db = open();
    EXPECT_EQ(db.add_receipt(a).value(), AddResult::Added);
    EXPECT_EQ(db.add_receipt(b).value(), AddResult::Added);
    EXPECT_EQ(db.add_receipt(c).value(), AddResult::Added);
  }
  auto db = open();
  EXPECT_EQ(db.find_receipt(a.worker, a.client, a.id), a);
  EXPECT_EQ(db.find_receipt(c.worker, c.client, c.id), c);
  EXPECT_FALSE(db.find_receipt(c.worker, a.client, a.id));
  const auto mine = db.receipts_for(worker_.pub).value();
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0], b);  // newest first
  EXPECT_EQ(mine[1], a);
  const auto t = db.totals(worker_.pub).value();
  EXPECT_EQ(t.receipts_served, 2u);
  EXPECT_EQ(t.served_millicredits, core::trust::receipt_millicredits(a) + core::trust::receipt_millicredits(b));
  EXPECT_EQ(t.receipts_received, 0u);
  const auto tc = db.totals(client_.pub).value();
  EXPECT_EQ(tc.receipts_received, 2u);
  EXPECT_EQ(tc.received_millicredits, core::trust::receipt_millicredits(a) + core::trust::receipt_millicredits(c));
  const auto nobody = db.totals(TestKeys(99).pub).value();
  EXPECT_EQ(nobody.receipts_served + nobody.receipts_received, 0u);
}

TEST_F(ScoreDbTest, AReceiptCountsOnce) {
  auto db = open();
  const auto signed_only = make_receipt(worker_, client_, 7, kNow, /*worker_signs=*/false);
  const auto full = make_receipt(worker_, client_, 7, kNow);
  EXPECT_EQ(db.add_receipt(signed_only).value(), AddResult::Added);  // the client keeps it before sending
  EXPECT_EQ(db.add_receipt(signed_only).value(), AddResult::Replay);
  EXPECT_EQ(db.add_receipt(full).value(), AddResult::Upgraded);      // the worker's countersigned copy
  EXPECT_EQ(db.add_receipt(full).value(), AddResult::Replay);
  EXPECT_EQ(db.add_receipt(signed_only).value(), AddResult::Replay);  // does not undo the countersignature
  EXPECT_EQ(db.find_receipt(full.worker, full.client, full.id), full);
  // Another validly signed receipt under the same (worker, client, id) with other counts.
  auto other = make_receipt(worker_, client_, 7, kNow);
  other.amount_out += 1000;
  core::trust::sign_as_client(other, client_.view());
  core::trust::countersign(other, worker_.view());
  EXPECT_EQ(db.add_receipt(other).value(), AddResult::Conflict);
  EXPECT_EQ(db.find_receipt(full.worker, full.client, full.id), full);
  // The same id between other parties is another receipt.
  EXPECT_EQ(db.add_receipt(make_receipt(worker_, other_client_, 7, kNow)).value(), AddResult::Added);
  const auto t = db.totals(worker_.pub).value();
  EXPECT_EQ(t.receipts_served, 2u);
  // In one batch, a duplicate inside the batch counts once too.
  const std::vector batch = {make_receipt(worker_, client_, 8, kNow), make_receipt(worker_, client_, 8, kNow)};
  const auto res = db.add_receipts(batch).value();
  EXPECT_EQ(res, (std::vector{AddResult::Added, AddResult::Replay}));
}

TEST_F(ScoreDbTest, ForgedOrAlteredReceiptsAreNotStored) {
  auto db = open();
  auto r = make_receipt(worker_, client_, 1, kNow);
  r.amount_out += 1;
  auto res = db.add_receipt(r);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, "invalid");
  r = make_receipt(worker_, client_, 2, kNow);
  (*r.worker_sig)[0] ^= 1;
  EXPECT_FALSE(db.add_receipt(r));
  // A batch with one bad receipt stores none of it.
  const std::vector batch = {make_receipt(worker_, client_, 3, kNow), r};
  EXPECT_FALSE(db.add_receipts(batch));
  EXPECT_EQ(db.receipts_for(worker_.pub).value().size(), 0u);
}

TEST_F(ScoreDbTest, FoldKeepsTotalsBoundsTheFileAndRefusesFoldedReceipts) {
  auto db = open();
  std::vector<core::trust::Receipt> old, fresh;
  for (std::uint64_t i = 0; i < 3000; ++i)
    old.push_back(make_receipt(worker_, i % 2 ? client_ : other_client_, i, kNow - 40 * kDay + i));
  for (std::uint64_t i = 0; i < 10; ++i) fresh.push_back(make_receipt(worker_, client_, 10'000 + i, kNow - kDay));
  ASSERT_TRUE(db.add_receipts(old));
  ASSERT_TRUE(db.add_receipts(fresh));
  const auto before = db.totals(worker_.pub).value();
  const auto cp = db.checkpoint();
  ASSERT_TRUE(cp) << cp.error().message;
  const auto pages_before = pragma("page_count");

  const auto f = db.fold(kNow, 30 * kDay).value();
  EXPECT_EQ(f.receipts, 3000u);
  EXPECT_EQ(f.pairs, 2u);
  const auto after = db.totals(worker_.pub).value();
  EXPECT_EQ(after.served_millicredits, before.served_millicredits);
  EXPECT_EQ(after.receipts_served, 3010u);
  EXPECT_EQ(db.receipts_for(worker_.pub).value().size(), 10u);
  const auto pairs = db.summaries_for(worker_.pub).value();
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].folded_receipts + pairs[1].folded_receipts, 3000u);
  ASSERT_TRUE(db.checkpoint());
  EXPECT_LT(pragma("page_count"), pages_before / 4);  // incremental_vacuum gave the pages back
  EXPECT_EQ(pragma("freelist_count"), 0);

  // A folded receipt shown again is stale, not a second count; folding again changes nothing.
  EXPECT_EQ(db.add_receipt(old[5]).value(), AddResult::Stale);
  EXPECT_EQ(db.fold(kNow, 30 * kDay).value().receipts, 0u);
  EXPECT_EQ(db.totals(worker_.pub).value().served_millicredits, before.served_millicredits);
}

TEST_F(ScoreDbTest, SummariesKeepTheLatestSeq) {
  auto db = open();
  core::trust::Summary s{.worker = worker_.pub, .millicredits = 5000, .receipts = 4, .seq = 2, .time_s = kNow};
  core::trust::sign_summary(s, client_.view());
  EXPECT_EQ(db.put_summary(s).value(), AddResult::Added);
  EXPECT_EQ(db.put_summary(s).value(), AddResult::Replay);
  auto older = s;
  older.seq = 1;
  core::trust::sign_summary(older, client_.view());
  EXPECT_EQ(db.put_summary(older).value(), AddResult::Stale);
  auto newer = s;
  newer.seq = 3;
  newer.millicredits = 9000;
  core::trust::sign_summary(newer, client_.view());
  EXPECT_EQ(db.put_summary(newer).value(), AddResult::Upgraded);
  auto forged = newer;
  forged.seq = 4;  // altered after signing
  EXPECT_FALSE(db.put_summary(forged));
  const auto held = db.summaries_for(client_.pub).value();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].signed_summary, newer);
}

TEST_F(ScoreDbTest, RefusesNewerSchemaForeignFilesAndASecondWriter) {
  {
    auto db = open();
    auto again = ScoreDb::open(path_);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().kind, "in_use");
  }
  EXPECT_TRUE(ScoreDb::open(path_));  // released when the first closed

  raw_exec("PRAGMA user_version = 99");
  auto newer = ScoreDb::open(path_);
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().kind, "db_too_new");
  EXPECT_NE(newer.error().message.find("99"), std::string::npos);
  EXPECT_EQ(pragma("user_version"), 99);  // left as it was

  fs::remove(path_);
  raw_exec("CREATE TABLE other(x)");
  auto foreign = ScoreDb::open(path_);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message.find("not a QMesh score database"), std::string::npos);

  fs::remove(path_);
  std::ofstream(path_) << "this is not a database, just some text that is long enough to be read as a header......";
  auto junk = ScoreDb::open(path_);
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().message.find("not a SQLite database"), std::string::npos);
}
