#include "MainWindow.h"

#include <QApplication>
#include <QCloseEvent>
#include <QDeadlineTimer>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>

#include <nlohmann/json.hpp>

#include "BackbonePicker.h"
#include "CompareTab.h"
#include "ComputeDeviceModel.h"
#include "ExperimentForm.h"
#include "LiveView.h"
#include "OverviewPanel.h"
#include "QueueView.h"
#include "RunDetailsView.h"
#include "RunQueueController.h"
#include "RunQueueModel.h"
#include "RunWorker.h"
#include "StoreWatcher.h"
#include "SweepDialog.h"
#include "TaskPicker.h"
#include "VersionInfo.h"
#include "WorkbenchSettings.h"
#include "store/ResultsStore.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder::widgets {
namespace {
constexpr int kDefaultWidth = 1280;
constexpr int kDefaultHeight = 800;
constexpr int kStatusMessageMs = 8000;
constexpr const char* kViewNameProperty = "ladderViewName";
// What an error box quotes of a message from a file or the store: one line (docs/RELIABILITY.md).
constexpr std::size_t kMaxMessageChars = 400;
} // namespace

MainWindow::MainWindow(QWidget* parent)
    : MainWindow(MainWindowOptions(), parent)
{
}

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent)
    : QMainWindow(parent)
    , m_options(options)
    , m_settings(std::make_unique<WorkbenchSettings>(options.settingsFile))
{
    setWindowTitle(QStringLiteral("LadderBench"));
    setObjectName(QStringLiteral("mainWindow"));

    m_views = new QTabWidget(this);
    m_views->setObjectName(QStringLiteral("views"));
    m_views->setDocumentMode(true);
    setCentralWidget(m_views);

    createViews();
    createActions();
    createMenus();
    createStatusBar();
    connectQueue();

    connect(
        m_overview->deviceModel(), &QAbstractItemModel::modelReset, this, &MainWindow::updateDeviceStatus);
    updateDeviceStatus();
    restoreForm();

    QString error;
    const QString store = options.storePath.isEmpty() ? m_settings->storePath() : options.storePath;
    m_controller->setPaused(true);
    m_queueView->setPaused(true);
    int runs = 0, queued = 0;
    if (!openStore(store, &error))
        showError(tr("Results store"), error);
    else
        pauseForQueuedRuns(&runs, &queued);
    // Runs left queued wait for the user's Start (the queue view's banner); an empty queue starts at once,
    // and so does a queue the command line asked to start (--start-queue).
    const bool start
        = options.startQueue && (queued == 0 || options.startQueuedRuns) && !m_storePath.isEmpty();
    m_controller->setPaused(!start);
    m_queueView->setPaused(!start);
    if (start && queued > 0)
        statusBar()->showMessage(
            tr("%n queued run(s) started (--start-queue)", nullptr, queued), kStatusMessageMs);
    // A store without runs: the form is where to begin. Queued runs waiting: the queue, with its Start.
    if (queued > 0)
        showView(QStringLiteral("queue"));
    else if (runs == 0)
        showView(QStringLiteral("experiment"));

    resize(kDefaultWidth, kDefaultHeight);
}

MainWindow::~MainWindow()
{
    // Workers stop before the views that listen to them go.
    m_controller->setPaused(true);
    m_controller->cancelAll();
    m_controller->waitForWorkers();
}

void MainWindow::createViews()
{
    m_overview = new OverviewPanel;
    addView(m_overview, QStringLiteral("overview"), tr("Overview"));
    m_form = new ExperimentForm;
    m_form->setDeviceModel(m_overview->deviceModel());
    addView(m_form, QStringLiteral("experiment"), tr("Experiment"));
    m_queueModel = new RunQueueModel(this);
    m_queueView = new QueueView(m_queueModel);
    addView(m_queueView, QStringLiteral("queue"), tr("Queue"));
    m_live = new LiveView;
    addView(m_live, QStringLiteral("live"), tr("Live"));
    m_compare = new CompareTab;
    m_compare->setDetailsVisible(false); // the window's run-details dock shows them once, for every view
    addView(m_compare, QStringLiteral("compare"), tr("Compare"));

    // The shown run's details (spec, figures, memory breakdown, log, evaluations) in a dock, read through the
    // compare tab's store reader (off the GUI thread).
    m_details = new RunDetailsView;
    m_details->setObjectName(QStringLiteral("runDetailsDock"));
    m_details->setReader(m_compare->reader());
    auto* dock = new QDockWidget(tr("Run details"), this);
    dock->setObjectName(QStringLiteral("runDetailsDockWidget"));
    dock->setWidget(m_details);
    dock->setFeatures(
        QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable | QDockWidget::DockWidgetClosable);
    addDockWidget(Qt::RightDockWidgetArea, dock);
    resizeDocks({ dock }, { 360 }, Qt::Horizontal);
    m_controller = new RunQueueController(this);
    m_watcher = new StoreWatcher(this);
}

