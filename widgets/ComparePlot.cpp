#include "ComparePlot.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <QFile>
#include <QFileInfo>
#include <QSvgGenerator>
#include <QToolTip>
#include <QVBoxLayout>

#include "QCustomPlotInclude.h"

namespace ladder::widgets {
namespace {

constexpr double kMarkerSize = 9.0;
constexpr double kSelectedMarkerSize = 18.0;
constexpr double kRangePadding = 0.08; // of the data span, on each side
constexpr double kLogRangeFactor = 1.25; // on a log axis: min / f .. max * f
constexpr int kDefaultExportWidth = 900;
constexpr int kDefaultExportHeight = 600;
constexpr int kLegendColumns = 2;

struct MethodStyle {
    const char* method;
    const char* label;
    QRgb colour;
    QCPScatterStyle::ScatterShape shape;
};

// Colour-blind-safe colours (Okabe and Ito) and a distinct marker per method.
const MethodStyle kMethodStyles[] = {
    { "ladder", "Ladder Side-Tuning", qRgb(213, 94, 0), QCPScatterStyle::ssDisc },
    { "adapter", "Adapters", qRgb(0, 114, 178), QCPScatterStyle::ssTriangle },
    { "lora", "LoRA", qRgb(0, 158, 115), QCPScatterStyle::ssDiamond },
    // QLoRA is its own method (issue 18): LoRA over an int4 or int8 backbone, beside LoRA's points.
    { "qlora", "QLoRA (LoRA, int4/int8 base)", qRgb(86, 180, 233), QCPScatterStyle::ssStar },
    { "bitfit", "BitFit", qRgb(204, 121, 167), QCPScatterStyle::ssTriangleInverted },
    { "prompt", "Prompt tuning", qRgb(230, 159, 0), QCPScatterStyle::ssCrossSquare },
    { "full", "Full fine-tuning", qRgb(0, 0, 0), QCPScatterStyle::ssSquare },
};

const MethodStyle* styleOf(const std::string& method)
{
    for (const auto& style : kMethodStyles)
        if (method == style.method)
            return &style;
    return nullptr;
}

QString methodLabel(const std::string& method)
{
    const MethodStyle* style = styleOf(method);
    return style ? QString::fromLatin1(style->label) : QString::fromStdString(method);
}

QString formatNumber(double value, int decimals)
{
    return QLocale::c().toString(value, 'f', decimals);
}

} // namespace

ComparePlot::ComparePlot(QWidget* parent)
    : QWidget(parent)
    , m_plot(new QCustomPlot(this))
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_plot);
    m_plot->setMinimumSize(320, 240);
    m_plot->setMouseTracking(true);
    m_plot->legend->setVisible(true);
    m_plot->legend->setFont(font());
    // The legend below the axes, in columns, so that it never covers a point.
    m_plot->axisRect()->insetLayout()->take(m_plot->legend);
    m_plot->axisRect()->insetLayout()->simplify();
    m_plot->plotLayout()->addElement(1, 0, m_plot->legend);
    m_plot->plotLayout()->setRowStretchFactor(1, 0.001);
    m_plot->legend->setFillOrder(QCPLegend::foColumnsFirst);
    m_plot->legend->setWrap(kLegendColumns);
    m_plot->legend->setBorderPen(Qt::NoPen);
    m_plot->legend->setMargins(QMargins(6, 2, 6, 2));
    connect(m_plot, &QCustomPlot::mouseMove, this, &ComparePlot::onMouseMove);
    connect(m_plot, &QCustomPlot::mousePress, this, &ComparePlot::onMousePress);
    rebuild();
}

QColor ComparePlot::methodColor(const std::string& method)
{
    const MethodStyle* style = styleOf(method);
    return style ? QColor(style->colour) : QColor(Qt::darkGray);
}

int ComparePlot::methodShape(const std::string& method)
{
    const MethodStyle* style = styleOf(method);
    return style ? style->shape : QCPScatterStyle::ssCircle;
}

void ComparePlot::setRuns(const std::vector<RunRecord>& runs)
{
    m_runs = runs;
    rebuild();
}

void ComparePlot::setMetric(CompareMetric metric)
{
    if (metric == m_metric)
        return;
    m_metric = metric;
    rebuild();
}

