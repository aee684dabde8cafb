// CompareTab over a real store: loads off the GUI thread, the table and the plot follow the task,
// backbone and text filters, selection flows between plot, table and details, exports (PNG, SVG, PDF,
// CSV) are valid files, Ctrl+F's slot focuses the filter.
#include <QAbstractItemModelTester>
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QSignalSpy>
#include <QTableView>
#include <QtTest>

#include "CompareFixtures.h"
#include "ComparePlot.h"
#include "CompareTab.h"
#include "QCustomPlotInclude.h"
#include "RunDetailsView.h"
#include "RunsFilterProxy.h"
#include "RunsTableModel.h"
#include "TestSupport.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

QByteArray readAll(const QString& path)
{
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

// Splits one CSV line (RFC 4180, no embedded line breaks in these rows).
QStringList csvSplit(const QString& line)
{
    QStringList fields;
    QString field;
    bool quoted = false;
    for (int i = 0; i < line.size(); ++i) {
        const QChar c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                field += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                field += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            fields << field;
            field.clear();
        } else {
            field += c;
        }
    }
    fields << field;
    return fields;
}

} // namespace

class TestCompareTab : public QObject {
    Q_OBJECT

private:
    std::string m_dir;
    QString m_store;

private Q_SLOTS:
    void initTestCase()
    {
        m_dir = test::makeTempDir();
        m_store = QString::fromStdString(m_dir + "/results.sqlite");
        QVERIFY(test::writeFixtureStore(m_store.toStdString()));
        // LADDER_TEST_SCREENSHOT_DIR=/some/dir also keeps a copy of the store (for ladderbench --screenshot).
        if (const QString dir = qEnvironmentVariable("LADDER_TEST_SCREENSHOT_DIR"); !dir.isEmpty()) {
            QFile::remove(dir + "/compare-fixture.sqlite");
            QVERIFY(test::writeFixtureStore((dir + "/compare-fixture.sqlite").toStdString()));
        }
    }

