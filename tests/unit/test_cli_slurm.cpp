// Sweeps on Slurm without Slurm: the sbatch writer (train/SlurmExport.h) and its checks, `ladder sweep
// --emit slurm` (the files and the lines it prints), `ladder sweep --index I` (one run of the sweep), and
// `ladder runs import` merging the stores the array's tasks write. tests/slurm/ runs the same on a real
// single-node Slurm.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <QProcess>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/SlurmExport.h"
#include "train/Sweep.h"
#include "util/Error.h"

using namespace ladder;

namespace {

namespace fs = std::filesystem;

std::string readText(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

SlurmOptions someOptions()
{
    SlurmOptions o;
    o.ladderPath = "/opt/ladder/bin/ladder";
    o.workingDir = "/home/me/exp";
    return o;
}

// The error validateSlurmOptions() throws, or "" when it accepts.
std::string refusal(const SlurmOptions& o)
{
    try {
        validateSlurmOptions(o);
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

// A tiny backbone made by `ladder pretrain` (its own SentencePiece vocabulary: no shared fixtures needed).
std::string makeBackbone(const std::string& root)
{
    std::ofstream corpus(root + "/corpus.txt");
    const char* words[] = { "apple", "pear", "plum", "grape", "horse", "tiger", "mouse", "camel" };
    for (int i = 0; i < 600; ++i)
        corpus << "the " << words[i % 8] << " is here " << i << " and it is a "
               << (i % 8 < 4 ? "fruit" : "animal") << "\n";
    corpus.close();
    const auto out = root + "/backbone";
    const auto r = test::runCli({ "pretrain", "--corpus", QString::fromStdString(root + "/corpus.txt"),
        "--out", QString::fromStdString(out), "--steps", "2", "--vocab-size", "60", "--d-model", "16",
        "--d-ff", "32", "--heads", "2", "--layers", "1", "--embedding-init", "random", "--threads", "1",
        "--batch-size", "4" });
    if (r.exitCode != 0)
        qWarning("pretrain: %s", r.err.c_str());
    return out;
}

// A 4-run sweep (2 methods x 2 seeds) of 4 steps each on the fruit task.
nlohmann::json tinySweep(const std::string& backbone, const std::string& task)
{
    const nlohmann::json base { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method", { { "method", "full" } } },
        { "training",
            { { "max_steps", 4 }, { "batch_size", 8 }, { "warmup_steps", 1 }, { "learning_rate", 0.01 },
                { "max_source_length", 16 } } },
        { "seed", 0 } };
    return { { "base", base },
        { "methods", { { { "method", "full" } }, { { "method", "lora" }, { "rank", 4 } } } },
        { "seeds", { 1, 2 } } };
}

} // namespace

class TestCliSlurm : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void scriptHasTheArrayAndTheOptions();
    void scriptLeavesOutWhatIsNotGiven();
    void optionsAreChecked();
    void runsListSweep();
    void emitWritesTheJobAndSaysWhatToSubmit();
    void emitRefusesMistakes();
    void indexRunsOneRunAndImportMergesTheStores();
};

void TestCliSlurm::scriptHasTheArrayAndTheOptions()
{
    auto o = someOptions();
    o.partition = "gpu";
    o.gpusPerRun = 1;
    o.cpusPerRun = 8;
    o.time = "02:30:00";
    o.maxParallel = 3;
    const auto script = slurmScript(12, "/scratch/me/sweep", o);
    QVERIFY2(script.rfind("#!/bin/bash\n", 0) == 0, script.c_str());
    for (const char* line :
        { "\n#SBATCH --array=0-11%3\n", "\n#SBATCH --partition=gpu\n", "\n#SBATCH --gres=gpu:1\n",
            "\n#SBATCH --cpus-per-task=8\n", "\n#SBATCH --time=02:30:00\n", "\n#SBATCH --ntasks=1\n",
            "\n#SBATCH --job-name=ladder-sweep\n", "\n#SBATCH --chdir=/home/me/exp\n",
            "\n#SBATCH --output=/scratch/me/sweep/logs/run-%a.out\n", "\nexport OMP_NUM_THREADS=8\n",
            "\nexec '/opt/ladder/bin/ladder' sweep --config '/scratch/me/sweep/sweep.json' --index "
            "\"$SLURM_ARRAY_TASK_ID\" \\\n    --store "
            "'/scratch/me/sweep/run-'\"$SLURM_ARRAY_TASK_ID\".sqlite\n",
            "#   submit:      sbatch /scratch/me/sweep/sweep.sbatch\n",
            "#   afterwards:  ladder runs import /scratch/me/sweep/run-*.sqlite\n" })
        QVERIFY2(script.find(line) != std::string::npos, (std::string(line) + " not in:\n" + script).c_str());
    // Every #SBATCH line comes before the first command: sbatch stops reading them there.
    QVERIFY(script.rfind("#SBATCH") < script.find("\nset -euo pipefail"));
    // A path with a quote is quoted for bash.
    o.ladderPath = "/opt/it's/ladder";
    QVERIFY(slurmScript(1, "/d", o).find("exec '/opt/it'\\''s/ladder' sweep") != std::string::npos);
    QVERIFY(slurmScript(1, "/d", o).find("#SBATCH --array=0-0%3\n") != std::string::npos);
}

void TestCliSlurm::scriptLeavesOutWhatIsNotGiven()
{
    const auto script = slurmScript(4, "/d", someOptions());
    QVERIFY2(script.find("\n#SBATCH --array=0-3\n") != std::string::npos, script.c_str());
    for (const char* absent : { "--partition", "--gres", "--cpus-per-task", "--time", "OMP_NUM_THREADS" })
        QVERIFY2(script.find(absent) == std::string::npos, absent);
}

void TestCliSlurm::optionsAreChecked()
{
    QCOMPARE(refusal(someOptions()), std::string());
    const auto with = [](auto change) {
        auto o = someOptions();
        change(o);
        return refusal(o);
    };
    for (const char* good : { "00:10:00", "2:00:00", "1-12:00:00", "100:59:59" })
        QVERIFY2(with([&](SlurmOptions& o) { o.time = good; }).empty(), good);
    for (const char* bad :
        { "1h", "10:00", "00:60:00", "00:00:60", "00:00:00", "a-01:00:00", "01:00:00x", "-1:00:00" }) {
        const auto why = with([&](SlurmOptions& o) { o.time = bad; });
        QVERIFY2(why.rfind(std::string("--time ") + bad + ": expected HH:MM:SS", 0) == 0, why.c_str());
    }
    QVERIFY(with([](SlurmOptions& o) { o.maxParallel = -1; }).rfind("--max-parallel: expected 1 or more", 0)
        == 0);
    QVERIFY(with([](SlurmOptions& o) { o.gpusPerRun = -1; }).rfind("--gpus-per-run:", 0) == 0);
    QVERIFY(with([](SlurmOptions& o) { o.cpusPerRun = -2; }).rfind("--cpus-per-run:", 0) == 0);
    QVERIFY(with([](SlurmOptions& o) { o.partition = "gpu queue"; }).rfind("--partition gpu queue:", 0) == 0);
    QVERIFY(with([](SlurmOptions& o) { o.partition = "gpu,debug"; }).empty());
    QVERIFY(with([](SlurmOptions& o) {
        o.ladderPath = "ladder";
    }).rfind("--ladder ladder: expected the absolute", 0)
        == 0);
    QVERIFY(with([](SlurmOptions& o) { o.workingDir = "/home/my exp"; }).find("cannot carry")
        != std::string::npos);
}

void TestCliSlurm::runsListSweep()
{
    // The workbench's list of specs exports as {"runs": [...]}: those specs in order.
    const nlohmann::json sweep { { "runs", { { { "seed", 1 } }, { { "seed", 2 } } } } };
    const auto runs = expandSweep(sweep, "list.json");
    QCOMPARE(runs.size(), std::size_t(2));
    QCOMPARE(runs[1].at("seed").get<int>(), 2);
    QCOMPARE(selectSweepRuns(runs, 1, "list.json").front().at("seed").get<int>(), 2);
    QCOMPARE(selectSweepRuns(runs, -1, "list.json").size(), std::size_t(2));
    try {
        selectSweepRuns(runs, 2, "list.json");
        QFAIL("index 2 of 2 runs was accepted");
    } catch (const Error& e) {
        QCOMPARE(std::string(e.what()),
            std::string("list.json: --index 2 is out of range: the sweep has 2 runs (0 to 1)"));
    }
    for (const auto& bad :
        { nlohmann::json { { "runs", nlohmann::json::array() } }, nlohmann::json { { "runs", { 1 } } },
            nlohmann::json { { "runs", { { { "seed", 1 } } } }, { "seeds", { 1 } } } }) {
        QVERIFY_THROWS_EXCEPTION(Error, expandSweep(bad, "bad.json"));
    }
}

void TestCliSlurm::emitWritesTheJobAndSaysWhatToSubmit()
{
    const auto root = test::makeTempDir();
    const auto sweep = tinySweep(root + "/backbone", root + "/fruit.jsonl");
    std::ofstream(root + "/sweep.json") << sweep.dump(2);
    const auto out = root + "/job";
    const auto r = test::runCli(
        { "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--emit", "slurm", "--out",
            QString::fromStdString(out), "--partition", "debug", "--gpus-per-run", "1", "--cpus-per-run", "2",
            "--time", "00:10:00", "--max-parallel", "2", "--ladder", "/opt/ladder/bin/ladder" });
    QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
    qInfo("%s", r.out.c_str());
    QVERIFY2(
        r.out.find("wrote a Slurm job array of 4 runs (at most 2 at once) to " + out) != std::string::npos,
        r.out.c_str());
    QVERIFY2(r.out.find("\n  sbatch " + out + "/sweep.sbatch\n") != std::string::npos, r.out.c_str());
    QVERIFY2(
        r.out.find("\n  ladder runs import " + out + "/run-*.sqlite") != std::string::npos, r.out.c_str());
    const auto script = readText(out + "/sweep.sbatch");
    QVERIFY2(script.find("#SBATCH --array=0-3%2\n") != std::string::npos, script.c_str());
    QVERIFY(script.find("#SBATCH --partition=debug\n") != std::string::npos);
    QVERIFY(script.find("exec '/opt/ladder/bin/ladder' sweep --config '" + out + "/sweep.json'")
        != std::string::npos);
    QVERIFY((fs::status(out + "/sweep.sbatch").permissions() & fs::perms::owner_exec) != fs::perms::none);
    QCOMPARE(nlohmann::json::parse(readText(out + "/sweep.json")), sweep); // the copy the tasks read
    QVERIFY(fs::is_directory(out + "/logs"));
    // bash reads the script.
    QProcess bash;
    bash.start("bash", { "-n", QString::fromStdString(out + "/sweep.sbatch") });
    QVERIFY(bash.waitForFinished(10000));
    QCOMPARE(bash.exitCode(), 0);
    // Without --ladder: this ladder's own absolute path. --json says the same.
    const auto j = test::runCli({ "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--emit",
        "slurm", "--out", QString::fromStdString(out), "--json" });
    QVERIFY2(j.exitCode == 0, j.err.c_str());
    const auto doc = nlohmann::json::parse(j.out);
    QCOMPARE(doc.at("runs").get<int>(), 4);
    QCOMPARE(doc.at("submit").get<std::string>(), "sbatch " + out + "/sweep.sbatch");
    const auto self = fs::canonical(test::cliPath()).string();
    QVERIFY2(
        readText(out + "/sweep.sbatch").find("exec '" + self + "' sweep") != std::string::npos, self.c_str());
}

void TestCliSlurm::emitRefusesMistakes()
{
    const auto root = test::makeTempDir();
    std::ofstream(root + "/sweep.json") << tinySweep(root + "/backbone", root + "/fruit.jsonl").dump(2);
    const auto config = QString::fromStdString(root + "/sweep.json");
    const auto out = QString::fromStdString(root + "/job");
    const std::vector<std::pair<QStringList, std::string>> cases {
        { { "--emit", "slurm", "--out", out, "--time", "90m" },
            "ladder sweep: --time 90m: expected HH:MM:SS" },
        { { "--emit", "slurm", "--out", out, "--max-parallel", "0" },
            "ladder sweep: --max-parallel: expected 1 or more runs at once, got 0" },
        { { "--emit", "slurm", "--out", out, "--cpus-per-run", "0" },
            "ladder sweep: --cpus-per-run: expected 1 or more" },
        { { "--emit", "slurm" }, "ladder sweep: --emit slurm: expected --out DIR" },
        { { "--emit", "slurm", "--out", out, "--store", "x.sqlite" },
            "ladder sweep: --store: not with --emit slurm" },
        { { "--emit", "slurm", "--out", out, "--index", "1" },
            "ladder sweep: --index: not with --emit slurm" },
        { { "--partition", "gpu" }, "ladder sweep: --partition: only with --emit slurm" },
        { { "--index", "-1" }, "ladder sweep: --index: expected a run index of 0 or more, got -1" },
        { { "--emit", "pbs", "--out", out }, "--emit: pbs not in {slurm}" },
    };
    for (const auto& [args, message] : cases) {
        const auto r = test::runCli(QStringList { "sweep", "--config", config } + args);
        QVERIFY2(r.exitCode == 2, (args.join(' ').toStdString() + ": " + r.err).c_str());
        QVERIFY2(r.err.find(message) != std::string::npos, r.err.c_str());
    }
    // A folder that holds a sweep's stores already.
    fs::create_directories(root + "/job");
    std::ofstream(root + "/job/run-0.sqlite") << "x";
    const auto r = test::runCli({ "sweep", "--config", config, "--emit", "slurm", "--out", out });
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(
        r.err.find("holds a sweep's results already (run-0.sqlite)") != std::string::npos, r.err.c_str());
}

void TestCliSlurm::indexRunsOneRunAndImportMergesTheStores()
{
    const auto root = test::makeTempDir();
    const auto backbone = makeBackbone(root);
    const auto task = test::writeFruitTask(root);
    std::ofstream(root + "/sweep.json") << tinySweep(backbone, task).dump(2);
    const auto config = QString::fromStdString(root + "/sweep.json");
    // What array tasks 2 and 0 run: run 2 is lora with seed 1 (methods, then seeds), run 0 full with seed 1.
    QStringList stores;
    for (const char* index : { "2", "0" }) {
        const auto store = QString::fromStdString(root + "/run-" + index + ".sqlite");
        const auto r = test::runCli({ "sweep", "--config", config, "--index", index, "--store", store });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("sweep: 1 finished, 0 skipped") != std::string::npos, r.out.c_str());
        stores << store;
    }
    ResultsStore run2;
    std::vector<RunRecord> runs;
    QVERIFY(run2.open(root + "/run-2.sqlite", ResultsStore::OpenMode::ReadOnly));
    QVERIFY(run2.listRuns({}, &runs));
    QCOMPARE(runs.size(), std::size_t(1));
    QCOMPARE(runs[0].method, std::string("lora"));
    QCOMPARE(runs[0].seed, std::optional<std::int64_t>(1));
    // Out of range.
    auto r = test::runCli({ "sweep", "--config", config, "--index", "4", "--store", stores[0] });
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.err.find("--index 4 is out of range: the sweep has 4 runs (0 to 3)") != std::string::npos,
        r.err.c_str());

