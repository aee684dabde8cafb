// Data parallelism (docs/SCALING.md): the launch variables, the bucketed gradient all-reduce against the
// mean of the ranks' gradients, and the equivalence that proves the trainer: 2 ranks x batch 8 through the
// venv's real torchrun equal 1 rank x batch 16 (weights to 1e-5, stored losses, metrics); a rank that dies
// or a NaN on one rank ends the run on every rank, recorded as failed.
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <thread>

#include <signal.h>

#include <QElapsedTimer>
#include <QProcess>
#include <QTest>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "FruitTask.h"
#include "TestSupport.h"
#include "dist/DistributedEnv.h"
#include "dist/DistributedGroup.h"
#include "dist/GradientSync.h"
#include "model/Safetensors.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "train/StoreRecorder.h"

using namespace ladder;

namespace {

EnvLookup lookupIn(const std::map<std::string, std::string>& vars)
{
    return [vars](const char* name) -> const char* {
        const auto it = vars.find(name);
        return it == vars.end() ? nullptr : it->second.c_str();
    };
}

// The venv's torchrun (LADDER_TORCHRUN, from the build), or "" when it is not there.
std::string torchrunPath()
{
    const std::string path = LADDER_TORCHRUN;
    return std::ifstream(path).good() ? path : std::string();
}

// A process of `program` with `args` and extra environment; exit code, stdout, stderr, seconds.
struct Ran {
    int exitCode = -1;
    std::string out, err;
    double seconds = 0.0;
};
Ran runProgram(
    const std::string& program, const QStringList& args, const QStringList& env = {}, int timeoutMs = 240000)
{
    QProcess p;
    auto environment = QProcessEnvironment::systemEnvironment();
    for (const auto& kv : env)
        environment.insert(kv.section('=', 0, 0), kv.section('=', 1));
    p.setProcessEnvironment(environment);
    const auto t0 = std::chrono::steady_clock::now();
    p.start(QString::fromStdString(program), args);
    Ran r;
    if (!p.waitForFinished(timeoutMs)) {
        p.kill();
        p.waitForFinished();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.out = p.readAllStandardOutput().toStdString();
    r.err = p.readAllStandardError().toStdString();
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    return r;
}

constexpr int kSteps = 60;

// A tiny T5 with dropout 0 and the fruit task; returns the spec's path.
std::string writeSpec(const std::string& root, const nlohmann::json& method, int batch, int accumulation = 1)
{
    const auto backbone = root + "/tiny-t5";
    test::writeTinyBackbone(backbone, 1);
    const auto task = test::writeFruitTask(root);
    nlohmann::json spec { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method", method },
        { "training",
            { { "max_steps", kSteps }, { "batch_size", batch }, { "gradient_accumulation", accumulation },
                { "warmup_steps", 2 }, { "learning_rate", 0.05 }, { "max_source_length", 16 },
                { "eval_every_steps", 10 }, { "log_every_steps", 1 }, { "threads", 1 } } },
        { "seed", 3 } };
    const auto path = root + "/run-" + std::to_string(batch) + "x" + std::to_string(accumulation) + ".json";
    std::ofstream(path) << spec.dump(2);
    return path;
}

// The stored (step, loss) points of run 1 of a store.
std::vector<std::pair<std::int64_t, double>> losses(const std::string& store)
{
    std::vector<std::pair<std::int64_t, double>> out;
    std::istringstream rows(test::rawQuery(store,
        "SELECT group_concat(step || ' ' || printf('%.9e', loss), ';') FROM (SELECT step, loss FROM metrics "
        "ORDER BY step)"));
    for (std::string row; std::getline(rows, row, ';');) {
        const auto space = row.find(' ');
        if (space != std::string::npos)
            out.emplace_back(std::stoll(row.substr(0, space)), std::stod(row.substr(space + 1)));
    }
    return out;
}

double maxWeightDifference(const std::string& a, const std::string& b, std::size_t* count)
{
    const auto wa = readSafetensors(a), wb = readSafetensors(b);
    if (wa.size() != wb.size())
        throw std::runtime_error("checkpoints differ in their tensors");
    double worst = 0.0;
    for (const auto& [name, t] : wa)
        worst = std::max(worst, (t - wb.at(name)).abs().max().item<double>());
    *count = wa.size();
    return worst;
}

} // namespace

class TestDistributed : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    void torchrunVariables()
    {
        const auto env = distributedEnvFrom(lookupIn(
            { { "RANK", "1" }, { "WORLD_SIZE", "4" }, { "LOCAL_RANK", "1" }, { "MASTER_ADDR", "node7" },
                { "MASTER_PORT", "29511" }, { "TORCHELASTIC_USE_AGENT_STORE", "True" } }));
        QVERIFY(env.has_value());
        QCOMPARE(env->rank, 1);
        QCOMPARE(env->worldSize, 4);
        QCOMPARE(env->localRank, 1);
        QCOMPARE(QString::fromStdString(env->masterAddr), QString("node7"));
        QCOMPARE(env->masterPort, 29511);
        QVERIFY(env->agentStore);
        QCOMPARE(QString::fromStdString(env->launcher), QString("torchrun"));
        // World size 1 still joins a group (the GPU kit runs NCCL so); no variables, no group.
        QVERIFY(distributedEnvFrom(lookupIn({ { "RANK", "0" }, { "WORLD_SIZE", "1" } })).has_value());
        QVERIFY(!distributedEnvFrom(lookupIn({})).has_value());
        for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>> {
                 { "RANK", "4" }, { "RANK", "x" }, { "MASTER_PORT", "70000" }, { "WORLD_SIZE", "0" } }) {
            std::map<std::string, std::string> vars { { "RANK", "0" }, { "WORLD_SIZE", "4" } };
            vars[name] = value;
            try {
                distributedEnvFrom(lookupIn(vars));
                QFAIL(("accepted " + name + "=" + value).c_str());
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(name) != std::string::npos, e.what());
            }
        }
    }

    void slurmVariables()
    {
        QCOMPARE(QString::fromStdString(firstSlurmHost("gpu[03-05,07],cpu1")), QString("gpu03"));
        QCOMPARE(QString::fromStdString(firstSlurmHost("node1,node2")), QString("node1"));
        QCOMPARE(QString::fromStdString(firstSlurmHost("a[7,9]-ib")), QString("a7-ib"));
        const auto env = distributedEnvFrom(
            lookupIn({ { "SLURM_PROCID", "3" }, { "SLURM_NTASKS", "8" }, { "SLURM_LOCALID", "1" },
                { "SLURM_JOB_NODELIST", "gpu[12-13]" }, { "SLURM_JOB_ID", "123456" } }));
        QVERIFY(env.has_value());
        QCOMPARE(env->rank, 3);
        QCOMPARE(env->worldSize, 8);
        QCOMPARE(env->localRank, 1);
        QCOMPARE(QString::fromStdString(env->masterAddr), QString("gpu12"));
        QCOMPARE(env->masterPort, 20000 + 123456 % 20000);
        QCOMPARE(QString::fromStdString(env->launcher), QString("slurm"));
        // A one-task step (a job array's sweep task) is a plain run.
        QVERIFY(
            !distributedEnvFrom(lookupIn({ { "SLURM_PROCID", "0" }, { "SLURM_NTASKS", "1" } })).has_value());
        QVERIFY(collectiveTimeoutFrom(lookupIn({ { "LADDER_DIST_TIMEOUT", "2.5" } }), std::chrono::seconds(1))
            == std::chrono::milliseconds(2500));
        QVERIFY_THROWS_EXCEPTION(Error,
            collectiveTimeoutFrom(lookupIn({ { "LADDER_DIST_TIMEOUT", "-1" } }), std::chrono::seconds(1)));
    }

    // Two ranks on threads (Gloo over loopback, an in-process store): each gradient becomes the mean of
    // the ranks' own, computed here without any hook; a parameter only rank 0 uses gets half of its
    // gradient; one no rank uses keeps none; buckets of 64 bytes make several, started in order.
    void gradientSyncAveragesAcrossRanks()
    {
        InProcessRendezvous rendezvous;
        const int world = 2;
        std::vector<std::map<std::string, at::Tensor>> local(world), synced(world);
        std::vector<std::size_t> buckets(world), overlapped(world), overlappedFirst(world);
        std::vector<std::string> errors(world);
        auto rankMain = [&](int rank) {
            try {
                at::NoGradGuard off; // the leaves are made without a graph
                auto w = at::full({ 4, 3 }, 0.5).requires_grad_(true);
                auto v = at::linspace(-1, 1, 24).view({ 8, 3 }).requires_grad_(true);
                auto u = at::ones({ 3 }).requires_grad_(true);
                auto z = at::ones({ 2 }).requires_grad_(true);
                at::AutoGradMode on(true);
                const auto x = at::arange(12, at::kFloat).view({ 3, 4 }) * (rank + 1) / 10.0;
                const auto lossOf = [&] {
                    auto loss = (at::matmul(x, w).pow(2)).sum() + (at::matmul(v, w.t()).sin()).sum();
                    if (rank == 0)
                        loss = loss + (u * u).sum() * 3.0;
                    return loss;
                };
                // The rank's own gradients, no hook armed.
                auto group
                    = DistributedGroup::joinInProcess(rendezvous, rank, world, std::chrono::seconds(30));
                GradientSync sync(*group, { w, v, u, z }, GradientSync::Options { 64, 32 });
                lossOf().backward();
                local[rank] = { { "w", w.grad().clone() }, { "v", v.grad().clone() },
                    { "u", u.defined() && u.grad().defined() ? u.grad().clone() : at::Tensor() } };
                for (auto* p : { &w, &v, &u, &z })
                    p->mutable_grad() = at::Tensor();
                // Twice: the first step expects every parameter, so unused z (the first bucket) holds every
                // bucket back until finish(); the second expects what the first saw and overlaps.
                for (int step = 0; step < 2; ++step) {
                    for (auto* p : { &w, &v, &u, &z })
                        p->mutable_grad() = at::Tensor();
                    sync.arm();
                    lossOf().backward();
                    sync.finish();
                    if (step == 0)
                        overlappedFirst[rank] = sync.overlappedBuckets();
                }
                synced[rank] = { { "w", w.grad() }, { "v", v.grad() }, { "u", u.grad() }, { "z", z.grad() } };
                buckets[rank] = sync.bucketCount();
                overlapped[rank] = sync.overlappedBuckets();
                group->shutdown();
            } catch (const std::exception& e) {
                errors[rank] = e.what();
            }
        };
        std::thread t0(rankMain, 0), t1(rankMain, 1);
        t0.join();
        t1.join();
        QVERIFY2(errors[0].empty() && errors[1].empty(), (errors[0] + " | " + errors[1]).c_str());
        QVERIFY(buckets[0] >= 3);
        QCOMPARE(overlappedFirst[0], std::size_t(0));
        QVERIFY2(overlapped[0] >= 2, std::to_string(overlapped[0]).c_str());
        for (int r = 0; r < world; ++r) {
            for (const char* name : { "w", "v" }) {
                const auto mean = (local[0].at(name) + local[1].at(name)) / 2;
                QVERIFY2(at::allclose(synced[r].at(name), mean, 1e-6, 1e-6), name);
            }
            QVERIFY(at::allclose(synced[r].at("u"), local[0].at("u") / 2, 1e-6, 1e-6));
            QVERIFY2(!synced[r].at("z").defined(), "a parameter no rank used got a gradient");
        }
        QVERIFY(!local[1].at("u").defined());
    }

    // A gradient that changes after its bucket left (two backward passes in one armed step): the ranks
    // agree the step is late and reduce it again from the final gradients.
    void gradientSyncRedoesALateStep()
    {
        InProcessRendezvous rendezvous;
        std::vector<at::Tensor> result(2);
        std::vector<int> late(2, 0);
        std::vector<std::string> errors(2);
        auto rankMain = [&](int rank) {
            try {
                at::Tensor w;
                {
                    at::NoGradGuard off;
                    w = at::full({ 5 }, 1.0).requires_grad_(true);
                }
                auto group = DistributedGroup::joinInProcess(rendezvous, rank, 2, std::chrono::seconds(30));
                GradientSync sync(*group, { w });
                sync.arm();
                (w * (rank + 1)).sum().backward();
                (w * w * (rank + 1)).sum().backward(); // accumulates again: 3 (rank + 1) per element
                sync.finish();
                result[rank] = w.grad().clone();
                late[rank] = sync.lastStepLate() ? 1 : 0;
                group->shutdown();
            } catch (const std::exception& e) {
                errors[rank] = e.what();
            }
        };
        std::thread t0(rankMain, 0), t1(rankMain, 1);
        t0.join();
        t1.join();
        QVERIFY2(errors[0].empty() && errors[1].empty(), (errors[0] + " | " + errors[1]).c_str());
        for (int r = 0; r < 2; ++r) {
            QCOMPARE(late[r], 1);
            QVERIFY(at::allclose(result[r], at::full({ 5 }, (3.0 + 6.0) / 2)));
        }
    }

    // The proof: through the venv's real torchrun, 2 ranks sharing each global batch of 16 train LST to
    // the same weights, stored losses and metrics as 1 rank with batches of 16. Then `--nproc 2` with
    // gradient accumulation and Adapters, against the single-process run of the same spec.
    void twoRanksEqualOneRank_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<int>("accumulation");
        QTest::addColumn<bool>("torchrun");
        QTest::newRow("LST, torchrun") << R"({"method": "ladder", "r": 4})" << 1 << true;
        QTest::newRow("adapter, --nproc, accumulation 2")
            << R"({"method": "adapter", "hidden": 8})" << 2 << false;
    }
    void twoRanksEqualOneRank()
    {
        QFETCH(QString, method);
        QFETCH(int, accumulation);
        QFETCH(bool, torchrun);
        const auto run = torchrun ? torchrunPath() : std::string("ladder");
        if (run.empty()) {
            test::noteSkippedForMissingProgram(
                std::string("no torchrun at ") + LADDER_TORCHRUN + " (the venv of packaging/setup.sh)");
            QSKIP("torchrun is missing");
        }
        const auto root = test::makeTempDir();
        const auto spec
            = writeSpec(root, nlohmann::json::parse(method.toStdString()), 16 / accumulation, accumulation);
        const auto one = root + "/one.sqlite", two = root + "/two.sqlite";
        const auto single = runProgram(test::cliPath(),
            { "train", "--config", QString::fromStdString(spec), "--store", QString::fromStdString(one) });
        QVERIFY2(single.exitCode == 0, single.err.c_str());
        Ran ranks;
        if (torchrun)
            ranks = runProgram(run,
                { "--nproc-per-node", "2", "--no-python", QString::fromStdString(test::cliPath()), "train",
                    "--config", QString::fromStdString(spec), "--store", QString::fromStdString(two) },
                { "OMP_NUM_THREADS=1" });
        else
            ranks = runProgram(test::cliPath(),
                { "train", "--nproc", "2", "--config", QString::fromStdString(spec), "--store",
                    QString::fromStdString(two) });
        QVERIFY2(ranks.exitCode == 0, (ranks.out + ranks.err).c_str());
        QVERIFY2(ranks.err.find("gloo, rank 0 of 2") != std::string::npos, ranks.err.c_str());
        std::size_t tensors = 0;
        const auto worst = maxWeightDifference(one + ".files/checkpoints/run-1.safetensors",
            two + ".files/checkpoints/run-1.safetensors", &tensors);
        const auto a = losses(one), b = losses(two);
        QCOMPARE(a.size(), std::size_t(kSteps));
        QCOMPARE(b.size(), a.size());
        double worstLoss = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            QCOMPARE(b[i].first, a[i].first);
            worstLoss = std::max(worstLoss, std::abs(a[i].second - b[i].second) / std::abs(a[i].second));
        }
        const auto evalQuery
            = "SELECT group_concat(step || ' ' || split || ' ' || printf('%.6f', main_metric), "
              "'; ') FROM (SELECT * FROM evaluations ORDER BY id)";
        const auto evalsOne = test::rawQuery(one, evalQuery), evalsTwo = test::rawQuery(two, evalQuery);
        qInfo("%s: %zu tensors, max |weight difference| %.3g after %d steps; max relative loss difference "
              "%.3g; evaluations (step split metric) one process: %s; two ranks: %s",
            method.toStdString().c_str(), tensors, worst, kSteps, worstLoss, evalsOne.c_str(),
            evalsTwo.c_str());
        QVERIFY2(worst <= 1e-5, std::to_string(worst).c_str());
        QVERIFY2(worstLoss <= 1e-5, std::to_string(worstLoss).c_str());
        QCOMPARE(QString::fromStdString(evalsTwo), QString::fromStdString(evalsOne));
        // What was generated, example by example (the sharded evaluation gathered in split order).
        const auto predictionsQuery
            = "SELECT group_concat(predictions_json, ';') FROM (SELECT * FROM evaluations "
              "ORDER BY id)";
        const auto predictionsOne = test::rawQuery(one, predictionsQuery);
        QVERIFY(predictionsOne.size() > 100);
        QVERIFY(test::rawQuery(two, predictionsQuery) == predictionsOne);
        QVERIFY(
            evalsOne.find("validation") != std::string::npos && evalsOne.find("test") != std::string::npos);
        // Only rank 0 wrote: one run, one checkpoint.
        QCOMPARE(QString::fromStdString(test::rawQuery(two, "SELECT count(*), status FROM runs")),
            QString("1|finished"));
        QVERIFY(test::rawQuery(two, "SELECT message FROM logs WHERE message LIKE 'data parallel:%'")
                    .find("gradients all-reduced")
            != std::string::npos);
    }

    // The workbench's "GPUs per run" (training.processes 2): the queue's `ladder worker` for the run starts
    // its two ranks itself; rank 0 sends the events on the worker's stdout and records the run, which ends
    // as the same run trained by `ladder train --nproc 2` would.
    void workerStartsTheRanksOfItsSpec()
    {
        const auto root = test::makeTempDir();
        const auto specPath
            = writeSpec(root, { { "method", "ladder" }, { "r", 4 }, { "init", "random" } }, 16);
        auto json = nlohmann::json::parse(std::ifstream(specPath));
        json["training"]["processes"] = 2;
        json["training"]["max_steps"] = 6;
        const auto spec = RunSpec::fromJson(json, "spec");
        QCOMPARE(spec.toJson().at("training").at("processes").get<int>(), 2);
        json["training"]["processes"] = 1; // not written: single-process specs keep their hashes
        QVERIFY(!RunSpec::fromJson(json, "spec").toJson().at("training").contains("processes"));
        const auto storePath = root + "/queue.sqlite";
        std::int64_t id = 0;
        {
            ResultsStore store;
            std::string error;
            QVERIFY2(store.open(storePath, &error), error.c_str());
            QVERIFY2(store.createRun(newRunFor(spec, RunState::Running), &id, &error), error.c_str());
        }
        const auto r = runProgram(test::cliPath(),
            { "worker", "--store", QString::fromStdString(storePath), "--run", QString::number(id), "--nproc",
                "2" });
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.err.find("starting 2 ranks") != std::string::npos, r.err.c_str());
        QVERIFY2(r.out.find(R"("event":"end")") != std::string::npos, r.out.c_str());
        QVERIFY2(r.out.find(R"("step":6)") != std::string::npos, r.out.c_str());
        QCOMPARE(QString::fromStdString(test::rawQuery(storePath, "SELECT status FROM runs")),
            QString("finished"));
        QVERIFY(test::rawQuery(storePath, "SELECT message FROM logs WHERE message LIKE 'data parallel:%'")
                    .find("gloo, rank 0 of 2")
            != std::string::npos);
    }

    // A rank that dies mid-run (LADDER_DIST_FAULT exit) ends the other with a clear error well within the
    // collective timeout, and the run is recorded failed, not left running: by rank 0 when rank 1 died, by
    // the launcher when rank 0 did.
    void aDeadRankFailsTheRun_data()
    {
        QTest::addColumn<int>("rank");
        QTest::addColumn<QString>("recorded");
        QTest::newRow("rank 1 dies") << 1
                                     << "failed|data-parallel run stopped: another rank stopped answering";
        QTest::newRow("rank 0 dies") << 0 << "failed|data-parallel run stopped: rank 0 exited with 3";
    }
    void aDeadRankFailsTheRun()
    {
        QFETCH(int, rank);
        QFETCH(QString, recorded);
        const auto root = test::makeTempDir();
        const auto spec = writeSpec(root, { { "method", "lora" }, { "rank", 4 } }, 16);
        const auto store = root + "/dead.sqlite";
        const auto r = runProgram(test::cliPath(),
            { "train", "--nproc", "2", "--dist-timeout", "60", "--config", QString::fromStdString(spec),
                "--store", QString::fromStdString(store) },
            { QString("LADDER_DIST_FAULT=exit@3 rank=%1").arg(rank) });
        qInfo("exit %d after %.1f s; stderr tail: %s", r.exitCode, r.seconds,
            r.err.substr(r.err.size() > 600 ? r.err.size() - 600 : 0).c_str());
        QVERIFY(r.exitCode != 0);
        QVERIFY2(r.seconds < 60.0, std::to_string(r.seconds).c_str());
        QVERIFY2(r.err.find("rank " + std::to_string(rank) + " exited with 3") != std::string::npos,
            r.err.c_str());
        const auto status = test::rawQuery(store, "SELECT status, error_message FROM runs");
        QVERIFY2(status.rfind(recorded.toStdString(), 0) == 0, status.c_str());
    }

    // Ctrl+C on `ladder train --nproc 2`: the launcher passes it on, the ranks agree and the run ends
    // cancelled (exit 130) on every rank.
    void ctrlCCancelsEveryRank()
    {
        const auto root = test::makeTempDir();
        const auto specPath = writeSpec(root, { { "method", "lora" }, { "rank", 4 } }, 16);
        auto json = nlohmann::json::parse(std::ifstream(specPath));
        json["training"]["max_steps"] = 5000;
        std::ofstream(specPath) << json.dump();
        const auto store = root + "/cancel.sqlite";
        QProcess p;
        p.start(QString::fromStdString(test::cliPath()),
            { "train", "--nproc", "2", "--config", QString::fromStdString(specPath), "--store",
                QString::fromStdString(store) });
        QVERIFY(p.waitForStarted());
        std::string err;
        QElapsedTimer t;
        t.start();
        while (err.find(" step ") == std::string::npos && t.elapsed() < 120000
            && p.state() == QProcess::Running) {
            p.waitForReadyRead(200);
            err += p.readAllStandardError().toStdString();
        }
        QVERIFY2(err.find(" step ") != std::string::npos, err.c_str());
        ::kill(static_cast<pid_t>(p.processId()), SIGINT);
        QVERIFY(p.waitForFinished(60000));
        err += p.readAllStandardError().toStdString();
        QCOMPARE(p.exitCode(), 130);
        const auto status = test::rawQuery(store, "SELECT status, error_message FROM runs");
        QVERIFY2(status.rfind("cancelled|cancelled at step", 0) == 0, (status + "\n" + err).c_str());
    }

    // An out-of-memory error on rank 1 alone (LibTorch's own error type, injected): rank 1 still joins the
    // step's agreement, and every rank fails with its message.
    void anOutOfMemoryOnOneRankFailsEveryRank()
    {
        const auto root = test::makeTempDir();
        const auto spec = writeSpec(root, { { "method", "lora" }, { "rank", 4 } }, 16);
        const auto store = root + "/oom.sqlite";
        const auto r = runProgram(test::cliPath(),
            { "train", "--nproc", "2", "--config", QString::fromStdString(spec), "--store",
                QString::fromStdString(store) },
            { "LADDER_DIST_FAULT=oom@5 rank=1" });
        QCOMPARE(r.exitCode, 1);
        const auto status = test::rawQuery(store, "SELECT status, error_message FROM runs");
        qInfo("%s", status.c_str());
        QVERIFY2(
            status.rfind("failed|data-parallel run stopped: rank 1: out of memory (peak allocated ", 0) == 0,
            status.c_str());
        QVERIFY2(status.find("tried to allocate 2.00 GiB") != std::string::npos, status.c_str());
        QCOMPARE(
            QString::fromStdString(test::rawQuery(store, "SELECT max(step) FROM metrics")), QString("4"));
    }

    // Rank 0's stored training peak against the estimate it logs for a rank (its share of the batch and
    // GradientSync's buckets; docs/SCALING.md, "Memory"): within 1%, as the single-process estimate is.
    // Sources cut at 8 tokens make every batch the longest one the estimate prices.
    void rankPeakMatchesItsEstimate_data()
    {
        QTest::addColumn<QString>("method");
        QTest::newRow("full") << R"({"method": "full"})";
        QTest::newRow("LST") << R"({"method": "ladder", "r": 4, "init": "random"})";
        QTest::newRow("LoRA") << R"({"method": "lora", "rank": 4})";
    }
    void rankPeakMatchesItsEstimate()
    {
        QFETCH(QString, method);
        const auto root = test::makeTempDir();
        const auto specPath = writeSpec(root, nlohmann::json::parse(method.toStdString()), 16);
        auto json = nlohmann::json::parse(std::ifstream(specPath));
        json["training"]["max_steps"] = 4;
        json["training"]["max_source_length"] = 8;
        std::ofstream(specPath) << json.dump();
        const auto store = root + "/peak.sqlite";
        const auto r = runProgram(test::cliPath(),
            { "train", "--nproc", "2", "--config", QString::fromStdString(specPath), "--store",
                QString::fromStdString(store) });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const double measured
            = std::stod(test::rawQuery(store, "SELECT peak_allocated_bytes FROM runs")) / 1e6;
        const auto line = test::rawQuery(
            store, "SELECT message FROM logs WHERE message LIKE 'memory estimate of a training%'");
        const auto colon = line.rfind(": ");
        QVERIFY2(colon != std::string::npos, line.c_str());
        const double estimated = std::stod(line.substr(colon + 2));
        qInfo("%s, rank 0 of 2 (batch 8 of 16): measured %.2f MB, estimated %.1f MB (%+.2f%%)",
            method.toStdString().c_str(), measured, estimated, 100.0 * (estimated - measured) / measured);
        QVERIFY2(std::abs(estimated - measured) <= 0.01 * measured, line.c_str());
    }

    // A NaN loss on rank 1 alone: every rank learns it at the step's agreement and the run fails with it.
    void aNanOnOneRankFailsEveryRank()
    {
        const auto root = test::makeTempDir();
        const auto spec = writeSpec(root, { { "method", "lora" }, { "rank", 4 } }, 16);
        const auto store = root + "/nan.sqlite";
        const auto r = runProgram(test::cliPath(),
            { "train", "--nproc", "2", "--config", QString::fromStdString(spec), "--store",
                QString::fromStdString(store) },
            { "LADDER_DIST_FAULT=nan@4 rank=1" });
        QCOMPARE(r.exitCode, 1);
        const auto status = test::rawQuery(store, "SELECT status, error_message FROM runs");
        QVERIFY2(status.rfind("failed|loss became NaN at step 4", 0) == 0, status.c_str());
        QVERIFY2(r.err.find("[rank 1] error: loss became NaN at step 4") != std::string::npos, r.err.c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestDistributed)
#include "test_distributed.moc"
