#include "TaskPicker.h"

#include <algorithm>
#include <set>

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStackedWidget>
#include <QVBoxLayout>

#include "data/DemoTasks.h"
#include "data/GlueTasks.h"
#include "data/SceneTasks.h"
#include "data/VlTask.h"
#include "util/Json.h"

namespace ladder::widgets {
namespace {
enum Page { DemoPage, GluePage, GenericPage, VlPage };
constexpr double kDefaultSplitFraction = 0.1;
// The scene demo's entry in the demo list (task.type "vl", name "scenes", no path).
constexpr const char* kScenesName = "scenes";
constexpr int kMaxVisualTokens = 4096; // RunSpec's bound on task.visual_tokens
const char* const kVlSplits[] = { "train.jsonl", "validation.jsonl", "test.jsonl" };
constexpr const char* kDefaultFeatures = "features.safetensors";

// The feature file a VL task reads: `features` as given (a relative path from the task folder, as
// loadTaskSplits reads it), else <folder>/features.safetensors.
QString resolveFeatures(const QString& folder, const QString& features)
{
    if (features.isEmpty())
        return QDir(folder).filePath(QString::fromLatin1(kDefaultFeatures));
    return QFileInfo(features).isAbsolute() ? features : QDir(folder).filePath(features);
}

// Whether a VL folder's task.json names its feature file (VlTaskOptions::featuresPath's fallback).
bool taskJsonNamesFeatures(const QString& folder)
{
    const QString path = QDir(folder).filePath(QStringLiteral("task.json"));
    if (!QFileInfo(path).isFile())
        return false;
    try {
        const auto json = readJsonFile(path.toStdString(), "a VL task's task.json");
        return json.is_object() && json.contains("features") && json.at("features").is_string();
    } catch (const std::exception&) {
        return false; // the loader names what is wrong with it
    }
}

QWidget* pathRow(QLineEdit* edit, QPushButton* browse)
{
    auto* row = new QWidget;
    auto* layout = new QHBoxLayout(row);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(edit, 1);
    layout->addWidget(browse);
    browse->setAutoDefault(false);
    return row;
}

std::vector<std::string> splitColumns(const QString& text)
{
    std::vector<std::string> columns;
    for (const auto& part : text.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
        const QString c = part.trimmed();
        if (!c.isEmpty())
            columns.push_back(c.toStdString());
    }
    return columns;
}
} // namespace

TaskPicker::TaskPicker(QWidget* parent)
    : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_type = new QComboBox;
    m_type->setObjectName(QStringLiteral("taskTypeCombo"));
    m_type->addItem(tr("Built-in demo task"), QStringLiteral("demo"));
    m_type->addItem(tr("GLUE folder"), QStringLiteral("glue"));
    m_type->addItem(tr("Own file (JSONL, CSV, TSV)"), QStringLiteral("generic"));
    m_type->addItem(tr("Vision-and-language folder (VQA, GQA, NLVR2, captions)"), QStringLiteral("vl"));
    layout->addWidget(m_type);
    m_pages = new QStackedWidget;
    m_pages->addWidget(makeDemoPage());
    m_pages->addWidget(makeGluePage());
    m_pages->addWidget(makeGenericPage());
    m_pages->addWidget(makeVlPage());
    layout->addWidget(m_pages);
    connect(m_type, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int index) {
        m_pages->setCurrentIndex(index);
        Q_EMIT changed();
    });
}

QWidget* TaskPicker::makeDemoPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_demoTask = new QComboBox;
    m_demoTask->setObjectName(QStringLiteral("demoTaskCombo"));
    for (const auto& name : demoTaskNames())
        m_demoTask->addItem(QString::fromStdString(name), QString::fromStdString(name));
    m_demoTask->addItem(tr("Scenes (VL demo)"), QString::fromLatin1(kScenesName));
    form->addRow(tr("Demo task"), m_demoTask);
    m_demoInfo = new QLabel;
    m_demoInfo->setObjectName(QStringLiteral("demoInfoLabel"));
    m_demoInfo->setWordWrap(true);
    form->addRow(QString(), m_demoInfo);
    auto showInfo = [this] {
        m_demoInfo->setText(sceneDemoChosen()
                ? tr("Vision-and-language demo: generated scenes with VQA, GQA, NLVR2 and caption tasks over "
                     "precomputed visual features, built by `ladder demo` (docs/VL-SCENES-NOTES.md)")
                : tr("WordNet tasks with real labels (docs/DEMO.md)"));
    };
    showInfo();
    connect(m_demoTask, qOverload<int>(&QComboBox::currentIndexChanged), this, [this, showInfo] {
        showInfo();
        Q_EMIT changed();
    });
    return page;
}

