// The main window's compute device table, driven offscreen: the CPU row against sysconf and /proc/meminfo,
// GPUs queried off the GUI thread (F5 asks again), and the ComputeDeviceModel with its GiB figures.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <QAbstractItemModelTester>
#include <QFile>
#include <QHeaderView>
#include <QSemaphore>
#include <QSignalSpy>
#include <QTableView>
#include <QThread>
#include <QThreadPool>
#include <QtTest>

#include "ComputeDeviceModel.h"
#include "ExperimentForm.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "OverviewPanel.h"
#include "TestSupport.h"
#include "device/Devices.h"

using ladder::widgets::ComputeDeviceModel;

namespace {

constexpr std::uint64_t kGiB = 1024ull * 1024ull * 1024ull;

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

} // namespace

class TestMainWindowDevices : public QObject, protected MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { setUpCase(); }

    void init() { openWindow(); }

    void cleanup() { closeWindow(); }

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
};

QTEST_MAIN(TestMainWindowDevices)
#include "test_mainwindow_devices.moc"
