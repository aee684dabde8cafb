#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <QObject>
#include <QString>

#include "device/Devices.h"
#include "store/StoreTypes.h"
#include "train/DevicePlacement.h"
#include "train/RunSpec.h"

class QThread;
class QTimer;

namespace ladder {
class ResultsStore;
}

namespace ladder::widgets {

class RunWorker;
struct RunProgress;

// The run queue. It lives in the results store (queued runs with a queue position), so it survives a
// restart, and is shared with anything else that opens the store. The controller places the queued runs
// on their devices by their memory estimates (core/train/DevicePlacement.h: first fit in queue order,
// several runs on a device while they fit its budget, no overtaking on a device); a device without a
// budget takes one run at a time. A placed run is claimed (ResultsStore::claimQueuedUnderLease: queued ->
// running in one transaction) and trained in a process of its own (`ladder worker`) that a RunWorker
// supervises from its own QThread. When a run ends, whatever its outcome (a crash of its process
// included), the queue is placed again, so a failure never stops the queue. Why each queued run waits is
// waitingReason().
//
// One device, one window: before it claims a run for a device the controller takes that device's lease in
// the store (ResultsStore::acquireDeviceLease), renews it while runs train there and gives it up when the
// device's queue is done, so a second window (or `ladder sweep --parallel auto`) on the same store never
// places runs on a device this one is using: the runs on a device are one placer's, whose estimates add
// up. A lease that is not renewed (a window that crashed) expires after kLeaseSeconds.
//
// The controller's own ResultsStore connection (GUI thread) is used only for short single-row writes
// (enqueue, reorder, cancel, remove, claim); the lists the views show are read off the GUI thread by a
// StoreWatcher.
class RunQueueController : public QObject {
    Q_OBJECT

public:
    static constexpr int kLeaseSeconds = 60;
    static constexpr int kLeaseRenewMs = 20000;

    explicit RunQueueController(QObject* parent = nullptr);

    // The `ladder` executable that trains each run: $LADDER_WORKER when set, else `ladder` beside this
    // program (or in ../bin, as in the build tree's tests), else on PATH; empty when none is found.
    static QString defaultWorkerProgram();
    void setWorkerProgram(const QString& program) { m_workerProgram = program; }
    QString workerProgram() const { return m_workerProgram; }
    // How long a cancelled run may take to stop by itself before SIGTERM, then before SIGKILL.
    void setStopGrace(double politeSeconds, double termSeconds);
    // Cancels every active run and waits for the worker threads.
    ~RunQueueController() override;

    // Opens the store; create false opens an existing store only ("no results store at PATH" otherwise).
    // Runs left running by a dead process are marked interrupted by the open.
    bool open(const QString& storePath, QString* error = nullptr, bool create = true);
    // How many runs the open store holds, and how many of them are queued.
    bool countRuns(int* runs, int* queued, QString* error = nullptr);
    // A sweep from the window: queues, in one transaction, each spec that no run of the store holds
    // (finished, queued, or running in a live process: ResultsStore::createRunsUnlessHeld(), the rule by
    // which `ladder sweep` claims), so a sweep and the window never train one spec twice. *ids receives the
    // queued runs' ids, *finished and *active (optional) how many specs were skipped as finished before
    // and as queued or running. Then schedules.
    bool enqueueUnlessHeld(const std::vector<RunSpec>& specs, std::vector<qint64>* ids,
        int* finished = nullptr, int* active = nullptr, QString* error = nullptr);
    QString storePath() const { return m_storePath; }

    // Paused: nothing new starts (active runs go on). A controller starts paused until setPaused(false).
    void setPaused(bool paused);
    bool isPaused() const { return m_paused; }

    // This controller's name in the store's device leases ("host:pid:random").
    QString leaseOwner() const { return QString::fromStdString(m_leaseOwner); }
    // The devices whose lease this controller holds.
    std::vector<QString> leasedDevices() const;

