#pragma once

#include <cstdint>
#include <vector>

#include <QAbstractTableModel>

#include "device/Devices.h"

namespace ladder::widgets {

// The compute devices LadderBench can train on, one row each: id, name, total and free memory.
// Holds plain ladder::ComputeDevice values, so it never touches LibTorch itself.
class ComputeDeviceModel : public QAbstractTableModel {
    Q_OBJECT

public:
    enum Column { IdColumn, NameColumn, TotalMemoryColumn, FreeMemoryColumn, ColumnCount };

    explicit ComputeDeviceModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    const std::vector<ComputeDevice>& devices() const { return m_devices; }
    // Replaces every row (tests inject devices here; refresh() feeds it ladder::listComputeDevices()).
    void setDevices(std::vector<ComputeDevice> devices);

    // "15.6 GiB" ("0.25 GiB" below 1 GiB); an unknown (zero) size reads "unknown".
    static QString formatGiB(std::uint64_t bytes);

public Q_SLOTS:
    // Queries the devices again (free memory changes as other programs run).
    void refresh();

private:
    std::vector<ComputeDevice> m_devices;
};

} // namespace ladder::widgets
