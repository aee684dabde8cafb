// The workbench's side of sweeps on Slurm: Tools > Sweeps > Export for Slurm... writes the job the CLI
// writes (SlurmExportDialog over train/SlurmExport), and File > Import Results... merges stores into the
// window's store on a thread (StoreImporter), after which the StoreWatcher brings the imported runs into
// the compare plot without a reload being asked for.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <QAction>
#include <QMenu>
#include <QMenuBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QtTest>

#include "ComparePlot.h"
#include "CompareTab.h"
#include "MainWindow.h"
#include "MainWindowFixture.h"
#include "SlurmExportDialog.h"
#include "StoreImporter.h"
#include "SweepDialog.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "train/Sweep.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

nlohmann::json baseSpec()
{
    RunSpec spec;
    spec.name = "base";
    spec.backbone = "demo";
    spec.task.type = "demo";
    spec.task.name = "supersense";
    spec.method = MethodOptions::defaults("ladder");
    spec.training.maxSteps = 50;
    spec.training.batchSize = 8;
    return spec.toJson();
}

std::string readText(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A store of `count` finished runs with figures the compare plot draws (a metric and a peak).
void makeFinishedStore(const std::string& path, int count, int firstSeed)
{
    ResultsStore store;
    std::string error;
    QVERIFY2(store.open(path, &error), error.c_str());
    for (int i = 0; i < count; ++i) {
        auto spec = baseSpec();
        spec["seed"] = firstSeed + i;
        NewRun run;
        run.name = "imported";
        run.specJson = spec.dump();
        run.method = "ladder";
        run.backbone = "demo";
        run.task = "demo-supersense";
        run.seed = firstSeed + i;
        run.status = RunState::Running;
        std::int64_t id = 0;
        QVERIFY2(store.createRun(run, &id, &error), error.c_str());
        FinalFigures f;
        f.bestValidationMetric = 0.5 + 0.1 * i;
        f.mainMetricName = "accuracy";
        f.peakAllocatedBytes = 1000000 * (i + 1);
        f.trainableParams = 100;
        f.backboneParams = 1000;
        f.totalParams = 1100;
        QVERIFY2(store.finishRun(id, RunState::Finished, f, "", &error), error.c_str());
    }
}

std::set<std::int64_t> plottedRuns(CompareTab* compare)
{
    std::set<std::int64_t> ids;
    for (const auto& point : compare->plot()->points())
        ids.insert(point.runIds.begin(), point.runIds.end());
    return ids;
}

} // namespace

class TestSlurmImportGui : public QObject, public MainWindowFixture {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { setUpCase(); }
    void init() { openWindow(); }
    void cleanup() { closeWindow(); }

    void exportDialogWritesTheCliJob()
    {
        const auto dir = test::makeTempDir();
        std::vector<nlohmann::json> specs;
        for (int seed : { 0, 1, 2 }) {
            auto spec = baseSpec();
            spec["seed"] = seed;
            specs.push_back(spec);
        }
        const nlohmann::json sweep { { "runs", specs } };
        SlurmExportDialog dialog(sweep);
        SlurmOptions o;
        o.partition = "gpu";
        o.gpusPerRun = 1;
        o.time = "1h"; // refused, naming the field's flag; the dialog stays as it was
        o.maxParallel = 2;
        o.ladderPath = "/opt/ladder/bin/ladder";
        dialog.setOptions(o);
        dialog.setFolder(QString::fromStdString(dir + "/job"));
        QVERIFY(!dialog.exportSweep());
        QVERIFY2(dialog.message().startsWith(QStringLiteral("--time 1h: expected HH:MM:SS")),
            qPrintable(dialog.message()));
        QVERIFY(!std::filesystem::exists(dir + "/job/sweep.sbatch"));
        o.time = "01:00:00";
        dialog.setOptions(o);
        QVERIFY2(dialog.exportSweep(), qPrintable(dialog.message()));
        QCOMPARE(dialog.written().runs, std::size_t(3));
        QVERIFY2(dialog.message().contains(
                     QStringLiteral("sbatch %1/job/sweep.sbatch").arg(QString::fromStdString(dir))),
            qPrintable(dialog.message()));
        const auto script = readText(dir + "/job/sweep.sbatch");
        QVERIFY2(script.find("#SBATCH --array=0-2%2\n") != std::string::npos, script.c_str());
        QVERIFY(script.find("#SBATCH --gres=gpu:1\n") != std::string::npos);
        QVERIFY(script.find("#SBATCH --time=01:00:00\n") != std::string::npos);
        QVERIFY(script.find("exec '/opt/ladder/bin/ladder' sweep --config") != std::string::npos);
        // The copy is the list, and `ladder sweep` reads it back as the same runs.
        const auto copy = nlohmann::json::parse(readText(dir + "/job/sweep.json"));
        QCOMPARE(copy, sweep);
        QCOMPARE(expandSweep(copy, "sweep.json"), specs);
    }

