#include "LiveViewBenchmark.h"

#include <algorithm>
#include <cmath>

#include <QApplication>
#include <QElapsedTimer>

#include "LiveView.h"

namespace ladder::widgets {
namespace {
constexpr int kBatch = 250;
constexpr int kReplotRounds = 30;

MetricPoint pointAt(int step)
{
    MetricPoint p;
    p.step = step;
    p.loss = 2.0 / (1.0 + 1e-3 * step) + 0.3 * std::sin(0.7 * step);
    p.learningRate = 1e-3;
    p.allocatedBytes = 50'000'000 + (step % 97) * 10'000;
    p.peakAllocatedBytes = 60'000'000;
    return p;
}
} // namespace

std::vector<LiveViewBenchmarkRow> runLiveViewBenchmark(const std::vector<int>& sizes)
{
    std::vector<LiveViewBenchmarkRow> rows;
    LiveView view;
    view.resize(1200, 700);
    view.show();
    QApplication::processEvents();
    for (int n : sizes) {
        view.setRun(1, QStringLiteral("benchmark"));
        QElapsedTimer timer;
        timer.start();
        std::vector<MetricPoint> batch;
        for (int s = 1; s <= n; ++s) {
            batch.push_back(pointAt(s));
            if (static_cast<int>(batch.size()) == kBatch || s == n) {
                view.appendPoints(batch);
                batch.clear();
            }
        }
        const double appendUs = static_cast<double>(timer.nsecsElapsed()) / 1e3 / n;
        view.replotIfDirty();
        QApplication::processEvents();
        std::vector<double> replots;
        for (int r = 1; r <= kReplotRounds; ++r) {
            view.appendPoints({ pointAt(n + r) });
            timer.restart();
            view.replotIfDirty();
            QApplication::processEvents(); // the queued replot happens here
            replots.push_back(static_cast<double>(timer.nsecsElapsed()) / 1e6);
        }
        std::sort(replots.begin(), replots.end());
        rows.push_back({ n, appendUs, replots[replots.size() / 2] });
    }
    return rows;
}

QString formatLiveViewBenchmark(const std::vector<LiveViewBenchmarkRow>& rows)
{
    QString out
        = QStringLiteral("points     append (us/point)   replot (ms, median of %1)\n").arg(kReplotRounds);
    for (const auto& r : rows)
        out += QStringLiteral("%1 %2 %3\n")
                   .arg(r.points, 9)
                   .arg(r.appendMicrosecondsPerPoint, 19, 'f', 2)
                   .arg(r.medianReplotMilliseconds, 20, 'f', 2);
    if (rows.size() >= 2) {
        const auto& a = rows.front();
        const auto& b = rows.back();
        out += QStringLiteral("ratio %1/%2 points: append %3x, replot %4x (points %5x)\n")
                   .arg(b.points)
                   .arg(a.points)
                   .arg(b.appendMicrosecondsPerPoint / a.appendMicrosecondsPerPoint, 0, 'f', 2)
                   .arg(b.medianReplotMilliseconds / a.medianReplotMilliseconds, 0, 'f', 2)
                   .arg(static_cast<double>(b.points) / a.points, 0, 'f', 0);
    }
    return out;
}

} // namespace ladder::widgets
