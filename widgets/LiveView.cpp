#include "LiveView.h"

#include <cmath>

#include <QCheckBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QScopedValueRollback>
#include <QSlider>
#include <QTimer>
#include <QVBoxLayout>

#include "QCustomPlotInclude.h"
#include "StoreWatcher.h"

namespace ladder::widgets {
namespace {
constexpr double kDefaultSmoothing = 0.6;
constexpr int kSliderSteps = 100; // smoothing 0.00 .. 0.99
constexpr double kMB = 1e6;
constexpr double kRangeMargin = 0.05;
const QColor kRawLoss(0xa8, 0xc8, 0xf0);
const QColor kSmoothLoss(0x1f, 0x5f, 0xbf);
const QColor kEval(0xd9, 0x5f, 0x02);
const QColor kLr(0x1b, 0x9e, 0x77);
const QColor kAllocated(0x75, 0x70, 0xb3);
const QColor kPeak(0xe7, 0x29, 0x8a);
const QColor kReserved(0x66, 0x66, 0x66);

enum LossGraph { RawGraph, SmoothGraph, EvalGraph };
enum MemoryGraph { AllocatedGraph, PeakGraph, ReservedGraph };

QCPGraph* addGraph(QCustomPlot* plot, const QColor& color, const QString& name, QCPAxis* y = nullptr)
{
    QCPGraph* g = y ? plot->addGraph(plot->xAxis, y) : plot->addGraph();
    g->setPen(QPen(color, 1));
    g->setName(name);
    g->setAdaptiveSampling(true);
    return g;
}

void setPadded(QCPAxis* axis, double lo, double hi, bool log)
{
    if (log) {
        axis->setRange(lo / 1.2, hi * 1.2);
        return;
    }
    const double span = hi - lo;
    const double pad = span > 0 ? span * kRangeMargin : std::max(std::abs(hi) * kRangeMargin, 1e-12);
    axis->setRange(lo - pad, hi + pad);
}
} // namespace

void LiveView::Range::add(double v)
{
    if (!std::isfinite(v))
        return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
}

LiveView::LiveView(QWidget* parent)
    : QWidget(parent)
    , m_smoother(kDefaultSmoothing)
{
    auto* layout = new QVBoxLayout(this);
    auto* controls = new QHBoxLayout;
    m_title = new QLabel(tr("No run selected: select one in the queue"));
    m_title->setObjectName(QStringLiteral("liveTitle"));
    controls->addWidget(m_title, 1);
    controls->addWidget(new QLabel(tr("Smoothing")));
    m_smoothingSlider = new QSlider(Qt::Horizontal);
    m_smoothingSlider->setObjectName(QStringLiteral("smoothingSlider"));
    m_smoothingSlider->setRange(0, kSliderSteps - 1);
    m_smoothingSlider->setValue(static_cast<int>(std::lround(kDefaultSmoothing * kSliderSteps)));
    m_smoothingSlider->setFixedWidth(160);
    controls->addWidget(m_smoothingSlider);
    m_smoothingLabel = new QLabel(QString::number(kDefaultSmoothing, 'f', 2));
    controls->addWidget(m_smoothingLabel);
    m_logBox = new QCheckBox(tr("Log scale"));
    m_logBox->setObjectName(QStringLiteral("logScaleBox"));
    controls->addWidget(m_logBox);
    m_followBox = new QCheckBox(tr("Follow"));
    m_followBox->setObjectName(QStringLiteral("followBox"));
    m_followBox->setChecked(true);
    m_followBox->setToolTip(tr("Rescale the axes to the data as points arrive. Zooming or panning a chart "
                               "(wheel, drag) turns it off; turn it on to follow the run again."));
    controls->addWidget(m_followBox);
    layout->addLayout(controls);

    m_loss = makePlot(tr("loss"), "lossPlot");
    addGraph(m_loss, kRawLoss, tr("loss"));
    addGraph(m_loss, kSmoothLoss, tr("loss (smoothed)"));
    m_loss->yAxis2->setVisible(true);
    m_loss->yAxis2->setLabel(tr("validation metric"));
    QCPGraph* eval = addGraph(m_loss, kEval, tr("validation"), m_loss->yAxis2);
    eval->setLineStyle(QCPGraph::lsLine);
    eval->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, kEval, kEval, 6));
    m_loss->legend->setVisible(true);
    layout->addWidget(m_loss, 3);

    auto* lower = new QHBoxLayout;
    m_lr = makePlot(tr("learning rate"), "learningRatePlot");
    addGraph(m_lr, kLr, tr("learning rate"));
    m_memory = makePlot(tr("memory (MB)"), "memoryPlot");
    addGraph(m_memory, kAllocated, tr("allocated"));
    addGraph(m_memory, kPeak, tr("peak allocated"));
    addGraph(m_memory, kReserved, tr("reserved"));
    showReserved(false);
    m_memory->legend->setVisible(true);
    lower->addWidget(m_lr, 1);
    lower->addWidget(m_memory, 1);
    layout->addLayout(lower, 2);

    m_timer = new QTimer(this);
    m_timer->setInterval(kReplotIntervalMs);
    connect(m_timer, &QTimer::timeout, this, &LiveView::replotIfDirty);
    m_timer->start();

    connect(m_smoothingSlider, &QSlider::valueChanged, this,
        [this](int value) { setSmoothing(static_cast<double>(value) / kSliderSteps); });
    connect(m_logBox, &QCheckBox::toggled, this, &LiveView::setLogScale);
    connect(m_followBox, &QCheckBox::toggled, this, &LiveView::setFollow);
    for (QCustomPlot* plot : { m_loss, m_lr, m_memory })
        for (QCPAxis* axis : { plot->xAxis, plot->yAxis, plot->yAxis2 })
            connect(
                axis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, &LiveView::axisRangeChanged);
}

