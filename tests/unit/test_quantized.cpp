// Frozen backbone storage (issue 18): QuantizedWeight's matmul, gradient, kernels, chunks and embedding
// against fp32 references; quantised T5 backbones (logits, parameter counts, every method training over an
// int4 base, dense readers refused); quantised checkpoints round-trip; the activation cache's key.
//
// Tolerances (relative, Frobenius). "Exact" comparisons (against the dequantised weight, fp32) are 1e-6:
// the same arithmetic, only a GEMM's summation order may differ. Against the original fp32 weight the bound
// is the quantisation step's. One matmul with N(0, 1) weights (measured: bf16 0.17%, int8 0.72%, int4 7.9% /
// 9.1% / 10.0% at groups 32 / 64 / 128): bf16 (8-bit mantissa) 0.4%, int8 (127 steps over each row's
// absmax) 1.5%, int4 (15 steps per group) 12%. T5 logits, after every layer's error (measured on the tiny
// random T5s: bf16 0.24-0.28%, int8 0.8-0.9%, int4 11-14%; the fixtures, whose o/wo are scaled by 4: bf16
// 0.5-1.1%, int8 2.0-3.1%): bf16 2%, int8 5%, int4 20%.
#include <cmath>
#include <set>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>

#include "TestSupport.h"
#include "model/QuantizedWeight.h"
#include "model/Safetensors.h"
#include "model/T5Checkpoint.h"
#include "model/T5Quantization.h"
#include "peft/Method.h"
#include "train/Autocast.h"
#include "train/LadderActivationCache.h"
#include "util/Error.h"

using namespace ladder;

namespace {

// Bound on ||y_q - y|| / ||y|| against the original fp32 weight, one matmul (see the file comment).
double storageTolerance(const std::string& dtype)
{
    if (dtype == "bf16")
        return 4e-3;
    if (dtype == "int8")
        return 1.5e-2;
    return 0.12; // int4, groups of 32..128
}

// The same for a whole T5's logits.
double logitTolerance(const std::string& dtype)
{
    if (dtype == "bf16")
        return 2e-2;
    if (dtype == "int8")
        return 5e-2;
    return 0.2;
}

// A tiny T5 whose widths every int4 group size up to 64 divides: d_model 64, heads 4 x d_kv 16, d_ff 128,
// vocabulary 128 (a multiple of 16: the CPU int4 kernel's condition).
T5Config tinyConfig(bool gated)
{
    T5Config c;
    c.vocabSize = 128;
    c.dModel = 64;
    c.dKv = 16;
    c.numHeads = 4;
    c.dFf = 128;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 16;
    c.dropoutRate = 0.0;
    if (gated) {
        c.feedForwardProj = "gated-gelu";
        c.tieWordEmbeddings = false;
    }
    return c;
}

T5ForConditionalGeneration tinyBackbone(bool gated = false, std::uint64_t seed = 7)
{
    at::manual_seed(seed);
    T5ForConditionalGeneration m(tinyConfig(gated));
    c10::NoGradGuard g;
    for (auto& item : m->named_parameters(true)) {
        if (item.key().find("layer_norm") != std::string::npos)
            item.value().normal_(1.0, 0.1);
        else if (item.key() == "shared.weight" || item.key() == "lm_head.weight")
            item.value().normal_(0.0, 1.0); // HF's embedding scale: logits of a useful size
    }
    for (auto& p : m->parameters())
        p.set_requires_grad(false);
    m->eval();
    return m;
}

Seq2SeqBatch tinyBatch(std::int64_t vocab)
{
    at::manual_seed(11);
    Seq2SeqBatch b;
    b.inputIds = at::randint(3, vocab, { 3, 7 }, at::kLong);
    b.attentionMask = at::ones_like(b.inputIds);
    b.attentionMask.select(0, 2).narrow(0, 5, 2).zero_();
    b.labels = at::randint(3, vocab, { 3, 4 }, at::kLong);
    b.labels.select(0, 1).narrow(0, 3, 1).fill_(-100);
    return b;
}

at::Tensor logitsOf(T5ForConditionalGeneration& model, const Seq2SeqBatch& b)
{
    c10::NoGradGuard noGrad;
    return model->forward(b.inputIds, b.attentionMask, b.labels).logits;
}

std::set<std::string> parameterNames(const torch::nn::Module& m)
{
    std::set<std::string> out;
    for (const auto& item : m.named_parameters(true))
        out.insert(item.key());
    return out;
}

} // namespace

