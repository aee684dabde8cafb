#include "MemoryEstimateView.h"

#include <algorithm>

#include <QLabel>
#include <QProgressBar>
#include <QVBoxLayout>

namespace ladder::widgets {
namespace {
constexpr double kMB = 1e6;
constexpr int kBarSteps = 1000;

QString mb(std::uint64_t bytes)
{
    return QStringLiteral("%1 MB").arg(static_cast<double>(bytes) / kMB, 0, 'f', 1);
}
} // namespace

MemoryEstimateView::MemoryEstimateView(QWidget* parent)
    : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_bar = new QProgressBar;
    m_bar->setObjectName(QStringLiteral("memoryEstimateBar"));
    m_bar->setRange(0, kBarSteps);
    m_bar->setTextVisible(true);
    layout->addWidget(m_bar);
    m_label = new QLabel;
    m_label->setObjectName(QStringLiteral("memoryEstimateLabel"));
    m_label->setWordWrap(true);
    layout->addWidget(m_label);
}

void MemoryEstimateView::update(
    const MemoryEstimateInput& input, std::uint64_t capacityBytes, const QString& capacityName)
{
    try {
        m_estimate = estimateTrainingMemory(input);
    } catch (const std::exception& e) {
        m_estimate.reset();
        m_fits = true;
        m_bar->setVisible(false);
        m_label->setText(tr("Memory estimate: %1").arg(QString::fromUtf8(e.what())));
        return;
    }
    const auto& e = *m_estimate;
    const std::uint64_t activations = e.activationsAtPeak + e.transient + e.batchInputs;
    QString text
        = tr("Estimated peak %1 at batch %2, source length %3, target length %4 (weights %5, gradients "
             "%6, optimizer %7, activations and buffers %8; peak at %9)")
              .arg(mb(e.total))
              .arg(input.batch)
              .arg(input.srcLen)
              .arg(input.tgtLen)
              .arg(mb(e.weights()), mb(e.gradientsAtPeak), mb(e.optimizerState), mb(activations),
                  QString::fromStdString(e.peakWhere));
    m_fits = capacityBytes == 0 || e.total <= capacityBytes;
    m_bar->setVisible(capacityBytes > 0);
    if (capacityBytes > 0) {
        const double share = static_cast<double>(e.total) / static_cast<double>(capacityBytes);
        m_bar->setValue(static_cast<int>(std::min(1.0, share) * kBarSteps));
        m_bar->setFormat(tr("%1 of %2 (%3%)")
                             .arg(mb(e.total), capacityName)
                             .arg(share * 100.0, 0, 'f', share < 0.1 ? 2 : 1));
        // A red bar when it will not fit.
        m_bar->setStyleSheet(
            m_fits ? QString() : QStringLiteral("QProgressBar::chunk { background: #b00020; }"));
        if (!m_fits)
            text += tr("\nWill not fit: the estimate exceeds %1. Lower the batch size or the source length, "
                       "choose LST or a larger r, or press Fit to device.")
                        .arg(capacityName);
    }
    m_label->setStyleSheet(m_fits ? QString() : QStringLiteral("color: #b00020;"));
    m_label->setText(text);
}

void MemoryEstimateView::clear(const QString& reason)
{
    m_estimate.reset();
    m_fits = true;
    m_bar->setVisible(false);
    m_label->setStyleSheet(QString());
    m_label->setText(reason);
}

QString MemoryEstimateView::text() const
{
    return m_label->text();
}

} // namespace ladder::widgets
