#pragma once

#include <cstdint>
#include <vector>

#include <QMetaType>
#include <QObject>
#include <QString>

#include "store/StoreTypes.h"

class QThread;
class QTimer;

namespace ladder::widgets {

// Everything the run details view shows about one run, read in one go.
struct RunDetailsSnapshot {
    RunRecord run;
    std::vector<LogLine> logs; // oldest first
    std::vector<Evaluation> evaluations; // in order of step
    std::int64_t metricPoints = 0; // rows in the metrics time series
};

// Reads a results store off the GUI thread. It owns one worker thread with its own ResultsStore
// connection (a connection is never shared across threads) and hands results back through queued
// signals that carry plain values, so no SQLite call ever runs on the thread that owns this object.
//
// Polling: every pollInterval() ms the worker reads PRAGMA data_version (ResultsStore::dataVersion());
// only when another connection (a trainer thread, the CLI) committed since the last look does it reload
// the runs, emit runsLoaded() and then storeChanged(). Requests made while one is under way are merged.
//
//   auto* reader = new StoreReader(this);
//   connect(reader, &StoreReader::runsLoaded, model, &RunsTableModel::setRuns);
//   reader->setStorePath(path); // opens it on the worker and loads the runs
class StoreReader : public QObject {
    Q_OBJECT

public:
    static constexpr int kDefaultPollIntervalMs = 1000;

    explicit StoreReader(QObject* parent = nullptr);
    // Stops polling and waits for the worker thread (a read under way finishes first).
    ~StoreReader() override;

    // Opens `path` on the worker (creating an empty store when the file does not exist, as
    // ResultsStore::open does) and loads its runs. An empty path closes the store.
    void setStorePath(const QString& path);
    QString storePath() const { return m_path; }

    // 0 stops polling.
    void setPollInterval(int milliseconds);
    int pollInterval() const { return m_pollIntervalMs; }

    // True while a runs load requested here has not been answered yet.
    bool isLoadingRuns() const { return m_runsInFlight; }

public Q_SLOTS:
    // Loads every run (id order) and emits runsLoaded() or loadFailed().
    void requestRuns();
    // Loads one run with its logs and evaluations and emits detailsLoaded() or loadFailed().
    void requestDetails(qint64 runId);
    // One poll now (what the timer does).
    void poll();

Q_SIGNALS:
    void runsLoaded(const std::vector<ladder::RunRecord>& runs);
    void detailsLoaded(const ladder::widgets::RunDetailsSnapshot& details);
    // The store's data changed since the previous poll (runsLoaded() came just before).
    void storeChanged();
    // Opening or reading failed; the message names the file and the operation.
    void loadFailed(const QString& message);

private:
    class Worker;

    void finishRuns(std::vector<RunRecord> runs, const QString& error, bool fromPoll, quint64 generation);

    QString m_path;
    QThread* m_thread = nullptr;
    Worker* m_worker = nullptr;
    QTimer* m_pollTimer = nullptr;
    int m_pollIntervalMs = kDefaultPollIntervalMs;
    bool m_runsInFlight = false;
    bool m_runsAgain = false;
    bool m_pollInFlight = false;
    quint64 m_generation = 0; // counts setStorePath() calls; answers carry the value they were asked under
};

} // namespace ladder::widgets

Q_DECLARE_METATYPE(ladder::widgets::RunDetailsSnapshot)
Q_DECLARE_METATYPE(std::vector<ladder::RunRecord>)
