#pragma once

#include <QSortFilterProxyModel>
#include <QString>

namespace ladder::widgets {

// Sorting and filtering for RunsTableModel: sorts by RunsTableModel::SortRole (numbers as numbers), and
// accepts a row when its task and backbone equal the chosen ones (empty: any) and the free-text filter
// (setFilterFixedString / setFilterRegularExpression, case-insensitive) matches any column's text.
class RunsFilterProxy : public QSortFilterProxyModel {
    Q_OBJECT

public:
    explicit RunsFilterProxy(QObject* parent = nullptr);

    QString task() const { return m_task; }
    QString backbone() const { return m_backbone; }

public Q_SLOTS:
    // Exact match on the stored task name ("rte", "demo-supersense"); empty: every task.
    void setTask(const QString& task);
    // Exact match on the stored backbone ("demo" or the folder path); empty: every backbone.
    void setBackbone(const QString& backbone);

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;

private:
    QString m_task;
    QString m_backbone;
};

} // namespace ladder::widgets
