// The main window's queue, driven offscreen: Esc cancels only inside the queue view and asks before it
// cancels a running run, queued runs wait for Start, Live follows the running run, the demo backbone is
// picked up once built, and Tools > Sweeps queues the dialog's runs.
#include <vector>

#include <QApplication>
#include <QDir>
#include <QFile>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableView>
#include <QTimer>
#include <QtTest>

#include "BackbonePicker.h"
#include "CompareTab.h"
#include "ExperimentForm.h"
#include "LiveView.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "QueueView.h"
#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "SweepDialog.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"

using ladder::widgets::MainWindow;

namespace {

QString stateOf(const QString& storePath, qint64 id)
{
    ladder::ResultsStore store;
    ladder::RunRecord run;
    if (!store.open(storePath.toStdString()) || !store.getRun(id, &run))
        return QStringLiteral("<no run %1>").arg(id);
    return QString::fromLatin1(ladder::toString(run.status));
}

// The form's first-launch spec as a run spec, ready for the queue (it is never trained in these tests
// unless a test points LADDER_DEMO_DIR at a tiny demo).
ladder::RunSpec firstLaunchRunSpec()
{
    return ladder::RunSpec::fromJson(ladder::widgets::ExperimentForm::firstLaunchSpec());
}

// Answers the next modal question box from inside its own loop: clicks `button`, returns its text.
void answerNextQuestion(QMessageBox::StandardButton button, QString* text, bool* seen)
{
    QTimer::singleShot(0, [=] {
        auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
        if (!box)
            return;
        *seen = true;
        *text = box->text();
        box->button(button)->click();
    });
}

} // namespace