void MainWindow::restoreForm()
{
    for (const QString& folder : m_settings->recentBackbones())
        m_form->backbonePicker()->addFolder(folder, false);
    const QString last = m_settings->lastSpecJson();
    if (last.isEmpty()) {
        // First launch: the demo backbone and task are preselected (the form's own defaults).
        nlohmann::json spec = ExperimentForm::firstLaunchSpec();
        spec["training"]["threads"] = m_settings->threads();
        m_form->setSpecJson(spec);
        return;
    }
    QString error;
    nlohmann::json spec;
    try {
        spec = parseJson(last.toStdString(), "form/lastSpec");
    } catch (const std::exception& e) {
        error = QString::fromUtf8(e.what());
    }
    if (error.isEmpty())
        m_form->setSpecJson(spec, &error);
    // A box, not the status bar: the device list's "Ready" replaced that line within a second, and the form
    // the user left came back as the first launch's without a word.
    if (!error.isEmpty())
        showError(tr("Experiment"),
            tr("The last experiment form could not be restored from %1 (the form shows the defaults): %2")
                .arg(m_settings->fileName(),
                    QString::fromStdString(oneLine(error.toStdString(), kMaxMessageChars))));
}

bool MainWindow::openStore(const QString& path, QString* error, bool create)
{
    if (m_controller->activeCount() > 0) {
        if (error)
            *error = tr("runs are active: cancel them before opening another store");
        return false;
    }
    if (!m_controller->open(path, error, create))
        return false;
    m_storePath = path;
    m_watcher->setStorePath(path);
    m_compare->setStorePath(path);
    // "results.sqlite — LadderBench": the platform appends the application display name unless the title
    // already ends with it, so the title ends with it (a title starting with it came out doubled).
    setWindowFilePath(path);
    setWindowTitle(QStringLiteral("%1 — LadderBench").arg(QFileInfo(path).fileName()));
    return true;
}

void MainWindow::pauseForQueuedRuns(int* runs, int* queued)
{
    *runs = 0;
    *queued = 0;
    // One read on the GUI thread, once per opened store, through the controller's connection.
    if (!m_controller->countRuns(runs, queued) || *queued == 0)
        return;
    m_controller->setPaused(true);
    m_queueView->setPaused(true);
    statusBar()->showMessage(
        tr("%n run(s) are queued from before: the queue is paused until you press Start (Queue tab)", nullptr,
            *queued),
        kStatusMessageMs);
}