void LiveView::axisRangeChanged()
{
    // A range the view did not set is the user's (a wheel zoom, a drag, or code acting for the user).
    if (!m_settingRanges && m_follow)
        setFollow(false);
}

void LiveView::setFollow(bool on)
{
    if (m_followBox->isChecked() != on) {
        QSignalBlocker block(m_followBox);
        m_followBox->setChecked(on);
    }
    if (m_follow == on)
        return;
    m_follow = on;
    m_dirty = m_dirty || on; // following again: rescale at the next replot
}

QCustomPlot* LiveView::makePlot(const QString& yLabel, const char* name)
{
    auto* plot = new QCustomPlot;
    plot->setObjectName(QString::fromLatin1(name));
    plot->setNotAntialiasedElements(QCP::aeAll);
    plot->xAxis->setLabel(tr("step"));
    plot->yAxis->setLabel(yLabel);
    plot->setMinimumHeight(120);
    plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    return plot;
}

void LiveView::setRun(qint64 runId, const QString& title)
{
    m_runId = runId;
    m_title->setText(runId > 0 ? title : tr("No run selected: select one in the queue"));
    clearAll();
    setFollow(true); // a zoom into the previous run's curves means nothing for this one
}

void LiveView::clearAll()
{
    for (QCustomPlot* plot : { m_loss, m_lr, m_memory })
        for (int i = 0; i < plot->graphCount(); ++i)
            plot->graph(i)->data()->clear();
    showReserved(false);
    m_steps.clear();
    m_rawLoss.clear();
    m_smoothed.clear();
    m_smoother.reset();
    m_hasReserved = false;
    m_stepRange = m_lossRange = m_positiveLoss = m_lrRange = m_memoryRange = m_evalRange = Range();
    m_dirty = true;
}

void LiveView::appendPoints(const std::vector<MetricPoint>& points)
{
    QCPGraph* raw = m_loss->graph(RawGraph);
    QCPGraph* smooth = m_loss->graph(SmoothGraph);
    QCPGraph* lr = m_lr->graph(0);
    for (const auto& p : points) {
        const double step = static_cast<double>(p.step);
        if (!m_steps.empty() && step <= m_steps.back())
            continue;
        m_steps.push_back(step);
        m_stepRange.add(step);
        const double loss = p.loss ? *p.loss : std::numeric_limits<double>::quiet_NaN();
        m_rawLoss.push_back(loss);
        const double s = m_smoother.add(loss);
        m_smoothed.push_back(s);
        if (std::isfinite(loss)) {
            raw->addData(step, loss);
            smooth->addData(step, s);
            m_lossRange.add(loss);
            if (loss > 0)
                m_positiveLoss.add(loss);
        }
        if (p.learningRate) {
            lr->addData(step, *p.learningRate);
            m_lrRange.add(*p.learningRate);
        }
        if (p.allocatedBytes) {
            const double mb = static_cast<double>(*p.allocatedBytes) / kMB;
            m_memory->graph(AllocatedGraph)->addData(step, mb);
            m_memoryRange.add(mb);
        }
        if (p.peakAllocatedBytes) {
            const double mb = static_cast<double>(*p.peakAllocatedBytes) / kMB;
            m_memory->graph(PeakGraph)->addData(step, mb);
            m_memoryRange.add(mb);
        }
        if (p.reservedBytes && *p.reservedBytes > 0) {
            const double mb = static_cast<double>(*p.reservedBytes) / kMB;
            m_memory->graph(ReservedGraph)->addData(step, mb);
            m_memoryRange.add(mb);
            // The CPU meter reports reserved = allocated: the curve is only worth showing for CUDA's cache.
            m_hasReserved = m_hasReserved || *p.reservedBytes != p.allocatedBytes.value_or(0);
        }
    }
    showReserved(m_hasReserved);
    m_dirty = m_dirty || !points.empty();
}