class TestMainWindowQueue : public QObject, protected MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { setUpCase(); }

    void init() { openWindow(); }

    void cleanup() { closeWindow(); }

    // Esc is not the window's: in the compare filter or a field of the form it cancels nothing. In the
    // queue view it cancels the selected queued run (without asking: it has not started).
    void escCancelsOnlyInTheQueueView()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        std::vector<qint64> ids;
        QString error;
        QVERIFY2(
            m_window->queueController()->enqueue({ firstLaunchRunSpec() }, &ids, &error), qPrintable(error));
        const qint64 id = ids.front();
        QTRY_VERIFY_WITH_TIMEOUT(m_window->queueModel()->rowOf(id) >= 0, 5000);
        m_window->showRun(id); // shown in Live and selected in the queue, as after Run
        QCOMPARE(m_window->queueView()->selectedRun(), id);
        QSignalSpy sent(m_window.get(), &MainWindow::cancelSent);

        QTest::keyClick(m_window.get(), Qt::Key_F, Qt::ControlModifier);
        QLineEdit* filter = m_window->compareTab()->filterEdit();
        QTRY_VERIFY(filter->hasFocus());
        QTest::keyClicks(filter, QStringLiteral("lora"));
        QTest::keyClick(filter, Qt::Key_Escape);
        m_window->showView(QStringLiteral("experiment"));
        auto* seeds = m_window->experimentForm()->findChild<QLineEdit*>(QStringLiteral("seedsEdit"));
        QVERIFY(seeds);
        seeds->setFocus();
        QTest::keyClick(seeds, Qt::Key_Escape);
        QCOMPARE(sent.count(), 0);
        QCOMPARE(stateOf(m_options.storePath, id), QStringLiteral("queued"));

        m_window->showView(QStringLiteral("queue"));
        m_window->queueView()->table()->setFocus();
        QTRY_VERIFY(m_window->queueView()->table()->hasFocus());
        QTest::keyClick(m_window->queueView()->table(), Qt::Key_Escape);
        QCOMPARE(sent.count(), 1);
        QCOMPARE(stateOf(m_options.storePath, id), QStringLiteral("cancelled"));
    }

    // Runs left queued by an earlier session wait: the window opens on the queue, paused, with
    // "N runs are queued: Start"; Start starts the queue.
    void queuedRunsWaitForStart()
    {
        std::vector<qint64> ids;
        QString error;
        QVERIFY2(m_window->queueController()->enqueue(
                     { firstLaunchRunSpec(), firstLaunchRunSpec() }, &ids, &error),
            qPrintable(error));
        m_window.reset(); // closed with two runs queued

        ladder::widgets::MainWindowOptions options = m_options;
        options.startQueue = true; // as an interactive launch
        MainWindow window(options);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QVERIFY(window.queueController()->isPaused());
        QCOMPARE(window.currentViewName(), QStringLiteral("queue"));
        QTRY_COMPARE_WITH_TIMEOUT(
            window.queueView()->bannerText(), QStringLiteral("2 runs are queued:"), 5000);
        auto* start = window.queueView()->findChild<QPushButton*>(QStringLiteral("startQueueButton"));
        QVERIFY(start && start->isVisible());
        QCOMPARE(start->text(), QStringLiteral("Start"));
        for (qint64 id : ids)
            QCOMPARE(stateOf(options.storePath, id), QStringLiteral("queued"));

        QTest::mouseClick(start, Qt::LeftButton);
        QVERIFY(!window.queueController()->isPaused());
        QVERIFY(!window.queueView()->isPaused());
        // Without the demo backbone the runs fail at once; the queue goes on until nothing is queued.
        for (qint64 id : ids)
            QTRY_VERIFY_WITH_TIMEOUT(stateOf(options.storePath, id) != QStringLiteral("queued"), 60000);
        QTRY_VERIFY_WITH_TIMEOUT(window.queueView()->bannerText().isEmpty(), 10000);
        QTRY_COMPARE_WITH_TIMEOUT(window.queueController()->activeCount(), 0, 60000);
    }

    // `ladder demo` run while the window is open: the backbone list reads the demo once it is published.
    void demoBuiltLaterIsPickedUp()
    {
        const QByteArray saved = qgetenv("LADDER_DEMO_DIR");
        const QString demoRoot = m_home.filePath(QStringLiteral("later-demo-%1").arg(m_counter));
        qputenv("LADDER_DEMO_DIR", demoRoot.toUtf8());
        {
            ladder::widgets::BackbonePicker picker;
            QVERIFY2(
                picker.info().error.contains(QStringLiteral("not built")), qPrintable(picker.info().error));
            QVERIFY(!picker.watchedPaths().isEmpty());
            QSignalSpy changed(&picker, &ladder::widgets::BackbonePicker::backboneChanged);
            // As `ladder demo` publishes it: a finished staging folder renamed into place.
            const QString staging = m_home.filePath(QStringLiteral("staging-%1").arg(m_counter));
            QVERIFY(QDir().mkpath(staging));
            QFile config(QDir(staging).filePath(QStringLiteral("config.json")));
            QVERIFY(config.open(QIODevice::WriteOnly));
            config.write(R"({"d_ff": 37, "d_kv": 8, "d_model": 32, "feed_forward_proj": "relu",
                "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2, "relative_attention_num_buckets": 8,
                "relative_attention_max_distance": 128, "vocab_size": 1302, "torch_dtype": "float32",
                "model_type": "t5", "is_encoder_decoder": true, "tie_word_embeddings": true})");
            config.close();
            QFile spiece(QDir(staging).filePath(QStringLiteral("spiece.model")));
            QVERIFY(spiece.open(QIODevice::WriteOnly));
            spiece.write("x");
            spiece.close();
            QVERIFY(QDir().mkpath(demoRoot));
            QVERIFY(QDir().rename(staging, QDir(demoRoot).filePath(QStringLiteral("backbone"))));
            QTRY_VERIFY_WITH_TIMEOUT(picker.info().error.isEmpty(), 10000);
            QVERIFY(picker.info().config.has_value());
            QCOMPARE(picker.info().config->numLayers, 2);
            QVERIFY(changed.count() >= 1);
        }
        qputenv("LADDER_DEMO_DIR", saved);
    }

    // On a tiny demo: Esc in the queue view on a running run asks, and cancels only on Yes; a run queued
    // while one trains does not take the live view; the next run that starts does.
    void escOnARunningRunAsksAndLiveFollowsTheRunningRun()
    {
        LADDER_REQUIRE_FIXTURES();
        const QByteArray saved = qgetenv("LADDER_DEMO_DIR");
        const std::string demo
            = ladder::test::makeTinyDemo(m_home.filePath(QStringLiteral("tiny")).toStdString());
        qputenv("LADDER_DEMO_DIR", QByteArray::fromStdString(demo));
        {
            ladder::widgets::MainWindowOptions options = m_options;
            options.storePath = m_home.filePath(QStringLiteral("tiny-store/results.sqlite"));
            options.settingsFile = m_home.filePath(QStringLiteral("tiny-settings.ini"));
            options.startQueue = true;
            MainWindow window(options);
            window.show();
            QVERIFY(QTest::qWaitForWindowActive(&window));
            ladder::widgets::ExperimentForm* form = window.experimentForm();
            auto spin = [form](const char* name, int value) {
                auto* box = form->findChild<QSpinBox*>(QString::fromLatin1(name));
                if (!box)
                    qFatal("no spin box %s", name);
                box->setValue(value);
            };
            spin("maxStepsSpin", 100000);
            spin("batchSpin", 8);
            spin("warmupSpin", 2);
            spin("evalEverySpin", 0);
            spin("maxSourceLengthSpin", 16);
            QVERIFY2(form->isValid(), qPrintable(form->problem()));
            QSignalSpy finished(window.queueController(), &ladder::widgets::RunQueueController::runFinished);
            window.runFromForm();
            QTRY_COMPARE_WITH_TIMEOUT(window.queueController()->activeCount(), 1, 60000);
            const qint64 first = window.queueController()->activeRuns().front();
            QTRY_COMPARE_WITH_TIMEOUT(window.liveView()->runId(), first, 5000);
            window.runFromForm(); // the same device: it waits behind the first
            QTRY_COMPARE_WITH_TIMEOUT(window.queueModel()->rowCount(), 2, 5000);
            QCOMPARE(window.liveView()->runId(), first); // not taken by the queued run
            QCOMPARE(window.currentViewName(), QStringLiteral("live"));

            QSignalSpy sent(&window, &MainWindow::cancelSent);
            window.showView(QStringLiteral("queue"));
            QVERIFY(window.queueView()->selectRun(first));
            window.queueView()->table()->setFocus();
            QTRY_VERIFY(window.queueView()->table()->hasFocus());
            QString question;
            bool seen = false;
            answerNextQuestion(QMessageBox::No, &question, &seen);
            QTest::keyClick(window.queueView()->table(), Qt::Key_Escape);
            QVERIFY2(seen, "Esc on a running run did not ask");
            QVERIFY2(question.contains(QStringLiteral("is training")), qPrintable(question));
            QCOMPARE(sent.count(), 0);
            QVERIFY(window.queueController()->isActive(first));

            window.activateWindow(); // the offscreen platform has no window manager to reactivate it
            QVERIFY(QTest::qWaitForWindowActive(&window));
            window.queueView()->table()->setFocus();
            QTRY_VERIFY(window.queueView()->table()->hasFocus());
            seen = false;
            answerNextQuestion(QMessageBox::Yes, &question, &seen);
            QTest::keyClick(window.queueView()->table(), Qt::Key_Escape);
            QVERIFY(seen);
            QCOMPARE(sent.count(), 1);
            QCOMPARE(sent.at(0).at(0).toLongLong(), first);
            QTRY_VERIFY_WITH_TIMEOUT(finished.count() >= 1, 60000);
            QCOMPARE(finished.at(0).at(0).toLongLong(), first);
            QCOMPARE(stateOf(options.storePath, first), QStringLiteral("cancelled"));

            // The queued run starts now, and the live view follows it.
            QTRY_COMPARE_WITH_TIMEOUT(window.queueController()->activeCount(), 1, 60000);
            const qint64 second = window.queueController()->activeRuns().front();
            QVERIFY(second != first);
            QTRY_COMPARE_WITH_TIMEOUT(window.liveView()->runId(), second, 5000);
            window.setCancelConfirmation([](qint64) { return true; });
            QVERIFY(window.requestCancel(second));
            QTRY_VERIFY_WITH_TIMEOUT(finished.count() >= 2, 60000);
        }
        qputenv("LADDER_DEMO_DIR", saved);
    }

    void sweepsDialogQueuesItsRuns()
    {
        // Tools > Sweeps: the dialog opens on the form's spec; its runs go into the (paused) queue.
        QSignalSpy queued(m_window->queueController(), &ladder::widgets::RunQueueController::queueChanged);
        int specs = 0;
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<ladder::widgets::SweepDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            dialog->setSeedsText(QStringLiteral("0"));
            dialog->addPreset(ladder::widgets::SweepPreset::AdapterHidden);
            specs = static_cast<int>(dialog->specs().size());
            dialog->accept();
        });
        findAction(m_window.get(), QStringLiteral("actionSweeps"))->trigger();
        QCOMPARE(specs, 4); // hidden 6, 12, 24, 48
        QVERIFY(queued.count() >= 1);
        QTRY_COMPARE(m_window->queueModel()->rowCount(), 4);
        for (const auto& run : m_window->queueModel()->runs()) {
            QCOMPARE(QString::fromStdString(run.method), QStringLiteral("adapter"));
            QCOMPARE(QString(ladder::toString(run.status)), QStringLiteral("queued"));
        }
        QCOMPARE(m_window->currentViewName(), QStringLiteral("queue"));
    }
};

LADDER_TEST_MAIN(TestMainWindowQueue)
#include "test_mainwindow_queue.moc"