void MainWindow::connectQueue()
{
    connect(m_form, &ExperimentForm::runRequested, this, &MainWindow::runFromForm);
    connect(m_form, &ExperimentForm::problemReported, this,
        [this](const QString& message) { showError(tr("Experiment"), message); });
    connect(m_form, &ExperimentForm::presetFolderChosen, this,
        [this](const QString& folder) { m_settings->setPresetFolder(folder); });
    connect(
        m_form->backbonePicker(), &BackbonePicker::foldersChanged, this, [this](const QStringList& folders) {
            for (auto it = folders.crbegin(); it != folders.crend(); ++it)
                m_settings->addRecentBackbone(*it);
        });
    connect(m_form->taskPicker(), &TaskPicker::pathChosen, this,
        [this](const QString& path) { m_settings->addRecentTaskPath(path); });

    connect(m_watcher, &StoreWatcher::runsChanged, this, [this](const RunsSnapshot& snapshot) {
        m_queueModel->setRuns(snapshot.runs);
        // A run shown before its row existed (just queued) gets selected once the row is there.
        if (m_live->runId() > 0 && m_queueView->selectedRun() != m_live->runId())
            m_queueView->selectRun(m_live->runId());
    });
    connect(m_watcher, &StoreWatcher::metricsArrived, m_live, &LiveView::applyBatch);
    connect(m_watcher, &StoreWatcher::readFailed, this,
        [this](const QString& message) { statusBar()->showMessage(message, kStatusMessageMs); });

    connect(m_controller, &RunQueueController::queueChanged, m_watcher, &StoreWatcher::refresh);
    connect(m_controller, &RunQueueController::runProgress, this, [this](const RunProgress& p) {
        m_queueModel->setProgress(p.runId, p.step, p.totalSteps, p.phase, p.phasePercent);
    });
    connect(m_controller, &RunQueueController::runStarted, this, [this](qint64 runId, const QString& device) {
        statusBar()->showMessage(tr("Run %1 started on %2").arg(runId).arg(device), kStatusMessageMs);
        followStartedRun(runId);
    });
    connect(m_controller, &RunQueueController::runFinished, this,
        [this](qint64 runId, RunState status, const QString&) {
            statusBar()->showMessage(
                tr("Run %1 %2").arg(runId).arg(RunQueueModel::statusText(status)), kStatusMessageMs);
        });
    connect(m_controller, &RunQueueController::runFailed, this, [this](qint64 runId, const QString& message) {
        showError(tr("Run %1 failed").arg(runId), tr("Run %1 failed:\n%2").arg(runId).arg(message));
    });
    connect(m_controller, &RunQueueController::storeError, this,
        [this](const QString& message) { showError(tr("Results store"), message); });
    connect(m_controller, &RunQueueController::runsIdle, this, [this] {
        if (m_closing)
            close();
    });
    // Several runs per device: the GPUs' free memory as the device list has it, and why queued runs wait.
    connect(m_overview->deviceModel(), &QAbstractItemModel::modelReset, m_controller,
        [this] { m_controller->setDevices(m_overview->deviceModel()->devices()); });
    m_controller->setDevices(m_overview->deviceModel()->devices());
    connect(m_controller, &RunQueueController::waitingReasonsChanged, this,
        [this] { m_queueModel->setWaitingReasons(m_controller->waitingReasons()); });

    connect(m_queueView, &QueueView::selectedRunChanged, this, &MainWindow::showRun);
    connect(m_queueView, &QueueView::cancelRequested, this, &MainWindow::requestCancel);
    connect(m_queueView, &QueueView::removeRequested, this, &MainWindow::removeRun);
    connect(m_queueView, &QueueView::moveRequested, this, [this](qint64 runId, int offset) {
        QString error;
        if (!m_controller->move(runId, offset, &error))
            showError(tr("Queue"), error);
    });
    connect(m_queueView, &QueueView::duplicateRequested, this, &MainWindow::duplicateRun);
    connect(m_queueView, &QueueView::resumeRequested, this, &MainWindow::resumeRun);
    connect(m_queueView, &QueueView::pauseToggled, m_controller, &RunQueueController::setPaused);
    connect(m_compare, &CompareTab::runSelected, this, [this](qint64 runId) {
        if (runId > 0)
            showRun(runId);
    });
    connect(m_compare, &CompareTab::renameRequested, this, [this](qint64 runId, const QString& name) {
        QString error;
        if (!m_controller->rename(runId, name, &error))
            showError(tr("Rename"), error);
        m_compare->reload(); // the store's name, renamed or not
    });
}

QStringList MainWindow::viewNames() const
{
    QStringList names;
    for (int i = 0; i < m_views->count(); ++i)
        names << m_views->widget(i)->property(kViewNameProperty).toString();
    return names;
}

bool MainWindow::showView(const QString& name)
{
    const int index = static_cast<int>(viewNames().indexOf(name));
    if (index < 0)
        return false;
    m_views->setCurrentIndex(index);
    return true;
}

QString MainWindow::currentViewName() const
{
    const QWidget* current = m_views->currentWidget();
    return current ? current->property(kViewNameProperty).toString() : QString();
}

void MainWindow::showAbout()
{
    QMessageBox::about(this, tr("About LadderBench"), VersionInfo::current().aboutHtml());
}

void MainWindow::runFromForm()
{
    std::vector<RunSpec> specs;
    QString error;
    if (!m_form->specs(&specs, &error)) {
        showError(tr("Experiment"), error);
        return;
    }
    std::vector<qint64> ids;
    if (!m_controller->enqueue(specs, &ids, &error)) {
        showError(tr("Queue"), error);
        return;
    }
    m_settings->setLastSpecJson(QString::fromStdString(m_form->specJson().dump()));
    m_settings->setThreads(static_cast<int>(specs.front().training.threads));
    QStringList names;
    for (auto id : ids)
        names << QString::number(id);
    if (ids.empty())
        return;
    if (m_queueView->isPaused()) {
        // Nothing starts while the queue is paused: show the queue, whose banner has the Start button.
        statusBar()->showMessage(tr("Queued run(s) %1; the queue is paused: press Start to train")
                                     .arg(names.join(QStringLiteral(", "))),
            kStatusMessageMs);
        showView(QStringLiteral("queue"));
        return;
    }
    statusBar()->showMessage(tr("Queued run(s) %1").arg(names.join(QStringLiteral(", "))), kStatusMessageMs);
    // The live view follows the run that trains: a run queued behind it does not take its place.
    const qint64 training = trainingRunToShow();
    m_followedRun = training > 0 ? training : ids.front();
    showRun(m_followedRun);
    showView(QStringLiteral("live"));
}

