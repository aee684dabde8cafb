#pragma once

#include <limits>
#include <vector>

#include <QWidget>

#include "EmaSmoother.h"
#include "store/StoreTypes.h"

class QCheckBox;
class QCustomPlot;
class QLabel;
class QSlider;
class QTimer;

namespace ladder::widgets {

struct MetricsBatch;

// The live view of one run: the training loss (raw, faint, plus an EMA-smoothed curve with a smoothing
// slider as in TensorBoard, and a log-scale toggle) with the validation evaluations on a second axis, the
// learning rate, and memory (allocated now and at peak; reserved on CUDA) against the optimizer step.
// Points are appended to the plots as they arrive (QCPGraph::addData, already sorted) and the plots are
// replotted by a ~30 Hz timer only when something changed, never per point. Axis ranges are kept
// incrementally, so a replot does not scan the series.
//
// "Follow" (checked by default) rescales the axes to the data at every replot. A zoom or pan by the user
// (the wheel, a drag, or any axis range change the view did not make itself) unchecks it, so the user's
// range stays while points arrive; checking it again rescales. Showing another run checks it again.
class LiveView : public QWidget {
    Q_OBJECT

public:
    static constexpr int kReplotIntervalMs = 33;

    explicit LiveView(QWidget* parent = nullptr);

    // Shows another run: every plot is cleared.
    void setRun(qint64 runId, const QString& title);
    qint64 runId() const { return m_runId; }

    // Appends points with steps above the last one (others are ignored: the series stays sorted).
    void appendPoints(const std::vector<MetricPoint>& points);
    // The run's evaluations (validation ones are plotted).
    void setEvaluations(const std::vector<Evaluation>& evaluations);
    // A StoreWatcher batch for the shown run (reset: start over).
    void applyBatch(const MetricsBatch& batch);

    double smoothing() const { return m_smoother.weight(); }
    void setSmoothing(double weight);
    bool logScale() const { return m_logScale; }
    void setLogScale(bool on);
    bool follows() const { return m_follow; }
    void setFollow(bool on);

    int pointCount() const { return static_cast<int>(m_steps.size()); }
    int evaluationPointCount() const;
    const std::vector<double>& smoothedLoss() const { return m_smoothed; }
    // Replots done so far (tests check that many appends cost one replot).
    int replotCount() const { return m_replots; }
    // Replots now if anything changed (what the timer does).
    void replotIfDirty();

    QCustomPlot* lossPlot() const { return m_loss; }
    QCustomPlot* learningRatePlot() const { return m_lr; }
    QCustomPlot* memoryPlot() const { return m_memory; }

private:
    struct Range {
        double lo = std::numeric_limits<double>::infinity();
        double hi = -std::numeric_limits<double>::infinity();
        void add(double v);
        bool valid() const { return lo <= hi; }
    };

    QCustomPlot* makePlot(const QString& yLabel, const char* name);
    void rebuildSmoothed();
    void applyRanges();
    void clearAll();
    void showReserved(bool show);
    void axisRangeChanged();

    qint64 m_runId = 0;
    QLabel* m_title = nullptr;
    QSlider* m_smoothingSlider = nullptr;
    QLabel* m_smoothingLabel = nullptr;
    QCheckBox* m_logBox = nullptr;
    QCheckBox* m_followBox = nullptr;
    QCustomPlot* m_loss = nullptr;
    QCustomPlot* m_lr = nullptr;
    QCustomPlot* m_memory = nullptr;
    QTimer* m_timer = nullptr;

    EmaSmoother m_smoother;
    std::vector<double> m_steps;
    std::vector<double> m_rawLoss;
    std::vector<double> m_smoothed;
    bool m_logScale = false;
    bool m_follow = true;
    bool m_settingRanges = false; // the view changes axis ranges itself: not a user zoom
    bool m_dirty = false;
    bool m_hasReserved = false;
    int m_replots = 0;
    Range m_stepRange, m_lossRange, m_positiveLoss, m_lrRange, m_memoryRange, m_evalRange;
};

} // namespace ladder::widgets
