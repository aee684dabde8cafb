// `ladder train`, `runs`, `eval` and `sweep` end to end on a tiny backbone folder and a generic task,
// with a real results store file.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <QElapsedTimer>
#include <QProcess>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "model/Safetensors.h"
#include "model/T5Model.h"
#include "store/ResultsStore.h"

using namespace ladder;

namespace {

// config.json + model.safetensors of a tiny random T5 over the real T5 vocabulary, + spiece.model.
std::string makeTinyBackbone(const std::string& root)
{
    const auto dir = root + "/tiny-t5";
    test::writeTinyBackbone(dir, 1);
    return dir;
}

// The task file as a named pipe: a run that loads it blocks in the task's load until feedFifo() writes
// it, which holds a run "while it loads" for as long as a test needs.
std::string makeTaskFifo(const std::string& root)
{
    const auto path = root + "/fruit.jsonl";
    if (::mkfifo(path.c_str(), 0600) != 0)
        throw std::runtime_error("mkfifo " + path + " failed");
    return path;
}

// Writes the task into the pipe; false when no process has it open for reading (never blocks then).
bool feedFifo(const std::string& path, const std::string& text)
{
    const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd < 0)
        return false;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    std::size_t done = 0;
    while (done < text.size()) {
        const auto n = ::write(fd, text.data() + done, text.size() - done);
        if (n <= 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return done == text.size();
}

// The CLI as a process of its own that a test interrupts with SIGINT, as Ctrl+C does.
class RunningCli {
public:
    explicit RunningCli(const QStringList& args)
    {
        m_process.start(QString::fromStdString(ladder::test::cliPath()), args);
        m_process.waitForStarted();
    }
    ~RunningCli()
    {
        if (m_process.state() != QProcess::NotRunning) {
            m_process.kill();
            m_process.waitForFinished();
        }
    }
    // Waits until stderr holds `text`; false when the process ended or the time ran out first.
    bool waitForErr(const std::string& text, int timeoutMs)
    {
        QElapsedTimer t;
        t.start();
        for (;;) {
            m_err += m_process.readAllStandardError().toStdString();
            if (m_err.find(text) != std::string::npos)
                return true;
            if (m_process.state() == QProcess::NotRunning || t.elapsed() > timeoutMs)
                return false;
            m_process.waitForFinished(50);
        }
    }
    // True when the process is still running after `ms`.
    bool stillRunningAfter(int ms) { return !m_process.waitForFinished(ms); }
    void interrupt() { ::kill(static_cast<pid_t>(m_process.processId()), SIGINT); }
    // Waits for the end; the exit code (-1: killed by a signal or still running after timeoutMs).
    int finish(int timeoutMs)
    {
        // waitForFinished is false for a process that has already finished (say during stillRunningAfter):
        // only a process still running is waited for.
        if (m_process.state() != QProcess::NotRunning && !m_process.waitForFinished(timeoutMs))
            return -1;
        m_out += m_process.readAllStandardOutput().toStdString();
        m_err += m_process.readAllStandardError().toStdString();
        return m_process.exitStatus() == QProcess::NormalExit ? m_process.exitCode() : -1;
    }
    const std::string& out() const { return m_out; }
    const std::string& err() const { return m_err; }

private:
    QProcess m_process;
    std::string m_out, m_err;
};

nlohmann::json specFor(const std::string& backbone, const std::string& task, const std::string& method)
{
    return { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method",
            method == "ladder"     ? nlohmann::json { { "method", "ladder" }, { "r", 4 } }
                : method == "lora" ? nlohmann::json { { "method", "lora" }, { "rank", 4 } }
                                   : nlohmann::json { { "method", method } } },
        { "training",
            { { "max_steps", 12 }, { "batch_size", 8 }, { "warmup_steps", 2 }, { "learning_rate", 0.01 },
                { "max_source_length", 16 } } },
        { "seed", 0 } };
}

} // namespace

