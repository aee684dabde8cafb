// The methods on a decoder-only backbone (peft/DecoderMethods.h, peft/DecoderLadder.h) against outside
// references: HF PEFT 0.21's LoRA and prompt tuning on tests/fixtures/decoder (their trainable-parameter
// counts, and logits with the same weights: tests/data/decoder-peft, made by
// tools/reference/decoder_peft.py), HF's own forward for the seq2seq contract, and the backbone's weights for
// LST's pruning. Plus what a method must keep: the backbone frozen where it should be, left padding without
// effect, cached generation equal to the full forward, training that lowers the loss.
#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "LlamaTestHelpers.h"
#include "TestSupport.h"
#include "model/BackboneLoad.h"
#include "model/CausalJoin.h"
#include "model/Generation.h"
#include "model/Safetensors.h"
#include "peft/DecoderLadder.h"
#include "peft/DecoderLadderInit.h"
#include "peft/DecoderMethods.h"
#include "peft/Method.h"
#include "util/Error.h"

using namespace ladder;

namespace {

LlamaForCausalLM loadFixture(const std::string& name)
{
    return llamaOf(loadBackbone(test::decoderFixture(name)).model);
}

std::string peftFile(const std::string& name)
{
    return test::testDataDir() + "/decoder-peft/" + name + ".safetensors";
}

nlohmann::json peftCounts()
{
    std::ifstream in(test::testDataDir() + "/decoder-peft/counts.json");
    return nlohmann::json::parse(in);
}

MethodOptions optionsFor(const std::string& method)
{
    auto o = MethodOptions::defaults(method);
    if (method == "ladder") {
        o.r = 2;
        o.init = "magnitude";
    }
    if (method == "prompt")
        o.prompts = 5;
    if (method == "adapter")
        o.hidden = 8;
    return o;
}

// The fixture's row 0 (12 tokens, no padding) cut into a source (the first `split` tokens) and labels (the
// rest): the seq2seq contract on a decoder predicts labels[j] from the source and labels[0..j-1], so its
// target logits are HF's causal logits at columns split-1 .. 10.
struct SplitRow {
    Seq2SeqBatch batch;
    at::Tensor ids; // (1, 12)
    std::int64_t split = 6;
};

SplitRow splitRow(const std::string& fixture)
{
    const auto expected = readSafetensors(test::decoderFixture(fixture) + "/expected.safetensors");
    SplitRow s;
    s.ids = expected.at("input_ids").narrow(0, 0, 1);
    s.batch.inputIds = s.ids.narrow(1, 0, s.split);
    s.batch.attentionMask = at::ones_like(s.batch.inputIds);
    s.batch.labels = s.ids.narrow(1, s.split, s.ids.size(1) - s.split);
    return s;
}

void setTrainable(Method& method, const TensorMap& values, const std::string& prefix)
{
    c10::NoGradGuard noGrad;
    std::size_t set = 0;
    for (auto& [name, p] : method.namedTrainableParameters()) {
        const auto it = values.find(prefix + name);
        if (it == values.end())
            continue;
        QCOMPARE(std::vector<std::int64_t>(p.sizes().begin(), p.sizes().end()),
            std::vector<std::int64_t>(it->second.sizes().begin(), it->second.sizes().end()));
        p.copy_(it->second);
        ++set;
    }
    QVERIFY2(set > 0, "no trainable tensor matched the reference's names");
}

} // namespace

