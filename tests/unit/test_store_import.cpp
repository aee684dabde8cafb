// ResultsStore::importStore: the runs of another store copied with their metrics, evaluations, logs and
// checkpoints; importing again copies nothing; corrupt, foreign, locked and half-finished stores and
// damaged checkpoints are skipped with a reason, leaving the main store and its files folder as they were.
#include <QtTest>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "StoreTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using ladder::test::store::makePoints;
using ladder::test::store::sampleRun;

namespace {

namespace fs = std::filesystem;

struct SourceRunPlan {
    std::string name;
    RunState end = RunState::Finished; // Running or Queued: left so
    bool checkpoint = false;
};

// A store at `path` with one run per plan entry: 5 metric points, a validation and a test evaluation, a
// log line, final figures, and (when asked) a checkpoint file recorded with its hash.
void makeSourceStore(const std::string& path, const std::vector<SourceRunPlan>& plans)
{
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    for (const auto& plan : plans) {
        std::int64_t id = 0;
        const auto status = plan.end == RunState::Queued ? RunState::Queued : RunState::Running;
        QVERIFY2(store.createRun(sampleRun(plan.name, status), &id, &error), error.c_str());
        if (plan.end == RunState::Queued)
            continue;
        QVERIFY2(store.appendMetrics(id, makePoints(1, 5), &error), error.c_str());
        for (const char* split : { "validation", "test" }) {
            Evaluation e;
            e.runId = id;
            e.step = 5;
            e.split = split;
            e.metrics = { { "accuracy", 0.75 }, { "f1", 0.5 } };
            e.mainMetricName = "accuracy";
            e.mainMetric = 0.75;
            QVERIFY2(store.addEvaluation(e, nullptr, &error), error.c_str());
        }
        QVERIFY2(store.addLog(id, LogLevel::Info, "trained " + plan.name, &error), error.c_str());
        if (plan.checkpoint) {
            fs::create_directories(fs::path(store.checkpointPath(id)).parent_path());
            std::ofstream(store.checkpointPath(id)) << "weights of " << plan.name;
            QVERIFY2(store.recordCheckpoint(id, &error), error.c_str());
        }
        if (plan.end == RunState::Running)
            continue;
        FinalFigures f;
        f.bestValidationMetric = 0.75;
        f.mainMetricName = "accuracy";
        f.peakAllocatedBytes = 12345;
        f.wallSeconds = 1.5;
        QVERIFY2(store.finishRun(id, plan.end, f, plan.end == RunState::Failed ? "loss is NaN" : "", &error),
            error.c_str());
    }
}

std::vector<RunRecord> allRuns(const std::string& path)
{
    ResultsStore store;
    std::string error;
    std::vector<RunRecord> runs;
    if (!store.open(path, ResultsStore::OpenMode::ReadOnly, &error) || !store.listRuns({}, &runs, &error))
        qWarning("%s", error.c_str());
    return runs;
}

// Every file under the store's files folder (relative names, sorted).
std::vector<std::string> filesUnder(const std::string& dir)
{
    std::vector<std::string> files;
    std::error_code ec;
    if (!fs::exists(dir, ec))
        return files;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
        if (entry.is_regular_file())
            files.push_back(fs::relative(entry.path(), dir).string());
    std::sort(files.begin(), files.end());
    return files;
}

// The main store with one run of its own, and the store and files folder as they were (to compare).
struct MainStore {
    std::string path;
    std::string dump; // every row of every table, as text
    std::vector<std::string> files;
};

std::string dumpOf(const std::string& path)
{
    std::string out;
    for (const char* table : { "runs", "metrics", "evaluations", "logs" })
        out += std::string(table) + ":\n" + test::rawQuery(path, std::string("SELECT * FROM ") + table)
            + "\n";
    return out;
}

MainStore makeMainStore(const std::string& dir)
{
    MainStore m;
    m.path = dir + "/main.sqlite";
    makeSourceStore(m.path, { { "main-own", RunState::Finished, true } });
    m.dump = dumpOf(m.path);
    m.files = filesUnder(ResultsStore::filesDirFor(m.path));
    return m;
}

void verifyUntouched(const MainStore& m)
{
    QCOMPARE(dumpOf(m.path), m.dump);
    QCOMPARE(filesUnder(ResultsStore::filesDirFor(m.path)), m.files);
}

} // namespace

