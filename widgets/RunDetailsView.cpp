#include "RunDetailsView.h"

#include <QApplication>
#include <QClipboard>
#include <QFontDatabase>
#include <QHeaderView>
#include <QLabel>
#include <QLocale>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSplitter>
#include <QTabWidget>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <nlohmann/json.hpp>

#include "MemoryBreakdownBar.h"
#include "RunsTableModel.h"
#include "util/Json.h"

namespace ladder::widgets {
namespace {

QString text(const std::string& s)
{
    return QString::fromStdString(s);
}

QString orDash(const QString& s)
{
    return s.isEmpty() ? QStringLiteral("—") : s;
}

QString metricText(const std::optional<double>& value)
{
    return value ? QString::number(*value, 'f', 4) : QStringLiteral("—");
}

QString countText(const std::optional<std::int64_t>& value)
{
    QLocale locale = QLocale::c();
    locale.setNumberOptions(QLocale::DefaultNumberOptions); // with thousands separators: 3,878,706
    return value ? locale.toString(static_cast<qlonglong>(*value)) : QStringLiteral("—");
}

QString bytesText(const std::optional<std::int64_t>& value)
{
    return value ? RunsTableModel::formatMegabytes(*value) : QStringLiteral("—");
}

} // namespace

RunDetailsView::RunDetailsView(QWidget* parent)
    : QWidget(parent)
    , m_title(new QLabel(this))
    , m_figures(new QTreeWidget(this))
    , m_memoryBar(new MemoryBreakdownBar(this))
    , m_tabs(new QTabWidget(this))
    , m_spec(new QPlainTextEdit(this))
    , m_log(new QPlainTextEdit(this))
    , m_evaluations(new QTreeWidget(this))
{
    const QFont fixed = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    m_title->setTextFormat(Qt::PlainText);
    m_title->setWordWrap(true);
    QFont titleFont = m_title->font();
    titleFont.setBold(true);
    m_title->setFont(titleFont);

    m_figures->setColumnCount(2);
    m_figures->setHeaderLabels({ tr("Figure"), tr("Value") });
    m_figures->setRootIsDecorated(false);
    m_figures->header()->setSectionResizeMode(0, QHeaderView::ResizeToContents);

    for (auto* edit : { m_spec, m_log }) {
        edit->setReadOnly(true);
        edit->setFont(fixed);
        edit->setLineWrapMode(QPlainTextEdit::NoWrap);
    }
    m_evaluations->setColumnCount(4);
    m_evaluations->setHeaderLabels({ tr("Step"), tr("Split"), tr("Main metric"), tr("All metrics") });
    m_evaluations->setRootIsDecorated(false);

    m_copyCommand = new QPushButton(tr("Copy CLI command"), this);
    m_copyCommand->setObjectName(QStringLiteral("copyCliCommand"));
    m_copyCommand->setToolTip(
        tr("Copies the shell line that trains this run again with the headless ladder CLI "
           "(its spec on standard input: ladder train --config -)"));
    connect(m_copyCommand, &QPushButton::clicked, this, [this] {
        if (!m_specJson.empty())
            QApplication::clipboard()->setText(cliCommand(m_specJson));
    });
    auto* specPage = new QWidget(this);
    auto* specLayout = new QVBoxLayout(specPage);
    specLayout->setContentsMargins(0, 0, 0, 0);
    specLayout->addWidget(m_spec, 1);
    specLayout->addWidget(m_copyCommand, 0, Qt::AlignRight);

    m_tabs->addTab(m_figures, tr("Figures"));
    m_tabs->addTab(specPage, tr("Spec"));
    m_tabs->addTab(m_log, tr("Log"));
    m_tabs->addTab(m_evaluations, tr("Evaluations"));

    auto* memoryLabel = new QLabel(tr("Peak training memory"), this);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_title);
    layout->addWidget(memoryLabel);
    layout->addWidget(m_memoryBar);
    layout->addWidget(m_tabs, 1);
    clear();
}

