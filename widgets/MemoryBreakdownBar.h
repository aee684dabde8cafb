#pragma once

#include <cstdint>
#include <optional>

#include <QWidget>

#include "store/StoreTypes.h"

namespace ladder::widgets {

// Where a run's peak training memory went: the static parts the trainer records (all weights, gradients
// of the trainable parameters, optimizer state) and the rest of the peak, activations (with the
// allocator's temporaries). Bytes.
struct MemoryBreakdown {
    std::int64_t weights = 0;
    std::int64_t gradients = 0;
    std::int64_t optimizer = 0;
    std::int64_t activations = 0; // peak - the three static parts, never below 0
    std::int64_t peak = 0;

    // nullopt when the run has no peak figure. Static parts the run did not record count as 0.
    static std::optional<MemoryBreakdown> fromFigures(const FinalFigures& figures);
};

// A horizontal stacked bar of a MemoryBreakdown with a legend: weights, gradients, optimizer state,
// activations, each with its MB and share of the peak. The legend takes two columns when every entry fits
// in half the width, else one column (the widget grows taller: heightForWidth); an entry wider than the
// whole width is elided with "…", and the tooltip always holds every entry in full.
class MemoryBreakdownBar : public QWidget {
    Q_OBJECT

public:
    enum Part { Weights, Gradients, Optimizer, Activations, PartCount };

    explicit MemoryBreakdownBar(QWidget* parent = nullptr);

    void setBreakdown(const std::optional<MemoryBreakdown>& breakdown);
    const std::optional<MemoryBreakdown>& breakdown() const { return m_breakdown; }

    // "weights 892.4 MB (53.1 %)" for each part, in Part order (empty without a breakdown).
    QStringList legendTexts() const;
    static QColor partColor(Part part);

    // The legend as painted at the widget's width: each entry in full, or elided with "…".
    QStringList shownLegendTexts() const;
    // Legend columns at a width: 2 when every entry fits in half of it, else 1.
    int legendColumns(int width) const;

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;
    bool hasHeightForWidth() const override { return true; }
    int heightForWidth(int width) const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    int legendTextWidth(int width, int columns) const;

    std::optional<MemoryBreakdown> m_breakdown;
};

} // namespace ladder::widgets
