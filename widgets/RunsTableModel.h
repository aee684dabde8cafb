#pragma once

#include <cstdint>
#include <vector>

#include <QAbstractTableModel>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// The runs of a results store as a table: one row per RunRecord, in the order given (the store's id
// order). Sort and filter it through a QSortFilterProxyModel (RunsFilterProxy): SortRole gives numbers for
// numeric columns (missing values sort first) and text otherwise.
//
// setRuns() applies the difference to the rows it has: changed rows emit dataChanged, vanished runs are
// removed, runs appended at the end are inserted; only a reordering resets the model. So a selection and
// the scroll position survive the periodic reloads of StoreReader (connect its runsLoaded to setRuns).
class RunsTableModel : public QAbstractTableModel {
    Q_OBJECT

public:
    // What a reader compares comes first, so that it is visible without scrolling at the default window
    // size: the name, the peak memory, the accuracies and the status; the knobs behind the name follow.
    enum Column {
        IdColumn,
        NameColumn,
        PeakMemoryColumn,
        BestValidationColumn,
        TestColumn,
        StatusColumn,
        MethodColumn,
        OptionsColumn,
        BackboneColumn,
        TaskColumn,
        SeedColumn,
        TrainablePercentColumn,
        WallTimeColumn,
        ThroughputColumn,
        ColumnCount
    };
    enum Role {
        SortRole = Qt::UserRole + 1, // double for numeric columns (missing: -infinity), QString otherwise
        RunIdRole, // qint64, every column
        RawValueRole // the unformatted value (double or QString), invalid when missing; CSV export uses it
    };

    explicit RunsTableModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    // The name column is editable: an edit shows at once and emits renameRequested(); the store's next
    // reload confirms it (or brings the old name back when the rename failed).
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;

    const std::vector<RunRecord>& runs() const { return m_runs; }
    // The row of run `runId`, or -1.
    int rowOfRun(std::int64_t runId) const;
    // nullptr for a row out of range.
    const RunRecord* runAt(int row) const;

    // "r=8 keep=1,2,3" for LST, "hidden=48", "rank=32 alpha=32", "prompts=100", plus "freeze=N" when set:
    // the options that tell runs of one method apart (all fields of the JSON when the method is unknown).
    static QString optionsSummary(const RunRecord& run);
    // "4,892.1 MB" (MB = 10^6 bytes, as the CLI prints).
    static QString formatMegabytes(std::int64_t bytes);
    // "42.0 s", "12 min 05 s", "2 h 03 min".
    static QString formatDuration(double seconds);
    // The backbone as shown: "demo", or the last folder name of a checkpoint path.
    static QString backboneLabel(const std::string& backbone);

public Q_SLOTS:
    void setRuns(const std::vector<ladder::RunRecord>& runs);

Q_SIGNALS:
    // The user renamed run `runId` in the table (a non-blank name, trimmed).
    void renameRequested(qint64 runId, const QString& name);

private:
    QVariant displayValue(const RunRecord& run, Column column) const;
    QVariant rawValue(const RunRecord& run, Column column) const;

    std::vector<RunRecord> m_runs;
};

// Field-by-field equality of two records as the table shows them (used to emit dataChanged only for
// rows that changed).
bool sameRunRecord(const RunRecord& a, const RunRecord& b);

} // namespace ladder::widgets
