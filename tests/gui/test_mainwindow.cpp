// The main window, driven offscreen: versions, the compute device table (the CPU row against sysconf and
// /proc/meminfo; GPUs queried off the GUI thread), Help > About, the views and keyboard shortcuts (real key
// events to real widgets, checked by their effect), Esc that cancels only inside the queue view and asks
// before cancelling a running run, a queue that waits for Start when runs were left queued, the live view
// that follows the running run, the demo backbone picked up once built, Tools > Sweeps queueing the
// dialog's runs, and the `ladderbench --screenshot` path of the built binary (with --store and --view
// live|queue|compare). Every window and process uses a store and settings in a temporary folder, never
// the user's.
#include <unistd.h>

#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QFileDialog>
#include <QHeaderView>
#include <QImage>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QPointer>
#include <QProcess>
#include <QPushButton>
#include <QSemaphore>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTableView>
#include <QTemporaryDir>
#include <QThread>
#include <QTimer>
#include <QtTest>

#include <QLineEdit>

#include "BackbonePicker.h"
#include "CompareTab.h"
#include "ComputeDeviceModel.h"
#include "ExperimentForm.h"
#include "LiveView.h"
#include "MainWindow.h"
#include "OverviewPanel.h"
#include "QueueView.h"
#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "SweepDialog.h"
#include "TestSupport.h"
#include "device/Devices.h"
#include "ladder/Version.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"

using ladder::widgets::ComputeDeviceModel;
using ladder::widgets::MainWindow;

