#include "TaskPicker.h"

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
#include <QStackedWidget>
#include <QVBoxLayout>

#include "data/DemoTasks.h"
#include "data/GlueTasks.h"

namespace ladder::widgets {
namespace {
enum Page { DemoPage, GluePage, GenericPage };
constexpr double kDefaultSplitFraction = 0.1;

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
    layout->addWidget(m_type);
    m_pages = new QStackedWidget;
    m_pages->addWidget(makeDemoPage());
    m_pages->addWidget(makeGluePage());
    m_pages->addWidget(makeGenericPage());
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
        m_demoTask->addItem(QString::fromStdString(name));
    form->addRow(tr("Demo task"), m_demoTask);
    m_demoInfo = new QLabel(tr("WordNet tasks with real labels (docs/DEMO.md)"));
    m_demoInfo->setWordWrap(true);
    form->addRow(QString(), m_demoInfo);
    connect(m_demoTask, qOverload<int>(&QComboBox::currentIndexChanged), this, &TaskPicker::changed);
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

QString TaskPicker::type() const
{
    return m_type->currentData().toString();
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
    return { { "type", "demo" }, { "name", m_demoTask->currentText().toStdString() } };
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
    } else {
        m_type->setCurrentIndex(DemoPage);
        const int index
            = m_demoTask->findText(QString::fromStdString(task.value("name", std::string("supersense"))));
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
    return {};
}

} // namespace ladder::widgets
