// The run queue's table model (QAbstractItemModelTester, ordering, in-place updates) and the controller's
// store operations without training: enqueue, reorder, cancel and remove queued runs, and the queue as
// another connection (a second controller, as after a restart) sees it. Then the controller with runs in
// their own processes: a worker killed by SIGSEGV fails its run only, and cancel or close as a run ends
// touches no freed memory (a few hundred times; the test_runqueue_asan build runs it under AddressSanitizer).
#include <csignal>
#include <fstream>

#include <QAbstractItemModelTester>
#include <QFile>
#include <QFileInfo>
#include <QSignalSpy>
#include <QtTest>

#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "RunWorker.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "train/StoreRecorder.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

RunRecord record(qint64 id, RunState status, std::optional<qint64> position = std::nullopt)
{
    RunRecord r;
    r.id = id;
    r.status = status;
    r.queuePosition = position;
    r.name = "run " + std::to_string(id);
    return r;
}

std::vector<qint64> ids(const RunQueueModel& model)
{
    std::vector<qint64> out;
    for (const auto& r : model.runs())
        out.push_back(r.id);
    return out;
}

RunSpec demoSpec(std::uint64_t seed)
{
    return RunSpec::fromJson({ { "backbone", "demo" }, { "task", { { "type", "demo" } } },
        { "method", { { "method", "ladder" } } }, { "seed", seed } });
}

// A short LoRA run on the tiny demo (LADDER_DEMO_DIR), one thread.
RunSpec shortSpec(std::uint64_t seed)
{
    return RunSpec::fromJson({ { "backbone", "demo" }, { "task", { { "type", "demo" } } },
        { "method", { { "method", "lora" }, { "rank", 4 } } },
        { "training",
            { { "max_steps", 6 }, { "batch_size", 8 }, { "threads", 1 }, { "eval_every_steps", 0 } } },
        { "seed", seed } });
}

// A stand-in for `ladder worker` that ends at once: what the cancel loop needs is runs that end all the
// time, not training. The supervisor finds the run still running and fails it ("exited with status 0").
QString quickWorker(const std::string& dir)
{
    const auto path = dir + "/quick-worker.sh";
    std::ofstream(path) << "#!/bin/sh\necho '{\"event\":\"log\",\"level\":\"info\",\"message\":\"hi\"}'\n";
    QFile::setPermissions(
        QString::fromStdString(path), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    return QString::fromStdString(path);
}

} // namespace

