#include "RunWorker.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "train/RunWorkerProcess.h"

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
        RunProgress p;
        p.runId = m_worker.m_runId;
        p.step = s.step;
        p.totalSteps = s.totalSteps;
        p.loss = s.loss;
        p.elapsedSeconds = s.elapsedSeconds;
        Q_EMIT m_worker.progress(p);
    }
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        const auto now = std::chrono::steady_clock::now();
        if (done < total && m_sent && now - m_lastSent < std::chrono::milliseconds(kProgressIntervalMs))
            return;
        m_sent = true;
        m_lastSent = now;
        RunProgress p;
        p.runId = m_worker.m_runId;
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

RunWorker::RunWorker(QString storePath, qint64 runId, QString device, QString program,
    std::shared_ptr<std::atomic<bool>> cancel)
    : m_storePath(std::move(storePath))
    , m_runId(runId)
    , m_device(std::move(device))
    , m_program(std::move(program))
    , m_cancel(std::move(cancel))
{
}

void RunWorker::setStopGrace(double politeSeconds, double termSeconds)
{
    m_politeSeconds = politeSeconds;
    m_termSeconds = termSeconds;
}

void RunWorker::run()
{
    Observer observer(*this);
    RunWorkerLaunch launch;
    launch.program = m_program.toStdString();
    launch.storePath = m_storePath.toStdString();
    launch.runId = m_runId;
    launch.politeSeconds = m_politeSeconds;
    launch.termSeconds = m_termSeconds;
    launch.processes = m_processes;
    const auto result = superviseRunWorker(launch, observer);
    Q_EMIT finished(m_runId, result.state, QString::fromStdString(result.message));
}

} // namespace ladder::widgets
