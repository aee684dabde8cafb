#pragma once

#include <QMainWindow>
#include <QStringList>

class QAction;
class QLabel;
class QTabWidget;

namespace ladder::widgets {

class OverviewPanel;

// The workbench window: menus, one tab per view, a status bar. Each view is its own widget class;
// later milestones add the experiment form, the run queue, live charts and the compare plot as tabs.
class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);

    // Names accepted by showView(), in tab order ("overview", ...).
    QStringList viewNames() const;
    // Makes the named view current; false (and nothing changes) for an unknown name.
    bool showView(const QString& name);
    QString currentViewName() const;

    OverviewPanel* overviewPanel() const { return m_overview; }

public Q_SLOTS:
    void showAbout();

private:
    void createActions();
    void createMenus();
    void createStatusBar();
    void addView(QWidget* view, const QString& name, const QString& title);
    void updateDeviceStatus();

    QTabWidget* m_views = nullptr;
    OverviewPanel* m_overview = nullptr;
    QLabel* m_buildStatus = nullptr;

    QAction* m_quitAction = nullptr;
    QAction* m_refreshDevicesAction = nullptr;
    QAction* m_aboutAction = nullptr;
    QAction* m_aboutQtAction = nullptr;
};

} // namespace ladder::widgets
