// MainWindow's actions, menus and status bar (the rest of the window: MainWindow.cpp).
#include "MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QStatusBar>

#include "CompareTab.h"
#include "ExperimentForm.h"
#include "OverviewPanel.h"
#include "VersionInfo.h"

namespace ladder::widgets {

void MainWindow::createActions()
{
    m_quitAction = new QAction(tr("&Quit"), this);
    m_quitAction->setObjectName(QStringLiteral("actionQuit"));
    m_quitAction->setShortcut(QKeySequence::Quit);
    m_quitAction->setMenuRole(QAction::QuitRole);
    connect(m_quitAction, &QAction::triggered, this, &MainWindow::close);

    m_openStoreAction = new QAction(tr("&Open Results Store…"), this);
    m_openStoreAction->setObjectName(QStringLiteral("actionOpenStore"));
    connect(m_openStoreAction, &QAction::triggered, this, &MainWindow::openStoreWithDialog);
    m_importAction = new QAction(tr("&Import Results…"), this);
    m_importAction->setObjectName(QStringLiteral("actionImportResults"));
    m_importAction->setStatusTip(tr("Merge other results stores (a Slurm sweep's run-*.sqlite) into this "
                                    "one, runs already here skipped"));
    connect(m_importAction, &QAction::triggered, this, &MainWindow::importResultsWithDialog);
    m_newStoreAction = new QAction(tr("&New Results Store…"), this);
    m_newStoreAction->setObjectName(QStringLiteral("actionNewStore"));
    connect(m_newStoreAction, &QAction::triggered, this, &MainWindow::newStoreWithDialog);

    m_refreshDevicesAction = new QAction(tr("&Refresh Devices"), this);
    m_refreshDevicesAction->setObjectName(QStringLiteral("actionRefreshDevices"));
    m_refreshDevicesAction->setShortcut(QKeySequence::Refresh);
    connect(m_refreshDevicesAction, &QAction::triggered, m_overview, &OverviewPanel::refreshDevices);

    m_runAction = new QAction(tr("&Run"), this);
    m_runAction->setObjectName(QStringLiteral("actionRun"));
    m_runAction->setShortcuts(
        { QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter) });
    m_runAction->setShortcutContext(Qt::WindowShortcut);
    connect(m_runAction, &QAction::triggered, this, [this] {
        m_form->revalidate();
        if (m_form->isValid())
            runFromForm();
        else
            showError(tr("Experiment"), m_form->problem());
    });

    // No window-wide shortcut: Esc cancels only inside the queue view (QueueView's own shortcut), so an Esc
    // in a field elsewhere (the compare filter, the form) cancels nothing.
    m_cancelAction = new QAction(tr("&Cancel Selected Run"), this);
    m_cancelAction->setObjectName(QStringLiteral("actionCancelRun"));
    m_cancelAction->setStatusTip(
        tr("Cancel the queue's selected run (Esc in the queue); asks for a running run"));
    connect(m_cancelAction, &QAction::triggered, this, &MainWindow::cancelSelectedRun);

    m_savePresetAction = new QAction(tr("&Save Preset…"), this);
    m_savePresetAction->setObjectName(QStringLiteral("actionSavePreset"));
    m_savePresetAction->setShortcut(QKeySequence::Save);
    connect(m_savePresetAction, &QAction::triggered, m_form, &ExperimentForm::savePresetWithDialog);

    m_loadPresetAction = new QAction(tr("&Load Preset…"), this);
    m_loadPresetAction->setObjectName(QStringLiteral("actionLoadPreset"));
    m_loadPresetAction->setShortcut(QKeySequence::Open);
    connect(m_loadPresetAction, &QAction::triggered, m_form, &ExperimentForm::loadPresetWithDialog);

    // Export and filter act on the compare view (its plot, its runs table).
    m_exportAction = new QAction(tr("&Export Plot or Table…"), this);
    m_exportAction->setObjectName(QStringLiteral("actionExport"));
    m_exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    connect(m_exportAction, &QAction::triggered, this, [this] {
        showView(QStringLiteral("compare"));
        m_compare->exportInteractive();
    });
    m_filterAction = new QAction(tr("&Filter Runs"), this);
    m_filterAction->setObjectName(QStringLiteral("actionFilter"));
    m_filterAction->setShortcut(QKeySequence::Find);
    connect(m_filterAction, &QAction::triggered, this, [this] {
        showView(QStringLiteral("compare"));
        m_compare->focusFilter();
    });
    m_sweepsAction = new QAction(tr("&Sweeps…"), this);
    m_sweepsAction->setObjectName(QStringLiteral("actionSweeps"));
    connect(m_sweepsAction, &QAction::triggered, this, &MainWindow::openSweeps);

    m_aboutAction = new QAction(tr("&About LadderBench"), this);
    m_aboutAction->setObjectName(QStringLiteral("actionAbout"));
    m_aboutAction->setMenuRole(QAction::AboutRole);
    connect(m_aboutAction, &QAction::triggered, this, &MainWindow::showAbout);

    m_aboutQtAction = new QAction(tr("About &Qt"), this);
    m_aboutQtAction->setObjectName(QStringLiteral("actionAboutQt"));
    m_aboutQtAction->setMenuRole(QAction::AboutQtRole);
    connect(m_aboutQtAction, &QAction::triggered, qApp, &QApplication::aboutQt);
    createExportActions();
}

void MainWindow::createMenus()
{
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->setObjectName(QStringLiteral("menuFile"));
    file->addAction(m_loadPresetAction);
    file->addAction(m_savePresetAction);
    file->addSeparator();
    file->addAction(m_openStoreAction);
    file->addAction(m_newStoreAction);
    file->addAction(m_importAction);
    file->addAction(m_importBundleAction);
    file->addAction(m_exportAction);
    file->addSeparator();
    file->addAction(m_quitAction);

    QMenu* run = menuBar()->addMenu(tr("&Run"));
    run->setObjectName(QStringLiteral("menuRun"));
    run->addAction(m_runAction);
    run->addAction(m_cancelAction);
    run->addSeparator();
    run->addAction(m_exportRunAction);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    view->setObjectName(QStringLiteral("menuView"));
    view->addAction(m_filterAction);
    view->addAction(m_refreshDevicesAction);

    QMenu* tools = menuBar()->addMenu(tr("&Tools"));
    tools->setObjectName(QStringLiteral("menuTools"));
    tools->addAction(m_sweepsAction);

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    help->setObjectName(QStringLiteral("menuHelp"));
    help->addAction(m_aboutAction);
    help->addAction(m_aboutQtAction);
}

void MainWindow::createStatusBar()
{
    const VersionInfo versions = VersionInfo::current();
    const QString cuda = versions.builtWithCuda ? tr("CUDA %1").arg(versions.cuda) : tr("CPU only");
    m_buildStatus = new QLabel(tr("LibTorch %1 · %2").arg(versions.torch, cuda));
    m_buildStatus->setObjectName(QStringLiteral("buildStatusLabel"));
    statusBar()->addPermanentWidget(m_buildStatus);
}

} // namespace ladder::widgets
