// The results store: schema and migrations, every field round trip, batched metrics, a reader beside a
// writer, a writer killed with SIGKILL mid-run, hostile files, CSV export and the queue.
#include <QtTest>

#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "store/MetricsWriter.h"
#include "store/ResultsStore.h"
#include "store/RunsCsv.h"
#include "store/SpecHash.h"
#include "store/StoreMigrations.h"

using namespace ladder;

namespace {

namespace fs = std::filesystem;

std::string freshStorePath(const std::string& name = "results.sqlite")
{
    return ladder::test::makeTempDir() + "/" + name;
}

NewRun sampleRun(
    const std::string& name = "lst-r8", RunState status = RunState::Queued, const std::string& device = "cpu")
{
    NewRun r;
    r.name = name;
    r.specJson = nlohmann::json {
        { "method", { { "name", "lst" }, { "r", 8 } } }, { "task", "rte" }, { "seed", 1 }, { "name", name }
    }.dump();
    r.method = "lst";
    r.methodOptionsJson = R"({"r":8,"keep":[1,3,5]})";
    r.backbone = "demo";
    r.task = "rte";
    r.seed = 1;
    r.device = device;
    r.status = status;
    r.totalSteps = 500;
    return r;
}

std::vector<MetricPoint> makePoints(std::int64_t firstStep, std::int64_t count)
{
    std::vector<MetricPoint> points;
    points.reserve(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
        MetricPoint p;
        p.step = firstStep + i;
        p.epoch = static_cast<double>(p.step) / 1000.0;
        p.loss = 1.0 / static_cast<double>(p.step + 1);
        p.learningRate = 1e-3;
        p.allocatedBytes = 1000 + p.step;
        p.peakAllocatedBytes = 2000 + p.step;
        p.reservedBytes = 4096;
        p.tokensPerSecond = 123.5;
        p.elapsedSeconds = 0.01 * static_cast<double>(p.step);
        points.push_back(std::move(p));
    }
    return points;
}

// Splits RFC 4180 text into records of fields (enough for checking the export).
std::vector<std::vector<std::string>> parseCsv(const std::string& text)
{
    std::vector<std::vector<std::string>> records;
    std::vector<std::string> record;
    std::string field;
    bool quoted = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (quoted) {
            if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
                field += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                field += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            record.push_back(field);
            field.clear();
        } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
            record.push_back(field);
            field.clear();
            records.push_back(record);
            record.clear();
            ++i;
        } else {
            field += c;
        }
    }
    return records;
}

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes the whole buffer to a pipe (child side of the kill tests).
void writeAll(int fd, const void* data, std::size_t size)
{
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n <= 0)
            _exit(3);
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

constexpr std::int64_t kKillBatchPoints = 400;

} // namespace

class TestStore : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void defaultPathFollowsXdg();
    void createsSchemaAndVersion();
    void migratesEmptyFile();
    void migratesVersion1Store();
    void roundTripsEveryField();
    void finalFiguresMergeAndStatusRules();
    void batchedMetrics();
    void metricsWriterBatches();
    void evaluationsAndLogs();
    void specHashAndFinishedLookup();
    void queueOperations();
    void deleteCascades();
    void liveOwnerKeepsRunRunning();
    void readerWhileWriterWrites();
    void survivesKillOfWriterMidRun();
    void killInsideOpenTransactionLeavesNothing();
    void rejectsBadFiles();
    void rejectsNewerSchema();
    void closedStoreFailsCleanly();
    void csvField_data();
    void csvField();
    void exportsCsv();
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
// the columns version 2 added; the new figures then round-trip. (migratesExactVersion1Schema builds the
// file from a frozen copy of the version-1 schema instead.)
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

