#include "CompareTab.h"

#include <cmath>
#include <set>

#include <QCheckBox>
#include <QComboBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPushButton>
#include <QSaveFile>
#include <QSplitter>
#include <QTableView>
#include <QTimer>
#include <QVBoxLayout>

#include "ComparePlot.h"
#include "RunDetailsView.h"
#include "RunsFilterProxy.h"
#include "RunsTableModel.h"
#include "StoreReader.h"

namespace ladder::widgets {
namespace {

constexpr int kPlotShare = 45; // percent of the width the plot starts with
constexpr int kWidestTextColumnChars = 24; // name and options columns, at first load
constexpr double kExactIntegerLimit = 9007199254740992.0; // 2^53: doubles hold every integer below

// Combo entries: the text shown and, as item data, the value filtered on ("" = all).
void setChoices(QComboBox* combo, const QString& allLabel, const std::set<std::string>& values, bool backbone)
{
    const QString current = combo->currentData().toString();
    QSignalBlocker block(combo);
    combo->clear();
    combo->addItem(allLabel, QString());
    for (const auto& value : values) {
        const QString v = QString::fromStdString(value);
        combo->addItem(backbone ? RunsTableModel::backboneLabel(value) : v, v);
        if (backbone)
            combo->setItemData(combo->count() - 1, v, Qt::ToolTipRole);
    }
    const int index = combo->findData(current);
    combo->setCurrentIndex(index >= 0 ? index : 0);
}

} // namespace

CompareTab::CompareTab(const QString& storePath, QWidget* parent)
    : QWidget(parent)
    , m_reader(new StoreReader(this))
    , m_model(new RunsTableModel(this))
    , m_proxy(new RunsFilterProxy(this))
    , m_plot(new ComparePlot(this))
    , m_table(new QTableView(this))
    , m_details(new RunDetailsView(this))
    , m_filter(new QLineEdit(this))
    , m_taskCombo(new QComboBox(this))
    , m_backboneCombo(new QComboBox(this))
    , m_metricCombo(new QComboBox(this))
    , m_logAxis(new QCheckBox(tr("Log memory axis"), this))
    , m_status(new QLabel(this))
    , m_plotTimer(new QTimer(this))
{
    m_proxy->setSourceModel(m_model);
    m_table->setModel(m_proxy);
    m_table->setSortingEnabled(true);
    m_table->sortByColumn(RunsTableModel::IdColumn, Qt::AscendingOrder);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setAlternatingRowColors(true);
    m_table->verticalHeader()->setVisible(false);
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->setWordWrap(false);

    m_filter->setPlaceholderText(tr("Filter runs (Ctrl+F)"));
    m_filter->setClearButtonEnabled(true);
    m_metricCombo->addItem(tr("Best validation"), static_cast<int>(CompareMetric::BestValidation));
    m_metricCombo->addItem(tr("Test"), static_cast<int>(CompareMetric::Test));
    setChoices(m_taskCombo, tr("All tasks"), {}, false);
    setChoices(m_backboneCombo, tr("All backbones"), {}, true);
    m_status->setTextFormat(Qt::PlainText);
    m_status->setWordWrap(true);
    m_status->setVisible(false);

    auto* exportButton = new QPushButton(tr("Export…"), this);
    exportButton->setToolTip(tr("Export the plot (PNG, SVG, PDF) or the table (CSV) (Ctrl+E)"));

    auto* filters = new QHBoxLayout;
    filters->addWidget(m_filter, 2);
    filters->addWidget(new QLabel(tr("Task:"), this));
    filters->addWidget(m_taskCombo, 1);
    filters->addWidget(new QLabel(tr("Backbone:"), this));
    filters->addWidget(m_backboneCombo, 1);
    filters->addWidget(new QLabel(tr("Metric:"), this));
    filters->addWidget(m_metricCombo);
    filters->addWidget(m_logAxis);
    filters->addWidget(exportButton);

    auto* right = new QSplitter(Qt::Vertical, this);
    right->addWidget(m_table);
    right->addWidget(m_details);
    right->setStretchFactor(0, 3);
    right->setStretchFactor(1, 2);
    auto* main = new QSplitter(Qt::Horizontal, this);
    main->addWidget(m_plot);
    main->addWidget(right);
    // The plot and the table share the width kPlotShare : 100 - kPlotShare, at first and when the window is
    // resized, until the user drags the handle.
    main->setStretchFactor(0, kPlotShare);
    main->setStretchFactor(1, 100 - kPlotShare);
    main->setSizes({ kPlotShare * 10, (100 - kPlotShare) * 10 });
    right->setSizes({ 60, 40 });

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(filters);
    layout->addWidget(m_status);
    layout->addWidget(main, 1);

    // The plot follows the table's filters; changes are gathered and drawn once per event-loop pass.
    m_plotTimer->setSingleShot(true);
    m_plotTimer->setInterval(0);
    connect(m_plotTimer, &QTimer::timeout, this, &CompareTab::updatePlot);
    auto schedule = [this] { m_plotTimer->start(); };
    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, schedule);
    connect(m_proxy, &QAbstractItemModel::rowsRemoved, this, schedule);
    connect(m_proxy, &QAbstractItemModel::modelReset, this, schedule);
    connect(m_proxy, &QAbstractItemModel::dataChanged, this, schedule);
    connect(m_proxy, &QAbstractItemModel::layoutChanged, this, schedule);

