// The analytic memory estimator (core/train/MemoryEstimate.h): its static terms against the methods'
// real parameter counts, its peak against the tracking allocator's measurement of real AdamW steps on a
// tiny T5, its breakdown's internal sums, and its errors for bad input.
#include <cmath>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "MemoryTestHelpers.h"
#include "TestSupport.h"
#include "peft/Method.h"
#include "train/MemoryBench.h"
#include "train/MemoryEstimate.h"
#include "train/MemoryMeter.h"
#include "util/Error.h"

using namespace ladder;

namespace {

using test::memory::optionsFor;
using test::memory::tinyConfig;

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
            // bf16 is mixed precision: the weights, gradients and AdamW state stay fp32, as the trainer's
            // parameters do (Method's parameters are created fp32 and autocast never converts them).
            in.dtype = "bf16";
            const auto mixed = estimateTrainingMemory(in);
            QCOMPARE(mixed.trainableWeights, std::uint64_t(trainable) * 4);
            QCOMPARE(mixed.frozenWeights, std::uint64_t(total - trainable) * 4);
            QCOMPARE(mixed.optimizerState, std::uint64_t(trainable) * 8);
            in.optimizer = "sgd";
            QCOMPARE(estimateTrainingMemory(in).optimizerState, std::uint64_t(0));
        }
    }

    // The estimate against the tracking allocator's peak over real AdamW steps (the bench's own
    // measurement), on a tiny T5 with dropout, in fp32 and in bf16 mixed precision (CPU autocast, as the
    // trainer runs a bf16 run on the CPU).
    void estimateMatchesMeasuredPeak_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<QString>("variant");
        for (const char* dtype : { "fp32", "bf16" })
            for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
                QTest::newRow(qPrintable(QString("%1 %2").arg(m, dtype))) << m << dtype << "";
        // LST's memory options (issue 18), alone and together, with dropout (the recomputation redraws), on a
        // wider shape (d_model 128, r 4: a side width of 32): fp32 exact, bf16 within 2%.
        for (const char* dtype : { "fp32", "bf16" })
            for (const char* v : { "side_checkpoint", "side_attention=sdpa", "ladder_dtype=bf16",
                     "side_heads=2", "side_checkpoint:ladder_dtype=bf16:side_heads=2",
                     "side_checkpoint:side_attention=sdpa:ladder_dtype=bf16" })
                QTest::newRow(qPrintable(QString("ladder %1 %2").arg(v, dtype))) << "ladder" << dtype << v;
        // Frozen backbone storage (backbone_dtype): the stored matrices and the dequantised chunks of
        // QuantizedWeight::matmul in forward and backward, the embedding's gathered rows; QLoRA.
        const std::vector<std::pair<const char*, const char*>> stored { { "qlora", "backbone_dtype=int4" },
            { "qlora", "backbone_dtype=int8" }, { "lora", "backbone_dtype=bf16" },
            { "bitfit", "backbone_dtype=int4:quant_group_size=32" }, { "adapter", "backbone_dtype=int4" },
            { "prompt", "backbone_dtype=int8" }, { "ladder", "backbone_dtype=int4" },
            { "ladder", "backbone_dtype=int4:side_checkpoint:ladder_dtype=bf16" } };
        for (const char* dtype : { "fp32", "bf16" })
            for (const auto& [m, v] : stored)
                QTest::newRow(qPrintable(QString("%1 %2 %3").arg(m, v, dtype))) << m << dtype << v;
    }

    void estimateMatchesMeasuredPeak()
    {
        QFETCH(QString, method);
        QFETCH(QString, dtype);
        QFETCH(QString, variant);
        auto options = optionsFor(method.toStdString());
        if (!variant.isEmpty()) {
            nlohmann::json fields = nlohmann::json::object();
            for (const auto& field : variant.split(':')) {
                const auto kv = field.split('=');
                fields[kv[0].toStdString()] = kv.size() == 1 ? nlohmann::json(true)
                    : nlohmann::json::parse(kv[1].toStdString(), nullptr, false).is_discarded()
                    ? nlohmann::json(kv[1].toStdString())
                    : nlohmann::json::parse(kv[1].toStdString());
            }
            options = options.withFields(fields, "variant " + variant.toStdString());
        }
        MemoryBenchSpec spec;
        spec.dtype = dtype.toStdString();
        spec.config = tinyConfig();
        double tolerance = 0.05;
        if (!variant.isEmpty()) {
            spec.config.vocabSize = 2048;
            spec.config.dModel = 128;
            spec.config.dKv = 32;
            spec.config.dFf = 512;
            spec.config.numLayers = spec.config.numDecoderLayers = 3;
            // bf16: autocast's casts inside recomputations are priced within 2% (docs/PERFORMANCE.md).
            tolerance = dtype == "bf16" ? 0.02 : 0.01;
        }
        spec.batch = 8;
        spec.sourceLength = 64;
        spec.targetLength = 8;
        spec.steps = 2;
        const auto r = measureTrainingMemory(spec, options);
        const double error = r.estimateError();
        qInfo("%s %s %s: measured %llu, estimated %llu, error %+.2f%% (peak at %s)", qPrintable(method),
            qPrintable(variant), qPrintable(dtype), static_cast<unsigned long long>(r.peakBytes),
            static_cast<unsigned long long>(r.estimate.total), 100.0 * error, r.estimate.peakWhere.c_str());
        QVERIFY2(std::abs(error) < tolerance, qPrintable(QString("error %1%").arg(100.0 * error)));
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
        // qlora over int8: the int4 default's group size is dropped with it (MethodOptions::withFields);
        // a group size given for int8 is still refused.
        const auto int8 = test::runCli({ "estimate", "--shape", "t5-small", "--method", "qlora",
            "--backbone-dtype", "int8", "--batch", "4", "--json" });
        QVERIFY2(int8.exitCode == 0, int8.err.c_str());
        QCOMPARE(QString::fromStdString(
                     nlohmann::json::parse(int8.out).at("method").at("backbone_dtype").get<std::string>()),
            QString("int8"));
        const auto both = test::runCli({ "estimate", "--shape", "t5-small", "--method", "qlora",
            "--backbone-dtype", "int8", "--quant-group-size", "32", "--batch", "4" });
        QCOMPARE(both.exitCode, 1);
        QVERIFY2(QString::fromStdString(both.err).contains("field quant_group_size"), both.err.c_str());
    }
};

QTEST_GUILESS_MAIN(TestMemoryEstimate)
#include "test_memory_estimate.moc"
