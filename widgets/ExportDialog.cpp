#include "ExportDialog.h"

#include <exception>
#include <memory>
#include <stdexcept>

#include <QCloseEvent>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QStandardItemModel>
#include <QThread>
#include <QToolButton>
#include <QVBoxLayout>

#include "export/Export.h"
#include "export/HfExport.h"
#include "export/PeftExport.h"
#include "store/ResultsStore.h"
#include "train/RunSpec.h"
#include "util/Json.h"

namespace ladder::widgets {

namespace {

QString describe(const QString& format)
{
    if (format == QLatin1String("hf"))
        return QObject::tr("HuggingFace T5 folder (hf)");
    if (format == QLatin1String("peft"))
        return QObject::tr("PEFT adapter (peft)");
    return QObject::tr("ladder bundle (ladder)");
}

// What an export's thread hands back.
struct ExportOutcome {
    bool ok = false;
    QString message;
};

} // namespace

ExportDialog::ExportDialog(const QString& storePath, qint64 runId, QWidget* parent)
    : QDialog(parent)
    , m_storePath(storePath)
    , m_runId(runId)
{
    setWindowTitle(tr("Export Run %1").arg(runId));
    setObjectName(QStringLiteral("exportDialog"));

    // Which formats the run has a form in: from its spec alone (no file is read but the store's row).
    QString runProblem;
    RunSpec spec;
    QString runName;
    {
        ResultsStore store;
        std::string error;
        RunRecord run;
        if (!store.open(storePath.toStdString(), ResultsStore::OpenMode::ReadOnly, &error)
            || !store.getRun(runId, &run, &error)) {
            runProblem = QString::fromStdString(error);
        } else {
            runName = QString::fromStdString(run.name);
            try {
                spec = RunSpec::fromJson(parseJson(run.specJson, "run spec"), "run spec");
            } catch (const std::exception& e) {
                runProblem = QString::fromStdString(e.what());
            }
            if (runProblem.isEmpty() && run.status != RunState::Finished)
                runProblem = tr("run %1 is %2, not finished: only a finished run's best weights are exported")
                                 .arg(runId)
                                 .arg(QString::fromLatin1(toString(run.status)));
        }
    }
    m_exportable = runProblem.isEmpty();

    m_format = new QComboBox;
    m_format->setObjectName(QStringLiteral("exportFormat"));
    auto* model = new QStandardItemModel(m_format);
    for (const auto& f : exportFormats()) {
        const auto name = QString::fromStdString(f);
        auto* item = new QStandardItem(describe(name));
        item->setData(name, Qt::UserRole);
        QString reason = runProblem;
        if (reason.isEmpty()) {
            try {
                if (f == "hf")
                    checkHfExportable(spec);
                else if (f == "peft")
                    checkPeftExportable(spec);
            } catch (const std::exception& e) {
                reason = QString::fromStdString(e.what());
            }
        }
        item->setEnabled(reason.isEmpty());
        item->setData(reason, Qt::UserRole + 1);
        item->setToolTip(reason.isEmpty() ? tr("%1: enabled for this run").arg(describe(name)) : reason);
        model->appendRow(item);
    }
    m_format->setModel(model);
    for (int i = 0; i < model->rowCount(); ++i) // the first enabled one
        if (model->item(i)->isEnabled()) {
            m_format->setCurrentIndex(i);
            break;
        }

    m_folder = new QLineEdit;
    m_folder->setObjectName(QStringLiteral("exportFolder"));
    m_folder->setPlaceholderText(tr("a new or empty folder"));
    auto* browse = new QToolButton;
    browse->setText(tr("…"));
    browse->setObjectName(QStringLiteral("exportBrowse"));
    connect(browse, &QToolButton::clicked, this, &ExportDialog::chooseFolder);
    auto* folderRow = new QHBoxLayout;
    folderRow->addWidget(m_folder, 1);
    folderRow->addWidget(browse);
    const QString base = QFileInfo(storePath).absolutePath() + QStringLiteral("/exports/run-%1-").arg(runId);
    auto suggest = [this, base] { m_folder->setText(base + format()); };
    suggest();
    connect(m_format, qOverload<int>(&QComboBox::currentIndexChanged), this, [this, base, suggest] {
        if (m_folder->text().isEmpty() || m_folder->text().startsWith(base))
            suggest();
    });

    m_message = new QLabel;
    m_message->setObjectName(QStringLiteral("exportMessage"));
    m_message->setWordWrap(true);
    m_message->setTextInteractionFlags(Qt::TextSelectableByMouse);
    if (!m_exportable)
        m_message->setText(runProblem);

    auto* form = new QFormLayout;
    form->addRow(tr("Run:"), new QLabel(runName.isEmpty() ? QString::number(runId) : runName));
    form->addRow(tr("Format:"), m_format);
    form->addRow(tr("Folder:"), folderRow);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
    m_export = buttons->addButton(tr("Export"), QDialogButtonBox::AcceptRole);
    m_export->setObjectName(QStringLiteral("exportButton"));
    m_export->setEnabled(m_exportable);
    connect(m_export, &QPushButton::clicked, this, &ExportDialog::startExport);
    connect(buttons, &QDialogButtonBox::rejected, this, &ExportDialog::reject);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(form);
    layout->addWidget(m_message, 1);
    layout->addWidget(buttons);
    resize(560, 260);
}

ExportDialog::~ExportDialog()
{
    if (m_thread) { // the export holds only its own objects: let it end
        m_thread->wait();
        delete m_thread;
    }
}

QString ExportDialog::format() const
{
    return m_format->currentData(Qt::UserRole).toString();
}

bool ExportDialog::setFormat(const QString& format)
{
    const int i = m_format->findData(format, Qt::UserRole);
    if (i < 0 || !disabledReason(format).isEmpty())
        return false;
    m_format->setCurrentIndex(i);
    return true;
}

QString ExportDialog::disabledReason(const QString& format) const
{
    const int i = m_format->findData(format, Qt::UserRole);
    if (i < 0)
        return tr("unknown format %1").arg(format);
    return m_format->itemData(i, Qt::UserRole + 1).toString();
}

QString ExportDialog::folder() const
{
    return m_folder->text().trimmed();
}

void ExportDialog::setFolder(const QString& folder)
{
    m_folder->setText(folder);
}

QString ExportDialog::message() const
{
    return m_message->text();
}

void ExportDialog::chooseFolder()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Export into folder"),
        folder().isEmpty() ? QFileInfo(m_storePath).absolutePath() : QFileInfo(folder()).absolutePath());
    if (!dir.isEmpty())
        m_folder->setText(dir);
}

