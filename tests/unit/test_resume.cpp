// Resume (docs/RELIABILITY.md, "Resume"): a real `ladder train` killed with SIGKILL mid-run, or failed by
// a NaN, continues with `ladder train --resume RUN_ID`; with dropout 0 on the CPU its losses, evaluations
// and final weights equal an uninterrupted run's to 1e-6. And what cannot be resumed is refused in one line,
// with the store unchanged.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include <ATen/ATen.h>
#include <QProcess>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "model/Safetensors.h"
#include "store/ResultsStore.h"
#include "train/TrainState.h"

using namespace ladder;
namespace fs = std::filesystem;

namespace {

nlohmann::json specFor(const std::string& backbone, const std::string& task, const std::string& method)
{
    return { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method",
            method == "ladder" ? nlohmann::json { { "method", "ladder" }, { "r", 4 } }
                               : nlohmann::json { { "method", method } } },
        { "training",
            { { "max_steps", 80 }, { "batch_size", 8 }, { "warmup_steps", 4 }, { "learning_rate", 0.01 },
                { "weight_decay", 0.01 }, { "max_source_length", 16 }, { "eval_every_steps", 20 },
                { "save_state_every_steps", 5 }, { "threads", 1 } } },
        { "seed", 3 } };
}

struct Recorded {
    RunRecord run;
    std::vector<MetricPoint> metrics;
    std::vector<Evaluation> evaluations;
    std::vector<LogLine> logs;
};

Recorded readRun(const std::string& storePath, std::int64_t id)
{
    ResultsStore store;
    std::string error;
    Recorded r;
    if (!store.open(storePath, ResultsStore::OpenMode::ReadOnly, &error) || !store.getRun(id, &r.run, &error)
        || !store.getMetrics(id, ResultsStore::kAllSteps, &r.metrics, &error)
        || !store.getEvaluations(id, &r.evaluations, &error) || !store.getLogs(id, 0, &r.logs, &error))
        throw std::runtime_error(error);
    return r;
}

std::string fileBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return { std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>() };
}

// The resumed run against the uninterrupted one: every step's loss and learning rate, every evaluation,
// the final figures and the best checkpoint's tensors.
void compareRuns(const std::string& storeA, const std::string& storeB, std::int64_t idB)
{
    const auto a = readRun(storeA, 1);
    const auto b = readRun(storeB, idB);
    QCOMPARE(QString(toString(b.run.status)), QString("finished"));
    QCOMPARE(b.metrics.size(), a.metrics.size());
    for (std::size_t i = 0; i < a.metrics.size(); ++i) {
        QCOMPARE(b.metrics[i].step, a.metrics[i].step);
        QVERIFY2(std::abs(*b.metrics[i].loss - *a.metrics[i].loss) <= 1e-6,
            qPrintable(QString("step %1: loss %2 resumed, %3 uninterrupted")
                           .arg(a.metrics[i].step)
                           .arg(*b.metrics[i].loss, 0, 'g', 17)
                           .arg(*a.metrics[i].loss, 0, 'g', 17)));
        QVERIFY(std::abs(*b.metrics[i].learningRate - *a.metrics[i].learningRate) <= 1e-12);
    }
    QCOMPARE(b.evaluations.size(), a.evaluations.size());
    for (std::size_t i = 0; i < a.evaluations.size(); ++i) {
        QCOMPARE(b.evaluations[i].step, a.evaluations[i].step);
        QCOMPARE(
            QString::fromStdString(b.evaluations[i].split), QString::fromStdString(a.evaluations[i].split));
        QVERIFY(std::abs(b.evaluations[i].mainMetric.value_or(-1) - a.evaluations[i].mainMetric.value_or(-1))
            <= 1e-12);
    }
    QCOMPARE(b.run.figures.bestStep, a.run.figures.bestStep);
    QVERIFY(std::abs(b.run.figures.testMetric.value_or(-1) - a.run.figures.testMetric.value_or(-1)) <= 1e-12);

    const auto wa = readSafetensors(ResultsStore::checkpointPathFor(storeA, 1));
    const auto wb = readSafetensors(ResultsStore::checkpointPathFor(storeB, idB));
    QCOMPARE(wb.size(), wa.size());
    double worst = 0.0;
    for (const auto& [name, t] : wa) {
        QVERIFY2(wb.count(name), name.c_str());
        worst = std::max(worst, (wb.at(name) - t).abs().max().item<double>());
    }
    QVERIFY2(worst <= 1e-6, qPrintable(QString("largest weight difference %1").arg(worst, 0, 'g', 6)));
    double lossWorst = 0.0;
    for (std::size_t i = 0; i < a.metrics.size(); ++i)
        lossWorst = std::max(lossWorst, std::abs(*b.metrics[i].loss - *a.metrics[i].loss));
    qInfo(
        "%zu steps, %zu evaluations compared; largest loss difference %g, largest weight difference %g over "
        "%zu tensors",
        a.metrics.size(), a.evaluations.size(), lossWorst, worst, wa.size());
    // A finished run is never resumed: its state is gone.
    QVERIFY(!fs::exists(ResultsStore::statePathFor(storeB, idB)));
}

} // namespace

