#pragma once

#include <thread>
#include <vector>

#include <QObject>
#include <QString>
#include <QStringList>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// File > Import Results...: merges other results stores into the window's store on a thread of its own
// (ResultsStore::importStore copies checkpoints, which can be large), one store at a time, each in its
// own transaction. The window's StoreWatcher then sees the new runs like any other writer's: the runs
// table, the compare plot and the queue reload.
//
//   auto* importer = new StoreImporter(this);
//   connect(importer, &StoreImporter::finished, this, [](const QStringList& lines, int skipped) {...});
//   importer->start(storePath, files);
//
// One import at a time (start() returns false while one runs). The destructor waits for a running import
// to end (one store's transaction at most), so the window may close at any time.
class StoreImporter : public QObject {
    Q_OBJECT

public:
    explicit StoreImporter(QObject* parent = nullptr);
    ~StoreImporter() override;

    // Imports `files` into the store at `storePath` (created when missing); false when an import runs.
    bool start(const QString& storePath, const QStringList& files);
    bool isRunning() const { return m_running; }
    // What the last finished import did, one entry per file.
    const std::vector<StoreImport>& results() const { return m_results; }

    // "imported 3 runs from FILE (1 already present)", or "imported 0 runs from FILE (4 skipped: REASON)",
    // as `ladder runs import` prints it.
    static QString summaryLine(const StoreImport& result);

Q_SIGNALS:
    // One line per file (summaryLine()), and how many files were skipped.
    void finished(const QStringList& lines, int skipped);

private:
    void onDone(std::vector<StoreImport> results);

    std::thread m_thread;
    bool m_running = false;
    std::vector<StoreImport> m_results;
};

} // namespace ladder::widgets