QWidget* TaskPicker::makeGluePage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_gluePath = new QLineEdit;
    m_gluePath->setObjectName(QStringLiteral("gluePathEdit"));
    m_gluePath->setPlaceholderText(tr("a folder with train.tsv and dev.tsv, e.g. …/glue/RTE"));
    auto* browse = new QPushButton(tr("Browse…"));
    browse->setObjectName(QStringLiteral("glueBrowseButton"));
    form->addRow(tr("Folder"), pathRow(m_gluePath, browse));
    m_glueDetected = new QLabel;
    m_glueDetected->setObjectName(QStringLiteral("glueDetectedLabel"));
    m_glueDetected->setWordWrap(true);
    form->addRow(tr("Task"), m_glueDetected);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString folder
            = QFileDialog::getExistingDirectory(this, tr("GLUE task folder"), m_gluePath->text());
        if (!folder.isEmpty())
            setGluePath(folder);
    });
    connect(m_gluePath, &QLineEdit::editingFinished, this, [this] {
        detectGlue();
        Q_EMIT changed();
    });
    return page;
}

QWidget* TaskPicker::makeGenericPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_genericPath = new QLineEdit;
    m_genericPath->setObjectName(QStringLiteral("genericPathEdit"));
    auto* browse = new QPushButton(tr("Browse…"));
    form->addRow(tr("File"), pathRow(m_genericPath, browse));
    m_textColumns = new QLineEdit(QStringLiteral("text"));
    m_textColumns->setObjectName(QStringLiteral("textColumnsEdit"));
    m_textColumns->setToolTip(
        tr("Input columns, comma-separated, in the order they are written into the input"));
    form->addRow(tr("Text columns"), m_textColumns);
    m_labelColumn = new QLineEdit(QStringLiteral("label"));
    m_labelColumn->setObjectName(QStringLiteral("labelColumnEdit"));
    form->addRow(tr("Label column"), m_labelColumn);
    m_kind = new QComboBox;
    m_kind->addItems({ QStringLiteral("classification"), QStringLiteral("regression") });
    m_kind->setObjectName(QStringLiteral("taskKindCombo"));
    form->addRow(tr("Kind"), m_kind);
    m_validationFraction = new QDoubleSpinBox;
    m_validationFraction->setRange(0.01, 0.5);
    m_validationFraction->setSingleStep(0.05);
    m_validationFraction->setValue(kDefaultSplitFraction);
    form->addRow(tr("Validation fraction"), m_validationFraction);
    m_testFraction = new QDoubleSpinBox;
    m_testFraction->setRange(0.01, 0.5);
    m_testFraction->setSingleStep(0.05);
    m_testFraction->setValue(kDefaultSplitFraction);
    form->addRow(tr("Test fraction"), m_testFraction);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString file = QFileDialog::getOpenFileName(this, tr("Task file"), m_genericPath->text(),
            tr("Tables (*.jsonl *.json *.csv *.tsv);;All files (*)"));
        if (!file.isEmpty())
            setGenericPath(file);
    });
    for (QLineEdit* edit : { m_genericPath, m_textColumns, m_labelColumn })
        connect(edit, &QLineEdit::textChanged, this, &TaskPicker::changed);
    connect(m_kind, qOverload<int>(&QComboBox::currentIndexChanged), this, &TaskPicker::changed);
    for (QDoubleSpinBox* box : { m_validationFraction, m_testFraction })
        connect(box, qOverload<double>(&QDoubleSpinBox::valueChanged), this, &TaskPicker::changed);
    return page;
}

