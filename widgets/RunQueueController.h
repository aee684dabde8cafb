#pragma once

#include <map>
#include <memory>
#include <vector>

#include <QObject>
#include <QString>

#include "store/StoreTypes.h"
#include "train/RunSpec.h"

class QThread;

namespace ladder {
class ResultsStore;
}

namespace ladder::widgets {

class RunWorker;
struct RunProgress;

// The run queue. It lives in the results store (queued runs with a queue position), so it survives a
// restart, and is shared with anything else that opens the store. The controller starts at most one run
// per device: when a device has no running run and a run is queued for it, the run is claimed
// (ResultsStore::claimNextQueued: queued -> running in one transaction) and trained by a RunWorker in its
// own QThread. When a run ends, whatever its outcome, the next one for that device starts, so a failure
// never stops the queue.
//
// The controller's own ResultsStore connection (GUI thread) is used only for short single-row writes
// (enqueue, reorder, cancel, remove, claim); the lists the views show are read off the GUI thread by a
// StoreWatcher.
class RunQueueController : public QObject {
    Q_OBJECT

public:
    explicit RunQueueController(QObject* parent = nullptr);
    // Cancels every active run and waits for the worker threads.
    ~RunQueueController() override;

    // Opens the store. Runs left running by a dead process are marked interrupted by the open.
    bool open(const QString& storePath, QString* error = nullptr);
    QString storePath() const { return m_storePath; }

    // Paused: nothing new starts (active runs go on). A controller starts paused until setPaused(false).
    void setPaused(bool paused);
    bool isPaused() const { return m_paused; }

    // Appends one queued run per spec; *ids (optional) receives their ids. Then schedules.
    bool enqueue(
        const std::vector<RunSpec>& specs, std::vector<qint64>* ids = nullptr, QString* error = nullptr);
    // Running: asks the worker to stop (the run ends as cancelled). Queued: marks it cancelled.
    bool cancel(qint64 runId, QString* error = nullptr);
    // A queued run is removed from the store; a final run is deleted with its data; a running one cannot be.
    bool remove(qint64 runId, QString* error = nullptr);
    // Moves a queued run `offset` places (negative: sooner).
    bool move(qint64 runId, int offset, QString* error = nullptr);
    // The stored spec JSON of a run (for duplicate-and-edit).
    bool specOf(qint64 runId, QString* specJson, QString* error = nullptr);

    std::vector<qint64> activeRuns() const;
    bool isActive(qint64 runId) const { return m_workers.count(runId) > 0; }
    int activeCount() const { return static_cast<int>(m_workers.size()); }
    // Asks every active run to stop; runsIdle() follows when the last worker has finished.
    void cancelAll();
    // Blocks until every worker thread has ended (after cancelAll(): at most one training step).
    void waitForWorkers();

public Q_SLOTS:
    // Starts a run on each device that has none running and has a queued run.
    void schedule();

Q_SIGNALS:
    void runStarted(qint64 runId, const QString& device);
    void runProgress(const ladder::widgets::RunProgress& progress);
    void runEvaluated(qint64 runId, qint64 step, const QString& split, const QString& metric, double value);
    void runLogged(qint64 runId, const QString& level, const QString& message);
    void runFinished(qint64 runId, ladder::RunState status, const QString& message);
    // A run failed: the message is the run's error (the run is already marked failed in the store).
    void runFailed(qint64 runId, const QString& message);
    // The queue changed in the store (enqueue, move, cancel, remove, start, end).
    void queueChanged();
    // No run is active any more.
    void runsIdle();
    // A store operation failed (named in the message).
    void storeError(const QString& message);

private:
    struct Active {
        QThread* thread = nullptr;
        RunWorker* worker = nullptr;
        QString device;
    };

    void startRun(const RunRecord& run);
    void workerFinished(qint64 runId, RunState status, const QString& message);
    bool busyDevice(const QString& device) const;

    std::unique_ptr<ResultsStore> m_store;
    QString m_storePath;
    bool m_paused = true;
    std::map<qint64, Active> m_workers;
};

} // namespace ladder::widgets
