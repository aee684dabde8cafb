// The live view's smoothing and incremental plotting: TensorBoard's debiased EMA against its closed form,
// appending in pieces equals appending at once, a new smoothing weight recomputes the curve, points are
// replotted by the timer (once for many appends), evaluations and the log scale; a user's zoom stays while
// points arrive until "Follow" is checked again.
#include <cmath>

#include <QCheckBox>
#include <QSlider>
#include <QWheelEvent>
#include <QtTest>

#include "EmaSmoother.h"
#include "LiveView.h"
#include "QCustomPlotInclude.h"
#include "StoreWatcher.h"
#include "TestSupport.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

// The debiased EMA written out as its weighted sum: s_n = sum_i (1-w) w^(n-i) y_i / (1 - w^n).
double closedForm(const std::vector<double>& y, std::size_t n, double w)
{
    double sum = 0.0;
    for (std::size_t i = 0; i <= n; ++i)
        sum += (1.0 - w) * std::pow(w, static_cast<double>(n - i)) * y[i];
    return w == 0.0 ? y[n] : sum / (1.0 - std::pow(w, static_cast<double>(n + 1)));
}

std::vector<MetricPoint> points(int from, int to)
{
    std::vector<MetricPoint> out;
    for (int s = from; s <= to; ++s) {
        MetricPoint p;
        p.step = s;
        p.loss = 2.0 + std::sin(0.3 * s) + 5.0 / s; // noisy, decreasing, positive
        p.learningRate = 1e-3 * s / to;
        p.allocatedBytes = 1000000 + 1000 * s;
        p.peakAllocatedBytes = 2000000 + 1000 * s;
        out.push_back(p);
    }
    return out;
}

std::vector<double> graphValues(QCPGraph* graph)
{
    std::vector<double> v;
    for (auto it = graph->data()->constBegin(); it != graph->data()->constEnd(); ++it)
        v.push_back(it->value);
    return v;
}

} // namespace

