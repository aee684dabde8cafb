// VlMetrics (core/data/VlMetrics.h) against the reference implementations on tests/data/vl-metrics:
// expected.json holds what the official VQA evaluation (vqaEval.py) and pycocoevalcap 1.2 (with its Java
// PTBTokenizer) compute for the hand-written cases.json (tools/reference/vl_metrics.py wrote it).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/VlMetrics.h"
#include "util/Error.h"

namespace vlm = ladder::vlmetrics;

namespace {

constexpr double kAccuracyTolerance = 1e-12;
constexpr double kCaptionTolerance = 1e-9;

const nlohmann::json& expected()
{
    static const nlohmann::json json = [] {
        std::ifstream in(ladder::test::testDataDir() + "/vl-metrics/expected.json");
        return in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    }();
    return json;
}

std::vector<std::string> strings(const nlohmann::json& array)
{
    return array.get<std::vector<std::string>>();
}

QString joined(const std::vector<std::string>& tokens)
{
    std::string out;
    for (const std::string& token : tokens)
        out += (out.empty() ? "" : " | ") + token;
    return QString::fromStdString(out);
}

struct CaptionSet {
    std::vector<vlm::Tokens> candidates;
    std::vector<std::vector<vlm::Tokens>> references;
};

CaptionSet tokensOf(const nlohmann::json& set)
{
    CaptionSet tokens;
    for (const auto& candidate : set.at("candidate_tokens"))
        tokens.candidates.push_back(strings(candidate));
    for (const auto& image : set.at("reference_tokens")) {
        std::vector<vlm::Tokens> refs;
        for (const auto& ref : image)
            refs.push_back(strings(ref));
        tokens.references.push_back(std::move(refs));
    }
    return tokens;
}

// The raw captions of caption set `index` in cases.json.
void rawCaptions(std::size_t index, std::vector<std::string>& predictions,
    std::vector<std::vector<std::string>>& references)
{
    std::ifstream in(ladder::test::testDataDir() + "/vl-metrics/cases.json");
    const nlohmann::json cases = nlohmann::json::parse(in);
    for (const auto& image : cases.at("captions").at(index).at("images")) {
        predictions.push_back(image.at("candidate").get<std::string>());
        references.push_back(strings(image.at("references")));
    }
}

} // namespace

