// The results store opened: its default path, schema and migrations (an empty file, a version-1 store),
// hostile files and locations, a newer schema and a closed store. The rest is in the other test_store_*.
#include <QtTest>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "StoreTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "store/StoreMigrations.h"

using namespace ladder;
using ladder::test::store::freshStorePath;
using ladder::test::store::makePoints;
using ladder::test::store::sampleRun;

namespace {

namespace fs = std::filesystem;

} // namespace

class TestStore : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void defaultPathFollowsXdg();
    void createsSchemaAndVersion();
    void migratesEmptyFile();
    void migratesVersion1Store();
    void rejectsBadFiles();
    void rejectsNewerSchema();
    void closedStoreFailsCleanly();
};

void TestStore::defaultPathFollowsXdg()
{
    const QByteArray oldXdg = qgetenv("XDG_DATA_HOME");
    const QByteArray oldHome = qgetenv("HOME");
    qputenv("XDG_DATA_HOME", "/data/xdg");
    QCOMPARE(ResultsStore::defaultPath(), std::string("/data/xdg/ladderbench/results.sqlite"));
    qputenv("XDG_DATA_HOME", "relative/ignored");
    qputenv("HOME", "/home/someone");
    QCOMPARE(
        ResultsStore::defaultPath(), std::string("/home/someone/.local/share/ladderbench/results.sqlite"));
    qunsetenv("XDG_DATA_HOME");
    QCOMPARE(
        ResultsStore::defaultPath(), std::string("/home/someone/.local/share/ladderbench/results.sqlite"));
    if (oldXdg.isNull())
        qunsetenv("XDG_DATA_HOME");
    else
        qputenv("XDG_DATA_HOME", oldXdg);
    qputenv("HOME", oldHome);
}

void TestStore::createsSchemaAndVersion()
{
    const std::string path = ladder::test::makeTempDir() + "/nested/folder/results.sqlite";
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    QVERIFY(store.isOpen());
    QCOMPARE(store.path(), path);
    int version = 0;
    QVERIFY(store.schemaVersion(&version));
    QCOMPARE(version, ResultsStore::latestSchemaVersion());
    QCOMPARE(version, 3);
    std::string integrity;
    QVERIFY(store.integrityCheck(&integrity));
    QCOMPARE(integrity, std::string("ok"));
    store.close();

    QCOMPARE(test::rawQuery(path, "PRAGMA journal_mode"), std::string("wal"));
    QCOMPARE(test::rawQuery(path, "PRAGMA user_version"), std::string("3"));
    QCOMPARE(test::rawQuery(path,
                 "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = "
                 "'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)"),
        std::string("device_leases,evaluations,logs,metrics,runs"));
    const std::string indexes = test::rawQuery(path,
        "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master "
        "WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name)");
    for (const char* index : { "runs_by_status", "runs_by_task", "runs_by_backbone", "runs_by_method",
             "runs_by_spec_hash", "evaluations_by_run", "logs_by_run" })
        QVERIFY2(indexes.find(index) != std::string::npos, indexes.c_str());
    // The CHECK constraint on status holds for anyone who writes the file.
    QVERIFY(test::rawQuery(path,
                "INSERT INTO runs (created_at, spec_json, spec_hash, status) VALUES ('t', '{}', 'h', "
                "'bogus')")
                .find("CHECK constraint failed")
        != std::string::npos);

    // Opening again is a no-op migration.
    QVERIFY2(store.open(path, &error), error.c_str());
    QVERIFY(store.schemaVersion(&version));
    QCOMPARE(version, 3);
}

void TestStore::migratesEmptyFile()
{
    const std::string path = freshStorePath();
    {
        std::ofstream touch(path);
    }
    QCOMPARE(fs::file_size(path), std::uintmax_t(0));
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    int version = -1;
    QVERIFY(store.schemaVersion(&version));
    QCOMPARE(version, ResultsStore::latestSchemaVersion());
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun(), &id));
    QVERIFY(id > 0);
}

