// The run queue's table model (QAbstractItemModelTester, ordering, in-place updates) and the controller's
// store operations without training: enqueue, reorder, cancel and remove queued runs, and the queue as
// another connection (a second controller, as after a restart) sees it.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QtTest>

#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"

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
};

QTEST_MAIN(TestRunQueue)
#include "test_runqueue.moc"