QWidget* TaskPicker::makeVlPage()
{
    auto* page = new QWidget;
    auto* form = new QFormLayout(page);
    form->setContentsMargins(0, 0, 0, 0);
    m_vlPath = new QLineEdit;
    m_vlPath->setObjectName(QStringLiteral("vlPathEdit"));
    m_vlPath->setPlaceholderText(
        tr("a folder with train/validation/test.jsonl and features.safetensors; empty: the scene demo"));
    auto* browse = new QPushButton(tr("Browse…"));
    browse->setObjectName(QStringLiteral("vlBrowseButton"));
    form->addRow(tr("Folder"), pathRow(m_vlPath, browse));
    m_vlFeatures = new QLineEdit;
    m_vlFeatures->setObjectName(QStringLiteral("vlFeaturesEdit"));
    m_vlFeatures->setToolTip(tr("The visual feature file (safetensors, one [boxes, dim] tensor per image; "
                                "docs/VL-FEATURES-NOTES.md). A relative path is read from the task folder. "
                                "Empty: the folder's features.safetensors."));
    auto* browseFeatures = new QPushButton(tr("Browse…"));
    browseFeatures->setObjectName(QStringLiteral("vlFeaturesBrowseButton"));
    form->addRow(tr("Feature file"), pathRow(m_vlFeatures, browseFeatures));
    m_vlTokens = new QSpinBox;
    m_vlTokens->setObjectName(QStringLiteral("vlVisualTokensSpin"));
    m_vlTokens->setRange(0, kMaxVisualTokens);
    m_vlTokens->setSpecialValueText(tr("the file's count"));
    m_vlTokens->setToolTip(tr("Visual tokens per image the model sees: the file's boxes, or a smaller square "
                              "number when the boxes are a square grid (max-pooled, as the reference's "
                              "--downsample). 0: the file's count."));
    form->addRow(tr("Visual tokens"), m_vlTokens);
    auto* tasks = new QWidget;
    auto* tasksLayout = new QHBoxLayout(tasks);
    tasksLayout->setContentsMargins(0, 0, 0, 0);
    for (const auto& t : vlTaskTypes()) {
        auto* box = new QCheckBox(QString::fromStdString(t));
        box->setObjectName(QStringLiteral("vlTask_%1").arg(QString::fromStdString(t)));
        box->setChecked(true);
        box->setToolTip(tr("Train and evaluate on the folder's %1 examples (all checked: every type the "
                           "files hold)")
                            .arg(QString::fromStdString(t)));
        tasksLayout->addWidget(box);
        m_vlTasks.push_back(box);
        connect(box, &QCheckBox::toggled, this, &TaskPicker::changed);
    }
    tasksLayout->addStretch(1);
    form->addRow(tr("Task types"), tasks);
    updateVlPlaceholder();
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString folder = QFileDialog::getExistingDirectory(
            this, tr("Vision-and-language task folder"), m_vlPath->text());
        if (!folder.isEmpty())
            setVlPath(folder);
    });
    connect(browseFeatures, &QPushButton::clicked, this, [this] {
        const QString start = m_vlFeatures->text().isEmpty() ? m_vlPath->text() : m_vlFeatures->text();
        const QString file = QFileDialog::getOpenFileName(
            this, tr("Visual feature file"), start, tr("Safetensors (*.safetensors);;All files (*)"));
        if (!file.isEmpty())
            m_vlFeatures->setText(file);
    });
    connect(m_vlPath, &QLineEdit::textChanged, this, [this] {
        updateVlPlaceholder();
        Q_EMIT changed();
    });
    connect(m_vlFeatures, &QLineEdit::textChanged, this, &TaskPicker::changed);
    connect(m_vlTokens, qOverload<int>(&QSpinBox::valueChanged), this, &TaskPicker::changed);
    return page;
}

void TaskPicker::updateVlPlaceholder()
{
    const QString folder = m_vlPath->text().trimmed();
    m_vlFeatures->setPlaceholderText(folder.isEmpty()
            ? tr("default: <folder>/features.safetensors")
            : tr("default: %1").arg(resolveFeatures(folder, QString())));
}

QString TaskPicker::type() const
{
    return m_type->currentData().toString();
}

bool TaskPicker::sceneDemoChosen() const
{
    return m_demoTask->currentData().toString() == QLatin1String(kScenesName);
}

bool TaskPicker::isVl() const
{
    const QString t = type();
    return t == QLatin1String("vl") || (t == QLatin1String("demo") && sceneDemoChosen());
}

void TaskPicker::setVlPath(const QString& folder)
{
    m_type->setCurrentIndex(VlPage);
    m_vlPath->setText(folder);
    Q_EMIT pathChosen(folder);
    Q_EMIT changed();
}