// A store written by a LadderBench of schema version 1 (built here from migration 1's own statements, as
// that version created it) opens, is migrated to the latest version, keeps every row and reads NULL for
// the columns version 2 added; the new figures then round-trip. (migratesExactVersion1Schema, in
// test_store_open_modes, builds the file from a frozen copy of the version-1 schema instead.)
void TestStore::migratesVersion1Store()
{
    const std::string path = freshStorePath();
    const auto& v1 = store_detail::migrations().front();
    QCOMPARE(v1.version, 1);
    QCOMPARE(test::rawQuery(path,
                 std::string(v1.sql) + "PRAGMA user_version = 1; PRAGMA application_id = "
                     + std::to_string(store_detail::kApplicationId) + ";"),
        std::string());
    QCOMPARE(
        test::rawQuery(path,
            "INSERT INTO runs (id, created_at, spec_json, spec_hash, method, status, step, total_steps, "
            "peak_allocated_bytes, best_validation_metric) VALUES (7, '2025-03-01T14:05:09.123Z', "
            "'{\"a\":1}', '0123456789abcdef', 'lst', 'finished', 20, 20, 123456, 0.5);"
            "INSERT INTO runs (id, created_at, spec_json, spec_hash, status, queue_position) VALUES "
            "(8, '2025-03-01T14:05:10.000Z', '{}', 'fedcba9876543210', 'queued', 1);"
            "INSERT INTO metrics (run_id, step, loss, peak_allocated_bytes, time) VALUES "
            "(7, 10, 0.25, 123000, 't'), (7, 20, 0.125, 123456, 't');"
            "INSERT INTO evaluations (run_id, step, split, main_metric, time) VALUES (7, 20, 'validation', "
            "0.5, 't');"
            "INSERT INTO logs (run_id, time, level, message) VALUES (7, 't', 'info', 'from version 1');"),
        std::string());
    QCOMPARE(test::rawQuery(path, "PRAGMA user_version"), std::string("1"));

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    int version = 0;
    QVERIFY(store.schemaVersion(&version));
    QCOMPARE(version, ResultsStore::latestSchemaVersion());
    std::string integrity;
    QVERIFY(store.integrityCheck(&integrity));
    QCOMPARE(integrity, std::string("ok"));

    std::vector<RunRecord> runs;
    QVERIFY2(store.listRuns({}, &runs, &error), error.c_str());
    QCOMPARE(runs.size(), std::size_t(2));
    const RunRecord& old = runs[0];
    QCOMPARE(old.id, std::int64_t(7));
    QCOMPARE(old.status, RunState::Finished);
    QCOMPARE(old.specJson, std::string("{\"a\":1}"));
    QCOMPARE(*old.figures.peakAllocatedBytes, std::int64_t(123456));
    QCOMPARE(*old.figures.bestValidationMetric, 0.5);
    QVERIFY(!old.figures.initPeakAllocatedBytes.has_value()); // NULL: not measured by version 1
    QVERIFY(!old.figures.evalPeakAllocatedBytes.has_value());
    QCOMPARE(runs[1].status, RunState::Queued);
    QCOMPARE(*runs[1].queuePosition, std::int64_t(1));
    std::vector<MetricPoint> points;
    QVERIFY(store.getMetrics(7, 0, &points));
    QCOMPARE(points.size(), std::size_t(2));
    QCOMPARE(*points[1].peakAllocatedBytes, std::int64_t(123456));
    std::vector<Evaluation> evals;
    QVERIFY(store.getEvaluations(7, &evals));
    QCOMPARE(evals.size(), std::size_t(1));
    std::vector<LogLine> logs;
    QVERIFY(store.getLogs(7, 0, &logs));
    QCOMPARE(logs.size(), std::size_t(1));
    QCOMPARE(logs[0].message, std::string("from version 1"));

    // The new columns take figures, merged like the others, and the queue still works.
    FinalFigures f;
    f.initPeakAllocatedBytes = 222222;
    f.evalPeakAllocatedBytes = 111111;
    QVERIFY2(store.setFinalFigures(7, f, &error), error.c_str());
    RunRecord r;
    QVERIFY(store.getRun(7, &r));
    QCOMPARE(*r.figures.initPeakAllocatedBytes, std::int64_t(222222));
    QCOMPARE(*r.figures.evalPeakAllocatedBytes, std::int64_t(111111));
    QCOMPARE(*r.figures.peakAllocatedBytes, std::int64_t(123456));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun(), &id));
    QVERIFY(id > 8); // AUTOINCREMENT kept its sequence
    store.close();
    QCOMPARE(test::rawQuery(
                 path, "SELECT init_peak_allocated_bytes, eval_peak_allocated_bytes FROM runs WHERE id = 8"),
        std::string("NULL|NULL"));
}

