// The workbench's queue beside other writers and on a full disk (docs/RELIABILITY.md, "Concurrent writers"
// and "A full disk"): the RunQueueController drains its queue (each run in a real `ladder worker`) while a
// real `ladder sweep` writes the same store, and every spec ends with exactly one finished run; on a 2 MiB
// tmpfs the runs whose files do not fit fail with "no space left on device", the controller stays up and
// the next run trains.
#include <cctype>
#include <fstream>
#include <map>

#include <QElapsedTimer>
#include <QProcess>
#include <QSignalSpy>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "RunQueueController.h"
#include "TestSupport.h"
#include "TmpfsMount.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

// A short run on the tiny demo (LADDER_DEMO_DIR) without its seed: the sweep's base and the queue's specs.
nlohmann::json baseSpec(const std::string& method)
{
    return { { "backbone", "demo" }, { "task", { { "type", "demo" } } },
        { "method",
            method == "lora" ? nlohmann::json { { "method", "lora" }, { "rank", 4 } }
                             : nlohmann::json { { "method", method } } },
        { "training",
            { { "max_steps", 6 }, { "batch_size", 8 }, { "threads", 1 }, { "eval_every_steps", 0 } } } };
}

RunSpec specOf(const std::string& method, std::uint64_t seed)
{
    auto j = baseSpec(method);
    j["seed"] = seed;
    return RunSpec::fromJson(j);
}

std::string lower(std::string text)
{
    for (auto& c : text)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

} // namespace