void TestStore::roundTripsEveryField()
{
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(freshStorePath(), &error), error.c_str());

    NewRun in = sampleRun("round trip ünïcödé", RunState::Running, "cuda:0");
    in.specJson = "{ \"b\": 2,\n  \"a\": [1, 2.5, \"x\"] }"; // kept byte for byte
    in.seed = -42;
    std::int64_t id = 0;
    QVERIFY2(store.createRun(in, &id, &error), error.c_str());
    QVERIFY(store.setProgress(id, 120, 800, &error));

    FinalFigures f;
    f.bestValidationMetric = 0.8125;
    f.bestStep = 640;
    f.testMetric = 0.75;
    f.mainMetricName = "accuracy";
    f.lastMetric = 0.79;
    f.peakAllocatedBytes = 12345678901LL;
    f.peakReservedBytes = 22345678901LL;
    f.initPeakAllocatedBytes = 32345678901LL;
    f.evalPeakAllocatedBytes = 42345678901LL;
    f.weightBytes = 1000;
    f.gradientBytes = 2000;
    f.optimizerBytes = 4000;
    f.trainableParams = 2500;
    f.totalParams = 100000;
    f.backboneParams = 50000;
    f.wallSeconds = 61.25;
    f.tokensPerSecond = 1234.5;
    QVERIFY2(store.finishRun(id, RunState::Finished, f, {}, &error), error.c_str());

    RunRecord r;
    QVERIFY2(store.getRun(id, &r, &error), error.c_str());
    QCOMPARE(r.id, id);
    QCOMPARE(r.name, in.name);
    QCOMPARE(r.specJson, in.specJson);
    QCOMPARE(r.specHash, specHashFromText(in.specJson));
    QCOMPARE(r.specHash.size(), std::size_t(16));
    QCOMPARE(r.method, in.method);
    QCOMPARE(r.methodOptionsJson, in.methodOptionsJson);
    QCOMPARE(r.backbone, in.backbone);
    QCOMPARE(r.task, in.task);
    QVERIFY(r.seed.has_value());
    QCOMPARE(*r.seed, std::int64_t(-42));
    QCOMPARE(r.device, std::string("cuda:0"));
    QCOMPARE(r.status, RunState::Finished);
    QVERIFY(r.errorMessage.empty());
    QVERIFY(!r.queuePosition.has_value());
    QCOMPARE(r.step, std::int64_t(120));
    QCOMPARE(r.totalSteps, std::int64_t(800));
    QVERIFY(r.ownerPid.has_value());
    QCOMPARE(*r.ownerPid, std::int64_t(getpid()));
    // ISO-8601 UTC with milliseconds, in order.
    const QRegularExpression iso(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
    QVERIFY2(iso.match(QString::fromStdString(r.createdAt)).hasMatch(), r.createdAt.c_str());
    QVERIFY(iso.match(QString::fromStdString(r.startedAt)).hasMatch());
    QVERIFY(iso.match(QString::fromStdString(r.finishedAt)).hasMatch());
    QVERIFY(r.createdAt <= r.startedAt && r.startedAt <= r.finishedAt);

    const FinalFigures& g = r.figures;
    QCOMPARE(*g.bestValidationMetric, 0.8125);
    QCOMPARE(*g.bestStep, std::int64_t(640));
    QCOMPARE(*g.testMetric, 0.75);
    QCOMPARE(g.mainMetricName, std::string("accuracy"));
    QCOMPARE(*g.lastMetric, 0.79);
    QCOMPARE(*g.peakAllocatedBytes, 12345678901LL);
    QCOMPARE(*g.peakReservedBytes, 22345678901LL);
    QCOMPARE(*g.initPeakAllocatedBytes, 32345678901LL);
    QCOMPARE(*g.evalPeakAllocatedBytes, 42345678901LL);
    QCOMPARE(*g.weightBytes, std::int64_t(1000));
    QCOMPARE(*g.gradientBytes, std::int64_t(2000));
    QCOMPARE(*g.optimizerBytes, std::int64_t(4000));
    QCOMPARE(*g.trainableParams, std::int64_t(2500));
    QCOMPARE(*g.totalParams, std::int64_t(100000));
    QCOMPARE(*g.backboneParams, std::int64_t(50000));
    QCOMPARE(*g.wallSeconds, 61.25);
    QCOMPARE(*g.tokensPerSecond, 1234.5);
    QCOMPARE(*r.trainablePercent(), 5.0); // of the backbone, as the paper counts
    r.figures.backboneParams.reset();
    QCOMPARE(*r.trainablePercent(), 2.5); // of the total when the backbone count is unknown

    // A queued run: no start, a queue position, NULL seed and figures.
    NewRun queued = sampleRun("queued");
    queued.seed.reset();
    std::int64_t qid = 0;
    QVERIFY(store.createRun(queued, &qid));
    RunRecord q;
    QVERIFY(store.getRun(qid, &q));
    QCOMPARE(q.status, RunState::Queued);
    QVERIFY(!q.seed.has_value());
    QVERIFY(q.startedAt.empty() && q.finishedAt.empty());
    QVERIFY(q.queuePosition.has_value());
    QVERIFY(
        !q.figures.peakAllocatedBytes && !q.figures.bestValidationMetric && q.figures.mainMetricName.empty());
    QVERIFY(!q.figures.initPeakAllocatedBytes && !q.figures.evalPeakAllocatedBytes);
    QVERIFY(!q.ownerPid.has_value());

    // Invalid input is refused with a message and writes nothing.
    NewRun bad = sampleRun();
    bad.specJson = "{not json";
    QVERIFY(!store.createRun(bad, nullptr, &error));
    QVERIFY2(error.find("not valid JSON") != std::string::npos, error.c_str());
    QVERIFY2(error.find(store.path()) != std::string::npos, error.c_str());
    QCOMPARE(store.lastError(), error);
    bad = sampleRun();
    bad.status = RunState::Finished;
    QVERIFY(!store.createRun(bad, nullptr, &error));
    std::vector<RunRecord> all;
    QVERIFY(store.listRuns({}, &all));
    QCOMPARE(all.size(), std::size_t(2));

    QVERIFY(!store.getRun(9999, &r, &error));
    QVERIFY2(error.find("no run 9999") != std::string::npos, error.c_str());
}

void TestStore::finalFiguresMergeAndStatusRules()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun(), &id));

    std::string error;
    // queued -> finished is not allowed; finished is final; nothing goes back to the queue.
    QVERIFY(!store.setStatus(id, RunState::Finished, {}, &error));
    QVERIFY2(error.find("run " + std::to_string(id) + " is queued; it cannot become finished")
            != std::string::npos,
        error.c_str());
    QVERIFY(store.setStatus(id, RunState::Running));
    QVERIFY(store.setStatus(id, RunState::Running)); // same status: no-op

    FinalFigures part1;
    part1.peakAllocatedBytes = 777;
    part1.mainMetricName = "f1";
    QVERIFY(store.setFinalFigures(id, part1));
    FinalFigures part2;
    part2.testMetric = 0.5;
    QVERIFY(store.setFinalFigures(id, part2));
    RunRecord r;
    QVERIFY(store.getRun(id, &r));
    QCOMPARE(*r.figures.peakAllocatedBytes, std::int64_t(777));
    QCOMPARE(*r.figures.testMetric, 0.5);
    QCOMPARE(r.figures.mainMetricName, std::string("f1"));

    QVERIFY(store.finishRun(id, RunState::Failed, {}, "out of memory", &error));
    QVERIFY(store.getRun(id, &r));
    QCOMPARE(r.status, RunState::Failed);
    QCOMPARE(r.errorMessage, std::string("out of memory"));
    QVERIFY(!r.finishedAt.empty());
    QVERIFY(!store.setStatus(id, RunState::Finished, {}, &error));
    QVERIFY2(error.find("is failed") != std::string::npos, error.c_str());
    QVERIFY(!store.setStatus(id, RunState::Queued, {}, &error));
    QVERIFY2(error.find("cannot go back to the queue") != std::string::npos, error.c_str());
    QVERIFY(!store.finishRun(id, RunState::Running, {}, {}, &error));

    // A failed finishRun changes nothing (figures and status are one transaction).
    std::int64_t id2 = 0;
    QVERIFY(store.createRun(sampleRun(), &id2));
    FinalFigures f;
    f.wallSeconds = 3.0;
    QVERIFY(!store.finishRun(id2, RunState::Finished, f, {}, &error)); // queued cannot finish
    QVERIFY(store.getRun(id2, &r));
    QVERIFY(!r.figures.wallSeconds.has_value());
    QCOMPARE(r.status, RunState::Queued);
    QVERIFY(store.setStatus(id2, RunState::Cancelled, "cancelled before start"));
}