void RunDetailsView::setReader(StoreReader* reader)
{
    disconnect(m_detailsConnection);
    disconnect(m_changedConnection);
    m_reader = reader;
    if (!reader)
        return;
    m_detailsConnection
        = connect(reader, &StoreReader::detailsLoaded, this, [this](const RunDetailsSnapshot& d) {
              if (d.run.id == m_runId) // an answer for a run no longer shown is dropped
                  setDetails(d);
          });
    m_changedConnection = connect(reader, &StoreReader::storeChanged, this, &RunDetailsView::onStoreChanged);
}

void RunDetailsView::showRun(qint64 runId)
{
    if (runId <= 0) {
        clear();
        return;
    }
    m_runId = runId;
    if (m_reader)
        m_reader->requestDetails(runId);
}

void RunDetailsView::onStoreChanged()
{
    if (m_runId > 0 && m_reader)
        m_reader->requestDetails(m_runId);
}

void RunDetailsView::clear()
{
    m_runId = 0;
    m_title->setText(tr("No run selected: click a point of the plot or a row of the table."));
    m_figures->clear();
    m_spec->clear();
    m_specJson.clear();
    m_copyCommand->setEnabled(false);
    m_log->clear();
    m_evaluations->clear();
    m_memoryBar->setBreakdown(std::nullopt);
}

QString RunDetailsView::cliCommand(const std::string& specJson)
{
    auto spec = tryParseJson(specJson);
    if (!spec || !spec->is_object())
        return {};
    spec->erase("store"); // where it goes is the user's choice (--store, else the default store)
    QString compact = text(spec->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    compact.replace(QLatin1Char('\''), QStringLiteral("'\\''")); // close, an escaped quote, reopen
    return QStringLiteral("printf '%s\\n' '%1' | ladder train --config -").arg(compact);
}

QString RunDetailsView::prettySpec(const std::string& specJson)
{
    const auto spec = tryParseJson(specJson);
    return text(spec ? spec->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) : specJson);
}

void RunDetailsView::setDetails(const RunDetailsSnapshot& details)
{
    const RunRecord& run = details.run;
    m_runId = run.id;
    QString title
        = tr("Run %1 · %2 · %3").arg(run.id).arg(text(run.name), QString::fromLatin1(toString(run.status)));
    if (!run.errorMessage.empty())
        title += QLatin1Char('\n') + text(run.errorMessage);
    m_title->setText(title);
    m_memoryBar->setBreakdown(MemoryBreakdown::fromFigures(run.figures));
    fillFigures(run, details.metricPoints);

    m_specJson = run.specJson;
    m_copyCommand->setEnabled(tryParseJson(run.specJson).has_value());
    const QString spec = prettySpec(run.specJson);
    if (m_spec->toPlainText() != spec)
        m_spec->setPlainText(spec);

    QStringList lines;
    for (const auto& line : details.logs)
        lines << QStringLiteral("%1 %2 %3")
                     .arg(text(line.time), QString::fromLatin1(toString(line.level)), text(line.message));
    const QString log = lines.join(QLatin1Char('\n'));
    if (m_log->toPlainText() != log) {
        QScrollBar* bar = m_log->verticalScrollBar();
        const bool atEnd = bar->value() == bar->maximum();
        m_log->setPlainText(log);
        if (atEnd)
            bar->setValue(bar->maximum());
    }

    m_evaluations->clear();
    for (const auto& e : details.evaluations) {
        QStringList all;
        for (const auto& [name, value] : e.metrics)
            all << QStringLiteral("%1=%2").arg(text(name), QString::number(value, 'f', 4));
        auto* item = new QTreeWidgetItem(m_evaluations,
            { QString::number(e.step), text(e.split),
                e.mainMetric ? QStringLiteral("%1 %2").arg(
                    text(e.mainMetricName), QString::number(*e.mainMetric, 'f', 4))
                             : QStringLiteral("—"),
                all.join(QLatin1Char(' ')) });
        Q_UNUSED(item);
    }
}

