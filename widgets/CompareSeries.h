#pragma once

#include <cstdint>
#include <string>
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

    // Points for the finished runs that have a peak memory and the chosen metric, one per group, ordered by
    // method, then memory. Runs that are not finished or lack either figure are left out.
    static std::vector<ComparePoint> build(const std::vector<RunRecord>& runs, CompareMetric metric);

    // Indices into `points` of the Pareto front for "less memory, higher metric": the points no other point
    // dominates (another point with memory <= and metric >= and one of them strictly). Sorted by memory,
    // then by metric descending.
    static std::vector<std::size_t> paretoFront(const std::vector<ComparePoint>& points);

    // Mean and sample standard deviation (n - 1; 0 when n < 2).
    static void meanAndStd(const std::vector<double>& values, double* mean, double* stdDev);
};

} // namespace ladder::widgets