    // Import both, plus a file that is no store: the two are merged, the third is named and skipped.
    const auto main = QString::fromStdString(root + "/main.sqlite");
    std::ofstream(root + "/notes.sqlite") << "not a store";
    const auto notes = QString::fromStdString(root + "/notes.sqlite");
    r = test::runCli(QStringList { "runs", "import" } + stores + QStringList { notes, "--store", main });
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.out.find("imported 1 run from " + stores[0].toStdString() + " (0 already present)\n")
            != std::string::npos,
        r.out.c_str());
    QVERIFY2(r.err.find("imported 0 runs from " + notes.toStdString() + " (skipped: not an SQLite database")
            != std::string::npos,
        r.err.c_str());
    QVERIFY2(r.out.find("runs import: 2 runs imported from 2 of 3 stores into " + main.toStdString()
                 + " (0 already present, 1 store skipped)")
            != std::string::npos,
        r.out.c_str());
    // Again: nothing new.
    r = test::runCli(QStringList { "runs", "import" } + stores + QStringList { "--store", main, "--json" });
    QCOMPARE(r.exitCode, 0);
    const auto doc = nlohmann::json::parse(r.out);
    QCOMPARE(doc.at("stores").size(), std::size_t(2));
    for (const auto& s : doc.at("stores")) {
        QCOMPARE(s.at("imported").get<int>(), 0);
        QCOMPARE(s.at("already_present").get<int>(), 1);
        QVERIFY(s.at("skipped").is_null());
    }
    ResultsStore merged;
    QVERIFY(merged.open(main.toStdString(), ResultsStore::OpenMode::ReadOnly));
    QVERIFY(merged.listRuns({}, &runs));
    QCOMPARE(runs.size(), std::size_t(2));
    for (const auto& run : runs) {
        QCOMPARE(run.status, RunState::Finished);
        std::int64_t points = 0;
        QVERIFY(merged.countMetrics(run.id, &points));
        QCOMPARE(points, std::int64_t(4));
        QVERIFY2(merged.verifyCheckpoint(run.id, nullptr), merged.lastError().c_str());
    }
}

QTEST_GUILESS_MAIN(TestCliSlurm)
#include "test_cli_slurm.moc"
