// The workbench's Export... (ExportDialog) and File > Import Bundle... on a real LST run trained on the fruit
// task over a tiny backbone: the formats an LST run has no form in are disabled with the reason, the ladder
// bundle is written off the GUI thread and reads back, a non-empty folder is refused in the dialog, and the
// bundle imported into another window's store is a finished run there that the compare view shows.
#include <filesystem>
#include <fstream>

#include <QAction>
#include <QComboBox>
#include <QSignalSpy>
#include <QTableView>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "CompareTab.h"
#include "ExportDialog.h"
#include "FruitTask.h"
#include "MainWindowFixture.h"
#include "RunsTableModel.h"
#include "TestSupport.h"
#include "export/LadderBundle.h"
#include "store/ResultsStore.h"

using namespace ladder;
using ladder::widgets::ExportDialog;
namespace fs = std::filesystem;

class TestExportDialog : public QObject, public MainWindowFixture {
    Q_OBJECT

    std::string m_root;
    QString m_store;
    qint64 m_run = 0;

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        setUpCase();
        m_root = test::makeTempDir();
        test::writeTinyBackbone(m_root + "/tiny-t5", 1);
        const auto task = test::writeFruitTask(m_root);
        const nlohmann::json spec { { "backbone", m_root + "/tiny-t5" },
            { "task", test::fruitTaskSpec(task) }, { "method", { { "method", "ladder" }, { "r", 4 } } },
            { "training",
                { { "max_steps", 8 }, { "batch_size", 8 }, { "warmup_steps", 2 }, { "learning_rate", 0.01 },
                    { "max_source_length", 16 } } },
            { "seed", 0 } };
        std::ofstream(m_root + "/run.json") << spec.dump(2);
        m_store = QString::fromStdString(m_root + "/results.sqlite");
        const auto r = test::runCli(
            { "train", "--config", QString::fromStdString(m_root + "/run.json"), "--store", m_store });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        m_run = 1;
    }

    void formatsOfAnLstRun()
    {
        ExportDialog dialog(m_store, m_run);
        QVERIFY(!dialog.disabledReason(QStringLiteral("hf")).isEmpty());
        QVERIFY(!dialog.disabledReason(QStringLiteral("peft")).isEmpty());
        QVERIFY(dialog.disabledReason(QStringLiteral("ladder")).isEmpty());
        QCOMPARE(dialog.format(), QStringLiteral("ladder")); // the first enabled one
        QVERIFY(!dialog.setFormat(QStringLiteral("hf")));
        auto* combo = dialog.findChild<QComboBox*>(QStringLiteral("exportFormat"));
        QVERIFY(combo);
        const int hf = combo->findData(QStringLiteral("hf"), Qt::UserRole);
        QCOMPARE(
            combo->itemData(hf, Qt::ToolTipRole).toString(), dialog.disabledReason(QStringLiteral("hf")));
    }

    void unknownRunDisablesEverything()
    {
        ExportDialog dialog(m_store, 99);
        QVERIFY(dialog.disabledReason(QStringLiteral("ladder")).contains(QStringLiteral("no run 99")));
        QVERIFY(!dialog.startExport());
    }

    void exportsALadderBundleOffTheGuiThread()
    {
        ExportDialog dialog(m_store, m_run);
        const auto dir = QString::fromStdString(m_root + "/bundle");
        dialog.setFolder(dir);
        QSignalSpy finished(&dialog, &ExportDialog::exportFinished);
        QVERIFY(dialog.startExport());
        QVERIFY(dialog.isExporting());
        QVERIFY(finished.wait(60000));
        QVERIFY2(finished.at(0).at(0).toBool(), qPrintable(finished.at(0).at(1).toString()));
        QVERIFY(dialog.message().contains(QStringLiteral("bundle.json")));
        const auto bundle = readLadderBundle(dir.toStdString());
        QCOMPARE(bundle.runId, static_cast<std::int64_t>(m_run));

        // Again into the same folder: refused, shown in the dialog.
        QVERIFY(dialog.startExport());
        QVERIFY(finished.wait(60000));
        QVERIFY(!finished.at(1).at(0).toBool());
        QVERIFY2(dialog.message().contains(QStringLiteral("exists and is not empty")),
            qPrintable(dialog.message()));
    }

    void importsABundleIntoTheWindowsStore()
    {
        const auto dir = QString::fromStdString(m_root + "/bundle");
        if (!fs::exists(m_root + "/bundle/bundle.json")) {
            ResultsStore store;
            QVERIFY(store.open(m_store.toStdString()));
            writeLadderBundle(store, m_run, dir.toStdString());
        }
        openWindow();
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionImportBundle")));
        QVERIFY(findAction(m_window.get(), QStringLiteral("actionExportRun")));
        QSignalSpy imported(m_window.get(), &widgets::MainWindow::bundleImported);
        QVERIFY(m_window->importBundle(dir));
        QVERIFY(imported.wait(60000));
        const qint64 id = imported.at(0).at(0).toLongLong();
        QVERIFY2(id > 0, qPrintable(imported.at(0).at(1).toString()));
        ResultsStore store;
        QVERIFY(store.open(m_window->storePath().toStdString(), ResultsStore::OpenMode::ReadOnly));
        RunRecord run;
        QVERIFY(store.getRun(id, &run));
        QCOMPARE(run.status, RunState::Finished);
        QVERIFY(run.figures.testMetric.has_value());
        QVERIFY(store.verifyCheckpoint(id, nullptr));
        // The compare view shows it, and its table offers Export... on it.
        QTRY_VERIFY_WITH_TIMEOUT(m_window->compareTab()->model()->rowOfRun(id) >= 0, 10000);
        // A second import finds it there.
        QVERIFY(m_window->importBundle(dir));
        QVERIFY(imported.wait(60000));
        QCOMPARE(imported.at(1).at(0).toLongLong(), id);
        QVERIFY(imported.at(1).at(1).toString().contains(QStringLiteral("already")));
        // A folder that is not a bundle: the error names bundle.json.
        QVERIFY(m_window->importBundle(QString::fromStdString(m_root)));
        QVERIFY(imported.wait(60000));
        QCOMPARE(imported.at(2).at(0).toLongLong(), 0);
        QVERIFY(imported.at(2).at(1).toString().contains(QStringLiteral("bundle.json: missing")));
        closeWindow();
    }
};

LADDER_TEST_MAIN(TestExportDialog)

#include "test_exportdialog.moc"
