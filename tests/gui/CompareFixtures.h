#pragma once

// A small results store with known figures for the compare-view tests (test_runstablemodel,
// test_compareplot, test_rundetailsview, test_comparetab). Header-only: each test executable includes it.
//
// Runs (all finished unless said otherwise; backbone "demo", task "demo-supersense" unless said otherwise):
//   id  method   options     seed  peak MB  best val  test
//   1   ladder   r=8         0     100      0.80      0.78
//   2   ladder   r=8         1     102      0.84      0.80
//   3   ladder   r=8         2     104      0.82      0.79     (1-3: one group, mean 102 MB, 0.82 +- 0.02)
//   4   ladder   r=16        0      80      0.75      0.74
//   5   adapter  hidden=48   0     300      0.85      0.83
//   6   lora     rank=32     0     310      0.83      0.82
//   7   full                 0     500      0.86      0.85
//   8   bitfit               0     250      0.70      0.69
//   9   prompt   prompts=100 0     failed ("out of memory"), no figures
//   10  ladder   r=8         0      90      0.60      0.58     task rte, backbone /models/t5-small
//   11  lora     rank=8      0     running, no figures
// Pareto front of runs 1-8 (less memory, higher best validation): r=16 (80), r=8 group (102), adapter
// (300), full (500); bitfit is dominated by the r=8 group and LoRA by the adapter.

#include <cstdint>
#include <string>
#include <vector>

#include <QtTest>

#include "store/ResultsStore.h"
#include "train/RunSpec.h"

