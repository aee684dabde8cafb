#pragma once

#include <QString>
#include <QStringList>

class QSettings;

namespace ladder::widgets {

// The workbench's persistent settings, in one QSettings file (QSettings' native location for the
// organisation "LadderBench" and application "ladderbench", or an explicit file for tests):
//   store/path            results store file (empty: ResultsStore::defaultPath())
//   backbones/recent      local HF backbone folders the user added (newest first)
//   tasks/recentFolders   GLUE folders and generic files used recently
//   presets/folder        where the preset dialogs open
//   training/threads      CPU threads per run (0: LibTorch's default)
//   form/lastSpec         the experiment form as run-spec JSON when the window closed
// A fresh installation has none of these keys; that is how the first launch is recognised.
class WorkbenchSettings {
public:
    static constexpr int kMaxRecent = 10;

    // fileName empty: the native location.
    explicit WorkbenchSettings(const QString& fileName = {});
    ~WorkbenchSettings();
    WorkbenchSettings(const WorkbenchSettings&) = delete;
    WorkbenchSettings& operator=(const WorkbenchSettings&) = delete;

    QString storePath() const; // the stored path, else ResultsStore::defaultPath()
    void setStorePath(const QString& path);

    QStringList recentBackbones() const;
    void addRecentBackbone(const QString& folder);
    QStringList recentTaskPaths() const;
    void addRecentTaskPath(const QString& path);

    QString presetFolder() const;
    void setPresetFolder(const QString& folder);

    int threads() const;
    void setThreads(int threads);

    // Empty when the form was never saved (first launch).
    QString lastSpecJson() const;
    void setLastSpecJson(const QString& json);

    void sync();
    QString fileName() const;

private:
    QStringList addRecent(const QString& key, const QString& value);

    QSettings* m_settings;
};

} // namespace ladder::widgets
