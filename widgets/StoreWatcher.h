#pragma once

#include <cstdint>
#include <vector>

#include <QMetaType>
#include <QObject>
#include <QString>

#include "store/StoreTypes.h"

class QThread;

namespace ladder::widgets {

// Every run of the store, as read in one go.
struct RunsSnapshot {
    std::vector<RunRecord> runs; // id order
};

// New data of the watched run: the metric points after the last step delivered, and the run's
// evaluations when their number changed.
struct MetricsBatch {
    qint64 runId = 0;
    bool reset = false; // the first batch after watchRun(): drop what you have
    std::vector<MetricPoint> points;
    bool evaluationsChanged = false;
    std::vector<Evaluation> evaluations; // all of them, when evaluationsChanged
};

// Reads the results store off the GUI thread for the queue and the live view. One worker thread with its
// own ResultsStore connection polls PRAGMA data_version every pollInterval() ms; only when another
// connection committed does it re-read the runs (runsChanged) and the watched run's new metric points
// (getMetrics(run, afterStep): only what is new) and evaluations (metricsArrived). Results come back by
// queued signals carrying values.
class StoreWatcher : public QObject {
    Q_OBJECT

public:
    static constexpr int kDefaultPollIntervalMs = 250;

    explicit StoreWatcher(QObject* parent = nullptr);
    // Stops the worker thread (a read under way finishes first).
    ~StoreWatcher() override;

    void setStorePath(const QString& path);
    QString storePath() const { return m_path; }
    void setPollInterval(int milliseconds);

    // Follows one run's metrics (0: none). Its whole series so far comes first, with reset set.
    void watchRun(qint64 runId);
    qint64 watchedRun() const { return m_watched; }

public Q_SLOTS:
    // Re-reads everything now, whether or not the store changed.
    void refresh();

Q_SIGNALS:
    void runsChanged(const ladder::widgets::RunsSnapshot& snapshot);
    void metricsArrived(const ladder::widgets::MetricsBatch& batch);
    void readFailed(const QString& message);

private:
    class Worker;
    void forwardMetrics(const ladder::widgets::MetricsBatch& batch, quint64 generation);

    QString m_path;
    QThread* m_thread = nullptr;
    Worker* m_worker = nullptr;
    qint64 m_watched = 0;
    quint64 m_generation = 0;
};

} // namespace ladder::widgets

Q_DECLARE_METATYPE(ladder::widgets::RunsSnapshot)
Q_DECLARE_METATYPE(ladder::widgets::MetricsBatch)