namespace ladder::test {

struct FixtureRun {
    std::string method;
    std::int64_t option; // r, hidden, rank or prompts (ignored for full and bitfit)
    std::uint64_t seed;
    double peakMB; // < 0: no figures
    double bestValidation;
    double test;
    RunState status = RunState::Finished;
    std::string task = "supersense"; // demo task, or "RTE" for a GLUE folder
    std::string backbone = "demo";
};

inline RunSpec fixtureSpec(const FixtureRun& f)
{
    RunSpec spec;
    spec.backbone = f.backbone;
    if (f.task == "RTE") {
        spec.task.type = "glue";
        spec.task.path = "/data/glue/RTE";
        spec.task.name = "auto";
    } else {
        spec.task.type = "demo";
        spec.task.name = f.task;
    }
    spec.method = MethodOptions::defaults(f.method);
    if (f.method == "ladder")
        spec.method.r = f.option;
    else if (f.method == "adapter")
        spec.method.hidden = f.option;
    else if (f.method == "lora")
        spec.method.rank = f.option;
    else if (f.method == "prompt")
        spec.method.prompts = f.option;
    spec.seed = f.seed;
    spec.training.maxSteps = 20;
    return spec;
}

inline NewRun fixtureNewRun(const FixtureRun& f)
{
    const RunSpec spec = fixtureSpec(f);
    NewRun run;
    run.name = spec.displayName();
    run.specJson = spec.toJson().dump();
    run.method = spec.method.method;
    run.methodOptionsJson = spec.method.toJson().dump();
    run.backbone = spec.backbone;
    run.task = f.task == "RTE" ? "rte" : "demo-" + f.task;
    run.seed = static_cast<std::int64_t>(spec.seed);
    run.status = RunState::Running;
    run.totalSteps = 20;
    return run;
}

inline FinalFigures fixtureFigures(const FixtureRun& f)
{
    FinalFigures figures;
    figures.bestValidationMetric = f.bestValidation;
    figures.testMetric = f.test;
    figures.bestStep = 20;
    figures.lastMetric = f.bestValidation - 0.01;
    figures.mainMetricName = "accuracy";
    figures.peakAllocatedBytes = static_cast<std::int64_t>(f.peakMB * 1e6);
    figures.peakReservedBytes = static_cast<std::int64_t>(f.peakMB * 1e6) + 1000000;
    figures.weightBytes = static_cast<std::int64_t>(f.peakMB * 0.4e6);
    figures.gradientBytes = static_cast<std::int64_t>(f.peakMB * 0.05e6);
    figures.optimizerBytes = static_cast<std::int64_t>(f.peakMB * 0.1e6);
    figures.trainableParams = 1000;
    figures.backboneParams = 100000;
    figures.totalParams = 101000;
    figures.wallSeconds = 75.0;
    figures.tokensPerSecond = 1234.5;
    return figures;
}

inline std::vector<FixtureRun> fixtureRuns()
{
    std::vector<FixtureRun> runs = {
        { "ladder", 8, 0, 100, 0.80, 0.78 },
        { "ladder", 8, 1, 102, 0.84, 0.80 },
        { "ladder", 8, 2, 104, 0.82, 0.79 },
        { "ladder", 16, 0, 80, 0.75, 0.74 },
        { "adapter", 48, 0, 300, 0.85, 0.83 },
        { "lora", 32, 0, 310, 0.83, 0.82 },
        { "full", 0, 0, 500, 0.86, 0.85 },
        { "bitfit", 0, 0, 250, 0.70, 0.69 },
        { "prompt", 100, 0, -1, 0, 0, RunState::Failed },
        { "ladder", 8, 0, 90, 0.60, 0.58, RunState::Finished, "RTE", "/models/t5-small" },
        { "lora", 8, 0, -1, 0, 0, RunState::Running },
    };
    return runs;
}

// Adds one fixture run (with metrics, an evaluation and two log lines); returns its id or -1 (QVERIFY
// the result).
inline std::int64_t addFixtureRun(ResultsStore& store, const FixtureRun& f)
{
    std::int64_t id = -1;
    std::string error;
    if (!store.createRun(fixtureNewRun(f), &id, &error)) {
        qWarning("createRun: %s", error.c_str());
        return -1;
    }
    std::vector<MetricPoint> points;
    for (int step = 1; step <= 3; ++step) {
        MetricPoint p;
        p.step = step;
        p.loss = 2.0 / step;
        p.learningRate = 1e-3;
        points.push_back(p);
    }
    bool ok = store.appendMetrics(id, points, &error)
        && store.addLog(id, LogLevel::Info, "training started", &error)
        && store.addLog(id, LogLevel::Info, "step 20: loss 0.5", &error);
    if (ok && f.peakMB >= 0) {
        Evaluation e;
        e.runId = id;
        e.step = 20;
        e.split = "validation";
        e.metrics = { { "accuracy", f.bestValidation } };
        e.mainMetricName = "accuracy";
        e.mainMetric = f.bestValidation;
        ok = store.addEvaluation(e, nullptr, &error);
    }
    if (ok && f.status == RunState::Finished)
        ok = store.finishRun(id, RunState::Finished, fixtureFigures(f), {}, &error);
    else if (ok && f.status == RunState::Failed)
        ok = store.finishRun(id, RunState::Failed, FinalFigures {}, "out of memory", &error);
    if (!ok) {
        qWarning("fixture run: %s", error.c_str());
        return -1;
    }
    return id;
}

// Writes every fixture run into a new store at `path`; false on any failure.
inline bool writeFixtureStore(const std::string& path)
{
    ResultsStore store;
    std::string error;
    if (!store.open(path, &error)) {
        qWarning("open: %s", error.c_str());
        return false;
    }
    for (const auto& run : fixtureRuns())
        if (addFixtureRun(store, run) < 0)
            return false;
    return true;
}

// The fixture runs as listRuns() returns them.
inline std::vector<RunRecord> readRuns(const std::string& path)
{
    ResultsStore store;
    std::vector<RunRecord> runs;
    if (!store.open(path) || !store.listRuns(RunFilter {}, &runs))
        qWarning("reading %s failed", path.c_str());
    return runs;
}

} // namespace ladder::test
