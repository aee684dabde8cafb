#include "RunQueueController.h"

#include <set>

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QPointer>
#include <QStandardPaths>
#include <QThread>
#include <QThreadPool>
#include <QTimer>

#include "RunWorker.h"
#include "store/ResultsStore.h"
#include "train/RunEstimate.h"
#include "train/StoreRecorder.h"
#include "train/TrainStateHeader.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder::widgets {
namespace {
bool report(QString* error, const std::string& message)
{
    if (error)
        *error = QString::fromStdString(message);
    return false;
}

// The estimate does not depend on a run's seed, name or store: one estimate per shape of run.
std::string shapeOf(const RunRecord& run)
{
    try {
        auto j = parseJson(run.specJson, "run spec");
        for (const char* key : { "seed", "name", "store" })
            j.erase(key);
        return j.dump();
    } catch (const std::exception&) {
        return "run " + std::to_string(run.id); // fails again in the estimate, with its reason
    }
}
} // namespace

RunQueueController::RunQueueController(QObject* parent)
    : QObject(parent)
    , m_store(std::make_unique<ResultsStore>())
    , m_workerProgram(defaultWorkerProgram())
    , m_leaseOwner(ResultsStore::newLeaseOwner())
    , m_leaseTimer(new QTimer(this))
{
    // Renews the leases of busy devices, and looks again for devices another window has freed.
    m_leaseTimer->setInterval(kLeaseRenewMs);
    connect(m_leaseTimer, &QTimer::timeout, this, [this] {
        renewLeases();
        schedule();
    });
    m_leaseTimer->start();
    if (const QByteArray env = qgetenv(kDeviceBudgetVariable); !env.isEmpty()) {
        try {
            m_pretend = parseDeviceBudgets(env.toStdString(), kDeviceBudgetVariable);
        } catch (const std::exception& e) {
            m_pretendError = e.what();
        }
    }
    qRegisterMetaType<ladder::widgets::RunProgress>();
    qRegisterMetaType<ladder::RunState>();
}

RunQueueController::~RunQueueController()
{
    cancelAll();
    waitForWorkers();
    releaseIdleLeases();
}

std::vector<QString> RunQueueController::leasedDevices() const
{
    std::vector<QString> out;
    for (const auto& d : m_leases)
        out.push_back(QString::fromStdString(d));
    return out;
}

void RunQueueController::renewLeases()
{
    if (!m_store->isOpen())
        return;
    for (auto it = m_leases.begin(); it != m_leases.end();) {
        bool renewed = false;
        std::string message;
        if (!m_store->renewDeviceLease(*it, m_leaseOwner, kLeaseSeconds, &renewed, &message)) {
            Q_EMIT storeError(QString::fromStdString(message));
            ++it;
            continue;
        }
        if (!renewed) {
            // Expired and taken (a window that slept past kLeaseSeconds): the runs here go on, but no new
            // run starts on the device until the lease is ours again.
            Q_EMIT storeError(
                tr("the lease on device %1 was lost to another window; no new run starts on it here")
                    .arg(QString::fromStdString(*it)));
            it = m_leases.erase(it);
            continue;
        }
        ++it;
    }
}

void RunQueueController::releaseIdleLeases()
{
    if (!m_store->isOpen())
        return;
    for (auto it = m_leases.begin(); it != m_leases.end();) {
        if (busyDevice(*it)) {
            ++it;
            continue;
        }
        std::string message;
        if (!m_store->releaseDeviceLease(*it, m_leaseOwner, &message))
            Q_EMIT storeError(QString::fromStdString(message));
        it = m_leases.erase(it);
    }
}

QString RunQueueController::defaultWorkerProgram()
{
    const QString fromEnv = qEnvironmentVariable("LADDER_WORKER");
    if (!fromEnv.isEmpty())
        return fromEnv;
    const QDir here(QCoreApplication::applicationDirPath());
    for (const QString& candidate :
        { here.filePath(QStringLiteral("ladder")), here.filePath(QStringLiteral("../bin/ladder")) }) {
        const QFileInfo info(candidate);
        if (info.isFile() && info.isExecutable())
            return info.canonicalFilePath();
    }
    return QStandardPaths::findExecutable(QStringLiteral("ladder"));
}

