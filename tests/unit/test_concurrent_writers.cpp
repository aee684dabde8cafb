// Writers sharing one results store train each spec once: ResultsStore::claimSpec (a finished, queued or
// live running run holds its spec; failed, cancelled, interrupted and dead ones do not), then two real
// `ladder sweep` processes started at once on the same grid into one store (docs/RELIABILITY.md,
// "Concurrent writers").
#include <cstdio>
#include <fstream>
#include <map>

#include <sys/wait.h>
#include <unistd.h>

#include <QElapsedTimer>
#include <QProcess>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "train/StoreRecorder.h"

using namespace ladder;

namespace {

RunSpec specWithSeed(std::uint64_t seed)
{
    return RunSpec::fromJson({ { "backbone", "demo" }, { "task", { { "type", "demo" } } },
        { "method", { { "method", "lora" }, { "rank", 4 } } }, { "seed", seed } });
}

// The grid both sweeps run: LoRA on a tiny backbone folder and the fruit task, seeds 0..5, a few steps.
nlohmann::json sweepFile(const std::string& backbone, const std::string& task, int seeds)
{
    nlohmann::json base { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method", { { "method", "lora" }, { "rank", 4 } } },
        { "training",
            { { "max_steps", 4 }, { "batch_size", 8 }, { "learning_rate", 0.01 }, { "max_source_length", 16 },
                { "threads", 1 } } } };
    nlohmann::json list = nlohmann::json::array();
    for (int s = 0; s < seeds; ++s)
        list.push_back(s);
    return { { "base", base }, { "seeds", list } };
}

struct Finished {
    int code = -1;
    std::string out, err;
    double seconds = 0;
};

} // namespace

