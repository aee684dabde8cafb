// The analytic memory estimator (core/train/MemoryEstimate.h): its static terms against the methods'
// real parameter counts, its peak against the tracking allocator's measurement of real AdamW steps on a
// tiny T5, its breakdown's internal sums, and its errors for bad input.
#include <cmath>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "peft/Method.h"
#include "train/MemoryBench.h"
#include "train/MemoryEstimate.h"
#include "train/MemoryMeter.h"
#include "util/Error.h"

using namespace ladder;

namespace {

T5Config tinyConfig()
{
    T5Config c;
    c.vocabSize = 512;
    c.dModel = 64;
    c.dKv = 16;
    c.numHeads = 4;
    c.dFf = 256;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 32;
    c.dropoutRate = 0.1;
    return c;
}

MethodOptions optionsFor(const std::string& method)
{
    auto o = MethodOptions::defaults(method);
    o.r = 4;
    o.hidden = 16;
    o.rank = 8;
    o.prompts = 10;
    return o;
}

MemoryEstimateInput inputFor(const T5Config& c, const MethodOptions& o, std::int64_t batch = 8)
{
    MemoryEstimateInput in;
    in.config = c;
    in.method = o;
    in.batch = batch;
    in.srcLen = 64;
    in.tgtLen = 8;
    return in;
}

template <typename Fn> QString errorOf(Fn fn)
{
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

} // namespace

class TestMemoryEstimate : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    void staticTermsEqualParameterCounts_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("variant");
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
            QTest::newRow(m) << m << "";
        QTest::newRow("full freeze 3") << "full"
                                       << "freeze";
        QTest::newRow("adapter freeze 3") << "adapter"
                                          << "freeze";
        QTest::newRow("lora all targets, no bitfit") << "lora"
                                                     << "targets";
        QTest::newRow("ladder keep 1") << "ladder"
                                       << "keep";
        QTest::newRow("ladder cross-attention") << "ladder"
                                                << "cross-attention";
        QTest::newRow("ladder adapter-blocks") << "ladder"
                                               << "adapter-blocks";
        QTest::newRow("ladder side-tuning") << "ladder"
                                            << "side-tuning";
    }

    void staticTermsEqualParameterCounts()
    {
        QFETCH(QString, method);
        QFETCH(QString, variant);
        auto o = optionsFor(method.toStdString());
        if (variant == "freeze")
            o.freeze = 3;
        else if (variant == "targets") {
            o.targets = { "q", "k", "v", "o", "wi", "wo" };
            o.bitfit = false;
        } else if (variant == "keep")
            o.keep = { 1 };
        else if (!variant.isEmpty())
            o.ablation = variant.toStdString();
        for (bool gated : { false, true }) {
            auto c = tinyConfig();
            if (gated)
                c.feedForwardProj = "gated-gelu";
            c.tieWordEmbeddings = !gated;
            std::unique_ptr<Method> m;
            {
                SkipParameterInit skip;
                m = createMethod(T5ForConditionalGeneration(c), o);
            }
            const auto total = m->totalParameterCount();
            const auto trainable = m->trainableParameterCount();
            auto in = inputFor(c, o);
            const auto e = estimateTrainingMemory(in);
            QCOMPARE(e.totalParams, total);
            QCOMPARE(e.trainableParams, trainable);
            QCOMPARE(e.trainableWeights, std::uint64_t(trainable) * 4);
            QCOMPARE(e.frozenWeights, std::uint64_t(total - trainable) * 4);
            QCOMPARE(e.gradients, std::uint64_t(trainable) * 4);
            QCOMPARE(e.optimizerState, std::uint64_t(trainable) * 8); // exp_avg + exp_avg_sq
            QCOMPARE(e.batchInputs, std::uint64_t(8 * (64 + 64 + 8) * 8));
            in.dtype = "bf16";
            in.optimizer = "sgd";
            const auto half = estimateTrainingMemory(in);
            QCOMPARE(half.trainableWeights, std::uint64_t(trainable) * 2);
            QCOMPARE(half.frozenWeights, std::uint64_t(total - trainable) * 2);
            QCOMPARE(half.optimizerState, std::uint64_t(0));
        }
    }

    // The estimate against the tracking allocator's peak over real AdamW steps (the bench's own
    // measurement), on a tiny T5 with dropout.
    void estimateMatchesMeasuredPeak_data()
    {
        QTest::addColumn<QString>("method");
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
            QTest::newRow(m) << m;
    }

    void estimateMatchesMeasuredPeak()
    {
        QFETCH(QString, method);
        MemoryBenchSpec spec;
        spec.config = tinyConfig();
        spec.batch = 8;
        spec.sourceLength = 64;
        spec.targetLength = 8;
        spec.steps = 2;
        const auto r = measureTrainingMemory(spec, optionsFor(method.toStdString()));
        const double error = r.estimateError();
        qInfo("%s: measured %llu, estimated %llu, error %+.2f%% (peak at %s)", qPrintable(method),
            static_cast<unsigned long long>(r.peakBytes), static_cast<unsigned long long>(r.estimate.total),
            100.0 * error, r.estimate.peakWhere.c_str());
        QVERIFY2(std::abs(error) < 0.05, qPrintable(QString("error %1%").arg(100.0 * error)));
    }

    void breakdownSumsUp()
    {
        for (const char* m : { "full", "lora", "ladder" }) {
            const auto e = estimateTrainingMemory(inputFor(tinyConfig(), optionsFor(m)));
            std::uint64_t parts = 0;
            for (const auto& [name, bytes] : e.activationsPerPart)
                parts += bytes;
            QCOMPARE(parts, e.activations);
            QCOMPARE(e.total,
                e.weights() + e.optimizerState + e.batchInputs + e.gradientsAtPeak + e.activationsAtPeak
                    + e.transient);
            QVERIFY(e.gradientsAtPeak <= e.gradients);
            QVERIFY(!e.peakWhere.empty());
        }
    }

    // What LST keeps grows with the kept side layers, not with the backbone depth.
    void ladderActivationsIndependentOfBackboneDepth()
    {
        auto shallow = tinyConfig();
        auto deep = tinyConfig();
        deep.numLayers = deep.numDecoderLayers = 6;
        auto o = optionsFor("ladder");
        o.keep = { 1 };
        const auto a = estimateTrainingMemory(inputFor(shallow, o));
        const auto b = estimateTrainingMemory(inputFor(deep, o));
        QCOMPARE(a.activations, b.activations);
    }

    // On CUDA, dropout keeps a 1-byte mask (native_dropout's bool mask) where the CPU keeps one in the
    // activation dtype (fp32, PyTorch's CPU dropout: input * bernoulli noise): with everything trainable
    // every mask is saved, so the two estimates differ by 3 bytes per masked element, counted here from the
    // model's dropout sites. The shapes make every saved tensor a whole number of 512-byte blocks, so that
    // the CUDA caching allocator's rounding (checked on a GPU by test_gpu's Estimate suite) does not enter.
    void cudaDropoutMasksAreBytes()
    {
        const auto c = tinyConfig();
        auto in = inputFor(c, optionsFor("full"));
        in.tgtLen = 32;
        const auto cpu = estimateTrainingMemory(in);
        in.device = "cuda";
        const auto cuda = estimateTrainingMemory(in);
        const std::int64_t b = in.batch, ls = in.srcLen, lt = in.tgtLen, h = c.numHeads, d = c.dModel,
                           f = c.dFf;
        // embeddings and final output; per block: attention probabilities and output, FFN hidden and output
        const auto encoder
            = 2 * b * ls * d + c.numLayers * (b * h * ls * ls + b * ls * d + b * ls * f + b * ls * d);
        const auto decoder = 2 * b * lt * d
            + c.numDecoderLayers
                * (b * h * lt * lt + b * lt * d + b * h * lt * ls + b * lt * d + b * lt * f + b * lt * d);
        QCOMPARE(static_cast<std::int64_t>(cpu.activations - cuda.activations), 3 * (encoder + decoder));
    }

    void badInputIsNamed()
    {
        auto in = inputFor(tinyConfig(), optionsFor("lora"));
        in.batch = 0;
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("field batch"));
        in = inputFor(tinyConfig(), optionsFor("lora"));
        in.dtype = "fp8";
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("field dtype"));
        in = inputFor(tinyConfig(), optionsFor("lora"));
        in.optimizer = "adafactor";
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("field optimizer"));
        in = inputFor(tinyConfig(), optionsFor("lora"));
        in.device = "tpu";
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("field device"));
        in = inputFor(tinyConfig(), optionsFor("ladder"));
        in.method.r = 3;
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("field r"));
        in = inputFor(tinyConfig(), optionsFor("ladder"));
        in.method.method = "magic";
        QVERIFY(errorOf([&] { estimateTrainingMemory(in); }).contains("unknown method"));
    }

    void cliPrintsTheBreakdown()
    {
        const auto r = test::runCli({ "estimate", "--shape", "t5-small", "--method", "ladder", "--batch", "8",
            "--src-len", "128", "--tgt-len", "4", "--json" });
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j.at("trainable_params").get<std::int64_t>(), std::int64_t(1183628)); // docs/LST.md
        QVERIFY(j.at("estimated_bytes").get<std::uint64_t>() > j.at("activation_bytes").get<std::uint64_t>());
        const auto bad
            = test::runCli({ "estimate", "--shape", "t5-small", "--method", "ladder", "--r", "5" });
        QCOMPARE(bad.exitCode, 1);
        QVERIFY(QString::fromStdString(bad.err).contains("field r"));
    }
};

QTEST_GUILESS_MAIN(TestMemoryEstimate)
#include "test_memory_estimate.moc"