void RunQueueController::setStopGrace(double politeSeconds, double termSeconds)
{
    m_politeSeconds = politeSeconds;
    m_termSeconds = termSeconds;
}

bool RunQueueController::open(const QString& storePath, QString* error, bool create)
{
    std::string message;
    releaseIdleLeases(); // of the store open before
    if (!m_store->open(storePath.toStdString(),
            create ? ResultsStore::OpenMode::Create : ResultsStore::OpenMode::Existing, &message))
        return report(error, message);
    m_storePath = storePath;
    Q_EMIT queueChanged();
    return true;
}

void RunQueueController::setPaused(bool paused)
{
    m_paused = paused;
    if (!m_paused) {
        schedule();
    } else {
        releaseIdleLeases();
        setWaiting({});
    }
}

void RunQueueController::setDevices(const std::vector<ComputeDevice>& devices)
{
    m_devices.clear();
    for (const auto& d : devices)
        if (d.id != "cpu")
            m_devices[d.id] = d;
    schedule();
}

void RunQueueController::setPretendBudgets(const std::map<std::string, std::uint64_t>& budgets)
{
    m_pretend = budgets;
    m_pretendError.clear();
    for (auto it = m_budgets.begin(); it != m_budgets.end();)
        it = busyDevice(it->first) ? std::next(it) : m_budgets.erase(it);
    schedule();
}

QString RunQueueController::waitingReason(qint64 runId) const
{
    const auto it = m_waiting.find(runId);
    return it == m_waiting.end() ? QString() : it->second;
}

void RunQueueController::setWaiting(std::map<qint64, QString> waiting)
{
    if (waiting == m_waiting)
        return;
    m_waiting = std::move(waiting);
    Q_EMIT waitingReasonsChanged();
}

std::optional<DeviceBudget> RunQueueController::budgetFor(const std::string& device) const
{
    if (const auto it = m_pretend.find(device); it != m_pretend.end()) {
        ComputeDevice d;
        d.id = device;
        d.totalBytes = d.freeBytes = it->second;
        if (const auto gpu = m_devices.find(device); gpu != m_devices.end())
            d = gpu->second;
        return deviceBudget(d, m_pretend);
    }
    if (const auto gpu = m_devices.find(device); gpu != m_devices.end())
        return deviceBudget(gpu->second, m_pretend);
    return std::nullopt; // the CPU without a budget, a GPU not listed (yet)
}

const RunQueueController::Estimate* RunQueueController::estimateOf(const RunRecord& run)
{
    const std::string shape = shapeOf(run);
    if (const auto it = m_estimates.find(shape); it != m_estimates.end())
        return &it->second;
    m_estimates[shape] = Estimate {};
    QPointer<RunQueueController> self(this);
    const std::string specJson = run.specJson;
    const std::string label = "run " + std::to_string(run.id) + " spec";
    // Tokenising a task's training split takes seconds for GLUE: the global pool, whose threads are joined
    // at exit; a result for a controller that is gone is dropped.
    QThreadPool::globalInstance()->start([self, shape, specJson, label] {
        Estimate e;
        e.pending = false;
        try {
            const auto spec = RunSpec::fromJson(parseJson(specJson, label), label);
            e.charge = runCharge(estimateRunSpec(spec).total, placementDevice(spec.device));
        } catch (const std::exception& ex) {
            e.error = oneLine(ex.what(), 200);
        }
        QMetaObject::invokeMethod(
            QCoreApplication::instance(),
            [self, shape, e] {
                if (!self)
                    return;
                self->m_estimates[shape] = e;
                self->schedule();
            },
            Qt::QueuedConnection);
    });
    return nullptr;
}

bool RunQueueController::enqueue(const std::vector<RunSpec>& specs, std::vector<qint64>* ids, QString* error)
{
    if (!m_store->isOpen())
        return report(error, "no results store is open");
    std::vector<NewRun> runs;
    for (const auto& spec : specs)
        runs.push_back(newRunFor(spec, RunState::Queued));
    std::vector<std::int64_t> created;
    std::string message;
    if (!m_store->createRuns(runs, &created, &message))
        return report(error, message);
    if (ids)
        *ids = std::vector<qint64>(created.begin(), created.end());
    Q_EMIT queueChanged();
    schedule();
    return true;
}