void ComparePlot::setLogMemoryAxis(bool logarithmic)
{
    if (logarithmic == m_logMemory)
        return;
    m_logMemory = logarithmic;
    redraw();
}

void ComparePlot::setSelectedRun(qint64 runId)
{
    if (runId == m_selectedRun)
        return;
    m_selectedRun = runId;
    redraw();
}

void ComparePlot::rebuild()
{
    m_points = CompareSeries::build(m_runs, m_metric);
    m_front = CompareSeries::paretoFront(m_points);
    m_absent = CompareSeries::absent(m_runs, m_metric);
    redraw();
}

void ComparePlot::redraw()
{
    m_plot->clearPlottables();
    m_plot->clearItems();

    // Axis ranges first: the front's step line and its shaded region reach the plot's right and bottom edges.
    double xLow = m_logMemory ? 1 : 0, xHigh = 1000, yLow = 0, yHigh = 1;
    if (!m_points.empty()) {
        double xMin = m_points.front().memoryMB, xMax = xMin;
        double yMin = m_points.front().metric - m_points.front().metricStd,
               yMax = m_points.front().metric + m_points.front().metricStd;
        for (const auto& p : m_points) {
            xMin = std::min(xMin, p.memoryMB - p.memoryStdMB);
            xMax = std::max(xMax, p.memoryMB + p.memoryStdMB);
            yMin = std::min(yMin, p.metric - p.metricStd);
            yMax = std::max(yMax, p.metric + p.metricStd);
        }
        if (m_logMemory) {
            xMin = std::max(xMin, 1e-3);
            xLow = xMin / kLogRangeFactor;
            xHigh = std::max(xMax, xMin) * kLogRangeFactor;
        } else {
            const double span = xMax > xMin ? xMax - xMin : std::max(1.0, std::abs(xMax) * 0.1);
            xLow = xMin - span * kRangePadding;
            xHigh = xMax + span * kRangePadding;
        }
        const double ySpan = yMax > yMin ? yMax - yMin : std::max(0.01, std::abs(yMax) * 0.1);
        yLow = yMin - ySpan * kRangePadding * 2;
        yHigh = yMax + ySpan * kRangePadding * 2;
    }

    // The Pareto front, under the points: the region it dominates shaded (every point to its right and
    // below), and its edge as a step line from each front point to the next and on to the plot's edge.
    if (!m_front.empty()) {
        QVector<double> stepX, stepY;
        for (auto i : m_front) {
            const auto& p = m_points[i];
            if (!stepX.isEmpty()) { // across at the previous metric, then up
                stepX.append(p.memoryMB);
                stepY.append(stepY.back());
            }
            stepX.append(p.memoryMB);
            stepY.append(p.metric);
        }
        const double right = xHigh * (m_logMemory ? 4.0 : 1.0) + std::abs(xHigh - xLow);
        const double bottom = yLow - std::abs(yHigh - yLow);
        stepX.append(right);
        stepY.append(stepY.back());

        auto* region = new QCPCurve(m_plot->xAxis, m_plot->yAxis);
        QVector<double> rx { stepX.front() }, ry { bottom };
        rx += stepX;
        ry += stepY;
        rx.append(right);
        ry.append(bottom);
        region->setData(rx, ry);
        region->setPen(Qt::NoPen);
        region->setBrush(QColor(120, 120, 120, 38));
        region->setName(tr("Dominated by the front"));

        auto* edge = new QCPCurve(m_plot->xAxis, m_plot->yAxis);
        edge->setData(stepX, stepY);
        edge->setPen(QPen(QColor(70, 70, 70), 1.5, Qt::DashLine));
        edge->setName(frontLegendText());
    }

    // One graph (markers only) plus its error bars per method, in the order points are sorted (by method);
    // unfinished runs in a second, hollow graph of the method's colour and shape, out of the legend.
    std::map<std::string, QCPGraph*> graphs, hollowGraphs;
    std::map<std::string, QCPErrorBars*> bars; // metric spread (vertical)
    std::map<std::string, QCPErrorBars*> memoryBars; // memory spread (horizontal)
    bool anyUnfinished = false;
    for (const auto& p : m_points) {
        const QColor colour = methodColor(p.method);
        const auto shape = static_cast<QCPScatterStyle::ScatterShape>(methodShape(p.method));
        if (!p.finished) {
            anyUnfinished = true;
            if (!hollowGraphs.count(p.method)) {
                auto* hollow = m_plot->addGraph();
                hollow->removeFromLegend();
                hollow->setLineStyle(QCPGraph::lsNone);
                hollow->setScatterStyle(
                    QCPScatterStyle(shape, QPen(colour, 1.5), QBrush(Qt::white), kMarkerSize));
                hollowGraphs[p.method] = hollow;
            }
            continue;
        }
        if (graphs.count(p.method))
            continue;
        auto* graph = m_plot->addGraph();
        graph->setName(methodLabel(p.method));
        graph->setLineStyle(QCPGraph::lsNone);
        graph->setScatterStyle(QCPScatterStyle(shape, QPen(colour, 1.5), QBrush(colour), kMarkerSize));
        graph->setPen(QPen(colour));
        graphs[p.method] = graph;
        auto* errors = new QCPErrorBars(m_plot->xAxis, m_plot->yAxis);
        errors->removeFromLegend();
        errors->setDataPlottable(graph);
        errors->setErrorType(QCPErrorBars::etValueError);
        errors->setPen(QPen(colour, 1));
        bars[p.method] = errors;
        auto* memoryErrors = new QCPErrorBars(m_plot->xAxis, m_plot->yAxis);
        memoryErrors->removeFromLegend();
        memoryErrors->setDataPlottable(graph);
        memoryErrors->setErrorType(QCPErrorBars::etKeyError);
        memoryErrors->setPen(QPen(colour, 1));
        memoryBars[p.method] = memoryErrors;
    }
    std::map<std::string, QVector<double>> keys, values, spreads, memorySpreads, hollowKeys, hollowValues;
    for (const auto& p : m_points) {
        if (!p.finished) {
            hollowKeys[p.method].append(p.memoryMB);
            hollowValues[p.method].append(p.metric);
            continue;
        }
        keys[p.method].append(p.memoryMB);
        values[p.method].append(p.metric);
        spreads[p.method].append(p.metricStd);
        memorySpreads[p.method].append(p.memoryStdMB);
    }
    for (auto& [method, graph] : graphs) {
        graph->setData(keys[method], values[method], true);
        bars[method]->setData(spreads[method]);
        memoryBars[method]->setData(memorySpreads[method]);
    }
    for (auto& [method, graph] : hollowGraphs)
        graph->setData(hollowKeys[method], hollowValues[method], true);
    if (anyUnfinished) { // one legend entry for every hollow marker
        auto* key = m_plot->addGraph();
        key->setName(tr("Not finished (hollow; state in the tooltip)"));
        key->setLineStyle(QCPGraph::lsNone);
        key->setScatterStyle(QCPScatterStyle(
            QCPScatterStyle::ssCircle, QPen(QColor(90, 90, 90), 1.5), QBrush(Qt::white), kMarkerSize));
    }

    for (std::size_t i = 0; i < m_points.size(); ++i) {
        const auto& ids = m_points[i].runIds;
        if (m_selectedRun == 0 || std::find(ids.begin(), ids.end(), m_selectedRun) == ids.end())
            continue;
        auto* ring = m_plot->addGraph();
        ring->removeFromLegend();
        ring->setLineStyle(QCPGraph::lsNone);
        QCPScatterStyle ringStyle(QCPScatterStyle::ssCircle, kSelectedMarkerSize);
        ringStyle.setPen(QPen(Qt::black, 2));
        ring->setScatterStyle(ringStyle);
        ring->setData({ m_points[i].memoryMB }, { m_points[i].metric }, true);
    }

    // Axes.
    QString metricName;
    for (const auto& p : m_points) {
        const QString name = QString::fromStdString(p.metricName);
        if (metricName.isEmpty())
            metricName = name;
        else if (name != metricName)
            metricName = tr("metric");
    }
    if (metricName.isEmpty())
        metricName = tr("metric");
    m_plot->yAxis->setLabel(
        (m_metric == CompareMetric::BestValidation ? tr("Best validation %1") : tr("Test %1"))
            .arg(metricName.replace(QLatin1Char('_'), QLatin1Char(' '))));
    m_plot->xAxis->setLabel(
        m_logMemory ? tr("Peak training memory (MB, log scale)") : tr("Peak training memory (MB)"));
    if (m_logMemory) {
        m_plot->xAxis->setScaleType(QCPAxis::stLogarithmic);
        m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    } else {
        m_plot->xAxis->setScaleType(QCPAxis::stLinear);
        m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    }

    std::set<std::string> tasks, backbones;
    for (const auto& p : m_points) {
        tasks.insert(p.task);
        backbones.insert(p.backbone);
    }
    QStringList notes;
    if (tasks.size() > 1 || backbones.size() > 1) // points of different tasks or backbones are not comparable
        notes << tr("%1 tasks, %2 backbones mixed: filter to one of each")
                     .arg(tasks.size())
                     .arg(backbones.size());
    if (!m_absent.empty()) {
        QStringList parts;
        for (const auto& [reason, count] : m_absent) {
            parts << QStringLiteral("%1 %2").arg(count).arg(QString::fromStdString(reason));
        }
        notes
            << tr("Not plotted (no peak memory or no metric yet): %1").arg(parts.join(QStringLiteral(", ")));
    }
    if (!notes.isEmpty()) {
        auto* text = new QCPItemText(m_plot);
        text->setObjectName(QStringLiteral("compareNotes"));
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.5, 0.02);
        text->setPositionAlignment(Qt::AlignTop | Qt::AlignHCenter);
        text->setText(notes.join(QLatin1Char('\n')));
        text->setTextAlignment(Qt::AlignCenter);
        text->setColor(QColor(150, 60, 0));
        text->setBrush(QColor(255, 255, 255, 210));
        text->setPadding(QMargins(4, 2, 4, 2));
    }

    if (m_points.empty()) {
        auto* text = new QCPItemText(m_plot);
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.5, 0.5);
        text->setText(tr("No run with a peak memory and this metric yet"));
        text->setColor(QColor(110, 110, 110));
    }
    m_plot->legend->setVisible(!m_points.empty());
    m_plot->xAxis->setRange(xLow, xHigh);
    m_plot->yAxis->setRange(yLow, yHigh);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