    void loadsAndFilters()
    {
        CompareTab tab(m_store);
        QAbstractItemModelTester tester(tab.proxy(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        QSignalSpy loaded(&tab, &CompareTab::loaded);
        QVERIFY(loaded.wait(10000));
        QVERIFY(tab.hasLoaded());
        QCOMPARE(tab.table()->model()->rowCount(), 11);
        QCOMPARE(tab.plot()->points().size(), std::size_t(7));
        // Filter choices come from the runs: all + 2 tasks, all + 2 backbones.
        QCOMPARE(tab.taskCombo()->count(), 3);
        QCOMPARE(tab.backboneCombo()->count(), 3);
        QCOMPARE(
            tab.backboneCombo()->itemText(tab.backboneCombo()->findData(QStringLiteral("/models/t5-small"))),
            QStringLiteral("t5-small"));

        tab.taskCombo()->setCurrentIndex(tab.taskCombo()->findData(QStringLiteral("demo-supersense")));
        QCOMPARE(tab.table()->model()->rowCount(), 10);
        QTRY_COMPARE(tab.plot()->points().size(), std::size_t(6));
        QCOMPARE(tab.plot()->frontIndices().size(), std::size_t(4));

        tab.filterEdit()->setText(QStringLiteral("ladder"));
        QCOMPARE(tab.table()->model()->rowCount(), 4);
        QTRY_COMPARE(tab.plot()->points().size(), std::size_t(2)); // the r=8 group and r=16

        tab.filterEdit()->clear();
        tab.taskCombo()->setCurrentIndex(0);
        tab.backboneCombo()->setCurrentIndex(
            tab.backboneCombo()->findData(QStringLiteral("/models/t5-small")));
        QCOMPARE(tab.table()->model()->rowCount(), 1);
        QTRY_COMPARE(tab.plot()->points().size(), std::size_t(1));

        tab.backboneCombo()->setCurrentIndex(0);
        tab.metricCombo()->setCurrentIndex(1);
        QCOMPARE(tab.plot()->metric(), CompareMetric::Test);
        tab.logAxisCheck()->setChecked(true);
        QVERIFY(tab.plot()->logMemoryAxis());
    }

    void selectionFlowsEverywhere()
    {
        CompareTab tab(m_store);
        QSignalSpy loaded(&tab, &CompareTab::loaded);
        tab.resize(1280, 800);
        tab.show();
        QVERIFY(QTest::qWaitForWindowExposed(&tab));
        QTRY_VERIFY_WITH_TIMEOUT(tab.hasLoaded(), 10000);
        QSignalSpy selected(&tab, &CompareTab::runSelected);

        // A click on the adapter's point selects run 5 in the table and shows its details.
        tab.plot()->customPlot()->replot();
        int adapter = -1;
        for (int i = 0; i < int(tab.plot()->points().size()); ++i)
            if (tab.plot()->points()[std::size_t(i)].method == "adapter")
                adapter = i;
        QVERIFY(adapter >= 0);
        QTest::mouseClick(tab.plot()->customPlot(), Qt::LeftButton, Qt::NoModifier,
            tab.plot()->pixelOfPoint(adapter).toPoint());
        QCOMPARE(selected.count(), 1);
        QCOMPARE(selected.at(0).at(0).toLongLong(), qint64(5));
        QCOMPARE(tab.selectedRun(), qint64(5));
        const QModelIndexList rows = tab.table()->selectionModel()->selectedRows();
        QCOMPARE(rows.size(), 1);
        QCOMPARE(rows.front().data(RunsTableModel::RunIdRole).toLongLong(), qint64(5));
        QTRY_VERIFY_WITH_TIMEOUT(tab.details()->titleText().startsWith(QStringLiteral("Run 5 ")), 10000);

        // Selecting a table row selects the run in the plot.
        const int proxyRow
            = tab.proxy()->mapFromSource(tab.model()->index(tab.model()->rowOfRun(7), 0)).row();
        tab.table()->selectRow(proxyRow);
        QCOMPARE(tab.selectedRun(), qint64(7));
        QCOMPARE(tab.plot()->selectedRun(), qint64(7));
        QCOMPARE(selected.count(), 2);
        QTRY_VERIFY_WITH_TIMEOUT(tab.details()->titleText().startsWith(QStringLiteral("Run 7 ")), 10000);
        QVERIFY(tab.detailsVisible());
        tab.setDetailsVisible(false);
        QVERIFY(!tab.detailsVisible() && !tab.details()->isVisible());
        // For looking at the tab: LADDER_TEST_SCREENSHOT_DIR=/some/dir keeps a picture of it.
        if (const QString dir = qEnvironmentVariable("LADDER_TEST_SCREENSHOT_DIR"); !dir.isEmpty())
            QVERIFY(tab.grab().save(dir + "/compare-tab.png"));
    }

    void exportsPlotAndTable()
    {
        CompareTab tab(m_store);
        tab.resize(1280, 800);
        QSignalSpy loaded(&tab, &CompareTab::loaded);
        QVERIFY(loaded.wait(10000));
        const QString dir = QString::fromStdString(m_dir);
        QVERIFY2(tab.exportPlot(dir + "/compare.png"), qPrintable(tab.lastError()));
        QVERIFY(readAll(dir + "/compare.png").startsWith("\x89PNG\r\n\x1a\n"));
        QVERIFY2(tab.exportPlot(dir + "/compare.svg"), qPrintable(tab.lastError()));
        const QByteArray svg = readAll(dir + "/compare.svg");
        QVERIFY(svg.startsWith("<?xml") && svg.contains("<svg") && svg.trimmed().endsWith("</svg>"));
        QVERIFY2(tab.exportPlot(dir + "/compare.pdf"), qPrintable(tab.lastError()));
        QVERIFY(readAll(dir + "/compare.pdf").startsWith("%PDF-"));
        QVERIFY(!tab.exportPlot(dir + "/compare.txt"));
        QVERIFY(tab.lastError().contains(QStringLiteral("compare.txt")));

        // The table as CSV: the filtered rows, in the table's order, unformatted values.
        tab.table()->sortByColumn(RunsTableModel::PeakMemoryColumn, Qt::DescendingOrder);
        tab.filterEdit()->setText(QStringLiteral("demo-supersense"));
        QVERIFY2(tab.exportTableCsv(dir + "/runs.csv"), qPrintable(tab.lastError()));
        const QStringList lines
            = QString::fromUtf8(readAll(dir + "/runs.csv")).split('\n', Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), 1 + 10);
        QCOMPARE(csvSplit(lines[0]), CompareTab::csvColumns());
        const QStringList first = csvSplit(lines[1]); // full fine-tuning, 500 MB, the largest
        QCOMPARE(first.size(), 14);
        QCOMPARE(first[0], QStringLiteral("7"));
        QCOMPARE(first[2], QStringLiteral("500000000"));
        QCOMPARE(first[3], QStringLiteral("0.86"));
        QCOMPARE(first[4], QStringLiteral("0.85"));
        QCOMPARE(first[5], QStringLiteral("finished"));
        QCOMPARE(first[6], QStringLiteral("full"));
        QCOMPARE(first[9], QStringLiteral("demo-supersense"));
        QCOMPARE(first[11], QStringLiteral("1"));
        QCOMPARE(first[12], QStringLiteral("75"));
        const QStringList lora = csvSplit(lines[2]); // 310 MB
        QCOMPARE(lora[7], QStringLiteral("rank=32 alpha=32"));
        QVERIFY(!tab.exportTableCsv(dir + "/missing/folder/runs.csv"));
        QVERIFY(tab.lastError().contains(QStringLiteral("runs.csv")));

        QCOMPARE(CompareTab::csvField(QStringLiteral("a,b")), QStringLiteral("\"a,b\""));
        QCOMPARE(CompareTab::csvField(QStringLiteral("say \"hi\"")), QStringLiteral("\"say \"\"hi\"\"\""));
        QCOMPARE(CompareTab::csvField(QStringLiteral("plain")), QStringLiteral("plain"));
    }

    void focusFilterSlot()
    {
        CompareTab tab;
        tab.show();
        QVERIFY(QTest::qWaitForWindowActive(&tab));
        tab.filterEdit()->setText(QStringLiteral("lora"));
        tab.table()->setFocus();
        tab.focusFilter();
        QTRY_VERIFY(tab.filterEdit()->hasFocus());
        QCOMPARE(tab.filterEdit()->selectedText(), QStringLiteral("lora"));
    }

    void followsNewRuns()
    {
        const std::string path = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(path));
        CompareTab tab(QString::fromStdString(path));
        tab.reader()->setPollInterval(50);
        QSignalSpy loaded(&tab, &CompareTab::loaded);
        QVERIFY(loaded.wait(10000));
        QCOMPARE(tab.plot()->points().size(), std::size_t(7));
        {
            ResultsStore writer;
            QVERIFY(writer.open(path));
            QVERIFY(test::addFixtureRun(writer, { "ladder", 4, 0, 150, 0.9, 0.88 }) > 0);
        }
        QTRY_COMPARE_WITH_TIMEOUT(tab.table()->model()->rowCount(), 12, 10000);
        QTRY_COMPARE(tab.plot()->points().size(), std::size_t(8));
        // r=4 at 150 MB with 0.90 now dominates the adapter (300, 0.85) and full (500, 0.86).
        QCOMPARE(tab.plot()->frontIndices().size(), std::size_t(3));
    }

    void badStoreShowsAnError()
    {
        const QString path = QString::fromStdString(m_dir) + "/garbage.sqlite";
        QFile file(path);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(QByteArray(8192, 'g'));
        file.close();
        CompareTab tab(path);
        QTRY_VERIFY_WITH_TIMEOUT(tab.lastError().contains(QStringLiteral("garbage.sqlite")), 10000);
        QVERIFY(tab.plot()->points().empty());
    }
};

QTEST_MAIN(TestCompareTab)
#include "test_comparetab.moc"