class TestStoreImport : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void importsRunsWithEverything();
    void importingAgainImportsNothing();
    void finishedRunOfTheSameSpecIsPresent();
    void corruptStoresAreSkipped();
    void halfFinishedStoresAreSkipped();
    void damagedCheckpointLeavesTheMainStoreAsItWas();
    void lockedStoreIsSkipped();
};

void TestStoreImport::importsRunsWithEverything()
{
    const auto dir = test::makeTempDir();
    const auto source = dir + "/run-0.sqlite";
    makeSourceStore(source,
        { { "a", RunState::Finished, true }, { "b", RunState::Failed, false },
            { "c", RunState::Finished, true } });
    const auto main = makeMainStore(dir);

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    StoreImport result;
    QVERIFY2(store.importStore(source, &result, &error), error.c_str());
    QCOMPARE(result.source, source);
    QCOMPARE(result.runsInSource, 3);
    QCOMPARE(result.imported, 3);
    QCOMPARE(result.alreadyPresent, 0);
    QCOMPARE(result.importedIds, (std::vector<std::int64_t> { 2, 3, 4 }));
    QVERIFY(result.skipReason.empty());

    const auto sourceRuns = allRuns(source);
    const auto mainRuns = allRuns(main.path);
    QCOMPARE(mainRuns.size(), std::size_t(4));
    ResultsStore from;
    QVERIFY2(from.open(source, ResultsStore::OpenMode::ReadOnly, &error), error.c_str());
    for (std::size_t i = 0; i < 3; ++i) {
        const auto& s = sourceRuns[i];
        const auto& m = mainRuns[i + 1];
        QCOMPARE(m.name, s.name);
        QCOMPARE(m.status, s.status);
        QCOMPARE(m.specJson, s.specJson);
        QCOMPARE(m.specHash, s.specHash);
        QCOMPARE(m.seed, s.seed);
        QCOMPARE(m.createdAt, s.createdAt);
        QCOMPARE(m.finishedAt, s.finishedAt);
        QCOMPARE(m.errorMessage, s.errorMessage);
        QCOMPARE(m.figures.bestValidationMetric, s.figures.bestValidationMetric);
        QCOMPARE(m.figures.peakAllocatedBytes, s.figures.peakAllocatedBytes);
        QVERIFY(!m.ownerPid);
        std::vector<MetricPoint> sp, mp;
        QVERIFY(from.getMetrics(s.id, ResultsStore::kAllSteps, &sp)
            && store.getMetrics(m.id, ResultsStore::kAllSteps, &mp));
        QCOMPARE(mp.size(), std::size_t(5));
        for (std::size_t k = 0; k < sp.size(); ++k) {
            QCOMPARE(mp[k].step, sp[k].step);
            QCOMPARE(mp[k].loss, sp[k].loss);
            QCOMPARE(mp[k].time, sp[k].time);
        }
        std::vector<Evaluation> se, me;
        QVERIFY(from.getEvaluations(s.id, &se) && store.getEvaluations(m.id, &me));
        QCOMPARE(me.size(), std::size_t(2));
        QCOMPARE(me[1].split, se[1].split);
        QCOMPARE(me[1].metrics, se[1].metrics);
        std::vector<LogLine> logs;
        QVERIFY(store.getLogs(m.id, 0, &logs));
        QCOMPARE(logs.size(), std::size_t(2));
        QCOMPARE(logs[0].message, "trained " + s.name);
        QCOMPARE(logs[1].message, "imported from " + source + " (run " + std::to_string(s.id) + " there)");
        // The checkpoint: copied under the new id, recorded with the source's hash, checked.
        if (s.checkpointFile.empty()) {
            QVERIFY(m.checkpointFile.empty());
            continue;
        }
        QCOMPARE(m.checkpointFile, "checkpoints/run-" + std::to_string(m.id) + ".safetensors");
        QCOMPARE(m.checkpointSha256, s.checkpointSha256);
        std::string path;
        QVERIFY2(store.verifyCheckpoint(m.id, &path, &error), error.c_str());
        std::ifstream in(path);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        QCOMPARE(text, "weights of " + s.name);
    }
    // Nothing else in the files folder: no temporary copies left.
    QCOMPARE(filesUnder(store.filesDir()),
        (std::vector<std::string> { "checkpoints/run-1.safetensors", "checkpoints/run-2.safetensors",
            "checkpoints/run-4.safetensors" }));
    // The source was only read.
    QCOMPARE(allRuns(source).size(), std::size_t(3));
}