class TestResume : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    // The proof: a real `ladder train` of LST killed with SIGKILL as soon as its first state is on
    // disk, then resumed, ends equal to a run never interrupted.
    void sigkillThenResumeEqualsUninterrupted()
    {
        const auto root = test::makeTempDir();
        test::writeTinyBackbone(root + "/tiny-t5", 1);
        const auto task = test::writeFruitTask(root);
        std::ofstream(root + "/run.json") << specFor(root + "/tiny-t5", task, "ladder").dump(2);
        const auto spec = QString::fromStdString(root + "/run.json");
        const auto storeA = root + "/a.sqlite", storeB = root + "/b.sqlite";

        auto r = test::runCli({ "train", "--config", spec, "--store", QString::fromStdString(storeA) });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());

        // B: killed with SIGKILL once its first state (step 5 of 80) is saved.
        const auto state = ResultsStore::statePathFor(storeB, 1);
        QProcess cli;
        cli.start(QString::fromStdString(test::cliPath()),
            { "train", "--config", spec, "--store", QString::fromStdString(storeB) });
        QVERIFY(cli.waitForStarted());
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (!fs::exists(state) && cli.state() != QProcess::NotRunning
            && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        QVERIFY2(fs::exists(state), cli.readAllStandardError().constData());
        ::kill(static_cast<pid_t>(cli.processId()), SIGKILL);
        QVERIFY(cli.waitForFinished(30000));
        QCOMPARE(cli.exitStatus(), QProcess::CrashExit);
        const auto header = readTrainStateHeader(state);
        QVERIFY(header.has_value());
        QVERIFY2(header->step >= 5 && header->step < 80, qPrintable(QString::number(header->step)));
        qInfo("killed with SIGKILL; its last state is of step %lld of 80",
            static_cast<long long>(header->step));

        // Opening the store for writing marks the killed run interrupted; the resume continues it.
        {
            ResultsStore store;
            QVERIFY(store.open(storeB));
            RunRecord run;
            QVERIFY(store.getRun(1, &run));
            QCOMPARE(QString(toString(run.status)), QString("interrupted"));
        }
        r = test::runCli({ "train", "--resume", "1", "--store", QString::fromStdString(storeB) });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(
            r.err.find("resuming from step " + std::to_string(header->step) + " of 80") != std::string::npos,
            r.err.c_str());
        QVERIFY2(r.out.find("run 1: finished") != std::string::npos, r.out.c_str());
        const auto b = readRun(storeB, 1);
        bool logged = false;
        for (const auto& line : b.logs)
            logged
                = logged || line.message.rfind("resumed from step " + std::to_string(header->step), 0) == 0;
        QVERIFY(logged);
        compareRuns(storeA, storeB, 1);
    }

    // A failed run (a NaN loss at step 13 of 24) continues from its state of step 10. Full fine-tuning:
    // AdamW's state covers every weight, in both of its groups (decayed and not). LST with its activation
    // cache in RAM: the resumed process starts with an empty cache, so the examples of the epochs before
    // step 10 run the backbone again where the uninterrupted run reads the cache; the same values.
    void failedRunResumesEqual_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("cache");
        QTest::newRow("full") << "full"
                              << "";
        QTest::newRow("ladder, cache ram") << "ladder"
                                           << "ram";
    }
    void failedRunResumesEqual()
    {
        QFETCH(QString, method);
        QFETCH(QString, cache);
        const auto root = test::makeTempDir();
        test::writeTinyBackbone(root + "/tiny-t5", 1);
        const auto task = test::writeFruitTask(root);
        auto j = specFor(root + "/tiny-t5", task, method.toStdString());
        if (!cache.isEmpty())
            j["method"]["cache"] = cache.toStdString();
        j["training"]["max_steps"] = 24;
        j["training"]["eval_every_steps"] = 8;
        std::ofstream(root + "/run.json") << j.dump(2);
        const auto spec = QString::fromStdString(root + "/run.json");
        const auto storeA = root + "/a.sqlite", storeB = root + "/b.sqlite";
        auto r = test::runCli({ "train", "--config", spec, "--store", QString::fromStdString(storeA) });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());

        qputenv("LADDER_FAULT_INJECT", "nan@13");
        r = test::runCli({ "train", "--config", spec, "--store", QString::fromStdString(storeB) });
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.out.find("loss became NaN at step 13") != std::string::npos, r.out.c_str());
        QCOMPARE(readTrainStateHeader(ResultsStore::statePathFor(storeB, 1))->step, std::int64_t(10));

        r = test::runCli({ "train", "--resume", "1", "--store", QString::fromStdString(storeB) });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.err.find("resuming from step 10 of 24") != std::string::npos, r.err.c_str());
        compareRuns(storeA, storeB, 1);
    }

    // What cannot be resumed: exit 1 (2 for the command line), one line, the store byte-identical.
    void refusals()
    {
        const auto root = test::makeTempDir();
        test::writeTinyBackbone(root + "/tiny-t5", 1);
        const auto task = test::writeFruitTask(root);
        auto j = specFor(root + "/tiny-t5", task, "lora");
        j["training"]["max_steps"] = 6;
        std::ofstream(root + "/run.json") << j.dump(2);
        const auto store = root + "/s.sqlite";
        const auto qs = QString::fromStdString(store);
        auto r = test::runCli(
            { "train", "--config", QString::fromStdString(root + "/run.json"), "--store", qs });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        // A second run, failed at step 3 by a NaN, has a state of step 2... once its state is damaged.
        j["training"]["save_state_every_steps"] = 2;
        std::ofstream(root + "/run2.json") << j.dump(2);
        qputenv("LADDER_FAULT_INJECT", "nan@3");
        r = test::runCli({ "train", "--config", QString::fromStdString(root + "/run2.json"), "--store", qs });
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(r.exitCode, 1);
        const auto state = ResultsStore::statePathFor(store, 2);
        QVERIFY(fs::exists(state));
        const auto intact = fileBytes(state);
        fs::resize_file(state, intact.size() / 2);

        const struct {
            QStringList args;
            int code;
            std::string says;
        } cases[] = {
            { { "train", "--resume", "1", "--store", qs }, 1,
                "run 1 is finished; only an interrupted, failed or cancelled run can be resumed" },
            { { "train", "--resume", "9", "--store", qs }, 1, "no run 9" },
            { { "train", "--resume", "2", "--store", qs }, 1, "training state: " + state + ": tensor" },
            { { "train", "--resume", "1", "--store", QString::fromStdString(root + "/none.sqlite") }, 1,
                "no results store at" },
            { { "train", "--resume", "1", "--config", QString::fromStdString(root + "/run.json"), "--store",
                  qs },
                2, "excludes" },
            { { "train", "--store", qs }, 2, "expected --config FILE (a run spec) or --resume RUN_ID" },
        };
        for (const auto& c : cases) {
            const auto before = fileBytes(store);
            r = test::runCli(c.args);
            QVERIFY2(
                r.exitCode == c.code, qPrintable(c.args.join(' ') + ": " + QString::fromStdString(r.err)));
            QVERIFY2(r.err.find(c.says) != std::string::npos,
                qPrintable(c.args.join(' ') + ": " + QString::fromStdString(r.err)));
            if (c.code == 1) // a usage error (2) adds CLI11's "Run with --help" line
                QVERIFY2(r.err.find('\n') == r.err.size() - 1, r.err.c_str()); // one line
            QVERIFY2(fileBytes(store) == before, qPrintable(c.args.join(' ')));
        }

        // The state whole again: run 2 resumes from step 2 and finishes.
        std::ofstream(state, std::ios::binary | std::ios::trunc) << intact;
        r = test::runCli({ "train", "--resume", "2", "--store", qs });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.err.find("resuming from step 2 of 6") != std::string::npos, r.err.c_str());
        QVERIFY(!fs::exists(state));
    }
};

LADDER_TEST_GUILESS_MAIN(TestResume)
#include "test_resume.moc"
