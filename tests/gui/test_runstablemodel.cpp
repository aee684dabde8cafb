// RunsTableModel over a real results store: rows and formatting, sorting and filtering through
// RunsFilterProxy, diffs applied by setRuns() (checked by QAbstractItemModelTester), and StoreReader's
// off-thread loading and data_version polling.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QtTest>

#include "CompareFixtures.h"
#include "RunsFilterProxy.h"
#include "RunsTableModel.h"
#include "StoreReader.h"
#include "TestSupport.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

QString cell(const QAbstractItemModel& model, int row, int column, int role = Qt::DisplayRole)
{
    return model.index(row, column).data(role).toString();
}

QList<qint64> idsInOrder(const QAbstractItemModel& model)
{
    QList<qint64> ids;
    for (int row = 0; row < model.rowCount(); ++row)
        ids << model.index(row, 0).data(RunsTableModel::RunIdRole).toLongLong();
    return ids;
}

// Returns once `reader` has answered everything asked of it before this call (polls, loads, store switches):
// its worker takes requests first in, first out, and its answers reach this thread in the same order. So
// a details request sent now is answered (detailsLoaded, or loadFailed when run 1 is not in the store)
// only after every earlier answer has been delivered; a signal that has not come by then is not coming.
bool waitUntilReaderAnswered(StoreReader& reader)
{
    QSignalSpy details(&reader, &StoreReader::detailsLoaded);
    QSignalSpy failed(&reader, &StoreReader::loadFailed);
    reader.requestDetails(1);
    return QTest::qWaitFor([&] { return details.count() + failed.count() > 0; }, 10000);
}

} // namespace

