#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "store/StoreTypes.h"

namespace ladder {

class ResultsStore;

// When a MetricsWriter writes its buffered points.
struct MetricsWriterOptions {
    // Write once this many points are waiting.
    std::size_t maxPendingPoints = 100;
    // Write when the oldest waiting point is this old (seconds); 0 or less: only by count.
    double maxPendingSeconds = 1.0;
};

// Buffers a run's metric points and writes them with ResultsStore::appendMetrics(), one transaction per
// batch: every maxPendingPoints points or every maxPendingSeconds, whichever comes first. This is how the
// trainer writes its per-step points without a commit per step. Same thread as its ResultsStore.
class MetricsWriter {
public:
    MetricsWriter(ResultsStore& store, std::int64_t runId, MetricsWriterOptions options = {});
    // Writes what is left; an error here is dropped (call flush() first to see it).
    ~MetricsWriter();
    MetricsWriter(const MetricsWriter&) = delete;
    MetricsWriter& operator=(const MetricsWriter&) = delete;

    // Buffers a point (an empty time is set to now) and writes the batch when due. False when a write
    // failed: the points stay buffered and the next add() or flush() tries again.
    bool add(MetricPoint point, std::string* error = nullptr);
    // Writes every buffered point now.
    bool flush(std::string* error = nullptr);
    // Drops the buffered points unwritten; returns how many (a run on a full disk gives them up so that
    // its failure and final status still fit).
    std::size_t discardPending();

    std::size_t pendingCount() const { return m_pending.size(); }
    // Points written so far.
    std::int64_t writtenCount() const { return m_written; }
    std::int64_t runId() const { return m_runId; }

private:
    ResultsStore& m_store;
    std::int64_t m_runId;
    MetricsWriterOptions m_options;
    std::vector<MetricPoint> m_pending;
    std::chrono::steady_clock::time_point m_oldestPending;
    std::int64_t m_written = 0;
};

} // namespace ladder