class TestDecoderMethods : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { at::manual_seed(0); }

    void loraMatchesPeft_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::newRow("llama-gqa") << "llama-gqa";
        QTest::newRow("qwen2-bias") << "qwen2-bias";
    }
    // LoRA on q, k, v, o, gate, up, down with PEFT's weights (B not zero) gives PEFT's logits at the target
    // columns, and PEFT's trainable count (our bitfit false: PEFT's bias "none").
    void loraMatchesPeft()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, fixture);
        const auto name = fixture.toStdString();
        auto o = optionsFor("lora");
        o.rank = 4;
        o.alpha = 8;
        o.bitfit = false;
        o.targets = { "q", "k", "v", "o", "gate", "up", "down" };
        auto method = createMethod(loadFixture(name).ptr(), o);
        QCOMPARE(method->trainableParameterCount(), peftCounts()[name]["lora_all_r4"].get<std::int64_t>());
        QCOMPARE(method->backboneParameterCount(), peftCounts()[name]["backbone"].get<std::int64_t>());
        const auto reference = readSafetensors(peftFile(name));
        setTrainable(*method, reference, "lora.");
        method->train(false);
        const auto row = splitRow(name);
        c10::NoGradGuard noGrad;
        const auto out = method->forward(row.batch);
        const auto expected = reference.at("lora.logits").narrow(1, row.split - 1, out.logits.size(1));
        const double err = test::relativeError(out.logits, expected);
        qInfo("lora vs PEFT %s: target logits relative error %.3g", name.c_str(), err);
        QVERIFY2(err < 1e-4, qPrintable(QString::number(err)));

        auto qv = optionsFor("lora");
        qv.rank = 8;
        qv.alpha = 16;
        qv.bitfit = false;
        QCOMPARE(createMethod(loadFixture(name).ptr(), qv)->trainableParameterCount(),
            peftCounts()[name]["lora_qv_r8"].get<std::int64_t>());
    }

    void promptMatchesPeft_data() { loraMatchesPeft_data(); }
    // Prompt tuning: PEFT's virtual tokens before the sequence; the same table gives PEFT's logits.
    void promptMatchesPeft()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, fixture);
        const auto name = fixture.toStdString();
        auto method = createMethod(loadFixture(name).ptr(), optionsFor("prompt"));
        QCOMPARE(method->trainableParameterCount(), peftCounts()[name]["prompt_5"].get<std::int64_t>());
        const auto reference = readSafetensors(peftFile(name));
        setTrainable(*method, reference, "prompt.");
        method->train(false);
        const auto row = splitRow(name);
        c10::NoGradGuard noGrad;
        const auto out = method->forward(row.batch);
        const auto expected = reference.at("prompt.logits").narrow(1, 5 + row.split - 1, out.logits.size(1));
        const double err = test::relativeError(out.logits, expected);
        qInfo("prompt vs PEFT %s: target logits relative error %.3g", name.c_str(), err);
        QVERIFY2(err < 1e-4, qPrintable(QString::number(err)));
    }

    // The in-place methods at initialisation compute HF's model: the target logits are HF's causal logits
    // (the fixture's expected.safetensors) at the target columns.
    void methodsStartAsTheBackbone()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto expected = readSafetensors(test::decoderFixture("qwen2-bias") + "/expected.safetensors");
        for (const char* m : { "full", "bitfit", "lora", "adapter" }) {
            auto method = createMethod(loadFixture("qwen2-bias").ptr(), optionsFor(m));
            method->train(false);
            const auto row = splitRow("qwen2-bias");
            c10::NoGradGuard noGrad;
            const auto out = method->forward(row.batch);
            const auto hf
                = expected.at("logits").narrow(0, 0, 1).narrow(1, row.split - 1, out.logits.size(1));
            // Adapters start near identity (up is N(0, 0.01)-small), not exactly.
            const double tolerance = std::string(m) == "adapter" ? 5e-2 : 1e-4;
            const double err = test::relativeError(out.logits, hf);
            qInfo("%s at initialisation: relative error %.3g", m, err);
            QVERIFY2(err < tolerance, m);
        }
    }

    // What trains: BitFit the biases of every projection (Qwen2's q/k/v from their pretrained values, zeros
    // elsewhere), nothing of the backbone for LST and prompt tuning, the unfrozen layers only with freeze.
    void trainableSets()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto bitfit = createMethod(loadFixture("qwen2-bias").ptr(), optionsFor("bitfit"));
        const auto& c = llamaOf(bitfit->backbone())->config();
        // q, o: heads x head_dim and hidden; k, v: kv heads x head_dim; gate, up: intermediate; down: hidden.
        QCOMPARE(bitfit->trainableParameterCount(),
            c.numHiddenLayers
                * (c.numAttentionHeads * c.headDim + 2 * c.numKeyValueHeads * c.headDim + c.hiddenSize
                    + 2 * c.intermediateSize + c.hiddenSize));
        for (const auto& [name, p] : bitfit->namedTrainableParameters())
            QVERIFY2(name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0, name.c_str());

        auto frozen = optionsFor("lora");
        frozen.freeze = 1;
        auto lora = createMethod(loadFixture("llama-gqa").ptr(), frozen);
        for (const auto& [name, p] : lora->namedTrainableParameters())
            QVERIFY2(name.rfind("model.layers.1.", 0) == 0, name.c_str());

        for (const char* m : { "ladder", "prompt" }) {
            auto method = createMethod(loadFixture("llama-gqa").ptr(), optionsFor(m));
            for (const auto& item : method->backbone()->named_parameters(true))
                QVERIFY2(!item.value().requires_grad(), item.key().c_str());
        }
        auto badTarget = optionsFor("lora");
        badTarget.targets = { "wi" };
        QVERIFY_THROWS_EXCEPTION(Error, createMethod(loadFixture("llama-gqa").ptr(), badTarget));
    }

    // LST's pruning copies the backbone's own rows and columns: side layer i's q_proj row block of head h
    // is backbone q_proj's rows at the side's rotary pairs, over the chosen hidden dims.
    void ladderPruningReadsTheBackbone()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto backbone = loadFixture("llama-gqa");
        auto method = createMethod(backbone.ptr(), optionsFor("ladder"));
        auto* ladder = dynamic_cast<DecoderLadderMethod*>(method.get());
        QVERIFY(ladder);
        auto side = ladder->sideNetwork();
        const auto& c = backbone->config();
        QCOMPARE(side->side_decoder->sideConfig().hiddenSize, c.hiddenSize / 2);
        QCOMPARE(side->side_decoder->sideConfig().numKeyValueHeads, c.numKeyValueHeads);
        // The chosen hidden dims are where the side's input norm came from.
        const auto order = std::get<1>(
            at::sort(backbone->model->embed_tokens->weight.detach().abs().sum(0), true, 0, true));
        const auto dims = std::get<0>(at::sort(order.narrow(0, 0, c.hiddenSize / 2)));
        const auto hd = c.headDim;
        std::vector<std::int64_t> rows;
        for (std::int64_t j = 0; j < hd / 4; ++j)
            rows.push_back(2 * j);
        for (std::int64_t j = 0; j < hd / 4; ++j)
            rows.push_back(hd / 2 + 2 * j);
        const auto q = backbone->model->layerList[1]->self_attn->q_proj->weight.detach();
        const auto expected = q.narrow(0, hd, hd) // head 1
                                  .index_select(0, at::tensor(rows, at::kLong))
                                  .index_select(1, dims);
        const auto actual
            = side->side_decoder->blocks.at(1)->self_attn->q_proj->weight.detach().narrow(0, hd / 2, hd / 2);
        QCOMPARE(test::relativeError(actual, expected), 0.0);
        for (const auto& [name, p] : method->namedTrainableParameters())
            QVERIFY2(name.rfind("side_", 0) == 0, name.c_str());
    }

    void paddingHasNoEffect_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "lora", "prompt", "ladder" })
            QTest::newRow(m) << QString(m);
    }
    // A row computes the same alone and padded in a batch beside a longer row (right-padded sources are
    // left-aligned by CausalJoin; LST's side decoder and the prompt read the same positions).
    void paddingHasNoEffect()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, method);
        auto m = createMethod(loadFixture("llama-gqa").ptr(), optionsFor(method.toStdString()));
        m->train(false);
        const auto row = splitRow("llama-gqa");
        Seq2SeqBatch batch;
        batch.inputIds = at::zeros({ 2, row.split + 3 }, at::kLong);
        batch.attentionMask = at::zeros({ 2, row.split + 3 }, at::kLong);
        batch.inputIds[0].narrow(0, 0, row.split).copy_(row.batch.inputIds[0]);
        batch.attentionMask[0].narrow(0, 0, row.split).fill_(1);
        batch.inputIds[1].copy_(row.ids[0].narrow(0, 0, row.split + 3));
        batch.attentionMask[1].fill_(1);
        batch.labels = at::full({ 2, row.batch.labels.size(1) + 2 }, -100, at::kLong);
        batch.labels[0].narrow(0, 0, row.batch.labels.size(1)).copy_(row.batch.labels[0]);
        batch.labels[1].narrow(0, 0, 3).copy_(row.ids[0].narrow(0, row.split + 3, 3));
        c10::NoGradGuard noGrad;
        const auto alone = m->forward(row.batch).logits;
        const auto padded = m->forward(batch).logits.narrow(0, 0, 1).narrow(1, 0, alone.size(1));
        const double err = test::relativeError(padded, alone);
        qInfo("%s: padded vs alone %.3g", qPrintable(method), err);
        QVERIFY2(err < 1e-5, qPrintable(QString::number(err)));
    }

    void cachedGenerationEqualsForward_data() { paddingHasNoEffect_data(); }
    // Greedy decoding with the method's stepper (key/value caches, the side's too) picks at every step the
    // argmax of the full teacher-forced forward over what it generated so far.
    void cachedGenerationEqualsForward()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, method);
        auto m = createMethod(loadFixture("llama-gqa").ptr(), optionsFor(method.toStdString()));
        m->train(false);
        const auto row = splitRow("llama-gqa");
        GenerationOptions gen;
        gen.decoderOnly = true;
        gen.maxNewTokens = 5;
        gen.eosTokenId = -1; // never stop early
        auto stepper = m->makeStepper();
        c10::NoGradGuard noGrad;
        const auto result = generate(*stepper, row.batch.inputIds, row.batch.attentionMask, gen);
        // sequences: the prompt's last token, then the generated ones.
        const auto generated = result.sequences.narrow(1, 1, result.sequences.size(1) - 1);
        QCOMPARE(generated.size(1), std::int64_t(5));
        Seq2SeqBatch tf = row.batch;
        tf.labels = generated;
        const auto logits = m->forward(tf).logits;
        const auto argmax = logits.argmax(-1);
        QVERIFY2(argmax.equal(generated), "the cached greedy steps differ from the full forward");
    }

    // A few AdamW-free SGD steps on one batch lower the loss for every method (gradients reach what trains).
    void trainingLowersTheLoss()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        for (const char* name : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" }) {
            auto m = createMethod(loadFixture("qwen2-bias").ptr(), optionsFor(name));
            m->train(false);
            const auto row = splitRow("qwen2-bias");
            auto params = m->trainableParameters();
            const double first = m->forward(row.batch).loss.item<double>();
            double last = first;
            for (int step = 0; step < 5; ++step) {
                for (auto& p : params)
                    p.mutable_grad() = at::Tensor();
                auto loss = m->forward(row.batch).loss;
                loss.backward();
                c10::NoGradGuard noGrad;
                for (auto& p : params) {
                    QVERIFY2(p.grad().defined(), name);
                    p.add_(p.grad(), std::string(name) == "ladder" ? -0.5 : -0.05);
                }
                last = loss.item<double>();
            }
            qInfo("%s: loss %.4f -> %.4f", name, first, last);
            QVERIFY2(last < first, name);
            for (const auto& item : m->backbone()->named_parameters(true))
                if (!item.value().requires_grad())
                    QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }
    }

    // Save and load of the trainable weights, and the errors of what the decoder's LST does not have.
    void saveLoadAndErrors()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto dir = test::makeTempDir();
        auto trained = createMethod(loadFixture("llama-gqa").ptr(), optionsFor("ladder"));
        {
            c10::NoGradGuard noGrad;
            for (auto& p : trained->trainableParameters())
                p.add_(0.01);
        }
        trained->saveTrainable(dir + "/w.safetensors");
        auto o = optionsFor("ladder");
        o.init = "random";
        auto loaded = createMethod(loadFixture("llama-gqa").ptr(), o);
        loaded->loadTrainable(dir + "/w.safetensors");
        const auto a = trained->namedTrainableParameters();
        const auto b = loaded->namedTrainableParameters();
        QCOMPARE(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i)
            QVERIFY2(a[i].second.equal(b[i].second), a[i].first.c_str());

        auto ablation = optionsFor("ladder");
        ablation.ablation = "side-tuning";
        try {
            createMethod(loadFixture("llama-gqa").ptr(), ablation);
            QFAIL("an ablation on a decoder must be refused");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field ablation") != std::string::npos, e.what());
        }
        auto oddR = optionsFor("ladder");
        oddR.r = 16; // head_dim 16 / 16 = 1: not even
        QVERIFY_THROWS_EXCEPTION(Error, createMethod(loadFixture("llama-gqa").ptr(), oddR));
    }
};

QTEST_GUILESS_MAIN(TestDecoderMethods)
#include "test_decoder_methods.moc"
