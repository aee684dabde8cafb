// Ladder Side-Tuning (core/peft/Ladder*.{h,cpp}, docs/LST.md): a frozen backbone with no autograd graph,
// gates and layer dropping, generation with both caches, ablations, saving, and a tiny overfitting run.
// Parameter counts: test_ladder_counts; pruning initialisation: test_ladder_init.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/optim/adamw.h>

#include "LadderTestHelpers.h"
#include "TestSupport.h"
#include "model/Generation.h"
#include "model/T5Checkpoint.h"
#include "peft/Ladder.h"
#include "util/Error.h"

using namespace ladder;
using ladder::test::lst::ladderOptions;
using ladder::test::lst::randomBatch;
using ladder::test::lst::tinyConfig;
using ladder::test::lst::trainableByName;

namespace {

// The full LST forward recomputed over the whole prefix at every step: no cache anywhere.
class UncachedStepper : public Seq2SeqStepper {
public:
    UncachedStepper(Method& method, std::int64_t padTokenId)
        : m_method(method)
        , m_pad(padTokenId)
    {
    }
    void begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies) override
    {
        m_ids = inputIds.repeat_interleave(copies, 0);
        m_mask = attentionMask.repeat_interleave(copies, 0);
        m_tokens = at::empty({ m_ids.size(0), 0 }, at::kLong);
    }
    at::Tensor step(const at::Tensor& tokens) override
    {
        m_tokens = at::cat({ m_tokens, tokens }, 1);
        // labels = tokens[1:] + one filler, so that shiftRight(labels) == tokens (the start token first).
        const auto filler = at::full({ m_tokens.size(0), 1 }, m_pad, at::kLong);
        const auto labels = at::cat({ m_tokens.narrow(1, 1, m_tokens.size(1) - 1), filler }, 1);
        const auto out = m_method.forward({ m_ids, m_mask, labels });
        return out.logits.select(1, -1).to(at::kFloat);
    }
    void reorder(const at::Tensor& rows) override
    {
        m_ids = m_ids.index_select(0, rows);
        m_mask = m_mask.index_select(0, rows);
        m_tokens = m_tokens.index_select(0, rows);
    }

private:
    Method& m_method;
    std::int64_t m_pad;
    at::Tensor m_ids, m_mask, m_tokens;
};

// Every leaf that the autograd graph of `root` accumulates into.
std::vector<at::Tensor> graphLeaves(const at::Tensor& root)
{
    std::vector<at::Tensor> leaves;
    std::unordered_set<torch::autograd::Node*> seen;
    std::vector<torch::autograd::Node*> stack { root.grad_fn().get() };
    while (!stack.empty()) {
        auto* node = stack.back();
        stack.pop_back();
        if (!node || !seen.insert(node).second)
            continue;
        if (auto* acc = dynamic_cast<torch::autograd::AccumulateGrad*>(node))
            leaves.push_back(acc->variable);
        for (const auto& edge : node->next_edges())
            stack.push_back(edge.function.get());
    }
    return leaves;
}

} // namespace

class TestLadder : public QObject {
    Q_OBJECT
private Q_SLOTS:

    // ---- frozen backbone, no graph through it ---------------------------------------------------
    void backboneGetsNoGradient()
    {
        at::manual_seed(1);
        T5ForConditionalGeneration backbone(tinyConfig(3, 2, 0.1));
        auto method = createMethod(backbone, ladderOptions(4));
        method->train(true);
        QVERIFY(!backbone->is_training()); // LST keeps the backbone in eval mode
        const auto batch = randomBatch(3, 7, 4, 64);
        const auto out = method->forward(batch);
        QVERIFY(std::isfinite(out.loss.item<double>()));
        out.loss.backward();

        for (const auto& item : backbone->named_parameters(true)) {
            QVERIFY2(!item.value().requires_grad(), item.key().c_str());
            QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }
        const auto side = trainableByName(*method);
        std::set<const void*> sideImpls;
        for (const auto& [name, p] : side) {
            QVERIFY2(p.grad().defined(), name.c_str());
            sideImpls.insert(p.unsafeGetTensorImpl());
        }
        // The autograd graph ends only in side parameters, and reaches every one of them.
        std::set<const void*> leaves;
        for (const auto& leaf : graphLeaves(out.loss)) {
            QVERIFY(sideImpls.count(leaf.unsafeGetTensorImpl()));
            leaves.insert(leaf.unsafeGetTensorImpl());
        }
        QCOMPARE(leaves.size(), sideImpls.size());

        // What the backbone hands to the side network carries no graph.
        auto* lst = dynamic_cast<LadderMethod*>(method.get());
        QVERIFY(lst);
        const auto encoded = lst->model().encode(batch.inputIds, batch.attentionMask);
        QVERIFY(!encoded.backboneHidden.requires_grad());
        QVERIFY(!encoded.backboneHidden.grad_fn());
        QVERIFY(encoded.sideHidden.requires_grad());
        auto stackOut = backbone->encode(batch.inputIds, batch.attentionMask);
        for (const auto& b : stackOut.blockOutputs)
            QVERIFY(!b.grad_fn());
    }

