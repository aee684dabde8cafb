// The results store with more than one connection: a live owner keeps its run running, a reader beside a
// writer sees whole batches only, and a writer killed by SIGKILL (mid-run, mid-transaction) keeps commits.
#include <QtTest>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "StoreTestHelpers.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using ladder::test::store::freshStorePath;
using ladder::test::store::makePoints;
using ladder::test::store::sampleRun;

namespace {

namespace fs = std::filesystem;

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

class TestStoreConcurrency : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void liveOwnerKeepsRunRunning();
    void readerWhileWriterWrites();
    void survivesKillOfWriterMidRun();
    void killInsideOpenTransactionLeavesNothing();
};

void TestStoreConcurrency::liveOwnerKeepsRunRunning()
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

void TestStoreConcurrency::readerWhileWriterWrites()
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

void TestStoreConcurrency::survivesKillOfWriterMidRun()
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

void TestStoreConcurrency::killInsideOpenTransactionLeavesNothing()
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

QTEST_GUILESS_MAIN(TestStoreConcurrency)
#include "test_store_concurrency.moc"