    void sweepDialogOffersTheExport()
    {
        SweepDialog dialog(baseSpec());
        QPushButton* button = dialog.findChild<QPushButton*>(QStringLiteral("sweepSlurmExportButton"));
        QVERIFY(button);
        QCOMPARE(button->text(), QStringLiteral("Export for Slurm…"));
        QVERIFY(!button->isEnabled()); // nothing listed yet
        dialog.setBackboneLayers(12, 12);
        QVERIFY(dialog.addPreset(SweepPreset::LstReduction));
        QVERIFY(button->isEnabled());
        const auto sweep = dialog.slurmSweep();
        QCOMPARE(sweep.at("runs").get<std::vector<nlohmann::json>>(), dialog.specJsons());
    }

    void importResultsReachesTheComparePlot()
    {
        // File > Import Results... is in the File menu.
        QAction* action = findAction(m_window.get(), QStringLiteral("actionImportResults"));
        QVERIFY(action);
        QMenu* file = m_window->menuBar()->findChild<QMenu*>(QStringLiteral("menuFile"));
        QVERIFY(file && file->actions().contains(action));

        const auto dir = test::makeTempDir();
        makeFinishedStore(dir + "/run-0.sqlite", 2, 10);
        makeFinishedStore(dir + "/run-1.sqlite", 1, 20);
        std::ofstream(dir + "/notes.sqlite") << "not a store";
        m_window->showView(QStringLiteral("compare"));
        CompareTab* compare = m_window->compareTab();
        QVERIFY(plottedRuns(compare).empty());

        QSignalSpy errors(m_window.get(), &MainWindow::errorShown);
        QVERIFY(m_window->importResults({ QString::fromStdString(dir + "/run-0.sqlite"),
            QString::fromStdString(dir + "/run-1.sqlite"), QString::fromStdString(dir + "/notes.sqlite") }));
        QVERIFY(!action->isEnabled()); // one import at a time
        QSignalSpy done(m_window->storeImporter(), &StoreImporter::finished);
        QVERIFY(done.wait(20000));
        QVERIFY(action->isEnabled());
        const auto lines = done.at(0).at(0).toStringList();
        QCOMPARE(done.at(0).at(1).toInt(), 1);
        QCOMPARE(lines.size(), 3);
        QCOMPARE(lines.at(0),
            QStringLiteral("imported 2 runs from %1/run-0.sqlite (0 already present)")
                .arg(QString::fromStdString(dir)));
        QCOMPARE(lines.at(1),
            QStringLiteral("imported 1 run from %1/run-1.sqlite (0 already present)")
                .arg(QString::fromStdString(dir)));
        QVERIFY2(lines.at(2).contains(QStringLiteral("notes.sqlite (skipped: not an SQLite database")),
            qPrintable(lines.at(2)));
        QCOMPARE(errors.count(), 1); // the skipped file is named in a message
        QVERIFY(errors.at(0).at(0).toString().contains(QStringLiteral("notes.sqlite")));

        // The StoreWatcher brings the imported runs to the compare plot (no reload is asked for).
        QTRY_COMPARE_WITH_TIMEOUT(plottedRuns(compare), (std::set<std::int64_t> { 1, 2, 3 }), 15000);
        QCOMPARE(compare->visibleRuns().size(), std::size_t(3));

        // Importing again adds nothing.
        QVERIFY(m_window->importResults({ QString::fromStdString(dir + "/run-0.sqlite") }));
        QVERIFY(done.wait(20000));
        QCOMPARE(done.at(1).at(0).toStringList().at(0),
            QStringLiteral("imported 0 runs from %1/run-0.sqlite (2 already present)")
                .arg(QString::fromStdString(dir)));
    }
};

QTEST_MAIN(TestSlurmImportGui)
#include "test_slurm_import_gui.moc"
