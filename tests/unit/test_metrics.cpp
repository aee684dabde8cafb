// Metrics (core/data/Metrics.h) against HF transformers' glue_compute_metrics (sklearn 1.2.1, scipy 1.10.1)
// on the fixtures' dev sets and pseudo-predictions (glue/hf_reference), plus the edge cases: unparseable
// generated text, ties, constant predictions, empty input.
#include <QtTest>

#include <charconv>
#include <clocale>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/GlueTasks.h"
#include "data/Metrics.h"
#include "util/Error.h"

using ladder::GlueTask;
using ladder::GlueTasks;
using ladder::Metrics;
using ladder::TaskInfo;
using ladder::TextExample;

namespace {

constexpr double kTolerance = 1e-6;

const nlohmann::json& reference()
{
    static const nlohmann::json json = [] {
        std::ifstream in(ladder::test::fixture("glue/hf_reference/hf_glue_processors_and_metrics.json"));
        return in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    }();
    return json;
}

// HF's metric names -> ours.
std::string ourName(const std::string& hf)
{
    if (hf == "acc")
        return ladder::metric::kAccuracy;
    if (hf == "f1")
        return ladder::metric::kF1;
    if (hf == "mcc")
        return ladder::metric::kMcc;
    if (hf == "acc_and_f1")
        return ladder::metric::kAccuracyF1;
    if (hf == "pearson")
        return ladder::metric::kPearson;
    if (hf == "spearmanr")
        return ladder::metric::kSpearman;
    if (hf == "corr")
        return ladder::metric::kPearsonSpearman;
    return "unknown HF metric " + hf;
}

struct HfTask {
    const char* key; // in the JSON
    const char* folder; // under glue/
    GlueTask task;
};
const HfTask kHfTasks[] = {
    { "cola", "CoLA", GlueTask::CoLA },
    { "sst-2", "SST-2", GlueTask::SST2 },
    { "mrpc", "MRPC", GlueTask::MRPC },
    { "sts-b", "STS-B", GlueTask::STSB },
    { "rte", "RTE", GlueTask::RTE },
    { "qnli", "QNLI", GlueTask::QNLI },
};

std::string shortest(double value)
{
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

TaskInfo binaryInfo(const std::vector<std::string>& metrics, const std::string& main)
{
    TaskInfo info;
    info.name = "t";
    info.labels = { "0", "1" };
    info.metrics = metrics;
    info.mainMetric = main;
    return info;
}

std::vector<TextExample> goldExamples(const std::vector<int>& labels)
{
    std::vector<TextExample> out;
    for (const int label : labels) {
        TextExample ex;
        ex.labelIndex = label;
        ex.target = std::to_string(label);
        out.push_back(ex);
    }
    return out;
}

std::vector<TextExample> scoreExamples(const std::vector<double>& scores)
{
    std::vector<TextExample> out;
    for (const double score : scores) {
        TextExample ex;
        ex.score = score;
        ex.target = ladder::formatScoreTarget(score);
        out.push_back(ex);
    }
    return out;
}

} // namespace

class TestMetrics : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // Every task and prediction set of the HF reference: our evaluate() on our reader's dev examples (in
    // file order) equals HF's numbers within 1e-6, and our gold labels equal HF's.
    void hfReference_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("predictionSet");
        for (const auto& t : kHfTasks) {
            QTest::newRow((std::string(t.key) + " pseudo").c_str()) << t.key << "pseudo_pred";
            if (std::string(t.key) == "sts-b")
                QTest::newRow("sts-b pseudo rounded 0.2") << t.key << "pseudo_pred_rounded_0.2";
            else
                QTest::newRow((std::string(t.key) + " majority").c_str()) << t.key << "majority";
        }
    }
    void hfReference()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, key);
        QFETCH(QString, predictionSet);
        const auto& json = reference();
        QVERIFY2(json.is_object(), "cannot read hf_glue_processors_and_metrics.json");
        const auto& entry = json["tasks"][key.toStdString()];
        QVERIFY(entry.is_object());

        const HfTask* spec = nullptr;
        for (const auto& t : kHfTasks) {
            if (key.toStdString() == t.key)
                spec = &t;
        }
        QVERIFY(spec);
        const TaskInfo info = GlueTasks::info(spec->task);
        const auto dev = GlueTasks::readFile(
            spec->task, ladder::test::fixture(std::string("glue/") + spec->folder + "/dev.tsv"), "dev");
        QCOMPARE(dev.size(), entry["n_dev"].get<std::size_t>());
        const auto& gold = entry["gold"];
        QCOMPARE(gold.size(), dev.size());

        std::vector<std::string> predictions;
        nlohmann::json expected;
        if (info.kind == ladder::TaskKind::Classification) {
            for (std::size_t i = 0; i < dev.size(); ++i)
                QCOMPARE(dev[i].labelIndex, gold[i].get<int>());
            if (predictionSet == "majority") {
                std::vector<int> counts(info.labels.size(), 0);
                for (const auto& g : gold)
                    ++counts[g.get<std::size_t>()];
                const auto majority = std::max_element(counts.begin(), counts.end()) - counts.begin();
                predictions.assign(dev.size(), std::to_string(majority));
                expected = entry["metrics_all_majority_class"];
            } else {
                for (const auto& p : entry["pseudo_pred"])
                    predictions.push_back(std::to_string(p.get<int>()));
                expected = entry["metrics_on_pseudo_pred"];
            }
        } else {
            for (std::size_t i = 0; i < dev.size(); ++i)
                QVERIFY(std::abs(dev[i].score - gold[i].get<double>()) < 1e-12);
            const bool rounded = predictionSet == "pseudo_pred_rounded_0.2";
            for (const auto& p : entry[rounded ? "pseudo_pred_rounded_0.2" : "pseudo_pred"])
                predictions.push_back(shortest(p.get<double>()));
            expected = entry[rounded ? "metrics_on_rounded_pred" : "metrics_on_pseudo_pred"];
        }

        const auto result = ladder::evaluate(info, predictions, dev);
        QCOMPARE(result.count, dev.size());
        QCOMPARE(result.invalid, std::size_t(0));
        QVERIFY(!expected.empty());
        for (const auto& [hfName, value] : expected.items()) {
            const std::string name = ourName(hfName);
            QVERIFY2(result.values.count(name), qPrintable(QString::fromStdString("missing metric " + name)));
            const double ours = result.values.at(name);
            QVERIFY2(std::abs(ours - value.get<double>()) < kTolerance,
                qPrintable(QString("%1: ours %2, HF %3")
                               .arg(QString::fromStdString(name))
                               .arg(ours, 0, 'g', 17)
                               .arg(value.get<double>(), 0, 'g', 17)));
        }
        // The paper's per-task combination is the main score.
        QCOMPARE(result.mainName, info.mainMetric);
        QCOMPARE(result.main, result.values.at(info.mainMetric));
    }

    void mainMetricPerTask_data()
    {
        QTest::addColumn<QString>("task");
        QTest::addColumn<QString>("main");
        QTest::newRow("cola") << "cola" << ladder::metric::kMcc;
        QTest::newRow("stsb") << "stsb" << ladder::metric::kPearsonSpearman;
        QTest::newRow("mrpc") << "mrpc" << ladder::metric::kAccuracyF1;
        QTest::newRow("qqp") << "qqp" << ladder::metric::kAccuracyF1;
        QTest::newRow("sst2") << "sst2" << ladder::metric::kAccuracy;
        QTest::newRow("mnli") << "mnli" << ladder::metric::kAccuracy;
        QTest::newRow("qnli") << "qnli" << ladder::metric::kAccuracy;
        QTest::newRow("rte") << "rte" << ladder::metric::kAccuracy;
    }
    void mainMetricPerTask()
    {
        QFETCH(QString, task);
        QFETCH(QString, main);
        QCOMPARE(QString::fromStdString(GlueTasks::info(GlueTasks::parseName(task.toStdString())).mainMetric),
            main);
    }

    void plainMetrics()
    {
        const std::vector<int> gold = { 1, 1, 0, 0, 1, 0 };
        QCOMPARE(Metrics::accuracy({ 1, 0, 0, 1, 1, 0 }, gold), 4.0 / 6.0);
        // TP 2, FP 1, FN 1: F1 = 4 / 6.
        QCOMPARE(Metrics::f1({ 1, 0, 0, 1, 1, 0 }, gold), 4.0 / 6.0);
        QCOMPARE(Metrics::f1({ 0, 0, 0, 0, 0, 0 }, gold), 0.0); // no positive predicted
        QCOMPARE(Metrics::f1({ 0, 0 }, { 0, 0 }), 0.0); // 0/0 -> 0, as sklearn
        QCOMPARE(Metrics::matthews(gold, gold), 1.0);
        QCOMPARE(Metrics::matthews({ 0, 0, 1, 1, 0, 1 }, gold), -1.0);
        QCOMPARE(Metrics::matthews({ 1, 1, 1, 1, 1, 1 }, gold), 0.0); // constant -> 0
        // Binary MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2*2 - 1*1) / 9.
        QVERIFY(std::abs(Metrics::matthews({ 1, 0, 0, 1, 1, 0 }, gold) - 3.0 / 9.0) < 1e-15);

        QVERIFY(std::abs(Metrics::pearson({ 1, 2, 3, 4 }, { 2, 4, 6, 8 }) - 1.0) < 1e-15);
        QVERIFY(std::abs(Metrics::pearson({ 1, 2, 3, 4 }, { 8, 6, 4, 2 }) + 1.0) < 1e-15);
        QVERIFY(std::isnan(Metrics::pearson({ 1, 2, 3 }, { 5, 5, 5 })));
        QVERIFY(std::isnan(Metrics::pearson({ 1 }, { 2 })));
        // Ties share their mean rank, as scipy.stats.rankdata(method="average").
        const auto ranks = Metrics::averageRanks({ 10, 20, 10, 30, 20, 20 });
        const std::vector<double> expectedRanks = { 1.5, 4, 1.5, 6, 4, 4 };
        QCOMPARE(ranks, expectedRanks);
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) = 0.9486832980505138.
        QVERIFY(std::abs(Metrics::spearman({ 1, 2, 2, 3 }, { 1, 3, 2, 4 }) - 0.9486832980505138) < 1e-12);
        // Monotone but not linear: Spearman 1, Pearson below 1.
        QVERIFY(std::abs(Metrics::spearman({ 1, 2, 3, 4 }, { 1, 10, 100, 1000 }) - 1.0) < 1e-15);
        QVERIFY(Metrics::pearson({ 1, 2, 3, 4 }, { 1, 10, 100, 1000 }) < 0.99);
    }

    void parseScore_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<bool>("valid");
        QTest::addColumn<double>("value");
        QTest::newRow("decimal") << "3.8" << true << 3.8;
        QTest::newRow("padded") << "  2 \n" << true << 2.0;
        QTest::newRow("plus exponent") << "+1e0" << true << 1.0;
        QTest::newRow("leading dot") << ".5" << true << 0.5;
        QTest::newRow("trailing dot") << "5." << true << 5.0;
        QTest::newRow("negative") << "-0.25" << true << -0.25;
        QTest::newRow("comma") << "3,8" << false << 0.0;
        QTest::newRow("empty") << "" << false << 0.0;
        QTest::newRow("two dots") << "1.2.3" << false << 0.0;
        QTest::newRow("nan") << "nan" << false << 0.0;
        QTest::newRow("inf") << "inf" << false << 0.0;
        QTest::newRow("words") << "three" << false << 0.0;
        QTest::newRow("number then words") << "3 points" << false << 0.0;
        QTest::newRow("hex") << "0x10" << false << 0.0;
        QTest::newRow("huge") << "1e999" << false << 0.0;
    }
    void parseScore()
    {
        QFETCH(QString, text);
        QFETCH(bool, valid);
        QFETCH(double, value);
        double parsed = -123;
        QCOMPARE(Metrics::parseScore(text.toStdString(), parsed), valid);
        if (valid)
            QCOMPARE(parsed, value);
    }

    // Generated text that is not a label counts as wrong, in the reference's way for each metric.
    void unparseableClassification()
    {
        const auto gold = goldExamples({ 1, 0, 1, 0 });
        auto info = binaryInfo({ ladder::metric::kAccuracy, ladder::metric::kF1, ladder::metric::kMcc,
                                   ladder::metric::kAccuracyF1 },
            ladder::metric::kAccuracyF1);
        // " 1 " is valid (stripped); "yes" and "2" are not labels.
        const auto r = ladder::evaluate(info, { " 1 ", "yes", "2", "0" }, gold);
        QCOMPARE(r.invalid, std::size_t(2));
        QCOMPARE(r.values.at("accuracy"), 0.5);
        // "yes" on gold 0 -> a false positive; "2" on gold 1 -> a false negative: TP 1, FP 1, FN 1.
        QCOMPARE(r.values.at("f1"), 0.5);
        QCOMPARE(r.main, (0.5 + 0.5) / 2);
        // MCC as sklearn on the strings: classes "0", "1", "yes", "2".
        // t = {1: 2, 0: 2}, p = {1: 1, yes: 1, 2: 1, 0: 1}, c = 2, s = 4:
        // (2*4 - (2*1 + 2*1)) / sqrt((16 - 4) * (16 - 8)) = 4 / sqrt(96).
        QVERIFY(std::abs(r.values.at("mcc") - 4.0 / std::sqrt(96.0)) < 1e-15);
        // All garbage: accuracy 0, never a crash.
        const auto bad = ladder::evaluate(info, { "", "\xff", "</s>", "one" }, gold);
        QCOMPARE(bad.values.at("accuracy"), 0.0);
        QCOMPARE(bad.values.at("f1"), 0.0);
        QCOMPARE(bad.invalid, std::size_t(4));
    }

    void unparseableRegression()
    {
        TaskInfo info = GlueTasks::info(GlueTask::STSB);
        const auto gold = scoreExamples({ 0.0, 1.0, 2.0, 3.0, 4.0, 5.0 });
        const auto good = ladder::evaluate(info, { "0.0", "1.0", "2.0", "3.0", "4.0", "5.0" }, gold);
        QCOMPARE(good.main, 1.0);
        // An unparseable prediction scores -1 (below every gold score).
        const auto r = ladder::evaluate(info, { "0.0", "1.0", "two", "3.0", "4.0", "5.0" }, gold);
        QCOMPARE(r.invalid, std::size_t(1));
        const double pearson = Metrics::pearson({ 0, 1, 2, 3, 4, 5 }, { 0, 1, -1, 3, 4, 5 });
        QCOMPARE(r.values.at("pearson"), pearson);
        QVERIFY(r.values.at("pearson") < 0.9);
        // Constant predictions: correlation undefined -> 0, as the reference.
        const auto constant = ladder::evaluate(info, std::vector<std::string>(6, "2.5"), gold);
        QCOMPARE(constant.values.at("pearson"), 0.0);
        QCOMPARE(constant.values.at("spearman"), 0.0);
        QCOMPARE(constant.main, 0.0);
    }

    void evaluateErrors()
    {
        const auto info = binaryInfo({ ladder::metric::kAccuracy }, ladder::metric::kAccuracy);
        QVERIFY_THROWS_EXCEPTION(ladder::Error, ladder::evaluate(info, { "1" }, goldExamples({ 1, 0 })));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, ladder::evaluate(info, {}, {}));
        auto unknown = binaryInfo({ "bleu" }, "bleu");
        QVERIFY_THROWS_EXCEPTION(ladder::Error, ladder::evaluate(unknown, { "1" }, goldExamples({ 1 })));
        auto badMain = binaryInfo({ ladder::metric::kAccuracy }, ladder::metric::kF1);
        QVERIFY_THROWS_EXCEPTION(ladder::Error, ladder::evaluate(badMain, { "1" }, goldExamples({ 1 })));
        // A reference without a gold label.
        std::vector<TextExample> noGold(1);
        noGold[0].target = "maybe";
        try {
            ladder::evaluate(info, { "1" }, noGold);
            QFAIL("expected ladder::Error");
        } catch (const ladder::Error& e) {
            QVERIFY2(std::string(e.what()).find("no valid label") != std::string::npos, e.what());
        }
        TaskInfo stsb = GlueTasks::info(GlueTask::STSB);
        QVERIFY_THROWS_EXCEPTION(ladder::Error, ladder::evaluate(stsb, { "1" }, std::vector<TextExample>(1)));
    }

    void scoreTargets_data()
    {
        QTest::addColumn<double>("score");
        QTest::addColumn<QString>("target");
        // numpy.round(x, 1): half to even on x * 10.
        QTest::newRow("5") << 5.0 << "5.0";
        QTest::newRow("0") << 0.0 << "0.0";
        QTest::newRow("2.615") << 2.615 << "2.6";
        QTest::newRow("4.75") << 4.75 << "4.8";
        QTest::newRow("2.25 half to even") << 2.25 << "2.2";
        QTest::newRow("2.35") << 2.35 << "2.4";
        QTest::newRow("0.05") << 0.05 << "0.0"; // 0.05 * 10 is 0.5 in doubles: half to even, as numpy
        QTest::newRow("2.333") << 2.333 << "2.3";
        QTest::newRow("3.96") << 3.96 << "4.0";
    }
    void scoreTargets()
    {
        QFETCH(double, score);
        QFETCH(QString, target);
        QCOMPARE(QString::fromStdString(ladder::formatScoreTarget(score, 1)), target);
    }

    // Number formatting and parsing do not follow the C locale (Qt applications set it from LANG).
    void localeIndependent()
    {
        const char* previous = std::setlocale(LC_NUMERIC, nullptr);
        const std::string saved = previous ? previous : "C";
        const char* candidates[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8" };
        bool set = false;
        for (const char* name : candidates) {
            if (std::setlocale(LC_NUMERIC, name)) {
                set = true;
                break;
            }
        }
        if (!set)
            QSKIP("no locale with a decimal comma installed");
        const std::string target = ladder::formatScoreTarget(3.75, 1);
        double value = 0;
        const bool parsed = Metrics::parseScore("3.8", value);
        std::setlocale(LC_NUMERIC, saved.c_str());
        QCOMPARE(QString::fromStdString(target), QString("3.8"));
        QVERIFY(parsed);
        QCOMPARE(value, 3.8);
    }
};

LADDER_TEST_GUILESS_MAIN(TestMetrics)
#include "test_metrics.moc"
