#pragma once

#include <functional>
#include <memory>

#include <QMainWindow>
#include <QStringList>

class QAction;
class QLabel;
class QTabWidget;

namespace ladder::widgets {

class CompareTab;
class ExperimentForm;
class RunDetailsView;
class LiveView;
class OverviewPanel;
class QueueView;
class RunQueueController;
class RunQueueModel;
class StoreWatcher;
class WorkbenchSettings;

struct MainWindowOptions {
    QString storePath; // empty: the settings' store path (default ResultsStore::defaultPath())
    QString settingsFile; // empty: QSettings' native location
    bool startQueue = true; // start queued runs (false: the queue starts paused, e.g. for --screenshot)
};

// The workbench window: menus, one tab per view (overview, experiment form, run queue, live view, compare),
// a run-details dock beside them, a status bar. The window wires the views to the run queue
// (RunQueueController: worker threads) and the store reader (StoreWatcher: reads off the GUI thread); each
// view is its own widget class.
class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);
    explicit MainWindow(const MainWindowOptions& options, QWidget* parent = nullptr);
    ~MainWindow() override;

    // Names accepted by showView(), in tab order ("overview", "experiment", "queue", "live", ...).
    QStringList viewNames() const;
    // Makes the named view current; false (and nothing changes) for an unknown name.
    bool showView(const QString& name);
    QString currentViewName() const;

    OverviewPanel* overviewPanel() const { return m_overview; }
    ExperimentForm* experimentForm() const { return m_form; }
    QueueView* queueView() const { return m_queueView; }
    RunQueueModel* queueModel() const { return m_queueModel; }
    LiveView* liveView() const { return m_live; }
    CompareTab* compareTab() const { return m_compare; }
    RunDetailsView* runDetails() const { return m_details; }
    RunQueueController* queueController() const { return m_controller; }
    QString storePath() const { return m_storePath; }

    // Reads the runs and the shown run's series on the calling (GUI) thread, so a screenshot taken right
    // after shows them. Only for --screenshot: the interactive window reads through the StoreWatcher.
    bool loadStoreNow(QString* error = nullptr);
    // Waits (processing events) until the compare tab has its first runs; false after timeoutMs.
    bool waitForCompare(int timeoutMs);

    // Asked before closing while runs are active (default: a question box); true closes (the runs are
    // cancelled and the window closes when they have stopped).
    void setCloseConfirmation(std::function<bool(int activeRuns)> confirm);

public Q_SLOTS:
    void showAbout();
    // Queues the form's runs (one per seed) and shows the live view of the first.
    void runFromForm();
    void cancelSelectedRun();
    // Tools > Sweeps...: the sweep dialog on the form's spec; the runs it returns are queued.
    void openSweeps();
    // Shows a run's live view (0: none).
    void showRun(qint64 runId);

Q_SIGNALS:
    // A message that was shown to the user as a non-modal box (tests and logs listen here).
    void errorShown(const QString& message);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void createViews();
    void createActions();
    void createMenus();
    void createStatusBar();
    void connectQueue();
    void addView(QWidget* view, const QString& name, const QString& title);
    void updateDeviceStatus();
    void showError(const QString& title, const QString& message);
    void duplicateRun(qint64 runId);
    void removeRun(qint64 runId);
    void openStoreWithDialog();
    bool openStore(const QString& path, QString* error);
    void restoreForm();

    MainWindowOptions m_options;
    std::unique_ptr<WorkbenchSettings> m_settings;
    QString m_storePath;
    QTabWidget* m_views = nullptr;
    OverviewPanel* m_overview = nullptr;
    ExperimentForm* m_form = nullptr;
    RunQueueModel* m_queueModel = nullptr;
    QueueView* m_queueView = nullptr;
    LiveView* m_live = nullptr;
    CompareTab* m_compare = nullptr;
    RunDetailsView* m_details = nullptr;
    RunQueueController* m_controller = nullptr;
    StoreWatcher* m_watcher = nullptr;
    QLabel* m_buildStatus = nullptr;
    QLabel* m_queueStatus = nullptr;
    std::function<bool(int)> m_confirmClose;
    bool m_closing = false;

    QAction* m_quitAction = nullptr;
    QAction* m_openStoreAction = nullptr;
    QAction* m_refreshDevicesAction = nullptr;
    QAction* m_aboutAction = nullptr;
    QAction* m_aboutQtAction = nullptr;
    QAction* m_runAction = nullptr;
    QAction* m_cancelAction = nullptr;
    QAction* m_savePresetAction = nullptr;
    QAction* m_loadPresetAction = nullptr;
    QAction* m_exportAction = nullptr;
    QAction* m_filterAction = nullptr;
    QAction* m_sweepsAction = nullptr;
};

} // namespace ladder::widgets
