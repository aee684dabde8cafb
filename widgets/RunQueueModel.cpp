#include "RunQueueModel.h"

#include <algorithm>

#include <QBrush>
#include <QColor>

namespace ladder::widgets {
namespace {
constexpr double kMB = 1e6;

int rank(const RunRecord& r)
{
    switch (r.status) {
    case RunState::Running:
        return 0;
    case RunState::Queued:
        return 1;
    default:
        return 2;
    }
}

int percentOf(const RunRecord& r)
{
    if (r.status == RunState::Finished)
        return 100;
    if (r.totalSteps <= 0)
        return -1;
    return static_cast<int>(std::clamp<qint64>(100 * r.step / r.totalSteps, 0, 100));
}
} // namespace

RunQueueModel::RunQueueModel(QObject* parent)
    : QAbstractTableModel(parent)
{
}

int RunQueueModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_runs.size());
}

int RunQueueModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QString RunQueueModel::statusText(RunState status)
{
    switch (status) {
    case RunState::Queued:
        return tr("queued");
    case RunState::Running:
        return tr("running");
    case RunState::Finished:
        return tr("finished");
    case RunState::Failed:
        return tr("failed");
    case RunState::Cancelled:
        return tr("cancelled");
    case RunState::Interrupted:
        return tr("interrupted");
    }
    return {};
}

QVariant RunQueueModel::data(const QModelIndex& index, int role) const
{
    if (!index.isValid() || index.row() >= rowCount() || index.column() >= ColumnCount)
        return {};
    const RunRecord& r = m_runs[static_cast<std::size_t>(index.row())];
    if (role == RunIdRole)
        return QVariant::fromValue<qint64>(r.id);
    if (role == StatusRole)
        return static_cast<int>(r.status);
    const Phase* phase = index.column() == ProgressColumn ? phaseOf(r) : nullptr;
    if (role == ProgressRole && index.column() == ProgressColumn)
        return phase ? phase->percent : percentOf(r);
    if (role == Qt::ForegroundRole && index.column() == StatusColumn) {
        if (r.status == RunState::Failed)
            return QBrush(QColor(0xb0, 0x00, 0x20));
        if (r.status == RunState::Finished)
            return QBrush(QColor(0x1b, 0x5e, 0x20));
        return {};
    }
    const QString waiting = r.status == RunState::Queued ? waitingReason(r.id) : QString();
    if (role == Qt::ToolTipRole && index.column() == ErrorColumn)
        return waiting.isEmpty() ? QString::fromStdString(r.errorMessage) : waiting;
    if (role == Qt::ToolTipRole && index.column() == StatusColumn && !waiting.isEmpty())
        return waiting;
    if (role == Qt::ForegroundRole && index.column() == ErrorColumn && !waiting.isEmpty())
        return QBrush(QColor(0x5f, 0x63, 0x68));
    if (role != Qt::DisplayRole)
        return {};
    switch (index.column()) {
    case IdColumn:
        return QVariant::fromValue<qint64>(r.id);
    case NameColumn:
        return QString::fromStdString(r.name);
    case StatusColumn:
        return r.status == RunState::Queued && r.queuePosition ? tr("queued (#%1)").arg(*r.queuePosition)
                                                               : statusText(r.status);
    case ProgressColumn:
        if (phase)
            return phase->text;
        return r.totalSteps > 0 ? QStringLiteral("%1 / %2").arg(r.step).arg(r.totalSteps)
                                : (r.step > 0 ? QString::number(r.step) : QString());
    case DeviceColumn:
        return QString::fromStdString(r.device);
    case MethodColumn:
        return QString::fromStdString(r.method);
    case TaskColumn:
        return QString::fromStdString(r.task);
    case MetricColumn:
        if (!r.figures.bestValidationMetric)
            return {};
        return QStringLiteral("%1 %2")
            .arg(QString::fromStdString(r.figures.mainMetricName))
            .arg(*r.figures.bestValidationMetric, 0, 'f', 4);
    case PeakMemoryColumn:
        if (!r.figures.peakAllocatedBytes)
            return {};
        return tr("%1 MB").arg(static_cast<double>(*r.figures.peakAllocatedBytes) / kMB, 0, 'f', 1);
    case ErrorColumn:
        if (!waiting.isEmpty())
            return tr("waits: %1").arg(waiting);
        return QString::fromStdString(r.errorMessage).section(QLatin1Char('\n'), 0, 0);
    default:
        return {};
    }
}

