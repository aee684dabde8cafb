#include "SlurmExportDialog.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "RunQueueController.h"

namespace ladder::widgets {

SlurmExportDialog::SlurmExportDialog(nlohmann::json sweep, QWidget* parent)
    : QDialog(parent)
    , m_sweep(std::move(sweep))
    , m_folder(new QLineEdit(this))
    , m_partition(new QLineEdit(this))
    , m_gpus(new QSpinBox(this))
    , m_cpus(new QSpinBox(this))
    , m_time(new QLineEdit(this))
    , m_maxParallel(new QSpinBox(this))
    , m_ladder(new QLineEdit(RunQueueController::defaultWorkerProgram(), this))
    , m_message(new QLabel(this))
{
    setWindowTitle(tr("Export for Slurm"));
    m_folder->setObjectName(QStringLiteral("slurmFolder"));
    m_folder->setPlaceholderText(tr("a folder the cluster's nodes share, e.g. /scratch/me/sweep-1"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    connect(browse, &QPushButton::clicked, this, &SlurmExportDialog::chooseFolder);
    auto* folderRow = new QHBoxLayout;
    folderRow->addWidget(m_folder, 1);
    folderRow->addWidget(browse);
    m_partition->setPlaceholderText(tr("the cluster's default"));
    m_gpus->setRange(0, 1024);
    m_gpus->setSpecialValueText(tr("none"));
    m_cpus->setRange(0, 65536);
    m_cpus->setSpecialValueText(tr("the cluster's default"));
    m_time->setPlaceholderText(tr("HH:MM:SS or D-HH:MM:SS; empty: the partition's limit"));
    m_maxParallel->setRange(0, 100000);
    m_maxParallel->setSpecialValueText(tr("no limit"));
    m_message->setObjectName(QStringLiteral("slurmMessage"));
    m_message->setWordWrap(true);
    m_message->setTextFormat(Qt::PlainText);
    m_message->setTextInteractionFlags(Qt::TextSelectableByMouse);

    auto* form = new QFormLayout;
    form->addRow(tr("Folder (--out):"), folderRow);
    form->addRow(tr("Partition (--partition):"), m_partition);
    form->addRow(tr("GPUs per run (--gpus-per-run):"), m_gpus);
    form->addRow(tr("CPUs per run (--cpus-per-run):"), m_cpus);
    form->addRow(tr("Time limit per run (--time):"), m_time);
    form->addRow(tr("Runs at once (--max-parallel):"), m_maxParallel);
    form->addRow(tr("ladder program (--ladder):"), m_ladder);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    auto* exportButton = buttons->addButton(tr("Export"), QDialogButtonBox::ApplyRole);
    exportButton->setObjectName(QStringLiteral("slurmExportButton"));
    connect(exportButton, &QPushButton::clicked, this, &SlurmExportDialog::exportSweep);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    const auto runs = m_sweep.contains("runs") ? m_sweep.at("runs").size() : std::size_t(0);
    auto* intro = new QLabel(
        tr("%1 run(s) as a Slurm job array: one array task per run, each writing a results store of its own "
           "in the folder; File > Import Results… merges them afterwards.")
            .arg(runs),
        this);
    intro->setWordWrap(true);
    layout->addWidget(intro);
    layout->addLayout(form);
    layout->addWidget(m_message);
    layout->addWidget(buttons);
    resize(620, 360);
}

SlurmOptions SlurmExportDialog::options() const
{
    SlurmOptions o;
    o.partition = m_partition->text().trimmed().toStdString();
    o.gpusPerRun = m_gpus->value();
    o.cpusPerRun = m_cpus->value();
    o.time = m_time->text().trimmed().toStdString();
    o.maxParallel = m_maxParallel->value();
    o.ladderPath = m_ladder->text().trimmed().toStdString();
    o.workingDir = QDir::currentPath().toStdString();
    return o;
}

void SlurmExportDialog::setOptions(const SlurmOptions& o)
{
    m_partition->setText(QString::fromStdString(o.partition));
    m_gpus->setValue(o.gpusPerRun);
    m_cpus->setValue(o.cpusPerRun);
    m_time->setText(QString::fromStdString(o.time));
    m_maxParallel->setValue(o.maxParallel);
    if (!o.ladderPath.empty())
        m_ladder->setText(QString::fromStdString(o.ladderPath));
}

QString SlurmExportDialog::folder() const
{
    return m_folder->text().trimmed();
}

void SlurmExportDialog::setFolder(const QString& folder)
{
    m_folder->setText(folder);
}

QString SlurmExportDialog::message() const
{
    return m_message->text();
}

void SlurmExportDialog::chooseFolder()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for the Slurm job"), folder());
    if (!dir.isEmpty())
        m_folder->setText(dir);
}

bool SlurmExportDialog::exportSweep()
{
    try {
        if (folder().isEmpty())
            throw std::runtime_error(tr("Choose the folder to write the job into.").toStdString());
        m_written = writeSlurmSweep(m_sweep, "the sweep", folder().toStdString(), options());
    } catch (const std::exception& e) {
        m_message->setStyleSheet(QStringLiteral("color: #b40000"));
        m_message->setText(QString::fromStdString(e.what()));
        return false;
    }
    m_message->setStyleSheet(QString());
    m_message->setText(
        tr("Wrote %1 and %2 (%3 run(s)). Submit it on the cluster (the folder must be on a file "
           "system its nodes share):\n  %4\nWhen the job has ended: File > Import Results… with "
           "%5/run-*.sqlite, or\n  %6")
            .arg(QString::fromStdString(m_written.script), QString::fromStdString(m_written.config))
            .arg(m_written.runs)
            .arg(QString::fromStdString(m_written.submitCommand), QString::fromStdString(m_written.outDir),
                QString::fromStdString(m_written.importCommand)));
    return true;
}

} // namespace ladder::widgets