namespace {

constexpr std::uint64_t kGiB = 1024ull * 1024ull * 1024ull;
constexpr int kProcessTimeoutMs = 60000;
const QSize kScreenshotSize(1280, 800); // what ladderbench --screenshot renders

// The GUI binary beside this test's build tree: <build>/tests/test_mainwindow -> <build>/bin/ladderbench.
QString ladderbenchPath()
{
    return QDir(QCoreApplication::applicationDirPath())
        .absoluteFilePath(QStringLiteral("../bin/ladderbench"));
}

struct ProcessResult {
    int exitCode = -1;
    QString out;
    QString err;
};

ProcessResult runLadderbench(const QStringList& args)
{
    QProcess process;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    // The default store and the settings of the child live in a temporary home, not the user's.
    static QTemporaryDir home;
    env.insert(QStringLiteral("XDG_DATA_HOME"), home.filePath(QStringLiteral("data")));
    env.insert(QStringLiteral("XDG_CONFIG_HOME"), home.filePath(QStringLiteral("config")));
    process.setProcessEnvironment(env);
    process.start(ladderbenchPath(), args);
    ProcessResult r;
    if (!process.waitForFinished(kProcessTimeoutMs)) {
        process.kill();
        process.waitForFinished();
        r.err = QStringLiteral("timed out");
        return r;
    }
    r.exitCode = process.exitStatus() == QProcess::NormalExit ? process.exitCode() : -1;
    r.out = QString::fromLocal8Bit(process.readAllStandardOutput());
    r.err = QString::fromLocal8Bit(process.readAllStandardError());
    return r;
}

QAction* findAction(QWidget* window, const QString& objectName)
{
    return window->findChild<QAction*>(objectName);
}

int rowOf(const QAbstractItemModel* model, const QString& id)
{
    for (int row = 0; row < model->rowCount(); ++row) {
        if (model->index(row, ComputeDeviceModel::IdColumn).data().toString() == id)
            return row;
    }
    return -1;
}

// /proc/meminfo's field in bytes, read here independently of the core's reader.
std::uint64_t meminfoBytes(const QString& field)
{
    QFile file(QStringLiteral("/proc/meminfo"));
    if (!file.open(QIODevice::ReadOnly | QIODevice::Text))
        return 0;
    const QStringList lines = QString::fromLatin1(file.readAll()).split(QLatin1Char('\n'));
    for (const QString& line : lines) {
        if (line.startsWith(field + QLatin1Char(':'))) {
            const QStringList parts = line.simplified().split(QLatin1Char(' '));
            return parts.size() >= 2 ? parts[1].toULongLong() * 1024ull : 0;
        }
    }
    return 0;
}

// The digits of "12,345,678 bytes" (the device table's tooltip) as a number.
std::uint64_t tooltipBytes(const QString& text)
{
    QString digits;
    for (QChar c : text)
        if (c.isDigit())
            digits += c;
    return digits.toULongLong();
}

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

// A store with one finished LST run: 200 steps of a decaying loss, memory, and two evaluations.
QString makeStore(const QString& folder)
{
    const QString path = QDir(folder).filePath(QStringLiteral("results.sqlite"));
    ladder::ResultsStore store;
    std::string error;
    if (!store.open(path.toStdString(), &error))
        qFatal("%s", error.c_str());
    ladder::NewRun run;
    run.name = "ladder r=8 · demo-supersense · seed 0";
    run.specJson = R"({"backbone":"demo","task":{"type":"demo"},"method":{"method":"ladder"}})";
    run.method = "ladder";
    run.backbone = "demo";
    run.task = "demo-supersense";
    run.seed = 0;
    run.status = ladder::RunState::Running;
    std::int64_t id = 0;
    if (!store.createRun(run, &id, &error))
        qFatal("%s", error.c_str());
    std::vector<ladder::MetricPoint> points;
    for (int s = 1; s <= 200; ++s) {
        ladder::MetricPoint p;
        p.step = s;
        p.loss = 3.0 / (1.0 + 0.05 * s) + 0.1 * ((s * 7) % 5) / 5.0;
        p.learningRate = 3e-3 * std::min(1.0, s / 20.0);
        p.allocatedBytes = 40'000'000 + (s % 10) * 1'000'000;
        p.peakAllocatedBytes = 52'000'000;
        points.push_back(p);
    }
    store.appendMetrics(id, points);
    for (int s : { 100, 200 }) {
        ladder::Evaluation e;
        e.runId = id;
        e.step = s;
        e.mainMetricName = "accuracy";
        e.mainMetric = s == 100 ? 0.61 : 0.74;
        e.metrics = { { "accuracy", *e.mainMetric } };
        store.addEvaluation(e);
    }
    ladder::FinalFigures f;
    f.bestValidationMetric = 0.74;
    f.mainMetricName = "accuracy";
    f.peakAllocatedBytes = 52'000'000;
    f.trainableParams = 100000;
    f.backboneParams = 5000000;
    store.finishRun(id, ladder::RunState::Finished, f);
    return path;
}

} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        // The demo is looked for in an empty folder: the form reports it missing, nothing else reads it.
        qputenv("LADDER_DEMO_DIR", m_home.filePath(QStringLiteral("no-demo")).toUtf8());
        // As ladderbench's main() sets it: the platform appends it to titles that do not end with it.
        QGuiApplication::setApplicationDisplayName(QStringLiteral("LadderBench"));
    }

    void init()
    {
        // A store and settings of its own for every test function: an empty store, a first launch.
        m_options = ladder::widgets::MainWindowOptions();
        m_options.storePath = m_home.filePath(QStringLiteral("store-%1/results.sqlite").arg(++m_counter));
        m_options.settingsFile = m_home.filePath(QStringLiteral("settings-%1.ini").arg(m_counter));
        m_options.startQueue = false;
        m_window = std::make_unique<MainWindow>(m_options);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
    }

    void cleanup() { m_window.reset(); }

    void titleMenusAndStatusBar()
    {
        // "document — application", ending with the display name so that the platform adds nothing (the title
        // read "LadderBench — results.sqlite — LadderBench" when it started with it).
        QCOMPARE(m_window->windowTitle(), QStringLiteral("results.sqlite — LadderBench"));
        QVERIFY(m_window->windowTitle().endsWith(QGuiApplication::applicationDisplayName()));
        QCOMPARE(m_window->windowHandle()->title(), QStringLiteral("results.sqlite — LadderBench"));
        QCOMPARE(QFileInfo(m_window->windowFilePath()).fileName(), QStringLiteral("results.sqlite"));
        QStringList menus;
        for (QAction* action : m_window->menuBar()->actions())
            menus << action->text().remove(QLatin1Char('&'));
        QCOMPARE(menus,
            (QStringList { QStringLiteral("File"), QStringLiteral("Run"), QStringLiteral("View"),
                QStringLiteral("Tools"), QStringLiteral("Help") }));
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionQuit")));
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionAbout")));
        QVERIFY(m_window->statusBar()->currentMessage().startsWith(QStringLiteral("Ready")));
        auto* build = m_window->findChild<QLabel*>(QStringLiteral("buildStatusLabel"));
        QVERIFY(build);
        QVERIFY(build->text().contains(QString::fromStdString(ladder::torchVersion())));
    }

    void overviewShowsVersions()
    {
        auto label = [this](const char* name) {
            auto* l = m_window->findChild<QLabel*>(QString::fromLatin1(name));
            return l ? l->text() : QStringLiteral("<missing %1>").arg(QString::fromLatin1(name));
        };
        QCOMPARE(label("versionLabel"), QString::fromUtf8(ladder::kVersion));
        QCOMPARE(label("torchVersionLabel"), QString::fromStdString(ladder::torchVersion()));
        QCOMPARE(label("qtVersionLabel"), QString::fromUtf8(qVersion()));
        QVERIFY(label("cudaVersionLabel").contains(QString::fromStdString(ladder::cudaRuntimeVersion())));
    }

    void deviceTableHasCpuRow()
    {
        auto* table = m_window->findChild<QTableView*>(QStringLiteral("deviceTable"));
        QVERIFY(table);
        const QAbstractItemModel* model = table->model();
        QVERIFY(model);
        QCOMPARE(model->columnCount(), int(ComputeDeviceModel::ColumnCount));
        const int cpu = rowOf(model, QStringLiteral("cpu"));
        QCOMPARE(cpu, 0); // the CPU is listed first
        // The CPU's figures against the operating system, asked here through other calls: the online
        // processors (sysconf), the physical memory (sysconf pages x page size = MemTotal) and the memory
        // available now (/proc/meminfo read by this test, within 10 % of RAM: other processes run).
        const long processors = sysconf(_SC_NPROCESSORS_ONLN);
        QVERIFY(processors > 0);
        QCOMPARE(model->index(cpu, ComputeDeviceModel::NameColumn).data().toString(),
            QStringLiteral("CPU (%1 threads)").arg(processors));
        const std::uint64_t physical
            = std::uint64_t(sysconf(_SC_PHYS_PAGES)) * std::uint64_t(sysconf(_SC_PAGESIZE));
        QVERIFY(physical > 0);
        const QModelIndex total = model->index(cpu, ComputeDeviceModel::TotalMemoryColumn);
        QCOMPARE(tooltipBytes(total.data(Qt::ToolTipRole).toString()), physical);
        QCOMPARE(total.data().toString(),
            QStringLiteral("%1 GiB").arg(double(physical) / double(kGiB), 0, 'f', physical < kGiB ? 2 : 1));
        const std::uint64_t available = meminfoBytes(QStringLiteral("MemAvailable"));
        const std::uint64_t shown = tooltipBytes(
            model->index(cpu, ComputeDeviceModel::FreeMemoryColumn).data(Qt::ToolTipRole).toString());
        QVERIFY(shown > 0 && shown <= physical);
        QVERIFY2(std::max(shown, available) - std::min(shown, available) < physical / 10,
            qPrintable(QStringLiteral("shown %1, /proc/meminfo %2").arg(shown).arg(available)));
        // The GPU rows come from the background query; their number is what the CUDA runtime reports.
        auto* devices = m_window->overviewPanel()->deviceModel();
        QTRY_VERIFY_WITH_TIMEOUT(!devices->isQuerying(), 30000);
        QCOMPARE(model->rowCount(), 1 + int(ladder::cuda::devices().size()));
        // The whole table is visible: no rows hidden below a scroll bar.
        QVERIFY(table->viewport()->height() >= table->verticalHeader()->length());
    }

    void f5RequeriesDevices()
    {
        auto* model = m_window->overviewPanel()->deviceModel();
        QTRY_VERIFY_WITH_TIMEOUT(!model->isQuerying(), 30000); // the window's own first query
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        QSignalSpy reset(model, &QAbstractItemModel::modelReset);
        QSignalSpy queried(model, &ComputeDeviceModel::gpusQueried);
        QTest::keyClick(m_window->experimentForm(), Qt::Key_F5);
        QCOMPARE(reset.count(), 1); // the CPU row at once
        QVERIFY(queried.wait(30000)); // then the GPUs from the worker thread
        QCOMPARE(reset.count(), 2);
        QCOMPARE(rowOf(model, QStringLiteral("cpu")), 0);
    }

    // The GPU query runs on a thread of the pool, never the GUI thread; the CPU row is there before it
    // answers, the GPU rows after.
    void deviceModelFillsAsynchronously()
    {
        ComputeDeviceModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        QSemaphore started, release;
        QThread* queryThread = nullptr;
        model.setGpuQuery([&] {
            queryThread = QThread::currentThread();
            started.release();
            release.acquire(); // hold the answer until the test has looked at the model
            return std::vector<ladder::ComputeDevice> { { "cuda:0", "Test GPU", 80 * kGiB, 79 * kGiB } };
        });
        QSignalSpy queried(&model, &ComputeDeviceModel::gpusQueried);
        model.refresh();
        QVERIFY(started.tryAcquire(1, 10000)); // the query runs after refresh() has returned
        QCOMPARE(model.rowCount(), 1);
        QCOMPARE(model.index(0, ComputeDeviceModel::IdColumn).data().toString(), QStringLiteral("cpu"));
        QVERIFY(model.isQuerying());
        // A second refresh while the first query runs: the CPU row again, one more query after this one.
        model.refresh();
        QCOMPARE(model.rowCount(), 1);
        release.release();
        QVERIFY(queried.wait(10000));
        QVERIFY(queryThread != nullptr);
        QVERIFY(queryThread != QThread::currentThread());
        QVERIFY(queryThread != qApp->thread());
        QCOMPARE(model.rowCount(), 2);
        QCOMPARE(
            model.index(1, ComputeDeviceModel::NameColumn).data().toString(), QStringLiteral("Test GPU"));
        QVERIFY(started.tryAcquire(1, 10000)); // the repeated query
        release.release();
        QVERIFY(queried.wait(10000));
        QVERIFY(!model.isQuerying());
        // A failing query keeps the GPUs it had and says why.
        model.setGpuQuery(
            []() -> std::vector<ladder::ComputeDevice> { throw std::runtime_error("no driver"); });
        model.refresh();
        QVERIFY(queried.wait(10000));
        QCOMPARE(model.lastQueryError(), QStringLiteral("no driver"));
        QCOMPARE(model.rowCount(), 2);
        // A model deleted while its query runs gets nothing (and nothing crashes).
        {
            ComputeDeviceModel gone;
            gone.setGpuQuery([&] {
                started.release();
                release.acquire();
                return std::vector<ladder::ComputeDevice> {};
            });
            gone.refresh();
            QVERIFY(started.tryAcquire(1, 10000));
        }
        release.release();
        QVERIFY(QThreadPool::globalInstance()->waitForDone(10000));
    }

    void aboutShowsVersions()
    {
        QAction* about = findAction(m_window.get(), QStringLiteral("actionAbout"));
        QVERIFY(about);
        QString text;
        bool seen = false;
        // QMessageBox::about runs a modal loop: read and close it from inside that loop.
        QTimer::singleShot(0, this, [&] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (!box)
                return;
            seen = true;
            text = box->text();
            box->accept();
        });
        about->trigger();
        QVERIFY2(seen, "Help > About did not open a message box");
        QVERIFY2(text.contains(QString::fromStdString(ladder::torchVersion())), qPrintable(text));
        QVERIFY(text.contains(QString::fromUtf8(ladder::kVersion)));
        QVERIFY(text.contains(QString::fromUtf8(qVersion())));
        if (ladder::kBuiltWithCuda)
            QVERIFY(text.contains(QString::fromStdString(ladder::cudaRuntimeVersion())));
    }

    void quitClosesTheWindow()
    {
        QAction* quit = findAction(m_window.get(), QStringLiteral("actionQuit"));
        QVERIFY(quit);
        quit->trigger();
        QVERIFY(!m_window->isVisible());
    }

    void views()
    {
        QCOMPARE(m_window->viewNames(),
            (QStringList { QStringLiteral("overview"), QStringLiteral("experiment"), QStringLiteral("queue"),
                QStringLiteral("live"), QStringLiteral("compare") }));
        // An empty store: the window opens where one begins, the experiment form.
        QCOMPARE(m_window->currentViewName(), QStringLiteral("experiment"));
        // The overview describes the app as it is, not as milestones to come.
        auto* started = m_window->findChild<QLabel*>(QStringLiteral("gettingStartedLabel"));
        QVERIFY(started);
        QVERIFY2(!started->text().contains(QStringLiteral("later milestone")), qPrintable(started->text()));
        for (const char* word : { "Experiment", "Queue", "Live", "Compare", "ladder demo", "Start" })
            QVERIFY2(started->text().contains(QString::fromLatin1(word)), word);
        QVERIFY(m_window->showView(QStringLiteral("live")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
        QVERIFY(!m_window->showView(QStringLiteral("no-such-view")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
    }

    // Ctrl+Enter (and the keypad's Enter) from a field of the form runs the form: without the demo it
    // reports the form's problem instead of queueing.
    void ctrlEnterRunsTheForm_data()
    {
        QTest::addColumn<int>("key");
        QTest::newRow("return") << int(Qt::Key_Return);
        QTest::newRow("keypad enter") << int(Qt::Key_Enter);
    }

    void ctrlEnterRunsTheForm()
    {
        QFETCH(int, key);
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("experiment"));
        auto* steps = m_window->experimentForm()->findChild<QSpinBox*>(QStringLiteral("maxStepsSpin"));
        QVERIFY(steps);
        steps->setFocus();
        QSignalSpy shown(m_window.get(), &MainWindow::errorShown);
        QTest::keyClick(steps, Qt::Key(key), Qt::ControlModifier);
        QCOMPARE(shown.count(), 1);
        QVERIFY2(shown.at(0).at(0).toString().contains(QStringLiteral("not built")),
            qPrintable(shown.at(0).at(0).toString()));
        QCOMPARE(m_window->queueModel()->rowCount(), 0);
    }

    // Ctrl+S saves the form through the real file dialog; Ctrl+O loads it back.
    void ctrlSAndCtrlOSaveAndLoadAPreset()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("experiment"));
        auto* steps = m_window->experimentForm()->findChild<QSpinBox*>(QStringLiteral("maxStepsSpin"));
        QVERIFY(steps);
        steps->setValue(1234);
        steps->setFocus();
        const QString preset = m_home.filePath(QStringLiteral("preset-%1.json").arg(m_counter));
        bool seen = false;
        auto choose = [&] {
            QTimer::singleShot(0, this, [&] {
                auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
                if (!dialog)
                    return;
                seen = true;
                dialog->selectFile(preset);
                static_cast<QDialog*>(dialog)->accept(); // QFileDialog::accept(), as the Save button does
            });
        };
        choose();
        QTest::keyClick(steps, Qt::Key_S, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+S opened no file dialog");
        QFile file(preset);
        QVERIFY2(file.open(QIODevice::ReadOnly), qPrintable(preset));
        QVERIFY(file.readAll().contains("\"max_steps\": 1234"));
        steps->setValue(7);
        m_window->activateWindow(); // the offscreen platform has no window manager to reactivate it
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        steps->setFocus();
        seen = false;
        choose();
        QTest::keyClick(steps, Qt::Key_O, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+O opened no file dialog");
        QCOMPARE(steps->value(), 1234);
    }

    // Ctrl+E from another view: the compare view and its export dialog.
    void ctrlEExportsFromTheCompareView()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        m_window->showView(QStringLiteral("queue"));
        m_window->queueView()->table()->setFocus();
        bool seen = false;
        QTimer::singleShot(0, this, [&] {
            auto* dialog = qobject_cast<QFileDialog*>(QApplication::activeModalWidget());
            if (!dialog)
                return;
            seen = true;
            dialog->reject();
        });
        QTest::keyClick(m_window->queueView()->table(), Qt::Key_E, Qt::ControlModifier);
        QVERIFY2(seen, "Ctrl+E opened no file dialog");
        QCOMPARE(m_window->currentViewName(), QStringLiteral("compare"));
    }

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

    void ctrlFFocusesTheCompareFilter()
    {
        QVERIFY(QTest::qWaitForWindowActive(m_window.get()));
        QTest::keyClick(m_window.get(), Qt::Key_F, Qt::ControlModifier);
        QCOMPARE(m_window->currentViewName(), QStringLiteral("compare"));
        QTRY_VERIFY(m_window->compareTab()->filterEdit()->hasFocus());
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

    void deviceModelIsConsistent()
    {
        ComputeDeviceModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.refresh();
        model.setDevices({ { "cpu", "CPU (2 threads)", 16 * kGiB, 8 * kGiB },
            { "cuda:0", "NVIDIA H200", 141 * kGiB, 140 * kGiB },
            { "cuda:1", "NVIDIA H200", 141 * kGiB, 0 } });
        QCOMPARE(model.rowCount(), 3);
        QCOMPARE(
            model.index(1, ComputeDeviceModel::NameColumn).data().toString(), QStringLiteral("NVIDIA H200"));
        QCOMPARE(model.index(1, ComputeDeviceModel::TotalMemoryColumn).data().toString(),
            QStringLiteral("141.0 GiB"));
        QCOMPARE(model.index(2, ComputeDeviceModel::FreeMemoryColumn).data().toString(),
            QStringLiteral("unknown"));
        QVERIFY(!model.index(0, 0).parent().isValid());
        QCOMPARE(model.rowCount(model.index(0, 0)), 0);
        model.setDevices({});
        QCOMPARE(model.rowCount(), 0);
    }

    void formatGiB_data()
    {
        QTest::addColumn<quint64>("bytes");
        QTest::addColumn<QString>("text");
        QTest::newRow("unknown") << quint64(0) << QStringLiteral("unknown");
        QTest::newRow("quarter") << quint64(kGiB / 4) << QStringLiteral("0.25 GiB");
        QTest::newRow("one byte") << quint64(1) << QStringLiteral("0.00 GiB");
        QTest::newRow("one") << quint64(kGiB) << QStringLiteral("1.0 GiB");
        QTest::newRow("rounds") << quint64(kGiB + kGiB / 2 + kGiB / 100) << QStringLiteral("1.5 GiB");
        QTest::newRow("h200") << quint64(150'000'000'000ull) << QStringLiteral("139.7 GiB");
        QTest::newRow("huge") << quint64(4096) * kGiB << QStringLiteral("4096.0 GiB");
    }

    void formatGiB()
    {
        QFETCH(quint64, bytes);
        QFETCH(QString, text);
        QCOMPARE(ComputeDeviceModel::formatGiB(bytes), text);
    }

    void screenshotWritesPng()
    {
        QVERIFY2(QFileInfo::exists(ladderbenchPath()),
            qPrintable(QStringLiteral("%1 not built (build the ladderbench target)").arg(ladderbenchPath())));
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString png = dir.filePath(QStringLiteral("shots/main-window.png")); // the folder is created
        const ProcessResult r = runLadderbench({ QStringLiteral("--screenshot"), png });
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        QVERIFY(QFileInfo(png).size() > 0);
        QImage image;
        QVERIFY(image.load(png, "PNG"));
        QCOMPARE(image.size(), kScreenshotSize);
        // Not a blank canvas: the rendered window has text and frames in it.
        QVERIFY(image.pixel(10, 10) != image.pixel(image.width() / 2, image.height() / 2)
            || image.pixel(20, 70) != image.pixel(image.width() - 20, image.height() / 2));
    }

    void screenshotFailuresExitNonZero()
    {
        QVERIFY(QFileInfo::exists(ladderbenchPath()));
        QTemporaryDir dir;
        const ProcessResult unknownView
            = runLadderbench({ QStringLiteral("--view"), QStringLiteral("no-such-view"),
                QStringLiteral("--screenshot"), dir.filePath(QStringLiteral("x.png")) });
        QVERIFY(unknownView.exitCode != 0);
        QVERIFY2(unknownView.err.contains(QStringLiteral("no-such-view")), qPrintable(unknownView.err));
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("x.png"))));

        const ProcessResult badFormat = runLadderbench(
            { QStringLiteral("--screenshot"), dir.filePath(QStringLiteral("x.not-an-image-format")) });
        QVERIFY(badFormat.exitCode != 0);
        QVERIFY2(badFormat.err.contains(QStringLiteral("cannot write")), qPrintable(badFormat.err));

        const ProcessResult noStore
            = runLadderbench({ QStringLiteral("--store"), dir.filePath(QStringLiteral("missing.sqlite")),
                QStringLiteral("--screenshot"), dir.filePath(QStringLiteral("y.png")) });
        QVERIFY(noStore.exitCode != 0);
        QVERIFY2(noStore.err.contains(QStringLiteral("missing.sqlite")), qPrintable(noStore.err));
    }

    void screenshotOfAStore_data()
    {
        QTest::addColumn<QString>("view");
        QTest::newRow("live") << "live";
        QTest::newRow("queue") << "queue";
        QTest::newRow("compare") << "compare";
    }

    void screenshotOfAStore()
    {
        QFETCH(QString, view);
        QTemporaryDir dir;
        const QString store = makeStore(dir.path());
        const QString png = dir.filePath(view + QStringLiteral(".png"));
        const ProcessResult r = runLadderbench({ QStringLiteral("--store"), store, QStringLiteral("--view"),
            view, QStringLiteral("--screenshot"), png });
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        QImage image;
        QVERIFY(image.load(png, "PNG"));
        QCOMPARE(image.size(), kScreenshotSize);
        // The screenshot leaves the store as it was: one finished run, nothing started.
        ladder::ResultsStore s;
        std::vector<ladder::RunRecord> runs;
        QVERIFY(s.open(store.toStdString()) && s.listRuns({}, &runs));
        QCOMPARE(runs.size(), std::size_t(1));
        QCOMPARE(QString(ladder::toString(runs[0].status)), QStringLiteral("finished"));
    }

    void loadStoreNowShowsTheNewestRun()
    {
        QTemporaryDir dir;
        ladder::widgets::MainWindowOptions options;
        options.storePath = makeStore(dir.path());
        options.settingsFile = dir.filePath(QStringLiteral("settings.ini"));
        options.startQueue = false;
        MainWindow window(options);
        QString error;
        QVERIFY2(window.loadStoreNow(&error), qPrintable(error));
        QCOMPARE(window.queueModel()->rowCount(), 1);
        QCOMPARE(window.liveView()->pointCount(), 200);
        QCOMPARE(window.liveView()->evaluationPointCount(), 2);
        QVERIFY(window.waitForCompare(10000));
        QCOMPARE(window.compareTab()->visibleRuns().size(), std::size_t(1));
    }

private:
    QTemporaryDir m_home;
    int m_counter = 0;
    ladder::widgets::MainWindowOptions m_options;
    std::unique_ptr<MainWindow> m_window;
};

LADDER_TEST_MAIN(TestMainWindow)
#include "test_mainwindow.moc"
