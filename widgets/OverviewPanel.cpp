#include "OverviewPanel.h"

#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableView>
#include <QVBoxLayout>

#include "ComputeDeviceModel.h"
#include "VersionInfo.h"

namespace ladder::widgets {
namespace {
constexpr qreal kTitlePointScale = 1.8;

QLabel* selectableLabel(const QString& text, const QString& objectName)
{
    auto* label = new QLabel(text);
    label->setObjectName(objectName);
    label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return label;
}
} // namespace

OverviewPanel::OverviewPanel(QWidget* parent)
    : QWidget(parent)
    , m_deviceModel(new ComputeDeviceModel(this))
{
    const VersionInfo versions = VersionInfo::current();

    auto* title = new QLabel(tr("LadderBench %1").arg(versions.ladderbench));
    title->setObjectName(QStringLiteral("titleLabel"));
    QFont titleFont = title->font();
    titleFont.setPointSizeF(titleFont.pointSizeF() * kTitlePointScale);
    titleFont.setBold(true);
    title->setFont(titleFont);

    auto* subtitle = new QLabel(tr("Memory-efficient fine-tuning of T5 models with Ladder Side-Tuning "
                                   "and the baselines it is compared with."));
    subtitle->setWordWrap(true);

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(title);
    layout->addWidget(subtitle);
    layout->addSpacing(8);
    layout->addWidget(createBuildGroup());
    layout->addWidget(createDeviceGroup());
    layout->addWidget(createGettingStartedGroup());
    layout->addStretch(1);

    refreshDevices();
}

QWidget* OverviewPanel::createBuildGroup()
{
    const VersionInfo versions = VersionInfo::current();
    auto* group = new QGroupBox(tr("Build"));
    auto* form = new QFormLayout(group);
    form->addRow(
        tr("LadderBench version:"), selectableLabel(versions.ladderbench, QStringLiteral("versionLabel")));
    form->addRow(
        tr("LibTorch version:"), selectableLabel(versions.torch, QStringLiteral("torchVersionLabel")));
    const QString cuda = versions.builtWithCuda ? versions.cuda : tr("none (CPU-only build)");
    form->addRow(tr("CUDA runtime:"), selectableLabel(cuda, QStringLiteral("cudaVersionLabel")));
    form->addRow(tr("Qt version:"), selectableLabel(versions.qt, QStringLiteral("qtVersionLabel")));
    return group;
}

QWidget* OverviewPanel::createDeviceGroup()
{
    auto* group = new QGroupBox(tr("Compute devices"));

    m_deviceTable = new QTableView;
    m_deviceTable->setObjectName(QStringLiteral("deviceTable"));
    m_deviceTable->setModel(m_deviceModel);
    m_deviceTable->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_deviceTable->setSelectionMode(QAbstractItemView::SingleSelection);
    m_deviceTable->setAlternatingRowColors(true);
    m_deviceTable->setWordWrap(false);
    m_deviceTable->verticalHeader()->hide();
    // As tall as its rows (see fitDeviceTableHeight): a machine has one to eight devices.
    m_deviceTable->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_deviceTable->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    connect(m_deviceModel, &QAbstractItemModel::modelReset, this, &OverviewPanel::fitDeviceTableHeight);
    auto* header = m_deviceTable->horizontalHeader();
    header->setSectionResizeMode(QHeaderView::ResizeToContents);
    header->setSectionResizeMode(ComputeDeviceModel::NameColumn, QHeaderView::Stretch);

    auto* refresh = new QPushButton(tr("&Refresh"));
    refresh->setObjectName(QStringLiteral("refreshDevicesButton"));
    refresh->setToolTip(tr("Query the devices and their free memory again"));
    connect(refresh, &QPushButton::clicked, this, &OverviewPanel::refreshDevices);

    auto* note = new QLabel(tr("Free memory of the CPU is the memory available to new processes; "
                               "of a GPU, what the CUDA driver reports free. GPUs are queried in the "
                               "background."));
    note->setWordWrap(true);
    note->setEnabled(false);

    m_queryLabel = new QLabel(tr("Looking for CUDA devices…"));
    m_queryLabel->setObjectName(QStringLiteral("deviceQueryLabel"));
    m_queryLabel->setVisible(false);
    connect(m_deviceModel, &ComputeDeviceModel::gpusQueried, this, [this] {
        m_queryLabel->setVisible(m_deviceModel->isQuerying());
        const QString error = m_deviceModel->lastQueryError();
        m_deviceTable->setToolTip(error.isEmpty() ? QString() : tr("The GPU query failed: %1").arg(error));
    });

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(note, 1);
    buttons->addWidget(m_queryLabel);
    buttons->addWidget(refresh);

    auto* layout = new QVBoxLayout(group);
    layout->addWidget(m_deviceTable);
    layout->addLayout(buttons);
    return group;
}

QWidget* OverviewPanel::createGettingStartedGroup()
{
    auto* group = new QGroupBox(tr("Getting started"));
    auto* text = new QLabel(
        tr("<p><b>Experiment</b>: choose a backbone (the built-in demo or a HuggingFace T5 folder), a task "
           "(the demo tasks, a GLUE folder, or your own JSONL/CSV/TSV file) and a method: Ladder "
           "Side-Tuning or a baseline (full fine-tuning, BitFit, Adapters, LoRA, QLoRA, prompt tuning). The "
           "form "
           "estimates the run's memory before it starts. <b>Run</b> (Ctrl+Enter) queues one run per seed "
           "(\"0-2\": three runs).</p>"
           "<p><b>Queue</b>: one run trains per device at a time; move, cancel (Esc in the queue, after "
           "asking for a running run), remove or duplicate runs. Runs left queued when the window was "
           "last closed wait for you to press <b>Start</b>.</p>"
           "<p><b>Live</b>: the training loss, the validation metric, the learning rate and memory of the "
           "run that trains, as it trains. <b>Compare</b>: best validation accuracy against peak training "
           "memory, with the Pareto front; Ctrl+E exports the plot or the table.</p>"
           "<p>First time: build the demo backbone once with <code>ladder demo</code> (a few minutes on a "
           "laptop); the backbone list picks it up without a restart. The runs are recorded in the same "
           "results store as the command line's: <code>ladder runs list</code> shows them, and "
           "<code>ladder train --config preset.json</code> runs a saved form (Ctrl+S) on a GPU server.</p>"));
    text->setObjectName(QStringLiteral("gettingStartedLabel"));
    text->setWordWrap(true);
    text->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* layout = new QVBoxLayout(group);
    layout->addWidget(text);
    return group;
}

void OverviewPanel::refreshDevices()
{
    m_deviceModel->refresh();
    m_queryLabel->setVisible(m_deviceModel->isQuerying());
}

void OverviewPanel::fitDeviceTableHeight()
{
    const int frame = 2 * m_deviceTable->frameWidth();
    m_deviceTable->setFixedHeight(m_deviceTable->horizontalHeader()->sizeHint().height()
        + m_deviceTable->verticalHeader()->length() + frame);
}

} // namespace ladder::widgets
