// Parity with HuggingFace transformers 5.25 on tests/fixtures/decoder (fp32, CPU; Mistral with its sliding
// window of 4 over 12 columns and 13-token generations), both config layouts:
// logits, loss and every hidden state within 1e-4 relative error, over ALL positions (the right-padded row's
// padding columns included: positions are numbered as HF's forward numbers them there, see
// model/llama/LlamaModel.h); greedy and beam-3 ids identical, beam-3 sequence score and cached greedy step
// logits within 1e-4.
#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>

#include "LlamaTestHelpers.h"
#include "TestSupport.h"
#include "model/CausalJoin.h"
#include "model/Generation.h"
#include "model/llama/LlamaCheckpoint.h"
#include "util/Error.h"

using namespace ladder;

namespace {

constexpr double kTolerance = 1e-4;

void addFixtureRows()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("config");
    for (const char* m : { "llama-gqa", "qwen2-bias", "llama-rope-scaling", "mistral-window" })
        for (const char* c : { "config.json", "config.tf4.json" })
            QTest::newRow((std::string(m) + " " + c).c_str()) << QString(m) << QString(c);
}

// Records a parity line (grep "parity:" in the test's output for the table).
void report(const QString& row, const char* what, double value)
{
    qInfo("parity: %s %s %.3g", qPrintable(row), what, value);
}

// Greedy decoding that keeps each cached step's logits (HF's output_scores with no processors).
class RecordingStepper : public Seq2SeqStepper {
public:
    explicit RecordingStepper(std::unique_ptr<Seq2SeqStepper> inner)
        : m_inner(std::move(inner))
    {
    }
    void begin(const at::Tensor& ids, const at::Tensor& mask, std::int64_t copies) override
    {
        m_inner->begin(ids, mask, copies);
    }
    at::Tensor step(const at::Tensor& tokens) override
    {
        auto logits = m_inner->step(tokens);
        steps.push_back(logits);
        return logits;
    }
    void reorder(const at::Tensor& rows) override { m_inner->reorder(rows); }
    at::Tensor startTokens(std::int64_t rows, std::int64_t start) const override
    {
        return m_inner->startTokens(rows, start);
    }
    std::vector<at::Tensor> steps;

private:
    std::unique_ptr<Seq2SeqStepper> m_inner;
};

} // namespace