nlohmann::json TaskPicker::vlTaskJson() const
{
    const QString folder = m_vlPath->text().trimmed();
    nlohmann::json task { { "type", "vl" } };
    if (folder.isEmpty()) {
        task["name"] = kScenesName; // the built-in scene demo
    } else {
        task["path"] = folder.toStdString();
        task["name"] = folder == m_vlNamePath ? m_vlName : std::string("auto");
    }
    if (const QString features = m_vlFeatures->text().trimmed(); !features.isEmpty())
        task["features"] = features.toStdString();
    if (m_vlTokens->value() > 0)
        task["visual_tokens"] = m_vlTokens->value();
    std::vector<std::string> checked;
    for (std::size_t i = 0; i < m_vlTasks.size(); ++i)
        if (m_vlTasks[i]->isChecked())
            checked.push_back(vlTaskTypes()[i]);
    const std::set<std::string> loaded(m_vlLoadedTasks.begin(), m_vlLoadedTasks.end());
    if (!m_vlLoadedTasks.empty() && loaded == std::set<std::string>(checked.begin(), checked.end()))
        task["tasks"] = m_vlLoadedTasks; // the loaded spec's list, in its order
    else if (!checked.empty() && checked.size() < m_vlTasks.size())
        task["tasks"] = checked;
    else if (checked.empty())
        task["tasks"] = nlohmann::json::array(); // RunSpec refuses it; problem() says it first
    return task;
}

void TaskPicker::setGluePath(const QString& folder)
{
    m_type->setCurrentIndex(GluePage);
    m_gluePath->setText(folder);
    detectGlue();
    Q_EMIT pathChosen(folder);
    Q_EMIT changed();
}

void TaskPicker::setGenericPath(const QString& file)
{
    m_type->setCurrentIndex(GenericPage);
    m_genericPath->setText(file);
    Q_EMIT pathChosen(file);
}

void TaskPicker::detectGlue()
{
    m_detected.clear();
    m_glueError.clear();
    const QString folder = m_gluePath->text().trimmed();
    if (folder.isEmpty()) {
        m_glueError = tr("task: choose a GLUE folder");
    } else if (!QFileInfo(folder).isDir()) {
        m_glueError = tr("task: %1 is not a folder").arg(folder);
    } else {
        try {
            m_detected = QString::fromLatin1(GlueTasks::name(GlueTasks::detect(folder.toStdString())));
        } catch (const std::exception& e) {
            m_glueError = QString::fromUtf8(e.what());
        }
    }
    m_glueDetected->setText(m_detected.isEmpty() ? m_glueError : tr("%1 (detected)").arg(m_detected));
}

nlohmann::json TaskPicker::taskJson() const
{
    const QString t = type();
    if (t == QLatin1String("glue"))
        return { { "type", "glue" }, { "path", m_gluePath->text().trimmed().toStdString() },
            { "name", "auto" } };
    if (t == QLatin1String("generic")) {
        const QFileInfo file(m_genericPath->text().trimmed());
        return { { "type", "generic" }, { "path", m_genericPath->text().trimmed().toStdString() },
            { "name",
                file.completeBaseName().isEmpty() ? std::string("task")
                                                  : file.completeBaseName().toStdString() },
            { "text_columns", splitColumns(m_textColumns->text()) },
            { "label_column", m_labelColumn->text().trimmed().toStdString() },
            { "kind", m_kind->currentText().toStdString() },
            { "validation_fraction", m_validationFraction->value() },
            { "test_fraction", m_testFraction->value() } };
    }
    if (t == QLatin1String("vl"))
        return vlTaskJson();
    if (sceneDemoChosen())
        return { { "type", "vl" }, { "name", kScenesName } };
    return { { "type", "demo" }, { "name", m_demoTask->currentData().toString().toStdString() } };
}

