#include "WorkbenchSettings.h"

#include <QDir>
#include <QSettings>

#include "store/ResultsStore.h"

namespace ladder::widgets {
namespace {
const QString kStorePath = QStringLiteral("store/path");
const QString kRecentBackbones = QStringLiteral("backbones/recent");
const QString kRecentTasks = QStringLiteral("tasks/recentFolders");
const QString kPresetFolder = QStringLiteral("presets/folder");
const QString kThreads = QStringLiteral("training/threads");
const QString kLastSpec = QStringLiteral("form/lastSpec");
} // namespace

WorkbenchSettings::WorkbenchSettings(const QString& fileName)
    : m_settings(fileName.isEmpty()
            ? new QSettings(QStringLiteral("LadderBench"), QStringLiteral("ladderbench"))
            : new QSettings(fileName, QSettings::IniFormat))
{
}

WorkbenchSettings::~WorkbenchSettings()
{
    delete m_settings;
}

QString WorkbenchSettings::storePath() const
{
    const QString path = m_settings->value(kStorePath).toString();
    return path.isEmpty() ? QString::fromStdString(ResultsStore::defaultPath()) : path;
}

void WorkbenchSettings::setStorePath(const QString& path)
{
    m_settings->setValue(kStorePath, path);
}

QStringList WorkbenchSettings::recentBackbones() const
{
    return m_settings->value(kRecentBackbones).toStringList();
}

void WorkbenchSettings::addRecentBackbone(const QString& folder)
{
    addRecent(kRecentBackbones, folder);
}

QStringList WorkbenchSettings::recentTaskPaths() const
{
    return m_settings->value(kRecentTasks).toStringList();
}

void WorkbenchSettings::addRecentTaskPath(const QString& path)
{
    addRecent(kRecentTasks, path);
}

QString WorkbenchSettings::presetFolder() const
{
    return m_settings->value(kPresetFolder, QDir::homePath()).toString();
}

void WorkbenchSettings::setPresetFolder(const QString& folder)
{
    m_settings->setValue(kPresetFolder, folder);
}

int WorkbenchSettings::threads() const
{
    return m_settings->value(kThreads, 0).toInt();
}

void WorkbenchSettings::setThreads(int threads)
{
    m_settings->setValue(kThreads, threads);
}

QString WorkbenchSettings::lastSpecJson() const
{
    return m_settings->value(kLastSpec).toString();
}

void WorkbenchSettings::setLastSpecJson(const QString& json)
{
    m_settings->setValue(kLastSpec, json);
}

void WorkbenchSettings::sync()
{
    m_settings->sync();
}

QString WorkbenchSettings::fileName() const
{
    return m_settings->fileName();
}

QStringList WorkbenchSettings::addRecent(const QString& key, const QString& value)
{
    QStringList list = m_settings->value(key).toStringList();
    list.removeAll(value);
    list.prepend(value);
    while (list.size() > kMaxRecent)
        list.removeLast();
    m_settings->setValue(key, list);
    return list;
}

} // namespace ladder::widgets