void TestStore::batchedMetrics()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("metrics", RunState::Running), &id));

    std::int64_t versionBefore = 0;
    ResultsStore watcher;
    QVERIFY(watcher.open(store.path()));
    QVERIFY(watcher.dataVersion(&versionBefore));

    auto points = makePoints(0, 1000);
    points[10].loss = std::nan(""); // stored as NULL
    points[11].loss.reset();
    points[12].time = "2024-01-02T03:04:05.678Z";
    std::string error;
    QElapsedTimer timer;
    timer.start();
    QVERIFY2(store.appendMetrics(id, points, &error), error.c_str());
    qInfo("1000 metric points in one appendMetrics: %lld ms", static_cast<long long>(timer.elapsed()));

    std::int64_t versionAfter = 0;
    QVERIFY(watcher.dataVersion(&versionAfter));
    QVERIFY(versionAfter != versionBefore);

    std::int64_t count = 0;
    QVERIFY(watcher.countMetrics(id, &count));
    QCOMPARE(count, std::int64_t(1000));
    std::vector<MetricPoint> back;
    QVERIFY(watcher.getMetrics(id, ResultsStore::kAllSteps, &back));
    QCOMPARE(back.size(), std::size_t(1000));
    for (std::size_t i = 0; i < back.size(); ++i) {
        const MetricPoint& a = points[i];
        const MetricPoint& b = back[i];
        QCOMPARE(b.step, a.step);
        QCOMPARE(*b.epoch, *a.epoch);
        if (i == 10 || i == 11)
            QVERIFY(!b.loss.has_value());
        else
            QCOMPARE(*b.loss, *a.loss);
        QCOMPARE(*b.learningRate, *a.learningRate);
        QCOMPARE(*b.allocatedBytes, *a.allocatedBytes);
        QCOMPARE(*b.peakAllocatedBytes, *a.peakAllocatedBytes);
        QCOMPARE(*b.reservedBytes, *a.reservedBytes);
        QCOMPARE(*b.tokensPerSecond, *a.tokensPerSecond);
        QCOMPARE(*b.elapsedSeconds, *a.elapsedSeconds);
        QVERIFY(!b.time.empty());
    }
    QCOMPARE(back[12].time, std::string("2024-01-02T03:04:05.678Z"));

    // Incremental read since a step, as the live chart does.
    QVERIFY(watcher.getMetrics(id, 899, &back));
    QCOMPARE(back.size(), std::size_t(100));
    QCOMPARE(back.front().step, std::int64_t(900));
    QCOMPARE(back.back().step, std::int64_t(999));
    QVERIFY(watcher.getMetrics(id, 999, &back));
    QVERIFY(back.empty());

    // appendMetrics advanced runs.step; a repeated step replaces its point.
    RunRecord r;
    QVERIFY(watcher.getRun(id, &r));
    QCOMPARE(r.step, std::int64_t(999));
    auto again = makePoints(999, 2);
    again[0].loss = 42.0;
    QVERIFY(store.appendMetrics(id, again));
    QVERIFY(watcher.getMetrics(id, 998, &back));
    QCOMPARE(back.size(), std::size_t(2));
    QCOMPARE(*back[0].loss, 42.0);
    QVERIFY(watcher.countMetrics(id, &count));
    QCOMPARE(count, std::int64_t(1001));

    // A batch for a run that does not exist fails as a whole.
    QVERIFY(!store.appendMetrics(12345, makePoints(0, 10), &error));
    QVERIFY2(error.find("no run 12345") != std::string::npos, error.c_str());
    QVERIFY(store.appendMetrics(id, {})); // empty batch: nothing to do
}

