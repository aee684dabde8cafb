#include "MemoryBreakdownBar.h"

#include <algorithm>

#include <QPaintEvent>
#include <QPainter>

#include "RunsTableModel.h"

namespace ladder::widgets {
namespace {

constexpr int kBarHeight = 22;
constexpr int kLegendSwatch = 10;
constexpr int kSpacing = 6;
constexpr int kSwatchGap = 4;
constexpr int kColumnGap = 8;

std::int64_t partBytes(const MemoryBreakdown& b, MemoryBreakdownBar::Part part)
{
    switch (part) {
    case MemoryBreakdownBar::Weights:
        return b.weights;
    case MemoryBreakdownBar::Gradients:
        return b.gradients;
    case MemoryBreakdownBar::Optimizer:
        return b.optimizer;
    case MemoryBreakdownBar::Activations:
        return b.activations;
    case MemoryBreakdownBar::PartCount:
        break;
    }
    return 0;
}

QString partName(MemoryBreakdownBar::Part part)
{
    switch (part) {
    case MemoryBreakdownBar::Weights:
        return MemoryBreakdownBar::tr("weights");
    case MemoryBreakdownBar::Gradients:
        return MemoryBreakdownBar::tr("gradients");
    case MemoryBreakdownBar::Optimizer:
        return MemoryBreakdownBar::tr("optimizer state");
    case MemoryBreakdownBar::Activations:
        return MemoryBreakdownBar::tr("activations");
    case MemoryBreakdownBar::PartCount:
        break;
    }
    return {};
}

} // namespace

std::optional<MemoryBreakdown> MemoryBreakdown::fromFigures(const FinalFigures& figures)
{
    if (!figures.peakAllocatedBytes)
        return std::nullopt;
    MemoryBreakdown b;
    b.peak = *figures.peakAllocatedBytes;
    b.weights = figures.weightBytes.value_or(0);
    b.gradients = figures.gradientBytes.value_or(0);
    b.optimizer = figures.optimizerBytes.value_or(0);
    b.activations = std::max<std::int64_t>(0, b.peak - b.weights - b.gradients - b.optimizer);
    return b;
}

MemoryBreakdownBar::MemoryBreakdownBar(QWidget* parent)
    : QWidget(parent)
{
    QSizePolicy policy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    policy.setHeightForWidth(true);
    setSizePolicy(policy);
}

QColor MemoryBreakdownBar::partColor(Part part)
{
    switch (part) {
    case Weights:
        return QColor(86, 180, 233);
    case Gradients:
        return QColor(0, 158, 115);
    case Optimizer:
        return QColor(230, 159, 0);
    case Activations:
        return QColor(213, 94, 0);
    case PartCount:
        break;
    }
    return Qt::gray;
}

void MemoryBreakdownBar::setBreakdown(const std::optional<MemoryBreakdown>& breakdown)
{
    m_breakdown = breakdown;
    setToolTip(legendTexts().join(QLatin1Char('\n')));
    updateGeometry(); // the legend's column count, hence the height, depends on the texts
    update();
}

QStringList MemoryBreakdownBar::legendTexts() const
{
    QStringList texts;
    if (!m_breakdown)
        return texts;
    // Shares of the bar's total (the peak, or the static parts when they exceed a stale peak).
    const std::int64_t total = std::max<std::int64_t>(
        m_breakdown->peak, m_breakdown->weights + m_breakdown->gradients + m_breakdown->optimizer);
    for (int i = 0; i < PartCount; ++i) {
        const auto part = static_cast<Part>(i);
        const std::int64_t bytes = partBytes(*m_breakdown, part);
        const double share
            = total > 0 ? 100.0 * static_cast<double>(bytes) / static_cast<double>(total) : 0.0;
        texts << QStringLiteral("%1 %2 (%3 %)")
                     .arg(partName(part), RunsTableModel::formatMegabytes(bytes),
                         QString::number(share, 'f', 1));
    }
    return texts;
}

int MemoryBreakdownBar::legendTextWidth(int width, int columns) const
{
    const int column = columns == 2 ? (width - kColumnGap) / 2 : width;
    return std::max(0, column - kLegendSwatch - kSwatchGap);
}

int MemoryBreakdownBar::legendColumns(int width) const
{
    const int available = legendTextWidth(width, 2);
    for (const QString& text : legendTexts())
        if (fontMetrics().horizontalAdvance(text) > available)
            return 1;
    return 2;
}

QStringList MemoryBreakdownBar::shownLegendTexts() const
{
    const int available = legendTextWidth(width(), legendColumns(width()));
    QStringList shown;
    for (const QString& text : legendTexts())
        shown << fontMetrics().elidedText(text, Qt::ElideRight, available);
    return shown;
}

int MemoryBreakdownBar::heightForWidth(int width) const
{
    const int rows = legendColumns(width) == 2 ? PartCount / 2 : PartCount;
    return kBarHeight + kSpacing + rows * fontMetrics().height() + kSpacing;
}

QSize MemoryBreakdownBar::sizeHint() const
{
    return { 420, heightForWidth(420) };
}

QSize MemoryBreakdownBar::minimumSizeHint() const
{
    return { 160, heightForWidth(width() > 0 ? width() : 420) };
}

void MemoryBreakdownBar::paintEvent(QPaintEvent* /*event*/)
{
    QPainter painter(this);
    const QRect bar(0, 0, width() - 1, kBarHeight);
    if (!m_breakdown) {
        painter.setPen(palette().color(QPalette::PlaceholderText));
        painter.drawRect(bar);
        painter.drawText(bar, Qt::AlignCenter, tr("no memory figures"));
        return;
    }
    const auto& b = *m_breakdown;
    const std::int64_t total = std::max<std::int64_t>(b.peak, b.weights + b.gradients + b.optimizer);
    double x = bar.left();
    for (int i = 0; i < PartCount && total > 0; ++i) {
        const auto part = static_cast<Part>(i);
        const double w = bar.width() * static_cast<double>(partBytes(b, part)) / static_cast<double>(total);
        painter.fillRect(QRectF(x, bar.top(), w, bar.height()), partColor(part));
        x += w;
    }
    painter.setPen(palette().color(QPalette::Mid));
    painter.drawRect(bar);

    // Legend: two parts per line when every entry fits in half the width, else one per line.
    const QStringList texts = shownLegendTexts();
    const int columns = legendColumns(width());
    const int lineHeight = fontMetrics().height();
    const int columnWidth = columns == 2 ? (width() - kColumnGap) / 2 + kColumnGap : width();
    const int textWidth = legendTextWidth(width(), columns);
    painter.setPen(palette().color(QPalette::WindowText));
    for (int i = 0; i < texts.size(); ++i) {
        const int left = (i % columns) * columnWidth;
        const int top = kBarHeight + kSpacing + (i / columns) * lineHeight;
        painter.fillRect(QRect(left, top + (lineHeight - kLegendSwatch) / 2, kLegendSwatch, kLegendSwatch),
            partColor(static_cast<Part>(i)));
        painter.drawText(QRect(left + kLegendSwatch + kSwatchGap, top, textWidth, lineHeight),
            Qt::AlignLeft | Qt::AlignVCenter, texts[i]);
    }
}

} // namespace ladder::widgets
