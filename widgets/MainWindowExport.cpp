// MainWindow's Export Run... and Import Bundle... (docs/EXPORT.md; the rest of the window: MainWindow.cpp,
// MainWindowActions.cpp).
#include "MainWindow.h"

#include <exception>
#include <memory>

#include <QAction>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QStatusBar>
#include <QTableView>
#include <QThread>

#include "CompareTab.h"
#include "ExportDialog.h"
#include "QueueView.h"
#include "RunsTableModel.h"
#include "export/LadderBundle.h"
#include "store/ResultsStore.h"

namespace ladder::widgets {

void MainWindow::createExportActions()
{
    m_exportRunAction = new QAction(tr("E&xport Run…"), this);
    m_exportRunAction->setObjectName(QStringLiteral("actionExportRun"));
    m_exportRunAction->setStatusTip(tr("Write the selected finished run as a HuggingFace folder, a PEFT "
                                       "adapter or a ladder bundle (ladder predict, Import Bundle)"));
    connect(m_exportRunAction, &QAction::triggered, this, [this] { exportRunWithDialog(); });

    m_importBundleAction = new QAction(tr("Import &Bundle…"), this);
    m_importBundleAction->setObjectName(QStringLiteral("actionImportBundle"));
    m_importBundleAction->setStatusTip(tr("Add a ladder bundle (ladder export --format ladder) to this store "
                                          "as a finished run"));
    connect(m_importBundleAction, &QAction::triggered, this, &MainWindow::importBundleWithDialog);

    // The compare view's runs table: Export... on the run under the pointer.
    QTableView* table = m_compare->table();
    table->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(table, &QTableView::customContextMenuRequested, this, [this, table](const QPoint& pos) {
        const qint64 runId = table->indexAt(pos).data(RunsTableModel::RunIdRole).toLongLong();
        if (runId <= 0)
            return;
        QMenu menu(table);
        QAction* exportRun = menu.addAction(tr("Export…"));
        exportRun->setObjectName(QStringLiteral("contextExportRun"));
        connect(exportRun, &QAction::triggered, this, [this, runId] { exportRunWithDialog(runId); });
        menu.exec(table->viewport()->mapToGlobal(pos));
    });
}

void MainWindow::exportRunWithDialog(qint64 runId)
{
    if (runId <= 0)
        runId = m_compare->selectedRun() > 0 ? m_compare->selectedRun() : m_queueView->selectedRun();
    if (runId <= 0) {
        showError(tr("Export Run"), tr("Select a finished run in the compare view or the queue first."));
        return;
    }
    auto* dialog = new ExportDialog(m_storePath, runId, this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->open();
}

void MainWindow::importBundleWithDialog()
{
    const QString dir = QFileDialog::getExistingDirectory(this,
        tr("Import a ladder bundle (a folder with bundle.json)"), QFileInfo(m_storePath).absolutePath());
    if (!dir.isEmpty())
        importBundle(dir);
}

bool MainWindow::importBundle(const QString& dir)
{
    if (m_storePath.isEmpty()) {
        showError(tr("Import Bundle"), tr("No results store is open to import into."));
        return false;
    }
    if (m_bundleImport)
        return false;
    struct Outcome {
        qint64 runId = 0;
        bool present = false;
        QString error;
    };
    auto outcome = std::make_shared<Outcome>();
    const std::string storePath = m_storePath.toStdString();
    const std::string bundle = dir.toStdString();
    // Reading a bundle hashes its files (a full fine-tune's weights: hundreds of MB): off the GUI thread, on
    // a store connection of its own.
    m_bundleImport = QThread::create([storePath, bundle, outcome] {
        try {
            ResultsStore store;
            std::string error;
            if (!store.open(storePath, ResultsStore::OpenMode::Existing, &error))
                throw std::runtime_error(error);
            outcome->runId = importLadderBundle(store, bundle, &outcome->present);
        } catch (const std::exception& e) {
            outcome->error = QString::fromStdString(e.what());
        }
    });
    connect(m_bundleImport, &QThread::finished, this, [this, outcome, dir] {
        m_bundleImport->deleteLater();
        m_bundleImport = nullptr;
        m_importBundleAction->setEnabled(true);
        QString message;
        if (!outcome->error.isEmpty()) {
            message = tr("Import Bundle failed: %1").arg(outcome->error);
            showError(tr("Import Bundle"), message);
        } else {
            // No reload: the StoreWatcher sees the commit as it sees any other writer's.
            message = outcome->present
                ? tr("Bundle %1 is run %2 of this store already").arg(dir).arg(outcome->runId)
                : tr("Imported bundle %1 as run %2").arg(dir).arg(outcome->runId);
            statusBar()->showMessage(message, 8000);
        }
        Q_EMIT bundleImported(outcome->error.isEmpty() ? outcome->runId : 0, message);
    });
    m_importBundleAction->setEnabled(false);
    statusBar()->showMessage(tr("Importing bundle %1…").arg(dir));
    m_bundleImport->start();
    return true;
}

} // namespace ladder::widgets