class TestVlMetrics : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        QVERIFY2(expected().is_object(), "tests/data/vl-metrics/expected.json is missing or not JSON");
        QVERIFY(expected().at("vqa").size() >= 25);
        QVERIFY(expected().at("gqa").size() >= 10);
    }

    void vqa_data()
    {
        QTest::addColumn<int>("index");
        const auto& cases = expected().at("vqa");
        for (std::size_t i = 0; i < cases.size(); ++i)
            QTest::newRow(cases[i].at("name").get<std::string>().c_str()) << static_cast<int>(i);
    }
    void vqa()
    {
        QFETCH(int, index);
        const auto& c = expected().at("vqa").at(static_cast<std::size_t>(index));
        const std::string prediction = c.at("prediction");
        const std::vector<std::string> answers = strings(c.at("answers"));
        QCOMPARE(QString::fromStdString(vlm::normalizeVqaAnswer(prediction)),
            QString::fromStdString(c.at("normalized_prediction").get<std::string>()));
        for (std::size_t i = 0; i < answers.size(); ++i)
            QCOMPARE(QString::fromStdString(vlm::normalizeVqaAnswer(answers[i])),
                QString::fromStdString(c.at("normalized_answers").at(i).get<std::string>()));
        const double accuracy = vlm::vqaSoftAccuracy(prediction, answers);
        const double reference = c.at("accuracy").get<double>();
        QCOMPARE(accuracy, reference); // bit-equal: the same double operations in the same order
        QVERIFY2(std::abs(accuracy - reference) <= kAccuracyTolerance,
            qPrintable(
                QString("accuracy %1, official %2").arg(accuracy, 0, 'g', 17).arg(reference, 0, 'g', 17)));
    }

    void vqaEdgeCases()
    {
        QCOMPARE(vlm::vqaSoftAccuracy("yes", {}), 0.0);
        // Ten equal answers: every leave-one-out set holds nine matches.
        QCOMPARE(vlm::vqaSoftAccuracy("yes", std::vector<std::string>(10, "yes")), 1.0);
        QCOMPARE(vlm::normalizeVqaAnswer("Two Dogs!"), std::string("2 dogs"));
    }

    void gqa()
    {
        for (const auto& c : expected().at("gqa")) {
            const double match = vlm::gqaExactMatch(c.at("prediction"), c.at("answer"));
            QVERIFY2(match == c.at("match").get<double>(), c.at("prediction").get<std::string>().c_str());
        }
    }

    void tokenizer_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("tokens");
        const auto add = [](const std::string& text, const nlohmann::json& tokens) {
            QTest::newRow(text.empty() ? "(empty)" : text.c_str())
                << QString::fromStdString(text) << joined(strings(tokens));
        };
        for (const auto& probe : expected().at("tokenizer"))
            add(probe.at("text"), probe.at("tokens"));
        // Every caption of the caption sets, as pycocoevalcap's PTBTokenizer made them.
        std::ifstream in(ladder::test::testDataDir() + "/vl-metrics/cases.json");
        const nlohmann::json cases = nlohmann::json::parse(in);
        const auto& sets = expected().at("captions");
        for (std::size_t s = 0; s < sets.size(); ++s) {
            const auto& images = cases.at("captions").at(s).at("images");
            for (std::size_t i = 0; i < images.size(); ++i) {
                add(images[i].at("candidate"), sets[s].at("candidate_tokens").at(i));
                for (std::size_t r = 0; r < images[i].at("references").size(); ++r)
                    add(images[i].at("references").at(r), sets[s].at("reference_tokens").at(i).at(r));
            }
        }
    }
    void tokenizer()
    {
        QFETCH(QString, text);
        QFETCH(QString, tokens);
        QCOMPARE(joined(vlm::tokenizeCaption(text.toStdString())), tokens);
    }

    void captionScores_data()
    {
        QTest::addColumn<int>("index");
        const auto& sets = expected().at("captions");
        for (std::size_t i = 0; i < sets.size(); ++i)
            QTest::newRow(sets[i].at("name").get<std::string>().c_str()) << static_cast<int>(i);
    }
    void captionScores()
    {
        QFETCH(int, index);
        const auto& set = expected().at("captions").at(static_cast<std::size_t>(index));
        const CaptionSet tokens = tokensOf(set);

        const std::array<double, 4> bleu = vlm::bleu(tokens.candidates, tokens.references);
        for (std::size_t k = 0; k < 4; ++k) {
            const double reference = set.at("bleu").at(k).get<double>();
            QVERIFY2(std::abs(bleu[k] - reference) <= kCaptionTolerance,
                qPrintable(QString("Bleu_%1 %2, pycocoevalcap %3")
                               .arg(k + 1)
                               .arg(bleu[k], 0, 'g', 17)
                               .arg(reference, 0, 'g', 17)));
        }
        QCOMPARE(vlm::bleu4(tokens.candidates, tokens.references), bleu[3]);

        std::vector<double> perImage;
        const double cider = vlm::ciderD(tokens.candidates, tokens.references, &perImage);
        const double reference = set.at("cider").get<double>();
        QVERIFY2(std::abs(cider - reference) <= kCaptionTolerance,
            qPrintable(
                QString("CIDEr %1, pycocoevalcap %2").arg(cider, 0, 'g', 17).arg(reference, 0, 'g', 17)));
        QCOMPARE(perImage.size(), set.at("cider_per_image").size());
        double largest = std::abs(cider - reference);
        for (std::size_t k = 0; k < 4; ++k)
            largest = std::max(largest, std::abs(bleu[k] - set.at("bleu").at(k).get<double>()));
        for (std::size_t i = 0; i < perImage.size(); ++i) {
            const double difference = std::abs(perImage[i] - set.at("cider_per_image").at(i).get<double>());
            largest = std::max(largest, difference);
            QVERIFY2(difference <= kCaptionTolerance, qPrintable(QString("image %1").arg(i)));
        }
        qInfo(
            "largest difference from pycocoevalcap (BLEU-1..4, CIDEr-D corpus and per image): %.3g", largest);

        // From the raw captions: tokenizeCaption makes the recorded tokens, so the scores are the same.
        std::vector<std::string> predictions;
        std::vector<std::vector<std::string>> references;
        rawCaptions(static_cast<std::size_t>(index), predictions, references);
        const vlm::CaptionScores scores = vlm::scoreCaptions(predictions, references);
        QVERIFY(std::abs(scores.bleu4 - set.at("bleu4").get<double>()) <= kCaptionTolerance);
        QVERIFY(std::abs(scores.ciderD - reference) <= kCaptionTolerance);
        QCOMPARE(scores.ciderPerImage.size(), perImage.size());
    }

    void tokensWithSpacesAreSplit()
    {
        // pycocoevalcap splits the joined caption at whitespace: "a b" as one token is two words.
        const std::vector<vlm::Tokens> joinedCandidate = { { "a dog", "runs" }, { "a", "cat" } };
        const std::vector<vlm::Tokens> splitCandidate = { { "a", "dog", "runs" }, { "a", "cat" } };
        const std::vector<std::vector<vlm::Tokens>> refs
            = { { { "a", "dog", "runs", "fast" } }, { { "the", "cat", "sleeps" }, { "a", "cat" } } };
        QCOMPARE(vlm::bleu4(joinedCandidate, refs), vlm::bleu4(splitCandidate, refs));
        QCOMPARE(vlm::ciderD(joinedCandidate, refs), vlm::ciderD(splitCandidate, refs));
    }

    void mismatchedCorpusThrows()
    {
        const std::vector<vlm::Tokens> one = { { "a" } };
        QVERIFY_THROWS_EXCEPTION(ladder::Error, vlm::bleu4(one, {}));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, vlm::ciderD(one, { {} }));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, vlm::scoreCaptions({ "a" }, {}));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, vlm::bleu4({}, {}));
    }
};

LADDER_TEST_GUILESS_MAIN(TestVlMetrics)
#include "test_vl_metrics.moc"