    void trainModes()
    {
        at::manual_seed(2);
        T5ForConditionalGeneration backbone(tinyConfig());
        auto method = createMethod(backbone, ladderOptions(4));
        auto side = dynamic_cast<LadderMethod&>(*method).sideNetwork();
        QVERIFY(!side->is_training()); // built in eval mode
        method->train(true);
        QVERIFY(side->is_training());
        QVERIFY(side->side_decoder->blocks.begin()->second->is_training());
        QVERIFY(!backbone->is_training());
        QVERIFY(!backbone->encoder->blocks[0]->is_training());
        method->train(false);
        QVERIFY(!side->is_training());

        auto options = ladderOptions(4);
        options.backboneTrainMode = true;
        T5ForConditionalGeneration backbone2(tinyConfig());
        auto method2 = createMethod(backbone2, options);
        method2->train(true);
        QVERIFY(backbone2->is_training());
        method2->train(false);
        QVERIFY(!backbone2->is_training());
    }

    // ---- gates and layer dropping ---------------------------------------------------------------
    void gatesStartAtOneHalfAndKeepDropsBlocks()
    {
        at::manual_seed(3);
        T5ForConditionalGeneration backbone(tinyConfig(3, 2));
        auto method = createMethod(backbone, ladderOptions(4, { 1 }));
        auto side = dynamic_cast<LadderMethod&>(*method).sideNetwork();
        for (auto* stack : { side->side_encoder.get(), side->side_decoder.get() }) {
            QVERIFY(stack->keptLayers() == std::vector<std::int64_t> { 1 });
            QCOMPARE(stack->gateValue(1).item<double>(), 0.5);
            QVERIFY_THROWS_EXCEPTION(Error, stack->gateValue(0));
        }
        const auto names = trainableByName(*method);
        for (const std::string stack : { "side_encoder", "side_decoder" }) {
            QVERIFY(names.count(stack + ".gate.1"));
            QVERIFY(names.count(stack + ".downsample.1.weight"));
            QVERIFY(names.count(stack + ".downsample.1.bias"));
            QVERIFY(names.count(stack + ".downsample.embed.weight"));
            QVERIFY(names.count(stack + ".final_layer_norm.weight"));
            // The first kept layer owns the relative position bias.
            QVERIFY(names.count(stack + ".block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
            for (const std::string dropped : { "0", "2" }) {
                QVERIFY(!names.count(stack + ".gate." + dropped));
                QVERIFY(!names.count(stack + ".downsample." + dropped + ".weight"));
                for (const auto& [name, _] : names)
                    QVERIFY2(name.rfind(stack + ".block." + dropped + ".", 0) != 0, name.c_str());
            }
        }
        QVERIFY(names.count("side_decoder.block.1.layer.1.EncDecAttention.q.weight"));
        using Shape = std::vector<std::int64_t>;
        const auto shape = [&](const std::string& name) { return names.at(name).sizes().vec(); };
        QVERIFY(shape("side_encoder.block.1.layer.0.SelfAttention.q.weight") == (Shape { 8, 8 }));
        QVERIFY(shape("side_encoder.block.1.layer.1.DenseReluDense.wi.weight") == (Shape { 16, 8 }));
        QVERIFY(shape("side_final_upsample.weight") == (Shape { 32, 8 }));
        QVERIFY(!names.count("side_merge_gate"));

        // Explicit keep indices must exist in both stacks (3 encoder, 2 decoder layers here).
        T5ForConditionalGeneration backbone2(tinyConfig(3, 2));
        try {
            createLadderMethod(backbone2, ladderOptions(4, { 2 }), {});
            QFAIL("keep index 2 should not exist in a 2-layer decoder");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field keep") != std::string::npos, e.what());
        }
        // Empty keep = every layer of each stack.
        auto all = createMethod(backbone2, ladderOptions(4));
        auto allSide = dynamic_cast<LadderMethod&>(*all).sideNetwork();
        QCOMPARE(allSide->side_encoder->keptLayers().size(), std::size_t(3));
        QCOMPARE(allSide->side_decoder->keptLayers().size(), std::size_t(2));
    }

    void reductionFactorMustDivide()
    {
        T5ForConditionalGeneration backbone(tinyConfig());
        try {
            createLadderMethod(backbone, ladderOptions(3), {});
            QFAIL("r = 3 does not divide d_model 32");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field r") != std::string::npos, e.what());
        }
    }

    // ---- generation with both caches --------------------------------------------------------------
    void generationMatchesUncachedForward_data()
    {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<QString>("ablation");
        QTest::addColumn<bool>("merge");
        for (const char* f : { "t5-v1_0-relu-synth", "t5-v1_1-gated-gelu-synth" })
            for (const char* a : { "none", "cross-attention", "side-tuning", "no-ladders", "adapter-blocks" })
                QTest::newRow((std::string(f) + " " + a).c_str()) << QString(f) << QString(a) << false;
        QTest::newRow("relu merge") << QString("t5-v1_0-relu-synth") << QString("none") << true;
    }

    void generationMatchesUncachedForward()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, fixture);
        QFETCH(QString, ablation);
        QFETCH(bool, merge);
        at::manual_seed(6);
        const auto loaded = loadT5(test::fixture("t5-synthetic-hf/" + fixture.toStdString()));
        auto options = ladderOptions(2, { 0, 1 }, ablation.toStdString());
        options.mergeBackbone = merge;
        auto method = createMethod(loaded.model, options);
        method->train(false);
        // Move the gates off 0.5 so that both inputs of every gate matter.
        {
            at::NoGradGuard noGrad;
            for (auto& [name, p] : method->namedTrainableParameters())
                if (name.find("gate") != std::string::npos)
                    p.fill_(0.05);
        }

        const auto batch = randomBatch(3, 9, 2, loaded.config.vocabSize);
        auto gen = GenerationOptions::forConfig(loaded.config);
        gen.maxNewTokens = 8;
        c10::NoGradGuard noGrad;

        // Greedy: the cached LST stepper against argmax of the full forward at every step.
        auto stepper = method->makeStepper();
        const auto greedy = generate(*stepper, batch.inputIds, batch.attentionMask, gen);
        UncachedStepper uncached(*method, loaded.config.padTokenId);
        const auto reference = generate(uncached, batch.inputIds, batch.attentionMask, gen);
        QVERIFY2(at::equal(greedy.sequences, reference.sequences),
            (c10::str(greedy.sequences) + "\nvs\n" + c10::str(reference.sequences)).c_str());
        QVERIFY(greedy.sequences.size(1) > 2);

        // Beam search reorders both caches: the same hypotheses and scores as without any cache.
        gen.numBeams = 3;
        auto beamStepper = method->makeStepper();
        const auto beam = generate(*beamStepper, batch.inputIds, batch.attentionMask, gen);
        UncachedStepper uncachedBeam(*method, loaded.config.padTokenId);
        const auto beamReference = generate(uncachedBeam, batch.inputIds, batch.attentionMask, gen);
        QVERIFY2(at::equal(beam.sequences, beamReference.sequences),
            (c10::str(beam.sequences) + "\nvs\n" + c10::str(beamReference.sequences)).c_str());
        QCOMPARE(beam.sequenceScores.size(), std::size_t(3));
        for (std::size_t i = 0; i < beam.sequenceScores.size(); ++i)
            QVERIFY(std::abs(beam.sequenceScores[i] - beamReference.sequenceScores[i]) < 1e-4);
    }

