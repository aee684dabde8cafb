#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// Which figure of a run the compare plot puts on its y axis.
enum class CompareMetric { BestValidation, Test };

// One point of the accuracy-versus-memory plot: one run, or the mean of runs that differ only by seed.
struct ComparePoint {
    std::string groupKey; // the run spec without "seed", "name" and "store" (canonical JSON)
    std::string method;
    std::string task;
    std::string backbone;
    std::string options; // RunsTableModel::optionsSummary() of the first run
    std::string metricName; // e.g. "accuracy"; empty when the runs do not say
    std::vector<std::int64_t> runIds; // ascending
    std::vector<std::int64_t> seeds; // of those runs, same order
    std::vector<std::string> names; // of those runs, same order
    // false for a run that has not finished (running, cancelled, failed, interrupted) but already has a
    // peak memory and the metric: drawn hollow, one point per run, never averaged and never on the front.
    bool finished = true;
    std::string state = "finished"; // the run's state (toString(RunState))
    double memoryMB = 0; // mean peak allocated training memory, MB = 10^6 bytes
    double memoryStdMB = 0; // sample standard deviation (n - 1) over the runs; 0 for one run
    double metric = 0; // mean of the chosen metric
    double metricStd = 0; // sample standard deviation (n - 1); 0 for one run

    std::size_t count() const { return runIds.size(); }
};

// Turns runs into compare points and finds the Pareto front. Pure functions of their inputs (no Qt
// widgets, no store), so they are tested against hand computations.
class CompareSeries {
public:
    // The grouping key of a run: its spec JSON without "seed", "name" and "store", dumped with sorted
    // keys; runs with equal keys differ only by seed. A spec that is not a JSON object gets a key of its
    // own ("run:<id>").
    static std::string groupKey(const RunRecord& run);

    // Points for the runs that have a peak memory and the chosen metric, ordered by method, then memory:
    // one per group of finished runs, and one per unfinished run (finished = false). Runs that lack either
    // figure are left out: absent() says why.
    static std::vector<ComparePoint> build(const std::vector<RunRecord>& runs, CompareMetric metric);

    // The runs build() leaves out, counted by reason, in a fixed order: "queued", "running", "cancelled",
    // "failed", "interrupted" (each: no peak memory or no metric yet), then "finished without <metric>"
    // (a finished run with no figure for the chosen metric, e.g. no test split). Reasons with no run are
    // not listed.
    static std::vector<std::pair<std::string, int>> absent(
        const std::vector<RunRecord>& runs, CompareMetric metric);

    // Indices into `points` of the Pareto front for "less memory, higher metric" among the finished points:
    // the points no other finished point dominates (memory <= and metric >= and one of them strictly).
    // Sorted by memory, then by metric descending.
    static std::vector<std::size_t> paretoFront(const std::vector<ComparePoint>& points);

    // Mean and sample standard deviation (n - 1; 0 when n < 2).
    static void meanAndStd(const std::vector<double>& values, double* mean, double* stdDev);
};

} // namespace ladder::widgets