class TestRunsTableModel : public QObject {
    Q_OBJECT

private:
    std::string m_storePath;
    std::vector<RunRecord> m_runs;

private Q_SLOTS:
    void initTestCase()
    {
        m_storePath = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(m_storePath));
        m_runs = test::readRuns(m_storePath);
        QCOMPARE(m_runs.size(), std::size_t(11));
    }

    void rowsShowTheStoredRuns()
    {
        RunsTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setRuns(m_runs);
        QCOMPARE(model.rowCount(), 11);
        QCOMPARE(model.columnCount(), int(RunsTableModel::ColumnCount));
        // Run 1: ladder r=8, seed 0, 100 MB, 0.80 / 0.78, 1000 of 100000 parameters trainable.
        QCOMPARE(cell(model, 0, RunsTableModel::IdColumn), QStringLiteral("1"));
        QCOMPARE(cell(model, 0, RunsTableModel::MethodColumn), QStringLiteral("ladder"));
        QCOMPARE(cell(model, 0, RunsTableModel::OptionsColumn), QStringLiteral("r=8"));
        QCOMPARE(cell(model, 0, RunsTableModel::BackboneColumn), QStringLiteral("demo"));
        QCOMPARE(cell(model, 0, RunsTableModel::TaskColumn), QStringLiteral("demo-supersense"));
        QCOMPARE(cell(model, 0, RunsTableModel::SeedColumn), QStringLiteral("0"));
        QCOMPARE(cell(model, 0, RunsTableModel::TrainablePercentColumn), QStringLiteral("1.000 %"));
        QCOMPARE(cell(model, 0, RunsTableModel::PeakMemoryColumn), QStringLiteral("100.0 MB"));
        QCOMPARE(cell(model, 0, RunsTableModel::BestValidationColumn), QStringLiteral("0.8000"));
        QCOMPARE(cell(model, 0, RunsTableModel::TestColumn), QStringLiteral("0.7800"));
        QCOMPARE(cell(model, 0, RunsTableModel::WallTimeColumn), QStringLiteral("1 min 15 s"));
        QCOMPARE(cell(model, 0, RunsTableModel::NameColumn), QStringLiteral("LST r8 · seed 0"));
        QCOMPARE(cell(model, 0, RunsTableModel::ThroughputColumn), QStringLiteral("1,235 tok/s"));
        QCOMPARE(cell(model, 0, RunsTableModel::StatusColumn), QStringLiteral("finished"));
        QCOMPARE(
            model.index(0, RunsTableModel::PeakMemoryColumn).data(RunsTableModel::RawValueRole).toDouble(),
            100e6);
        // Other methods' options, the GLUE task, a checkpoint folder, a failed and a running run.
        QCOMPARE(cell(model, 4, RunsTableModel::OptionsColumn), QStringLiteral("hidden=48"));
        QCOMPARE(cell(model, 5, RunsTableModel::OptionsColumn), QStringLiteral("rank=32 alpha=32"));
        QCOMPARE(cell(model, 6, RunsTableModel::OptionsColumn), QString());
        QCOMPARE(cell(model, 8, RunsTableModel::OptionsColumn), QStringLiteral("prompts=100"));
        QCOMPARE(cell(model, 8, RunsTableModel::StatusColumn), QStringLiteral("failed"));
        QCOMPARE(
            cell(model, 8, RunsTableModel::StatusColumn, Qt::ToolTipRole), QStringLiteral("out of memory"));
        QCOMPARE(cell(model, 8, RunsTableModel::PeakMemoryColumn), QString());
        QVERIFY(
            !model.index(8, RunsTableModel::PeakMemoryColumn).data(RunsTableModel::RawValueRole).isValid());
        QCOMPARE(cell(model, 9, RunsTableModel::TaskColumn), QStringLiteral("rte"));
        QCOMPARE(cell(model, 9, RunsTableModel::BackboneColumn), QStringLiteral("t5-small"));
        QCOMPARE(cell(model, 9, RunsTableModel::BackboneColumn, Qt::ToolTipRole),
            QStringLiteral("/models/t5-small"));
        QCOMPARE(cell(model, 10, RunsTableModel::StatusColumn), QStringLiteral("running 3/20"));
        QCOMPARE(model.rowOfRun(7), 6);
        QCOMPARE(model.rowOfRun(99), -1);
        QVERIFY(model.runAt(11) == nullptr);
    }

    // The name column is the only editable one; an edit shows at once and asks for the store's rename.
    void namesAreEditable()
    {
        RunsTableModel model;
        model.setRuns(m_runs);
        const QModelIndex name = model.index(5, RunsTableModel::NameColumn);
        QVERIFY(model.flags(name) & Qt::ItemIsEditable);
        QVERIFY(!(model.flags(model.index(5, RunsTableModel::MethodColumn)) & Qt::ItemIsEditable));
        QCOMPARE(name.data(Qt::EditRole).toString(), QStringLiteral("LoRA r32 qv · seed 0"));
        QSignalSpy renamed(&model, &RunsTableModel::renameRequested);
        QVERIFY(!model.setData(name, QStringLiteral("   "))); // blank: refused
        QVERIFY(model.setData(name, QStringLiteral("  LoRA  baseline ")));
        QCOMPARE(renamed.count(), 1);
        QCOMPARE(renamed.at(0).at(0).toLongLong(), qint64(6));
        QCOMPARE(renamed.at(0).at(1).toString(), QStringLiteral("LoRA baseline"));
        QCOMPARE(cell(model, 5, RunsTableModel::NameColumn), QStringLiteral("LoRA baseline"));
        QVERIFY(!model.setData(model.index(5, RunsTableModel::MethodColumn), QStringLiteral("x")));
    }

    void formatting()
    {
        QCOMPARE(RunsTableModel::formatDuration(42.04), QStringLiteral("42.0 s"));
        QCOMPARE(RunsTableModel::formatDuration(725), QStringLiteral("12 min 05 s"));
        QCOMPARE(RunsTableModel::formatDuration(7380), QStringLiteral("2 h 03 min"));
        QCOMPARE(RunsTableModel::formatMegabytes(4892100000), QStringLiteral("4892.1 MB"));
        QCOMPARE(RunsTableModel::backboneLabel("/models/flan-t5-base/"), QStringLiteral("flan-t5-base"));
        RunRecord lst;
        lst.method = "ladder";
        lst.methodOptionsJson
            = R"({"method":"ladder","r":8,"keep":[1,2,3],"init":"random","ablation":"none"})";
        QCOMPARE(RunsTableModel::optionsSummary(lst), QStringLiteral("r=8 keep=1,2,3 init=random"));
        lst.methodOptionsJson = R"({"method":"ladder","r":8,"init":"fisher","ablation":"none"})";
        QCOMPARE(RunsTableModel::optionsSummary(lst), QStringLiteral("r=8")); // the default init is not named
        RunRecord frozen;
        frozen.method = "adapter";
        frozen.methodOptionsJson = R"({"method":"adapter","hidden":12,"freeze":6})";
        QCOMPARE(RunsTableModel::optionsSummary(frozen), QStringLiteral("hidden=12 freeze=6"));
        // Issue 18: QLoRA as LoRA with its storage; LST's memory options; a quantised baseline.
        RunRecord qlora;
        qlora.method = "qlora";
        qlora.methodOptionsJson = MethodOptions::defaults("qlora").toJson().dump();
        QCOMPARE(
            RunsTableModel::optionsSummary(qlora), QStringLiteral("rank=32 alpha=32 backbone=int4 group=64"));
        auto memory = MethodOptions::defaults("ladder");
        memory.sideCheckpoint = true;
        memory.sideAttention = "sdpa";
        memory.backboneDtype = "int8";
        lst.methodOptionsJson = memory.toJson().dump();
        QCOMPARE(RunsTableModel::optionsSummary(lst),
            QStringLiteral("r=8 side_checkpoint=true side_attention=sdpa backbone=int8"));
        RunRecord broken;
        broken.method = "lora";
        broken.methodOptionsJson = "{not json";
        QCOMPARE(RunsTableModel::optionsSummary(broken), QStringLiteral("{not json"));
    }

    void sortsNumericallyThroughTheProxy()
    {
        RunsTableModel model;
        model.setRuns(m_runs);
        RunsFilterProxy proxy;
        proxy.setSourceModel(&model);
        QAbstractItemModelTester tester(&proxy, QAbstractItemModelTester::FailureReportingMode::QtTest);
        // Peak memory ascending: runs without figures first (9, 11), then 80, 90, 100, 102, 104, 250, 300,
        // 310, 500.
        proxy.sort(RunsTableModel::PeakMemoryColumn, Qt::AscendingOrder);
        QCOMPARE(idsInOrder(proxy), (QList<qint64> { 9, 11, 4, 10, 1, 2, 3, 8, 5, 6, 7 }));
        // Best validation descending: 0.86 full, 0.85 adapter, 0.84, 0.83, 0.82, 0.80, 0.75, 0.70, 0.60, then
        // none.
        proxy.sort(RunsTableModel::BestValidationColumn, Qt::DescendingOrder);
        QCOMPARE(idsInOrder(proxy).mid(0, 9), (QList<qint64> { 7, 5, 2, 6, 3, 1, 4, 8, 10 }));
        // Text columns sort as text.
        proxy.sort(RunsTableModel::MethodColumn, Qt::AscendingOrder);
        QCOMPARE(cell(proxy, 0, RunsTableModel::MethodColumn), QStringLiteral("adapter"));
        QCOMPARE(cell(proxy, 10, RunsTableModel::MethodColumn), QStringLiteral("prompt"));
    }

    void filtersByTextTaskAndBackbone()
    {
        RunsTableModel model;
        model.setRuns(m_runs);
        RunsFilterProxy proxy;
        proxy.setSourceModel(&model);
        QAbstractItemModelTester tester(&proxy, QAbstractItemModelTester::FailureReportingMode::QtTest);
        proxy.setFilterFixedString(QStringLiteral("LORA"));
        QCOMPARE(idsInOrder(proxy), (QList<qint64> { 6, 11 }));
        proxy.setFilterFixedString(QStringLiteral("failed"));
        QCOMPARE(idsInOrder(proxy), (QList<qint64> { 9 }));
        proxy.setFilterFixedString(QString());
        proxy.setTask(QStringLiteral("rte"));
        QCOMPARE(idsInOrder(proxy), (QList<qint64> { 10 }));
        proxy.setTask(QString());
        proxy.setBackbone(QStringLiteral("demo"));
        QCOMPARE(proxy.rowCount(), 10);
        proxy.setTask(QStringLiteral("demo-supersense"));
        proxy.setFilterFixedString(QStringLiteral("ladder"));
        QCOMPARE(idsInOrder(proxy), (QList<qint64> { 1, 2, 3, 4 }));
        proxy.setBackbone(QStringLiteral("/models/t5-small"));
        QCOMPARE(proxy.rowCount(), 0);
    }

    void setRunsAppliesDifferences()
    {
        RunsTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        std::vector<RunRecord> first(m_runs.begin(), m_runs.begin() + 5);
        model.setRuns(first);
        QCOMPARE(model.rowCount(), 5);

        QSignalSpy inserted(&model, &QAbstractItemModel::rowsInserted);
        QSignalSpy removed(&model, &QAbstractItemModel::rowsRemoved);
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        QSignalSpy reset(&model, &QAbstractItemModel::modelReset);

        // Appended runs are inserted at the end; nothing else moves.
        model.setRuns(m_runs);
        QCOMPARE(inserted.count(), 1);
        QCOMPARE(inserted.at(0).at(1).toInt(), 5);
        QCOMPARE(inserted.at(0).at(2).toInt(), 10);
        QCOMPARE(changed.count(), 0);

        // A run that progressed changes its row only.
        auto progressed = m_runs;
        progressed[10].step = 7;
        model.setRuns(progressed);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(changed.at(0).at(0).toModelIndex().row(), 10);
        QCOMPARE(cell(model, 10, RunsTableModel::StatusColumn), QStringLiteral("running 7/20"));

        // Deleted runs (2 and 3, a block, and 9) are removed; the rest stays.
        std::vector<RunRecord> fewer;
        for (const auto& run : progressed)
            if (run.id != 2 && run.id != 3 && run.id != 9)
                fewer.push_back(run);
        model.setRuns(fewer);
        QCOMPARE(removed.count(), 2);
        QCOMPARE(idsInOrder(model), (QList<qint64> { 1, 4, 5, 6, 7, 8, 10, 11 }));
        QCOMPARE(reset.count(), 0);

        // A new order cannot be a diff: reset.
        std::vector<RunRecord> reversed(fewer.rbegin(), fewer.rend());
        model.setRuns(reversed);
        QCOMPARE(reset.count(), 1);
        QCOMPARE(idsInOrder(model).front(), qint64(11));
        model.setRuns({});
        QCOMPARE(model.rowCount(), 0);
    }

    void readerLoadsOffTheGuiThreadAndPolls()
    {
        const std::string path = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(path));
        RunsTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        StoreReader reader;
        reader.setPollInterval(50);
        connect(&reader, &StoreReader::runsLoaded, &model, &RunsTableModel::setRuns);
        QSignalSpy loaded(&reader, &StoreReader::runsLoaded);
        QSignalSpy changed(&reader, &StoreReader::storeChanged);
        reader.setStorePath(QString::fromStdString(path));
        QVERIFY(reader.isLoadingRuns());
        QVERIFY(loaded.wait(10000));
        QCOMPARE(model.rowCount(), 11);
        QCOMPARE(cell(model, 4, RunsTableModel::PeakMemoryColumn), QStringLiteral("300.0 MB"));

        // Nothing changes: polls do not reload. Each round asks for a poll (or finds one under way, asked
        // earlier) and waits until the worker has answered it; three answered polls brought nothing.
        for (int round = 0; round < 3; ++round) {
            reader.poll();
            QVERIFY(waitUntilReaderAnswered(reader));
        }
        QCOMPARE(loaded.count(), 1);
        QCOMPARE(changed.count(), 0);

        // Another connection adds a run: the next poll reloads.
        {
            ResultsStore writer;
            QVERIFY(writer.open(path));
            QVERIFY(test::addFixtureRun(writer, { "adapter", 12, 0, 200, 0.81, 0.80 }) == 12);
        }
        QTRY_COMPARE_WITH_TIMEOUT(model.rowCount(), 12, 10000);
        QVERIFY(changed.count() >= 1);
        QCOMPARE(cell(model, 11, RunsTableModel::OptionsColumn), QStringLiteral("hidden=12"));
    }

    void switchingStoresDropsStaleAnswers()
    {
        // A load of the first store is under way when the second is set: only the second's runs arrive.
        const std::string empty = test::makeTempDir() + "/empty.sqlite";
        StoreReader reader;
        reader.setPollInterval(0);
        QSignalSpy loaded(&reader, &StoreReader::runsLoaded);
        reader.setStorePath(QString::fromStdString(m_storePath));
        reader.setStorePath(QString::fromStdString(empty));
        QVERIFY(loaded.wait(10000));
        // Nothing else follows: the first store's answer, dropped, came before this one; once the worker has
        // answered a later request, nothing asked earlier is still on its way.
        QVERIFY(waitUntilReaderAnswered(reader));
        QVERIFY(!reader.isLoadingRuns());
        QCOMPARE(loaded.count(), 1);
        QVERIFY(loaded.at(0).at(0).value<std::vector<RunRecord>>().empty());
        // And back: the fixture's 11 runs.
        reader.setStorePath(QString::fromStdString(m_storePath));
        QVERIFY(loaded.wait(10000));
        QCOMPARE(loaded.at(1).at(0).value<std::vector<RunRecord>>().size(), std::size_t(11));
    }

    void readerReportsAnUnreadableStore()
    {
        const std::string dir = test::makeTempDir();
        const std::string path = dir + "/not-a-store.sqlite";
        {
            QFile file(QString::fromStdString(path));
            QVERIFY(file.open(QIODevice::WriteOnly));
            file.write(QByteArray(4096, 'x'));
        }
        StoreReader reader;
        QSignalSpy failed(&reader, &StoreReader::loadFailed);
        QSignalSpy loaded(&reader, &StoreReader::runsLoaded);
        reader.setStorePath(QString::fromStdString(path));
        QVERIFY(failed.wait(10000));
        QVERIFY2(failed.at(0).at(0).toString().contains(QStringLiteral("not-a-store.sqlite")),
            qPrintable(failed.at(0).at(0).toString()));
        // No store is open, so the runs load answers with none.
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 10000);
        QVERIFY(loaded.at(0).at(0).value<std::vector<RunRecord>>().empty());
    }
};

QTEST_MAIN(TestRunsTableModel)
#include "test_runstablemodel.moc"
