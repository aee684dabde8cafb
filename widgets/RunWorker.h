#pragma once

#include <atomic>
#include <cstdint>

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

// Trains one queued run that the controller has claimed (status running in the store). It lives in its
// own QThread: run() opens its own ResultsStore connection on the same file, parses the stored spec and
// trains it with trainRecordedRun(), the path `ladder train` takes, so GUI and CLI runs are recorded the
// same way. It talks to the UI only through queued signals carrying values. requestCancel() may be called
// from any thread; the trainer polls it between steps and ends the run as cancelled.
class RunWorker : public QObject {
    Q_OBJECT

public:
    static constexpr int kProgressIntervalMs = 100;

    RunWorker(QString storePath, qint64 runId, QString specJson, QString device);

    qint64 runId() const { return m_runId; }
    QString device() const { return m_device; }
    void requestCancel() { m_cancel.store(true); }
    bool cancelRequested() const { return m_cancel.load(); }

public Q_SLOTS:
    // Trains the run to its end. Never throws: a failure before training (store, spec) marks the run failed.
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
    QString m_specJson;
    QString m_device;
    std::atomic<bool> m_cancel { false };
};

} // namespace ladder::widgets

Q_DECLARE_METATYPE(ladder::widgets::RunProgress)