void TestStore::metricsWriterBatches()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("writer", RunState::Running), &id));
    ResultsStore reader;
    QVERIFY(reader.open(store.path()));
    {
        MetricsWriterOptions options;
        options.maxPendingPoints = 64;
        options.maxPendingSeconds = 0; // by count only: the test does not depend on the clock
        MetricsWriter writer(store, id, options);
        std::int64_t count = 0;
        for (const auto& p : makePoints(0, 1000)) {
            QVERIFY(writer.add(p));
            QVERIFY(writer.pendingCount() < 64);
        }
        QCOMPARE(writer.writtenCount(), std::int64_t(1000 / 64 * 64));
        QVERIFY(reader.countMetrics(id, &count));
        QCOMPARE(count, writer.writtenCount()); // whole batches only
        QCOMPARE(writer.pendingCount(), std::size_t(1000 % 64));
        QVERIFY(writer.flush());
        QVERIFY(reader.countMetrics(id, &count));
        QCOMPARE(count, std::int64_t(1000));

        // Time-based flushing: an old pending point is written on the next add.
        MetricsWriterOptions timed;
        timed.maxPendingPoints = 1000000;
        timed.maxPendingSeconds = 0.05;
        MetricsWriter byTime(store, id, timed);
        QVERIFY(byTime.add(makePoints(2000, 1).front()));
        QCOMPARE(byTime.pendingCount(), std::size_t(1));
        QTest::qWait(80);
        QVERIFY(byTime.add(makePoints(2001, 1).front()));
        QCOMPARE(byTime.pendingCount(), std::size_t(0));
        QVERIFY(byTime.add(makePoints(2002, 1).front()));
    } // the destructor flushes the last point
    std::int64_t count = 0;
    QVERIFY(reader.countMetrics(id, &count));
    QCOMPARE(count, std::int64_t(1003));

    // A failing writer keeps its points and reports the error.
    MetricsWriterOptions options;
    options.maxPendingPoints = 2;
    MetricsWriter broken(store, 777, options);
    std::string error;
    QVERIFY(broken.add(makePoints(0, 1).front()));
    QVERIFY(!broken.add(makePoints(1, 1).front(), &error));
    QVERIFY2(error.find("no run 777") != std::string::npos, error.c_str());
    QCOMPARE(broken.pendingCount(), std::size_t(2));
}

void TestStore::evaluationsAndLogs()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("evals", RunState::Running), &id));

    Evaluation e;
    e.runId = id;
    e.step = 100;
    e.epoch = 1.0;
    e.split = "validation";
    e.metrics = { { "accuracy", 0.75 }, { "f1", 0.5 }, { "undefined", std::nan("") } };
    e.mainMetricName = "accuracy";
    e.mainMetric = 0.75;
    e.predictionsJson = R"(["yes","no","maybe"])";
    std::int64_t evalId = 0;
    std::string error;
    QVERIFY2(store.addEvaluation(e, &evalId, &error), error.c_str());
    QVERIFY(evalId > 0);
    Evaluation t;
    t.runId = id;
    t.step = 100;
    t.split = "test";
    t.metrics = { { "accuracy", 0.7 } };
    t.mainMetricName = "accuracy";
    t.mainMetric = 0.7;
    QVERIFY(store.addEvaluation(t));
    Evaluation early = t;
    early.step = 50;
    early.split = "validation";
    QVERIFY(store.addEvaluation(early));
    Evaluation badSplit = t;
    badSplit.split = "train";
    QVERIFY(!store.addEvaluation(badSplit, nullptr, &error));
    QVERIFY2(error.find("split must be") != std::string::npos, error.c_str());

    std::vector<Evaluation> back;
    QVERIFY(store.getEvaluations(id, &back));
    QCOMPARE(back.size(), std::size_t(3));
    QCOMPARE(back[0].step, std::int64_t(50));
    const Evaluation& v = back[1];
    QCOMPARE(v.id, evalId);
    QCOMPARE(v.runId, id);
    QCOMPARE(v.step, std::int64_t(100));
    QCOMPARE(*v.epoch, 1.0);
    QCOMPARE(v.split, std::string("validation"));
    QCOMPARE(v.metrics.size(), std::size_t(3));
    QCOMPARE(v.metrics.at("accuracy"), 0.75);
    QCOMPARE(v.metrics.at("f1"), 0.5);
    QVERIFY(std::isnan(v.metrics.at("undefined")));
    QCOMPARE(v.mainMetricName, std::string("accuracy"));
    QCOMPARE(*v.mainMetric, 0.75);
    QCOMPARE(v.predictionsJson, e.predictionsJson);
    QVERIFY(!v.time.empty());
    QCOMPARE(back[2].split, std::string("test"));
    QVERIFY(back[2].predictionsJson.empty());
    QVERIFY(!back[2].epoch.has_value());

    QVERIFY(store.addLog(id, LogLevel::Info, "started"));
    QVERIFY(store.addLog(id, LogLevel::Warning, "loss spiked,\n\"twice\""));
    QVERIFY(store.addLog(id, LogLevel::Error, "boom"));
    QVERIFY(!store.addLog(4242, LogLevel::Info, "nobody", &error));
    std::vector<LogLine> lines;
    QVERIFY(store.getLogs(id, 0, &lines));
    QCOMPARE(lines.size(), std::size_t(3));
    QCOMPARE(lines[1].level, LogLevel::Warning);
    QCOMPARE(lines[1].message, std::string("loss spiked,\n\"twice\""));
    QCOMPARE(lines[1].runId, id);
    QVERIFY(!lines[0].time.empty());
    QVERIFY(store.getLogs(id, lines[0].id, &lines));
    QCOMPARE(lines.size(), std::size_t(2));
    QCOMPARE(lines[1].level, LogLevel::Error);
}

