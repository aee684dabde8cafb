// Vision-and-language wiring (docs/VL.md): the visual projection (model/VisualEmbedding), the baselines'
// combined encoder input (peft/VisualT5), LST's side-only visual path (peft/Ladder: the backbone never sees a
// visual token, the visual projection learns through the side network alone), generation with images, and
// the parameter counts against the LST reference's own (tests/data/vl-params/reference.json, made by
// tools/reference/vl_params.py from the reference's modules).
#include <cstdint>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "LadderTestHelpers.h"
#include "TestSupport.h"
#include "model/Generation.h"
#include "peft/Ladder.h"
#include "peft/Method.h"
#include "util/Error.h"

using namespace ladder;
using ladder::test::lst::tinyConfig;

namespace {

constexpr std::int64_t kVisualDim = 12;
constexpr std::int64_t kTokens = 4;

// Two images' worth of visual tokens per row; row 1 has one image (the second masked), as an NLVR2 pair
// beside a VQA question in one batch.
VisualInput randomVisual(std::int64_t batch, std::uint64_t seed)
{
    at::manual_seed(static_cast<std::int64_t>(seed));
    VisualInput v;
    v.tokensPerImage = kTokens;
    v.features = at::randn({ batch, 2 * kTokens, kVisualDim });
    v.boxes = at::rand({ batch, 2 * kTokens, 4 }) * 0.5;
    v.imageOrder = at::arange(2 * kTokens, at::kLong).div(kTokens, "floor").unsqueeze(0).repeat({ batch, 1 });
    v.mask = at::ones({ batch, 2 * kTokens }, at::kLong);
    if (batch > 1)
        v.mask[1].narrow(0, kTokens, kTokens).fill_(0);
    return v;
}

Seq2SeqBatch visualBatch(std::uint64_t seed)
{
    at::manual_seed(7);
    auto b = ladder::test::lst::randomBatch(3, 6, 3, 64);
    b.visual = randomVisual(3, seed);
    return b;
}

MethodOptions vlOptions(const std::string& method)
{
    auto o = MethodOptions::defaults(method);
    if (method == "ladder") {
        o.init = "random";
        o.r = 2;
    }
    if (method == "lora")
        o.rank = 4;
    if (method == "adapter")
        o.hidden = 8;
    if (method == "prompt")
        o.prompts = 3;
    o.visualDim = kVisualDim;
    return o;
}

std::unique_ptr<Method> build(const std::string& method)
{
    at::manual_seed(1);
    T5ForConditionalGeneration t5(tinyConfig());
    t5->eval();
    auto m = createMethod(t5, vlOptions(method));
    m->train(false);
    return m;
}

bool gradReached(const Method& m, const std::string& prefix)
{
    for (const auto& [name, p] : m.namedTrainableParameters())
        if (name.rfind(prefix, 0) == 0 && p.grad().defined() && p.grad().abs().sum().item<double>() > 0)
            return true;
    return false;
}

nlohmann::json referenceCounts()
{
    std::ifstream in(ladder::test::testDataDir() + "/vl-params/reference.json");
    return nlohmann::json::parse(in);
}

} // namespace