void TestStoreImport::importingAgainImportsNothing()
{
    const auto dir = test::makeTempDir();
    const auto source = dir + "/run-1.sqlite";
    makeSourceStore(source, { { "a", RunState::Finished, true }, { "b", RunState::Failed, false } });
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(dir + "/main.sqlite", &error), error.c_str());
    StoreImport result;
    QVERIFY2(store.importStore(source, &result, &error), error.c_str());
    QCOMPARE(result.imported, 2);
    const auto dump = dumpOf(store.path());
    const auto files = filesUnder(store.filesDir());
    QVERIFY2(store.importStore(source, &result, &error), error.c_str());
    QCOMPARE(result.imported, 0);
    QCOMPARE(result.alreadyPresent, 2); // the failed run too: it is the same record (same created_at)
    QVERIFY(result.importedIds.empty());
    QCOMPARE(dumpOf(store.path()), dump);
    QCOMPARE(filesUnder(store.filesDir()), files);
}

void TestStoreImport::finishedRunOfTheSameSpecIsPresent()
{
    const auto dir = test::makeTempDir();
    const auto main = makeMainStore(dir); // its run "main-own" is finished
    const auto source = dir + "/other.sqlite";
    // The same spec trained elsewhere (finished, and failed): the main store has its result already. A
    // new spec is imported.
    makeSourceStore(source,
        { { "main-own", RunState::Finished, true }, { "main-own", RunState::Failed, false },
            { "new", RunState::Finished, false } });
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    StoreImport result;
    QVERIFY2(store.importStore(source, &result, &error), error.c_str());
    QCOMPARE(result.imported, 1);
    QCOMPARE(result.alreadyPresent, 2);
    QCOMPARE(allRuns(main.path).back().name, std::string("new"));
}

void TestStoreImport::corruptStoresAreSkipped()
{
    const auto dir = test::makeTempDir();
    const auto main = makeMainStore(dir);
    // Not SQLite.
    const auto text = dir + "/notes.sqlite";
    std::ofstream(text) << std::string(8192, 'x');
    // SQLite, but another application's.
    const auto foreign = dir + "/foreign.sqlite";
    QCOMPARE(test::rawQuery(foreign, "CREATE TABLE t (x); INSERT INTO t VALUES (1)"), std::string());
    // A store whose pages were overwritten in the middle: SQLite's integrity check fails.
    const auto damaged = dir + "/damaged.sqlite";
    {
        ResultsStore s;
        std::string error;
        QVERIFY2(s.open(damaged, &error), error.c_str());
        std::int64_t id = 0;
        QVERIFY2(s.createRun(sampleRun("x", RunState::Running), &id, &error), error.c_str());
        QVERIFY2(s.appendMetrics(id, makePoints(1, 2000), &error), error.c_str());
        QVERIFY2(s.finishRun(id, RunState::Finished, {}, "", &error), error.c_str());
    }
    const auto size = fs::file_size(damaged);
    QVERIFY(size > 40000);
    {
        std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size / 2));
        const std::string junk(6000, '\x5a');
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    const auto missing = dir + "/missing.sqlite";
    const auto empty = dir + "/empty.sqlite";
    std::ofstream(empty).close();

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    const std::vector<std::pair<std::string, std::string>> cases { { text, "not an SQLite database" },
        { foreign, "not a LadderBench results store" }, { damaged, "" }, { missing, "no results store at" },
        { empty, "an empty file" }, { main.path, "it is this store itself" } };
    for (const auto& [file, reason] : cases) {
        StoreImport result;
        QVERIFY2(!store.importStore(file, &result, &error), file.c_str());
        QVERIFY2(!result.skipReason.empty(), file.c_str());
        QVERIFY2(result.skipReason.find(reason) != std::string::npos, result.skipReason.c_str());
        QCOMPARE(result.imported, 0);
        QVERIFY2(error.find(file) != std::string::npos, error.c_str()); // the message names the file
        qInfo("%s: %s", file.c_str(), result.skipReason.c_str());
    }
    // The damaged store: SQLite's words after the check that caught it.
    StoreImport result;
    QVERIFY(!store.importStore(damaged, &result, &error));
    QVERIFY2(result.skipReason.find("it failed SQLite's integrity check: ") == 0, result.skipReason.c_str());
    // After every skip the store imports as before (nothing left attached).
    const auto good = dir + "/good.sqlite";
    makeSourceStore(good, { { "good", RunState::Finished, true } });
    QVERIFY2(store.importStore(good, &result, &error), error.c_str());
    QCOMPARE(result.imported, 1);
    store.close();
    QCOMPARE(allRuns(main.path).size(), std::size_t(2));
}