QString ComparePlot::frontLegendText() const
{
    QStringList ids;
    for (auto i : m_front)
        for (auto id : m_points[i].runIds)
            ids << QString::number(id);
    if (ids.isEmpty())
        return {};
    return ids.size() == 1 ? tr("Pareto front: run %1").arg(ids.front())
                           : tr("Pareto front: runs %1").arg(ids.join(QStringLiteral(", ")));
}

QString ComparePlot::notesText() const
{
    for (int i = 0; i < m_plot->itemCount(); ++i)
        if (auto* text = qobject_cast<QCPItemText*>(m_plot->item(i));
            text && text->objectName() == QLatin1String("compareNotes"))
            return text->text();
    return {};
}

QPointF ComparePlot::pixelOfPoint(int index) const
{
    if (index < 0 || index >= static_cast<int>(m_points.size()))
        return {};
    const auto& p = m_points[static_cast<std::size_t>(index)];
    return { m_plot->xAxis->coordToPixel(p.memoryMB), m_plot->yAxis->coordToPixel(p.metric) };
}

int ComparePlot::pointAt(const QPointF& pixel) const
{
    int best = -1;
    double bestDistance = kPickRadiusPx;
    for (int i = 0; i < static_cast<int>(m_points.size()); ++i) {
        const QPointF d = pixelOfPoint(i) - pixel;
        const double distance = std::hypot(d.x(), d.y());
        if (distance <= bestDistance) {
            bestDistance = distance;
            best = i;
        }
    }
    return best;
}