class TestRunQueue : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void modelOrdersRunningQueuedThenNewest()
    {
        RunQueueModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setRuns({ record(1, RunState::Finished), record(2, RunState::Queued, 2),
            record(3, RunState::Running), record(4, RunState::Queued, 1), record(5, RunState::Failed) });
        QCOMPARE(ids(model), (std::vector<qint64> { 3, 4, 2, 5, 1 }));
        QCOMPARE(model.rowCount(), 5);
        QCOMPARE(model.columnCount(), int(RunQueueModel::ColumnCount));
        QCOMPARE(model.index(0, RunQueueModel::StatusColumn).data().toString(), QStringLiteral("running"));
        QCOMPARE(
            model.index(1, RunQueueModel::StatusColumn).data().toString(), QStringLiteral("queued (#1)"));
        QCOMPARE(
            model.index(3, RunQueueModel::IdColumn).data(RunQueueModel::RunIdRole).toLongLong(), qint64(5));
    }

    void sameRowsUpdateInPlace()
    {
        RunQueueModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setRuns({ record(1, RunState::Running), record(2, RunState::Queued, 1) });
        QSignalSpy reset(&model, &QAbstractItemModel::modelReset);
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        auto running = record(1, RunState::Running);
        running.step = 5;
        running.totalSteps = 20;
        model.setRuns({ running, record(2, RunState::Queued, 1) });
        QCOMPARE(reset.count(), 0);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(model.index(0, RunQueueModel::ProgressColumn).data().toString(), QStringLiteral("5 / 20"));
        QCOMPARE(model.index(0, RunQueueModel::ProgressColumn).data(RunQueueModel::ProgressRole).toInt(), 25);
        model.setProgress(1, 10, 20);
        QCOMPARE(model.index(0, RunQueueModel::ProgressColumn).data(RunQueueModel::ProgressRole).toInt(), 50);
        // A new run: the rows change, the model resets.
        model.setRuns({ running, record(2, RunState::Queued, 1), record(3, RunState::Queued, 2) });
        QCOMPARE(reset.count(), 1);
        model.setRuns({});
        QCOMPARE(model.rowCount(), 0);
    }

    // Before its first step a running run shows what it prepares (LST's Fisher pass) in the Progress
    // column; the first step, or the run no longer running, clears it.
    void progressShowsTheFisherInitialisation()
    {
        RunQueueModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setRuns({ record(1, RunState::Running), record(2, RunState::Queued, 1) });
        const auto progress = [&] { return model.index(0, RunQueueModel::ProgressColumn); };
        QCOMPARE(progress().data(RunQueueModel::ProgressRole).toInt(), -1);
        model.setProgress(1, 0, 0, QStringLiteral("Fisher initialisation 300/1024"), 29);
        QCOMPARE(progress().data().toString(), QStringLiteral("Fisher initialisation 300/1024"));
        QCOMPARE(progress().data(RunQueueModel::ProgressRole).toInt(), 29);
        model.setProgress(2, 0, 0, QStringLiteral("Fisher initialisation 1/1024"), 0); // not running: hidden
        QCOMPARE(model.index(1, RunQueueModel::ProgressColumn).data().toString(), QString());
        model.setRuns({ record(1, RunState::Running), record(2, RunState::Queued, 1) }); // a refresh keeps it
        QCOMPARE(progress().data().toString(), QStringLiteral("Fisher initialisation 300/1024"));
        model.setProgress(1, 1, 20);
        QCOMPARE(progress().data().toString(), QStringLiteral("1 / 20"));
        QCOMPARE(progress().data(RunQueueModel::ProgressRole).toInt(), 5);
        model.setProgress(1, 0, 0, QStringLiteral("Fisher initialisation 5/10"), 50);
        model.setRuns({ record(1, RunState::Cancelled), record(2, RunState::Queued, 1) });
        QCOMPARE(model.index(1, RunQueueModel::ProgressColumn).data().toString(), QString());
    }

    void controllerQueueOperations()
    {
        const QString store = QString::fromStdString(test::makeTempDir()) + QStringLiteral("/results.sqlite");
        std::vector<qint64> queued;
        {
            RunQueueController controller; // paused: nothing starts
            QString error;
            QVERIFY2(controller.open(store, &error), qPrintable(error));
            QVERIFY(controller.isPaused());
            QVERIFY2(controller.enqueue({ demoSpec(0), demoSpec(1), demoSpec(2) }, &queued, &error),
                qPrintable(error));
            QCOMPARE(queued.size(), std::size_t(3));
            QVERIFY(controller.move(queued[2], -2, &error));
            QVERIFY(controller.cancel(queued[0], &error));
            QVERIFY(controller.remove(queued[1], &error));
            QCOMPARE(controller.activeCount(), 0);
            QString spec;
            QVERIFY(controller.specOf(queued[2], &spec, &error));
            QCOMPARE(RunSpec::fromJson(nlohmann::json::parse(spec.toStdString())).seed, std::uint64_t(2));
            // Removing an unknown run names it.
            QVERIFY(!controller.remove(9999, &error));
            QVERIFY2(error.contains(QStringLiteral("9999")), qPrintable(error));
        }
        // What a restart finds: run 3 still queued, run 1 cancelled, run 2 gone; recorded as the CLI does.
        ResultsStore s;
        QVERIFY(s.open(store.toStdString()));
        std::vector<RunRecord> runs;
        QVERIFY(s.listRuns({}, &runs));
        QCOMPARE(runs.size(), std::size_t(2));
        QCOMPARE(runs[0].id, queued[0]);
        QCOMPARE(QString(toString(runs[0].status)), QStringLiteral("cancelled"));
        QCOMPARE(runs[1].id, queued[2]);
        QCOMPARE(QString(toString(runs[1].status)), QStringLiteral("queued"));
        QCOMPARE(QString::fromStdString(runs[1].task), QStringLiteral("demo-supersense"));
        QCOMPARE(QString::fromStdString(runs[1].method), QStringLiteral("ladder"));
        QCOMPARE(runs[1].seed.value_or(-1), std::int64_t(2));
    }

    // The queue trains each run in its own `ladder worker` process: one killed by SIGSEGV mid-step (the
    // documented LADDER_WORKER_FAULT) leaves this process up and its run failed with the signal and the
    // worker's last lines, and the next queued run trains to the end.
    void crashedRunFailsAloneAndTheQueueGoesOn()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(test::makeTinyDemo(root)));
        const QString store = QString::fromStdString(root) + QStringLiteral("/results.sqlite");
        RunQueueController controller;
        QString error;
        QVERIFY2(controller.open(store, &error), qPrintable(error));
        QVERIFY2(!controller.workerProgram().isEmpty(), "no ladder executable found beside the test");
        std::vector<qint64> ids;
        QVERIFY2(controller.enqueue({ shortSpec(0), shortSpec(1) }, &ids, &error), qPrintable(error));
        qputenv("LADDER_WORKER_FAULT", QStringLiteral("SIGSEGV step=2 run=%1").arg(ids[0]).toUtf8());
        QSignalSpy failed(&controller, &RunQueueController::runFailed);
        QSignalSpy finished(&controller, &RunQueueController::runFinished);
        QSignalSpy progress(&controller, &RunQueueController::runProgress);
        controller.setPaused(false);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 180000);
        qunsetenv("LADDER_WORKER_FAULT");
        QCOMPARE(failed.count(), 1);
        QCOMPARE(failed.at(0).at(0).toLongLong(), ids[0]);
        const QString message = failed.at(0).at(1).toString();
        QVERIFY2(message.contains(QStringLiteral("was killed by signal 11 (SIGSEGV)")), qPrintable(message));
        ResultsStore s;
        QVERIFY(s.open(store.toStdString()));
        RunRecord crashed, next;
        QVERIFY(s.getRun(ids[0], &crashed));
        QVERIFY(s.getRun(ids[1], &next));
        QCOMPARE(QString(toString(crashed.status)), QStringLiteral("failed"));
        QCOMPARE(crashed.step, std::int64_t(1)); // step 2 never ended
        std::vector<LogLine> logs;
        QVERIFY(s.getLogs(ids[0], 0, &logs));
        QVERIFY(!logs.empty());
        QVERIFY2(logs.back().message.find("last lines of the worker") != std::string::npos,
            logs.back().message.c_str());
        QCOMPARE(QString(toString(next.status)), QStringLiteral("finished"));
        QCOMPARE(next.step, std::int64_t(6));
        QVERIFY(next.figures.peakAllocatedBytes.value_or(0) > 0);
        // The worker's steps reached the window as progress.
        bool sawNext = false;
        for (const auto& args : progress)
            sawNext = sawNext || args.at(0).value<RunProgress>().runId == ids[1];
        QVERIFY(sawNext);
        qInfo("crashed run %lld: %s; run %lld finished at step %lld", static_cast<long long>(ids[0]),
            qPrintable(message), static_cast<long long>(ids[1]), static_cast<long long>(next.step));
    }

    // "GPUs per run" 2 (training.processes): the run's worker, under the controller's worker thread,
    // starts two ranks as child processes; rank 0 records the run, and its events reach the window.
    void aRunOfTwoProcessesTrainsUnderItsWorker()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(test::makeTinyDemo(root)));
        const QString store = QString::fromStdString(root) + QStringLiteral("/results.sqlite");
        RunQueueController controller;
        QString error;
        QVERIFY2(controller.open(store, &error), qPrintable(error));
        auto json = shortSpec(0).toJson();
        json["training"]["processes"] = 2;
        std::vector<qint64> ids;
        QVERIFY2(controller.enqueue({ RunSpec::fromJson(json, "spec") }, &ids, &error), qPrintable(error));
        QSignalSpy finished(&controller, &RunQueueController::runFinished);
        QSignalSpy progress(&controller, &RunQueueController::runProgress);
        controller.setPaused(false);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 180000);
        ResultsStore s;
        QVERIFY(s.open(store.toStdString()));
        RunRecord run;
        QVERIFY(s.getRun(ids[0], &run));
        QVERIFY2(run.status == RunState::Finished, run.errorMessage.c_str());
        QCOMPARE(run.step, std::int64_t(6));
        std::vector<LogLine> logs;
        QVERIFY(s.getLogs(ids[0], 0, &logs));
        bool ranks = false;
        for (const auto& l : logs)
            ranks = ranks || l.message.find("data parallel: gloo, rank 0 of 2") != std::string::npos;
        QVERIFY(ranks);
        QVERIFY(progress.count() > 0);
        QCOMPARE(QString::fromStdString(test::rawQuery(store.toStdString(), "PRAGMA integrity_check")),
            QStringLiteral("ok"));
    }

    // File > Open Results Store never creates a store; a sweep queued from the window skips the specs a run
    // holds, as `ladder sweep` does (the same spec hash): finished before, queued, or training in a live
    // process; a failed run holds nothing, and neither does a run left running by a dead process.
    void openExistingOnlyAndSweepsSkipHeldSpecs()
    {
        const auto root = test::makeTempDir();
        const QString missing = QString::fromStdString(root) + QStringLiteral("/nothing.sqlite");
        RunQueueController controller;
        QString error;
        QVERIFY(!controller.open(missing, &error, /*create=*/false));
        QCOMPARE(error, QStringLiteral("no results store at %1").arg(missing));
        QVERIFY(!QFileInfo::exists(missing));

        const QString store = QString::fromStdString(root) + QStringLiteral("/results.sqlite");
        {
            ResultsStore s;
            QVERIFY(s.open(store.toStdString()));
            std::int64_t id = -1;
            QVERIFY(s.createRun(newRunFor(demoSpec(0), RunState::Running), &id)); // seed 0: finished
            QVERIFY(s.finishRun(id, RunState::Finished, {}));
            QVERIFY(s.createRun(newRunFor(demoSpec(1), RunState::Queued), &id)); // seed 1: queued
            QVERIFY(
                s.createRun(newRunFor(demoSpec(2), RunState::Running), &id)); // seed 2: running, this process
            QVERIFY(s.createRun(newRunFor(demoSpec(3), RunState::Running), &id)); // seed 3: failed
            QVERIFY(s.finishRun(id, RunState::Failed, {}, "out of memory"));
        }
        QVERIFY2(controller.open(store, &error, false), qPrintable(error));
        controller.setPaused(true); // nothing is trained here
        std::vector<qint64> ids;
        int finished = -1, active = -1;
        QVERIFY2(controller.enqueueUnlessHeld(
                     { demoSpec(0), demoSpec(1), demoSpec(2), demoSpec(3), demoSpec(4), demoSpec(4) }, &ids,
                     &finished, &active, &error),
            qPrintable(error));
        QCOMPARE(finished, 1);
        QCOMPARE(active, 2);
        QCOMPARE(ids.size(), std::size_t(3)); // seed 3 again, and seed 4 twice (a batch may repeat a spec)
        ResultsStore s;
        QVERIFY(s.open(store.toStdString(), ResultsStore::OpenMode::ReadOnly));
        std::vector<std::int64_t> seeds;
        for (const auto id : ids) {
            RunRecord run;
            QVERIFY(s.getRun(id, &run));
            QCOMPARE(QString(toString(run.status)), QString("queued"));
            seeds.push_back(run.seed.value_or(-1));
        }
        QCOMPARE(seeds, (std::vector<std::int64_t> { 3, 4, 4 }));
    }

    // Two windows on one store: the first claims the CPU (its lease), the second claims nothing there
    // and says who holds it; the first trains its queue to the end and then gives the lease up.
    void oneDeviceOneWindow()
    {
        const auto root = test::makeTempDir();
        const QString store = QString::fromStdString(root) + QStringLiteral("/results.sqlite");
        const auto slowPath = root + "/slow-worker.sh";
        std::ofstream(slowPath) << "#!/bin/sh\nsleep 1\n";
        QFile::setPermissions(
            QString::fromStdString(slowPath), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
        RunQueueController first, second;
        QString error;
        for (auto* c : { &first, &second }) {
            c->setWorkerProgram(QString::fromStdString(slowPath));
            QVERIFY2(c->open(store, &error), qPrintable(error));
        }
        std::vector<qint64> ids;
        QVERIFY2(first.enqueue({ demoSpec(0), demoSpec(1) }, &ids, &error), qPrintable(error));
        QSignalSpy firstFinished(&first, &RunQueueController::runFinished);
        QSignalSpy busy(&second, &RunQueueController::deviceBusyElsewhere);
        first.setPaused(false);
        QCOMPARE(first.activeCount(), 1);
        QCOMPARE(first.leasedDevices(), (std::vector<QString> { QStringLiteral("cpu") }));
        second.setPaused(false);
        QCOMPARE(second.activeCount(), 0);
        QCOMPARE(busy.count(), 1);
        QCOMPARE(busy.at(0).at(0).toString(), QStringLiteral("cpu"));
        QCOMPARE(busy.at(0).at(1).toString(), first.leaseOwner());
        QTRY_COMPARE_WITH_TIMEOUT(firstFinished.count(), 2, 30000);
        QCOMPARE(second.activeCount(), 0);
        QVERIFY(first.leasedDevices().empty());
        ResultsStore s;
        QVERIFY(s.open(store.toStdString()));
        std::optional<DeviceLease> lease;
        QVERIFY(s.getDeviceLease("cpu", &lease));
        QVERIFY(!lease);
    }

    // cancel() and closing the controller as a run ends: the worker object is deleted on its own thread
    // as soon as it finishes, possibly before the controller hears of it. Nothing may touch it then.
    // LADDER_CANCEL_LOOP sets the count (default 300).
    void cancelAndCloseAsRunsEnd()
    {
        const auto root = test::makeTempDir();
        const QString store = QString::fromStdString(root) + QStringLiteral("/results.sqlite");
        const QString worker = quickWorker(root);
        const int loops = qEnvironmentVariableIsSet("LADDER_CANCEL_LOOP")
            ? qEnvironmentVariableIntValue("LADDER_CANCEL_LOOP")
            : 300;
        int ended = 0, closedWhileActive = 0;
        for (int i = 0; i < loops; ++i) {
            auto controller = std::make_unique<RunQueueController>();
            controller->setWorkerProgram(worker);
            QString error;
            QVERIFY2(controller->open(store, &error), qPrintable(error));
            std::vector<qint64> ids;
            QVERIFY2(controller->enqueue({ demoSpec(static_cast<std::uint64_t>(i)) }, &ids, &error),
                qPrintable(error));
            QSignalSpy finished(controller.get(), &RunQueueController::runFinished);
            controller->setPaused(false);
            QVERIFY(controller->isActive(ids[0]));
            if (i % 3 == 2) {
                // Close while the run ends (the destructor cancels and waits).
                QCoreApplication::processEvents();
                closedWhileActive += controller->isActive(ids[0]) ? 1 : 0;
                controller.reset();
                continue;
            }
            QElapsedTimer timer;
            timer.start();
            while (finished.isEmpty() && timer.elapsed() < 20000) {
                controller->cancel(ids[0]);
                if (i % 2)
                    controller->cancelAll();
                QCoreApplication::processEvents(QEventLoop::AllEvents, 1);
            }
            QCOMPARE(finished.count(), 1);
            ++ended;
        }
        ResultsStore s;
        QVERIFY(s.open(store.toStdString()));
        std::vector<RunRecord> runs;
        QVERIFY(s.listRuns({}, &runs));
        QCOMPARE(static_cast<int>(runs.size()), loops);
        int final = 0;
        for (const auto& r : runs)
            final += isFinalState(r.status) ? 1 : 0;
        qInfo(
            "cancel loop: %d runs, %d ended under cancel() calls, %d controllers closed as their run ended, "
            "%d runs final in the store",
            loops, ended, closedWhileActive, final);
        QCOMPARE(final, loops);
    }
};

LADDER_TEST_MAIN(TestRunQueue)
#include "test_runqueue.moc"
