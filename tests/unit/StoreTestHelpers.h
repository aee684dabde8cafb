#pragma once

// Helpers of the results-store tests test_store, test_store_runs, test_store_metrics and
// test_store_concurrency: a store path in a fresh folder, a sample run to create, and metric points.
// Header-only: each of those test executables includes it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "store/ResultsStore.h"

namespace ladder::test::store {

inline std::string freshStorePath(const std::string& name = "results.sqlite")
{
    return ladder::test::makeTempDir() + "/" + name;
}

inline NewRun sampleRun(
    const std::string& name = "lst-r8", RunState status = RunState::Queued, const std::string& device = "cpu")
{
    NewRun r;
    r.name = name;
    r.specJson = nlohmann::json {
        { "method", { { "name", "lst" }, { "r", 8 } } }, { "task", "rte" }, { "seed", 1 }, { "name", name }
    }.dump();
    r.method = "lst";
    r.methodOptionsJson = R"({"r":8,"keep":[1,3,5]})";
    r.backbone = "demo";
    r.task = "rte";
    r.seed = 1;
    r.device = device;
    r.status = status;
    r.totalSteps = 500;
    return r;
}

// Points for steps firstStep .. firstStep + count - 1; allocatedBytes is 1000 + step.
inline std::vector<MetricPoint> makePoints(std::int64_t firstStep, std::int64_t count)
{
    std::vector<MetricPoint> points;
    points.reserve(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
        MetricPoint p;
        p.step = firstStep + i;
        p.epoch = static_cast<double>(p.step) / 1000.0;
        p.loss = 1.0 / static_cast<double>(p.step + 1);
        p.learningRate = 1e-3;
        p.allocatedBytes = 1000 + p.step;
        p.peakAllocatedBytes = 2000 + p.step;
        p.reservedBytes = 4096;
        p.tokensPerSecond = 123.5;
        p.elapsedSeconds = 0.01 * static_cast<double>(p.step);
        points.push_back(std::move(p));
    }
    return points;
}

} // namespace ladder::test::store
