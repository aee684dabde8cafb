// Several runs per device in the window's queue (issue 19, core/train/DevicePlacement.h) on the CPU with a
// pretend budget: two LST runs of the tiny demo fit 600 MiB and start together, the third waits with the
// reason (in the controller and in the queue table) and starts when one ends; a second window on the store
// places nothing on the leased device; a budget below one run's charge starts nothing and says why. The
// worker is a stand-in that holds its run for a while (placement is what is tested, not training).
#include <fstream>

#include <QFile>
#include <QSignalSpy>
#include <QtTest>

#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/DevicePlacement.h"
#include "train/RunSpec.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

RunSpec lstSpec(std::uint64_t seed)
{
    return RunSpec::fromJson({ { "backbone", "demo" }, { "task", { { "type", "demo" } } },
        { "method", { { "method", "ladder" }, { "r", 4 } } },
        { "training", { { "max_steps", 6 }, { "batch_size", 8 }, { "threads", 1 } } }, { "seed", seed } });
}

// A `ladder worker` stand-in that holds its run for `seconds` and ends without recording it (the
// supervisor then fails the run: "exited with status 0").
QString holdingWorker(const std::string& dir, int seconds)
{
    const auto path = dir + "/holding-worker.sh";
    std::ofstream(path) << "#!/bin/sh\nsleep " << seconds << "\n";
    QFile::setPermissions(
        QString::fromStdString(path), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    return QString::fromStdString(path);
}

} // namespace

class TestQueuePlacement : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_root = test::makeTempDir();
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(test::makeTinyDemo(m_root)));
    }

    void twoRunsShareThePretendCpu()
    {
        const QString store = QString::fromStdString(m_root) + QStringLiteral("/shared.sqlite");
        RunQueueController controller, other;
        QString error;
        for (auto* c : { &controller, &other }) {
            c->setWorkerProgram(holdingWorker(m_root, 3));
            c->setPretendBudgets({ { "cpu", 600 * kMiB } });
            QVERIFY2(c->open(store, &error), qPrintable(error));
        }
        std::vector<qint64> ids;
        QVERIFY2(controller.enqueue({ lstSpec(1), lstSpec(2), lstSpec(3) }, &ids, &error), qPrintable(error));
        // The order of starts and ends, and every reason the third run is given.
        std::vector<QString> events;
        std::vector<QString> thirdReasons;
        connect(&controller, &RunQueueController::runStarted, this,
            [&](qint64 id, const QString&) { events.push_back(QStringLiteral("start %1").arg(id)); });
        connect(&controller, &RunQueueController::runFinished, this,
            [&](qint64 id, RunState, const QString&) { events.push_back(QStringLiteral("end %1").arg(id)); });
        connect(&controller, &RunQueueController::waitingReasonsChanged, this, [&] {
            const QString reason = controller.waitingReason(ids[2]);
            if (!reason.isEmpty())
                thirdReasons.push_back(reason);
        });
        controller.setPaused(false);
        QTRY_COMPARE_WITH_TIMEOUT(controller.activeCount(), 2, 30000); // once the estimates are in

        // The queue table shows why the third waits.
        RunQueueModel model;
        std::vector<RunRecord> runs;
        {
            ResultsStore s;
            QVERIFY(s.open(store.toStdString(), ResultsStore::OpenMode::ReadOnly));
            QVERIFY(s.listRuns({}, &runs));
        }
        model.setRuns(runs);
        model.setWaitingReasons(controller.waitingReasons());
        const int row = model.rowOf(ids[2]);
        const QString shown = model.data(model.index(row, RunQueueModel::ErrorColumn)).toString();
        QVERIFY2(shown.startsWith(QStringLiteral("waits: needs ")), qPrintable(shown));
        QCOMPARE(model.data(model.index(row, RunQueueModel::StatusColumn), Qt::ToolTipRole).toString(),
            controller.waitingReason(ids[2]));

        // A second window on the store places nothing on the device this one holds.
        QSignalSpy busy(&other, &RunQueueController::deviceBusyElsewhere);
        other.setPaused(false);
        QCOMPARE(other.activeCount(), 0);
        QCOMPARE(busy.count(), 1);
        QVERIFY2(other.waitingReason(ids[2]).startsWith(QStringLiteral("cpu is used by another window")),
            qPrintable(other.waitingReason(ids[2])));
        other.setPaused(true);

        QTRY_COMPARE_WITH_TIMEOUT(static_cast<int>(events.size()), 6, 60000);
        qInfo("events: %s", qPrintable(QStringList(events.begin(), events.end()).join(QStringLiteral(", "))));
        qInfo("run %lld waited: %s", static_cast<long long>(ids[2]), qPrintable(thirdReasons.back()));
        // Runs 1 and 2 started together, before anything ended; run 3 after one of them ended.
        QCOMPARE(events[0], QStringLiteral("start %1").arg(ids[0]));
        QCOMPARE(events[1], QStringLiteral("start %1").arg(ids[1]));
        QVERIFY(events[2].startsWith(QStringLiteral("end ")));
        QCOMPARE(events[3], QStringLiteral("start %1").arg(ids[2]));
        const QString expected
            = QStringLiteral("left of its 600.0 MiB pretend budget with runs %1 and %2 on it")
                  .arg(ids[0])
                  .arg(ids[1]);
        bool named = false;
        for (const auto& reason : thirdReasons)
            named = named || (reason.startsWith(QStringLiteral("needs ")) && reason.endsWith(expected));
        QVERIFY2(named, qPrintable(thirdReasons.back()));
        QVERIFY(controller.waitingReasons().empty());
        QTRY_VERIFY(controller.leasedDevices().empty());
    }

    void aRunThatNeverFitsWaitsWithTheReason()
    {
        const QString store = QString::fromStdString(m_root) + QStringLiteral("/small.sqlite");
        RunQueueController controller;
        controller.setWorkerProgram(holdingWorker(m_root, 1));
        controller.setPretendBudgets({ { "cpu", 100 * kMiB } });
        QString error;
        QVERIFY2(controller.open(store, &error), qPrintable(error));
        std::vector<qint64> ids;
        QVERIFY2(controller.enqueue({ lstSpec(1) }, &ids, &error), qPrintable(error));
        controller.setPaused(false);
        QTRY_VERIFY_WITH_TIMEOUT(
            controller.waitingReason(ids[0]).startsWith(QStringLiteral("never fits: needs ")), 30000);
        QVERIFY2(controller.waitingReason(ids[0]).endsWith(
                     QStringLiteral("more than cpu's pretend budget of 100.0 MiB")),
            qPrintable(controller.waitingReason(ids[0])));
        QCOMPARE(controller.activeCount(), 0);
        qInfo("run %lld: %s", static_cast<long long>(ids[0]), qPrintable(controller.waitingReason(ids[0])));
        // A bigger budget: it starts.
        controller.setPretendBudgets({ { "cpu", 2 * kGiB } });
        QTRY_COMPARE_WITH_TIMEOUT(controller.activeCount(), 1, 30000);
        QVERIFY(controller.waitingReason(ids[0]).isEmpty());
        controller.cancelAll();
        controller.waitForWorkers();
    }

private:
    std::string m_root;
};

LADDER_TEST_MAIN(TestQueuePlacement)
#include "test_queue_placement.moc"
