#include "QueueView.h"

#include <QApplication>
#include <QFrame>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QPainter>
#include <QPushButton>
#include <QShortcut>
#include <QStyledItemDelegate>
#include <QTableView>
#include <QVBoxLayout>

#include "RunQueueModel.h"

namespace ladder::widgets {
namespace {

// Draws the Progress column as a progress bar with the "step / total" text.
class ProgressDelegate : public QStyledItemDelegate {
public:
    using QStyledItemDelegate::QStyledItemDelegate;
    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override
    {
        const int percent = index.data(RunQueueModel::ProgressRole).toInt();
        if (percent < 0) {
            QStyledItemDelegate::paint(painter, option, index);
            return;
        }
        QStyleOptionProgressBar bar;
        bar.rect = option.rect.adjusted(2, 2, -2, -2);
        bar.minimum = 0;
        bar.maximum = 100;
        bar.progress = percent;
        bar.text = index.data().toString();
        bar.textVisible = true;
        bar.state = option.state | QStyle::State_Horizontal;
        QApplication::style()->drawControl(QStyle::CE_ProgressBar, &bar, painter);
    }
};

QPushButton* button(const QString& text, const char* name, const QString& tip)
{
    auto* b = new QPushButton(text);
    b->setObjectName(QString::fromLatin1(name));
    b->setToolTip(tip);
    b->setAutoDefault(false);
    return b;
}

} // namespace

QueueView::QueueView(RunQueueModel* model, QWidget* parent)
    : QWidget(parent)
    , m_model(model)
{
    auto* layout = new QVBoxLayout(this);

    // Runs left queued (or queued while paused) wait for the user: say so where the queue is.
    m_banner = new QFrame;
    m_banner->setObjectName(QStringLiteral("queueBanner"));
    m_banner->setFrameShape(QFrame::StyledPanel);
    m_banner->setToolTip(tr("The queue is paused: nothing starts until you press Start"));
    m_banner->setAutoFillBackground(true);
    QPalette bannerPalette = m_banner->palette();
    bannerPalette.setColor(QPalette::Window, bannerPalette.color(QPalette::ToolTipBase));
    bannerPalette.setColor(QPalette::WindowText, bannerPalette.color(QPalette::ToolTipText));
    m_banner->setPalette(bannerPalette);
    auto* bannerLayout = new QHBoxLayout(m_banner);
    m_bannerLabel = new QLabel;
    m_bannerLabel->setObjectName(QStringLiteral("queueBannerLabel"));
    m_start = button(tr("Start"), "startQueueButton", tr("Start the queued runs (the queue is paused)"));
    bannerLayout->addWidget(m_bannerLabel, 1);
    bannerLayout->addWidget(m_start);
    m_banner->setVisible(false);
    layout->addWidget(m_banner);

    m_table = new QTableView;
    m_table->setObjectName(QStringLiteral("queueTable"));
    m_table->setModel(m_model);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setItemDelegateForColumn(RunQueueModel::ProgressColumn, new ProgressDelegate(m_table));
    m_table->verticalHeader()->hide();
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->horizontalHeader()->setSectionResizeMode(RunQueueModel::NameColumn, QHeaderView::Interactive);
    m_table->setColumnWidth(RunQueueModel::IdColumn, 50);
    m_table->setColumnWidth(RunQueueModel::NameColumn, 300);
    m_table->setColumnWidth(RunQueueModel::ProgressColumn, 140);
    layout->addWidget(m_table, 1);

    auto* buttons = new QHBoxLayout;
    m_cancel = button(tr("Cancel"), "cancelRunButton", tr("Cancel the selected run (Esc)"));
    m_remove = button(tr("Remove"), "removeRunButton", tr("Remove a queued run, or delete a finished one"));
    m_up = button(tr("Move up"), "moveUpButton", tr("Run the selected queued run sooner"));
    m_down = button(tr("Move down"), "moveDownButton", tr("Run the selected queued run later"));
    m_duplicate
        = button(tr("Duplicate and edit"), "duplicateRunButton", tr("Open the run's spec in the form"));
    m_resume = button(tr("Resume"), "resumeRunButton",
        tr("Continue an interrupted, failed or cancelled run from its last saved training state"));
    m_pause = button(tr("Pause queue"), "pauseQueueButton", tr("Start no new run (running runs go on)"));
    m_pause->setCheckable(true);
    for (QPushButton* b : { m_cancel, m_remove, m_up, m_down, m_duplicate, m_resume })
        buttons->addWidget(b);
    buttons->addStretch(1);
    m_summary = new QLabel;
    m_summary->setObjectName(QStringLiteral("queueSummary"));
    buttons->addWidget(m_summary);
    buttons->addWidget(m_pause);
    layout->addLayout(buttons);

    connect(m_cancel, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT cancelRequested(m_selected);
    });
    connect(m_remove, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT removeRequested(m_selected);
    });
    connect(m_up, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT moveRequested(m_selected, -1);
    });
    connect(m_down, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT moveRequested(m_selected, 1);
    });
    connect(m_duplicate, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT duplicateRequested(m_selected);
    });
    connect(m_resume, &QPushButton::clicked, this, [this] {
        if (m_selected)
            Q_EMIT resumeRequested(m_selected);
    });
    connect(m_pause, &QPushButton::toggled, this, [this](bool paused) {
        updateBanner();
        Q_EMIT pauseToggled(paused);
    });
    connect(m_start, &QPushButton::clicked, this, [this] { m_pause->setChecked(false); });
    // Esc cancels only from inside the queue view; QShortcut's WidgetWithChildrenShortcut context keeps a
    // line edit's Esc elsewhere in the window (the compare filter, the form) from ever reaching it.
    auto* cancelShortcut = new QShortcut(QKeySequence(Qt::Key_Escape), this);
    cancelShortcut->setObjectName(QStringLiteral("cancelRunShortcut"));
    cancelShortcut->setContext(Qt::WidgetWithChildrenShortcut);
    connect(cancelShortcut, &QShortcut::activated, this, [this] {
        if (m_selected && m_cancel->isEnabled())
            Q_EMIT cancelRequested(m_selected);
    });
    connect(m_table->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
        [this](const QModelIndex& current) {
            const qint64 id = current.isValid() ? current.data(RunQueueModel::RunIdRole).toLongLong() : 0;
            if (id != m_selected) {
                m_selected = id;
                Q_EMIT selectedRunChanged(id);
            }
            updateButtons();
        });
    connect(m_model, &QAbstractItemModel::modelReset, this, &QueueView::modelReset);
    connect(m_model, &QAbstractItemModel::dataChanged, this, &QueueView::updateButtons);
    updateButtons();
}

