#pragma once

#include <QWidget>

class QLabel;
class QTableView;

namespace ladder::widgets {

class ComputeDeviceModel;

// The first view of the workbench: what this build is (LadderBench, LibTorch, CUDA runtime, Qt)
// and which compute devices it can train on, with their total and free memory (the CPU at once, the GPUs
// when the model's background query answers), and how to use the window.
class OverviewPanel : public QWidget {
    Q_OBJECT

public:
    explicit OverviewPanel(QWidget* parent = nullptr);

    ComputeDeviceModel* deviceModel() const { return m_deviceModel; }
    QTableView* deviceTable() const { return m_deviceTable; }

public Q_SLOTS:
    void refreshDevices();

private:
    QWidget* createBuildGroup();
    QWidget* createDeviceGroup();
    QWidget* createGettingStartedGroup();
    void fitDeviceTableHeight();

    ComputeDeviceModel* m_deviceModel = nullptr;
    QTableView* m_deviceTable = nullptr;
    QLabel* m_queryLabel = nullptr;
};

} // namespace ladder::widgets
