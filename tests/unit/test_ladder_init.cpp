// Ladder Side-Tuning's pruning initialisation (core/peft/LadderInit, docs/LST.md): magnitude pruning copies
// the chosen slices, Fisher importance uses the data and refreezes the backbone, and gated or uneven stacks.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>

#include "LadderTestHelpers.h"
#include "TestSupport.h"
#include "model/T5Checkpoint.h"
#include "peft/LadderInit.h"
#include "util/Error.h"

using namespace ladder;
using ladder::test::lst::ladderOptions;
using ladder::test::lst::randomBatch;
using ladder::test::lst::tinyConfig;
using ladder::test::lst::trainableByName;

class TestLadderInit : public QObject {
    Q_OBJECT
private Q_SLOTS:

    void magnitudePruningCopiesChosenSlices()
    {
        at::manual_seed(4);
        T5Config c = tinyConfig();
        c.vocabSize = 16;
        c.dModel = 8;
        c.numHeads = 2;
        c.dKv = 4;
        c.dFf = 16;
        T5ForConditionalGeneration backbone(c);
        std::map<std::string, at::Tensor> p;
        {
            at::NoGradGuard noGrad;
            for (auto& item : backbone->named_parameters(true)) {
                item.value().uniform_(0.0, 1.0);
                p[item.key()] = item.value();
            }
            // Make the chosen indices unambiguous: large entries on the rows/columns that must win.
            for (auto col : { 1, 2, 5, 6 })
                p["shared.weight"].select(1, col).add_(10.0);
            const std::string b0 = "encoder.block.0.layer.0.SelfAttention.";
            for (const char* m : { "q", "k", "v" }) {
                auto w = p[b0 + m + ".weight"];
                w[0].add_(10.0); // rows 0, 3, 1 and 5 win over both heads (the reference's global rule),
                w[3].add_(10.0); // although head 0 then holds three of them and head 1 one
                w[1].add_(5.0);
                w[5].add_(3.0);
                w[6].add_(1.0);
            }
            for (auto row : { 0, 3, 4, 7 })
                p[b0 + "o.weight"][row].add_(10.0);
            for (auto row : { 2, 5, 8, 9, 10, 11, 14, 15 })
                p["encoder.block.0.layer.1.DenseReluDense.wi.weight"][row].add_(10.0);
            for (auto row : { 1, 2, 3, 6 })
                p["encoder.block.0.layer.1.DenseReluDense.wo.weight"][row].add_(10.0);
        }
        auto options = ladderOptions(2);
        options.init = "magnitude";
        auto method = createMethod(backbone, options);
        const auto side = trainableByName(*method);

        const auto idx
            = [](std::initializer_list<std::int64_t> v) { return at::tensor(std::vector<std::int64_t>(v)); };
        const auto embed = idx({ 1, 2, 5, 6 });
        const auto qkvRows = idx({ 0, 1, 3, 5 }); // the best H * d_kv / r = 4 of 8 rows, ascending
        const auto attnOut = idx({ 0, 3, 4, 7 });
        const auto ffHidden = idx({ 2, 5, 8, 9, 10, 11, 14, 15 });
        const auto ffOut = idx({ 1, 2, 3, 6 });
        const auto rowsCols = [&](const std::string& name, const at::Tensor& rows, const at::Tensor& cols) {
            return p.at(name).index_select(0, rows).index_select(1, cols);
        };
        const auto check = [&](const std::string& sideName, const at::Tensor& expected) {
            QVERIFY2(side.count(sideName), sideName.c_str());
            QVERIFY2(at::equal(side.at(sideName), expected), sideName.c_str());
        };
        const std::string s0 = "side_encoder.block.0.";
        const std::string e0 = "encoder.block.0.";
        const auto norm = [&](const std::string& name, const at::Tensor& dims) {
            return p.at(name).index_select(0, dims);
        };
        check(s0 + "layer.0.layer_norm.weight", norm(e0 + "layer.0.layer_norm.weight", embed));
        for (const char* m : { "q", "k", "v" }) {
            const auto name = std::string("layer.0.SelfAttention.") + m + ".weight";
            check(s0 + name, rowsCols(e0 + name, qkvRows, embed));
        }
        check(s0 + "layer.0.SelfAttention.o.weight",
            rowsCols(e0 + "layer.0.SelfAttention.o.weight", attnOut, qkvRows));
        check(s0 + "layer.1.layer_norm.weight", norm(e0 + "layer.1.layer_norm.weight", attnOut));
        check(s0 + "layer.1.DenseReluDense.wi.weight",
            rowsCols(e0 + "layer.1.DenseReluDense.wi.weight", ffHidden, attnOut));
        check(s0 + "layer.1.DenseReluDense.wo.weight",
            rowsCols(e0 + "layer.1.DenseReluDense.wo.weight", ffOut, ffHidden));
        // The relative attention bias is copied unpruned; the next block starts from block 0's output dims.
        check(s0 + "layer.0.SelfAttention.relative_attention_bias.weight",
            p.at(e0 + "layer.0.SelfAttention.relative_attention_bias.weight"));
        check("side_decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            p.at("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
        check("side_encoder.block.1.layer.0.layer_norm.weight",
            p.at("encoder.block.1.layer.0.layer_norm.weight").index_select(0, ffOut));
        // Downsamples and gates stay random / zero.
        QCOMPARE(side.at("side_encoder.gate.0").item<double>(), 0.0);
        QVERIFY(at::equal(side.at("side_encoder.downsample.0.bias"), at::zeros({ 4 })));

        // The pruned side network is a working model.
        const auto out = method->forward(randomBatch(2, 5, 3, 16));
        QVERIFY(std::isfinite(out.loss.item<double>()));
    }

    void fisherInitUsesDataAndRefreezes()
    {
        at::manual_seed(5);
        T5ForConditionalGeneration backbone(tinyConfig());
        {
            at::NoGradGuard noGrad;
            for (auto& item : backbone->named_parameters(true))
                if (item.key().find("layer_norm") != std::string::npos)
                    item.value().uniform_(0.5, 1.5); // norms that are not all ones
        }
        std::vector<Seq2SeqBatch> batches { randomBatch(3, 6, 3, 64), randomBatch(3, 6, 3, 64) };
        std::size_t next = 0, served = 0;
        BatchSource data = [&]() -> std::optional<Seq2SeqBatch> {
            if (next >= batches.size())
                return std::nullopt;
            ++served;
            return batches[next++];
        };
        auto options = ladderOptions(4);
        options.init = "fisher";
        options.fisherSamples = 4; // 3 rows of the first batch, 1 of the second
        auto method = createMethod(backbone, options, data);
        QCOMPARE(served, std::size_t(2));
        for (const auto& item : backbone->named_parameters(true)) {
            QVERIFY2(!item.value().requires_grad(), item.key().c_str());
            QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }
        // Fisher and magnitude importance choose differently on random weights; the init is the backbone's.
        const auto fisherSide = trainableByName(*method);
        auto magnitude = ladderOptions(4);
        magnitude.init = "magnitude";
        const auto magnitudeSide = trainableByName(*createMethod(backbone, magnitude));
        const std::string ln = "side_encoder.block.0.layer.0.layer_norm.weight";
        QVERIFY(!at::equal(fisherSide.at("side_encoder.block.0.layer.0.SelfAttention.q.weight"),
            magnitudeSide.at("side_encoder.block.0.layer.0.SelfAttention.q.weight")));
        QVERIFY(!at::equal(fisherSide.at(ln), at::ones({ 8 }))); // a slice of the backbone's norm, not ones

        // The importance itself: a sum of squared gradients, non-negative, same shapes as the weights.
        next = 0;
        const auto importance = fisherImportance(backbone, data, 2);
        QCOMPARE(importance.size(), backbone->named_parameters(true).size());
        QVERIFY(importance.at("shared.weight").min().item<double>() >= 0.0);
        QVERIFY(importance.at("encoder.block.0.layer.0.SelfAttention.q.weight").sum().item<double>() > 0.0);

        // Progress: one call per example, counting up to the examples used (here the data runs out at 6 of
        // 10: a last call says 6 of 6); a cancel before the 3rd example stops it with the backbone frozen.
        next = 0;
        std::vector<std::pair<std::int64_t, std::int64_t>> calls;
        (void)fisherImportance(backbone, data, 10,
            [&](std::int64_t done, std::int64_t total) { calls.emplace_back(done, total); });
        QCOMPARE(calls.size(), std::size_t(7));
        for (std::int64_t k = 0; k < 6; ++k)
            QVERIFY(calls[static_cast<std::size_t>(k)] == std::make_pair(k + 1, std::int64_t(10)));
        QVERIFY(calls.back() == std::make_pair(std::int64_t(6), std::int64_t(6)));
        next = 0;
        calls.clear();
        QVERIFY_THROWS_EXCEPTION(InitCancelled,
            fisherImportance(
                backbone, data, 10,
                [&](std::int64_t done, std::int64_t total) { calls.emplace_back(done, total); },
                [&] { return calls.size() >= 2; }));
        QCOMPARE(calls.size(), std::size_t(2));
        for (const auto& item : backbone->named_parameters(true)) {
            QVERIFY2(!item.value().requires_grad(), item.key().c_str());
            QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }

        // Weights trained from a Fisher initialisation load into a method built without data (ladder eval).
        const auto saved = test::makeTempDir() + "/fisher.safetensors";
        method->saveTrainable(saved);
        auto reloaded = createMethod(backbone, withoutFisherInit(options));
        reloaded->loadTrainable(saved);
        QVERIFY(at::equal(trainableByName(*reloaded).at(ln), fisherSide.at(ln)));

        try {
            createMethod(backbone, options, {});
            QFAIL("fisher init without data should fail");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field init") != std::string::npos, e.what());
        }
        for (const auto& item : backbone->named_parameters(true))
            QVERIFY(!item.value().requires_grad());
    }

    void gatedBackboneAndUnevenStacks()
    {
        LADDER_REQUIRE_FIXTURES();
        // 3 encoder / 2 decoder layers, gated-gelu FFN (wi_0, wi_1), untied LM head.
        const auto loaded = loadT5(test::fixture("t5-synthetic-hf/t5-v1_1-gated-gelu-synth"));
        auto options = ladderOptions(2);
        options.init = "magnitude";
        auto method = createMethod(loaded.model, options);
        const auto names = trainableByName(*method);
        QVERIFY(names.count("side_encoder.block.2.layer.1.DenseReluDense.wi_0.weight"));
        QVERIFY(names.count("side_encoder.block.2.layer.1.DenseReluDense.wi_1.weight"));
        QVERIFY(!names.count("side_decoder.block.2.layer.0.layer_norm.weight"));
        method->train(true);
        const auto out = method->forward(randomBatch(2, 6, 3, 256));
        QVERIFY(std::isfinite(out.loss.item<double>()));
        out.loss.backward();
        for (const auto& [name, p] : names)
            QVERIFY2(p.grad().defined(), name.c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestLadderInit)
#include "test_ladder_init.moc"