qint64 MainWindow::trainingRunToShow() const
{
    const qint64 shown = m_live->runId();
    if (shown > 0 && m_controller->isActive(shown))
        return shown;
    const std::vector<qint64> active = m_controller->activeRuns();
    return active.empty() ? 0 : active.front();
}

void MainWindow::followStartedRun(qint64 runId)
{
    const qint64 shown = m_live->runId();
    if (shown == runId)
        return;
    if (shown > 0 && m_controller->isActive(shown))
        return; // the live view shows a run that trains: keep it
    // Follow when the live view shows nothing, a run still waiting in the queue (or not listed yet), or the
    // run it followed before (which has just ended); a finished run the user picked stays.
    const RunRecord* run = m_queueModel->run(m_queueModel->rowOf(shown));
    const bool waiting = !run || run->status == RunState::Queued;
    if (shown <= 0 || waiting || shown == m_followedRun) {
        m_followedRun = runId;
        showRun(runId);
    }
}

void MainWindow::openSweeps()
{
    SweepDialog dialog(m_form->specJson(), this);
    if (dialog.exec() != QDialog::Accepted)
        return;
    const std::vector<RunSpec> all = dialog.specs();
    if (all.empty())
        return;
    // As `ladder sweep`: a spec that has finished before in this store, or that a run queued or training
    // (here or in a `ladder sweep`) holds, is not queued again.
    QString error;
    int finished = 0, active = 0;
    std::vector<qint64> ids;
    if (!m_controller->enqueueUnlessHeld(all, &ids, &finished, &active, &error)) {
        showError(tr("Sweeps"), error);
        return;
    }
    statusBar()->showMessage(tr("Queued %n sweep run(s)", nullptr, static_cast<int>(ids.size()))
            + (finished ? tr("; %n finished before, skipped", nullptr, finished) : QString())
            + (active ? tr("; %n queued or training already, skipped", nullptr, active) : QString()),
        kStatusMessageMs);
    showView(QStringLiteral("queue"));
}

void MainWindow::cancelSelectedRun()
{
    const qint64 runId = m_queueView->selectedRun() ? m_queueView->selectedRun() : m_live->runId();
    if (runId > 0)
        requestCancel(runId);
}

void MainWindow::setCancelConfirmation(std::function<bool(qint64)> confirm)
{
    m_confirmCancel = std::move(confirm);
}

bool MainWindow::requestCancel(qint64 runId)
{
    if (runId <= 0)
        return false;
    const RunRecord* run = m_queueModel->run(m_queueModel->rowOf(runId));
    const bool active = m_controller->isActive(runId);
    if (active || (run && run->status == RunState::Running)) {
        const QString name = run ? QString::fromStdString(run->name) : QString();
        const bool yes = m_confirmCancel
            ? m_confirmCancel(runId)
            : QMessageBox::question(this, tr("Cancel run"),
                  tr("Run %1%2 is training. Cancel it? It stops after the "
                     "current step and is recorded as cancelled.")
                      .arg(runId)
                      .arg(name.isEmpty() ? QString() : QStringLiteral(" (%1)").arg(name)),
                  QMessageBox::Yes | QMessageBox::No, QMessageBox::No)
                == QMessageBox::Yes;
        if (!yes)
            return false;
        if (active && !m_controller->isActive(runId)) {
            statusBar()->showMessage(tr("Run %1 had already ended").arg(runId), kStatusMessageMs);
            return false;
        }
    }
    QString error;
    if (!m_controller->cancel(runId, &error)) {
        showError(tr("Cancel"), error);
        return false;
    }
    Q_EMIT cancelSent(runId);
    return true;
}