    connect(m_filter, &QLineEdit::textChanged, m_proxy, &RunsFilterProxy::setFilterFixedString);
    connect(m_taskCombo, &QComboBox::currentIndexChanged, this,
        [this] { m_proxy->setTask(m_taskCombo->currentData().toString()); });
    connect(m_backboneCombo, &QComboBox::currentIndexChanged, this,
        [this] { m_proxy->setBackbone(m_backboneCombo->currentData().toString()); });
    connect(m_metricCombo, &QComboBox::currentIndexChanged, this,
        [this] { m_plot->setMetric(static_cast<CompareMetric>(m_metricCombo->currentData().toInt())); });
    connect(m_logAxis, &QCheckBox::toggled, m_plot, &ComparePlot::setLogMemoryAxis);
    connect(exportButton, &QPushButton::clicked, this, &CompareTab::exportInteractive);

    m_table->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
    connect(m_model, &RunsTableModel::renameRequested, this, &CompareTab::renameRequested);
    connect(m_reader, &StoreReader::runsLoaded, this, &CompareTab::onRunsLoaded);
    connect(m_reader, &StoreReader::loadFailed, this, &CompareTab::setError);
    m_details->setReader(m_reader);
    connect(m_plot, &ComparePlot::runSelected, this, &CompareTab::selectRun);
    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this,
        &CompareTab::onTableSelectionChanged);

    if (!storePath.isEmpty())
        setStorePath(storePath);
}

CompareTab::~CompareTab() = default;

void CompareTab::setDetailsVisible(bool visible)
{
    m_details->setVisible(visible);
}

bool CompareTab::detailsVisible() const
{
    return !m_details->isHidden();
}

void CompareTab::setStorePath(const QString& path)
{
    m_loaded = false;
    m_status->setVisible(false);
    m_reader->setStorePath(path);
}

QString CompareTab::storePath() const
{
    return m_reader->storePath();
}

void CompareTab::reload()
{
    m_reader->requestRuns();
}

void CompareTab::onRunsLoaded(const std::vector<ladder::RunRecord>& runs)
{
    const bool first = m_model->rowCount() == 0;
    m_model->setRuns(runs);
    if (first && !runs.empty()) {
        m_table->resizeColumnsToContents();
        // Long names and options are elided (the tooltip has them whole), so that the figures beside the
        // name stay in view at the default window size.
        const int widest = fontMetrics().averageCharWidth() * kWidestTextColumnChars;
        for (int column : { int(RunsTableModel::NameColumn), int(RunsTableModel::OptionsColumn) })
            if (m_table->columnWidth(column) > widest)
                m_table->setColumnWidth(column, widest);
    }
    refreshFilterChoices();
    updatePlot();
    if (m_selectedRun > 0 && m_model->rowOfRun(m_selectedRun) < 0)
        selectRun(0); // the selected run was deleted
    m_loaded = true;
    Q_EMIT loaded();
}

void CompareTab::refreshFilterChoices()
{
    std::set<std::string> tasks, backbones;
    for (const auto& run : m_model->runs()) {
        tasks.insert(run.task);
        backbones.insert(run.backbone);
    }
    setChoices(m_taskCombo, tr("All tasks"), tasks, false);
    setChoices(m_backboneCombo, tr("All backbones"), backbones, true);
    // The combos may have fallen back to "all" when their choice vanished.
    m_proxy->setTask(m_taskCombo->currentData().toString());
    m_proxy->setBackbone(m_backboneCombo->currentData().toString());
}

std::vector<RunRecord> CompareTab::visibleRuns() const
{
    std::vector<RunRecord> runs;
    runs.reserve(static_cast<std::size_t>(m_proxy->rowCount()));
    for (int row = 0; row < m_proxy->rowCount(); ++row) {
        const QModelIndex source = m_proxy->mapToSource(m_proxy->index(row, 0));
        if (const RunRecord* run = m_model->runAt(source.row()))
            runs.push_back(*run);
    }
    return runs;
}