class TestCliTrain : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    void trainListShowEvalExport()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto task = test::writeFruitTask(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        std::ofstream(root + "/run.json") << specFor(backbone, task, "ladder").dump(2);

        auto r = test::runCli(
            { "train", "--config", QString::fromStdString(root + "/run.json"), "--store", store });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("run 1: finished") != std::string::npos, r.out.c_str());
        QVERIFY2(r.err.find("Fisher initialisation") != std::string::npos, r.err.c_str());

        r = test::runCli({ "runs", "--store", store, "list", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto runs = nlohmann::json::parse(r.out);
        // The group's --store works after the subcommand too, with the same answer.
        const auto after = test::runCli({ "runs", "list", "--json", "--store", store });
        QVERIFY2(after.exitCode == 0, after.err.c_str());
        QCOMPARE(QString::fromStdString(nlohmann::json::parse(after.out).dump()),
            QString::fromStdString(runs.dump()));
        // --json's convention: every key is there, a missing value is null (this run has no error).
        QVERIFY(runs[0].at("error").is_null());
        QVERIFY(runs[0].contains("tokens_per_second"));
        QCOMPARE(runs.size(), std::size_t(1));
        QCOMPARE(QString::fromStdString(runs[0].at("status").get<std::string>()), QString("finished"));
        QCOMPARE(QString::fromStdString(runs[0].at("method").get<std::string>()), QString("ladder"));
        QVERIFY(runs[0].at("peak_allocated_bytes").get<std::int64_t>() > 0);
        QVERIFY(!runs[0].at("best_validation").is_null());
        QVERIFY(!runs[0].at("test").is_null());

        r = test::runCli({ "runs", "--store", store, "show", "1", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto show = nlohmann::json::parse(r.out);
        QVERIFY(show.at("evaluations").size() >= 2);
        QCOMPARE(show.at("spec").at("method").at("r").get<int>(), 4);
        // LST's default init is the paper's Fisher pruning; its pass over the task showed on the progress
        // line, and eval (below) loads the trained weights without repeating it.
        QCOMPARE(show.at("spec").at("method").at("init").get<std::string>(), std::string("fisher"));
        // Without --json, show is text for a reader (either order of --store), ending with the spec.
        r = test::runCli({ "runs", "show", "1", "--store", store });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.rfind("run 1: ", 0) == 0, r.out.c_str());
        for (const char* part :
            { "(finished)", "peak memory", "validation", "evaluations (", "log (", "spec (" })
            QVERIFY2(r.out.find(part) != std::string::npos, (std::string(part) + " in:\n" + r.out).c_str());
        QVERIFY(nlohmann::json::parse(r.out, nullptr, false).is_discarded());

        // Every evaluation keeps what was generated (the first 200 examples; these splits are smaller), and
        // the exact-match rate over the kept predictions is the stored accuracy.
        {
            ResultsStore db;
            std::string error;
            QVERIFY2(db.open(store.toStdString(), &error), error.c_str());
            std::vector<Evaluation> evaluations;
            QVERIFY2(db.getEvaluations(1, &evaluations, &error), error.c_str());
            QVERIFY(evaluations.size() >= 2);
            for (const auto& e : evaluations) {
                const auto predictions = nlohmann::json::parse(e.predictionsJson);
                QVERIFY(predictions.is_array() && !predictions.empty() && predictions.size() < 200);
                int correct = 0;
                for (const auto& p : predictions) {
                    QVERIFY(p.at("id").is_string() && p.at("target").is_string()
                        && p.at("prediction").is_string());
                    correct += p.at("prediction") == p.at("target") ? 1 : 0;
                }
                QVERIFY(e.mainMetric.has_value());
                QCOMPARE(
                    static_cast<double>(correct) / static_cast<double>(predictions.size()), *e.mainMetric);
            }
        }

        r = test::runCli({ "eval", "--run", "1", "--store", store });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("test: accuracy") != std::string::npos, r.out.c_str());
        // The stored test figure was computed on the same best weights: eval reproduces it.
        const double stored = runs[0].at("test").get<double>();
        QVERIFY2(r.out.find("test: accuracy " + QString::number(stored, 'g', 4).toStdString())
                != std::string::npos,
            (r.out + " vs " + std::to_string(stored)).c_str());
        r = test::runCli({ "eval", "--run", "1", "--store", store, "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto evaluated = nlohmann::json::parse(r.out);
        QCOMPARE(evaluated.at("run").get<int>(), 1);
        QCOMPARE(evaluated.at("test").at("main_metric").get<std::string>(), std::string("accuracy"));
        QCOMPARE(evaluated.at("test").at("main").get<double>(), stored);
        QVERIFY(evaluated.at("validation").at("examples").get<int>() > 0);

        const auto csv = root + "/runs.csv";
        r = test::runCli({ "runs", "export", "--store", store, "--csv", QString::fromStdString(csv) });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        std::ifstream in(csv);
        std::string header;
        std::getline(in, header);
        QVERIFY(header.find("method") != std::string::npos);
    }

    void sweepRunsGridAndSkipsFinished()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto task = test::writeFruitTask(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        auto base = specFor(backbone, task, "full");
        base["task"]["label_targets"] = "text"; // the model generates the label text itself
        nlohmann::json sweep { { "base", base },
            { "methods",
                { { { "method", "full" } },
                    // the pair form: method options plus training overrides
                    { { "method", { { "method", "lora" }, { "rank", 4 } } },
                        { "training", { { "learning_rate", 0.005 } } } } } },
            { "seeds", { 3 } } };
        std::ofstream(root + "/sweep.json") << sweep.dump(2);
        auto r = test::runCli(
            { "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store", store });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("sweep: 2 finished, 0 skipped") != std::string::npos, r.out.c_str());
        r = test::runCli({ "runs", "--store", store, "show", "2", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto second = nlohmann::json::parse(r.out).at("spec");
        QCOMPARE(second.at("method").at("rank").get<int>(), 4);
        QCOMPARE(second.at("task").at("label_targets").get<std::string>(), std::string("text"));
        QCOMPARE(second.at("training").at("learning_rate").get<double>(), 0.005);
        QCOMPARE(second.at("training").at("batch_size").get<int>(),
            specFor(backbone, task, "full").at("training").at("batch_size").get<int>()); // kept from base
        r = test::runCli(
            { "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store", store });
        QVERIFY2(r.out.find("sweep: 0 finished, 2 skipped") != std::string::npos, r.out.c_str());
    }

    // Ctrl+C while the run loads (here: its task, a pipe nobody writes yet) is not lost: the load ends, the
    // trainer stops at its first poll, the run is stored as cancelled, and the exit status is 130.
    void sigintWhileLoadingEndsWith130()
    {
        const auto root = test::makeTempDir();
        const auto fifo = makeTaskFifo(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        auto spec = specFor(makeTinyBackbone(root), fifo, "lora");
        spec["training"]["max_steps"] = 5000; // were Ctrl+C lost, the run would go on far past the timeout
        std::ofstream(root + "/run.json") << spec.dump(2);
        RunningCli cli(
            { "train", "--config", QString::fromStdString(root + "/run.json"), "--store", store, "--json" });
        // After this line the task's load has begun (no stage boundary follows before the pipe): it blocks.
        QVERIFY2(cli.waitForErr("loading task", 60000), cli.err().c_str());
        cli.interrupt();
        QVERIFY2(cli.waitForErr("interrupted", 10000), cli.err().c_str());
        QVERIFY2(cli.stillRunningAfter(300), cli.err().c_str()); // the first Ctrl+C lets the stage end
        QElapsedTimer t;
        t.start();
        QVERIFY(feedFifo(fifo, test::fruitTaskText()));
        const int code = cli.finish(60000);
        QVERIFY2(code == 130, ("exit " + std::to_string(code) + "\n" + cli.err()).c_str());
        QVERIFY2(t.elapsed() < 30000, std::to_string(t.elapsed()).c_str());
        const auto run = nlohmann::json::parse(cli.out()); // train --json: the run, as runs list shows it
        QCOMPARE(run.at("status").get<std::string>(), std::string("cancelled"));
        QCOMPARE(run.at("store").get<std::string>(), store.toStdString());
        const auto r = test::runCli({ "runs", "list", "--store", store, "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QCOMPARE(nlohmann::json::parse(r.out)[0].at("status").get<std::string>(), std::string("cancelled"));
    }

    // Ctrl+C while the backbone loads (its config.json is a pipe here) stops the run at the next stage
    // boundary: the task (a pipe nobody ever feeds) is never read, and the run ends cancelled with 130.
    void sigintWhileTheBackboneLoadsSkipsTheTask()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto config = backbone + "/config.json";
        std::string configText;
        {
            std::ifstream in(config);
            configText.assign(std::istreambuf_iterator<char>(in), {});
        }
        std::filesystem::remove(config);
        QVERIFY(::mkfifo(config.c_str(), 0600) == 0);
        const auto taskFifo = makeTaskFifo(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        std::ofstream(root + "/run.json") << specFor(backbone, taskFifo, "lora").dump(2);
        RunningCli cli(
            { "train", "--config", QString::fromStdString(root + "/run.json"), "--store", store, "--json" });
        QVERIFY2(cli.waitForErr("loading backbone", 60000), cli.err().c_str());
        cli.interrupt();
        QVERIFY2(cli.waitForErr("interrupted", 10000), cli.err().c_str());
        // The backbone's load goes on. Fed once: QTRY_VERIFY evaluates its expression again after it holds,
        // and a second feed would reach a reader that reads to the end of the file.
        QElapsedTimer fed;
        fed.start();
        bool wrote = false;
        while (!(wrote = feedFifo(config, configText)) && fed.elapsed() < 10000)
            QTest::qWait(20);
        QVERIFY(wrote);
        const int code = cli.finish(60000);
        QVERIFY2(code == 130, ("exit " + std::to_string(code) + "\n" + cli.err()).c_str());
        QVERIFY2(cli.err().find("loading task") == std::string::npos, cli.err().c_str());
        QCOMPARE(nlohmann::json::parse(cli.out()).at("status").get<std::string>(), std::string("cancelled"));
    }

    // A second Ctrl+C ends the process at once, even in a stage that cannot stop (a load that blocks).
    void secondSigintQuitsAtOnce()
    {
        const auto root = test::makeTempDir();
        const auto fifo = makeTaskFifo(root);
        std::ofstream(root + "/run.json") << specFor(makeTinyBackbone(root), fifo, "full").dump(2);
        RunningCli cli({ "train", "--config", QString::fromStdString(root + "/run.json"), "--store",
            QString::fromStdString(root + "/results.sqlite") });
        QVERIFY2(cli.waitForErr("loading task", 60000), cli.err().c_str());
        cli.interrupt();
        QVERIFY2(cli.waitForErr("interrupted", 10000), cli.err().c_str());
        QVERIFY2(cli.stillRunningAfter(500), cli.err().c_str()); // blocked: the first Ctrl+C cannot end it
        QElapsedTimer t;
        t.start();
        cli.interrupt();
        const int code = cli.finish(5000);
        QVERIFY2(code == 130, ("exit " + std::to_string(code) + "\n" + cli.err()).c_str());
        QVERIFY2(t.elapsed() < 2000, std::to_string(t.elapsed()).c_str());
        QVERIFY2(cli.err().find("quitting now") != std::string::npos, cli.err().c_str());
    }

    // A cancelled sweep exits 130, as a cancelled train does (it exited 1 before).
    void cancelledSweepExits130()
    {
        const auto root = test::makeTempDir();
        const auto fifo = makeTaskFifo(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        auto base = specFor(makeTinyBackbone(root), fifo, "full");
        base["training"]["max_steps"] = 5000;
        std::ofstream(root + "/sweep.json")
            << nlohmann::json { { "base", base }, { "seeds", { 0, 1 } } }.dump(2);
        RunningCli cli(
            { "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store", store });
        QVERIFY2(cli.waitForErr("loading backbone", 60000), cli.err().c_str());
        cli.interrupt();
        QVERIFY2(cli.waitForErr("interrupted", 10000), cli.err().c_str());
        // Interrupted while the backbone loads, the run stops at the task's stage boundary and never opens
        // the task's pipe; interrupted a moment later, it waits in the pipe for the task. Feed the pipe
        // until it is read or the sweep has ended (either is right; a fixed feed raced the boundary).
        while (!feedFifo(fifo, test::fruitTaskText()) && cli.stillRunningAfter(100)) { }
        const int code = cli.finish(60000);
        QVERIFY2(code == 130, ("exit " + std::to_string(code) + "\n" + cli.out() + cli.err()).c_str());
        const auto r = test::runCli({ "runs", "--store", store, "list", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto runs = nlohmann::json::parse(r.out);
        QCOMPARE(runs.size(), std::size_t(1)); // the second seed never started
        QCOMPARE(runs[0].at("status").get<std::string>(), std::string("cancelled"));
    }

    // Method flags put over the spec's method options (issue 18's memory options): the run trains and
    // records the spec it trained; a flag of another method is refused, naming it.
    void methodFlagsOverTheSpec()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto task = test::writeFruitTask(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        auto spec = specFor(backbone, task, "ladder");
        spec["method"]["init"] = "random";
        std::ofstream(root + "/run.json") << spec.dump(2);
        const auto config = QString::fromStdString(root + "/run.json");
        auto r = test::runCli({ "train", "--config", config, "--store", store, "--side-checkpoint", "true",
            "--side-attention", "sdpa", "--ladder-dtype", "bf16", "--backbone-dtype", "int8" });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        r = test::runCli({ "runs", "--store", store, "show", "1", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto method = nlohmann::json::parse(r.out).at("spec").at("method");
        QCOMPARE(method.at("side_checkpoint").get<bool>(), true);
        QCOMPARE(QString::fromStdString(method.at("side_attention").get<std::string>()), QString("sdpa"));
        QCOMPARE(QString::fromStdString(method.at("ladder_dtype").get<std::string>()), QString("bf16"));
        QCOMPARE(QString::fromStdString(method.at("backbone_dtype").get<std::string>()), QString("int8"));
        QCOMPARE(method.at("r").get<int>(), 4); // the spec's own options stay

        r = test::runCli({ "train", "--config", config, "--store", store, "--rank", "8" });
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("--rank is not an option of method ladder") != std::string::npos, r.err.c_str());
    }

    void badSpecIsOneLine()
    {
        const auto root = test::makeTempDir();
        std::ofstream(root + "/run.json") << R"({"task": {"type": "glue"}, "method": {"method": "lora"}})";
        const auto r = test::runCli({ "train", "--config", QString::fromStdString(root + "/run.json"),
            "--store", QString::fromStdString(root + "/s.sqlite") });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("task.path") != std::string::npos, r.err.c_str());
        QCOMPARE(std::count(r.err.begin(), r.err.end(), '\n'), 1l);
    }
};

LADDER_TEST_GUILESS_MAIN(TestCliTrain)
#include "test_cli_train.moc"
