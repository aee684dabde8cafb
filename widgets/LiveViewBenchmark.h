#pragma once

#include <vector>

#include <QString>

namespace ladder::widgets {

// `ladderbench --bench-live`: how the live view's cost grows with the series. For each size (1,000 and
// 100,000 points by default) a LiveView (1200x700, offscreen) receives the points in batches of 250 as a
// StoreWatcher delivers them, then 30 rounds of "one new point, one replot" are timed. Printed side by side
// in one run: the append time per point and the median replot time per size, and their ratios.
struct LiveViewBenchmarkRow {
    int points = 0;
    double appendMicrosecondsPerPoint = 0.0;
    double medianReplotMilliseconds = 0.0;
};

std::vector<LiveViewBenchmarkRow> runLiveViewBenchmark(const std::vector<int>& sizes = { 1000, 100000 });
QString formatLiveViewBenchmark(const std::vector<LiveViewBenchmarkRow>& rows);

} // namespace ladder::widgets
