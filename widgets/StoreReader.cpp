#include "StoreReader.h"

#include <optional>
#include <string>
#include <utility>

#include <QThread>
#include <QTimer>

#include "store/ResultsStore.h"

namespace ladder::widgets {

// Lives in StoreReader's worker thread; every member is touched only there (work is posted to it with
// QMetaObject::invokeMethod and results come back the same way).
class StoreReader::Worker : public QObject {
public:
    // Opens `path` (empty: closes). Returns an error message, empty on success.
    QString open(const QString& path)
    {
        m_store.close();
        m_lastVersion.reset();
        if (path.isEmpty())
            return {};
        std::string error;
        if (!m_store.open(path.toStdString(), &error))
            return QString::fromStdString(error);
        std::int64_t version = 0;
        if (m_store.dataVersion(&version))
            m_lastVersion = version;
        return {};
    }

    QString loadRuns(std::vector<RunRecord>* runs)
    {
        if (!m_store.isOpen())
            return {}; // no store: no runs
        std::string error;
        if (!m_store.listRuns(RunFilter {}, runs, &error))
            return QString::fromStdString(error);
        return {};
    }

    QString loadDetails(std::int64_t runId, RunDetailsSnapshot* details)
    {
        if (!m_store.isOpen())
            return tr("no results store is open");
        std::string error;
        details->run = RunRecord {};
        if (!m_store.getRun(runId, &details->run, &error)
            || !m_store.getLogs(runId, 0, &details->logs, &error)
            || !m_store.getEvaluations(runId, &details->evaluations, &error)
            || !m_store.countMetrics(runId, &details->metricPoints, &error))
            return QString::fromStdString(error);
        return {};
    }

    // True when another connection committed since the last call (or since open()).
    bool changedSinceLastPoll(QString* error)
    {
        if (!m_store.isOpen())
            return false;
        std::int64_t version = 0;
        std::string message;
        if (!m_store.dataVersion(&version, &message)) {
            *error = QString::fromStdString(message);
            return false;
        }
        const bool changed = !m_lastVersion || *m_lastVersion != version;
        m_lastVersion = version;
        return changed;
    }

private:
    ResultsStore m_store;
    std::optional<std::int64_t> m_lastVersion;
};

StoreReader::StoreReader(QObject* parent)
    : QObject(parent)
    , m_thread(new QThread(this))
    , m_worker(new Worker)
    , m_pollTimer(new QTimer(this))
{
    qRegisterMetaType<std::vector<ladder::RunRecord>>();
    qRegisterMetaType<ladder::widgets::RunDetailsSnapshot>();
    m_thread->setObjectName(QStringLiteral("StoreReader"));
    m_worker->moveToThread(m_thread);
    m_thread->start();
    connect(m_pollTimer, &QTimer::timeout, this, &StoreReader::poll);
}

StoreReader::~StoreReader()
{
    m_pollTimer->stop();
    m_thread->quit();
    m_thread->wait();
    delete m_worker;
}

void StoreReader::setStorePath(const QString& path)
{
    m_path = path;
    const quint64 generation = ++m_generation; // answers about the previous store are dropped
    QMetaObject::invokeMethod(
        m_worker,
        [this, path, generation] {
            const QString error = m_worker->open(path);
            if (!error.isEmpty())
                QMetaObject::invokeMethod(
                    this,
                    [this, error, generation] {
                        if (generation == m_generation)
                            Q_EMIT loadFailed(error);
                    },
                    Qt::QueuedConnection);
        },
        Qt::QueuedConnection);
    if (m_pollIntervalMs > 0 && !path.isEmpty())
        m_pollTimer->start(m_pollIntervalMs);
    else
        m_pollTimer->stop();
    requestRuns();
}

void StoreReader::setPollInterval(int milliseconds)
{
    m_pollIntervalMs = milliseconds;
    if (milliseconds > 0 && !m_path.isEmpty())
        m_pollTimer->start(milliseconds);
    else
        m_pollTimer->stop();
}

void StoreReader::requestRuns()
{
    if (m_runsInFlight) {
        m_runsAgain = true;
        return;
    }
    m_runsInFlight = true;
    const quint64 generation = m_generation;
    QMetaObject::invokeMethod(
        m_worker,
        [this, generation] {
            std::vector<RunRecord> runs;
            const QString error = m_worker->loadRuns(&runs);
            QMetaObject::invokeMethod(
                this,
                [this, runs = std::move(runs), error, generation]() mutable {
                    finishRuns(std::move(runs), error, false, generation);
                },
                Qt::QueuedConnection);
        },
        Qt::QueuedConnection);
}

void StoreReader::requestDetails(qint64 runId)
{
    const quint64 generation = m_generation;
    QMetaObject::invokeMethod(
        m_worker,
        [this, runId, generation] {
            RunDetailsSnapshot details;
            const QString error = m_worker->loadDetails(runId, &details);
            QMetaObject::invokeMethod(
                this,
                [this, details = std::move(details), error, generation] {
                    if (generation != m_generation)
                        return;
                    if (error.isEmpty())
                        Q_EMIT detailsLoaded(details);
                    else
                        Q_EMIT loadFailed(error);
                },
                Qt::QueuedConnection);
        },
        Qt::QueuedConnection);
}

void StoreReader::poll()
{
    if (m_pollInFlight || m_path.isEmpty())
        return;
    m_pollInFlight = true;
    const quint64 generation = m_generation;
    QMetaObject::invokeMethod(
        m_worker,
        [this, generation] {
            QString error;
            std::vector<RunRecord> runs;
            const bool changed = m_worker->changedSinceLastPoll(&error);
            if (changed)
                error = m_worker->loadRuns(&runs);
            QMetaObject::invokeMethod(
                this,
                [this, changed, runs = std::move(runs), error, generation]() mutable {
                    m_pollInFlight = false;
                    if (generation != m_generation)
                        return;
                    if (!error.isEmpty()) {
                        Q_EMIT loadFailed(error);
                    } else if (changed && !m_runsInFlight) {
                        finishRuns(std::move(runs), QString(), true, generation);
                    } else if (changed) {
                        m_runsAgain = true; // the load under way may predate the change: load once more
                        Q_EMIT storeChanged();
                    }
                },
                Qt::QueuedConnection);
        },
        Qt::QueuedConnection);
}

void StoreReader::finishRuns(
    std::vector<RunRecord> runs, const QString& error, bool fromPoll, quint64 generation)
{
    if (!fromPoll)
        m_runsInFlight = false;
    if (generation != m_generation) {
        // About a store no longer shown (setStorePath() asked for a new load, which follows).
    } else if (error.isEmpty()) {
        Q_EMIT runsLoaded(runs);
        if (fromPoll)
            Q_EMIT storeChanged();
    } else {
        Q_EMIT loadFailed(error);
    }
    if (!fromPoll && m_runsAgain) {
        m_runsAgain = false;
        requestRuns();
    }
}

} // namespace ladder::widgets
