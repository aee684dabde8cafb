// The `ladderbench --screenshot` path of the built binary (with --store and --view live|queue|compare), its
// failures, and a window that loads a store at once. Every process uses a temporary home, never the user's.
#include <algorithm>
#include <vector>

#include <QDir>
#include <QFileInfo>
#include <QImage>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QtTest>

#include "CompareTab.h"
#include "LiveView.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "RunQueueModel.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using ladder::widgets::MainWindow;

namespace {

constexpr int kProcessTimeoutMs = 60000;
const QSize kScreenshotSize(1280, 800); // what ladderbench --screenshot renders

// The GUI binary beside this test's build tree: <build>/tests/test_mainwindow_screenshot ->
// <build>/bin/ladderbench.
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

class TestMainWindowScreenshot : public QObject, protected MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { setUpCase(); }

    void init() { openWindow(); }

    void cleanup() { closeWindow(); }

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
};

QTEST_MAIN(TestMainWindowScreenshot)
#include "test_mainwindow_screenshot.moc"