class TestLiveView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void emaMatchesTheClosedForm_data()
    {
        QTest::addColumn<double>("weight");
        QTest::newRow("0") << 0.0;
        QTest::newRow("0.6") << 0.6;
        QTest::newRow("0.95") << 0.95;
    }

    void emaMatchesTheClosedForm()
    {
        QFETCH(double, weight);
        const std::vector<double> y { 3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0 };
        const auto s = EmaSmoother::smoothAll(y, weight);
        for (std::size_t n = 0; n < y.size(); ++n)
            QVERIFY2(std::abs(s[n] - closedForm(y, n, weight)) < 1e-12, qPrintable(QString::number(n)));
        // Debiasing: the first value is the first point, and a constant series stays constant.
        QCOMPARE(s.front(), y.front());
        for (double v : EmaSmoother::smoothAll(std::vector<double>(20, 0.7), weight))
            QVERIFY(std::abs(v - 0.7) < 1e-12);
    }

    void emaSkipsNonFiniteValues()
    {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        const auto s = EmaSmoother::smoothAll({ 1.0, nan, 3.0 }, 0.5);
        QVERIFY(std::isnan(s[1]));
        // The NaN neither counts nor moves the average: as if the series were {1, 3}.
        QCOMPARE(s[2], EmaSmoother::smoothAll({ 1.0, 3.0 }, 0.5)[1]);
    }

    void appendingInPiecesEqualsAtOnce()
    {
        LiveView pieces, once;
        pieces.setRun(1, QStringLiteral("a"));
        once.setRun(1, QStringLiteral("a"));
        pieces.appendPoints(points(1, 40));
        pieces.appendPoints(points(41, 41));
        pieces.appendPoints(points(42, 100));
        pieces.appendPoints(points(50, 60)); // steps already there: ignored, the series stays sorted
        once.appendPoints(points(1, 100));
        QCOMPARE(pieces.pointCount(), 100);
        QCOMPARE(pieces.smoothedLoss(), once.smoothedLoss());
        QCOMPARE(graphValues(pieces.lossPlot()->graph(1)), graphValues(once.lossPlot()->graph(1)));
        QCOMPARE(pieces.lossPlot()->graph(0)->dataCount(), 100);
        QCOMPARE(pieces.learningRatePlot()->graph(0)->dataCount(), 100);
        QCOMPARE(pieces.memoryPlot()->graph(0)->dataCount(), 100);
        QCOMPARE(pieces.memoryPlot()->graph(1)->dataCount(), 100);
        // The plotted smoothed curve is the EMA of the raw loss.
        std::vector<double> raw;
        for (const auto& p : points(1, 100))
            raw.push_back(*p.loss);
        QCOMPARE(pieces.smoothedLoss(), EmaSmoother::smoothAll(raw, pieces.smoothing()));
        // Memory is plotted in MB.
        QCOMPARE(pieces.memoryPlot()->graph(0)->data()->at(0)->value, 1.001);
    }

    void sliderRecomputesTheSmoothedCurve()
    {
        LiveView view;
        view.setRun(1, QStringLiteral("a"));
        view.appendPoints(points(1, 50));
        auto* slider = view.findChild<QSlider*>(QStringLiteral("smoothingSlider"));
        slider->setValue(90);
        QCOMPARE(view.smoothing(), 0.9);
        std::vector<double> raw;
        for (const auto& p : points(1, 50))
            raw.push_back(*p.loss);
        QCOMPARE(view.smoothedLoss(), EmaSmoother::smoothAll(raw, 0.9));
        QCOMPARE(graphValues(view.lossPlot()->graph(1)), EmaSmoother::smoothAll(raw, 0.9));
        // New points continue the recomputed average.
        view.appendPoints(points(51, 60));
        raw.clear();
        for (const auto& p : points(1, 60))
            raw.push_back(*p.loss);
        // points(51, 60) has its own lr scale but the same losses as points(1, 60) there.
        QCOMPARE(view.smoothedLoss(), EmaSmoother::smoothAll(raw, 0.9));
    }

    void replotsOnTheTimerNotPerPoint()
    {
        LiveView view;
        view.setRun(1, QStringLiteral("a"));
        view.replotIfDirty();
        const int before = view.replotCount();
        for (int s = 1; s <= 500; ++s)
            view.appendPoints(points(s, s));
        QCOMPARE(view.replotCount(), before); // appending never replots
        view.replotIfDirty();
        view.replotIfDirty(); // nothing new: no second replot
        QCOMPARE(view.replotCount(), before + 1);
        // The timer does it on its own.
        view.appendPoints(points(501, 510));
        QTRY_COMPARE_WITH_TIMEOUT(view.replotCount(), before + 2, 2000);
        // The x axis covers the steps.
        QVERIFY(view.lossPlot()->xAxis->range().contains(1.0));
        QVERIFY(view.lossPlot()->xAxis->range().contains(510.0));
    }

    void reservedIsShownOnlyWhenItDiffers()
    {
        LiveView view;
        view.setRun(1, QStringLiteral("a"));
        auto cpu = points(1, 10);
        for (auto& p : cpu)
            p.reservedBytes = p.allocatedBytes; // what the CPU meter reports
        view.appendPoints(cpu);
        QVERIFY(!view.memoryPlot()->graph(2)->visible());
        QVERIFY(!view.memoryPlot()->legend->itemWithPlottable(view.memoryPlot()->graph(2)));
        auto cuda = points(11, 12);
        for (auto& p : cuda)
            p.reservedBytes = *p.allocatedBytes + 20'000'000; // CUDA's cache holds more
        view.appendPoints(cuda);
        QVERIFY(view.memoryPlot()->graph(2)->visible());
        QVERIFY(view.memoryPlot()->legend->itemWithPlottable(view.memoryPlot()->graph(2)));
        view.setRun(2, QStringLiteral("b"));
        QVERIFY(!view.memoryPlot()->graph(2)->visible());
    }

    void batchesEvaluationsAndLogScale()
    {
        LiveView view;
        view.setRun(7, QStringLiteral("run 7"));
        MetricsBatch other;
        other.runId = 8;
        other.points = points(1, 5);
        view.applyBatch(other); // another run's batch is ignored
        QCOMPARE(view.pointCount(), 0);
        MetricsBatch batch;
        batch.runId = 7;
        batch.reset = true;
        batch.points = points(1, 20);
        batch.evaluationsChanged = true;
        for (int s : { 10, 20 }) {
            Evaluation e;
            e.step = s;
            e.split = "validation";
            e.mainMetricName = "accuracy";
            e.mainMetric = s / 40.0;
            batch.evaluations.push_back(e);
        }
        Evaluation test;
        test.step = 20;
        test.split = "test";
        test.mainMetric = 0.9;
        batch.evaluations.push_back(test);
        view.applyBatch(batch);
        QCOMPARE(view.pointCount(), 20);
        QCOMPARE(view.evaluationPointCount(), 2); // validation only
        batch.reset = true;
        batch.points = points(1, 3);
        view.applyBatch(batch); // reset: start over
        QCOMPARE(view.pointCount(), 3);

        view.findChild<QCheckBox*>(QStringLiteral("logScaleBox"))->setChecked(true);
        QVERIFY(view.logScale());
        QCOMPARE(view.lossPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
        view.replotIfDirty();
        QVERIFY(view.lossPlot()->yAxis->range().lower > 0.0);
    }

    void aUserZoomStaysUntilFollowIsChecked()
    {
        LiveView view;
        view.resize(900, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.setRun(3, QStringLiteral("run 3"));
        auto* follow = view.findChild<QCheckBox*>(QStringLiteral("followBox"));
        QVERIFY(follow);
        QVERIFY(follow->isChecked());
        view.appendPoints(points(1, 100));
        view.replotIfDirty();
        QCustomPlot* loss = view.lossPlot();
        loss->replot(); // lay the axis rect out now (the view's replots are queued)
        QVERIFY(loss->xAxis->range().contains(100.0));
        const QCPRange fullX = loss->xAxis->range();

        // A real wheel turn over the loss chart zooms in (QCustomPlot's iRangeZoom) and unchecks Follow.
        const QPointF centre = loss->axisRect()->rect().center();
        QWheelEvent wheel(centre, loss->mapToGlobal(centre), QPoint(), QPoint(0, 3 * 120), Qt::NoButton,
            Qt::NoModifier, Qt::NoScrollPhase, false);
        QApplication::sendEvent(loss, &wheel);
        QVERIFY2(loss->xAxis->range().size() < fullX.size(), "the wheel did not zoom the chart");
        QVERIFY(!follow->isChecked());
        QVERIFY(!view.follows());
        const QCPRange zoomedX = loss->xAxis->range();
        const QCPRange zoomedY = loss->yAxis->range();

        // More points arrive and are replotted: the user's range stays.
        view.appendPoints(points(101, 300));
        const int replots = view.replotCount();
        view.replotIfDirty();
        QCOMPARE(view.replotCount(), replots + 1);
        QCOMPARE(loss->xAxis->range().lower, zoomedX.lower);
        QCOMPARE(loss->xAxis->range().upper, zoomedX.upper);
        QCOMPARE(loss->yAxis->range().lower, zoomedY.lower);
        QCOMPARE(loss->yAxis->range().upper, zoomedY.upper);
        QVERIFY(!loss->xAxis->range().contains(300.0));

        // Follow on (the user clicks it): the next replot covers every step again.
        QTest::mouseClick(follow, Qt::LeftButton);
        QVERIFY(follow->isChecked());
        QVERIFY(view.follows());
        view.replotIfDirty();
        QVERIFY(loss->xAxis->range().contains(1.0));
        QVERIFY(loss->xAxis->range().contains(300.0));
        // New points keep following.
        view.appendPoints(points(301, 400));
        view.replotIfDirty();
        QVERIFY(loss->xAxis->range().contains(400.0));
        QVERIFY(view.follows());

        // A zoom into one run means nothing for the next: showing another run follows again.
        view.lossPlot()->xAxis->scaleRange(0.5);
        QVERIFY(!view.follows());
        view.setRun(4, QStringLiteral("run 4"));
        QVERIFY(view.follows());
        QVERIFY(follow->isChecked());
    }
};

LADDER_TEST_MAIN(TestLiveView)
#include "test_liveview.moc"
