// `ladder sweep --parallel auto` (issue 19, several runs per device) on a tiny backbone with a pretend CPU
// budget: two LST runs fit it and start at once, the third waits with the reason and starts when one
// ends; a budget below any run's charge trains nothing and says why; the flags' mistakes exit 2.
#include <fstream>

#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"

using namespace ladder;

namespace {

// Three LST runs of the fruit task (seeds 1-3), one thread each.
std::string writeSweep(const std::string& root)
{
    const auto backbone = root + "/tiny-t5";
    test::writeTinyBackbone(backbone, 1);
    nlohmann::json base { { "backbone", backbone },
        { "task", test::fruitTaskSpec(test::writeFruitTask(root)) },
        { "training",
            { { "max_steps", 6 }, { "batch_size", 8 }, { "warmup_steps", 1 }, { "learning_rate", 0.01 },
                { "max_source_length", 16 }, { "threads", 1 }, { "eval_every_steps", 0 } } } };
    nlohmann::json sweep { { "base", base }, { "methods", { { { "method", "ladder" }, { "r", 4 } } } },
        { "seeds", { 1, 2, 3 } } };
    const auto path = root + "/sweep.json";
    std::ofstream(path) << sweep.dump(2);
    return path;
}

// Where `text` first appears in `out` (npos when it does not).
std::size_t pos(const std::string& out, const std::string& text)
{
    return out.find(text);
}

} // namespace

class TestCliSweepPlacement : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    // 600 MiB holds two runs (each charged its estimate, plus 10%, plus 256 MiB for its process), not three.
    void twoRunsShareAPretendBudget()
    {
        const auto root = test::makeTempDir();
        const auto sweep = QString::fromStdString(writeSweep(root));
        const auto store = QString::fromStdString(root + "/results.sqlite");
        const auto r = test::runCli({ "sweep", "--config", sweep, "--store", store, "--parallel", "auto",
                                        "--device-budget", "cpu=600MiB" },
            300000);
        const std::string& out = r.out;
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        qInfo("%s", out.c_str());
        const auto start1 = pos(out, ": starts on cpu as run 1: needs ");
        const auto start2 = pos(out, ": starts on cpu as run 2: needs ");
        const auto wait3 = pos(out, "[3/3]");
        const auto start3 = pos(out, ": starts on cpu as run 3: needs ");
        QVERIFY2(start1 != std::string::npos && start2 != std::string::npos && start3 != std::string::npos,
            out.c_str());
        QVERIFY2(pos(out, "placement on cpu: pretend budget 600.0 MiB") < start1, out.c_str());
        QVERIFY2(out.find("with run 1 on it", start2) < out.find('\n', start2), out.c_str());
        // The third waits, naming both runs, before either has ended (a run's end prints its label alone
        // on a line, then its summary).
        const auto waits = out.find("waits: needs ", wait3);
        QVERIFY2(waits != std::string::npos && waits < start3, out.c_str());
        QVERIFY2(out.find("left of its 600.0 MiB pretend budget with runs 1 and 2 on it", waits) < start3,
            out.c_str());
        const auto firstEnd = std::min(out.find("\n[1/3]", start1 + 1), out.find("\n[2/3]", start2 + 1));
        QVERIFY2(start2 < firstEnd && waits < firstEnd && firstEnd < start3, out.c_str());
        QVERIFY2(out.find("sweep: 3 finished, 0 skipped, 0 failed") != std::string::npos, out.c_str());

        ResultsStore s;
        QVERIFY(s.open(store.toStdString(), ResultsStore::OpenMode::ReadOnly));
        for (std::int64_t id = 1; id <= 3; ++id) {
            RunRecord run;
            QVERIFY(s.getRun(id, &run));
            QCOMPARE(QString(toString(run.status)), QStringLiteral("finished"));
        }
        std::optional<DeviceLease> lease;
        QVERIFY(s.getDeviceLease("cpu", &lease));
        QVERIFY(!lease); // given up at the end
    }

    // A budget below one run's charge: nothing trains, each run says what it needs, the sweep fails.
    void runsThatNeverFitAreNotTrained()
    {
        const auto root = test::makeTempDir();
        const auto sweep = QString::fromStdString(writeSweep(root));
        const auto store = QString::fromStdString(root + "/results.sqlite");
        qputenv("LADDER_DEVICE_BUDGET", "cpu=100MiB"); // the variable, when no flag is given
        const auto r = test::runCli({ "sweep", "--config", sweep, "--store", store, "--parallel", "auto" });
        qunsetenv("LADDER_DEVICE_BUDGET");
        QVERIFY2(r.exitCode == 1, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("never fits: needs ") != std::string::npos, r.out.c_str());
        QVERIFY2(r.out.find("more than cpu's pretend budget of 100.0 MiB; not trained") != std::string::npos,
            r.out.c_str());
        QVERIFY2(r.out.find("sweep: 0 finished, 0 skipped, 3 failed or cancelled (3 never fit their device)")
                != std::string::npos,
            r.out.c_str());
    }

    void flagMistakesExit2()
    {
        const auto root = test::makeTempDir();
        const auto sweep = QString::fromStdString(writeSweep(root));
        auto r
            = test::runCli({ "sweep", "--config", sweep, "--parallel", "2", "--device-budget", "cpu=1GiB" });
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(
            r.err.find("--device-budget: only with --parallel auto") != std::string::npos, r.err.c_str());
        r = test::runCli({ "sweep", "--config", sweep, "--parallel", "many" });
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("--parallel: expected auto or 1 or more runs at once, got \"many\"")
                != std::string::npos,
            r.err.c_str());
        r = test::runCli({ "sweep", "--config", sweep, "--parallel", "auto", "--device-budget", "gpu=1GiB" });
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("--device-budget: expected DEVICE=SIZE") != std::string::npos, r.err.c_str());
    }
};

LADDER_TEST_MAIN(TestCliSweepPlacement)
#include "test_cli_sweep_placement.moc"