void LiveView::showReserved(bool show)
{
    QCPGraph* reserved = m_memory->graph(ReservedGraph);
    if (reserved->visible() == show && (show == (m_memory->legend->itemWithPlottable(reserved) != nullptr)))
        return;
    reserved->setVisible(show);
    if (show)
        reserved->addToLegend();
    else
        reserved->removeFromLegend();
}

void LiveView::setEvaluations(const std::vector<Evaluation>& evaluations)
{
    QCPGraph* g = m_loss->graph(EvalGraph);
    g->data()->clear();
    m_evalRange = Range();
    QString metric;
    for (const auto& e : evaluations) {
        if (e.split != "validation" || !e.mainMetric)
            continue;
        g->addData(static_cast<double>(e.step), *e.mainMetric);
        m_evalRange.add(*e.mainMetric);
        m_stepRange.add(static_cast<double>(e.step));
        metric = QString::fromStdString(e.mainMetricName);
    }
    g->setName(metric.isEmpty() ? tr("validation") : tr("validation %1").arg(metric));
    m_loss->yAxis2->setLabel(metric.isEmpty() ? tr("validation metric") : tr("validation %1").arg(metric));
    m_dirty = true;
}

int LiveView::evaluationPointCount() const
{
    return m_loss->graph(EvalGraph)->dataCount();
}

void LiveView::applyBatch(const MetricsBatch& batch)
{
    if (batch.runId != m_runId)
        return;
    if (batch.reset)
        clearAll();
    appendPoints(batch.points);
    if (batch.evaluationsChanged)
        setEvaluations(batch.evaluations);
}

void LiveView::setSmoothing(double weight)
{
    m_smoother.setWeight(weight);
    const int slider = static_cast<int>(std::lround(m_smoother.weight() * kSliderSteps));
    if (m_smoothingSlider->value() != slider) {
        QSignalBlocker block(m_smoothingSlider);
        m_smoothingSlider->setValue(slider);
    }
    m_smoothingLabel->setText(QString::number(m_smoother.weight(), 'f', 2));
    rebuildSmoothed();
}

void LiveView::rebuildSmoothed()
{
    // A new weight changes every smoothed value: recompute the series once (O(n)), then keep appending.
    m_smoother.reset();
    m_smoothed.clear();
    m_smoothed.reserve(m_rawLoss.size());
    QVector<QCPGraphData> data;
    data.reserve(static_cast<int>(m_rawLoss.size()));
    for (std::size_t i = 0; i < m_rawLoss.size(); ++i) {
        const double s = m_smoother.add(m_rawLoss[i]);
        m_smoothed.push_back(s);
        if (std::isfinite(m_rawLoss[i]))
            data.append(QCPGraphData(m_steps[i], s));
    }
    m_loss->graph(SmoothGraph)->data()->set(data, true);
    m_dirty = true;
}

void LiveView::setLogScale(bool on)
{
    m_logScale = on;
    const QScopedValueRollback<bool> own(m_settingRanges, true); // a scale change may clamp the range
    if (m_logBox->isChecked() != on) {
        QSignalBlocker block(m_logBox);
        m_logBox->setChecked(on);
    }
    if (on) {
        m_loss->yAxis->setScaleType(QCPAxis::stLogarithmic);
        m_loss->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    } else {
        m_loss->yAxis->setScaleType(QCPAxis::stLinear);
        m_loss->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    }
    m_dirty = true;
}

void LiveView::applyRanges()
{
    if (!m_follow)
        return; // the user's zoom or pan stays
    const QScopedValueRollback<bool> own(m_settingRanges, true);
    if (m_stepRange.valid())
        for (QCustomPlot* plot : { m_loss, m_lr, m_memory })
            setPadded(plot->xAxis, m_stepRange.lo, m_stepRange.hi, false);
    const Range& loss = m_logScale ? m_positiveLoss : m_lossRange;
    if (loss.valid())
        setPadded(m_loss->yAxis, loss.lo, loss.hi, m_logScale);
    if (m_evalRange.valid())
        setPadded(m_loss->yAxis2, std::min(0.0, m_evalRange.lo), std::max(1.0, m_evalRange.hi), false);
    if (m_lrRange.valid())
        setPadded(m_lr->yAxis, std::min(0.0, m_lrRange.lo), m_lrRange.hi, false);
    if (m_memoryRange.valid())
        setPadded(m_memory->yAxis, 0.0, m_memoryRange.hi, false);
}

void LiveView::replotIfDirty()
{
    if (!m_dirty)
        return;
    m_dirty = false;
    applyRanges();
    for (QCustomPlot* plot : { m_loss, m_lr, m_memory })
        plot->replot(QCustomPlot::rpQueuedReplot);
    ++m_replots;
}

} // namespace ladder::widgets
