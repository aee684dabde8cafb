#pragma once

#include <functional>
#include <memory>

#include <QMainWindow>
#include <QStringList>

class QAction;
class QLabel;
class QTabWidget;
class QThread;

namespace ladder::widgets {

class CompareTab;
class ExperimentForm;
class RunDetailsView;
class LiveView;
class OverviewPanel;
class QueueView;
class RunQueueController;
class RunQueueModel;
class StoreImporter;
class StoreWatcher;
class WorkbenchSettings;

struct MainWindowOptions {
    QString storePath; // empty: the settings' store path (default ResultsStore::defaultPath())
    QString settingsFile; // empty: QSettings' native location
    // Start the queue. Even when true, a store that already holds queued runs (left from an earlier session)
    // opens with the queue paused and the queue view says "N runs are queued: Start": the window never
    // starts training by itself. false: the queue stays paused (--screenshot).
    bool startQueue = true;
    // With startQueue: start the queue even when the store already holds queued runs (ladderbench
    // --start-queue: a queue prepared by a script, trained unattended).
    bool startQueuedRuns = false;
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
    // Waits (processing events) until the background GPU query has answered; false after timeoutMs. Only
    // for --screenshot: the interactive window shows the GPUs whenever the query answers.
    bool waitForDevices(int timeoutMs);

    // Asked before closing while runs are active (default: a question box); true closes (the runs are
    // cancelled and the window closes when they have stopped).
    void setCloseConfirmation(std::function<bool(int activeRuns)> confirm);
    // Asked before cancelling a running run (default: a question box whose default button is No); true
    // cancels. Queued runs are cancelled without asking. Tests that do not drive the box set this.
    void setCancelConfirmation(std::function<bool(qint64 runId)> confirm);

public Q_SLOTS:
    void showAbout();
    // Queues the form's runs (one per seed) and shows the live view of the first.
    void runFromForm();
    // Cancels the queue's selected run (else the live view's), asking first when it is running.
    void cancelSelectedRun();
    // Cancels one run, asking first when it is running; false when not asked through or refused.
    bool requestCancel(qint64 runId);
    // Tools > Sweeps...: the sweep dialog on the form's spec; the runs it returns are queued.
    void openSweeps();
    // Shows a run's live view (0: none).
    void showRun(qint64 runId);
    // File > Import Results...: asks for store files and imports them (importResults()).
    void importResultsWithDialog();
    // Merges the runs of `files` (other results stores, e.g. a Slurm sweep's DIR/run-*.sqlite) into this
    // window's store on a thread of its own (StoreImporter); the views pick the new runs up as they do any
    // writer's. A message says what was imported and names each file skipped and why. False while an
    // import runs.
    bool importResults(const QStringList& files);
    StoreImporter* storeImporter() const { return m_importer; }
    // Run > Export Run... and the compare table's context menu: the export dialog (ExportDialog) for
    // `runId`, else the compare view's selected run, else the queue's.
    void exportRunWithDialog(qint64 runId = 0);
    // File > Import Bundle...: asks for a ladder bundle folder and imports it (importBundle()).
    void importBundleWithDialog();
    // Adds a ladder bundle (export/LadderBundle.h) to this window's store as a finished run, on a thread of
    // its own; bundleImported tells how it went. False while an import runs or no store is open.
    bool importBundle(const QString& dir);

Q_SIGNALS:
    // importBundle() ended: the run's id in this store (0 on failure) and the message shown.
    void bundleImported(qint64 runId, const QString& message);
    // A message that was shown to the user as a non-modal box (tests and logs listen here).
    void errorShown(const QString& message);
    // The run queue was asked to cancel a run (after the user confirmed, for a running one).
    void cancelSent(qint64 runId);

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
    void resumeRun(qint64 runId);
    void removeRun(qint64 runId);
    // File > Open Results Store opens an existing store only (it never creates one); File > New Results
    // Store creates one.
    void openStoreWithDialog();
    void newStoreWithDialog();
    void switchToStore(const QString& path, bool create);
    bool openStore(const QString& path, QString* error, bool create = true);
    void restoreForm();
    // Pauses the queue when the store holds queued runs (the queue view's banner offers Start); returns
    // the store's run count and queued count.
    void pauseForQueuedRuns(int* runs, int* queued);
    // The live view follows the run that trains: a run that starts is shown unless the live view shows
    // another training run or a run the user picked.
    void followStartedRun(qint64 runId);
    qint64 trainingRunToShow() const;

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
    std::function<bool(qint64)> m_confirmCancel;
    qint64 m_followedRun = 0; // the run the live view was switched to automatically
    bool m_closing = false;

    QAction* m_quitAction = nullptr;
    QAction* m_openStoreAction = nullptr;
    QAction* m_newStoreAction = nullptr;
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
    QAction* m_importAction = nullptr;
    StoreImporter* m_importer = nullptr;
    // Export and bundles (MainWindowExport.cpp).
    void createExportActions();
    QAction* m_exportRunAction = nullptr;
    QAction* m_importBundleAction = nullptr;
    QThread* m_bundleImport = nullptr;
};

} // namespace ladder::widgets
