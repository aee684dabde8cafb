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
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);
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
    redraw();
}

void ComparePlot::redraw()
{
    m_plot->clearPlottables();
    m_plot->clearItems();

    // One graph (markers only) plus its error bars per method, in the order points are sorted (by method).
    std::map<std::string, QCPGraph*> graphs;
    std::map<std::string, QCPErrorBars*> bars; // metric spread (vertical)
    std::map<std::string, QCPErrorBars*> memoryBars; // memory spread (horizontal)
    for (const auto& p : m_points) {
        if (graphs.count(p.method))
            continue;
        auto* graph = m_plot->addGraph();
        graph->setName(methodLabel(p.method));
        graph->setLineStyle(QCPGraph::lsNone);
        const QColor colour = methodColor(p.method);
        graph->setScatterStyle(
            QCPScatterStyle(static_cast<QCPScatterStyle::ScatterShape>(methodShape(p.method)),
                QPen(colour, 1.5), QBrush(colour), kMarkerSize));
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
    std::map<std::string, QVector<double>> keys, values, spreads, memorySpreads;
    for (const auto& p : m_points) {
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

    if (m_front.size() > 1) {
        auto* front = m_plot->addGraph();
        front->setName(tr("Pareto front"));
        QVector<double> fx, fy;
        for (auto i : m_front) {
            fx.append(m_points[i].memoryMB);
            fy.append(m_points[i].metric);
        }
        front->setData(fx, fy, true);
        front->setPen(QPen(QColor(90, 90, 90), 1, Qt::DashLine));
        front->setLineStyle(QCPGraph::lsLine);
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
    if (tasks.size() > 1 || backbones.size() > 1) {
        // Points of different tasks or backbones are not comparable, nor is a front across them.
        auto* text = new QCPItemText(m_plot);
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.5, 0.02);
        text->setPositionAlignment(Qt::AlignTop | Qt::AlignHCenter);
        text->setText(tr("%1 tasks, %2 backbones mixed:\nfilter to one of each")
                          .arg(tasks.size())
                          .arg(backbones.size()));
        text->setTextAlignment(Qt::AlignCenter);
        text->setColor(QColor(150, 60, 0));
    }

    if (m_points.empty()) {
        m_plot->xAxis->setRange(m_logMemory ? 1 : 0, 1000);
        m_plot->yAxis->setRange(0, 1);
        auto* text = new QCPItemText(m_plot);
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.5, 0.5);
        text->setText(tr("No finished run with a peak memory and this metric yet"));
        text->setColor(QColor(110, 110, 110));
        m_plot->legend->setVisible(false);
    } else {
        m_plot->legend->setVisible(true);
        double xMin = m_points.front().memoryMB, xMax = xMin;
        double yMin = m_points.front().metric - m_points.front().metricStd,
               yMax = m_points.front().metric + m_points.front().metricStd;
        for (const auto& p : m_points) {
            xMin = std::min(xMin, p.memoryMB);
            xMax = std::max(xMax, p.memoryMB);
            yMin = std::min(yMin, p.metric - p.metricStd);
            yMax = std::max(yMax, p.metric + p.metricStd);
        }
        if (m_logMemory) {
            xMin = std::max(xMin, 1e-3);
            m_plot->xAxis->setRange(xMin / kLogRangeFactor, std::max(xMax, xMin) * kLogRangeFactor);
        } else {
            const double span = xMax > xMin ? xMax - xMin : std::max(1.0, std::abs(xMax) * 0.1);
            m_plot->xAxis->setRange(xMin - span * kRangePadding, xMax + span * kRangePadding);
        }
        const double ySpan = yMax > yMin ? yMax - yMin : std::max(0.01, std::abs(yMax) * 0.1);
        m_plot->yAxis->setRange(yMin - ySpan * kRangePadding * 2, yMax + ySpan * kRangePadding * 2);
    }
    m_plot->replot(QCustomPlot::rpQueuedReplot);
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
    lines << QStringLiteral("<b>%1</b> %2")
                 .arg(methodLabel(p.method).toHtmlEscaped(),
                     QString::fromStdString(p.options).toHtmlEscaped());
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