QVariant RunQueueModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
    case IdColumn:
        return tr("Run");
    case NameColumn:
        return tr("Name");
    case StatusColumn:
        return tr("Status");
    case ProgressColumn:
        return tr("Progress");
    case DeviceColumn:
        return tr("Device");
    case MethodColumn:
        return tr("Method");
    case TaskColumn:
        return tr("Task");
    case MetricColumn:
        return tr("Best validation");
    case PeakMemoryColumn:
        return tr("Peak memory");
    case ErrorColumn:
        return tr("Error");
    default:
        return {};
    }
}

void RunQueueModel::sortForQueue(std::vector<RunRecord>& runs)
{
    std::stable_sort(runs.begin(), runs.end(), [](const RunRecord& a, const RunRecord& b) {
        if (rank(a) != rank(b))
            return rank(a) < rank(b);
        if (rank(a) == 1)
            return a.queuePosition.value_or(0) < b.queuePosition.value_or(0);
        if (rank(a) == 0)
            return a.id < b.id;
        return a.id > b.id;
    });
}

void RunQueueModel::setRuns(std::vector<RunRecord> runs)
{
    sortForQueue(runs);
    for (auto it = m_phases.begin(); it != m_phases.end();) { // phases of runs that no longer run
        const auto run
            = std::find_if(runs.begin(), runs.end(), [&](const RunRecord& r) { return r.id == it->first; });
        it = run == runs.end() || run->status != RunState::Running ? m_phases.erase(it) : std::next(it);
    }
    const bool sameRows = runs.size() == m_runs.size()
        && std::equal(runs.begin(), runs.end(), m_runs.begin(),
            [](const RunRecord& a, const RunRecord& b) { return a.id == b.id; });
    if (sameRows) {
        m_runs = std::move(runs);
        if (!m_runs.empty())
            Q_EMIT dataChanged(index(0, 0), index(rowCount() - 1, ColumnCount - 1));
        return;
    }
    beginResetModel();
    m_runs = std::move(runs);
    endResetModel();
}

const RunQueueModel::Phase* RunQueueModel::phaseOf(const RunRecord& r) const
{
    if (r.status != RunState::Running || r.step > 0)
        return nullptr;
    const auto it = m_phases.find(r.id);
    return it == m_phases.end() ? nullptr : &it->second;
}

void RunQueueModel::setProgress(
    qint64 runId, qint64 step, qint64 totalSteps, const QString& phase, int phasePercent)
{
    const int row = rowOf(runId);
    if (row < 0)
        return;
    auto& r = m_runs[static_cast<std::size_t>(row)];
    if (!phase.isEmpty()) {
        m_phases[runId] = { phase, phasePercent };
        Q_EMIT dataChanged(index(row, ProgressColumn), index(row, ProgressColumn));
        return;
    }
    if (m_phases.erase(runId) > 0)
        Q_EMIT dataChanged(index(row, ProgressColumn), index(row, ProgressColumn));
    if (step <= r.step && totalSteps == r.totalSteps)
        return;
    r.step = std::max<qint64>(r.step, step);
    r.totalSteps = totalSteps;
    Q_EMIT dataChanged(index(row, ProgressColumn), index(row, ProgressColumn));
}

void RunQueueModel::setWaitingReasons(const std::map<qint64, QString>& reasons)
{
    if (reasons == m_waiting)
        return;
    m_waiting = reasons;
    if (!m_runs.empty())
        Q_EMIT dataChanged(index(0, StatusColumn), index(rowCount() - 1, ErrorColumn));
}

QString RunQueueModel::waitingReason(qint64 runId) const
{
    const auto it = m_waiting.find(runId);
    return it == m_waiting.end() ? QString() : it->second;
}

const RunRecord* RunQueueModel::run(int row) const
{
    return row >= 0 && row < rowCount() ? &m_runs[static_cast<std::size_t>(row)] : nullptr;
}

int RunQueueModel::rowOf(qint64 runId) const
{
    for (std::size_t i = 0; i < m_runs.size(); ++i)
        if (m_runs[i].id == runId)
            return static_cast<int>(i);
    return -1;
}

} // namespace ladder::widgets
