// Every run in its own process: the child-process supervisor (lines, exit codes, signals, the polite /
// SIGTERM / SIGKILL escalation), the worker's event protocol, and `ladder worker` / `ladder sweep
// --parallel` end to end on a tiny backbone: two runs at once train exactly as one alone, each with its
// solo peak, and a worker that crashes leaves its run failed with the signal while the others go on.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunProcess.h"
#include "train/RunWorkerProcess.h"
#include "train/StoreRecorder.h"
#include "util/Error.h"

using namespace ladder;

namespace {

struct Lines {
    std::vector<std::string> out, err;
};

ProcessExit runShell(const std::string& script, Lines* lines, double polite = 30, double term = 10,
    const std::function<bool()>& stop = {}, const std::function<void(ChildProcess&)>& onStop = {})
{
    ChildProcess child;
    ChildProcess::Options o;
    o.program = "/bin/sh";
    o.args = { "-c", script };
    o.politeSeconds = polite;
    o.termSeconds = term;
    std::string error;
    if (!child.start(o, &error)) {
        ProcessExit e;
        e.startError = error;
        return e;
    }
    return child.supervise([&](const std::string& l) { lines->out.push_back(l); },
        [&](const std::string& l) { lines->err.push_back(l); }, stop,
        [&] {
            if (onStop)
                onStop(child);
        });
}

// Records what the supervisor forwards.
struct Recorder : TrainerObserver {
    std::vector<TrainStep> steps;
    std::vector<TrainEval> evals;
    std::vector<std::pair<std::string, std::string>> logs;
    std::vector<std::int64_t> initDone;
    bool cancel = false;
    void onStep(const TrainStep& s) override { steps.push_back(s); }
    void onEval(const TrainEval& e) override { evals.push_back(e); }
    void onLog(const std::string& l, const std::string& m) override { logs.emplace_back(l, m); }
    void onInitProgress(const std::string&, std::int64_t done, std::int64_t) override
    {
        initDone.push_back(done);
    }
    bool cancelRequested() override { return cancel; }
};

// Full fine-tuning (the largest peak of the methods) for 10 steps, one CPU thread: deterministic.
nlohmann::json spec(const std::string& backbone, const std::string& task, const std::string& name)
{
    return { { "name", name }, { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method", { { "method", "full" } } },
        { "training",
            { { "max_steps", 10 }, { "batch_size", 8 }, { "warmup_steps", 2 }, { "learning_rate", 0.001 },
                { "max_source_length", 16 }, { "threads", 1 }, { "eval_every_steps", 0 } } },
        { "seed", 3 } };
}

std::vector<double> lossesOf(ResultsStore& store, std::int64_t runId)
{
    std::vector<MetricPoint> points;
    std::string error;
    if (!store.getMetrics(runId, ResultsStore::kAllSteps, &points, &error))
        throw Error(error);
    std::vector<double> losses;
    for (const auto& p : points)
        if (p.loss)
            losses.push_back(*p.loss);
    return losses;
}

} // namespace

class TestRunProcess : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void linesAndExitStatus()
    {
        Lines lines;
        const auto exit = runShell("echo one; echo two >&2; echo three; printf partial; exit 3", &lines);
        QVERIFY(exit.started);
        QVERIFY(!exit.signalled);
        QCOMPARE(exit.exitCode, 3);
        QCOMPARE(lines.out, (std::vector<std::string> { "one", "three", "partial" }));
        QCOMPARE(lines.err, (std::vector<std::string> { "two" }));
        QCOMPARE(QString::fromStdString(exit.describe()), QStringLiteral("exited with status 3"));
    }

    void signalIsReported()
    {
        Lines lines;
        const auto exit = runShell("echo before; kill -SEGV $$", &lines);
        QVERIFY(exit.signalled);
        QCOMPARE(exit.signal, SIGSEGV);
        QVERIFY(!exit.stoppedByUs);
        QCOMPARE(QString::fromStdString(exit.describe()), QStringLiteral("killed by signal 11 (SIGSEGV)"));
        QCOMPARE(lines.out, (std::vector<std::string> { "before" }));
    }

