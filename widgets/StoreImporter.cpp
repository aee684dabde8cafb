#include "StoreImporter.h"

#include <QMetaObject>

#include "store/ResultsStore.h"

namespace ladder::widgets {

StoreImporter::StoreImporter(QObject* parent)
    : QObject(parent)
{
}

StoreImporter::~StoreImporter()
{
    // The result posted to this object is dropped with it (Qt discards events of a deleted receiver).
    if (m_thread.joinable())
        m_thread.join();
}

bool StoreImporter::start(const QString& storePath, const QStringList& files)
{
    if (m_running)
        return false;
    if (m_thread.joinable())
        m_thread.join(); // the last import's thread, ended
    m_running = true;
    std::vector<std::string> sources;
    for (const QString& file : files)
        sources.push_back(file.toStdString());
    m_thread = std::thread([this, store = storePath.toStdString(), sources] {
        // A connection of this thread's own (a ResultsStore is not shared across threads).
        std::vector<StoreImport> results;
        ResultsStore main;
        std::string error;
        const bool open = main.open(store, &error);
        for (const auto& source : sources) {
            StoreImport result;
            if (open) {
                main.importStore(source, &result, &error);
            } else {
                result.source = source;
                result.skipReason = error;
            }
            results.push_back(std::move(result));
        }
        QMetaObject::invokeMethod(
            this, [this, results = std::move(results)]() mutable { onDone(std::move(results)); },
            Qt::QueuedConnection);
    });
    return true;
}

void StoreImporter::onDone(std::vector<StoreImport> results)
{
    m_running = false;
    m_results = std::move(results);
    QStringList lines;
    int skipped = 0;
    for (const auto& r : m_results) {
        lines << summaryLine(r);
        skipped += r.skipReason.empty() ? 0 : 1;
    }
    Q_EMIT finished(lines, skipped);
}

QString StoreImporter::summaryLine(const StoreImport& r)
{
    const QString file = QString::fromStdString(r.source);
    if (r.skipReason.empty())
        return r.imported == 1
            ? tr("imported 1 run from %1 (%2 already present)").arg(file).arg(r.alreadyPresent)
            : tr("imported %1 runs from %2 (%3 already present)")
                  .arg(r.imported)
                  .arg(file)
                  .arg(r.alreadyPresent);
    const QString reason = QString::fromStdString(r.skipReason);
    return r.runsInSource > 0
        ? tr("imported 0 runs from %1 (%2 skipped: %3)").arg(file).arg(r.runsInSource).arg(reason)
        : tr("imported 0 runs from %1 (skipped: %2)").arg(file, reason);
}

} // namespace ladder::widgets
