// The results store's per-run series and exports: batched metric points (and the MetricsWriter that
// batches them), evaluations and log lines, and the runs CSV (field quoting and the exported file).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "StoreTestHelpers.h"
#include "TestSupport.h"
#include "store/MetricsWriter.h"
#include "store/ResultsStore.h"
#include "store/RunsCsv.h"

using namespace ladder;
using ladder::test::store::freshStorePath;
using ladder::test::store::makePoints;
using ladder::test::store::sampleRun;

namespace {

namespace fs = std::filesystem;

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

} // namespace

class TestStoreMetrics : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void batchedMetrics();
    void metricsWriterBatches();
    void evaluationsAndLogs();
    void csvField_data();
    void csvField();
    void exportsCsv();
};

void TestStoreMetrics::batchedMetrics()
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

void TestStoreMetrics::metricsWriterBatches()
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

void TestStoreMetrics::evaluationsAndLogs()
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

void TestStoreMetrics::csvField_data()
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

void TestStoreMetrics::csvField()
{
    QFETCH(QString, value);
    QFETCH(QString, expected);
    QCOMPARE(QString::fromStdString(ladder::csvField(value.toStdString())), expected);
}

void TestStoreMetrics::exportsCsv()
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

QTEST_GUILESS_MAIN(TestStoreMetrics)
#include "test_store_metrics.moc"