    void missingProgramIsNamed()
    {
        ChildProcess child;
        ChildProcess::Options o;
        o.program = "/nonexistent/ladder";
        std::string error;
        QVERIFY(!child.start(o, &error));
        QVERIFY2(error.find("/nonexistent/ladder") != std::string::npos, error.c_str());
    }

    // Polite first: a child that reads "cancel" on stdin ends by itself, no signal is sent.
    void politeStopIsHeard()
    {
        Lines lines;
        int stops = 0;
        const auto exit = runShell(
            "read line; echo got $line; exit 7", &lines, 5, 5, [] { return true; },
            [&](ChildProcess& c) {
                ++stops;
                c.writeStdin("cancel\n");
            });
        QCOMPARE(stops, 1);
        QVERIFY(!exit.signalled);
        QVERIFY(!exit.stoppedByUs);
        QCOMPARE(exit.exitCode, 7);
        QCOMPARE(lines.out, (std::vector<std::string> { "got cancel" }));
    }

    // A child that ignores the request and SIGTERM is killed: SIGTERM after the polite grace, SIGKILL
    // after the term grace.
    void stopEscalatesToSigkill()
    {
        Lines lines;
        QElapsedTimer timer;
        timer.start();
        const auto exit = runShell(
            "trap '' TERM; echo ready; while :; do sleep 0.05; done", &lines, 0.2, 0.3, [] { return true; });
        QVERIFY(exit.signalled);
        QCOMPARE(exit.signal, SIGKILL);
        QVERIFY(exit.stoppedByUs);
        QCOMPARE(exit.stopSignal, SIGKILL);
        QVERIFY2(
            timer.elapsed() >= 450 && timer.elapsed() < 5000, qPrintable(QString::number(timer.elapsed())));
        // A SIGKILL the supervisor did not send is what the out-of-memory killer does: say so.
        ProcessExit oom;
        oom.started = oom.signalled = true;
        oom.signal = SIGKILL;
        QVERIFY(oom.describe().find("out-of-memory") != std::string::npos);
    }

    // Two children started at once from two threads: neither inherits the other's pipes, so each one's
    // stdout ends when it exits (the supervisor would otherwise wait for the other child).
    void concurrentStartsDoNotLeakPipes()
    {
        ProcessExit a, b;
        Lines la, lb;
        QElapsedTimer timer;
        timer.start();
        std::thread ta([&] { a = runShell("echo a", &la); });
        std::thread tb([&] { b = runShell("sleep 3; echo b", &lb); });
        ta.join();
        const auto fast = timer.elapsed();
        tb.join();
        QCOMPARE(a.exitCode, 0);
        QCOMPARE(la.out, (std::vector<std::string> { "a" }));
        QCOMPARE(lb.out, (std::vector<std::string> { "b" }));
        QVERIFY2(fast < 2500, qPrintable(QStringLiteral("the quick child took %1 ms").arg(fast)));
    }