void TestStore::specHashAndFinishedLookup()
{
    // FNV-1a 64 of the canonical dump: "{}" hashes as those two bytes (reference computed here).
    std::uint64_t reference = 14695981039346656037ull;
    for (const unsigned char c : std::string("{}"))
        reference = (reference ^ c) * 1099511628211ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(reference));
    QCOMPARE(specHashFromText(std::string(" {\n } ")), std::string(hex));
    QCOMPARE(specHashFromText(std::string(R"({"b":1,"a":{"y":2,"x":[1,2]}})")),
        specHashFromText(std::string("{ \"a\" : { \"x\" : [1, 2], \"y\" : 2 },\n \"b\" : 1 }")));
    QVERIFY(specHashFromText(std::string(R"({"a":1})")) != specHashFromText(std::string(R"({"a":2})")));

    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    NewRun run = sampleRun("sweep point", RunState::Running);
    const std::string hash = specHashFromText(run.specJson);
    std::optional<RunRecord> found;
    QVERIFY(store.findFinishedRun(hash, &found));
    QVERIFY(!found);
    std::int64_t failed = 0;
    QVERIFY(store.createRun(run, &failed));
    QVERIFY(store.finishRun(failed, RunState::Failed, {}, "nan loss"));
    QVERIFY(store.findFinishedRun(hash, &found));
    QVERIFY(!found); // a failed run does not count
    std::int64_t done = 0;
    QVERIFY(store.createRun(run, &done));
    QVERIFY(store.finishRun(done, RunState::Finished, {}));
    QVERIFY(store.findFinishedRun(hash, &found));
    QVERIFY(found);
    QCOMPARE(found->id, done);

    // A caller-provided hash (a sweep hashing a normalised spec) is stored as given.
    NewRun custom = sampleRun();
    custom.specHash = "00000000deadbeef";
    std::int64_t cid = 0;
    QVERIFY(store.createRun(custom, &cid));
    RunRecord r;
    QVERIFY(store.getRun(cid, &r));
    QCOMPARE(r.specHash, std::string("00000000deadbeef"));
}

void TestStore::queueOperations()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t a = 0, b = 0, c = 0, d = 0;
    QVERIFY(store.createRun(sampleRun("a", RunState::Queued, "cpu"), &a));
    QVERIFY(store.createRun(sampleRun("b", RunState::Queued, "cuda:0"), &b));
    QVERIFY(store.createRun(sampleRun("c", RunState::Queued, "cpu"), &c));
    QVERIFY(store.createRun(sampleRun("d", RunState::Queued, "cpu"), &d));

    const auto queueNames = [&store] {
        RunFilter filter;
        filter.statuses = { RunState::Queued };
        filter.order = RunFilter::Order::QueuePosition;
        std::vector<RunRecord> runs;
        if (!store.listRuns(filter, &runs))
            return std::string("ERROR ") + store.lastError();
        std::string names;
        for (const auto& r : runs)
            names += r.name;
        return names;
    };
    QCOMPARE(queueNames(), std::string("abcd"));

    std::optional<RunRecord> next;
    QVERIFY(store.nextQueued("cpu", &next));
    QCOMPARE(next->name, std::string("a"));
    QVERIFY(store.nextQueued("cuda:0", &next));
    QCOMPARE(next->name, std::string("b"));
    QVERIFY(store.nextQueued("cuda:1", &next));
    QVERIFY(!next);
    QVERIFY(store.nextQueued("", &next));
    QCOMPARE(next->name, std::string("a"));

    QVERIFY(store.moveQueuedRun(d, -2));
    QCOMPARE(queueNames(), std::string("adbc"));
    QVERIFY(store.moveQueuedRun(a, 10)); // clamped
    QCOMPARE(queueNames(), std::string("dbca"));
    QVERIFY(store.moveQueuedRun(c, -10));
    QCOMPARE(queueNames(), std::string("cdba"));
    QVERIFY(store.setQueueOrder({ a, b }));
    QCOMPARE(queueNames(), std::string("abcd"));
    std::string error;
    QVERIFY(!store.setQueueOrder({ a, a }, &error));
    QVERIFY2(error.find("listed twice") != std::string::npos, error.c_str());
    QCOMPARE(queueNames(), std::string("abcd")); // rolled back

    // Claiming takes the first run for the device, sets it running and takes it out of the queue.
    std::optional<RunRecord> claimed;
    QVERIFY(store.claimNextQueued("cpu", &claimed));
    QVERIFY(claimed);
    QCOMPARE(claimed->name, std::string("a"));
    QCOMPARE(claimed->status, RunState::Running);
    QVERIFY(!claimed->queuePosition);
    QVERIFY(!claimed->startedAt.empty());
    QCOMPARE(queueNames(), std::string("bcd"));
    QVERIFY(!store.moveQueuedRun(a, 1, &error));
    QVERIFY2(error.find("is running, not queued") != std::string::npos, error.c_str());
    QVERIFY(!store.removeQueuedRun(a, &error));
    QVERIFY(!store.setQueueOrder({ a }, &error));

    QVERIFY(store.removeQueuedRun(c));
    QCOMPARE(queueNames(), std::string("bd"));
    QVERIFY(!store.getRun(c, nullptr));

    // A new run joins the end of the queue; cancelling a queued run takes it out.
    std::int64_t e = 0;
    QVERIFY(store.createRun(sampleRun("e"), &e));
    QCOMPARE(queueNames(), std::string("bde"));
    QVERIFY(store.setStatus(d, RunState::Cancelled));
    QCOMPARE(queueNames(), std::string("be"));

    QVERIFY(store.claimNextQueued("cuda:0", &claimed));
    QCOMPARE(claimed->name, std::string("b"));
    QVERIFY(store.claimNextQueued("cuda:0", &claimed));
    QVERIFY(!claimed);

    // Filters.
    RunFilter filter;
    filter.statuses = { RunState::Running, RunState::Cancelled };
    filter.order = RunFilter::Order::IdDescending;
    std::vector<RunRecord> runs;
    QVERIFY(store.listRuns(filter, &runs));
    QCOMPARE(runs.size(), std::size_t(3));
    QCOMPARE(runs[0].name, std::string("d"));
    filter = {};
    filter.device = "cuda:0";
    QVERIFY(store.listRuns(filter, &runs));
    QCOMPARE(runs.size(), std::size_t(1));
    filter = {};
    filter.task = "rte";
    filter.backbone = "demo";
    filter.method = "lst";
    filter.limit = 2;
    QVERIFY(store.listRuns(filter, &runs));
    QCOMPARE(runs.size(), std::size_t(2));
    filter.method = "lora";
    QVERIFY(store.listRuns(filter, &runs));
    QVERIFY(runs.empty());
}