bool RunQueueController::countRuns(int* runs, int* queued, QString* error)
{
    *runs = 0;
    *queued = 0;
    if (!m_store->isOpen())
        return report(error, "no results store is open");
    std::vector<RunRecord> all;
    std::string message;
    if (!m_store->listRuns({}, &all, &message))
        return report(error, message);
    *runs = static_cast<int>(all.size());
    for (const auto& run : all)
        *queued += run.status == RunState::Queued ? 1 : 0;
    return true;
}

bool RunQueueController::enqueueUnlessHeld(
    const std::vector<RunSpec>& specs, std::vector<qint64>* ids, int* finished, int* active, QString* error)
{
    if (!m_store->isOpen())
        return report(error, "no results store is open");
    std::vector<NewRun> runs;
    for (const auto& spec : specs)
        runs.push_back(newRunFor(spec, RunState::Queued));
    std::vector<std::int64_t> created;
    std::vector<std::optional<RunRecord>> holders;
    std::string message;
    if (!m_store->createRunsUnlessHeld(runs, &created, &holders, &message))
        return report(error, message);
    int done = 0, busy = 0;
    if (ids)
        ids->clear();
    for (std::size_t i = 0; i < created.size(); ++i) {
        if (created[i] >= 0) {
            if (ids)
                ids->push_back(created[i]);
        } else if (holders[i] && holders[i]->status == RunState::Finished) {
            ++done;
        } else {
            ++busy;
        }
    }
    if (finished)
        *finished = done;
    if (active)
        *active = busy;
    Q_EMIT queueChanged();
    schedule();
    return true;
}