    // What the worker writes is what the supervisor hands on, NaN included (JSON null).
    void eventsRoundTrip()
    {
        std::FILE* file = std::tmpfile();
        QVERIFY(file);
        RunEventWriter writer(file);
        TrainStep s;
        s.step = 4;
        s.totalSteps = 10;
        s.epoch = 1;
        s.loss = 0.625;
        s.learningRate = 1e-3;
        s.memory.allocated = 123456789012;
        s.memory.peakAllocated = 223456789012;
        s.tokensPerSecond = 1500.5;
        s.elapsedSeconds = 2.25;
        writer.onInitProgress("Fisher initialisation", 3, 8);
        writer.onStep(s);
        s.step = 5;
        s.loss = std::nan("");
        writer.onStep(s);
        TrainEval e;
        e.step = 5;
        e.split = "validation";
        e.mainName = "accuracy";
        e.main = 0.75;
        e.values = { { "accuracy", 0.75 }, { "f1", 0.5 } };
        e.examples = 12;
        e.invalid = 1;
        writer.onEval(e);
        writer.onLog("warning", "a \"quoted\"\nline");
        writer.writeEnd(RunState::Cancelled, "cancelled at step 5");
        std::rewind(file);
        Recorder r;
        RunState end = RunState::Running;
        std::string endMessage;
        char buffer[4096];
        int lines = 0;
        while (std::fgets(buffer, sizeof buffer, file)) {
            std::string line(buffer);
            line.pop_back();
            QVERIFY2(dispatchRunEvent(line, r, &end, &endMessage), line.c_str());
            ++lines;
        }
        std::fclose(file);
        QCOMPARE(lines, 6);
        QCOMPARE(r.initDone, (std::vector<std::int64_t> { 3 }));
        QCOMPARE(r.steps.size(), std::size_t(2));
        QCOMPARE(r.steps[0].step, std::int64_t(4));
        QCOMPARE(r.steps[0].totalSteps, std::int64_t(10));
        QCOMPARE(r.steps[0].loss, 0.625);
        QCOMPARE(r.steps[0].memory.allocated, std::uint64_t(123456789012));
        QCOMPARE(r.steps[0].memory.peakAllocated, std::uint64_t(223456789012));
        QCOMPARE(r.steps[0].elapsedSeconds, 2.25);
        QVERIFY(std::isnan(r.steps[1].loss));
        QCOMPARE(r.evals.size(), std::size_t(1));
        QCOMPARE(r.evals[0].values.at("f1"), 0.5);
        QCOMPARE(r.evals[0].main, 0.75);
        QCOMPARE(r.evals[0].invalid, std::size_t(1));
        QCOMPARE(r.logs.size(), std::size_t(1));
        QCOMPARE(QString::fromStdString(r.logs[0].second), QStringLiteral("a \"quoted\"\nline"));
        QCOMPARE(end, RunState::Cancelled);
        QCOMPARE(QString::fromStdString(endMessage), QStringLiteral("cancelled at step 5"));
        QVERIFY(!dispatchRunEvent("not an event", r, nullptr, nullptr));
        QVERIFY(!dispatchRunEvent("{\"event\":\"unknown\"}", r, nullptr, nullptr));
    }