void TestStore::deleteCascades()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("doomed", RunState::Running), &id));
    QVERIFY(store.appendMetrics(id, makePoints(0, 50)));
    Evaluation e;
    e.runId = id;
    e.metrics = { { "accuracy", 1.0 } };
    QVERIFY(store.addEvaluation(e));
    QVERIFY(store.addLog(id, LogLevel::Info, "x"));
    std::string error;
    QVERIFY(!store.deleteRun(id, &error));
    QVERIFY2(error.find("is running; cancel it first") != std::string::npos, error.c_str());
    QVERIFY(store.setStatus(id, RunState::Cancelled));
    QVERIFY2(store.deleteRun(id, &error), error.c_str());
    const std::string path = store.path();
    store.close();
    QCOMPARE(test::rawQuery(path,
                 "SELECT (SELECT count(*) FROM runs) || ',' || (SELECT count(*) FROM metrics) || ',' || "
                 "(SELECT count(*) FROM evaluations) || ',' || (SELECT count(*) FROM logs)"),
        std::string("0,0,0,0"));
    // Ids are never reused (AUTOINCREMENT), so a GUI holding an old id cannot hit a new run.
    QVERIFY(store.open(path));
    std::int64_t next = 0;
    QVERIFY(store.createRun(sampleRun(), &next));
    QVERIFY(next > id);
}

void TestStore::liveOwnerKeepsRunRunning()
{
    const std::string path = freshStorePath();
    ResultsStore writer;
    QVERIFY(writer.open(path));
    std::int64_t live = 0, dead = 0, reused = 0;
    QVERIFY(writer.createRun(sampleRun("live", RunState::Running), &live));
    QVERIFY(writer.createRun(sampleRun("dead", RunState::Running), &dead));
    QVERIFY(writer.createRun(sampleRun("reused pid", RunState::Running), &reused));
    // "reused pid": our pid but another start time, as after a restart in a fresh container.
    QCOMPARE(
        test::rawQuery(path, "UPDATE runs SET owner_start_ticks = 1 WHERE id = " + std::to_string(reused)),
        std::string());
    // Pretend "dead" was started by a process that no longer exists.
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    waitpid(child, nullptr, 0);
    QCOMPARE(
        test::rawQuery(path,
            "UPDATE runs SET owner_pid = " + std::to_string(child) + " WHERE id = " + std::to_string(dead)),
        std::string());

    ResultsStore gui; // a second connection in this (live) process, as the GUI opening the store
    QVERIFY(gui.open(path));
    QCOMPARE(gui.interruptedAtOpen(), 2);
    RunRecord r;
    QVERIFY(gui.getRun(live, &r));
    QCOMPARE(r.status, RunState::Running);
    QVERIFY(gui.getRun(reused, &r));
    QCOMPARE(r.status, RunState::Interrupted);
    QVERIFY(gui.getRun(dead, &r));
    QCOMPARE(r.status, RunState::Interrupted);
    QVERIFY2(
        r.errorMessage.find("pid " + std::to_string(child)) != std::string::npos, r.errorMessage.c_str());
    QVERIFY(!r.finishedAt.empty());
}