QString ComparePlot::tooltipFor(int index) const
{
    if (index < 0 || index >= static_cast<int>(m_points.size()))
        return {};
    const auto& p = m_points[static_cast<std::size_t>(index)];
    QStringList ids, seeds;
    for (auto id : p.runIds)
        ids << QString::number(id);
    for (auto seed : p.seeds)
        seeds << (seed < 0 ? QStringLiteral("?") : QString::number(seed));
    QStringList lines;
    QStringList names;
    for (const auto& name : p.names)
        if (!name.empty() && !names.contains(QString::fromStdString(name)))
            names << QString::fromStdString(name);
    if (!names.isEmpty())
        lines << QStringLiteral("<b>%1</b>").arg(names.join(QStringLiteral(" / ")).toHtmlEscaped());
    lines << QStringLiteral("%1 %2").arg(
        methodLabel(p.method).toHtmlEscaped(), QString::fromStdString(p.options).toHtmlEscaped());
    if (!p.finished)
        lines << tr("<i>%1: not finished, so not on the front</i>")
                     .arg(QString::fromStdString(p.state).toHtmlEscaped());
    lines << tr("task %1 · backbone %2")
                 .arg(QString::fromStdString(p.task).toHtmlEscaped(),
                     QString::fromStdString(p.backbone).toHtmlEscaped());
    const QString metricName = p.metricName.empty() ? tr("metric") : QString::fromStdString(p.metricName);
    if (p.count() > 1) {
        lines << tr("%1: %2 ± %3 (mean ± std over %4 seeds)")
                     .arg(metricName, formatNumber(p.metric, 4), formatNumber(p.metricStd, 4))
                     .arg(p.count());
        lines
            << tr("peak memory: %1 ± %2 MB").arg(formatNumber(p.memoryMB, 1), formatNumber(p.memoryStdMB, 1));
        lines
            << tr("runs %1 (seeds %2)").arg(ids.join(QStringLiteral(", ")), seeds.join(QStringLiteral(", ")));
    } else {
        lines << tr("%1: %2").arg(metricName, formatNumber(p.metric, 4));
        lines << tr("peak memory: %1 MB").arg(formatNumber(p.memoryMB, 1));
        lines << tr("run %1 (seed %2)").arg(ids.join(QString()), seeds.join(QString()));
    }
    return lines.join(QStringLiteral("<br>"));
}