    void faultInjectionParses()
    {
        int signal = 0;
        std::int64_t step = 0;
        QVERIFY(parseFaultInjection("SIGSEGV step=2", 7, &signal, &step));
        QCOMPARE(signal, SIGSEGV);
        QCOMPARE(step, std::int64_t(2));
        QVERIFY(!parseFaultInjection("SIGABRT step=1 run=5", 4, &signal, &step));
        QVERIFY(parseFaultInjection("SIGABRT step=1 run=5", 5, &signal, &step));
        QCOMPARE(signal, SIGABRT);
        try {
            parseFaultInjection("SIGNOPE step=x", 1, &signal, &step);
            QFAIL("no error for a bad value");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("LADDER_WORKER_FAULT") != std::string::npos, e.what());
        }
    }

    // The soak's per-run faults (docs/WORKBENCH.md): a NaN for one run's trainer, an address-space cap for
    // one run's worker.
    void runTargetedFaultsParse()
    {
        QCOMPARE(nanInjectionForRun("nan@2 run=5", 5), std::string("nan@2"));
        QCOMPARE(nanInjectionForRun("nan@2 run=5", 4), std::string());
        QCOMPARE(nanInjectionForRun("nan@3", 4), std::string("nan@3"));
        QCOMPARE(nanInjectionForRun("nope run=4", 4), std::string("nope run=4")); // the trainer names it
        std::uint64_t headroom = 0;
        QVERIFY(parseAddressSpaceLimit("48 run=5", 5, &headroom));
        QCOMPARE(headroom, std::uint64_t(48) << 20);
        QVERIFY(!parseAddressSpaceLimit("48 run=5", 6, &headroom));
        QVERIFY(parseAddressSpaceLimit("64", 6, &headroom));
        QCOMPARE(headroom, std::uint64_t(64) << 20);
        for (const char* bad : { "x run=5", "0", "48 run=x", "48 MiB" }) {
            try {
                parseAddressSpaceLimit(bad, 5, &headroom);
                QFAIL(bad);
            } catch (const Error& e) {
                QVERIFY2(
                    std::string(e.what()).find("LADDER_WORKER_RLIMIT_AS") != std::string::npos, e.what());
            }
        }
    }

    // Two runs of one spec at once, each in its own process (`ladder sweep --parallel 2`), train exactly
    // as the same spec alone (`ladder train`): the same loss at every step, and each peak is the solo peak
    // (within 1%): LibTorch's seed, thread count and the CPU memory meter are per process.
    void twoRunsAtOnceMatchOneAlone()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        std::ofstream(root + "/solo.json") << spec(backbone, task, "solo").dump(2);
        const auto soloStore = QString::fromStdString(root + "/solo.sqlite");
        auto r = test::runCli(
            { "train", "--config", QString::fromStdString(root + "/solo.json"), "--store", soloStore });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());

        nlohmann::json sweep { { "base", spec(backbone, task, "twin") },
            { "grid", { { "name", { "a", "b" } } } } };
        std::ofstream(root + "/sweep.json") << sweep.dump(2);
        const auto pairStore = QString::fromStdString(root + "/pair.sqlite");
        r = test::runCli({ "sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store",
            pairStore, "--parallel", "2", "--json" });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        const auto printed = nlohmann::json::parse(r.out);
        QCOMPARE(printed.at("runs").size(), std::size_t(2));
        QCOMPARE(printed.at("runs")[0].at("status").get<std::string>(), std::string("finished"));
        QVERIFY(printed.at("skipped").empty());
        // Again: both specs finished before, nothing is trained.
        const auto again = test::runCli({ "sweep", "--config", QString::fromStdString(root + "/sweep.json"),
            "--store", pairStore, "--parallel", "2", "--json" });
        QVERIFY2(again.exitCode == 0, (again.out + again.err).c_str());
        QCOMPARE(nlohmann::json::parse(again.out).at("skipped").size(), std::size_t(2));
        QVERIFY(nlohmann::json::parse(again.out).at("runs").empty());

        ResultsStore solo, pair;
        std::string error;
        QVERIFY2(solo.open(soloStore.toStdString(), &error), error.c_str());
        QVERIFY2(pair.open(pairStore.toStdString(), &error), error.c_str());
        RunRecord soloRun, a, b;
        QVERIFY(solo.getRun(1, &soloRun, &error));
        QVERIFY(pair.getRun(1, &a, &error));
        QVERIFY(pair.getRun(2, &b, &error));
        // They ran at once: each started before the other finished.
        QVERIFY2(a.startedAt <= b.finishedAt && b.startedAt <= a.finishedAt,
            (a.startedAt + " " + a.finishedAt + " / " + b.startedAt + " " + b.finishedAt).c_str());
        // The run's throughput (tokens over the steps' time) is a weighted mean of its steps' figures.
        {
            std::vector<MetricPoint> points;
            QVERIFY(solo.getMetrics(1, ResultsStore::kAllSteps, &points, &error));
            double low = 1e300, high = 0;
            for (const auto& p : points) {
                low = std::min(low, p.tokensPerSecond.value_or(1e300));
                high = std::max(high, p.tokensPerSecond.value_or(0));
            }
            const double run = soloRun.figures.tokensPerSecond.value_or(0);
            QVERIFY2(run >= low && run <= high,
                qPrintable(QStringLiteral("%1 not in [%2, %3]").arg(run).arg(low).arg(high)));
        }
        const auto soloLosses = lossesOf(solo, 1);
        QCOMPARE(soloLosses.size(), std::size_t(10));
        const double soloPeak = static_cast<double>(*soloRun.figures.peakAllocatedBytes);
        for (const auto* run : { &a, &b }) {
            QCOMPARE(QString(toString(run->status)), QStringLiteral("finished"));
            const auto losses = lossesOf(pair, run->id);
            QCOMPARE(losses, soloLosses);
            const double peak = static_cast<double>(*run->figures.peakAllocatedBytes);
            qInfo("run %lld: peak %.0f bytes, solo %.0f bytes (%+.3f%%); loss at step 10 %.6f, solo %.6f",
                static_cast<long long>(run->id), peak, soloPeak, 100.0 * (peak / soloPeak - 1.0),
                losses.back(), soloLosses.back());
            QVERIFY(std::abs(peak / soloPeak - 1.0) <= 0.01);
        }
    }

    // A worker killed by SIGSEGV mid-step leaves its run failed with the signal and its last lines;
    // the supervisor (a thread here, as in the window) goes on, and the next run finishes.
    void crashedWorkerFailsItsRunOnly()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const auto storePath = root + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(storePath, &error), error.c_str());
        std::vector<std::int64_t> ids;
        for (const char* name : { "crashes", "survives" }) {
            std::int64_t id = -1;
            QVERIFY2(
                store.createRun(
                    newRunFor(RunSpec::fromJson(spec(backbone, task, name)), RunState::Running), &id, &error),
                error.c_str());
            ids.push_back(id);
        }
        for (const auto id : ids) {
            RunWorkerLaunch launch;
            launch.program = ladder::test::cliPath();
            launch.storePath = storePath;
            launch.runId = id;
            launch.setEnv = { "LADDER_WORKER_FAULT=SIGSEGV step=3 run=" + std::to_string(ids[0]) };
            Recorder recorder;
            const auto result = superviseRunWorker(launch, recorder);
            RunRecord run;
            QVERIFY(store.getRun(id, &run, &error));
            QCOMPARE(run.status, result.state);
            if (id == ids[0]) {
                QCOMPARE(QString(toString(run.status)), QStringLiteral("failed"));
                QVERIFY2(run.errorMessage.find("was killed by signal 11 (SIGSEGV)") != std::string::npos,
                    run.errorMessage.c_str());
                qInfo("crashed run: %s", run.errorMessage.c_str());
                QCOMPARE(recorder.steps.size(), std::size_t(2)); // steps 1 and 2 reported, then the crash
                std::vector<LogLine> logs;
                QVERIFY(store.getLogs(id, 0, &logs, &error));
                QVERIFY(!logs.empty());
                QVERIFY2(logs.back().message.find("last lines of the worker") != std::string::npos,
                    logs.back().message.c_str());
            } else {
                QCOMPARE(QString(toString(run.status)), QStringLiteral("finished"));
                QCOMPARE(recorder.steps.size(), std::size_t(10));
                QCOMPARE(recorder.steps.back().loss, lossesOf(store, id).back());
            }
        }
    }

    // Cancel through the supervisor: the worker hears "cancel" on stdin and ends the run as cancelled
    // between steps, by itself (no signal).
    void cancelIsPolite()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        auto s = spec(backbone, task, "cancelled");
        s["training"]["max_steps"] = 100000;
        const auto storePath = root + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(storePath, &error), error.c_str());
        std::int64_t id = -1;
        QVERIFY(store.createRun(newRunFor(RunSpec::fromJson(s), RunState::Running), &id, &error));
        RunWorkerLaunch launch;
        launch.program = ladder::test::cliPath();
        launch.storePath = storePath;
        launch.runId = id;
        launch.politeSeconds = 60;
        struct CancelAtThree : Recorder {
            bool cancelRequested() override { return steps.size() >= 3; }
        } recorder;
        const auto result = superviseRunWorker(launch, recorder);
        QCOMPARE(QString(toString(result.state)), QStringLiteral("cancelled"));
        QCOMPARE(QString::fromStdString(result.exit), QStringLiteral("exited with status 130"));
        QVERIFY(recorder.steps.size() >= 3 && recorder.steps.size() < 100);
    }
};

LADDER_TEST_GUILESS_MAIN(TestRunProcess)
#include "test_run_process.moc"
