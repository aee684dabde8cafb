// The main window, driven offscreen: versions, the compute device table, Help > About, the views and
// keyboard shortcuts, Tools > Sweeps queueing the dialog's runs, and the `ladderbench --screenshot` path of
// the built binary (with --store and --view live|queue|compare). Every window and process uses a store and
// settings in a temporary folder, never the user's.
#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QHeaderView>
#include <QImage>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QPointer>
#include <QProcess>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTableView>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>

#include <QLineEdit>

#include "CompareTab.h"
#include "ComputeDeviceModel.h"
#include "LiveView.h"
#include "MainWindow.h"
#include "OverviewPanel.h"
#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "SweepDialog.h"
#include "device/Devices.h"
#include "ladder/Version.h"
#include "store/ResultsStore.h"

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
    }

    void init()
    {
        ladder::widgets::MainWindowOptions options;
        options.storePath = m_home.filePath(QStringLiteral("store/results.sqlite"));
        options.settingsFile = m_home.filePath(QStringLiteral("settings.ini"));
        options.startQueue = false;
        m_window = std::make_unique<MainWindow>(options);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
    }

    void cleanup() { m_window.reset(); }

    void titleMenusAndStatusBar()
    {
        QCOMPARE(m_window->windowTitle(), QStringLiteral("LadderBench — results.sqlite"));
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
        QVERIFY(model->rowCount() >= 1);
        const int cpu = rowOf(model, QStringLiteral("cpu"));
        QCOMPARE(cpu, 0); // the CPU is listed first
        QVERIFY(model->index(cpu, ComputeDeviceModel::NameColumn)
                    .data()
                    .toString()
                    .startsWith(QStringLiteral("CPU")));
        const QString total = model->index(cpu, ComputeDeviceModel::TotalMemoryColumn).data().toString();
        QVERIFY2(total.endsWith(QStringLiteral(" GiB")), qPrintable(total));
        // Every row the table shows is a device the core reports, in the same order.
        const auto devices = ladder::listComputeDevices();
        QCOMPARE(model->rowCount(), int(devices.size()));
        for (int row = 0; row < model->rowCount(); ++row)
            QCOMPARE(model->index(row, 0).data().toString(), QString::fromStdString(devices[size_t(row)].id));
        // The whole table is visible: no rows hidden below a scroll bar.
        QVERIFY(table->viewport()->height() >= table->verticalHeader()->length());
    }

    void refreshActionRequeriesDevices()
    {
        auto* model = m_window->overviewPanel()->deviceModel();
        QSignalSpy reset(model, &QAbstractItemModel::modelReset);
        QAction* refresh = findAction(m_window.get(), QStringLiteral("actionRefreshDevices"));
        QVERIFY(refresh);
        refresh->trigger();
        QCOMPARE(reset.count(), 1);
        QVERIFY(rowOf(model, QStringLiteral("cpu")) >= 0);
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
        QCOMPARE(m_window->currentViewName(), QStringLiteral("overview"));
        QVERIFY(m_window->showView(QStringLiteral("live")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
        QVERIFY(!m_window->showView(QStringLiteral("no-such-view")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("live"));
    }

    void keyboardShortcuts_data()
    {
        QTest::addColumn<QString>("action");
        QTest::addColumn<QKeySequence>("keys");
        QTest::newRow("run") << "actionRun" << QKeySequence(Qt::CTRL | Qt::Key_Return);
        QTest::newRow("run (keypad)") << "actionRun" << QKeySequence(Qt::CTRL | Qt::Key_Enter);
        QTest::newRow("cancel") << "actionCancelRun" << QKeySequence(Qt::Key_Escape);
        QTest::newRow("save preset") << "actionSavePreset" << QKeySequence(Qt::CTRL | Qt::Key_S);
        QTest::newRow("export") << "actionExport" << QKeySequence(Qt::CTRL | Qt::Key_E);
        QTest::newRow("filter") << "actionFilter" << QKeySequence(Qt::CTRL | Qt::Key_F);
    }

    void keyboardShortcuts()
    {
        QFETCH(QString, action);
        QFETCH(QKeySequence, keys);
        QAction* a = findAction(m_window.get(), action);
        QVERIFY(a);
        QVERIFY2(a->shortcuts().contains(keys), qPrintable(keys.toString()));
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
    std::unique_ptr<MainWindow> m_window;
};

QTEST_MAIN(TestMainWindow)
#include "test_mainwindow.moc"