    // ---- ablations (paper Figure 8, Appendix A) -------------------------------------------------
    void ablationsTrainOneStep_data()
    {
        QTest::addColumn<QString>("ablation");
        QTest::addColumn<bool>("merge");
        for (const char* a : { "none", "side-tuning", "no-ladders", "adapter-blocks", "cross-attention" })
            QTest::newRow(a) << QString(a) << false;
        QTest::newRow("none + merge") << QString("none") << true;
    }

    void ablationsTrainOneStep()
    {
        QFETCH(QString, ablation);
        QFETCH(bool, merge);
        const auto a = ablation.toStdString();
        at::manual_seed(7);
        T5ForConditionalGeneration backbone(tinyConfig(2, 2, 0.1));
        auto options = ladderOptions(4, {}, a);
        options.mergeBackbone = merge;
        auto method = createMethod(backbone, options);
        const auto names = trainableByName(*method);

        const bool gated = a == "none" || a == "adapter-blocks";
        const bool ladders = gated || a == "cross-attention";
        QCOMPARE(names.count("side_decoder.gate.1"), std::size_t(gated ? 1 : 0));
        QCOMPARE(names.count("side_decoder.downsample.1.weight"), std::size_t(ladders ? 1 : 0));
        QCOMPARE(names.count("side_decoder.downsample.embed.weight"), std::size_t(1));
        QCOMPARE(names.count("side_merge_gate"), std::size_t(merge || a == "side-tuning" ? 1 : 0));
        QCOMPARE(
            names.count("side_encoder.final_layer_norm.weight"), std::size_t(a == "adapter-blocks" ? 0 : 1));
        QCOMPARE(names.count("side_decoder.block.0.down.weight"), std::size_t(a == "adapter-blocks" ? 1 : 0));
        QCOMPARE(names.count("side_encoder.ladder_attention.1.EncDecAttention.k.weight"),
            std::size_t(a == "cross-attention" ? 1 : 0));
        QCOMPARE(names.count("side_decoder.ladder_attention.1.EncDecAttention.k.weight"),
            std::size_t(a == "cross-attention" ? 1 : 0));
        if (a == "side-tuning" || merge)
            QCOMPARE(
                dynamic_cast<LadderMethod&>(*method).sideNetwork()->mergeGateValue().item<double>(), 0.5);

        method->train(true);
        torch::optim::AdamW optimizer(
            method->trainableParameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
        const auto batch = randomBatch(4, 7, 3, 64);
        auto out = method->forward(batch);
        const double before = out.loss.item<double>();
        QVERIFY(std::isfinite(before));
        optimizer.zero_grad();
        out.loss.backward();
        for (const auto& [name, p] : names)
            QVERIFY2(p.grad().defined(), name.c_str());
        for (const auto& p : backbone->parameters(true))
            QVERIFY(!p.grad().defined());
        optimizer.step();
        method->train(false);
        QVERIFY(std::isfinite(method->forward(batch).loss.item<double>()));
    }

    void adapterBlocksNeedRandomInit()
    {
        T5ForConditionalGeneration backbone(tinyConfig());
        auto options = ladderOptions(4, {}, "adapter-blocks");
        options.init = "magnitude";
        QVERIFY_THROWS_EXCEPTION(Error, createLadderMethod(backbone, options, {}));
        // validate() (the form, createMethod) says so before anything is built, naming the field init; the
        // default, fisher, needs the explicit random too.
        options.init = "fisher";
        try {
            options.validate(tinyConfig());
            QFAIL("adapter-blocks with init fisher should not validate");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field init") != std::string::npos, e.what());
        }
        options.init = "random";
        options.validate(tinyConfig());
    }

    // ---- moving, saving ---------------------------------------------------------------------------
    void movesAndSavesTrainableWeights()
    {
        at::manual_seed(8);
        T5ForConditionalGeneration backbone(tinyConfig());
        auto method = createMethod(backbone, ladderOptions(4, { 1 }));
        method->to(at::kCPU, at::kDouble);
        for (const auto& [name, p] : method->namedTrainableParameters())
            QVERIFY2(p.scalar_type() == at::kDouble, name.c_str());
        const auto batch = randomBatch(2, 5, 3, 64);
        const auto out = method->forward(batch);
        QCOMPARE(out.logits.scalar_type(), at::kDouble);
        method->to(at::kCPU, at::kFloat);

        const auto dir = test::makeTempDir();
        method->saveTrainable(dir + "/lst.safetensors");
        at::manual_seed(9);
        auto other = createMethod(backbone, ladderOptions(4, { 1 }));
        other->loadTrainable(dir + "/lst.safetensors");
        const auto a = trainableByName(*method);
        const auto b = trainableByName(*other);
        QCOMPARE(a.size(), b.size());
        for (const auto& [name, p] : a)
            QVERIFY2(at::equal(p, b.at(name)), name.c_str());
    }

    // ---- learning ---------------------------------------------------------------------------------
    void overfitsTinyTask()
    {
        at::manual_seed(10);
        T5Config c = tinyConfig();
        T5ForConditionalGeneration backbone(c);
        auto method = createMethod(backbone, ladderOptions(4));
        Seq2SeqBatch batch;
        batch.inputIds = at::randint(2, c.vocabSize, { 8, 6 }, at::kLong);
        batch.attentionMask = at::ones({ 8, 6 }, at::kLong);
        batch.labels = at::randint(2, c.vocabSize, { 8, 3 }, at::kLong);
        torch::optim::AdamW optimizer(
            method->trainableParameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
        method->train(true);
        double first = 0.0, last = 0.0;
        for (int step = 0; step < 200; ++step) {
            optimizer.zero_grad();
            const auto loss = method->forward(batch).loss;
            loss.backward();
            optimizer.step();
            (step == 0 ? first : last) = loss.item<double>();
        }
        qInfo("LST overfit: loss %.4f -> %.4f after 200 steps", first, last);
        QVERIFY2(last < 0.1 * first, (std::to_string(first) + " -> " + std::to_string(last)).c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestLadder)
#include "test_ladder.moc"
