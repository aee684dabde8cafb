#include "RunQueueController.h"

#include <set>

#include <QThread>

#include "RunWorker.h"
#include "store/ResultsStore.h"
#include "train/MemoryMeter.h"
#include "train/StoreRecorder.h"

namespace ladder::widgets {
namespace {
bool report(QString* error, const std::string& message)
{
    if (error)
        *error = QString::fromStdString(message);
    return false;
}
} // namespace

RunQueueController::RunQueueController(QObject* parent)
    : QObject(parent)
    , m_store(std::make_unique<ResultsStore>())
{
    // Runs on the CPU measure memory with the tracking allocator (ladderbench's main() installs it before any
    // tensor exists; this covers other hosts, e.g. tests). A no-op when it is installed already.
    installCpuMemoryTracker();
    qRegisterMetaType<ladder::widgets::RunProgress>();
    qRegisterMetaType<ladder::RunState>();
}

RunQueueController::~RunQueueController()
{
    cancelAll();
    waitForWorkers();
}

bool RunQueueController::open(const QString& storePath, QString* error)
{
    std::string message;
    if (!m_store->open(storePath.toStdString(), &message))
        return report(error, message);
    m_storePath = storePath;
    Q_EMIT queueChanged();
    return true;
}

void RunQueueController::setPaused(bool paused)
{
    m_paused = paused;
    if (!m_paused)
        schedule();
}

bool RunQueueController::enqueue(const std::vector<RunSpec>& specs, std::vector<qint64>* ids, QString* error)
{
    if (!m_store->isOpen())
        return report(error, "no results store is open");
    std::vector<qint64> created;
    for (const auto& spec : specs) {
        std::int64_t id = -1;
        std::string message;
        if (!m_store->createRun(newRunFor(spec, RunState::Queued), &id, &message)) {
            Q_EMIT queueChanged();
            return report(error, message);
        }
        created.push_back(id);
    }
    if (ids)
        *ids = created;
    Q_EMIT queueChanged();
    schedule();
    return true;
}

bool RunQueueController::cancel(qint64 runId, QString* error)
{
    if (auto it = m_workers.find(runId); it != m_workers.end()) {
        it->second.worker->requestCancel();
        return true;
    }
    RunRecord run;
    std::string message;
    if (!m_store->getRun(runId, &run, &message))
        return report(error, message);
    if (run.status != RunState::Queued)
        return report(error,
            "run " + std::to_string(runId) + " is " + toString(run.status) + ", not queued or running here");
    if (!m_store->setStatus(runId, RunState::Cancelled, "cancelled before it started", &message))
        return report(error, message);
    Q_EMIT queueChanged();
    return true;
}

bool RunQueueController::remove(qint64 runId, QString* error)
{
    if (isActive(runId))
        return report(error, "run " + std::to_string(runId) + " is running: cancel it first");
    RunRecord run;
    std::string message;
    if (!m_store->getRun(runId, &run, &message))
        return report(error, message);
    const bool ok = run.status == RunState::Queued ? m_store->removeQueuedRun(runId, &message)
                                                   : m_store->deleteRun(runId, &message);
    if (!ok)
        return report(error, message);
    Q_EMIT queueChanged();
    return true;
}

bool RunQueueController::move(qint64 runId, int offset, QString* error)
{
    std::string message;
    if (!m_store->moveQueuedRun(runId, offset, &message))
        return report(error, message);
    Q_EMIT queueChanged();
    return true;
}

bool RunQueueController::specOf(qint64 runId, QString* specJson, QString* error)
{
    RunRecord run;
    std::string message;
    if (!m_store->getRun(runId, &run, &message))
        return report(error, message);
    if (specJson)
        *specJson = QString::fromStdString(run.specJson);
    return true;
}

std::vector<qint64> RunQueueController::activeRuns() const
{
    std::vector<qint64> ids;
    for (const auto& [id, active] : m_workers)
        ids.push_back(id);
    return ids;
}

bool RunQueueController::busyDevice(const QString& device) const
{
    for (const auto& [id, active] : m_workers)
        if (active.device == device)
            return true;
    return false;
}

void RunQueueController::schedule()
{
    if (m_paused || !m_store->isOpen())
        return;
    RunFilter filter;
    filter.statuses = { RunState::Queued };
    filter.order = RunFilter::Order::QueuePosition;
    std::vector<RunRecord> queued;
    std::string message;
    if (!m_store->listRuns(filter, &queued, &message)) {
        Q_EMIT storeError(QString::fromStdString(message));
        return;
    }
    std::set<std::string> devices;
    for (const auto& run : queued)
        devices.insert(run.device);
    for (const auto& device : devices) {
        if (busyDevice(QString::fromStdString(device)))
            continue;
        std::optional<RunRecord> claimed;
        if (!m_store->claimNextQueued(device, &claimed, &message)) {
            Q_EMIT storeError(QString::fromStdString(message));
            continue;
        }
        if (claimed)
            startRun(*claimed);
    }
}

void RunQueueController::startRun(const RunRecord& run)
{
    const QString device = QString::fromStdString(run.device);
    auto* thread = new QThread(this);
    thread->setObjectName(QStringLiteral("run-%1").arg(run.id));
    auto* worker = new RunWorker(m_storePath, run.id, QString::fromStdString(run.specJson), device);
    worker->moveToThread(thread);
    connect(thread, &QThread::started, worker, &RunWorker::run);
    connect(worker, &RunWorker::progress, this, &RunQueueController::runProgress, Qt::QueuedConnection);
    connect(worker, &RunWorker::evaluated, this, &RunQueueController::runEvaluated, Qt::QueuedConnection);
    connect(worker, &RunWorker::logged, this, &RunQueueController::runLogged, Qt::QueuedConnection);
    connect(worker, &RunWorker::finished, this, &RunQueueController::workerFinished, Qt::QueuedConnection);
    // The worker's event loop ends as soon as it has finished (directly: quit() is thread-safe, and the GUI
    // thread may be waiting for this thread); the worker is then deleted in its own thread.
    connect(worker, &RunWorker::finished, thread, &QThread::quit, Qt::DirectConnection);
    connect(thread, &QThread::finished, worker, &QObject::deleteLater);
    m_workers[run.id] = { thread, worker, device };
    thread->start();
    Q_EMIT runStarted(run.id, device);
    Q_EMIT queueChanged();
}

void RunQueueController::workerFinished(qint64 runId, RunState status, const QString& message)
{
    auto it = m_workers.find(runId);
    if (it != m_workers.end()) {
        QThread* thread = it->second.thread;
        m_workers.erase(it);
        thread->wait(); // quit() is queued right after finished(): the thread is ending now
        thread->deleteLater();
    }
    if (status == RunState::Failed) {
        // A worker that could not open the store could not record the failure: do it here.
        RunRecord run;
        if (m_store->getRun(runId, &run) && run.status == RunState::Running)
            m_store->setStatus(runId, RunState::Failed, message.toStdString());
    }
    Q_EMIT runFinished(runId, status, message);
    if (status == RunState::Failed)
        Q_EMIT runFailed(runId, message);
    Q_EMIT queueChanged();
    schedule();
    if (m_workers.empty())
        Q_EMIT runsIdle();
}

void RunQueueController::cancelAll()
{
    for (auto& [id, active] : m_workers)
        active.worker->requestCancel();
}

void RunQueueController::waitForWorkers()
{
    for (auto& [id, active] : m_workers) {
        active.thread->quit();
        active.thread->wait();
    }
    // Each worker was deleted on its thread's finish. The finished() signals still queued to this object
    // are dropped with it: the trainer has recorded every outcome in the store.
    for (auto& [id, active] : m_workers)
        delete active.thread;
    m_workers.clear();
}

} // namespace ladder::widgets