class TestLlamaParity : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void forwardMatchesHf_data() { addFixtureRows(); }
    void forwardMatchesHf()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QString, config);
        const auto row = QString("%1 %2").arg(name, config);
        const auto dir = test::fixtureWithConfig(name.toStdString(), config.toStdString());
        auto loaded = loadLlama(dir);
        const auto expected
            = readSafetensors(test::decoderFixture(name.toStdString()) + "/expected.safetensors");

        c10::NoGradGuard noGrad;
        const auto out = loaded.model->forward(
            expected.at("input_ids"), expected.at("attention_mask"), expected.at("labels"));
        QCOMPARE(out.logits.sizes(), expected.at("logits").sizes());
        const auto logitsError = test::relativeError(out.logits, expected.at("logits"));
        report(row, "logits", logitsError);
        QVERIFY2(logitsError < kTolerance, qPrintable(QString::number(logitsError)));
        const auto lossError = test::relativeError(out.loss.reshape({ 1 }), expected.at("loss"));
        report(row, "loss", lossError);
        QVERIFY2(lossError < kTolerance, qPrintable(QString::number(lossError)));
        const auto hidden = out.stack.hfHiddenStates();
        QCOMPARE(static_cast<int>(hidden.size()), 3);
        for (std::size_t i = 0; i < hidden.size(); ++i) {
            const auto& ref = expected.at("hidden_states." + std::to_string(i));
            QCOMPARE(hidden[i].sizes(), ref.sizes());
            const auto err = test::relativeError(hidden[i], ref);
            report(row, ("hidden_states." + std::to_string(i)).c_str(), err);
            QVERIFY2(err < kTolerance, qPrintable(QString("hidden_states.%1: %2").arg(i).arg(err)));
        }
    }

    void generationMatchesHf_data() { addFixtureRows(); }
    void generationMatchesHf()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QString, config);
        const auto row = QString("%1 %2").arg(name, config);
        const auto dir = test::fixtureWithConfig(name.toStdString(), config.toStdString());
        auto loaded = loadLlama(dir);
        const auto expected
            = readSafetensors(test::decoderFixture(name.toStdString()) + "/expected.safetensors");
        const auto prompt = expected.at("prompt_ids");
        auto options = GenerationOptions::forConfig(loaded.config);
        options.maxNewTokens = 8;

        RecordingStepper recorder(loaded.model->makeStepper());
        const auto greedy = generateCausal(*loaded.model, prompt, {}, options, &recorder);
        QVERIFY2(at::equal(greedy.sequences, expected.at("greedy_ids")),
            qPrintable(QString::fromStdString(at::toString(greedy.sequences.scalar_type()))));
        QCOMPARE(static_cast<int>(recorder.steps.size()), 8);
        const auto stepError
            = test::relativeError(at::stack(recorder.steps), expected.at("greedy_step_logits"));
        report(row, "greedy_step_logits", stepError);
        QVERIFY2(stepError < kTolerance, qPrintable(QString::number(stepError)));

        options.numBeams = 3;
        const auto beam = generateCausal(*loaded.model, prompt, {}, options);
        QVERIFY(at::equal(beam.sequences, expected.at("beam3_ids")));
        QCOMPARE(static_cast<int>(beam.sequenceScores.size()), 1);
        const double want = expected.at("beam3_sequence_scores").item<double>();
        const double scoreError = std::abs(beam.sequenceScores[0] - want) / std::abs(want);
        report(row, "beam3_sequence_scores", scoreError);
        QVERIFY2(
            scoreError < kTolerance, qPrintable(QString("%1 vs %2").arg(beam.sequenceScores[0]).arg(want)));
    }

    void leftPaddedPromptGeneratesTheSame()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        for (const char* name : { "llama-gqa", "qwen2-bias" }) {
            auto loaded = loadLlama(test::decoderFixture(name));
            const auto expected = readSafetensors(test::decoderFixture(name) + "/expected.safetensors");
            const auto prompt = expected.at("prompt_ids");
            const auto pad = loaded.config.generationPadId();
            // Row 0: the prompt left-padded by 3; row 1: a shorter prompt (its first 3 tokens) right-padded,
            // which generate moves to the left.
            const auto padded = at::cat({ at::full({ 1, 3 }, pad, at::kLong), prompt }, 1);
            const auto shortPrompt
                = at::cat({ prompt.narrow(1, 0, 3), at::full({ 1, 5 }, pad, at::kLong) }, 1);
            const auto ids = at::cat({ padded, shortPrompt }, 0);
            auto mask = at::ones_like(ids);
            mask[0].narrow(0, 0, 3).zero_();
            mask[1].narrow(0, 3, 5).zero_();
            auto options = GenerationOptions::forConfig(loaded.config);
            options.maxNewTokens = 8;
            for (std::int64_t beams : { 1, 3 }) {
                options.numBeams = beams;
                const auto batch = generateCausal(*loaded.model, ids, mask, options);
                const auto alone = generateCausal(*loaded.model, prompt, {}, options);
                const auto shortAlone = generateCausal(*loaded.model, prompt.narrow(1, 0, 3), {}, options);
                QVERIFY(
                    at::equal(batch.sequences[0].narrow(0, 3, alone.sequences.size(1)), alone.sequences[0]));
                QVERIFY(at::equal(
                    batch.sequences[1].narrow(0, 5, shortAlone.sequences.size(1)), shortAlone.sequences[0]));
                QVERIFY(at::equal(batch.sequences[1].narrow(0, 0, 5), at::full({ 5 }, pad, at::kLong)));
            }
        }
    }

    void tiedHeadFollowsTheConfig()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto qwenHeader
            = readSafetensorsHeader(test::decoderFixture("qwen2-bias") + "/model.safetensors");
        QVERIFY(!qwenHeader.count("lm_head.weight"));
        auto qwen = loadLlama(test::decoderFixture("qwen2-bias"));
        QVERIFY(qwen.config.tieWordEmbeddings);
        QVERIFY(!qwen.model->lm_head);
        QVERIFY(qwen.model->lmHeadWeight().is_same(qwen.model->model->embed_tokens->weight));
        QVERIFY(qwen.model->model->layerList[0]->self_attn->q_proj->bias.defined());
        QVERIFY(!qwen.model->model->layerList[0]->self_attn->o_proj->bias.defined());
        auto llama = loadLlama(test::decoderFixture("llama-gqa"));
        QVERIFY(!llama.config.tieWordEmbeddings);
        QVERIFY(llama.model->lm_head);
        QVERIFY(!at::equal(llama.model->lmHeadWeight(), llama.model->model->embed_tokens->weight));
        QVERIFY(!llama.model->model->layerList[0]->self_attn->q_proj->bias.defined());
        // Every projection by its HF name, lm_head included when untied.
        const auto projections = llama.model->namedProjections();
        QCOMPARE(static_cast<int>(projections.size()), 2 * 7 + 1);
        QCOMPARE(
            QString::fromStdString(projections.front().first), QString("model.layers.0.self_attn.q_proj"));
        QCOMPARE(QString::fromStdString(projections.back().first), QString("lm_head"));
    }

    void causalJoinOnAHandMadeExample()
    {
        // Source row 0 right-padded [5 6 7 0], row 1 left-padded [0 0 8 9]; labels (T=3) right-padded.
        const auto source = at::tensor({ 5, 6, 7, 0, 0, 0, 8, 9 }, at::kLong).view({ 2, 4 });
        const auto mask = at::tensor({ 1, 1, 1, 0, 0, 0, 1, 1 }, at::kLong).view({ 2, 4 });
        const auto labels = at::tensor({ 11, 12, 13, 14, -100, -100 }, at::kLong).view({ 2, 3 });
        const auto join = CausalJoin::make(source, mask, labels, 0);
        QVERIFY(at::equal(
            join.inputIds, at::tensor({ 0, 5, 6, 7, 11, 12, 0, 0, 8, 9, 14, 0 }, at::kLong).view({ 2, 6 })));
        QVERIFY(at::equal(join.attentionMask,
            at::tensor({ 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0 }, at::kLong).view({ 2, 6 })));
        QCOMPARE(join.sourceLength, std::int64_t(4));
        // Target logits: joined columns 3, 4, 5 (the source's last token predicts labels[:, 0]).
        const auto logits = at::arange(6, at::kFloat).view({ 1, 6, 1 }).expand({ 2, 6, 1 });
        QVERIFY(at::equal(join.targetLogits(logits).select(2, 0)[0], at::tensor({ 3.f, 4.f, 5.f })));
        // A row with no source token is refused.
        const auto empty = at::tensor({ 0, 0, 0, 0, 1, 1, 1, 1 }, at::kLong).view({ 2, 4 });
        QVERIFY_THROWS_EXCEPTION(Error, CausalJoin::make(source, empty, labels, 0));
    }

    void forwardTargetsLossEqualsHfCausalLoss()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        // Row 0 of the fixture split into a source (first 5 tokens) and targets (the rest). HF's causal loss
        // on the whole row with labels -100 on the source equals forwardTargets' loss; the target logits
        // equal the full forward's logits at columns 4..10.
        auto loaded = loadLlama(test::decoderFixture("llama-gqa"));
        const auto expected = readSafetensors(test::decoderFixture("llama-gqa") + "/expected.safetensors");
        const auto ids = expected.at("input_ids").narrow(0, 0, 1);
        c10::NoGradGuard noGrad;
        // The source right-padded by 2 (moved to the left by the join); the labels right-padded by 1.
        const auto source = at::cat({ ids.narrow(1, 0, 5), at::zeros({ 1, 2 }, at::kLong) }, 1);
        const auto sourceMask = at::cat({ at::ones({ 1, 5 }, at::kLong), at::zeros({ 1, 2 }, at::kLong) }, 1);
        const auto labels = at::cat({ ids.narrow(1, 5, 7), at::full({ 1, 1 }, -100, at::kLong) }, 1);
        const auto targets = loaded.model->forwardTargets(source, sourceMask, labels);

        auto hfLabels = ids.clone();
        hfLabels.narrow(1, 0, 5).fill_(-100);
        const auto hf = loaded.model->forward(ids, at::ones_like(ids), hfLabels);
        const auto lossError = test::relativeError(targets.loss.reshape({ 1 }), hf.loss.reshape({ 1 }));
        QVERIFY2(lossError < 1e-5, qPrintable(QString::number(lossError)));
        const auto logitError
            = test::relativeError(targets.logits.narrow(1, 0, 7), hf.logits.narrow(1, 4, 7));
        QVERIFY2(logitError < 1e-5, qPrintable(QString::number(logitError)));
        // And against HF's own logits of the fixture (columns 4..10 of row 0).
        const auto fixtureError = test::relativeError(
            targets.logits.narrow(1, 0, 7), expected.at("logits").narrow(0, 0, 1).narrow(1, 4, 7));
        QVERIFY2(fixtureError < kTolerance, qPrintable(QString::number(fixtureError)));
    }
};

LADDER_TEST_GUILESS_MAIN(TestLlamaParity)
#include "test_llama_parity.moc"