class TestQueueWriters : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void cleanup() { m_failed = m_failed || QTest::currentTestFailed(); }
    void cleanupTestCase() { test::reportTmpfsSkips(m_failed); }
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    // The queue holds seeds 0-3 and starts draining; a `ladder sweep` of seeds 2-5 starts at once on the
    // same store. Seeds 2 and 3 are the queue's (queued, running or finished when the sweep reaches them),
    // 4 and 5 the sweep's: six runs, one per spec, all finished, every metric row there, nothing locked.
    void queueDrainsBesideASweep()
    {
        const auto root = test::makeTempDir();
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(test::makeTinyDemo(root)));
        const std::string store = root + "/results.sqlite";
        RunQueueController controller;
        QString error;
        QVERIFY2(controller.open(QString::fromStdString(store), &error), qPrintable(error));
        QVERIFY2(!controller.workerProgram().isEmpty(), "no ladder executable found beside the test");
        std::vector<qint64> queued;
        QVERIFY2(
            controller.enqueue({ specOf("lora", 0), specOf("lora", 1), specOf("lora", 2), specOf("lora", 3) },
                &queued, &error),
            qPrintable(error));
        QSignalSpy finished(&controller, &RunQueueController::runFinished);
        QSignalSpy storeErrors(&controller, &RunQueueController::storeError);
        QSignalSpy logged(&controller, &RunQueueController::runLogged);
        std::ofstream(root + "/sweep.json")
            << nlohmann::json { { "base", baseSpec("lora") }, { "seeds", { 2, 3, 4, 5 } } }.dump(2);
        QElapsedTimer timer;
        timer.start();
        controller.setPaused(false);
        QProcess sweep;
        sweep.start(QString::fromStdString(test::cliPath()),
            { "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store",
                QString::fromStdString(store) });
        QVERIFY(sweep.waitForStarted());
        // The window's event loop runs while the sweep trains.
        QTRY_VERIFY_WITH_TIMEOUT(sweep.state() == QProcess::NotRunning, 240000);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 4, 240000);
        const double seconds = static_cast<double>(timer.elapsed()) / 1000.0;
        const std::string out = sweep.readAllStandardOutput().toStdString();
        const std::string err = sweep.readAllStandardError().toStdString();
        QVERIFY2(sweep.exitStatus() == QProcess::NormalExit && sweep.exitCode() == 0, (out + err).c_str());
        QVERIFY2(
            contains(out, "sweep: 2 finished, 0 skipped, 0 failed or cancelled, 2 held by another writer"),
            out.c_str());
        QVERIFY2(!contains(out + err, "database is locked"), (out + err).c_str());
        QCOMPARE(storeErrors.count(), 0);
        for (const auto& args : logged)
            QVERIFY2(
                !args.at(2).toString().contains(QStringLiteral("locked")), qPrintable(args.at(2).toString()));
        for (const auto& args : finished)
            QCOMPARE(args.at(1).value<RunState>(), RunState::Finished);

        ResultsStore s;
        std::string message;
        QVERIFY2(s.open(store, ResultsStore::OpenMode::ReadOnly, &message), message.c_str());
        std::string integrity;
        QVERIFY(s.integrityCheck(&integrity));
        QCOMPARE(integrity, std::string("ok"));
        std::vector<RunRecord> runs;
        QVERIFY(s.listRuns({}, &runs));
        QCOMPARE(runs.size(), std::size_t(6));
        std::map<std::string, int> perSpec;
        for (const auto& r : runs) {
            QVERIFY2(r.status == RunState::Finished, (std::to_string(r.id) + ": " + r.errorMessage).c_str());
            ++perSpec[r.specHash];
            std::int64_t points = 0;
            QVERIFY(s.countMetrics(r.id, &points));
            QCOMPARE(points, std::int64_t(6));
        }
        QCOMPARE(perSpec.size(), std::size_t(6));
        qInfo("queue of 4 and a sweep of 4 (2 shared) on one store: %zu runs, each finished once, %.1f s",
            runs.size(), seconds);
        qInfo("%s", out.c_str());
    }

    // A full fine-tune's files (4.3 MB of weights) cannot fit a 2 MiB disk: both queued runs fail with the
    // reason, the controller stays up, and a LoRA run queued after them trains to the end on the same disk.
    void fullDiskFailsRunsAndTheQueueGoesOn()
    {
        const auto root = test::makeTempDir();
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(test::makeTinyDemo(root)));
        test::TmpfsMount disk(root + "/disk", 2 * 1024 * 1024);
        if (!disk.mounted())
            QSKIP(disk.reason().c_str());
        const std::string store = disk.dir() + "/results.sqlite";
        RunQueueController controller;
        QString error;
        QVERIFY2(controller.open(QString::fromStdString(store), &error), qPrintable(error));
        std::vector<qint64> ids;
        QVERIFY2(
            controller.enqueue({ specOf("full", 0), specOf("full", 1) }, &ids, &error), qPrintable(error));
        QSignalSpy finished(&controller, &RunQueueController::runFinished);
        QSignalSpy failed(&controller, &RunQueueController::runFailed);
        QSignalSpy storeErrors(&controller, &RunQueueController::storeError);
        controller.setPaused(false);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 180000);
        QCOMPARE(failed.count(), 2);
        for (const auto& args : failed) {
            const std::string message = args.at(1).toString().toStdString();
            QVERIFY2(
                contains(lower(message), "no space left on device") && contains(message, disk.dir() + "/"),
                message.c_str());
            qInfo("run %lld: %s", static_cast<long long>(args.at(0).toLongLong()), message.c_str());
        }
        std::vector<qint64> more;
        QVERIFY2(controller.enqueue({ specOf("lora", 2) }, &more, &error), qPrintable(error));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 3, 180000);
        QCOMPARE(finished.at(2).at(1).value<RunState>(), RunState::Finished);
        QTRY_COMPARE_WITH_TIMEOUT(controller.activeCount(), 0, 10000);

        ResultsStore s;
        std::string message;
        QVERIFY2(s.open(store, &message), message.c_str());
        std::string integrity;
        QVERIFY(s.integrityCheck(&integrity));
        QCOMPARE(integrity, std::string("ok"));
        for (const auto id : ids) {
            RunRecord run;
            QVERIFY(s.getRun(id, &run));
            QCOMPARE(run.status, RunState::Failed);
            QVERIFY2(contains(lower(run.errorMessage), "no space left on device"), run.errorMessage.c_str());
        }
        RunRecord last;
        QVERIFY(s.getRun(more[0], &last));
        QCOMPARE(last.status, RunState::Finished);
        QVERIFY2(s.verifyCheckpoint(more[0], nullptr, &message), message.c_str());
        qInfo("store errors the window saw: %d; %lld bytes free after", static_cast<int>(storeErrors.count()),
            static_cast<long long>(disk.freeBytes()));
    }

private:
    bool m_failed = false;
};

LADDER_TEST_MAIN(TestQueueWriters)
#include "test_queue_writers.moc"
