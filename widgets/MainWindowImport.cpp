// MainWindow's File > Import Results... (the rest of the window: MainWindow.cpp, MainWindowActions.cpp).
#include "MainWindow.h"

#include <QAction>
#include <QFileDialog>
#include <QFileInfo>
#include <QStatusBar>

#include "StoreImporter.h"

namespace ladder::widgets {

void MainWindow::importResultsWithDialog()
{
    const QStringList files = QFileDialog::getOpenFileNames(this, tr("Import results stores"),
        QFileInfo(m_storePath).absolutePath(), tr("LadderBench stores (*.sqlite);;All files (*)"));
    if (!files.isEmpty())
        importResults(files);
}

bool MainWindow::importResults(const QStringList& files)
{
    if (m_storePath.isEmpty()) {
        showError(tr("Import Results"), tr("No results store is open to import into."));
        return false;
    }
    if (!m_importer) {
        m_importer = new StoreImporter(this);
        connect(m_importer, &StoreImporter::finished, this, [this](const QStringList& lines, int skipped) {
            m_importAction->setEnabled(true);
            int imported = 0;
            for (const auto& r : m_importer->results())
                imported += r.imported;
            // No reload here: the StoreWatcher sees the commits as it sees any other writer's.
            statusBar()->showMessage(tr("Imported %1 run(s) from %2 of %3 store(s)")
                                         .arg(imported)
                                         .arg(lines.size() - skipped)
                                         .arg(lines.size()),
                8000);
            if (skipped > 0)
                showError(tr("Import Results"), lines.join(QLatin1Char('\n')));
        });
    }
    if (!m_importer->start(m_storePath, files))
        return false;
    m_importAction->setEnabled(false);
    statusBar()->showMessage(tr("Importing %1 store(s) into %2…").arg(files.size()).arg(m_storePath));
    return true;
}

} // namespace ladder::widgets
