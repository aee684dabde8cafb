#include "ComputeDeviceModel.h"

#include <exception>
#include <memory>
#include <utility>

#include <QPromise>
#include <QThreadPool>

namespace ladder::widgets {
namespace {
constexpr double kBytesPerGiB = 1024.0 * 1024.0 * 1024.0;
} // namespace

ComputeDeviceModel::ComputeDeviceModel(QObject* parent)
    : QAbstractTableModel(parent)
    , m_query(&ladder::cuda::devices)
    , m_watcher(new QFutureWatcher<QueryResult>(this))
{
    connect(m_watcher, &QFutureWatcherBase::finished, this, &ComputeDeviceModel::queryFinished);
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

void ComputeDeviceModel::setGpuQuery(GpuQuery query)
{
    m_query = std::move(query);
}

bool ComputeDeviceModel::isQuerying() const
{
    return m_watcher->isRunning();
}

void ComputeDeviceModel::refresh()
{
    std::vector<ComputeDevice> devices { cpuDevice() };
    devices.insert(devices.end(), m_gpus.begin(), m_gpus.end());
    setDevices(std::move(devices));
    if (isQuerying())
        m_requery = true; // the running query may predate what the caller wants to see: ask once more
    else
        startQuery();
}

void ComputeDeviceModel::startQuery()
{
    // QPromise is move-only and QThreadPool::start() takes a copyable callable: share it.
    auto promise = std::make_shared<QPromise<QueryResult>>();
    m_watcher->setFuture(promise->future());
    promise->start();
    QThreadPool::globalInstance()->start([promise, query = m_query] {
        QueryResult result;
        try {
            if (query)
                result.gpus = query();
        } catch (const std::exception& e) {
            result.error = QString::fromUtf8(e.what());
        } catch (...) {
            result.error = QStringLiteral("unknown error");
        }
        promise->addResult(std::move(result));
        promise->finish();
    });
}

void ComputeDeviceModel::queryFinished()
{
    const QFuture<QueryResult> future = m_watcher->future();
    if (future.resultCount() > 0) {
        QueryResult result = future.result();
        m_queryError = result.error;
        if (result.error.isEmpty())
            m_gpus = std::move(result.gpus);
    }
    std::vector<ComputeDevice> devices { cpuDevice() };
    devices.insert(devices.end(), m_gpus.begin(), m_gpus.end());
    setDevices(std::move(devices));
    Q_EMIT gpusQueried();
    if (m_requery) {
        m_requery = false;
        startQuery();
    }
}

} // namespace ladder::widgets
