#include "StoreWatcher.h"

#include <memory>

#include <QThread>
#include <QTimer>

#include "store/ResultsStore.h"

namespace ladder::widgets {

// Lives in the watcher's thread; every member is touched only there.
class StoreWatcher::Worker : public QObject {
    Q_OBJECT

public:
    void open(const QString& path)
    {
        m_store = std::make_unique<ResultsStore>();
        m_lastVersion = -1;
        std::string error;
        if (!path.isEmpty() && !m_store->open(path.toStdString(), &error)) {
            m_store.reset();
            Q_EMIT failed(QString::fromStdString(error));
            return;
        }
        if (!path.isEmpty())
            poll(true);
    }

    void setInterval(int ms)
    {
        if (!m_timer) {
            m_timer = new QTimer(this);
            connect(m_timer, &QTimer::timeout, this, [this] { poll(false); });
        }
        if (ms > 0)
            m_timer->start(ms);
        else
            m_timer->stop();
    }

    void watch(qint64 runId, quint64 generation)
    {
        m_runId = runId;
        m_generation = generation;
        m_lastStep = ResultsStore::kAllSteps;
        m_evaluationCount = -1;
        m_resetPending = true;
        if (m_store && m_runId > 0)
            readMetrics();
    }

    void poll(bool force)
    {
        if (!m_store)
            return;
        std::int64_t version = 0;
        std::string error;
        if (!m_store->dataVersion(&version, &error)) {
            Q_EMIT failed(QString::fromStdString(error));
            return;
        }
        if (!force && version == m_lastVersion)
            return;
        m_lastVersion = version;
        RunsSnapshot snapshot;
        if (!m_store->listRuns({}, &snapshot.runs, &error)) {
            Q_EMIT failed(QString::fromStdString(error));
            return;
        }
        Q_EMIT runsRead(snapshot);
        if (m_runId > 0)
            readMetrics();
    }

Q_SIGNALS:
    void runsRead(const ladder::widgets::RunsSnapshot& snapshot);
    void metricsRead(const ladder::widgets::MetricsBatch& batch, quint64 generation);
    void failed(const QString& message);

private:
    void readMetrics()
    {
        MetricsBatch batch;
        batch.runId = m_runId;
        batch.reset = m_resetPending;
        std::string error;
        if (!m_store->getMetrics(m_runId, m_lastStep, &batch.points, &error)) {
            Q_EMIT failed(QString::fromStdString(error));
            return;
        }
        std::vector<Evaluation> evaluations;
        if (!m_store->getEvaluations(m_runId, &evaluations, &error)) {
            Q_EMIT failed(QString::fromStdString(error));
            return;
        }
        if (static_cast<std::int64_t>(evaluations.size()) != m_evaluationCount) {
            m_evaluationCount = static_cast<std::int64_t>(evaluations.size());
            batch.evaluationsChanged = true;
            batch.evaluations = std::move(evaluations);
        }
        if (!batch.points.empty())
            m_lastStep = batch.points.back().step;
        if (batch.reset || !batch.points.empty() || batch.evaluationsChanged) {
            m_resetPending = false;
            Q_EMIT metricsRead(batch, m_generation);
        }
    }

    std::unique_ptr<ResultsStore> m_store;
    QTimer* m_timer = nullptr;
    std::int64_t m_lastVersion = -1;
    qint64 m_runId = 0;
    quint64 m_generation = 0;
    std::int64_t m_lastStep = ResultsStore::kAllSteps;
    std::int64_t m_evaluationCount = -1;
    bool m_resetPending = false;
};

StoreWatcher::StoreWatcher(QObject* parent)
    : QObject(parent)
{
    qRegisterMetaType<ladder::widgets::RunsSnapshot>();
    qRegisterMetaType<ladder::widgets::MetricsBatch>();
    m_thread = new QThread(this);
    m_thread->setObjectName(QStringLiteral("store-watcher"));
    m_worker = new Worker;
    m_worker->moveToThread(m_thread);
    connect(m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    connect(m_worker, &Worker::runsRead, this, &StoreWatcher::runsChanged);
    connect(m_worker, &Worker::metricsRead, this, &StoreWatcher::forwardMetrics);
    connect(m_worker, &Worker::failed, this, &StoreWatcher::readFailed);
    m_thread->start();
    setPollInterval(kDefaultPollIntervalMs);
}

StoreWatcher::~StoreWatcher()
{
    m_thread->quit();
    m_thread->wait();
}

void StoreWatcher::setStorePath(const QString& path)
{
    m_path = path;
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker, path] { w->open(path); }, Qt::QueuedConnection);
    if (m_watched > 0)
        watchRun(m_watched);
}

void StoreWatcher::setPollInterval(int milliseconds)
{
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker, milliseconds] { w->setInterval(milliseconds); }, Qt::QueuedConnection);
}

void StoreWatcher::watchRun(qint64 runId)
{
    m_watched = runId;
    const quint64 generation = ++m_generation;
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker, runId, generation] { w->watch(runId, generation); }, Qt::QueuedConnection);
}

void StoreWatcher::refresh()
{
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker] { w->poll(true); }, Qt::QueuedConnection);
}

void StoreWatcher::forwardMetrics(const MetricsBatch& batch, quint64 generation)
{
    // A batch read before the latest watchRun() belongs to a run the view no longer shows.
    if (generation == m_generation)
        Q_EMIT metricsArrived(batch);
}

} // namespace ladder::widgets

#include "StoreWatcher.moc"