class TestVlModel : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void textOnlyPositionBias()
    {
        at::manual_seed(3);
        T5ForConditionalGeneration t5(tinyConfig());
        auto& owner = *t5->encoder->blocks.front()->selfAttention->attention;
        const auto bias = ladder::textOnlyPositionBias(owner, 5, 9, c10::Device(c10::kCPU));
        QCOMPARE(bias.sizes(), (at::IntArrayRef { 1, 4, 9, 9 }));
        QVERIFY(
            at::equal(bias.narrow(2, 0, 5).narrow(3, 0, 5), owner.computeBias(5, 5, c10::Device(c10::kCPU))));
        QCOMPARE(bias.narrow(2, 5, 4).abs().sum().item<double>(), 0.0);
        QCOMPARE(bias.narrow(3, 5, 4).abs().sum().item<double>(), 0.0);
    }

    // LST: the backbone's encoder runs on the text alone (its outputs do not change with the images and have
    // the text's length), the loss depends on the images, and the visual projection's gradient arrives
    // through the side network while no backbone parameter gets one.
    void ladderSeesImagesOnlyInTheSide()
    {
        auto m = build("ladder");
        auto* lst = dynamic_cast<LadderMethod*>(m.get());
        QVERIFY(lst);
        const auto a = visualBatch(11);
        const auto b = visualBatch(12);
        c10::NoGradGuard noGrad;
        LadderBackboneOutputs recA, recB;
        auto embA = m->visualEmbedding()->forward(
            a.visual, [&](const at::Tensor& ids) { return m->backbone()->embed(ids); });
        auto embB = m->visualEmbedding()->forward(
            b.visual, [&](const at::Tensor& ids) { return m->backbone()->embed(ids); });
        const auto stateA
            = lst->model().encode(a.inputIds, a.attentionMask, nullptr, &recA, embA, a.visual.mask);
        const auto stateB
            = lst->model().encode(b.inputIds, b.attentionMask, nullptr, &recB, embB, b.visual.mask);
        QCOMPARE(recA.encoder.size(), recB.encoder.size());
        for (std::size_t i = 0; i < recA.encoder.size(); ++i) {
            QCOMPARE(recA.encoder[i].size(1), a.inputIds.size(1)); // text positions only
            QVERIFY(at::equal(recA.encoder[i], recB.encoder[i]));
        }
        QVERIFY(at::equal(stateA.backboneHidden, stateB.backboneHidden));
        QCOMPARE(stateA.backboneHidden.size(1), a.inputIds.size(1));
        // The side encoder covers text + visual positions.
        QCOMPARE(stateA.sideHidden.size(1), a.inputIds.size(1) + 2 * kTokens);
        QVERIFY(!at::allclose(stateA.sideHidden, stateB.sideHidden));
    }

    void ladderGradientsReachTheProjectionThroughTheSide()
    {
        auto m = build("ladder");
        m->train(true);
        const auto batch = visualBatch(21);
        auto loss = m->forward(batch).loss;
        loss.backward();
        QVERIFY(gradReached(*m, "visual_embedding.feat_embedding.0.weight"));
        QVERIFY(gradReached(*m, "side_encoder."));
        for (const auto& item : m->backbone()->named_parameters(true)) {
            QVERIFY2(!item.value().requires_grad(), item.key().c_str());
            QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }
        // The images change the loss.
        auto other = visualBatch(22);
        c10::NoGradGuard noGrad;
        QVERIFY(std::abs(m->forward(other).loss.item<double>() - loss.item<double>()) > 1e-7);
    }

    // The baselines feed text + visual embeddings through the backbone encoder (VL-T5): the images change
    // the output, a masked image does not, and the projection learns.
    void baselinesReadImagesThroughTheEncoder_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt" })
            QTest::newRow(m) << QString(m);
    }
    void baselinesReadImagesThroughTheEncoder()
    {
        QFETCH(QString, method);
        auto m = build(method.toStdString());
        const auto a = visualBatch(31);
        auto b = a;
        b.visual.features = a.visual.features.clone();
        b.visual.features[0] += 1.0; // row 0 sees other images
        auto c = a;
        c.visual.features = a.visual.features.clone();
        c.visual.features[1].narrow(0, kTokens, kTokens) += 5.0; // row 1's masked second image
        {
            c10::NoGradGuard noGrad;
            const auto la = m->forward(a).logits;
            const auto lb = m->forward(b).logits;
            const auto lc = m->forward(c).logits;
            QVERIFY(!at::allclose(la[0], lb[0]));
            QVERIFY(at::allclose(la[1], lb[1], 1e-6, 1e-6)); // rows are independent
            QVERIFY(at::allclose(la, lc, 1e-6, 1e-6)); // a masked image changes nothing
        }
        m->train(true);
        m->forward(a).loss.backward();
        QVERIFY(gradReached(*m, "visual_embedding.feat_embedding.0.weight"));
    }

    // Generation with images: greedy decoding through the stepper equals the argmax of the teacher-forced
    // logits at each step, for a baseline and for LST.
    void generationReadsTheImages_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "lora", "prompt", "ladder" })
            QTest::newRow(m) << QString(m);
    }
    void generationReadsTheImages()
    {
        QFETCH(QString, method);
        auto m = build(method.toStdString());
        auto batch = visualBatch(41);
        c10::NoGradGuard noGrad;
        GenerationOptions gen;
        gen.maxNewTokens = 4;
        gen.eosTokenId = 1;
        gen.padTokenId = 0;
        gen.decoderStartTokenId = 0;
        auto stepper = m->makeStepper();
        stepper->setVisual(batch.visual);
        const auto out = generate(*stepper, batch.inputIds, batch.attentionMask, gen).sequences;
        // Teacher-force the generated tokens and compare argmaxes.
        auto labels = out.narrow(1, 1, out.size(1) - 1).clone();
        Seq2SeqBatch forced { batch.inputIds, batch.attentionMask, labels, batch.visual };
        const auto logits = m->forward(forced).logits;
        const auto argmax = logits.argmax(-1);
        for (std::int64_t r = 0; r < labels.size(0); ++r)
            for (std::int64_t t = 0; t < labels.size(1); ++t) {
                QCOMPARE(argmax[r][t].item<std::int64_t>(), labels[r][t].item<std::int64_t>());
                if (labels[r][t].item<std::int64_t>() == 1)
                    break;
            }
        // A text stepper refuses images; a VL method without them errors.
        QVERIFY_THROWS_EXCEPTION(Error, m->forward(ladder::test::lst::randomBatch(2, 5, 3, 64)));
    }

    void textRunsRefuseImages()
    {
        at::manual_seed(1);
        T5ForConditionalGeneration t5(tinyConfig());
        auto o = MethodOptions::defaults("lora");
        auto m = createMethod(t5, o);
        QVERIFY_THROWS_EXCEPTION(Error, m->forward(visualBatch(1)));
        auto stepper = m->makeStepper();
        QVERIFY_THROWS_EXCEPTION(Error, stepper->setVisual(visualBatch(1).visual));
    }

    void optionsRefuseWhatVlDoesNotSupport()
    {
        T5ForConditionalGeneration t5(tinyConfig());
        auto o = vlOptions("ladder");
        o.ablation = "side-tuning";
        QVERIFY_THROWS_EXCEPTION(Error, createMethod(t5, o));
        o = vlOptions("ladder");
        o.cache = "ram";
        QVERIFY_THROWS_EXCEPTION(Error, o.validate(t5->config()));
        // visual_dim round-trips through JSON and is absent for text runs.
        QVERIFY(!MethodOptions::defaults("lora").toJson().contains("visual_dim"));
        QCOMPARE(MethodOptions::fromJson(vlOptions("lora").toJson()).visualDim, kVisualDim);
    }

    void saveAndLoadIncludeTheProjection()
    {
        auto m = build("ladder");
        const auto path = QDir::tempPath().toStdString() + "/vl-model-trainable.safetensors";
        m->saveTrainable(path);
        auto n = build("ladder");
        {
            c10::NoGradGuard noGrad;
            n->visualEmbedding()->feat_embedding->parameters().front().add_(1.0);
        }
        n->loadTrainable(path);
        QVERIFY(at::equal(n->visualEmbedding()->feat_embedding->parameters().front(),
            m->visualEmbedding()->feat_embedding->parameters().front()));
        std::remove(path.c_str());
    }

    // T5-base with CLIP RN101 features (2048): the trainable counts against the LST reference's own modules
    // (tests/data/vl-params/reference.json). Where LadderBench's method differs from the reference's, the
    // difference is the documented one (docs/VL.md, "Parameters").
    void countsAgainstTheReference()
    {
        const auto ref = referenceCounts();
        const auto& methods = ref.at("methods");
        const auto visual = ref.at("model").at("visual_embedding_parameters").get<std::int64_t>();
        QCOMPARE(visualEmbeddingParameterCount(2048, 768), visual);
        auto count = [](const std::string& method, const nlohmann::json& fields) {
            SkipParameterInit skip;
            T5ForConditionalGeneration t5(T5Config::preset("t5-base"));
            auto o = MethodOptions::defaults(method).withFields(fields, "test");
            o.visualDim = 2048;
            if (method == "ladder")
                o.init = "random";
            auto m = createMethod(t5, o);
            return std::make_pair(m->trainableParameterCount(), m->totalParameterCount());
        };
        // LST r 4, every layer: the same side network and projection as the reference.
        QCOMPARE(
            count("ladder", { { "r", 4 } }).first, methods.at("lst").at("trainable").get<std::int64_t>());
        QCOMPARE(count("ladder", { { "r", 4 } }).second,
            methods.at("lst").at("vocab_32128").at("total").get<std::int64_t>());
        // LoRA rank 150 on q and v of every attention, no biases.
        QCOMPARE(count("lora", { { "rank", 150 }, { "targets", { "q", "v" } }, { "bitfit", false } }).first,
            methods.at("lora").at("trainable").get<std::int64_t>());
        // Full fine-tuning: T5-base (vocabulary 32,128) + the projection.
        QCOMPARE(count("full", nlohmann::json::object()).first,
            methods.at("full_finetuning").at("vocab_32128").at("trainable").get<std::int64_t>());
        // BitFit: the reference also adds biases to the projection's two norms (2 x 768) and its LM-head bias
        // covers VL-T5's 32,200 tokens (72 more than T5's 32,128).
        QCOMPARE(count("bitfit", nlohmann::json::object()).first,
            methods.at("bitfit").at("trainable").get<std::int64_t>() - 2 * 768 - 72);
        // Adapters, hidden 192: the reference adds one after cross-attention too (12 more, 295,872 each) and
        // trains no layer norm; LadderBench trains the 62 norms of the blocks and stacks (47,616).
        QCOMPARE(count("adapter", { { "hidden", 192 } }).first,
            methods.at("adapter").at("trainable").get<std::int64_t>() - 12 * (768 * 192 * 2 + 192 + 768)
                + (12 * 2 + 12 * 3 + 2) * 768);
        // Prompt tuning, 40 prompts: the reference reparameterises them through an MLP (1,261,088);
        // LadderBench trains the 40 x 768 vectors themselves (Lester et al.).
        QCOMPARE(count("prompt", { { "prompts", 40 } }).first,
            methods.at("prompt_tuning").at("trainable").get<std::int64_t>()
                - methods.at("prompt_tuning").at("breakdown").at("prompt").get<std::int64_t>() + 40 * 768);
    }
};

LADDER_TEST_GUILESS_MAIN(TestVlModel)
#include "test_vl_model.moc"
