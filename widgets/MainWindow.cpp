#include "MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>

#include "ComputeDeviceModel.h"
#include "OverviewPanel.h"
#include "VersionInfo.h"

namespace ladder::widgets {
namespace {
constexpr int kDefaultWidth = 1280;
constexpr int kDefaultHeight = 800;
constexpr const char* kViewNameProperty = "ladderViewName";
} // namespace

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent)
{
    setWindowTitle(QStringLiteral("LadderBench"));
    setObjectName(QStringLiteral("mainWindow"));

    m_views = new QTabWidget(this);
    m_views->setObjectName(QStringLiteral("views"));
    m_views->setDocumentMode(true);
    setCentralWidget(m_views);

    m_overview = new OverviewPanel;
    addView(m_overview, QStringLiteral("overview"), tr("Overview"));

    createActions();
    createMenus();
    createStatusBar();

    connect(
        m_overview->deviceModel(), &QAbstractItemModel::modelReset, this, &MainWindow::updateDeviceStatus);
    updateDeviceStatus();

    resize(kDefaultWidth, kDefaultHeight);
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

void MainWindow::createActions()
{
    m_quitAction = new QAction(tr("&Quit"), this);
    m_quitAction->setObjectName(QStringLiteral("actionQuit"));
    m_quitAction->setShortcut(QKeySequence::Quit);
    m_quitAction->setMenuRole(QAction::QuitRole);
    connect(m_quitAction, &QAction::triggered, this, &MainWindow::close);

    m_refreshDevicesAction = new QAction(tr("&Refresh Devices"), this);
    m_refreshDevicesAction->setObjectName(QStringLiteral("actionRefreshDevices"));
    m_refreshDevicesAction->setShortcut(QKeySequence::Refresh);
    connect(m_refreshDevicesAction, &QAction::triggered, m_overview, &OverviewPanel::refreshDevices);

    m_aboutAction = new QAction(tr("&About LadderBench"), this);
    m_aboutAction->setObjectName(QStringLiteral("actionAbout"));
    m_aboutAction->setMenuRole(QAction::AboutRole);
    connect(m_aboutAction, &QAction::triggered, this, &MainWindow::showAbout);

    m_aboutQtAction = new QAction(tr("About &Qt"), this);
    m_aboutQtAction->setObjectName(QStringLiteral("actionAboutQt"));
    m_aboutQtAction->setMenuRole(QAction::AboutQtRole);
    connect(m_aboutQtAction, &QAction::triggered, qApp, &QApplication::aboutQt);
}

void MainWindow::createMenus()
{
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->setObjectName(QStringLiteral("menuFile"));
    file->addAction(m_quitAction);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    view->setObjectName(QStringLiteral("menuView"));
    view->addAction(m_refreshDevicesAction);

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

} // namespace ladder::widgets
