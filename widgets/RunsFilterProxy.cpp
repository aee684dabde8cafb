#include "RunsFilterProxy.h"

#include "RunsTableModel.h"

namespace ladder::widgets {

RunsFilterProxy::RunsFilterProxy(QObject* parent)
    : QSortFilterProxyModel(parent)
{
    setSortRole(RunsTableModel::SortRole);
    setFilterKeyColumn(-1);
    setFilterCaseSensitivity(Qt::CaseInsensitive);
    setSortCaseSensitivity(Qt::CaseInsensitive);
    setDynamicSortFilter(true);
}

void RunsFilterProxy::setTask(const QString& task)
{
    if (task == m_task)
        return;
    m_task = task;
    invalidateRowsFilter();
}

void RunsFilterProxy::setBackbone(const QString& backbone)
{
    if (backbone == m_backbone)
        return;
    m_backbone = backbone;
    invalidateRowsFilter();
}

bool RunsFilterProxy::filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const
{
    const QAbstractItemModel* model = sourceModel();
    auto raw = [&](int column) {
        return model->index(sourceRow, column, sourceParent).data(RunsTableModel::RawValueRole).toString();
    };
    if (!m_task.isEmpty() && raw(RunsTableModel::TaskColumn) != m_task)
        return false;
    if (!m_backbone.isEmpty() && raw(RunsTableModel::BackboneColumn) != m_backbone)
        return false;
    return QSortFilterProxyModel::filterAcceptsRow(sourceRow, sourceParent);
}

} // namespace ladder::widgets
