#pragma once

#include <map>
#include <vector>

#include <QAbstractTableModel>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// The run queue as a table: running runs first, then the queued ones in queue order, then the others
// (finished, failed, cancelled, interrupted), newest first. Fed with whole snapshots (setRuns); a
// snapshot with the same runs in the same order only updates cells (dataChanged), so selections survive
// the periodic refresh.
class RunQueueModel : public QAbstractTableModel {
    Q_OBJECT

public:
    enum Column {
        IdColumn,
        NameColumn,
        StatusColumn,
        ProgressColumn,
        DeviceColumn,
        MethodColumn,
        TaskColumn,
        MetricColumn,
        PeakMemoryColumn,
        ErrorColumn,
        ColumnCount
    };
    // Qt::UserRole on any column: the run id; ProgressRole on ProgressColumn: percent 0-100 (-1 unknown).
    static constexpr int RunIdRole = Qt::UserRole;
    static constexpr int ProgressRole = Qt::UserRole + 1;
    static constexpr int StatusRole = Qt::UserRole + 2; // the RunState as int

    explicit RunQueueModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    void setRuns(std::vector<RunRecord> runs);
    // Live progress from a worker, between two snapshots. phase: what a running run does before its first
    // step ("Fisher initialisation 300/1024", shown in the Progress column with phasePercent); empty clears
    // it.
    void setProgress(
        qint64 runId, qint64 step, qint64 totalSteps, const QString& phase = {}, int phasePercent = -1);

    // Why queued runs wait (RunQueueController::waitingReasons()): shown in the Error column of a queued
    // run ("waits: ...") and as the tooltip of its Status.
    void setWaitingReasons(const std::map<qint64, QString>& reasons);
    QString waitingReason(qint64 runId) const;

    const std::vector<RunRecord>& runs() const { return m_runs; }
    const RunRecord* run(int row) const;
    int rowOf(qint64 runId) const;

    // The display order of the snapshot rows.
    static void sortForQueue(std::vector<RunRecord>& runs);
    static QString statusText(RunState status);

private:
    struct Phase {
        QString text;
        int percent = -1;
    };
    const Phase* phaseOf(const RunRecord& r) const;

    std::vector<RunRecord> m_runs;
    std::map<qint64, Phase> m_phases; // by run id, running runs only
    std::map<qint64, QString> m_waiting; // by run id
};

} // namespace ladder::widgets
