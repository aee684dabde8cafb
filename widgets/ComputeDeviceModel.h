#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <QAbstractTableModel>
#include <QFutureWatcher>
#include <QString>

#include "device/Devices.h"

namespace ladder::widgets {

// The compute devices LadderBench can train on, one row each: id, name, total and free memory.
// Holds plain ladder::ComputeDevice values, so it never touches LibTorch itself.
//
// refresh() shows the CPU row at once (ladder::cpuDevice(): one small file read) beside the GPUs of the
// last query, and asks for the GPUs on a worker thread of QThreadPool::globalInstance(): the CUDA query
// creates a context on every GPU and can take seconds, which the GUI thread must never wait for. The answer
// comes back through a QFutureWatcher owned by the model (a model deleted meanwhile gets nothing) and is
// kept until the next refresh. A refresh while a query runs asks again once that one has answered.
class ComputeDeviceModel : public QAbstractTableModel {
    Q_OBJECT

public:
    // Returns the GPUs (called on a worker thread; may throw: the message goes to lastQueryError()).
    using GpuQuery = std::function<std::vector<ComputeDevice>()>;

    enum Column { IdColumn, NameColumn, TotalMemoryColumn, FreeMemoryColumn, ColumnCount };

    explicit ComputeDeviceModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    const std::vector<ComputeDevice>& devices() const { return m_devices; }
    // Replaces every row (tests inject devices here; refresh() feeds it the CPU and the queried GPUs).
    void setDevices(std::vector<ComputeDevice> devices);

    // The GPU query refresh() runs off the GUI thread (default: ladder::cuda::devices). Tests inject one.
    void setGpuQuery(GpuQuery query);
    // True while a GPU query is running.
    bool isQuerying() const;
    // The last query's error (empty when it answered).
    QString lastQueryError() const { return m_queryError; }

    // "15.6 GiB" ("0.25 GiB" below 1 GiB); an unknown (zero) size reads "unknown".
    static QString formatGiB(std::uint64_t bytes);

public Q_SLOTS:
    // Queries the devices again (free memory changes as other programs run): the CPU row now, the GPUs
    // when the worker thread answers (gpusQueried()).
    void refresh();

Q_SIGNALS:
    // A GPU query answered and its rows are in the model.
    void gpusQueried();

private:
    struct QueryResult {
        std::vector<ComputeDevice> gpus;
        QString error;
    };
    void startQuery();
    void queryFinished();

    std::vector<ComputeDevice> m_devices;
    std::vector<ComputeDevice> m_gpus; // the last query's answer
    GpuQuery m_query;
    QFutureWatcher<QueryResult>* m_watcher = nullptr;
    bool m_requery = false;
    QString m_queryError;
};

} // namespace ladder::widgets
