#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <QColor>
#include <QWidget>

#include "CompareSeries.h"
#include "store/StoreTypes.h"

class QCustomPlot;
class QMouseEvent;

namespace ladder::widgets {

// The accuracy-versus-memory plot (paper Figures 5 and 6): x = peak allocated training memory in MB
// (linear or log scale), y = the chosen metric, one colour and marker per method, the Pareto front as a
// dashed step line with the region it dominates shaded (the legend names the runs on it), unfinished runs
// hollow (their state in the tooltip), a note naming the runs not plotted, and a vertical error bar of one
// sample standard deviation for points that average runs differing only by seed (CompareSeries). Hovering a
// point shows its run(s) and options; clicking one selects it and emits runSelected() with its first run id.
//
// It plots exactly the runs given to setRuns(): filtering by task and backbone is the caller's (CompareTab
// passes the rows its filter accepts).
class ComparePlot : public QWidget {
    Q_OBJECT

public:
    // How near (pixels) the mouse must be to a point for hover and click.
    static constexpr double kPickRadiusPx = 10.0;

    explicit ComparePlot(QWidget* parent = nullptr);

    void setRuns(const std::vector<RunRecord>& runs);
    void setMetric(CompareMetric metric);
    CompareMetric metric() const { return m_metric; }
    void setLogMemoryAxis(bool logarithmic);
    bool logMemoryAxis() const { return m_logMemory; }

    // What is drawn: the points (CompareSeries::build of the runs) and the indices of the front.
    const std::vector<ComparePoint>& points() const { return m_points; }
    const std::vector<std::size_t>& frontIndices() const { return m_front; }

    // The notes written over the plot: mixed tasks or backbones, and the runs not plotted and why
    // ("Not plotted (no peak memory or no metric yet): 1 queued, 2 cancelled"). Empty when none.
    QString notesText() const;
    // The front's legend entry: "Pareto front: runs 7, 2, 1" (in order of memory; the names are in the
    // points' tooltips and the table). Empty without a front.
    QString frontLegendText() const;

    // The point drawn within kPickRadiusPx of a pixel position in the plot widget, or -1.
    int pointAt(const QPointF& pixel) const;
    // Where point `index` is drawn (plot widget coordinates).
    QPointF pixelOfPoint(int index) const;
    // The hover text of a point: method, options, task, backbone, memory and metric (mean ± std, n runs).
    QString tooltipFor(int index) const;

    // Highlights the point that contains run `runId` (0: none). Emits nothing.
    void setSelectedRun(qint64 runId);
    qint64 selectedRun() const { return m_selectedRun; }

    // Saves the plot as PNG, SVG or PDF, chosen by the file's extension, at width x height pixels (0: the
    // widget's size). False with a message naming the file for an unknown extension or a failed write.
    bool exportTo(const QString& path, int width = 0, int height = 0, QString* error = nullptr);

    QCustomPlot* customPlot() const { return m_plot; }

    // The colour and the QCPScatterStyle::ScatterShape (as int) of a method's points.
    static QColor methodColor(const std::string& method);
    static int methodShape(const std::string& method);

Q_SIGNALS:
    void runSelected(qint64 runId);

private:
    void rebuild();
    void redraw();
    void onMouseMove(QMouseEvent* event);
    void onMousePress(QMouseEvent* event);

    QCustomPlot* m_plot = nullptr;
    std::vector<RunRecord> m_runs;
    std::vector<ComparePoint> m_points;
    std::vector<std::size_t> m_front;
    std::vector<std::pair<std::string, int>> m_absent; // CompareSeries::absent() of m_runs
    CompareMetric m_metric = CompareMetric::BestValidation;
    bool m_logMemory = false;
    qint64 m_selectedRun = 0;
};

} // namespace ladder::widgets
