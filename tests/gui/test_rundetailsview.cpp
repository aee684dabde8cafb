// RunDetailsView and MemoryBreakdownBar over a real store: spec, log lines, final figures, evaluations and
// the memory breakdown (activations = peak - weights - gradients - optimizer state), read through
// StoreReader off the GUI thread.
#include <QProcess>
#include <QSignalSpy>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "CompareFixtures.h"
#include "FruitTask.h"
#include "MemoryBreakdownBar.h"
#include "RunDetailsView.h"
#include "StoreReader.h"
#include "TestSupport.h"
#include "train/StoreRecorder.h"

using namespace ladder;
using namespace ladder::widgets;

class TestRunDetailsView : public QObject {
    Q_OBJECT

private:
    std::string m_path;

private Q_SLOTS:
    void initTestCase()
    {
        m_path = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(m_path));
    }

    void breakdownFromFigures()
    {
        FinalFigures f;
        QVERIFY(!MemoryBreakdown::fromFigures(f)); // no peak: no breakdown
        f.peakAllocatedBytes = 100'000'000;
        f.weightBytes = 40'000'000;
        f.gradientBytes = 5'000'000;
        f.optimizerBytes = 10'000'000;
        const auto b = MemoryBreakdown::fromFigures(f);
        QVERIFY(b);
        QCOMPARE(b->activations, std::int64_t(45'000'000)); // 100 - 40 - 5 - 10
        QCOMPARE(b->peak, std::int64_t(100'000'000));
        // Static parts above a (stale) peak never give negative activations.
        f.peakAllocatedBytes = 50'000'000;
        QCOMPARE(MemoryBreakdown::fromFigures(f)->activations, std::int64_t(0));

        MemoryBreakdownBar bar;
        f.peakAllocatedBytes = 100'000'000;
        bar.setBreakdown(MemoryBreakdown::fromFigures(f));
        QCOMPARE(bar.legendTexts(),
            (QStringList { "weights 40.0 MB (40.0 %)", "gradients 5.0 MB (5.0 %)",
                "optimizer state 10.0 MB (10.0 %)", "activations 45.0 MB (45.0 %)" }));
        bar.resize(400, bar.sizeHint().height());
        QImage image(bar.size(), QImage::Format_ARGB32);
        image.fill(Qt::white);
        bar.render(&image);
        // The bar is drawn in proportion: 40 % weights from the left, activations at the right end.
        const int y = 10;
        QCOMPARE(
            image.pixelColor(int(0.2 * 399), y), MemoryBreakdownBar::partColor(MemoryBreakdownBar::Weights));
        QCOMPARE(image.pixelColor(int(0.5 * 399), y),
            MemoryBreakdownBar::partColor(MemoryBreakdownBar::Optimizer));
        QCOMPARE(image.pixelColor(int(0.8 * 399), y),
            MemoryBreakdownBar::partColor(MemoryBreakdownBar::Activations));
        bar.setBreakdown(std::nullopt);
        QVERIFY(bar.legendTexts().isEmpty());
    }

    void showsARunReadOffTheGuiThread()
    {
        StoreReader reader;
        reader.setPollInterval(0);
        reader.setStorePath(QString::fromStdString(m_path));
        RunDetailsView view;
        view.setReader(&reader);
        QSignalSpy details(&reader, &StoreReader::detailsLoaded);
        view.showRun(5); // adapter hidden 48, 300 MB
        QVERIFY(details.wait(10000));
        QCOMPARE(view.runId(), qint64(5));
        QVERIFY2(view.titleText().startsWith(QStringLiteral("Run 5 · Adapters h48 · seed 0 · finished")),
            qPrintable(view.titleText()));
        // The spec, pretty-printed.
        QVERIFY(view.specText().contains(QStringLiteral("\n  \"method\": {\n")));
        QVERIFY(view.specText().contains(QStringLiteral("\"hidden\": 48")));
        // Log lines, oldest first.
        const QStringList log = view.logText().split(QLatin1Char('\n'));
        QCOMPARE(log.size(), 2);
        QVERIFY(log[0].endsWith(QStringLiteral("info training started")));
        QVERIFY(log[1].endsWith(QStringLiteral("info step 20: loss 0.5")));
        // Final figures.
        const QStringList figures = view.figureLines();
        QVERIFY2(figures.contains(QStringLiteral("best validation accuracy: 0.8500 (step 20)")),
            qPrintable(figures.join('\n')));
        QVERIFY(figures.contains(QStringLiteral("test accuracy: 0.8300")));
        QVERIFY(figures.contains(QStringLiteral("peak allocated: 300.0 MB")));
        QVERIFY(figures.contains(QStringLiteral("peak reserved: 301.0 MB")));
        QVERIFY(figures.contains(QStringLiteral("trainable parameters: 1,000 (1.000 %)")));
        QVERIFY(figures.contains(QStringLiteral("wall time: 1 min 15 s")));
        QVERIFY(figures.contains(QStringLiteral("metric points: 3")));
        QCOMPARE(view.evaluationLines(), (QStringList { "20 validation accuracy 0.8500 accuracy=0.8500" }));
        // Memory: weights 0.4, gradients 0.05, optimizer 0.1 of the peak -> activations 0.45 of 300 MB.
        const auto b = view.memoryBar()->breakdown();
        QVERIFY(b);
        QCOMPARE(b->weights, std::int64_t(120'000'000));
        QCOMPARE(b->gradients, std::int64_t(15'000'000));
        QCOMPARE(b->optimizer, std::int64_t(30'000'000));
        QCOMPARE(b->activations, std::int64_t(135'000'000));
    }

    // The legend in the window's dock (360 px): every entry in full (one column when two do not fit), the
    // widget as tall as its lines; narrower than an entry: elided, and the tooltip has the full texts.
    void memoryLegendFitsTheDock()
    {
        StoreReader reader;
        reader.setPollInterval(0);
        reader.setStorePath(QString::fromStdString(m_path));
        RunDetailsView view;
        view.setReader(&reader);
        view.resize(360, 700); // MainWindow's dock width
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QSignalSpy details(&reader, &StoreReader::detailsLoaded);
        view.showRun(5);
        QVERIFY(details.wait(10000));
        MemoryBreakdownBar* bar = view.memoryBar();
        QTRY_VERIFY(bar->height() >= bar->heightForWidth(bar->width())); // the layout gave it its lines
        const QStringList full = bar->legendTexts();
        QCOMPARE(full.size(), 4);
        QVERIFY2(
            full.contains(QStringLiteral("optimizer state 30.0 MB (10.0 %)")), qPrintable(full.join('|')));
        QCOMPARE(bar->shownLegendTexts(), full);
        for (const QString& text : full)
            QVERIFY2(bar->fontMetrics().horizontalAdvance(text) <= bar->width(), qPrintable(text));

        // Long figures (the "optimizer state 1.7 MB (1." cut) in a 300 px bar: one column, in full.
        MemoryBreakdownBar small;
        FinalFigures f;
        f.peakAllocatedBytes = 143'712'345'678;
        f.weightBytes = 120'123'456'789;
        f.gradientBytes = 1'712'345'678;
        f.optimizerBytes = 1'712'345'678;
        small.setBreakdown(MemoryBreakdown::fromFigures(f));
        small.resize(300, small.heightForWidth(300));
        const QStringList longTexts = small.legendTexts();
        QVERIFY2(longTexts[2].startsWith(QStringLiteral("optimizer state 1,712.3 MB (1.2 %)"))
                || longTexts[2].startsWith(QStringLiteral("optimizer state 1712.3 MB (1.2 %)")),
            qPrintable(longTexts[2]));
        QCOMPARE(small.legendColumns(300), 1);
        QCOMPARE(small.shownLegendTexts(), longTexts);
        QVERIFY(small.heightForWidth(300) > small.heightForWidth(1200)); // four lines instead of two
        QCOMPARE(small.legendColumns(1200), 2);
        // Narrower than an entry: elided with "…", never cut mid-glyph; the tooltip keeps every text whole.
        small.resize(120, small.heightForWidth(120));
        const QStringList shown = small.shownLegendTexts();
        QVERIFY2(shown[2].endsWith(QChar(0x2026)), qPrintable(shown[2]));
        for (const QString& text : longTexts)
            QVERIFY2(small.toolTip().contains(text), qPrintable(small.toolTip()));
    }

    void failedRunShowsItsError()
    {
        StoreReader reader;
        reader.setPollInterval(0);
        reader.setStorePath(QString::fromStdString(m_path));
        RunDetailsView view;
        view.setReader(&reader);
        QSignalSpy details(&reader, &StoreReader::detailsLoaded);
        view.showRun(9);
        QVERIFY(details.wait(10000));
        QVERIFY(view.titleText().contains(QStringLiteral("failed")));
        QVERIFY(view.titleText().contains(QStringLiteral("out of memory")));
        QVERIFY(!view.memoryBar()->breakdown());
        QVERIFY(view.figureLines().contains(QStringLiteral("peak allocated: —")));
        // A run that does not exist: an error, and the view keeps what it showed.
        QSignalSpy failed(&reader, &StoreReader::loadFailed);
        view.showRun(999);
        QVERIFY(failed.wait(10000));
        QVERIFY2(failed.at(0).at(0).toString().contains(QStringLiteral("999")),
            qPrintable(failed.at(0).at(0).toString()));
        view.showRun(0);
        QCOMPARE(view.runId(), qint64(0));
        QVERIFY(view.specText().isEmpty());
    }

    void followsAGrowingLog()
    {
        const std::string path = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(path));
        StoreReader reader;
        reader.setPollInterval(50);
        reader.setStorePath(QString::fromStdString(path));
        RunDetailsView view;
        view.setReader(&reader);
        view.showRun(11); // the running run
        QTRY_VERIFY_WITH_TIMEOUT(view.logText().contains(QStringLiteral("training started")), 10000);
        {
            ResultsStore writer;
            QVERIFY(writer.open(path));
            QVERIFY(writer.addLog(11, LogLevel::Warning, "loss spike at step 4"));
        }
        QTRY_VERIFY_WITH_TIMEOUT(
            view.logText().contains(QStringLiteral("warning loss spike at step 4")), 10000);
    }

    // The initialisation's and the evaluations' peaks are rows beside training's, only where stored.
    void showsInitAndEvaluationPeaksWhereStored()
    {
        const std::string path = test::makeTempDir() + "/results.sqlite";
        QVERIFY(test::writeFixtureStore(path));
        {
            ResultsStore writer;
            QVERIFY(writer.open(path));
            FinalFigures f;
            f.initPeakAllocatedBytes = 350'000'000;
            f.evalPeakAllocatedBytes = 120'000'000;
            QVERIFY(writer.setFinalFigures(5, f));
        }
        StoreReader reader;
        reader.setPollInterval(0);
        reader.setStorePath(QString::fromStdString(path));
        RunDetailsView view;
        view.setReader(&reader);
        QSignalSpy details(&reader, &StoreReader::detailsLoaded);
        view.showRun(5);
        QVERIFY(details.wait(10000));
        QStringList figures = view.figureLines();
        QVERIFY2(
            figures.contains(QStringLiteral("peak allocated: 300.0 MB")), qPrintable(figures.join('\n')));
        QVERIFY(figures.contains(QStringLiteral("init peak: 350.0 MB")));
        QVERIFY(figures.contains(QStringLiteral("evaluation peak: 120.0 MB")));
        view.showRun(6); // no such figures: no such rows
        QVERIFY(details.wait(10000));
        figures = view.figureLines();
        QVERIFY(figures.contains(QStringLiteral("peak allocated: 310.0 MB")));
        QVERIFY2(!figures.join('\n').contains(QStringLiteral("init peak")), qPrintable(figures.join('\n')));
        QVERIFY(!figures.join('\n').contains(QStringLiteral("evaluation peak")));
    }

    // "Copy CLI command" gives a shell line that a real POSIX shell runs as `ladder train`, reproducing the
    // run: the same spec (its hash too), its name with a quote in it, and no "store" (the user's --store
    // decides).
    void copiedCliCommandTrainsTheRunAgain()
    {
        LADDER_REQUIRE_FIXTURES();
        const std::string root = test::makeTempDir();
        test::writeTinyBackbone(root + "/tiny-t5", 5);
        const std::string task = test::writeFruitTask(root);
        const nlohmann::json spec { { "name", "it's mine" }, { "backbone", root + "/tiny-t5" },
            { "task", test::fruitTaskSpec(task) }, { "method", { { "method", "lora" }, { "rank", 2 } } },
            { "training",
                { { "max_steps", 2 }, { "batch_size", 8 }, { "warmup_steps", 0 }, { "max_source_length", 16 },
                    { "max_eval_examples", 4 }, { "learning_rate", 0.01 } } },
            { "seed", 3 }, { "store", root + "/elsewhere.sqlite" } };
        const QString line = RunDetailsView::cliCommand(spec.dump());
        QVERIFY2(line.endsWith(QLatin1String(" | ladder train --config -")), qPrintable(line));
        QVERIFY(!line.contains(QLatin1String("elsewhere")));
        QVERIFY(RunDetailsView::cliCommand("not json").isEmpty());

        const QString store = QString::fromStdString(root + "/results.sqlite");
        QProcess sh;
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert(QStringLiteral("PATH"),
            QFileInfo(QString::fromStdString(test::cliPath())).absolutePath() + ":" + env.value("PATH"));
        sh.setProcessEnvironment(env);
        sh.start(QStringLiteral("/bin/sh"), { QStringLiteral("-c"), line + " --store '" + store + "'" });
        QVERIFY(sh.waitForFinished(120000));
        QVERIFY2(sh.exitCode() == 0, sh.readAllStandardError().constData());
        QCOMPARE(QString::fromStdString(test::rawQuery(store.toStdString(), "SELECT name, status FROM runs")),
            QStringLiteral("it's mine|finished"));
        nlohmann::json expected = spec;
        expected.erase("store");
        QCOMPARE(QString::fromStdString(test::rawQuery(store.toStdString(), "SELECT spec_hash FROM runs")),
            QString::fromStdString(runSpecHash(RunSpec::fromJson(expected))));
        QVERIFY(!QFileInfo::exists(QString::fromStdString(root + "/elsewhere.sqlite")));
    }

    void prettySpecKeepsNonJson()
    {
        QCOMPARE(RunDetailsView::prettySpec("{\"b\":1,\"a\":[2]}"),
            QStringLiteral("{\n  \"a\": [\n    2\n  ],\n  \"b\": 1\n}"));
        QCOMPARE(RunDetailsView::prettySpec("not json"), QStringLiteral("not json"));
    }
};

LADDER_TEST_MAIN(TestRunDetailsView)
#include "test_rundetailsview.moc"