void TestStoreImport::halfFinishedStoresAreSkipped()
{
    const auto dir = test::makeTempDir();
    const auto main = makeMainStore(dir);
    const auto running = dir + "/running.sqlite";
    makeSourceStore(running, { { "done", RunState::Finished, true }, { "going", RunState::Running, true } });
    const auto queued = dir + "/queued.sqlite";
    makeSourceStore(
        queued, { { "done", RunState::Finished, false }, { "waiting", RunState::Queued, false } });
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    StoreImport result;
    QVERIFY(!store.importStore(running, &result, &error));
    QCOMPARE(result.runsInSource, 2);
    QVERIFY2(result.skipReason.find("half-finished: run 2 is still running") != std::string::npos,
        result.skipReason.c_str());
    QVERIFY2(!store.importStore(queued, &result, &error), error.c_str());
    QVERIFY2(result.skipReason.find("half-finished: run 2 is still queued") != std::string::npos,
        result.skipReason.c_str());
    store.close();
    verifyUntouched(main);
}

void TestStoreImport::damagedCheckpointLeavesTheMainStoreAsItWas()
{
    const auto dir = test::makeTempDir();
    const auto main = makeMainStore(dir);
    // The first run's checkpoint is fine (it is copied before the second fails), the second's was
    // changed after it was recorded.
    const auto source = dir + "/run-2.sqlite";
    makeSourceStore(source, { { "ok", RunState::Finished, true }, { "changed", RunState::Finished, true } });
    const auto changed = ResultsStore::checkpointPathFor(source, 2);
    std::ofstream(changed, std::ios::app) << "!";
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    StoreImport result;
    QVERIFY(!store.importStore(source, &result, &error));
    QVERIFY2(result.skipReason.find("the checkpoint of run 2, " + changed
                 + ", is not the file its store "
                   "recorded")
            != std::string::npos,
        result.skipReason.c_str());
    // A missing checkpoint.
    fs::remove(changed);
    QVERIFY(!store.importStore(source, &result, &error));
    QVERIFY2(
        result.skipReason.find(changed + ", is missing") != std::string::npos, result.skipReason.c_str());
    store.close();
    verifyUntouched(main);
}

void TestStoreImport::lockedStoreIsSkipped()
{
    const auto dir = test::makeTempDir();
    const auto main = makeMainStore(dir);
    const auto source = dir + "/locked.sqlite";
    makeSourceStore(source, { { "a", RunState::Finished, false } });
    // Another process's writer in exclusive locking mode holds the file: readers get SQLITE_BUSY.
    sqlite3* holder = nullptr;
    QCOMPARE(sqlite3_open(source.c_str(), &holder), SQLITE_OK);
    QCOMPARE(
        sqlite3_exec(holder, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE runs SET name = name",
            nullptr, nullptr, nullptr),
        SQLITE_OK);
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(main.path, &error), error.c_str());
    QVERIFY(store.setBusyTimeout(200));
    StoreImport result;
    QVERIFY(!store.importStore(source, &result, &error));
    QVERIFY2(result.skipReason.find("it is locked: another process is writing it") != std::string::npos,
        result.skipReason.c_str());
    sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(holder);
    QVERIFY2(store.importStore(source, &result, &error), error.c_str());
    QCOMPARE(result.imported, 1);
}

QTEST_GUILESS_MAIN(TestStoreImport)
#include "test_store_import.moc"