void MainWindow::showRun(qint64 runId)
{
    if (runId == m_live->runId() && runId != 0)
        return;
    QString title;
    if (const RunRecord* run = m_queueModel->run(m_queueModel->rowOf(runId)))
        title = tr("Run %1: %2").arg(runId).arg(QString::fromStdString(run->name));
    else if (runId > 0)
        title = tr("Run %1").arg(runId);
    m_live->setRun(runId, title);
    m_watcher->watchRun(runId);
    m_details->showRun(runId);
    if (runId > 0 && m_compare->selectedRun() != runId)
        m_compare->selectRun(runId); // the compare tab follows (its runSelected() comes back here: a no-op)
    if (runId > 0 && m_queueView->selectedRun() != runId)
        m_queueView->selectRun(runId);
}

void MainWindow::duplicateRun(qint64 runId)
{
    QString spec, error;
    if (!m_controller->specOf(runId, &spec, &error)) {
        showError(tr("Duplicate"), error);
        return;
    }
    nlohmann::json json;
    try {
        json = parseJson(spec.toStdString(), "the stored spec");
    } catch (const std::exception& e) {
        showError(
            tr("Duplicate"), tr("run %1: %2").arg(runId).arg(QString::fromStdString(oneLine(e.what()))));
        return;
    }
    json.erase("name");
    json.erase("store");
    if (!m_form->setSpecJson(json, &error)) {
        showError(tr("Duplicate"), tr("run %1: %2").arg(runId).arg(error));
        return;
    }
    showView(QStringLiteral("experiment"));
    statusBar()->showMessage(
        tr("Run %1's settings are in the form: edit them and press Run").arg(runId), kStatusMessageMs);
}

void MainWindow::resumeRun(qint64 runId)
{
    qint64 step = 0;
    QString error;
    if (!m_controller->resume(runId, &step, &error)) {
        showError(tr("Resume"), error);
        return;
    }
    statusBar()->showMessage(step > 0
            ? tr("Run %1 is queued to resume from step %2").arg(runId).arg(step)
            : tr("Run %1 has no saved training state: it is queued to train again from step 0").arg(runId),
        kStatusMessageMs);
}

void MainWindow::removeRun(qint64 runId)
{
    const RunRecord* run = m_queueModel->run(m_queueModel->rowOf(runId));
    if (run && run->status != RunState::Queued) {
        const auto answer = QMessageBox::question(this, tr("Delete run"),
            tr("Delete run %1 with its metrics, evaluations and logs from the store?").arg(runId));
        if (answer != QMessageBox::Yes)
            return;
    }
    QString error;
    if (!m_controller->remove(runId, &error))
        showError(tr("Remove"), error);
}

void MainWindow::showError(const QString& title, const QString& message)
{
    // Non-modal: the window and the other runs go on while it is shown.
    auto* box = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
    box->setObjectName(QStringLiteral("errorMessageBox"));
    box->setModal(false);
    box->setWindowModality(Qt::NonModal);
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->setTextInteractionFlags(Qt::TextSelectableByMouse);
    box->show();
    statusBar()->showMessage(message.section(QLatin1Char('\n'), 0, 1).simplified(), kStatusMessageMs);
    Q_EMIT errorShown(message);
}

void MainWindow::setCloseConfirmation(std::function<bool(int)> confirm)
{
    m_confirmClose = std::move(confirm);
}

void MainWindow::closeEvent(QCloseEvent* event)
{
    const int active = m_controller->activeCount();
    if (active == 0) {
        m_settings->setLastSpecJson(QString::fromStdString(m_form->specJson().dump()));
        m_settings->sync();
        event->accept();
        return;
    }
    event->ignore();
    if (m_closing)
        return; // already cancelling: the window closes when the last run has stopped
    const bool yes = m_confirmClose
        ? m_confirmClose(active)
        : QMessageBox::question(this, tr("Runs are active"),
              tr("%n run(s) are training. Cancel them and quit?", nullptr, active))
            == QMessageBox::Yes;
    if (!yes)
        return;
    m_closing = true;
    m_controller->setPaused(true);
    m_controller->cancelAll();
    statusBar()->showMessage(tr("Cancelling %n run(s)…", nullptr, active));
}

void MainWindow::addView(QWidget* view, const QString& name, const QString& title)
{
    view->setObjectName(name);
    view->setProperty(kViewNameProperty, name);
    m_views->addTab(view, title);
}

