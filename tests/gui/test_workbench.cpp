// The workbench window driven end to end, offscreen, on a tiny built-in demo (tests/support
// makeTinyDemo): configure an LST run through the form's widgets, run it to the end and see its points
// in the live chart and its row in the queue; cancel a run mid-way with Esc; a run on a corrupt checkpoint
// shows an error and the window goes on; closing while a run trains asks, cancels and waits.
#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include "BackbonePicker.h"
#include "CompareTab.h"
#include "ExperimentForm.h"
#include "KeepListEditor.h"
#include "LiveView.h"
#include "MainWindow.h"
#include "MethodOptionsEditor.h"
#include "QueueView.h"
#include "RunDetailsView.h"
#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "RunWorker.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {
constexpr int kRunTimeoutMs = 60000;

// QCOMPARE on the enum itself would need a QTest::toString for it: compare the stored words.
QString stateName(RunState state)
{
    return QString::fromLatin1(toString(state));
}

template <typename T> T* child(QWidget* parent, const char* name)
{
    T* w = parent->findChild<T*>(QString::fromLatin1(name));
    if (!w)
        qFatal("no child %s", name);
    return w;
}

RunRecord storedRun(const QString& store, qint64 id)
{
    ResultsStore s;
    RunRecord run;
    std::string error;
    if (!s.open(store.toStdString(), &error) || !s.getRun(id, &run, &error))
        qFatal("reading run %lld: %s", static_cast<long long>(id), error.c_str());
    return run;
}

std::int64_t storedMetricCount(const QString& store, qint64 id)
{
    ResultsStore s;
    std::int64_t n = -1;
    s.open(store.toStdString());
    s.countMetrics(id, &n);
    return n;
}

} // namespace

class TestWorkbench : public QObject {
    Q_OBJECT

private:
    QString m_root;
    std::string m_demo;
    int m_storeCounter = 0;

    MainWindowOptions options()
    {
        MainWindowOptions o;
        o.storePath = QStringLiteral("%1/store-%2/results.sqlite").arg(m_root).arg(++m_storeCounter);
        o.settingsFile = QStringLiteral("%1/settings-%2.ini").arg(m_root).arg(m_storeCounter);
        return o;
    }

    // The small training settings every test types into the form.
    static void typeTraining(ExperimentForm* form, int maxSteps)
    {
        child<QSpinBox>(form, "maxStepsSpin")->setValue(maxSteps);
        child<QSpinBox>(form, "batchSpin")->setValue(8);
        child<QSpinBox>(form, "warmupSpin")->setValue(2);
        child<QSpinBox>(form, "evalEverySpin")->setValue(4);
        child<QSpinBox>(form, "maxSourceLengthSpin")->setValue(16);
        child<QSpinBox>(form, "maxEvalExamplesSpin")->setValue(8);
        child<QLineEdit>(form, "learningRateEdit")->setText(QStringLiteral("0.01"));
    }

