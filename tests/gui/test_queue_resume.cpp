// Resume in the workbench: the queue view's Resume button sends a failed run back to the queue, and the
// run's worker (`ladder worker`, a process of its own) continues it from its training state; the result
// equals a run never interrupted. A damaged state is refused in a dialog, and the run is left as it was.
#include <filesystem>
#include <fstream>

#include <QMessageBox>
#include <QPushButton>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "QueueView.h"
#include "RunQueueController.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using ladder::widgets::MainWindow;
namespace fs = std::filesystem;

namespace {

struct Stored {
    RunRecord run;
    std::vector<MetricPoint> metrics;
    std::vector<LogLine> logs;
};

Stored readStored(const std::string& path, std::int64_t id)
{
    ResultsStore store;
    Stored s;
    if (!store.open(path, ResultsStore::OpenMode::ReadOnly) || !store.getRun(id, &s.run)
        || !store.getMetrics(id, ResultsStore::kAllSteps, &s.metrics) || !store.getLogs(id, 0, &s.logs))
        s.run.status = RunState::Queued; // "not readable": never what the tests wait for
    return s;
}

} // namespace

class TestQueueResume : public QObject, protected MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        setUpCase();
    }
    void init() { openWindow(); }
    void cleanup() { closeWindow(); }

    void resumeButtonContinuesAFailedRun()
    {
        const auto root = test::makeTempDir();
        test::writeTinyBackbone(root + "/tiny-t5", 1);
        const auto task = test::writeFruitTask(root);
        const nlohmann::json spec { { "backbone", root + "/tiny-t5" }, { "task", test::fruitTaskSpec(task) },
            { "method", { { "method", "lora" }, { "rank", 4 } } },
            { "training",
                { { "max_steps", 10 }, { "batch_size", 8 }, { "warmup_steps", 2 }, { "learning_rate", 0.01 },
                    { "max_source_length", 16 }, { "eval_every_steps", 5 }, { "save_state_every_steps", 2 },
                    { "threads", 1 } } },
            { "seed", 5 } };
        std::ofstream(root + "/run.json") << spec.dump(2);
        const auto config = QString::fromStdString(root + "/run.json");
        const auto reference = root + "/reference.sqlite";
        auto r = test::runCli({ "train", "--config", config, "--store", QString::fromStdString(reference) });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());

        // The window's store gets a run that failed at step 7 (a NaN), with its state of step 6.
        const auto store = m_options.storePath.toStdString();
        qputenv("LADDER_FAULT_INJECT", "nan@7");
        r = test::runCli({ "train", "--config", config, "--store", m_options.storePath });
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(r.exitCode, 1);
        const qint64 id = 1;
        QCOMPARE(QString(toString(readStored(store, id).run.status)), QString("failed"));

        m_window->queueController()->setPaused(false); // the fixture's window opens paused
        auto* resume = m_window->queueView()->findChild<QPushButton*>(QStringLiteral("resumeRunButton"));
        QVERIFY(resume);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->queueView()->selectRun(id), 10000);
        QTRY_VERIFY_WITH_TIMEOUT(resume->isEnabled(), 5000);

        // A damaged state: a dialog naming the file, and the run stays failed.
        const auto state = ResultsStore::statePathFor(store, id);
        const auto intact = fs::file_size(state);
        fs::resize_file(state, intact / 2);
        QSignalSpy errors(m_window.get(), &MainWindow::errorShown);
        QTest::mouseClick(resume, Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(errors.count(), 1, 5000);
        QVERIFY2(errors.at(0).at(0).toString().contains(QString::fromStdString(state)),
            qPrintable(errors.at(0).at(0).toString()));
        QCOMPARE(QString(toString(readStored(store, id).run.status)), QString("failed"));
        fs::remove(state);

        // No state at all: the run trains again from step 0, as the same run, and ends equal to the
        // reference.
        QTest::mouseClick(resume, Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(readStored(store, id).run.status == RunState::Finished, 120000);
        const auto again = readStored(store, id);
        const auto ref = readStored(reference, 1);
        QCOMPARE(again.metrics.size(), ref.metrics.size());
        for (std::size_t i = 0; i < ref.metrics.size(); ++i)
            QVERIFY(std::abs(*again.metrics[i].loss - *ref.metrics[i].loss) <= 1e-6);
        QTRY_COMPARE_WITH_TIMEOUT(m_window->queueController()->activeCount(), 0, 30000);

        // Once more with a state: a second failed run resumes from step 6 in its worker.
        qputenv("LADDER_FAULT_INJECT", "nan@7");
        r = test::runCli({ "train", "--config", config, "--store", m_options.storePath });
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(r.exitCode, 1);
        const qint64 second = 2;
        QTRY_VERIFY_WITH_TIMEOUT(m_window->queueView()->selectRun(second), 10000);
        QTRY_VERIFY_WITH_TIMEOUT(resume->isEnabled(), 5000);
        QTest::mouseClick(resume, Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(readStored(store, second).run.status == RunState::Finished, 120000);
        const auto resumed = readStored(store, second);
        bool logged = false;
        for (const auto& line : resumed.logs)
            logged = logged || line.message.rfind("resumed from step 6 of 10", 0) == 0;
        QVERIFY(logged);
        QCOMPARE(resumed.metrics.size(), ref.metrics.size());
        for (std::size_t i = 0; i < ref.metrics.size(); ++i)
            QVERIFY2(std::abs(*resumed.metrics[i].loss - *ref.metrics[i].loss) <= 1e-6,
                qPrintable(QString("step %1").arg(ref.metrics[i].step)));
        QCOMPARE(resumed.run.figures.testMetric, ref.run.figures.testMetric);
        QVERIFY(!fs::exists(state));
        QVERIFY(!fs::exists(ResultsStore::statePathFor(store, second)));
    }
};

LADDER_TEST_MAIN(TestQueueResume)
#include "test_queue_resume.moc"