void ComparePlot::onMouseMove(QMouseEvent* event)
{
    const int index = pointAt(event->position());
    if (index >= 0)
        QToolTip::showText(event->globalPosition().toPoint(), tooltipFor(index), m_plot);
    else
        QToolTip::hideText();
}

void ComparePlot::onMousePress(QMouseEvent* event)
{
    if (event->button() != Qt::LeftButton)
        return;
    const int index = pointAt(event->position());
    if (index < 0)
        return;
    const qint64 id = m_points[static_cast<std::size_t>(index)].runIds.front();
    setSelectedRun(id);
    Q_EMIT runSelected(id);
}

bool ComparePlot::exportTo(const QString& path, int width, int height, QString* error)
{
    auto fail = [&](const QString& message) {
        if (error)
            *error = message;
        return false;
    };
    if (width <= 0)
        width = m_plot->width() > 1 ? m_plot->width() : kDefaultExportWidth;
    if (height <= 0)
        height = m_plot->height() > 1 ? m_plot->height() : kDefaultExportHeight;
    m_plot->replot(QCustomPlot::rpImmediateRefresh); // pending queued replots: lay out first
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool ok = false;
    if (suffix == QLatin1String("png")) {
        ok = m_plot->savePng(path, width, height);
    } else if (suffix == QLatin1String("pdf")) {
        ok = m_plot->savePdf(path, width, height, QCP::epNoCosmetic, QStringLiteral("LadderBench"),
            tr("Accuracy versus memory"));
    } else if (suffix == QLatin1String("svg")) {
        QSvgGenerator generator;
        generator.setFileName(path);
        generator.setSize(QSize(width, height));
        generator.setViewBox(QRect(0, 0, width, height));
        generator.setTitle(tr("Accuracy versus memory"));
        generator.setDescription(tr("LadderBench compare plot"));
        QCPPainter painter;
        ok = painter.begin(&generator);
        if (ok) {
            m_plot->toPainter(&painter, width, height);
            ok = painter.end();
        }
        ok = ok && QFileInfo(path).size() > 0;
    } else {
        return fail(tr("%1: unknown plot format \"%2\" (expected .png, .svg or .pdf)").arg(path, suffix));
    }
    if (!ok)
        return fail(tr("%1: could not write the plot").arg(path));
    return true;
}

} // namespace ladder::widgets
