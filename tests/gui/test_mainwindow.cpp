// The main window, driven offscreen: versions, the compute device table, Help > About, and the
// `ladderbench --screenshot` path of the built binary.
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

#include "ComputeDeviceModel.h"
#include "MainWindow.h"
#include "OverviewPanel.h"
#include "device/Devices.h"
#include "ladder/Version.h"

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

} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void init()
    {
        m_window = std::make_unique<MainWindow>();
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window.get()));
    }

    void cleanup() { m_window.reset(); }

    void titleMenusAndStatusBar()
    {
        QCOMPARE(m_window->windowTitle(), QStringLiteral("LadderBench"));
        QStringList menus;
        for (QAction* action : m_window->menuBar()->actions())
            menus << action->text().remove(QLatin1Char('&'));
        QCOMPARE(
            menus, (QStringList { QStringLiteral("File"), QStringLiteral("View"), QStringLiteral("Help") }));
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
        QCOMPARE(m_window->viewNames(), QStringList { QStringLiteral("overview") });
        QCOMPARE(m_window->currentViewName(), QStringLiteral("overview"));
        QVERIFY(m_window->showView(QStringLiteral("overview")));
        QVERIFY(!m_window->showView(QStringLiteral("no-such-view")));
        QCOMPARE(m_window->currentViewName(), QStringLiteral("overview"));
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
    }

private:
    std::unique_ptr<MainWindow> m_window;
};

QTEST_MAIN(TestMainWindow)
#include "test_mainwindow.moc"