void MainWindow::updateDeviceStatus()
{
    const auto& devices = m_overview->deviceModel()->devices();
    int gpus = 0;
    for (const auto& device : devices)
        gpus += device.id.rfind("cuda", 0) == 0 ? 1 : 0;
    statusBar()->showMessage(gpus == 0 ? tr("Ready · CPU only, no CUDA device found")
                                       : tr("Ready · CPU and %n CUDA device(s)", nullptr, gpus));
}

void MainWindow::openStoreWithDialog()
{
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Open a results store"), m_storePath, tr("LadderBench stores (*.sqlite);;All files (*)"));
    if (!path.isEmpty())
        switchToStore(path, false);
}

void MainWindow::newStoreWithDialog()
{
    const QString path = QFileDialog::getSaveFileName(
        this, tr("New results store"), m_storePath, tr("LadderBench stores (*.sqlite);;All files (*)"));
    if (path.isEmpty())
        return;
    if (QFileInfo::exists(path)) {
        showError(tr("Results store"),
            tr("%1 exists already: open it with File > Open Results Store, or choose a new name").arg(path));
        return;
    }
    switchToStore(path, true);
}

void MainWindow::switchToStore(const QString& path, bool create)
{
    // The controller closes its store before it opens another. A file that is not a store this LadderBench
    // can use (not SQLite, another application's, a newer schema, damaged) is therefore refused first by a
    // read-only look of its own, which writes nothing: it opens the file and lists its runs, as the queue
    // view will. The window goes on with the store it had.
    if (!create) {
        ResultsStore probe;
        std::string message;
        std::vector<RunRecord> runs;
        if (!probe.open(path.toStdString(), ResultsStore::OpenMode::ReadOnly, &message)
            || !probe.listRuns({}, &runs, &message)) {
            showError(tr("Results store"), QString::fromStdString(oneLine(message, kMaxMessageChars)));
            return;
        }
    }
    QString error;
    const QString previous = m_storePath;
    const bool idle = m_controller->activeCount() == 0;
    if (!openStore(path, &error, create)) {
        // It failed past the look (it cannot be written, say): open the previous store again.
        QString again;
        if (idle && !previous.isEmpty() && !openStore(previous, &again, false))
            error += tr("; %1 could not be opened again either: %2").arg(previous, again);
        showError(
            tr("Results store"), QString::fromStdString(oneLine(error.toStdString(), kMaxMessageChars)));
        return;
    }
    m_settings->setStorePath(path);
    showRun(0);
    // Queued runs in the store just opened wait for Start, as at launch.
    int runs = 0, queued = 0;
    pauseForQueuedRuns(&runs, &queued);
    if (queued > 0)
        showView(QStringLiteral("queue"));
}

bool MainWindow::waitForCompare(int timeoutMs)
{
    const QDeadlineTimer deadline(timeoutMs);
    while (!m_compare->hasLoaded() && !deadline.hasExpired())
        QApplication::processEvents(QEventLoop::AllEvents, 50);
    return m_compare->hasLoaded();
}

bool MainWindow::waitForDevices(int timeoutMs)
{
    const QDeadlineTimer deadline(timeoutMs);
    ComputeDeviceModel* devices = m_overview->deviceModel();
    while (devices->isQuerying() && !deadline.hasExpired())
        QApplication::processEvents(QEventLoop::AllEvents, 50);
    QApplication::processEvents(); // the answer's rows
    return !devices->isQuerying();
}

bool MainWindow::loadStoreNow(QString* error)
{
    ResultsStore store;
    std::string message;
    std::vector<RunRecord> runs;
    if (!store.open(m_storePath.toStdString(), &message) || !store.listRuns({}, &runs, &message)) {
        if (error)
            *error = QString::fromStdString(message);
        return false;
    }
    m_queueModel->setRuns(runs);
    // Show the running run, else the newest run that has a time series.
    qint64 shown = 0;
    for (const auto& r : m_queueModel->runs()) {
        std::int64_t count = 0;
        if (r.status == RunState::Running || (store.countMetrics(r.id, &count) && count > 0)) {
            shown = r.id;
            break;
        }
    }
    if (shown == 0)
        return true;
    showRun(shown);
    MetricsBatch batch;
    batch.runId = shown;
    batch.reset = true;
    batch.evaluationsChanged = true;
    if (!store.getMetrics(shown, ResultsStore::kAllSteps, &batch.points, &message)
        || !store.getEvaluations(shown, &batch.evaluations, &message)) {
        if (error)
            *error = QString::fromStdString(message);
        return false;
    }
    m_live->applyBatch(batch);
    m_live->replotIfDirty();
    return true;
}

} // namespace ladder::widgets