void TaskPicker::setTaskJson(const nlohmann::json& task)
{
    const std::string t = task.value("type", std::string("demo"));
    const QString path = QString::fromStdString(task.value("path", std::string()));
    if (t == "glue") {
        m_type->setCurrentIndex(GluePage);
        m_gluePath->setText(path);
        detectGlue();
    } else if (t == "generic") {
        m_type->setCurrentIndex(GenericPage);
        m_genericPath->setText(path);
        QStringList columns;
        for (const auto& c : task.value("text_columns", std::vector<std::string> { "text" }))
            columns << QString::fromStdString(c);
        m_textColumns->setText(columns.join(QStringLiteral(", ")));
        m_labelColumn->setText(QString::fromStdString(task.value("label_column", std::string("label"))));
        m_kind->setCurrentText(QString::fromStdString(task.value("kind", std::string("classification"))));
        m_validationFraction->setValue(task.value("validation_fraction", kDefaultSplitFraction));
        m_testFraction->setValue(task.value("test_fraction", kDefaultSplitFraction));
    } else if (t == "vl") {
        const std::string name = task.value("name", std::string("auto"));
        const bool options
            = task.contains("features") || task.contains("visual_tokens") || task.contains("tasks");
        if (path.isEmpty() && name == kScenesName && !options) {
            // The scene demo as the demo list names it.
            m_type->setCurrentIndex(DemoPage);
            m_demoTask->setCurrentIndex(m_demoTask->findData(QString::fromLatin1(kScenesName)));
        } else {
            m_type->setCurrentIndex(VlPage);
        }
        // The VL page holds the options either way (an empty folder is the scene demo).
        m_vlName = path.isEmpty() ? std::string("auto") : name;
        m_vlNamePath = path;
        m_vlPath->setText(path);
        m_vlFeatures->setText(QString::fromStdString(task.value("features", std::string())));
        const auto tokens = task.value("visual_tokens", std::int64_t(0));
        m_vlTokens->setValue(static_cast<int>(std::clamp<std::int64_t>(tokens, 0, kMaxVisualTokens)));
        m_vlLoadedTasks.clear();
        if (task.contains("tasks") && task.at("tasks").is_array())
            for (const auto& item : task.at("tasks"))
                if (item.is_string())
                    m_vlLoadedTasks.push_back(item.get<std::string>());
        const std::set<std::string> keep(m_vlLoadedTasks.begin(), m_vlLoadedTasks.end());
        for (std::size_t i = 0; i < m_vlTasks.size(); ++i) {
            const QSignalBlocker block(m_vlTasks[i]);
            m_vlTasks[i]->setChecked(keep.empty() || keep.count(vlTaskTypes()[i]) > 0);
        }
    } else {
        m_type->setCurrentIndex(DemoPage);
        const int index
            = m_demoTask->findData(QString::fromStdString(task.value("name", std::string("supersense"))));
        m_demoTask->setCurrentIndex(index < 0 ? 0 : index);
    }
    Q_EMIT changed();
}

QString TaskPicker::problem() const
{
    const QString t = type();
    if (t == QLatin1String("glue"))
        return m_detected.isEmpty() ? (m_glueError.isEmpty() ? tr("task: choose a GLUE folder") : m_glueError)
                                    : QString();
    if (t == QLatin1String("generic")) {
        const QString path = m_genericPath->text().trimmed();
        if (path.isEmpty())
            return tr("task: choose a JSONL, CSV or TSV file");
        if (!QFileInfo(path).isFile())
            return tr("task: %1 is not a file").arg(path);
        if (splitColumns(m_textColumns->text()).empty())
            return tr("task: name at least one text column");
        if (m_labelColumn->text().trimmed().isEmpty())
            return tr("task: name the label column");
    }
    if (t == QLatin1String("vl"))
        return vlProblem();
    if (sceneDemoChosen() && !QFileInfo(QString::fromStdString(sceneTasksDir())).isDir())
        return tr("task: the scene demo is not built yet (run `ladder demo` to build it into %1)")
            .arg(QString::fromStdString(sceneTasksDir()));
    return {};
}

QString TaskPicker::vlProblem() const
{
    const QString path = m_vlPath->text().trimmed();
    const QString folder = path.isEmpty() ? QString::fromStdString(sceneTasksDir()) : path;
    if (path.isEmpty() && !QFileInfo(folder).isDir())
        return tr("task: choose a vision-and-language task folder (the scene demo, used when the folder is "
                  "empty, is not built yet: run `ladder demo`)");
    if (!QFileInfo(folder).isDir())
        return tr("task: %1 is not a folder").arg(folder);
    for (const char* split : kVlSplits) {
        const QString file = QDir(folder).filePath(QString::fromLatin1(split));
        if (!QFileInfo(file).isFile())
            return tr(
                "task: %1 has no %2 (a VL task folder holds train.jsonl, validation.jsonl, test.jsonl and "
                "its feature file)")
                .arg(folder, QString::fromLatin1(split));
    }
    const QString features = m_vlFeatures->text().trimmed();
    const QString file = resolveFeatures(folder, features);
    if (!QFileInfo(file).isFile() && (!features.isEmpty() || !taskJsonNamesFeatures(folder)))
        return features.isEmpty()
            ? tr("task: feature file %1 is missing: choose the visual feature file").arg(file)
            : tr("task: feature file %1 is not a file").arg(file);
    bool any = false;
    for (const QCheckBox* box : m_vlTasks)
        any = any || box->isChecked();
    if (!any)
        return tr("task: check at least one task type (vqa, gqa, nlvr2, caption)");
    return {};
}

} // namespace ladder::widgets