    static qint64 onlyRunId(MainWindow& window)
    {
        const auto& runs = window.queueModel()->runs();
        return runs.empty() ? 0 : runs.front().id;
    }

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_root = QString::fromStdString(test::makeTempDir());
        m_demo = test::makeTinyDemo(m_root.toStdString());
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(m_demo));
    }

    void firstLaunchPreselectsTheDemo()
    {
        MainWindow window(options());
        ExperimentForm* form = window.experimentForm();
        QCOMPARE(form->backbonePicker()->backbone(), QStringLiteral("demo"));
        const auto spec = form->specJson();
        QCOMPARE(
            QString::fromStdString(spec.at("task").at("type").get<std::string>()), QStringLiteral("demo"));
        QCOMPARE(QString::fromStdString(spec.at("method").at("method").get<std::string>()),
            QStringLiteral("ladder"));
        QVERIFY2(form->isValid(), qPrintable(form->problem()));
        QVERIFY(form->runButton()->isEnabled());
        // The tiny demo backbone is read from LADDER_DEMO_DIR: 2 layers -> two keep checkboxes.
        QCOMPARE(form->methodEditor()->keepEditor()->layerCount(), 2);
        for (const char* view : { "overview", "experiment", "queue", "live" })
            QVERIFY2(window.viewNames().contains(QString::fromLatin1(view)), view);
    }

    void configureLstRunToTheEnd()
    {
        const auto o = options();
        MainWindow window(o);
        window.show();
        ExperimentForm* form = window.experimentForm();
        // LST, r 4, keep only side layer 1 (the "last only" preset), through the widgets.
        auto* method = child<QComboBox>(form, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("ladder")));
        child<QSpinBox>(form, "ladderR")->setValue(4);
        QTest::mouseClick(child<QPushButton>(form, "keepPresetLast"), Qt::LeftButton);
        QVERIFY(!form->methodEditor()->keepEditor()->layerBox(0)->isChecked());
        QVERIFY(form->methodEditor()->keepEditor()->layerBox(1)->isChecked());
        typeTraining(form, 12);
        QVERIFY2(form->isValid(), qPrintable(form->problem()));

        QSignalSpy finished(window.queueController(), &RunQueueController::runFinished);
        QTest::mouseClick(form->runButton(), Qt::LeftButton);
        QCOMPARE(window.currentViewName(), QStringLiteral("live"));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        const qint64 id = finished.at(0).at(0).toLongLong();
        QVERIFY2(stateName(finished.at(0).at(1).value<RunState>()) == QStringLiteral("finished"),
            qPrintable(finished.at(0).at(2).toString()));

        // The store has the run as the CLI records it: the spec the widgets made, the figures.
        const RunRecord run = storedRun(o.storePath, id);
        QCOMPARE(stateName(run.status), QStringLiteral("finished"));
        QCOMPARE(QString::fromStdString(run.method), QStringLiteral("ladder"));
        QCOMPARE(QString::fromStdString(run.task), QStringLiteral("demo-supersense"));
        const auto spec = nlohmann::json::parse(run.specJson);
        QCOMPARE(spec.at("method").at("r").get<int>(), 4);
        QCOMPARE(spec.at("method").at("keep"), nlohmann::json::array({ 1 }));
        QCOMPARE(spec.at("method").at("init"), nlohmann::json("fisher")); // the form's default, the paper's
        QVERIFY(run.figures.peakAllocatedBytes.value_or(0) > 0);
        QVERIFY(run.figures.bestValidationMetric.has_value());

        // Points arrived in the live chart: one per step, and the validation points (every 4 steps).
        QCOMPARE(window.liveView()->runId(), id);
        QTRY_COMPARE_WITH_TIMEOUT(window.liveView()->pointCount(), 12, 5000);
        QCOMPARE(storedMetricCount(o.storePath, id), std::int64_t(12));
        QTRY_VERIFY_WITH_TIMEOUT(window.liveView()->evaluationPointCount() >= 3, 5000);
        // The queue shows it finished with its metric.
        QTRY_VERIFY_WITH_TIMEOUT(window.queueModel()->rowOf(id) >= 0
                && window.queueModel()->run(window.queueModel()->rowOf(id))->status == RunState::Finished,
            5000);
        const int row = window.queueModel()->rowOf(id);
        QVERIFY(window.queueModel()
                    ->index(row, RunQueueModel::MetricColumn)
                    .data()
                    .toString()
                    .startsWith("accuracy"));
        QCOMPARE(window.queueModel()
                     ->index(row, RunQueueModel::ProgressColumn)
                     .data(RunQueueModel::ProgressRole)
                     .toInt(),
            100);
        // The compare view has it in its table and as a point of its plot (finished, with memory and metric).
        auto inCompare = [&] {
            for (const auto& r : window.compareTab()->visibleRuns())
                if (r.id == id)
                    return true;
            return false;
        };
        QTRY_VERIFY_WITH_TIMEOUT(inCompare(), 10000);
        // The run details dock shows the run the live view shows.
        QTRY_VERIFY_WITH_TIMEOUT(
            window.runDetails()->titleText().contains(QStringLiteral("finished")), 10000);
    }

    void escapeCancelsTheSelectedRunMidway()
    {
        const auto o = options();
        MainWindow window(o);
        window.show();
        QVERIFY(QTest::qWaitForWindowActive(&window));
        typeTraining(window.experimentForm(), 100000);
        QSignalSpy progress(window.queueController(), &RunQueueController::runProgress);
        QSignalSpy finished(window.queueController(), &RunQueueController::runFinished);
        window.findChild<QAction*>(QStringLiteral("actionRun"))->trigger();
        // LST's default Fisher initialisation reports first (the queue's Progress column shows it), then
        // the training steps: cancel once three steps have been reported.
        auto stepsReported = [&] {
            int n = 0;
            for (const auto& args : progress)
                n += args.at(0).value<RunProgress>().step > 0 ? 1 : 0;
            return n;
        };
        QTRY_VERIFY_WITH_TIMEOUT(stepsReported() >= 3, kRunTimeoutMs);
        const auto first = progress.at(0).at(0).value<RunProgress>();
        QVERIFY2(first.phase.startsWith(QStringLiteral("Fisher initialisation ")), qPrintable(first.phase));
        QTRY_VERIFY_WITH_TIMEOUT(window.queueView()->selectedRun() > 0, 5000);
        // Esc cancels only inside the queue view, and asks first for a running run (answered yes here;
        // test_mainwindow drives the real question box).
        window.setCancelConfirmation([](qint64) { return true; });
        window.showView(QStringLiteral("queue"));
        window.queueView()->table()->setFocus();
        QTRY_VERIFY(window.queueView()->table()->hasFocus());
        QTest::keyClick(window.queueView()->table(), Qt::Key_Escape);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        const qint64 id = finished.at(0).at(0).toLongLong();
        QCOMPARE(stateName(finished.at(0).at(1).value<RunState>()), QStringLiteral("cancelled"));
        const RunRecord run = storedRun(o.storePath, id);
        QCOMPARE(stateName(run.status), QStringLiteral("cancelled"));
        QVERIFY(run.step > 0 && run.step < 100000);
        QCOMPARE(window.queueController()->activeCount(), 0);
    }

    void corruptCheckpointShowsAnErrorAndTheAppGoesOn()
    {
        const auto o = options();
        MainWindow window(o);
        window.show();
        ExperimentForm* form = window.experimentForm();
        const QString corrupt = QString::fromStdString(test::makeCorruptBackbone(m_demo));
        QString error;
        QVERIFY2(form->backbonePicker()->addFolder(corrupt, true, &error), qPrintable(error));
        auto* method = child<QComboBox>(form, "methodCombo");
        method->setCurrentIndex(method->findData(QStringLiteral("bitfit")));
        typeTraining(form, 6);
        QVERIFY2(form->isValid(), qPrintable(form->problem()));

        QSignalSpy shown(&window, &MainWindow::errorShown);
        QSignalSpy finished(window.queueController(), &RunQueueController::runFinished);
        QTest::mouseClick(form->runButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        QTRY_COMPARE_WITH_TIMEOUT(shown.count(), 1, 5000);
        const QString message = shown.at(0).at(0).toString();
        QVERIFY2(message.contains(QStringLiteral("model.safetensors")), qPrintable(message));
        // A non-modal box with the error text, and the run failed in the store.
        auto* box = window.findChild<QMessageBox*>(QStringLiteral("errorMessageBox"));
        QVERIFY(box);
        QVERIFY(box->isVisible());
        QVERIFY(!box->isModal());
        QVERIFY(box->text().contains(QStringLiteral("model.safetensors")));
        const qint64 failedId = finished.at(0).at(0).toLongLong();
        const RunRecord failed = storedRun(o.storePath, failedId);
        QCOMPARE(stateName(failed.status), QStringLiteral("failed"));
        QVERIFY(QString::fromStdString(failed.errorMessage).contains(QStringLiteral("model.safetensors")));

        // The window goes on: the next run, on the good backbone, trains to the end.
        QVERIFY(form->backbonePicker()->setBackbone(QStringLiteral("demo")));
        QTest::mouseClick(form->runButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kRunTimeoutMs);
        QCOMPARE(stateName(finished.at(1).at(1).value<RunState>()), QStringLiteral("finished"));
    }

    void queueContinuesAfterAFailure()
    {
        // Two runs queued together, the first on the corrupt backbone: the second still runs.
        const auto o = options();
        MainWindow window(o);
        ExperimentForm* form = window.experimentForm();
        typeTraining(form, 4);
        child<QSpinBox>(form, "evalEverySpin")->setValue(0);
        window.queueController()->setPaused(true);
        QVERIFY(
            form->backbonePicker()->addFolder(QString::fromStdString(m_demo + "/corrupt-backbone"), true));
        window.runFromForm();
        QVERIFY(form->backbonePicker()->setBackbone(QStringLiteral("demo")));
        window.runFromForm();
        QSignalSpy finished(window.queueController(), &RunQueueController::runFinished);
        window.queueController()->setPaused(false);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kRunTimeoutMs);
        QCOMPARE(stateName(finished.at(0).at(1).value<RunState>()), QStringLiteral("failed"));
        QCOMPARE(stateName(finished.at(1).at(1).value<RunState>()), QStringLiteral("finished"));
    }

    void closingWhileTrainingAsksCancelsAndWaits()
    {
        const auto o = options();
        auto* window = new MainWindow(o);
        window->setAttribute(Qt::WA_DeleteOnClose, false);
        window->show();
        typeTraining(window->experimentForm(), 100000);
        int asked = 0;
        window->setCloseConfirmation([&asked](int active) {
            ++asked;
            return active == 1;
        });
        QSignalSpy progress(window->queueController(), &RunQueueController::runProgress);
        window->runFromForm();
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 2, kRunTimeoutMs);
        const qint64 id = onlyRunId(*window);
        QVERIFY(id > 0);
        QVERIFY(!window->close()); // asks, starts cancelling, stays open until the run has stopped
        QCOMPARE(asked, 1);
        QTRY_VERIFY_WITH_TIMEOUT(!window->isVisible(), kRunTimeoutMs);
        QCOMPARE(window->queueController()->activeCount(), 0);
        QCOMPARE(stateName(storedRun(o.storePath, id).status), QStringLiteral("cancelled"));
        delete window;
    }

    void queueSurvivesARestart()
    {
        auto o = options();
        o.startQueue = false;
        qint64 first = 0, second = 0;
        {
            MainWindow window(o);
            typeTraining(window.experimentForm(), 3);
            child<QLineEdit>(window.experimentForm(), "seedsEdit")->setText(QStringLiteral("0-1"));
            window.runFromForm();
            QTRY_COMPARE_WITH_TIMEOUT(window.queueModel()->rowCount(), 2, 5000);
            first = window.queueModel()->runs()[0].id;
            second = window.queueModel()->runs()[1].id;
            QCOMPARE(stateName(window.queueModel()->runs()[0].status), QStringLiteral("queued"));
            // Reorder: the second seed first.
            QVERIFY(window.queueView()->selectRun(second));
            QTest::mouseClick(child<QPushButton>(window.queueView(), "moveUpButton"), Qt::LeftButton);
            QTRY_COMPARE_WITH_TIMEOUT(window.queueModel()->runs()[0].id, second, 5000);
        }
        // A new window on the same store and settings: the queue is there, in the new order, and runs.
        o.startQueue = true;
        MainWindow window(o);
        QSignalSpy finished(window.queueController(), &RunQueueController::runFinished);
        // Runs left queued wait for the user: the queue opens paused, says so, and starts on Start.
        window.show();
        QVERIFY(window.queueController()->isPaused());
        QTRY_COMPARE_WITH_TIMEOUT(
            window.queueView()->bannerText(), QStringLiteral("2 runs are queued:"), 5000);
        QTest::mouseClick(child<QPushButton>(window.queueView(), "startQueueButton"), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kRunTimeoutMs);
        QCOMPARE(finished.at(0).at(0).toLongLong(), second);
        QCOMPARE(finished.at(1).at(0).toLongLong(), first);
        // The form came back as it was when the runs were queued.
        QCOMPARE(child<QSpinBox>(window.experimentForm(), "maxStepsSpin")->value(), 3);
    }
};

LADDER_TEST_MAIN(TestWorkbench)
#include "test_workbench.moc"