void TestStore::readerWhileWriterWrites()
{
    const std::string path = freshStorePath();
    std::int64_t id = 0;
    {
        ResultsStore setup;
        QVERIFY(setup.open(path));
        QVERIFY(setup.createRun(sampleRun("concurrent", RunState::Running), &id));
    }
    constexpr int kBatches = 150;
    constexpr int kBatchPoints = 50;
    std::atomic<bool> writerDone { false };
    std::vector<std::string> writerErrors, readerErrors;
    int reads = 0;
    std::int64_t lastSeen = 0;

    std::thread writerThread([&] {
        ResultsStore store;
        std::string error;
        if (!store.open(path, &error)) {
            writerErrors.push_back(error);
            writerDone = true;
            return;
        }
        for (int b = 0; b < kBatches; ++b) {
            if (!store.appendMetrics(id, makePoints(std::int64_t(b) * kBatchPoints, kBatchPoints), &error))
                writerErrors.push_back(error);
            if (b % 10 == 0 && !store.addLog(id, LogLevel::Info, "batch " + std::to_string(b), &error))
                writerErrors.push_back(error);
            if (b % 25 == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        writerDone = true;
    });
    std::thread readerThread([&] {
        ResultsStore store;
        std::string error;
        if (!store.open(path, &error)) {
            readerErrors.push_back(error);
            return;
        }
        std::int64_t previous = 0;
        std::int64_t lastStep = ResultsStore::kAllSteps;
        std::int64_t incremental = 0;
        bool finalPass = false;
        while (true) {
            finalPass = writerDone.load();
            std::int64_t count = 0;
            if (!store.countMetrics(id, &count, &error)) {
                readerErrors.push_back(error);
                break;
            }
            if (count < previous)
                readerErrors.push_back(
                    "count went down: " + std::to_string(previous) + " -> " + std::to_string(count));
            if (count % kBatchPoints != 0)
                readerErrors.push_back("saw a partial batch: " + std::to_string(count));
            previous = count;
            std::vector<MetricPoint> fresh;
            if (!store.getMetrics(id, lastStep, &fresh, &error)) {
                readerErrors.push_back(error);
                break;
            }
            for (const auto& p : fresh) {
                if (p.step <= lastStep)
                    readerErrors.push_back("step out of order");
                lastStep = p.step;
            }
            incremental += static_cast<std::int64_t>(fresh.size());
            std::vector<RunRecord> runs;
            if (!store.listRuns({}, &runs, &error))
                readerErrors.push_back(error);
            ++reads;
            if (finalPass)
                break;
        }
        lastSeen = incremental;
    });
    writerThread.join();
    readerThread.join();
    for (const auto& e : writerErrors)
        qWarning("writer: %s", e.c_str());
    for (const auto& e : readerErrors)
        qWarning("reader: %s", e.c_str());
    QVERIFY(writerErrors.empty());
    QVERIFY(readerErrors.empty());
    QCOMPARE(lastSeen, std::int64_t(kBatches) * kBatchPoints);
    qInfo("reader made %d passes while the writer committed %d batches", reads, kBatches);
    QVERIFY(reads >= 2);
}

void TestStore::survivesKillOfWriterMidRun()
{
    const std::string path = freshStorePath();
    {
        ResultsStore setup; // the schema exists before the child starts
        QVERIFY(setup.open(path));
    }
    int fds[2];
    QCOMPARE(pipe(fds), 0);
    const pid_t child = fork();
    QVERIFY(child >= 0);
    if (child == 0) {
        // Child: a writer that runs until it is killed. Only the store and write(2); never returns.
        ::close(fds[0]);
        ResultsStore store;
        std::int64_t runId = 0;
        if (!store.open(path) || !store.createRun(sampleRun("killed", RunState::Running), &runId))
            _exit(2);
        for (std::int64_t batch = 0; batch < 1000000; ++batch) {
            if (!store.appendMetrics(runId, makePoints(batch * kKillBatchPoints, kKillBatchPoints)))
                _exit(4);
            writeAll(fds[1], &batch, sizeof batch); // reported after the commit
        }
        _exit(5);
    }
    ::close(fds[1]);
    // Wait for some committed batches, then kill at an arbitrary point of the write loop.
    std::int64_t lastReported = -1;
    constexpr std::int64_t kBatchesBeforeKill = 25;
    while (lastReported + 1 < kBatchesBeforeKill) {
        std::int64_t batch = 0;
        const ssize_t n = ::read(fds[0], &batch, sizeof batch);
        if (n != static_cast<ssize_t>(sizeof batch))
            break;
        lastReported = batch;
    }
    QCOMPARE(::kill(child, SIGKILL), 0);
    int status = 0;
    QCOMPARE(waitpid(child, &status, 0), child);
    QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer was not killed by SIGKILL");
    QVERIFY(lastReported >= kBatchesBeforeKill - 1);
    // The child may have run ahead of our reads: drain what it reported before it died.
    for (std::int64_t batch = 0; ::read(fds[0], &batch, sizeof batch) == static_cast<ssize_t>(sizeof batch);)
        lastReported = batch;
    ::close(fds[0]);
    const auto walBytes = fs::exists(path + "-wal") ? fs::file_size(path + "-wal") : 0;

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    QCOMPARE(store.interruptedAtOpen(), 1);
    std::string integrity;
    QVERIFY(store.integrityCheck(&integrity));
    QCOMPARE(integrity, std::string("ok"));
    std::vector<RunRecord> runs;
    QVERIFY(store.listRuns({}, &runs));
    QCOMPARE(runs.size(), std::size_t(1));
    const RunRecord& run = runs.front();
    QCOMPARE(run.status, RunState::Interrupted);
    QCOMPARE(*run.ownerPid, std::int64_t(child));
    QVERIFY(!run.finishedAt.empty());

    std::vector<MetricPoint> points;
    QVERIFY(store.getMetrics(run.id, ResultsStore::kAllSteps, &points));
    const auto rows = static_cast<std::int64_t>(points.size());
    // Every batch fully present or fully absent: the rows are exactly steps 0..rows-1 in whole batches,
    // at least the batches reported committed (the child may have committed one more before the kill).
    QCOMPARE(rows % kKillBatchPoints, std::int64_t(0));
    QVERIFY(rows >= (lastReported + 1) * kKillBatchPoints);
    QVERIFY(rows <= (lastReported + 2) * kKillBatchPoints);
    for (std::int64_t i = 0; i < rows; ++i) {
        QCOMPARE(points[static_cast<std::size_t>(i)].step, i);
        QCOMPARE(*points[static_cast<std::size_t>(i)].allocatedBytes, 1000 + i);
    }
    QCOMPARE(run.step, rows - 1);
    qInfo("kill -9 of a writer: %lld batches reported committed, %lld rows (%lld whole batches) after "
          "reopening, "
          "WAL was %llu bytes at the kill, integrity_check ok, run interrupted",
        static_cast<long long>(lastReported + 1), static_cast<long long>(rows),
        static_cast<long long>(rows / kKillBatchPoints), static_cast<unsigned long long>(walBytes));

    // The store goes on: new runs and batches work.
    std::int64_t next = 0;
    QVERIFY(store.createRun(sampleRun("after"), &next));
}

void TestStore::killInsideOpenTransactionLeavesNothing()
{
    // Deterministic variant: the child is killed while it holds an open write transaction whose pages
    // have already spilled into the WAL (a tiny page cache forces that). Recovery must drop them.
    const std::string path = freshStorePath();
    std::int64_t runId = 0;
    {
        ResultsStore setup;
        QVERIFY(setup.open(path));
        QVERIFY(setup.createRun(sampleRun("half", RunState::Running), &runId));
        QVERIFY(setup.appendMetrics(runId, makePoints(0, 100)));
    }
    const auto walBefore = fs::exists(path + "-wal") ? fs::file_size(path + "-wal") : 0;
    int fds[2];
    QCOMPARE(pipe(fds), 0);
    const pid_t child = fork();
    QVERIFY(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        sqlite3* db = nullptr;
        if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
            _exit(2);
        sqlite3_exec(db, "PRAGMA cache_size = 2; BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        const std::string cte = "WITH RECURSIVE s(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM s "
                                "WHERE value < 19999) INSERT INTO metrics (run_id, step, loss, time) SELECT "
            + std::to_string(runId) + ", value + 100, 0.5, 'x' FROM s";
        if (sqlite3_exec(db, cte.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
            _exit(3);
        const char ready = 'T';
        writeAll(fds[1], &ready, 1);
        pause(); // killed here, inside the transaction
        _exit(5);
    }
    ::close(fds[1]);
    char ready = 0;
    QCOMPARE(::read(fds[0], &ready, 1), ssize_t(1));
    QCOMPARE(ready, 'T');
    const auto walAtKill = fs::file_size(path + "-wal");
    QCOMPARE(::kill(child, SIGKILL), 0);
    QCOMPARE(waitpid(child, nullptr, 0), child);
    ::close(fds[0]);
    QVERIFY2(walAtKill > walBefore, "the open transaction did not spill into the WAL");

    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    std::string integrity;
    QVERIFY(store.integrityCheck(&integrity));
    QCOMPARE(integrity, std::string("ok"));
    std::int64_t count = 0;
    QVERIFY(store.countMetrics(runId, &count));
    QCOMPARE(count, std::int64_t(100));
    qInfo("kill -9 inside an open transaction: WAL grew %llu -> %llu bytes with uncommitted pages; after "
          "reopening 100 rows (the committed ones), integrity ok",
        static_cast<unsigned long long>(walBefore), static_cast<unsigned long long>(walAtKill));
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

void TestStore::csvField_data()
{
    QTest::addColumn<QString>("value");
    QTest::addColumn<QString>("expected");
    QTest::newRow("plain") << "lst"
                           << "lst";
    QTest::newRow("empty") << ""
                           << "";
    QTest::newRow("comma") << "a,b"
                           << "\"a,b\"";
    QTest::newRow("quote") << "say \"hi\""
                           << "\"say \"\"hi\"\"\"";
    QTest::newRow("newline") << "line1\nline2"
                             << "\"line1\nline2\"";
    QTest::newRow("carriage return") << "a\rb"
                                     << "\"a\rb\"";
    QTest::newRow("leading space") << " x"
                                   << "\" x\"";
    QTest::newRow("json") << R"({"r":8,"keep":[1,3]})"
                          << R"("{""r"":8,""keep"":[1,3]}")";
}

void TestStore::csvField()
{
    QFETCH(QString, value);
    QFETCH(QString, expected);
    QCOMPARE(QString::fromStdString(ladder::csvField(value.toStdString())), expected);
}

void TestStore::exportsCsv()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    NewRun tricky = sampleRun("a \"quoted\", name\nwith a newline", RunState::Running);
    std::int64_t id = 0;
    QVERIFY(store.createRun(tricky, &id));
    FinalFigures f;
    f.bestValidationMetric = 0.1;
    f.peakAllocatedBytes = 123456789012LL;
    f.evalPeakAllocatedBytes = 23456789012LL;
    f.trainableParams = 1;
    f.totalParams = 3;
    f.mainMetricName = "accuracy";
    QVERIFY(store.finishRun(id, RunState::Finished, f));
    std::int64_t queued = 0;
    QVERIFY(store.createRun(sampleRun("plain"), &queued));

    const std::string csv = ladder::test::makeTempDir() + "/runs.csv";
    std::string error;
    QVERIFY2(store.exportRunsCsv(csv, {}, &error), error.c_str());
    QVERIFY(!fs::exists(csv + ".tmp"));
    const std::string text = readFile(csv);
    QVERIFY(text.rfind("id,name,status,method,", 0) == 0);
    const auto records = parseCsv(text);
    QCOMPARE(records.size(), std::size_t(3));
    const auto& header = records[0];
    QCOMPARE(header, runsCsvColumns());
    const auto column = [&header](const std::string& name) {
        return static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
    };
    const auto& row = records[1];
    QCOMPARE(row.size(), header.size());
    QCOMPARE(row[column("name")], tricky.name);
    QCOMPARE(row[column("status")], std::string("finished"));
    QCOMPARE(row[column("method_options_json")], tricky.methodOptionsJson);
    QCOMPARE(row[column("spec_json")], tricky.specJson);
    QCOMPARE(row[column("best_validation_metric")], std::string("0.1"));
    QCOMPARE(row[column("peak_allocated_bytes")], std::string("123456789012"));
    QCOMPARE(row[column("eval_peak_allocated_bytes")], std::string("23456789012"));
    QCOMPARE(row[column("init_peak_allocated_bytes")], std::string()); // NULL
    QCOMPARE(row[column("test_metric")], std::string()); // NULL
    QCOMPARE(row[column("trainable_percent")].substr(0, 6), std::string("33.333"));
    QCOMPARE(records[2][column("queue_position")], std::string("1"));
    // The newline inside the name is the only bare LF: every record ends with CRLF.
    QCOMPARE(std::count(text.begin(), text.end(), '\n'), std::ptrdiff_t(4));
    QCOMPARE(std::count(text.begin(), text.end(), '\r'), std::ptrdiff_t(3));

    // Filters apply to the export; a folder that does not exist is an error, not a crash.
    RunFilter finished;
    finished.statuses = { RunState::Finished };
    QVERIFY(store.exportRunsCsv(csv, finished));
    QCOMPARE(parseCsv(readFile(csv)).size(), std::size_t(2));
    QVERIFY(!store.exportRunsCsv("/nonexistent-folder/x/runs.csv", {}, &error));
    QVERIFY2(error.find("/nonexistent-folder/x/runs.csv") != std::string::npos, error.c_str());
}

QTEST_GUILESS_MAIN(TestStore)
#include "test_store.moc"
