// CompareSeries (seed groups, mean and spread, Pareto front) against hand computations, and ComparePlot:
// what it draws, hover text, click-to-select, log axis, and PNG/SVG/PDF export.
#include <algorithm>
#include <random>

#include <QSignalSpy>
#include <QSvgRenderer>
#include <QtTest>

#include "CompareFixtures.h"
#include "ComparePlot.h"
#include "CompareSeries.h"
#include "QCustomPlotInclude.h"
#include "TestSupport.h"

using namespace ladder;
using namespace ladder::widgets;

namespace {

const ComparePoint* findPoint(
    const std::vector<ComparePoint>& points, const std::string& method, const std::string& options)
{
    for (const auto& p : points)
        if (p.method == method && p.options == options)
            return &p;
    return nullptr;
}

QByteArray head(const QString& path, int bytes)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        return {};
    return file.read(bytes);
}

} // namespace

class TestComparePlot : public QObject {
    Q_OBJECT

private:
    std::vector<RunRecord> m_runs;
    std::string m_dir;

private Q_SLOTS:
    void initTestCase()
    {
        m_dir = test::makeTempDir();
        const std::string path = m_dir + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(path));
        m_runs = test::readRuns(path);
        QCOMPARE(m_runs.size(), std::size_t(11));
    }

    void groupKeyIgnoresOnlySeedNameAndStore()
    {
        QCOMPARE(CompareSeries::groupKey(m_runs[0]), CompareSeries::groupKey(m_runs[1]));
        QCOMPARE(CompareSeries::groupKey(m_runs[0]), CompareSeries::groupKey(m_runs[2]));
        QVERIFY(CompareSeries::groupKey(m_runs[0]) != CompareSeries::groupKey(m_runs[3])); // r differs
        QVERIFY(CompareSeries::groupKey(m_runs[0])
            != CompareSeries::groupKey(m_runs[9])); // task, backbone differ
        RunRecord named = m_runs[0];
        auto spec = nlohmann::json::parse(named.specJson);
        spec["name"] = "my run";
        spec["store"] = "/elsewhere.sqlite";
        named.specJson = spec.dump();
        QCOMPARE(CompareSeries::groupKey(named), CompareSeries::groupKey(m_runs[0]));
        spec["training"]["batch_size"] = 7;
        named.specJson = spec.dump();
        QVERIFY(CompareSeries::groupKey(named) != CompareSeries::groupKey(m_runs[0]));
        RunRecord broken;
        broken.id = 42;
        broken.specJson = "[1, 2]";
        QCOMPARE(CompareSeries::groupKey(broken), std::string("run:42"));
    }

    void meanAndSampleStd()
    {
        double mean = 0, sd = 0;
        CompareSeries::meanAndStd({ 2, 4, 4, 4, 5, 5, 7, 9 }, &mean, &sd);
        QCOMPARE(mean, 5.0);
        QVERIFY(qAbs(sd - std::sqrt(32.0 / 7.0)) < 1e-12); // sum of squares 32, n - 1 = 7
        CompareSeries::meanAndStd({ 3.5 }, &mean, &sd);
        QCOMPARE(mean, 3.5);
        QCOMPARE(sd, 0.0);
    }

    void pointsAggregateSeeds()
    {
        const auto points = CompareSeries::build(m_runs, CompareMetric::BestValidation);
        // Finished runs with figures: 1-8 and 10; 1-3 are one group: 7 points.
        QCOMPARE(points.size(), std::size_t(7));
        const ComparePoint* r8 = nullptr;
        for (const auto& p : points)
            if (p.method == "ladder" && p.task == "demo-supersense" && p.options == "r=8")
                r8 = &p;
        QVERIFY(r8);
        QCOMPARE(r8->runIds, (std::vector<std::int64_t> { 1, 2, 3 }));
        QCOMPARE(r8->seeds, (std::vector<std::int64_t> { 0, 1, 2 }));
        // By hand: metric (0.80 + 0.84 + 0.82) / 3 = 0.82, deviations -0.02, 0.02, 0 -> sqrt(0.0008 / 2) =
        // 0.02.
        QVERIFY(qAbs(r8->metric - 0.82) < 1e-12);
        QVERIFY(qAbs(r8->metricStd - 0.02) < 1e-12);
        // Memory (100 + 102 + 104) / 3 = 102 MB, std sqrt((4 + 0 + 4) / 2) = 2 MB.
        QVERIFY(qAbs(r8->memoryMB - 102.0) < 1e-9);
        QVERIFY(qAbs(r8->memoryStdMB - 2.0) < 1e-9);
        QCOMPARE(r8->metricName, std::string("accuracy"));
        const ComparePoint* adapter = findPoint(points, "adapter", "hidden=48");
        QVERIFY(adapter);
        QCOMPARE(adapter->count(), std::size_t(1));
        QCOMPARE(adapter->metricStd, 0.0);

        // On the test metric the same group: (0.78 + 0.80 + 0.79) / 3 = 0.79, std 0.01.
        const auto tests = CompareSeries::build(m_runs, CompareMetric::Test);
        for (const auto& p : tests)
            if (p.runIds.size() == 3) {
                QVERIFY(qAbs(p.metric - 0.79) < 1e-12);
                QVERIFY(qAbs(p.metricStd - 0.01) < 1e-12);
            }
    }

    void paretoFrontMatchesHandComputation()
    {
        std::vector<RunRecord> demo;
        for (const auto& run : m_runs)
            if (run.task == "demo-supersense")
                demo.push_back(run);
        const auto points = CompareSeries::build(demo, CompareMetric::BestValidation);
        QCOMPARE(points.size(), std::size_t(6));
        QStringList front;
        for (auto i : CompareSeries::paretoFront(points))
            front << QStringLiteral("%1 %2")
                         .arg(QString::fromStdString(points[i].method))
                         .arg(points[i].memoryMB);
        // Hand-computed (see CompareFixtures.h): r=16 at 80 MB, the r=8 group at 102, adapter 300, full 500.
        QCOMPARE(front, (QStringList { "ladder 80", "ladder 102", "adapter 300", "full 500" }));

        // Edge cases: ties in both coordinates are both on the front; a tie in memory keeps the better one.
        std::vector<ComparePoint> handmade(4);
        handmade[0].memoryMB = 10, handmade[0].metric = 0.5;
        handmade[1].memoryMB = 10, handmade[1].metric = 0.5;
        handmade[2].memoryMB = 10, handmade[2].metric = 0.4;
        handmade[3].memoryMB = 5, handmade[3].metric = 0.3;
        QCOMPARE(CompareSeries::paretoFront(handmade), (std::vector<std::size_t> { 3, 0, 1 }));
        QVERIFY(CompareSeries::paretoFront({}).empty());
    }

    void paretoFrontMatchesTheDefinitionOnRandomPoints()
    {
        // The O(n log n) sweep against the definition (no other point has memory <= and metric >=, one
        // strictly), on seeded random points on a coarse grid so that ties occur.
        std::mt19937 random(7);
        std::uniform_int_distribution<int> grid(0, 9);
        for (int trial = 0; trial < 200; ++trial) {
            std::vector<ComparePoint> points(1 + trial % 25);
            for (auto& p : points) {
                p.memoryMB = grid(random) * 10.0;
                p.metric = grid(random) / 10.0;
            }
            std::vector<std::size_t> expected;
            for (std::size_t i = 0; i < points.size(); ++i) {
                bool dominated = false;
                for (std::size_t j = 0; j < points.size(); ++j)
                    dominated = dominated
                        || (j != i && points[j].memoryMB <= points[i].memoryMB
                            && points[j].metric >= points[i].metric
                            && (points[j].memoryMB < points[i].memoryMB
                                || points[j].metric > points[i].metric));
                if (!dominated)
                    expected.push_back(i);
            }
            auto front = CompareSeries::paretoFront(points);
            std::sort(front.begin(), front.end());
            QCOMPARE(front, expected);
        }
    }

    void plotDrawsMethodsFrontAndErrorBars()
    {
        ComparePlot plot;
        plot.resize(800, 600);
        plot.setRuns(m_runs);
        plot.customPlot()->replot();
        QCOMPARE(plot.points().size(), std::size_t(7));
        QCOMPARE(plot.frontIndices().size(), std::size_t(4)); // run 10 (90 MB, 0.60) is dominated by r=16
        // One graph per method (5 methods with figures: adapter, bitfit, full, ladder, lora); the front is a
        // step line and the region it dominates, two curves named in the legend with the runs on the front
        // (in order of memory: r=16, the r=8 group, the adapter, full).
        QCOMPARE(plot.customPlot()->graphCount(), 5);
        QStringList names;
        for (int i = 0; i < plot.customPlot()->plottableCount(); ++i)
            if (plot.customPlot()->legend->hasItemWithPlottable(plot.customPlot()->plottable(i)))
                names << plot.customPlot()->plottable(i)->name();
        QVERIFY(names.contains(QStringLiteral("Ladder Side-Tuning")));
        QVERIFY2(names.contains(QStringLiteral("Pareto front: runs 4, 1, 2, 3, 5, 7")),
            qPrintable(names.join(" | ")));
        QVERIFY(names.contains(QStringLiteral("Dominated by the front")));
        // The step line: from each front point across at its metric to the next point's memory, then up.
        QCPCurve* edge = nullptr;
        for (int i = 0; i < plot.customPlot()->plottableCount(); ++i)
            if (plot.customPlot()->plottable(i)->name().startsWith(QLatin1String("Pareto front")))
                edge = qobject_cast<QCPCurve*>(plot.customPlot()->plottable(i));
        QVERIFY(edge);
        QCOMPARE(edge->dataCount(), 4 + 3 + 1); // 4 points, 3 corners, the run to the right edge
        QCOMPARE(edge->data()->at(1)->key, 102.0); // corner: the r=8 group's memory at r=16's metric
        QCOMPARE(edge->data()->at(1)->value, 0.75);
        // The legend sits below the axes, never over the data.
        const QRect axes = plot.customPlot()->axisRect()->outerRect();
        const QRect legend = plot.customPlot()->legend->outerRect();
        QVERIFY(!legend.isEmpty());
        QVERIFY2(!axes.intersects(legend),
            qPrintable(QStringLiteral("%1,%2 %3x%4 vs %5,%6 %7x%8")
                           .arg(axes.x())
                           .arg(axes.y())
                           .arg(axes.width())
                           .arg(axes.height())
                           .arg(legend.x())
                           .arg(legend.y())
                           .arg(legend.width())
                           .arg(legend.height())));
        // Runs with no figures are named, with the mixed tasks of the fixture.
        QVERIFY2(plot.notesText().contains(
                     QStringLiteral("Not plotted (no peak memory or no metric yet): 1 running, 1 failed")),
            qPrintable(plot.notesText()));
        QVERIFY(plot.notesText().contains(QStringLiteral("2 tasks, 2 backbones mixed")));
        QCOMPARE(plot.customPlot()->yAxis->label(), QStringLiteral("Best validation accuracy"));
        // The error bars of the r=8 group are its std: 0.02 in the metric, 2 MB in memory; single runs have
        // 0.
        int valueBars = 0, keyBars = 0, nonZero = 0;
        for (int i = 0; i < plot.customPlot()->plottableCount(); ++i)
            if (auto* errors = qobject_cast<QCPErrorBars*>(plot.customPlot()->plottable(i))) {
                const bool value = errors->errorType() == QCPErrorBars::etValueError;
                (value ? valueBars : keyBars) += 1;
                for (int k = 0; k < errors->dataCount(); ++k) {
                    const double e = errors->data()->at(k).errorPlus;
                    if (e != 0.0) {
                        ++nonZero;
                        QVERIFY(qAbs(e - (value ? 0.02 : 2.0)) < 1e-9);
                    }
                }
            }
        QCOMPARE(valueBars, 5);
        QCOMPARE(keyBars, 5);
        QCOMPARE(nonZero, 2);
        // Distinct colours and markers per method.
        QVERIFY(ComparePlot::methodColor("ladder") != ComparePlot::methodColor("lora"));
        QVERIFY(ComparePlot::methodShape("ladder") != ComparePlot::methodShape("adapter"));
    }

    // A run that has not finished but has figures (cancelled after evaluations) is drawn hollow, never
    // averaged with its finished twins and never on the front, even where it would dominate.
    void unfinishedRunsAreHollowAndOffTheFront()
    {
        auto runs = m_runs;
        auto cancelled
            = *std::find_if(runs.begin(), runs.end(), [](const RunRecord& r) { return r.id == 1; });
        cancelled.id = 50;
        cancelled.status = RunState::Cancelled;
        cancelled.name = "cut short";
        cancelled.figures.peakAllocatedBytes = 10'000'000; // 10 MB at 0.99: would dominate everything
        cancelled.figures.bestValidationMetric = 0.99;
        runs.push_back(cancelled);
        const auto points = CompareSeries::build(runs, CompareMetric::BestValidation);
        QCOMPARE(points.size(), std::size_t(8));
        const auto it
            = std::find_if(points.begin(), points.end(), [](const ComparePoint& p) { return !p.finished; });
        QVERIFY(it != points.end());
        QCOMPARE(it->runIds, std::vector<std::int64_t> { 50 });
        QCOMPARE(QString::fromStdString(it->state), QStringLiteral("cancelled"));
        const auto front = CompareSeries::paretoFront(points);
        QCOMPARE(front.size(), std::size_t(4));
        for (auto i : front)
            QVERIFY(points[i].finished);

        ComparePlot plot;
        plot.resize(800, 600);
        plot.setRuns(runs);
        plot.customPlot()->replot();
        int index = -1;
        for (int i = 0; i < static_cast<int>(plot.points().size()); ++i)
            if (!plot.points()[static_cast<std::size_t>(i)].finished)
                index = i;
        QVERIFY(index >= 0);
        const QString tip = plot.tooltipFor(index);
        QVERIFY2(tip.contains(QStringLiteral("<b>cut short</b>"))
                && tip.contains(QStringLiteral("cancelled: not finished")),
            qPrintable(tip));
        QStringList legend;
        for (int i = 0; i < plot.customPlot()->legend->itemCount(); ++i)
            if (auto* item = qobject_cast<QCPPlottableLegendItem*>(plot.customPlot()->legend->item(i)))
                legend << item->plottable()->name();
        QVERIFY2(legend.contains(QStringLiteral("Not finished (hollow; state in the tooltip)")),
            qPrintable(legend.join(" | ")));
        // The hollow marker: the method's pen, a white brush.
        bool hollow = false;
        for (int i = 0; i < plot.customPlot()->graphCount(); ++i) {
            auto* g = plot.customPlot()->graph(i);
            if (g->dataCount() == 1 && g->data()->at(0)->key == 10.0)
                hollow = g->scatterStyle().brush().color() == QColor(Qt::white)
                    && g->scatterStyle().pen().color() == ComparePlot::methodColor("ladder");
        }
        QVERIFY(hollow);
        // Absent runs by reason, in the documented order.
        const auto absent = CompareSeries::absent(runs, CompareMetric::Test);
        QCOMPARE(absent.size(), std::size_t(2)); // run 11 running, run 9 failed; run 50 has a test figure
        QCOMPARE(absent[0].first, std::string("running"));
        QCOMPARE(absent[1].first, std::string("failed"));
    }

    // QLoRA is a method of its own (issue 18): its own colour, marker and legend entry beside LoRA's.
    void qloraIsItsOwnMethod()
    {
        const std::vector<std::string> methods { "ladder", "adapter", "lora", "qlora", "bitfit", "prompt",
            "full" };
        for (std::size_t i = 0; i < methods.size(); ++i)
            for (std::size_t j = i + 1; j < methods.size(); ++j) {
                QVERIFY2(ComparePlot::methodColor(methods[i]) != ComparePlot::methodColor(methods[j]),
                    (methods[i] + " " + methods[j]).c_str());
                QVERIFY2(ComparePlot::methodShape(methods[i]) != ComparePlot::methodShape(methods[j]),
                    (methods[i] + " " + methods[j]).c_str());
            }
        auto runs = m_runs;
        auto qlora = *std::find_if(runs.begin(), runs.end(), [](const RunRecord& r) { return r.id == 6; });
        qlora.id = 99;
        qlora.method = "qlora";
        qlora.methodOptionsJson = R"({"method":"qlora","backbone_dtype":"int4","rank":32})";
        auto spec = nlohmann::json::parse(qlora.specJson); // a spec of its own: a group of its own
        spec["method"] = nlohmann::json::parse(qlora.methodOptionsJson);
        qlora.specJson = spec.dump();
        qlora.figures.peakAllocatedBytes = 150'000'000;
        runs.push_back(qlora);
        ComparePlot plot;
        plot.resize(800, 600);
        plot.setRuns(runs);
        QStringList names;
        for (int i = 0; i < plot.customPlot()->graphCount(); ++i)
            names << plot.customPlot()->graph(i)->name();
        QVERIFY2(
            names.contains(QStringLiteral("QLoRA (LoRA, int4/int8 base)")), qPrintable(names.join(", ")));
        QVERIFY(names.contains(QStringLiteral("LoRA")));
    }

    void hoverAndClickFindThePoint()
    {
        ComparePlot plot;
        plot.resize(800, 600);
        plot.show();
        QVERIFY(QTest::qWaitForWindowExposed(&plot));
        plot.setRuns(m_runs);
        plot.customPlot()->replot();
        int group = -1;
        for (int i = 0; i < int(plot.points().size()); ++i)
            if (plot.points()[std::size_t(i)].count() == 3)
                group = i;
        QVERIFY(group >= 0);
        const QPointF pixel = plot.pixelOfPoint(group);
        QCOMPARE(plot.pointAt(pixel + QPointF(3, -2)), group);
        QCOMPARE(plot.pointAt(QPointF(-100, -100)), -1);
        const QString tip = plot.tooltipFor(group);
        QVERIFY2(tip.contains(QStringLiteral("0.8200 ± 0.0200 (mean ± std over 3 seeds)")), qPrintable(tip));
        QVERIFY2(tip.contains(QStringLiteral("102.0 ± 2.0 MB")), qPrintable(tip));
        QVERIFY2(tip.contains(QStringLiteral("runs 1, 2, 3 (seeds 0, 1, 2)")), qPrintable(tip));
        QVERIFY2(tip.contains(QStringLiteral("r=8")), qPrintable(tip));

        QSignalSpy selected(&plot, &ComparePlot::runSelected);
        QTest::mouseClick(plot.customPlot(), Qt::LeftButton, Qt::NoModifier, pixel.toPoint());
        QCOMPARE(selected.count(), 1);
        QCOMPARE(selected.at(0).at(0).toLongLong(), qint64(1));
        QCOMPARE(plot.selectedRun(), qint64(1));
        // Clicking empty space selects nothing.
        QTest::mouseClick(plot.customPlot(), Qt::LeftButton, Qt::NoModifier, QPoint(2, 2));
        QCOMPARE(selected.count(), 1);
    }

    void logAxisAndMetricSwitch()
    {
        ComparePlot plot;
        plot.resize(640, 480);
        plot.setRuns(m_runs);
        plot.setLogMemoryAxis(true);
        QCOMPARE(plot.customPlot()->xAxis->scaleType(), QCPAxis::stLogarithmic);
        QVERIFY(plot.customPlot()->xAxis->range().lower > 0);
        QVERIFY(plot.customPlot()->xAxis->range().contains(80)
            && plot.customPlot()->xAxis->range().contains(500));
        plot.setMetric(CompareMetric::Test);
        QCOMPARE(plot.customPlot()->yAxis->label(), QStringLiteral("Test accuracy"));
        plot.setRuns({});
        QVERIFY(plot.points().empty());
    }

    void exportsPngSvgPdf()
    {
        ComparePlot plot;
        plot.resize(640, 480);
        plot.setRuns(m_runs);
        const QString dir = QString::fromStdString(m_dir);
        QString error;
        QVERIFY2(plot.exportTo(dir + "/plot.png", 800, 500, &error), qPrintable(error));
        QCOMPARE(head(dir + "/plot.png", 8), QByteArray("\x89PNG\r\n\x1a\n", 8));
        QImage image(dir + "/plot.png");
        QCOMPARE(image.size(), QSize(800, 500));

        QVERIFY2(plot.exportTo(dir + "/plot.svg", 800, 500, &error), qPrintable(error));
        const QByteArray svg = head(dir + "/plot.svg", 1 << 20);
        QVERIFY(svg.startsWith("<?xml"));
        QVERIFY(svg.contains("<svg"));
        QVERIFY(svg.contains("</svg>"));
        QSvgRenderer renderer(dir + "/plot.svg");
        QVERIFY(renderer.isValid());
        QCOMPARE(renderer.viewBox(), QRect(0, 0, 800, 500));

        QVERIFY2(plot.exportTo(dir + "/plot.pdf", 800, 500, &error), qPrintable(error));
        QCOMPARE(head(dir + "/plot.pdf", 5), QByteArray("%PDF-"));
        QVERIFY(QFileInfo(dir + "/plot.pdf").size() > 1000);

        QVERIFY(!plot.exportTo(dir + "/plot.bmp", 0, 0, &error));
        QVERIFY2(error.contains(QStringLiteral("plot.bmp")) && error.contains(QStringLiteral(".svg")),
            qPrintable(error));
        QVERIFY(!plot.exportTo(dir + "/no/such/folder/plot.png", 0, 0, &error));
        QVERIFY2(error.contains(QStringLiteral("could not write")), qPrintable(error));
    }
};

QTEST_MAIN(TestComparePlot)
#include "test_compareplot.moc"
