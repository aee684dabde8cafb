// The results store's run records: every field round trip, final figures merged and the status rules,
// spec hashes and the finished-run lookup, the queue (order, claims, filters), and deletion that cascades.
#include <QtTest>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "StoreTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "store/SpecHash.h"

using namespace ladder;
using ladder::test::store::freshStorePath;
using ladder::test::store::makePoints;
using ladder::test::store::sampleRun;

class TestStoreRuns : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void roundTripsEveryField();
    void finalFiguresMergeAndStatusRules();
    void specHashAndFinishedLookup();
    void queueOperations();
    void deleteCascades();
    void renameKeepsTheSpec();
};

void TestStoreRuns::roundTripsEveryField()
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

void TestStoreRuns::finalFiguresMergeAndStatusRules()
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

void TestStoreRuns::specHashAndFinishedLookup()
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

void TestStoreRuns::queueOperations()
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

// A rename changes runs.name only: the spec and its hash stay (a renamed run is still found as finished).
void TestStoreRuns::renameKeepsTheSpec()
{
    ResultsStore store;
    QVERIFY(store.open(freshStorePath()));
    std::int64_t id = 0;
    QVERIFY(store.createRun(sampleRun("LoRA r16 qv · seed 0", RunState::Running), &id));
    std::string error;
    RunRecord before;
    QVERIFY(store.getRun(id, &before));
    QVERIFY2(store.renameRun(id, "baseline, the good one", &error), error.c_str());
    RunRecord run;
    QVERIFY(store.getRun(id, &run));
    QCOMPARE(run.name, std::string("baseline, the good one"));
    QCOMPARE(run.specJson, before.specJson);
    QCOMPARE(run.specHash, before.specHash);
    QVERIFY(!store.renameRun(id, " \t ", &error));
    QVERIFY2(error.find("cannot be empty") != std::string::npos, error.c_str());
    QVERIFY(!store.renameRun(id + 100, "ghost", &error));
    QVERIFY2(error.find("run " + std::to_string(id + 100)) != std::string::npos, error.c_str());
    // One line, at most kMaxRunNameLength characters.
    QVERIFY(store.renameRun(id, std::string(500, 'n') + "\nsecond line", &error));
    QVERIFY(store.getRun(id, &run));
    QVERIFY(run.name.rfind(std::string(ResultsStore::kMaxRunNameLength, 'n'), 0) == 0);
    QVERIFY(run.name.find("second line") == std::string::npos);
}

void TestStoreRuns::deleteCascades()
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

QTEST_GUILESS_MAIN(TestStoreRuns)
#include "test_store_runs.moc"