bool ExportDialog::startExport()
{
    if (m_thread)
        return false;
    const QString fmt = format();
    if (!m_exportable || !disabledReason(fmt).isEmpty()) {
        m_message->setText(disabledReason(fmt));
        return false;
    }
    if (folder().isEmpty()) {
        m_message->setText(tr("Choose a folder to export into."));
        return false;
    }
    const std::string storePath = m_storePath.toStdString();
    const std::string dir = QDir::cleanPath(QFileInfo(folder()).absoluteFilePath()).toStdString();
    const std::int64_t runId = m_runId;
    auto outcome = std::make_shared<ExportOutcome>();
    m_thread = QThread::create([storePath, dir, runId, fmt, outcome] {
        try {
            ResultsStore store; // a connection of this thread's own
            std::string error;
            if (!store.open(storePath, ResultsStore::OpenMode::ReadOnly, &error))
                throw std::runtime_error(error);
            const auto written = exportRun(store, runId, fmt.toStdString(), dir);
            QString text = QObject::tr("Wrote %1:").arg(QString::fromStdString(written.directory));
            for (const auto& f : written.files)
                text += QStringLiteral("\n  ") + QString::fromStdString(f);
            if (!written.howToLoad.empty())
                text += QObject::tr("\n\nLoad it with:\n") + QString::fromStdString(written.howToLoad);
            for (const auto& note : written.notes)
                text += QStringLiteral("\n") + QString::fromStdString(note);
            outcome->ok = true;
            outcome->message = text;
        } catch (const std::exception& e) {
            outcome->message = QObject::tr("Export failed: %1").arg(QString::fromStdString(e.what()));
        }
    });
    connect(m_thread, &QThread::finished, this, [this, outcome] {
        m_thread->deleteLater();
        m_thread = nullptr;
        finish(outcome->ok, outcome->message);
    });
    m_export->setEnabled(false);
    m_format->setEnabled(false);
    m_message->setText(
        tr("Exporting run %1 as %2 to %3…").arg(m_runId).arg(fmt, QString::fromStdString(dir)));
    m_thread->start();
    return true;
}

void ExportDialog::finish(bool ok, const QString& message)
{
    m_export->setEnabled(true);
    m_format->setEnabled(true);
    m_message->setText(message);
    Q_EMIT exportFinished(ok, message);
}

void ExportDialog::closeEvent(QCloseEvent* event)
{
    if (m_thread) {
        m_message->setText(tr("The export is still running; close the dialog when it has ended."));
        event->ignore();
        return;
    }
    QDialog::closeEvent(event);
}

void ExportDialog::reject()
{
    if (m_thread) {
        m_message->setText(tr("The export is still running; close the dialog when it has ended."));
        return;
    }
    QDialog::reject();
}

} // namespace ladder::widgets
