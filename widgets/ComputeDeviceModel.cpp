#include "ComputeDeviceModel.h"

#include <utility>

namespace ladder::widgets {
namespace {
constexpr double kBytesPerGiB = 1024.0 * 1024.0 * 1024.0;
} // namespace

ComputeDeviceModel::ComputeDeviceModel(QObject* parent)
    : QAbstractTableModel(parent)
{
}

int ComputeDeviceModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_devices.size());
}

int ComputeDeviceModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant ComputeDeviceModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const ComputeDevice& device = m_devices[static_cast<std::size_t>(index.row())];
    const auto column = static_cast<Column>(index.column());
    switch (role) {
    case Qt::DisplayRole:
        switch (column) {
        case IdColumn:
            return QString::fromStdString(device.id);
        case NameColumn:
            return QString::fromStdString(device.name);
        case TotalMemoryColumn:
            return formatGiB(device.totalBytes);
        case FreeMemoryColumn:
            return formatGiB(device.freeBytes);
        case ColumnCount:
            break;
        }
        break;
    case Qt::ToolTipRole:
        if (column == TotalMemoryColumn || column == FreeMemoryColumn) {
            const auto bytes = column == TotalMemoryColumn ? device.totalBytes : device.freeBytes;
            return tr("%L1 bytes").arg(bytes);
        }
        break;
    case Qt::TextAlignmentRole:
        if (column == TotalMemoryColumn || column == FreeMemoryColumn)
            return QVariant::fromValue(Qt::Alignment(Qt::AlignRight | Qt::AlignVCenter));
        break;
    default:
        break;
    }
    return {};
}

QVariant ComputeDeviceModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
    case IdColumn:
        return tr("Device");
    case NameColumn:
        return tr("Name");
    case TotalMemoryColumn:
        return tr("Total memory");
    case FreeMemoryColumn:
        return tr("Free memory");
    default:
        return {};
    }
}

void ComputeDeviceModel::setDevices(std::vector<ComputeDevice> devices)
{
    beginResetModel();
    m_devices = std::move(devices);
    endResetModel();
}

QString ComputeDeviceModel::formatGiB(std::uint64_t bytes)
{
    if (bytes == 0)
        return tr("unknown");
    const double gib = static_cast<double>(bytes) / kBytesPerGiB;
    return tr("%1 GiB").arg(gib, 0, 'f', gib < 1.0 ? 2 : 1);
}

void ComputeDeviceModel::refresh()
{
    setDevices(listComputeDevices());
}

} // namespace ladder::widgets