class TestQuantized : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void storageDtypes_data()
    {
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("group");
        QTest::newRow("bf16") << "bf16" << 0;
        QTest::newRow("int8") << "int8" << 0;
        QTest::newRow("int4 g32") << "int4" << 32;
        QTest::newRow("int4 g64") << "int4" << 64;
        QTest::newRow("int4 g128") << "int4" << 128;
    }

    // y = x W^T against the dequantised weight (exact) and the original weight (the quantisation step),
    // and grad_x against grad_y W.
    void matmulAndGradientMatchReferences_data() { storageDtypes_data(); }
    void matmulAndGradientMatchReferences()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        at::manual_seed(1);
        const auto w = at::randn({ 96, 256 });
        const auto q = QuantizedWeight::quantize(w, parseQuantDtype(dtype.toStdString()), group);
        QCOMPARE(q.rows(), std::int64_t { 96 });
        QCOMPARE(q.cols(), std::int64_t { 256 });
        QCOMPARE(q.bytes(), QuantizedWeight::storageBytes(dtype.toStdString(), 96, 256, group));
        const auto deq = q.dequantize(at::kFloat);
        auto x = at::randn({ 3, 5, 256 }).requires_grad_(true);
        const auto y = q.matmul(x);
        QCOMPARE(y.sizes().vec(), (std::vector<std::int64_t> { 3, 5, 96 }));
        QCOMPARE(y.scalar_type(), at::kFloat);
        const auto exact = at::matmul(x.detach(), deq.t());
        const auto vsDequantised = test::relativeError(y.detach(), exact);
        const auto vsOriginal = test::relativeError(y.detach(), at::matmul(x.detach(), w.t()));
        const auto weightError = test::relativeError(deq, w);
        qInfo("%s: matmul vs dequantised %.2e, vs fp32 weight %.4f (weight %.4f)", qPrintable(dtype),
            vsDequantised, vsOriginal, weightError);
        QVERIFY(vsDequantised < 1e-6);
        QVERIFY2(vsOriginal < storageTolerance(dtype.toStdString()), qPrintable(QString::number(vsOriginal)));

        const auto gradY = at::randn({ 3, 5, 96 });
        y.backward(gradY);
        QVERIFY(x.grad().defined());
        QCOMPARE(x.grad().scalar_type(), at::kFloat);
        const auto gradError = test::relativeError(x.grad(), at::matmul(gradY, deq));
        QVERIFY2(gradError < 1e-6, qPrintable(QString::number(gradError)));
    }

    // ATen's kernels (bf16 input, few rows) against the dequantise path; Auto picks them only there.
    void kernelPathEqualsDequantizePath_data()
    {
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("group");
        QTest::newRow("int8") << "int8" << 0;
        QTest::newRow("int4 g32") << "int4" << 32;
        QTest::newRow("int4 g64") << "int4" << 64;
        QTest::newRow("int4 g128") << "int4" << 128;
    }
    void kernelPathEqualsDequantizePath()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        at::manual_seed(2);
        const auto w = at::randn({ 128, 256 });
        const auto q = QuantizedWeight::quantize(w, parseQuantDtype(dtype.toStdString()), group);
        const auto reference
            = [&](const at::Tensor& x) { return at::matmul(x.to(at::kFloat), q.dequantize(at::kFloat).t()); };

        const auto xb = at::randn({ 4, 256 }).to(at::kBFloat16);
        QVERIFY(q.kernelApplies(xb));
        QVERIFY(q.autoPath(xb) == QuantMatmulPath::Kernel);
        const auto kernel = q.matmul(xb, QuantMatmulPath::Kernel);
        const auto dequant = q.matmul(xb, QuantMatmulPath::Dequantize);
        QCOMPARE(kernel.scalar_type(), at::kBFloat16);
        QCOMPARE(dequant.scalar_type(), at::kBFloat16);
        const auto ref = reference(xb);
        const auto kernelError = test::relativeError(kernel.to(at::kFloat), ref);
        const auto dequantError = test::relativeError(dequant.to(at::kFloat), ref);
        qInfo("%s bf16, 4 rows: kernel vs fp32 reference %.2e, dequantise vs fp32 reference %.2e",
            qPrintable(dtype), kernelError, dequantError);
        QVERIFY(kernelError < 1e-2); // bf16 output rounding
        QVERIFY(dequantError < 1e-2);

        // fp32 input: the kernels exist but are slow, so Auto dequantises; forced, they agree closely.
        const auto xf = at::randn({ 4, 256 });
        QVERIFY(q.autoPath(xf) == QuantMatmulPath::Dequantize);
        const auto kernelF = q.matmul(xf, QuantMatmulPath::Kernel);
        QVERIFY(test::relativeError(kernelF, reference(xf)) < 1e-5);
        // Many rows in bf16: dequantise + mm wins.
        QVERIFY(q.autoPath(at::zeros({ 256, 256 }, at::kBFloat16)) == QuantMatmulPath::Dequantize);

        // bf16 autocast turns an fp32 input into bf16 compute, as at::linear would.
        {
            AutocastGuard amp(true, c10::DeviceType::CPU);
            QVERIFY(q.autoPath(xf) == QuantMatmulPath::Kernel);
            const auto y = q.matmul(xf);
            QCOMPARE(y.scalar_type(), at::kBFloat16);
        }
    }

    // No kernel for bf16 storage; a kernel forced where none applies is a clear error.
    void kernelRefusedWhereNoneApplies()
    {
        const auto w = at::randn({ 40, 64 }); // 40 rows: not a multiple of 16
        const auto q4 = QuantizedWeight::quantize(w, QuantDtype::Int4, 32);
        const auto x = at::randn({ 2, 64 }).to(at::kBFloat16);
        QVERIFY(!q4.kernelApplies(x));
        QVERIFY(q4.autoPath(x) == QuantMatmulPath::Dequantize);
        QVERIFY_THROWS_EXCEPTION(Error, q4.matmul(x, QuantMatmulPath::Kernel));
        const auto qb = QuantizedWeight::quantize(w, QuantDtype::Bf16);
        QVERIFY(!qb.kernelApplies(x));
        QVERIFY(test::relativeError(
                    qb.matmul(x).to(at::kFloat), at::matmul(x.to(at::kFloat), qb.dequantize(at::kFloat).t()))
            < 1e-2);
        QVERIFY_THROWS_EXCEPTION(Error, QuantizedWeight::quantize(w, QuantDtype::Int4, 48));
        QVERIFY_THROWS_EXCEPTION(
            Error, QuantizedWeight::quantize(at::randn({ 4, 48 }), QuantDtype::Int4, 32));
        QVERIFY_THROWS_EXCEPTION(Error, q4.matmul(at::randn({ 2, 65 })));
    }

    // The LM head's chunks: a matrix dequantised in chunks of rows gives the unchunked products and
    // gradients; the int4 kernel's packing made in chunks of 64 rows equals the packing made at once.
    void chunkedEqualsUnchunked_data() { storageDtypes_data(); }
    void chunkedEqualsUnchunked()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        at::manual_seed(3);
        const auto w = at::randn({ 320, 128 });
        const auto whole
            = QuantizedWeight::quantize(w, parseQuantDtype(dtype.toStdString()), group == 128 ? 64 : group);
        auto chunked = whole;
        chunked.setChunkElements(7 * 128 + 5); // chunks of 7 rows, the last of 5
        QCOMPARE(whole.chunkRows(), std::int64_t { 320 });
        QCOMPARE(chunked.chunkRows(), std::int64_t { 7 });
        auto x1 = at::randn({ 2, 9, 128 }).requires_grad_(true);
        auto x2 = x1.detach().clone().requires_grad_(true);
        const auto y1 = whole.matmul(x1);
        const auto y2 = chunked.matmul(x2);
        QVERIFY(test::relativeError(y2.detach(), y1.detach()) < 1e-6);
        const auto g = at::randn(y1.sizes());
        y1.backward(g);
        y2.backward(g);
        QVERIFY(test::relativeError(x2.grad(), x1.grad()) < 1e-6);
        // The output is no view (T5 adds BitFit biases into it in place), chunked or not, kernel or not.
        auto x3 = at::randn({ 2, 9, 128 }).requires_grad_(true);
        auto bias = at::zeros({ 320 }).requires_grad_(true);
        for (const auto* q : std::vector<const QuantizedWeight*> { &whole, &chunked }) {
            auto y = q->matmul(x3);
            y.add_(bias);
            y.sum().backward();
        }
        QVERIFY(x3.grad().defined() && bias.grad().defined());
        if (dtype != "bf16") {
            auto y = whole.matmul(x3.to(at::kBFloat16), QuantMatmulPath::Kernel);
            y.add_(bias.to(at::kBFloat16));
            y.sum().backward();
        }
        // bf16 compute in chunks too.
        const auto xb = at::randn({ 100, 128 }).to(at::kBFloat16);
        QVERIFY(test::relativeError(chunked.matmul(xb, QuantMatmulPath::Dequantize).to(at::kFloat),
                    whole.matmul(xb, QuantMatmulPath::Dequantize).to(at::kFloat))
            < 1e-2);
        if (dtype == "int4") {
            auto smallChunks = QuantizedWeight::quantize(w, QuantDtype::Int4, group == 128 ? 64 : group);
            smallChunks.setChunkElements(1); // kernel packing in chunks of 64 rows
            auto oneChunk = QuantizedWeight::quantize(w, QuantDtype::Int4, group == 128 ? 64 : group);
            const auto xk = at::randn({ 3, 128 }).to(at::kBFloat16);
            QVERIFY(at::equal(smallChunks.matmul(xk, QuantMatmulPath::Kernel),
                oneChunk.matmul(xk, QuantMatmulPath::Kernel)));
        }
    }

    // Rows gathered then dequantised equal the dequantised matrix's rows, bit for bit.
    void embeddingLookup_data() { storageDtypes_data(); }
    void embeddingLookup()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        at::manual_seed(4);
        const auto w = at::randn({ 50, 128 });
        const auto q
            = QuantizedWeight::quantize(w, parseQuantDtype(dtype.toStdString()), group == 128 ? 64 : group);
        const auto ids = at::tensor({ 3, 0, 49, 3, 17, 8 }, at::kLong).view({ 2, 3 });
        for (auto dt : { at::kFloat, at::kBFloat16 }) {
            const auto rows = q.embedding(ids, dt);
            QCOMPARE(rows.sizes().vec(), (std::vector<std::int64_t> { 2, 3, 128 }));
            QVERIFY(at::equal(rows, q.dequantize(dt).index_select(0, ids.flatten()).view({ 2, 3, 128 })));
        }
        QVERIFY(at::equal(q.dequantize(at::kFloat, 10, 20), q.dequantize(at::kFloat).narrow(0, 10, 10)));
    }

    // Loading quantises from any checkpoint dtype: the same values in bf16, fp16 or fp32 give the same parts.
    void quantizeFromAnyDtype_data() { storageDtypes_data(); }
    void quantizeFromAnyDtype()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        at::manual_seed(5);
        const auto w = at::randn({ 32, 128 }).to(at::kHalf).to(at::kFloat); // representable in fp16 exactly
        const auto storage = parseQuantDtype(dtype.toStdString());
        const auto g = group == 128 ? 64 : group;
        const auto reference = QuantizedWeight::quantize(w, storage, g).parts();
        for (auto source : { at::kHalf, at::kDouble }) {
            const auto parts = QuantizedWeight::quantize(w.to(source), storage, g).parts();
            QCOMPARE(parts.size(), reference.size());
            for (std::size_t i = 0; i < parts.size(); ++i)
                QVERIFY(at::equal(parts[i].second, reference[i].second));
        }
    }

    // A quantised T5: logits within the storage's tolerance of fp32, names and parameter counts unchanged,
    // the placeholders empty, the memory smaller.
    void quantizedT5LogitsAndCounts_data()
    {
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("group");
        QTest::addColumn<bool>("gated");
        for (bool gated : { false, true }) {
            const char* arch = gated ? "v1.1" : "v1.0";
            QTest::addRow("%s bf16", arch) << "bf16" << 64 << gated;
            QTest::addRow("%s int8", arch) << "int8" << 64 << gated;
            QTest::addRow("%s int4 g32", arch) << "int4" << 32 << gated;
            QTest::addRow("%s int4 g64", arch) << "int4" << 64 << gated;
        }
    }
    void quantizedT5LogitsAndCounts()
    {
        QFETCH(QString, dtype);
        QFETCH(int, group);
        QFETCH(bool, gated);
        auto model = tinyBackbone(gated);
        const auto batch = tinyBatch(model->config().vocabSize);
        const auto reference = logitsOf(model, batch);
        const auto count = countParameters(*model);
        const auto names = parameterNames(*model);
        const auto denseBytes = backboneWeightBytes(*model);
        QCOMPARE(count, model->config().parameterCount());

        const auto stored = quantizeFrozenBackbone(*model, dtype.toStdString(), group);
        // 2 x (4 attention + FFN) encoder + 2 x (8 + FFN) decoder projections, shared (+ lm_head)
        const std::int64_t ffn = gated ? 3 : 2;
        QCOMPARE(stored, 2 * (4 + ffn) + 2 * (8 + ffn) + (gated ? 2 : 1));
        QCOMPARE(countParameters(*model), count);
        QCOMPARE(parameterNames(*model), names);
        QCOMPARE(model->encoder->blocks[0]->selfAttention->attention->q->weight.numel(), std::int64_t { 0 });
        QCOMPARE(model->shared->weight.numel(), std::int64_t { 0 });
        QCOMPARE(model->encoder->final_layer_norm->weight.numel(), std::int64_t { 64 }); // stays fp32
        QCOMPARE(model->weightStorage(), weightStorageLabel(dtype.toStdString(), group));
        const auto expectedBytes = backboneStorageBytes(model->config(), dtype.toStdString(), group);
        QCOMPARE(backboneWeightBytes(*model), expectedBytes.totalBytes());
        QCOMPARE(backboneStorageBytes(model->config(), "fp32", group).totalBytes(), denseBytes);
        QVERIFY(backboneWeightBytes(*model) < denseBytes / (dtype == "bf16" ? 1.9 : 3.0));

        const auto logits = logitsOf(model, batch);
        QCOMPARE(logits.sizes(), reference.sizes());
        const auto error = test::relativeError(logits, reference);
        qInfo("tiny T5 %s: logits' relative error %.4f, weights %lld -> %lld bytes", QTest::currentDataTag(),
            error, static_cast<long long>(denseBytes), static_cast<long long>(backboneWeightBytes(*model)));
        QVERIFY2(error < logitTolerance(dtype.toStdString()), qPrintable(QString::number(error)));

        // bf16 compute over the quantised backbone (few rows: the kernels' path).
        model->to(at::kBFloat16);
        QCOMPARE(model->shared->weight.scalar_type(), at::kBFloat16);
        const auto bfLogits = logitsOf(model, batch);
        QCOMPARE(bfLogits.scalar_type(), at::kBFloat16);
        QVERIFY(test::relativeError(bfLogits.to(at::kFloat), logits) < 5e-2);
        // int4's kernels made ATen's packing (as large as the stored values) and scaleAndZeros; they are
        // freed on request and made again when needed, with the same logits.
        const auto kept = releaseKernelForms(*model);
        QCOMPARE(kept > 0, dtype == "int4");
        QCOMPARE(releaseKernelForms(*model), std::int64_t { 0 });
        QVERIFY(at::equal(logitsOf(model, batch), bfLogits));
    }

    // The fixtures' T5 checkpoints (their widths, 24 and 48, take no int4 group: bf16 and int8 only).
    void fixtureCheckpoints_data()
    {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<QString>("dtype");
        for (const char* f :
            { "t5-synthetic-hf/t5-v1_0-relu-synth", "t5-synthetic-hf/t5-v1_1-gated-gelu-synth" })
            for (const char* d : { "bf16", "int8" })
                QTest::addRow("%s %s", f, d) << f << d;
    }
    void fixtureCheckpoints()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, folder);
        QFETCH(QString, dtype);
        auto loaded = loadT5(test::fixture(folder.toStdString()));
        auto& model = loaded.model;
        for (auto& p : model->parameters())
            p.set_requires_grad(false);
        const auto batch = tinyBatch(model->config().vocabSize);
        const auto reference = logitsOf(model, batch);
        const auto count = countParameters(*model);
        quantizeFrozenBackbone(*model, dtype.toStdString(), 64);
        QCOMPARE(countParameters(*model), count);
        const auto error = test::relativeError(logitsOf(model, batch), reference);
        qInfo("%s %s: logits' relative error %.4f", qPrintable(folder), qPrintable(dtype), error);
        QVERIFY2(error < logitTolerance(dtype.toStdString()), qPrintable(QString::number(error)));
        auto options = MethodOptions::defaults("qlora");
        QVERIFY_THROWS_EXCEPTION(Error, options.validate(model->config())); // int4 g64 does not divide 24
    }

    // Every method but full trains over an int4 base: finite loss, gradients on the trainable parameters
    // only, parameter counts as over fp32, and one AdamW step lowers the loss.
    void methodsTrainOverInt4_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "lora", "qlora", "adapter", "bitfit", "prompt", "ladder" })
            QTest::newRow(m) << m;
    }
    void methodsTrainOverInt4()
    {
        QFETCH(QString, method);
        auto options = MethodOptions::defaults(method.toStdString());
        options.hidden = 8;
        options.rank = 4;
        options.alpha = 8;
        options.prompts = 4;
        options.init = "magnitude"; // LST: the pruning reads the fp32 weights before they are quantised
        options.backboneDtype = "int4";
        options.quantGroupSize = 32;
        auto fp32Options = options;
        if (fp32Options.method == "qlora")
            fp32Options.method = "lora";
        fp32Options.backboneDtype = "fp32";
        fp32Options.quantGroupSize = 64;

        at::manual_seed(21);
        auto fp32 = createMethod(tinyBackbone(), fp32Options);
        at::manual_seed(21);
        auto backbone = tinyBackbone();
        auto m = createMethod(backbone, options);
        QCOMPARE(m->backbone()->weightStorage(), std::string("int4 g32"));
        QCOMPARE(m->totalParameterCount(), fp32->totalParameterCount());
        QCOMPARE(m->backboneParameterCount(), fp32->backboneParameterCount());
        QCOMPARE(m->trainableParameterCount(), fp32->trainableParameterCount());
        QCOMPARE(m->t5()->lmHeadQuantized().dtype(), QuantDtype::Int4);

        const auto batch = tinyBatch(128);
        m->train(true);
        const auto out = m->forward(batch);
        QVERIFY(std::isfinite(out.loss.item<double>()));
        out.loss.backward();
        std::set<const void*> trainable;
        for (const auto& [name, p] : m->namedTrainableParameters()) {
            trainable.insert(p.unsafeGetTensorImpl());
            QVERIFY2(p.grad().defined(), name.c_str());
            QVERIFY2(at::isfinite(p.grad()).all().item<bool>(), name.c_str());
        }
        QVERIFY(!trainable.empty());
        for (const auto& item : m->backbone()->named_parameters(true))
            if (!trainable.count(item.value().unsafeGetTensorImpl()))
                QVERIFY2(!item.value().grad().defined(), item.key().c_str());

        torch::optim::AdamW opt(m->trainableParameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
        const auto before = out.loss.item<double>();
        double after = before;
        for (int step = 0; step < 5; ++step) {
            opt.step();
            opt.zero_grad();
            auto o = m->forward(batch);
            after = o.loss.item<double>();
            o.loss.backward();
        }
        qInfo("%s over int4: loss %.4f -> %.4f", qPrintable(method), before, after);
        QVERIFY(after < before);
    }

    // What reads a quantised matrix as a dense tensor refuses with a message, or dequantises.
    void denseReadersRefuseOrDequantize()
    {
        auto model = tinyBackbone();
        auto q = model->encoder->blocks[0]->selfAttention->attention->q;
        q->addLora(4, 8, 0.0);
        const auto dense = q->weight.detach().clone();
        quantizeFrozenBackbone(*model, "int8", 64);
        QVERIFY(q->quantized());
        QVERIFY(test::relativeError(q->denseWeight(), dense) < storageTolerance("int8"));
        QVERIFY_THROWS_EXCEPTION(Error, q->mergeLora());
        QVERIFY_THROWS_EXCEPTION(Error, model->lmHeadWeight());
        // LST's pruning needs the dense weights: built on an already quantised backbone it says so.
        auto options = MethodOptions::defaults("ladder");
        options.init = "magnitude";
        try {
            createMethod(model, options);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("int8") != std::string::npos, e.what());
        }
        auto full = MethodOptions::defaults("full");
        full.backboneDtype = "int8";
        QVERIFY_THROWS_EXCEPTION(Error, createMethod(tinyBackbone(), full));
    }

    // saveQuantizedBackbone / loadQuantizedBackbone: the stored tensors come back bit for bit, the logits
    // are identical.
    void quantizedCheckpointRoundTrips_data()
    {
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<bool>("gated");
        for (bool gated : { false, true })
            for (const char* d : { "bf16", "int8", "int4" })
                QTest::addRow("%s %s", gated ? "v1.1" : "v1.0", d) << d << gated;
    }
    void quantizedCheckpointRoundTrips()
    {
        QFETCH(QString, dtype);
        QFETCH(bool, gated);
        auto model = tinyBackbone(gated, 7);
        quantizeFrozenBackbone(*model, dtype.toStdString(), 32);
        const auto path = test::makeTempDir() + "/backbone.safetensors";
        saveQuantizedBackbone(*model, path);

        auto other = tinyBackbone(gated, 99); // other values everywhere, dense
        loadQuantizedBackbone(*other, path);
        QCOMPARE(other->weightStorage(), model->weightStorage());
        const auto a = model->namedWeights();
        const auto b = other->namedWeights();
        QCOMPARE(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            QCOMPARE(a[i].first, b[i].first);
            QCOMPARE(a[i].second.scalar_type(), b[i].second.scalar_type());
            QVERIFY2(at::equal(a[i].second, b[i].second), a[i].first.c_str());
        }
        QCOMPARE(countParameters(*other), countParameters(*model));
        const auto batch = tinyBatch(128);
        QVERIFY(at::equal(logitsOf(other, batch), logitsOf(model, batch)));

        // A file for another config, or with a missing part, is refused naming it.
        auto wrong = tinyBackbone(!gated, 7);
        QVERIFY_THROWS_EXCEPTION(Error, loadQuantizedBackbone(*wrong, path));
        auto tensors = readSafetensors(path);
        tensors.erase("encoder.block.0.layer.0.SelfAttention.q.weight.qdata");
        const auto broken = test::makeTempDir() + "/broken.safetensors";
        writeSafetensors(broken, tensors, readSafetensorsMetadata(path));
        try {
            loadQuantizedBackbone(*tinyBackbone(gated, 99), broken);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("SelfAttention.q.weight") != std::string::npos, e.what());
        }
    }

    // ladder info --backbone-dtype prints the stored weight memory; ladder bench quant reports the logits'
    // errors per storage (int4 n/a where the group does not divide the fixtures' widths of 24 and 48).
    void cliInfoAndBenchQuant()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto info = test::runCli({ "info", "--shape", "t5-base", "--backbone-dtype", "int4",
            "--quant-group-size", "128", "--json" });
        QVERIFY2(info.exitCode == 0, info.err.c_str());
        const auto j = nlohmann::json::parse(info.out);
        const auto expected = backboneStorageBytes(T5Config::preset("t5-base"), "int4", 128);
        QCOMPARE(j.at("backbone_storage_bytes").get<std::int64_t>(), expected.totalBytes());
        QCOMPARE(j.at("storage_bytes").at("fp32").get<std::int64_t>(), std::int64_t { 222903552 } * 4);
        QVERIFY(
            j.at("storage_bytes").at("int4 g128").get<std::int64_t>() < std::int64_t { 222903552 } * 4 / 7);

        const auto bench = test::runCli({ "bench", "quant", "--fixtures",
            QString::fromStdString(test::fixturesDir()), "--no-demo", "--rows", "1", "--json" });
        QVERIFY2(bench.exitCode == 0, bench.err.c_str());
        const auto b = nlohmann::json::parse(bench.out);
        QCOMPARE(b.at("models").size(), std::size_t { 2 });
        for (const auto& model : b.at("models")) {
            for (const auto& row : model.at("rows")) {
                const auto storage = row.at("storage").get<std::string>();
                if (storage.rfind("int4", 0) == 0) {
                    QVERIFY(row.at("max_rel").is_null());
                    QVERIFY(!row.at("skipped").is_null());
                } else {
                    QVERIFY2(row.at("max_rel").get<double>() < logitTolerance(storage), storage.c_str());
                    QVERIFY(row.at("weight_bytes").get<std::int64_t>()
                        < model.at("fp32_weight_bytes").get<std::int64_t>());
                }
            }
        }
        QCOMPARE(b.at("matmul_768x3072").size(), std::size_t { 4 }); // int8 and int4 g64, bf16 and fp32 input
    }

    // The activation cache's key names a quantised backbone's storage; an fp32 key has no such field.
    void cacheKeyNamesTheStorage()
    {
        LadderCacheLayout layout;
        layout.dModel = 64;
        layout.encoderLayers = 2;
        layout.decoderLayers = 2;
        layout.encoderStored = { 0, 1 };
        layout.decoderStored = { 0, 1 };
        const std::vector<std::vector<std::int64_t>> sources { { 5, 6, 7 } }, targets { { 8, 1 } };
        auto model = tinyBackbone();
        const auto fp32 = LadderCacheKey::make(*model, layout, "cpu-fp32", "fp32", sources, targets);
        QVERIFY(fp32.description.find("backbone_storage") == std::string::npos);
        quantizeFrozenBackbone(*model, "int4", 64);
        const auto int4 = LadderCacheKey::make(*model, layout, "cpu-fp32", "fp32", sources, targets);
        QVERIFY(int4.description.find("\"backbone_storage\":\"int4 g64\"") != std::string::npos);
        QVERIFY(int4.hash != fp32.hash);
        auto model32 = tinyBackbone();
        quantizeFrozenBackbone(*model32, "int4", 32);
        QVERIFY(
            LadderCacheKey::make(*model32, layout, "cpu-fp32", "fp32", sources, targets).hash != int4.hash);
    }
};

LADDER_TEST_GUILESS_MAIN(TestQuantized)
#include "test_quantized.moc"