void TestStore::rejectsBadFiles()
{
    const std::string dir = ladder::test::makeTempDir();
    std::string error;

    // Garbage bytes.
    const std::string garbage = dir + "/garbage.sqlite";
    {
        std::ofstream out(garbage, std::ios::binary);
        std::mt19937 rng(7);
        for (int i = 0; i < 8192; ++i)
            out.put(static_cast<char>(rng() & 0xff));
    }
    ResultsStore store;
    QVERIFY(!store.open(garbage, &error));
    QVERIFY(!store.isOpen());
    QVERIFY2(error.find(garbage) != std::string::npos, error.c_str());
    QVERIFY2(error.find("not an SQLite database") != std::string::npos, error.c_str());
    QCOMPARE(store.lastError(), error);
    QCOMPARE(fs::file_size(garbage), std::uintmax_t(8192)); // left untouched

    // A text file that happens to be short.
    const std::string text = dir + "/notes.txt";
    {
        std::ofstream out(text);
        out << "hello, this is not a database\n";
    }
    QVERIFY(!store.open(text, &error));
    QVERIFY2(error.find("not an SQLite database") != std::string::npos, error.c_str());

    // A folder.
    QVERIFY(!store.open(dir, &error));
    QVERIFY2(error.find("is a folder") != std::string::npos, error.c_str());
    QVERIFY2(error.find(dir) != std::string::npos, error.c_str());

    // A location that cannot be written: below a regular file, and inside /proc (read-only even for root).
    QVERIFY(!store.open(text + "/results.sqlite", &error));
    QVERIFY2(error.find("is not a folder") != std::string::npos, error.c_str());
    QVERIFY(!store.open("/proc/ladderbench-test/results.sqlite", &error));
    QVERIFY2(error.find("cannot create its folder") != std::string::npos, error.c_str());
    if (geteuid() != 0) {
        const std::string readOnly = dir + "/readonly";
        fs::create_directory(readOnly);
        fs::permissions(readOnly, fs::perms::owner_read | fs::perms::owner_exec);
        QVERIFY(!store.open(readOnly + "/results.sqlite", &error));
        QVERIFY2(error.find("writable") != std::string::npos, error.c_str());
        fs::permissions(readOnly, fs::perms::owner_all);
    } else {
        qInfo("running as root: the chmod 0555 case is skipped (root writes anyway); /proc stands in for it");
    }

    // An SQLite database of someone else.
    const std::string other = dir + "/other.sqlite";
    QCOMPARE(test::rawQuery(other, "CREATE TABLE people (name TEXT)"), std::string());
    QVERIFY(!store.open(other, &error));
    QVERIFY2(error.find("not a results store") != std::string::npos, error.c_str());
    QCOMPARE(test::rawQuery(other, "SELECT count(*) FROM sqlite_master"), std::string("1")); // untouched
    const std::string otherApp = dir + "/other-app.sqlite";
    test::rawQuery(otherApp, "PRAGMA application_id = 1234");
    QVERIFY(!store.open(otherApp, &error));
    QVERIFY2(error.find("another application") != std::string::npos, error.c_str());

    QVERIFY(!store.open("", &error));

    // After all this the object still opens a good store.
    QVERIFY2(store.open(dir + "/good.sqlite", &error), error.c_str());
}

void TestStore::rejectsNewerSchema()
{
    const std::string path = freshStorePath();
    {
        ResultsStore store;
        QVERIFY(store.open(path));
    }
    QCOMPARE(test::rawQuery(path, "PRAGMA user_version = 99"), std::string());
    ResultsStore store;
    std::string error;
    QVERIFY(!store.open(path, &error));
    QVERIFY(!store.isOpen());
    QVERIFY2(error.find(path) != std::string::npos, error.c_str());
    QVERIFY2(error.find("schema version is 99") != std::string::npos, error.c_str());
    QVERIFY2(error.find("newer") != std::string::npos, error.c_str());
    QCOMPARE(test::rawQuery(path, "PRAGMA user_version"), std::string("99")); // not downgraded
}

void TestStore::closedStoreFailsCleanly()
{
    ResultsStore store;
    std::string error;
    QVERIFY(!store.isOpen());
    QVERIFY(!store.createRun(sampleRun(), nullptr, &error));
    QVERIFY2(error.find("not open") != std::string::npos, error.c_str());
    std::vector<RunRecord> runs;
    QVERIFY(!store.listRuns({}, &runs, &error));
    QVERIFY(!store.appendMetrics(1, makePoints(0, 1), &error));
}

QTEST_GUILESS_MAIN(TestStore)
#include "test_store.moc"