void RunDetailsView::fillFigures(const RunRecord& run, std::int64_t metricPoints)
{
    const FinalFigures& f = run.figures;
    const QString metricName = f.mainMetricName.empty() ? tr("metric") : text(f.mainMetricName);
    const QString percent = run.trainablePercent()
        ? QStringLiteral("%1 %").arg(*run.trainablePercent(), 0, 'f', 3)
        : QStringLiteral("—");
    const QList<QPair<QString, QString>> rows = {
        { tr("method"), text(run.method) },
        { tr("options"), orDash(RunsTableModel::optionsSummary(run)) },
        { tr("backbone"), text(run.backbone) },
        { tr("task"), text(run.task) },
        { tr("seed"), run.seed ? QString::number(*run.seed) : QStringLiteral("—") },
        { tr("device"), text(run.device) },
        { tr("steps"), QStringLiteral("%1 / %2").arg(run.step).arg(run.totalSteps) },
        { tr("best validation %1").arg(metricName),
            f.bestStep ? tr("%1 (step %2)").arg(metricText(f.bestValidationMetric)).arg(*f.bestStep)
                       : metricText(f.bestValidationMetric) },
        { tr("test %1").arg(metricName), metricText(f.testMetric) },
        { tr("last validation %1").arg(metricName), metricText(f.lastMetric) },
        { tr("peak allocated"), bytesText(f.peakAllocatedBytes) },
        { tr("peak reserved"), bytesText(f.peakReservedBytes) },
        // Beside training's peak, for runs that have them (none before store version 2): null is no row.
        { tr("init peak"), f.initPeakAllocatedBytes ? bytesText(f.initPeakAllocatedBytes) : QString() },
        { tr("evaluation peak"), f.evalPeakAllocatedBytes ? bytesText(f.evalPeakAllocatedBytes) : QString() },
        { tr("weights"), bytesText(f.weightBytes) },
        { tr("gradients"), bytesText(f.gradientBytes) },
        { tr("optimizer state"), bytesText(f.optimizerBytes) },
        { tr("trainable parameters"), QStringLiteral("%1 (%2)").arg(countText(f.trainableParams), percent) },
        { tr("backbone parameters"), countText(f.backboneParams) },
        { tr("total parameters"), countText(f.totalParams) },
        { tr("wall time"),
            f.wallSeconds ? RunsTableModel::formatDuration(*f.wallSeconds) : QStringLiteral("—") },
        { tr("throughput"),
            f.tokensPerSecond ? tr("%1 tokens/s").arg(*f.tokensPerSecond, 0, 'f', 1) : QStringLiteral("—") },
        { tr("metric points"), QString::number(metricPoints) },
        { tr("created"), orDash(text(run.createdAt)) },
        { tr("started"), orDash(text(run.startedAt)) },
        { tr("finished"), orDash(text(run.finishedAt)) },
    };
    m_figures->clear();
    for (const auto& [label, value] : rows)
        if (!value.isNull())
            new QTreeWidgetItem(m_figures, { label, value });
}

QString RunDetailsView::titleText() const
{
    return m_title->text();
}

QString RunDetailsView::specText() const
{
    return m_spec->toPlainText();
}

QString RunDetailsView::logText() const
{
    return m_log->toPlainText();
}

QStringList RunDetailsView::figureLines() const
{
    QStringList lines;
    for (int i = 0; i < m_figures->topLevelItemCount(); ++i)
        lines << m_figures->topLevelItem(i)->text(0) + QStringLiteral(": ")
                + m_figures->topLevelItem(i)->text(1);
    return lines;
}

QStringList RunDetailsView::evaluationLines() const
{
    QStringList lines;
    for (int i = 0; i < m_evaluations->topLevelItemCount(); ++i) {
        const auto* item = m_evaluations->topLevelItem(i);
        lines
            << QStringLiteral("%1 %2 %3 %4").arg(item->text(0), item->text(1), item->text(2), item->text(3));
    }
    return lines;
}

} // namespace ladder::widgets