void CompareTab::updatePlot()
{
    m_plotTimer->stop();
    m_plot->setRuns(visibleRuns());
}

void CompareTab::onTableSelectionChanged()
{
    const QModelIndexList rows = m_table->selectionModel()->selectedRows();
    const qint64 id = rows.isEmpty() ? 0 : rows.front().data(RunsTableModel::RunIdRole).toLongLong();
    if (id != 0)
        selectRun(id);
}

void CompareTab::selectRun(qint64 runId)
{
    if (runId == m_selectedRun)
        return;
    m_selectedRun = runId;
    m_plot->setSelectedRun(runId);
    const int sourceRow = m_model->rowOfRun(runId);
    if (sourceRow >= 0) {
        const QModelIndex index = m_proxy->mapFromSource(m_model->index(sourceRow, 0));
        if (index.isValid()) {
            m_table->selectionModel()->select(
                index, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
            m_table->scrollTo(index);
        }
    } else {
        m_table->clearSelection();
    }
    m_details->showRun(runId);
    Q_EMIT runSelected(runId);
}

void CompareTab::focusFilter()
{
    m_filter->setFocus(Qt::ShortcutFocusReason);
    m_filter->selectAll();
}

void CompareTab::setError(const QString& message)
{
    m_lastError = message;
    m_status->setText(message);
    m_status->setVisible(!message.isEmpty());
}

bool CompareTab::exportPlot(const QString& path)
{
    QString error;
    if (!m_plot->exportTo(path, 0, 0, &error)) {
        setError(error);
        return false;
    }
    return true;
}

QStringList CompareTab::csvColumns()
{
    // One per table column, in the table's order (RunsTableModel::Column).
    return { QStringLiteral("id"), QStringLiteral("name"), QStringLiteral("peak_allocated_bytes"),
        QStringLiteral("best_validation_metric"), QStringLiteral("test_metric"), QStringLiteral("status"),
        QStringLiteral("method"), QStringLiteral("options"), QStringLiteral("backbone"),
        QStringLiteral("task"), QStringLiteral("seed"), QStringLiteral("trainable_percent"),
        QStringLiteral("wall_seconds"), QStringLiteral("tokens_per_second") };
}

QString CompareTab::csvField(const QString& value)
{
    if (!value.contains(QLatin1Char(',')) && !value.contains(QLatin1Char('"'))
        && !value.contains(QLatin1Char('\n')) && !value.contains(QLatin1Char('\r')))
        return value;
    QString quoted = value;
    quoted.replace(QLatin1Char('"'), QStringLiteral("\"\""));
    return QLatin1Char('"') + quoted + QLatin1Char('"');
}

bool CompareTab::exportTableCsv(const QString& path)
{
    static_assert(RunsTableModel::ColumnCount == 14, "csvColumns() names one CSV column per table column");
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly | QIODevice::Text)) {
        setError(tr("%1: cannot write the table: %2").arg(path, file.errorString()));
        return false;
    }
    QByteArray out = csvColumns().join(QLatin1Char(',')).toUtf8() + '\n';
    for (int row = 0; row < m_proxy->rowCount(); ++row) {
        QStringList fields;
        for (int column = 0; column < RunsTableModel::ColumnCount; ++column) {
            const QVariant raw = m_proxy->index(row, column).data(RunsTableModel::RawValueRole);
            QString value;
            if (raw.typeId() == QMetaType::Double) {
                const double v = raw.toDouble();
                // Counts and bytes as integers ("500000000", not "5e+08"); other numbers round-trip exactly.
                value = std::floor(v) == v && std::abs(v) < kExactIntegerLimit
                    ? QString::number(static_cast<qlonglong>(v))
                    : QString::number(v, 'g', QLocale::FloatingPointShortest);
            } else if (raw.isValid())
                value = raw.toString();
            fields << csvField(value);
        }
        out += fields.join(QLatin1Char(',')).toUtf8() + '\n';
    }
    file.write(out);
    if (!file.commit()) {
        setError(tr("%1: cannot write the table: %2").arg(path, file.errorString()));
        return false;
    }
    return true;
}

void CompareTab::exportInteractive()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Export"), QStringLiteral("compare.png"),
        tr("PNG image (*.png);;SVG image (*.svg);;PDF document (*.pdf);;Runs table (*.csv)"));
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().compare(QLatin1String("csv"), Qt::CaseInsensitive) == 0)
        exportTableCsv(path);
    else
        exportPlot(path);
}

} // namespace ladder::widgets
