#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <QMetaType>
#include <QObject>
#include <QString>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// What a worker reports after each step (at most every kProgressIntervalMs, and always the last step).
struct RunProgress {
    qint64 runId = 0;
    qint64 step = 0;
    qint64 totalSteps = 0;
    double loss = 0.0;
    double elapsedSeconds = 0.0;
    // Before the first step: what the run is preparing, e.g. "Fisher initialisation 300/1024" (LST's
    // Fisher pass), with its percent; empty once training steps.
    QString phase;
    int phasePercent = -1;
};

// Supervises one queued run that the controller has claimed (status running in the store). The run
// trains in a process of its own (`ladder worker`, core/train/RunWorkerProcess.h), so LibTorch's seed,
// thread count and CPU memory meter, a CUDA context and a crash are the run's alone. run() executes on the
// worker's QThread: it starts the process, turns its events into queued signals carrying values, and when
// the process has ended makes sure the run is final in the store (a crash: failed, with the signal and the
// last lines). Cancelling goes through a flag the controller shares (cancelFlag()), never through this
// object, which is deleted on its own thread when it finishes.
class RunWorker : public QObject {
    Q_OBJECT

public:
    static constexpr int kProgressIntervalMs = 100;

    // `program` is the `ladder` executable (RunQueueController::workerProgram()).
    // The ranks of a data-parallel run (its spec's training.processes; 1: one process).
    void setProcesses(int processes) { m_processes = processes; }
    RunWorker(QString storePath, qint64 runId, QString device, QString program,
        std::shared_ptr<std::atomic<bool>> cancel);

    qint64 runId() const { return m_runId; }
    QString device() const { return m_device; }
    bool cancelRequested() const { return m_cancel->load(); }

    // How long a cancelled run may take to stop by itself before SIGTERM, then before SIGKILL.
    void setStopGrace(double politeSeconds, double termSeconds);

public Q_SLOTS:
    // Supervises the run to its end. Never throws.
    void run();

Q_SIGNALS:
    void progress(const ladder::widgets::RunProgress& progress);
    void evaluated(qint64 runId, qint64 step, const QString& split, const QString& metric, double value);
    void logged(qint64 runId, const QString& level, const QString& message);
    // The run ended; status is the final state recorded in the store, message its error (if any).
    void finished(qint64 runId, ladder::RunState status, const QString& message);

private:
    class Observer;

    QString m_storePath;
    qint64 m_runId;
    QString m_device;
    QString m_program;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    double m_politeSeconds = 30.0;
    double m_termSeconds = 10.0;
    int m_processes = 1;
};

} // namespace ladder::widgets

Q_DECLARE_METATYPE(ladder::widgets::RunProgress)