qint64 QueueView::selectedRun() const
{
    return m_selected;
}

bool QueueView::selectRun(qint64 runId)
{
    const int row = m_model->rowOf(runId);
    if (row < 0)
        return false;
    m_table->selectionModel()->setCurrentIndex(
        m_model->index(row, 0), QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
    return true;
}

void QueueView::setPaused(bool paused)
{
    QSignalBlocker block(m_pause);
    m_pause->setChecked(paused);
    updateBanner();
}

bool QueueView::isPaused() const
{
    return m_pause->isChecked();
}

int QueueView::queuedCount() const
{
    int n = 0;
    for (const auto& r : m_model->runs())
        n += r.status == RunState::Queued ? 1 : 0;
    return n;
}

QString QueueView::bannerText() const
{
    return m_banner->isVisibleTo(this) ? m_bannerLabel->text() : QString();
}

void QueueView::updateBanner()
{
    const int queued = queuedCount();
    const bool show = m_pause->isChecked() && queued > 0;
    m_bannerLabel->setText(queued == 1 ? tr("1 run is queued:") : tr("%1 runs are queued:").arg(queued));
    m_banner->setVisible(show);
}

void QueueView::modelReset()
{
    // Rows were rebuilt: select the same run again (the view lost its current index).
    if (m_selected && !selectRun(m_selected)) {
        m_selected = 0;
        Q_EMIT selectedRunChanged(0);
    }
    updateButtons();
}

void QueueView::updateButtons()
{
    const int row = m_model->rowOf(m_selected);
    const RunRecord* run = m_model->run(row);
    const bool queued = run && run->status == RunState::Queued;
    const bool running = run && run->status == RunState::Running;
    m_cancel->setEnabled(queued || running);
    m_remove->setEnabled(run && !running);
    m_up->setEnabled(queued);
    m_down->setEnabled(queued);
    m_duplicate->setEnabled(run != nullptr);
    m_resume->setEnabled(run
        && (run->status == RunState::Interrupted || run->status == RunState::Failed
            || run->status == RunState::Cancelled));
    int nRunning = 0, nQueued = 0;
    for (const auto& r : m_model->runs()) {
        nRunning += r.status == RunState::Running ? 1 : 0;
        nQueued += r.status == RunState::Queued ? 1 : 0;
    }
    m_summary->setText(tr("%1 running · %2 queued").arg(nRunning).arg(nQueued));
    updateBanner();
}

} // namespace ladder::widgets
