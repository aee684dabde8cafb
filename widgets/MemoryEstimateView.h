#pragma once

#include <cstdint>
#include <optional>

#include <QWidget>

#include "train/MemoryEstimate.h"

class QLabel;
class QProgressBar;

namespace ladder::widgets {

// The experiment form's memory line: the analytic estimate of the peak training memory
// (estimateTrainingMemory, core/train/MemoryEstimate.h) as a bar against the chosen device's capacity
// (RAM for the CPU, free memory for a CUDA device), with the breakdown, and a warning when it will not fit.
class MemoryEstimateView : public QWidget {
    Q_OBJECT

public:
    explicit MemoryEstimateView(QWidget* parent = nullptr);

    // Recomputes for `input`; capacityBytes 0 = unknown (no bar). An input the estimator rejects shows its
    // message instead.
    void update(const MemoryEstimateInput& input, std::uint64_t capacityBytes, const QString& capacityName);
    // Nothing to estimate (no backbone config): says why.
    void clear(const QString& reason);

    const std::optional<MemoryEstimate>& estimate() const { return m_estimate; }
    bool fits() const { return m_fits; }
    QString text() const;

private:
    QProgressBar* m_bar = nullptr;
    QLabel* m_label = nullptr;
    std::optional<MemoryEstimate> m_estimate;
    bool m_fits = true;
};

} // namespace ladder::widgets