bool RunQueueController::cancel(qint64 runId, QString* error)
{
    if (auto it = m_workers.find(runId); it != m_workers.end()) {
        it->second.cancel->store(true);
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

bool RunQueueController::rename(qint64 runId, const QString& name, QString* error)
{
    if (!m_store)
        return report(error, "no results store is open");
    std::string message;
    if (!m_store->renameRun(runId, name.toStdString(), &message))
        return report(error, message);
    Q_EMIT queueChanged();
    return true;
}

bool RunQueueController::resume(qint64 runId, qint64* fromStep, QString* error)
{
    if (!m_store)
        return report(error, "no results store is open");
    RunRecord run;
    std::string message;
    if (!m_store->getRun(runId, &run, &message))
        return report(error, message);
    qint64 step = 0;
    try {
        const auto header = readTrainStateHeader(m_store->statePath(runId));
        if (header && header->runId == runId && header->runCreatedAt == run.createdAt)
            step = header->step;
    } catch (const std::exception& e) {
        return report(error, e.what());
    }
    if (!m_store->resumeRun(runId, RunState::Queued, &message))
        return report(error, message);
    if (fromStep)
        *fromStep = step;
    Q_EMIT queueChanged();
    schedule();
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

bool RunQueueController::busyDevice(const std::string& device) const
{
    for (const auto& [id, active] : m_workers)
        if (active.placedOn == device)
            return true;
    return false;
}

void RunQueueController::schedule()
{
    if (m_paused || !m_store->isOpen())
        return;
    if (!m_pretendError.empty()) {
        Q_EMIT storeError(QString::fromStdString(m_pretendError + " (ignored: no pretend budget)"));
        m_pretendError.clear();
    }
    RunFilter filter;
    filter.statuses = { RunState::Queued };
    filter.order = RunFilter::Order::QueuePosition;
    std::vector<RunRecord> queued;
    std::string message;
    if (!m_store->listRuns(filter, &queued, &message)) {
        Q_EMIT storeError(QString::fromStdString(message));
        return;
    }
    // The lease of each device the queue needs (kept while runs train there, renewed by the timer).
    std::set<std::string> devices;
    for (const auto& run : queued)
        devices.insert(placementDevice(run.device));
    std::map<std::string, QString> elsewhere; // device -> why its runs wait
    for (const auto& device : devices) {
        if (m_leases.count(device) && busyDevice(device))
            continue;
        bool acquired = false;
        if (!m_store->acquireDeviceLease(device, m_leaseOwner, kLeaseSeconds, &acquired, &message)) {
            Q_EMIT storeError(QString::fromStdString(message));
            elsewhere[device] = tr("the lease on %1 could not be taken").arg(QString::fromStdString(device));
            continue;
        }
        if (!acquired) {
            std::optional<DeviceLease> lease;
            m_store->getDeviceLease(device, &lease);
            const QString owner = lease ? QString::fromStdString(lease->owner) : QString();
            Q_EMIT deviceBusyElsewhere(QString::fromStdString(device), owner);
            elsewhere[device]
                = tr("%1 is used by another window (%2)").arg(QString::fromStdString(device), owner);
            continue;
        }
        m_leases.insert(device);
    }
    // Budgets: taken again for a device none of this controller's runs is on.
    for (const auto& device : devices) {
        if (busyDevice(device))
            continue;
        m_budgets.erase(device);
        if (auto b = budgetFor(device))
            m_budgets[device] = *b;
    }
    std::vector<DeviceBudget> budgets;
    for (const auto& [device, b] : m_budgets)
        budgets.push_back(b);
    std::vector<PlacedRun> placed;
    for (const auto& [id, active] : m_workers)
        placed.push_back({ id, active.placedOn, active.charge });
    std::map<qint64, QString> waiting;
    std::vector<QueuedRun> queue;
    for (const auto& run : queued) {
        QueuedRun q;
        q.id = run.id;
        q.device = placementDevice(run.device);
        if (const auto it = elsewhere.find(q.device); it != elsewhere.end()) {
            waiting[run.id] = it->second;
            continue;
        }
        if (m_budgets.count(q.device)) { // without a budget the estimate does not matter
            const Estimate* e = estimateOf(run);
            q.estimatePending = !e || e->pending;
            if (e && !e->pending) {
                q.chargeBytes = e->charge;
                q.noEstimate = e->error;
            }
        }
        queue.push_back(q);
    }
    bool claimMissed = false;
    for (const auto& p : placeQueuedRuns(budgets, placed, queue)) {
        if (p.verdict != Placement::Verdict::Start) {
            waiting[p.id] = QString::fromStdString(
                p.verdict == Placement::Verdict::Never ? "never fits: " + p.reason : p.reason);
            continue;
        }
        std::optional<RunRecord> claimed;
        bool held = false;
        if (!m_store->claimQueuedUnderLease(p.id, p.device, m_leaseOwner, &claimed, &held, &message)) {
            Q_EMIT storeError(QString::fromStdString(message));
            continue;
        }
        if (!held)
            m_leases.erase(p.device); // lost meanwhile: renewLeases() says so
        if (!claimed) {
            claimMissed = true; // what was placed after it counted it: place again
            continue;
        }
        std::optional<std::uint64_t> charge;
        for (const auto& q : queue)
            if (q.id == p.id)
                charge = q.chargeBytes;
        startRun(*claimed, p.device, charge);
    }
    setWaiting(std::move(waiting));
    releaseIdleLeases();
    if (claimMissed)
        QTimer::singleShot(0, this, &RunQueueController::schedule);
}

void RunQueueController::startRun(
    const RunRecord& run, const std::string& placedOn, std::optional<std::uint64_t> charge)
{
    const QString device = QString::fromStdString(run.device);
    auto* thread = new QThread(this);
    thread->setObjectName(QStringLiteral("run-%1").arg(run.id));
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    auto* worker = new RunWorker(m_storePath, run.id, device, m_workerProgram, cancel);
    worker->setStopGrace(m_politeSeconds, m_termSeconds);
    try { // "GPUs per run": the worker starts the ranks (a spec that does not read fails in the worker)
        worker->setProcesses(static_cast<int>(
            RunSpec::fromJson(parseJson(run.specJson, "run spec"), "run spec").training.processes));
    } catch (const std::exception&) {
    }
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
    m_workers[run.id] = { thread, cancel, device, placedOn, charge };
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
        // A supervisor that could not open the store could not record the failure: do it here.
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
        active.cancel->store(true);
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