class TestConcurrentWriters : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // What holds a spec, and what does not.
    void claimSpecHoldsAgainstFinishedQueuedAndLiveRuns()
    {
        const std::string path = test::makeTempDir() + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(path, &error), error.c_str());
        const NewRun a = newRunFor(specWithSeed(0), RunState::Running);
        std::int64_t first = -1, id = -1;
        std::optional<RunRecord> holder;
        QVERIFY2(store.claimSpec(a, &first, &holder, &error), error.c_str());
        QVERIFY(first > 0);
        QVERIFY(!holder);
        RunRecord run;
        QVERIFY(store.getRun(first, &run));
        QCOMPARE(run.status, RunState::Running);
        QCOMPARE(run.specHash, runSpecHash(specWithSeed(0)));
        QCOMPARE(*run.ownerPid, static_cast<std::int64_t>(getpid()));

        // Running in a live process (this one): held.
        QVERIFY2(store.claimSpec(a, &id, &holder, &error), error.c_str());
        QCOMPARE(id, std::int64_t(-1));
        QVERIFY(holder);
        QCOMPARE(holder->id, first);
        QCOMPARE(holder->status, RunState::Running);

        // Failed, cancelled, interrupted: not held; each claim is a new run.
        std::vector<std::int64_t> again;
        for (const auto end : { RunState::Failed, RunState::Cancelled, RunState::Interrupted }) {
            const std::int64_t last = again.empty() ? first : again.back();
            QVERIFY(store.finishRun(last, end, {}, "ended"));
            QVERIFY2(store.claimSpec(a, &id, &holder, &error), error.c_str());
            QVERIFY2(id > last && !holder, toString(end));
            again.push_back(id);
        }
        // Finished: held by it, even beside a later failed run.
        QVERIFY(store.finishRun(again.back(), RunState::Finished, {}));
        QVERIFY2(store.claimSpec(a, &id, &holder, &error), error.c_str());
        QCOMPARE(id, std::int64_t(-1));
        QCOMPARE(holder->id, again.back());
        QCOMPARE(holder->status, RunState::Finished);

        // Queued (the workbench's queue): held.
        std::int64_t queued = -1;
        QVERIFY(store.createRun(newRunFor(specWithSeed(1), RunState::Queued), &queued));
        QVERIFY2(store.claimSpec(newRunFor(specWithSeed(1), RunState::Running), &id, &holder, &error),
            error.c_str());
        QCOMPARE(id, std::int64_t(-1));
        QCOMPARE(holder->id, queued);
        QCOMPARE(holder->status, RunState::Queued);

        // Running, but its process is gone: not held; the dead run is marked interrupted in the claim.
        std::int64_t dead = -1;
        QVERIFY(store.createRun(newRunFor(specWithSeed(2), RunState::Running), &dead));
        const pid_t child = fork();
        if (child == 0)
            _exit(0);
        waitpid(child, nullptr, 0);
        QCOMPARE(test::rawQuery(path,
                     "UPDATE runs SET owner_pid = " + std::to_string(child)
                         + " WHERE id = " + std::to_string(dead)),
            std::string());
        QVERIFY2(store.claimSpec(newRunFor(specWithSeed(2), RunState::Running), &id, &holder, &error),
            error.c_str());
        QVERIFY(id > dead && !holder);
        QVERIFY(store.getRun(dead, &run));
        QCOMPARE(run.status, RunState::Interrupted);
        QVERIFY2(run.errorMessage.find("pid " + std::to_string(child)) != std::string::npos,
            run.errorMessage.c_str());

        // A claim creates a running run only.
        QVERIFY(!store.claimSpec(newRunFor(specWithSeed(3), RunState::Queued), &id, &holder, &error));
        QVERIFY2(error.find("becomes a running run") != std::string::npos, error.c_str());
    }

    // Two sweeps of the same grid, started together on a store that does not exist yet: both exit 0,
    // every spec has exactly one finished run, nothing failed, nothing was locked, the file is sound.
    void twoSweepsOfOneGridTrainEachRunOnce()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const int kSpecs = 6;
        const auto sweepPath = root + "/sweep.json";
        std::ofstream(sweepPath) << sweepFile(backbone, task, kSpecs).dump(2);
        const std::string store = root + "/results.sqlite";

        QElapsedTimer timer;
        timer.start();
        // One sweep trains two runs at a time, the other one: three writers of runs, two claimers.
        QProcess a, b;
        a.start(QString::fromStdString(test::cliPath()),
            { "sweep", "--config", QString::fromStdString(sweepPath), "--store",
                QString::fromStdString(store), "--parallel", "2" });
        b.start(QString::fromStdString(test::cliPath()),
            { "sweep", "--config", QString::fromStdString(sweepPath), "--store",
                QString::fromStdString(store) });
        Finished results[2];
        QProcess* processes[2] = { &a, &b };
        for (int i = 0; i < 2; ++i) {
            QVERIFY(processes[i]->waitForFinished(240000));
            results[i].code
                = processes[i]->exitStatus() == QProcess::NormalExit ? processes[i]->exitCode() : -1;
            results[i].out = processes[i]->readAllStandardOutput().toStdString();
            results[i].err = processes[i]->readAllStandardError().toStdString();
        }
        const double seconds = static_cast<double>(timer.elapsed()) / 1000.0;
        for (const auto& r : results) {
            QVERIFY2(r.code == 0, (r.out + r.err).c_str());
            for (const auto* text : { &r.out, &r.err }) {
                QVERIFY2(text->find("database is locked") == std::string::npos, text->c_str());
                QVERIFY2(text->find("busy") == std::string::npos, text->c_str());
            }
        }

        ResultsStore s;
        std::string error;
        QVERIFY2(s.open(store, ResultsStore::OpenMode::ReadOnly, &error), error.c_str());
        std::string integrity;
        QVERIFY(s.integrityCheck(&integrity));
        QCOMPARE(integrity, std::string("ok"));
        std::vector<RunRecord> runs;
        QVERIFY(s.listRuns({}, &runs));
        std::map<std::string, int> finishedPerSpec;
        for (const auto& r : runs) {
            QVERIFY2(r.status == RunState::Finished,
                ("run " + std::to_string(r.id) + " is " + toString(r.status) + ": " + r.errorMessage)
                    .c_str());
            ++finishedPerSpec[r.specHash];
            std::int64_t points = 0;
            QVERIFY(s.countMetrics(r.id, &points));
            QCOMPARE(points, std::int64_t(4)); // every step's row, none lost
            std::vector<Evaluation> evaluations;
            QVERIFY(s.getEvaluations(r.id, &evaluations));
            QVERIFY(!evaluations.empty());
        }
        QCOMPARE(static_cast<int>(finishedPerSpec.size()), kSpecs);
        for (const auto& [hash, count] : finishedPerSpec)
            QVERIFY2(count == 1, hash.c_str());
        QCOMPARE(static_cast<int>(runs.size()), kSpecs);

        // Each sweep's summary: what it trained plus what it left to the other add up to the grid.
        int trained = 0, held = 0;
        int trainedBy[2] = { 0, 0 };
        for (int i = 0; i < 2; ++i) {
            const auto& r = results[i];
            const auto at = r.out.find("sweep: ");
            QVERIFY2(at != std::string::npos, r.out.c_str());
            int done = -1, skipped = -1, failed = -1;
            QCOMPARE(std::sscanf(r.out.c_str() + at, "sweep: %d finished, %d skipped, %d failed", &done,
                         &skipped, &failed),
                3);
            QCOMPARE(skipped, 0);
            QCOMPARE(failed, 0);
            int heldHere = 0;
            if (const auto h = r.out.find(" held by another writer", at); h != std::string::npos) {
                const auto comma = r.out.rfind(", ", h);
                heldHere = std::stoi(r.out.substr(comma + 2, h - comma - 2));
            }
            QCOMPARE(done + heldHere, kSpecs);
            trainedBy[i] = done;
            trained += done;
            held += heldHere;
        }
        QCOMPARE(trained, kSpecs);
        QCOMPARE(held, kSpecs);
        qInfo(
            "two sweeps of %d specs into one store: %d runs, %d trained by the --parallel 2 sweep and %d by "
            "the other, %.1f s",
            kSpecs, static_cast<int>(runs.size()), trainedBy[0], trainedBy[1], seconds);
        for (const auto& r : results)
            qInfo("%s", r.out.c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestConcurrentWriters)
#include "test_concurrent_writers.moc"
