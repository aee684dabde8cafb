#include "RunWorker.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"

namespace ladder::widgets {

// Forwards the trainer's events to the worker's signals (on the worker thread; the connections to the UI
// are queued) and answers cancelRequested() from the worker's flag.
class RunWorker::Observer : public TrainerObserver {
public:
    explicit Observer(RunWorker& worker)
        : m_worker(worker)
    {
    }

    void onStep(const TrainStep& s) override
    {
        const auto now = std::chrono::steady_clock::now();
        const bool last = s.totalSteps > 0 && s.step >= s.totalSteps;
        if (!last && m_sent && now - m_lastSent < std::chrono::milliseconds(kProgressIntervalMs))
            return;
        m_sent = true;
        m_lastSent = now;
        Q_EMIT m_worker.progress({ m_worker.m_runId, s.step, s.totalSteps, s.loss, s.elapsedSeconds });
    }
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        const auto now = std::chrono::steady_clock::now();
        if (done < total && m_sent && now - m_lastSent < std::chrono::milliseconds(kProgressIntervalMs))
            return;
        m_sent = true;
        m_lastSent = now;
        RunProgress p { m_worker.m_runId, 0, 0, 0.0, 0.0 };
        p.phase = QStringLiteral("%1 %2/%3").arg(QString::fromStdString(what)).arg(done).arg(total);
        p.phasePercent = total > 0 ? static_cast<int>(100 * done / total) : 100;
        Q_EMIT m_worker.progress(p);
    }
    void onEval(const TrainEval& e) override
    {
        Q_EMIT m_worker.evaluated(m_worker.m_runId, e.step, QString::fromStdString(e.split),
            QString::fromStdString(e.mainName), e.main);
    }
    void onLog(const std::string& level, const std::string& message) override
    {
        Q_EMIT m_worker.logged(
            m_worker.m_runId, QString::fromStdString(level), QString::fromStdString(message));
    }
    bool cancelRequested() override { return m_worker.cancelRequested(); }

private:
    RunWorker& m_worker;
    bool m_sent = false;
    std::chrono::steady_clock::time_point m_lastSent;
};

RunWorker::RunWorker(QString storePath, qint64 runId, QString specJson, QString device)
    : m_storePath(std::move(storePath))
    , m_runId(runId)
    , m_specJson(std::move(specJson))
    , m_device(std::move(device))
{
}

void RunWorker::run()
{
    ResultsStore store;
    std::string error;
    if (!store.open(m_storePath.toStdString(), &error)) {
        // Without a connection the run cannot even be marked failed here; the controller does it.
        Q_EMIT finished(m_runId, RunState::Failed, QString::fromStdString(error));
        return;
    }
    RunSpec spec;
    try {
        spec = RunSpec::fromJson(
            nlohmann::json::parse(m_specJson.toStdString()), "run " + std::to_string(m_runId) + " spec");
    } catch (const std::exception& e) {
        const std::string message = e.what();
        store.setStatus(m_runId, RunState::Failed, message);
        Q_EMIT finished(m_runId, RunState::Failed, QString::fromStdString(message));
        return;
    }
    Observer observer(*this);
    RunSummary summary;
    try {
        summary = trainRecordedRun(spec, store, m_runId, observer);
    } catch (const std::exception& e) { // trainRecordedRun does not throw; belt and braces
        summary.status = RunOutcome::Failed;
        summary.message = e.what();
        store.setStatus(m_runId, RunState::Failed, summary.message);
    }
    const RunState state = summary.status == RunOutcome::Finished ? RunState::Finished
        : summary.status == RunOutcome::Cancelled                 ? RunState::Cancelled
                                                                  : RunState::Failed;
    Q_EMIT finished(m_runId, state, QString::fromStdString(summary.message));
}

} // namespace ladder::widgets