    // Appends one queued run per spec, all in one transaction (all or none); *ids (optional) receives
    // their ids. Then schedules.
    bool enqueue(
        const std::vector<RunSpec>& specs, std::vector<qint64>* ids = nullptr, QString* error = nullptr);
    // Running: asks the worker to stop (the run ends as cancelled). Queued: marks it cancelled.
    bool cancel(qint64 runId, QString* error = nullptr);
    // A queued run is removed from the store; a final run is deleted with its data; a running one cannot be.
    bool remove(qint64 runId, QString* error = nullptr);
    // Resume: an interrupted, failed or cancelled run goes back to the end of the queue, and the worker that
    // claims it continues from its training state (ResultsStore::resumeRun(), trainRecordedRun()).
    // *fromStep (optional) receives the step it continues from (0: it has no state and trains again). A
    // state file that does not read is refused here, naming it, and the run is left as it was.
    bool resume(qint64 runId, qint64* fromStep = nullptr, QString* error = nullptr);
    // Renames a run, in any state (ResultsStore::renameRun: the name only, never the spec).
    bool rename(qint64 runId, const QString& name, QString* error = nullptr);
    // Moves a queued run `offset` places (negative: sooner).
    bool move(qint64 runId, int offset, QString* error = nullptr);
    // The stored spec JSON of a run (for duplicate-and-edit).
    bool specOf(qint64 runId, QString* specJson, QString* error = nullptr);

    // Budgets (several runs per device, core/train/DevicePlacement.h): a GPU's is its free memory in the
    // window's device list (setDevices, from ComputeDeviceModel) less a margin, measured when none of this
    // controller's runs is on it; the CPU has one only when a budget is given (runs on one CPU share its
    // cores, so by default they train one at a time). Pretend budgets (setPretendBudgets; at construction
    // $LADDER_DEVICE_BUDGET, "cpu=2GiB,cuda:0=20GiB") replace the measured ones. Then schedules.
    void setDevices(const std::vector<ComputeDevice>& devices);
    void setPretendBudgets(const std::map<std::string, std::uint64_t>& budgets);
    // Why a queued run does not start ("needs 3.1 GiB, cuda:0 has 1.2 GiB left of 76.0 GiB with runs 4 and
    // 7 on it", "never fits: ..."); empty for a run that is not waiting. Paused: none.
    QString waitingReason(qint64 runId) const;
    const std::map<qint64, QString>& waitingReasons() const { return m_waiting; }

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
    // Runs are queued for `device` but another window holds its lease (owner: its lease owner name).
    void deviceBusyElsewhere(const QString& device, const QString& owner);
    // waitingReasons() changed.
    void waitingReasonsChanged();

private:
    // The worker object is deleted on its own thread as soon as it finishes, possibly before its
    // finished() signal reaches this object: nothing here may touch it after start. Cancelling goes
    // through the flag, which both own.
    struct Active {
        QThread* thread = nullptr;
        std::shared_ptr<std::atomic<bool>> cancel;
        QString device; // the spec's
        std::string placedOn; // placementDevice(): the lease's and the budget's name
        std::optional<std::uint64_t> charge; // nullopt: it runs alone
    };
    // A memory estimate of one shape of run (a spec without its seed, name and store).
    struct Estimate {
        bool pending = true;
        std::optional<std::uint64_t> charge;
        std::string error;
    };

    void startRun(const RunRecord& run, const std::string& placedOn, std::optional<std::uint64_t> charge);
    // The estimate of a queued run: nullptr while none was asked for (then it is asked for, off the GUI
    // thread, and schedule() runs again when it arrives).
    const Estimate* estimateOf(const RunRecord& run);
    std::optional<DeviceBudget> budgetFor(const std::string& device) const;
    void setWaiting(std::map<qint64, QString> waiting);
    void workerFinished(qint64 runId, RunState status, const QString& message);
    bool busyDevice(const std::string& device) const;
    void renewLeases();
    void releaseIdleLeases();

    std::unique_ptr<ResultsStore> m_store;
    QString m_storePath;
    bool m_paused = true;
    QString m_workerProgram;
    std::string m_leaseOwner;
    std::set<std::string> m_leases;
    QTimer* m_leaseTimer = nullptr;
    double m_politeSeconds = 30.0;
    double m_termSeconds = 10.0;
    std::map<qint64, Active> m_workers;
    std::map<std::string, Estimate> m_estimates; // by shape
    std::map<std::string, ComputeDevice> m_devices; // the GPUs of setDevices()
    std::map<std::string, std::uint64_t> m_pretend;
    std::string m_pretendError; // $LADDER_DEVICE_BUDGET that did not parse (reported once)
    std::map<std::string, DeviceBudget> m_budgets; // kept while this controller's runs are on the device
    std::map<qint64, QString> m_waiting;
};

} // namespace ladder::widgets
