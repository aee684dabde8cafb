// Memory on a decoder-only backbone (issue #21): the analytic estimate (train/MemoryEstimate.h) of every
// method on a tiny Llama against the tracking allocator's peak over real AdamW steps, its static terms
// against the methods' parameter counts, and frozen backbone storage (model/llama/LlamaQuantization.h): a
// quantised decoder's logits against the fp32 one within test_quantized's tolerances, trainable sets
// unchanged, QLoRA training.
#include <cmath>
#include <set>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>

#include "TestSupport.h"
#include "model/T5Quantization.h"
#include "model/llama/LlamaQuantization.h"
#include "peft/Method.h"
#include "train/MemoryBench.h"
#include "train/MemoryEstimate.h"
#include "train/MemoryMeter.h"
#include "train/MemoryPlan.h"
#include "util/Error.h"

using namespace ladder;

namespace {

// Grouped-query attention (4 heads, 2 key/value heads), an untied head; widths that int4 groups of 32 and
// 64 divide and LST's r 4 leaves an even head_dim (16 / 4).
LlamaConfig tinyLlama(bool tied = false)
{
    LlamaConfig c;
    c.vocabSize = 512;
    c.hiddenSize = 64;
    c.intermediateSize = 128;
    c.numHiddenLayers = 2;
    c.numAttentionHeads = 4;
    c.numKeyValueHeads = 2;
    c.headDim = 16;
    c.rmsNormEps = 1e-5;
    c.tieWordEmbeddings = tied;
    c.eosTokenIds = { 2 };
    return c;
}

MethodOptions optionsFor(const std::string& method)
{
    auto o = MethodOptions::defaults(method);
    o.r = 4;
    o.hidden = 16;
    o.rank = 8;
    o.prompts = 6;
    if (method == "ladder")
        o.init = "random";
    return o;
}

MethodOptions withVariant(MethodOptions o, const QString& variant)
{
    if (variant.isEmpty())
        return o;
    nlohmann::json fields = nlohmann::json::object();
    for (const auto& field : variant.split(':')) {
        const auto kv = field.split('=');
        const auto value = kv.size() == 1 ? std::string("true") : kv[1].toStdString();
        const auto parsed = nlohmann::json::parse(value, nullptr, false);
        fields[kv[0].toStdString()] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
    }
    return o.withFields(fields, "variant " + variant.toStdString());
}

double relativeMax(const at::Tensor& a, const at::Tensor& b)
{
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

} // namespace

class TestDecoderMemory : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        // The bf16 rows check the replay of PyTorch's own CPU kernels. On a CPU with AVX-512 BF16 or AMX,
        // oneDNN computes bf16 matrix products instead and allocates its scratchpad and packed operands
        // beside them (docs/PERFORMANCE.md, "Decoder-only backbones"); oneDNN reads its ISA cap at first use.
        if (qEnvironmentVariableIsEmpty("ONEDNN_MAX_CPU_ISA"))
            qputenv("ONEDNN_MAX_CPU_ISA", "AVX2");
        installCpuMemoryTracker();
    }

    void staticTermsEqualParameterCounts_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("variant");
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
            QTest::newRow(m) << m << "";
        QTest::newRow("full freeze 1") << "full"
                                       << "freeze=1";
        QTest::newRow("adapter freeze 1") << "adapter"
                                          << "freeze=1";
        QTest::newRow("lora every target") << "lora"
                                           << "targets=[\"q\",\"k\",\"v\",\"o\",\"gate\",\"up\",\"down\"]";
        QTest::newRow("ladder keep 1") << "ladder"
                                       << "keep=[1]";
    }

    void staticTermsEqualParameterCounts()
    {
        QFETCH(QString, method);
        QFETCH(QString, variant);
        const auto o = withVariant(optionsFor(method.toStdString()), variant);
        for (bool tied : { false, true }) {
            auto c = tinyLlama(tied);
            if (tied)
                c.modelType = "qwen2"; // q/k/v biases: frozen weights, BitFit's from their values
            const auto m = createMethod(LlamaForCausalLM(c).ptr(), o);
            MemoryEstimateInput in;
            in.llama = c;
            in.method = o;
            in.batch = 4;
            in.srcLen = 24;
            in.tgtLen = 6;
            const auto e = estimateTrainingMemory(in);
            QCOMPARE(e.totalParams, m->totalParameterCount());
            QCOMPARE(e.trainableParams, m->trainableParameterCount());
            QCOMPARE(e.gradients, std::uint64_t(m->trainableParameterCount()) * 4);
            QCOMPARE(e.batchInputs, std::uint64_t(4 * (24 + 24 + 6) * 8));
        }
    }

    // The estimate against the tracking allocator's peak over real AdamW steps (as test_memory_estimate for
    // T5): every method, fp32 and bf16 mixed precision, and frozen storage.
    void estimateMatchesMeasuredPeak_data()
    {
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<QString>("variant");
        QTest::addColumn<bool>("tied");
        for (const char* dtype : { "fp32", "bf16" }) {
            for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" })
                QTest::newRow(qPrintable(QString("%1 %2").arg(m, dtype))) << m << dtype << "" << false;
            QTest::newRow(qPrintable(QString("full tied %1").arg(dtype))) << "full" << dtype << "" << true;
            QTest::newRow(qPrintable(QString("lora tied %1").arg(dtype))) << "lora" << dtype << "" << true;
            QTest::newRow(qPrintable(QString("ladder keep 1 ladder_dtype bf16 %1").arg(dtype)))
                << "ladder" << dtype << "keep=[1]:ladder_dtype=bf16" << false;
            QTest::newRow(qPrintable(QString("qlora %1").arg(dtype))) << "qlora" << dtype << "" << false;
            QTest::newRow(qPrintable(QString("qlora tied int8 %1").arg(dtype)))
                << "qlora" << dtype << "backbone_dtype=int8" << true;
            QTest::newRow(qPrintable(QString("ladder int4 %1").arg(dtype)))
                << "ladder" << dtype << "backbone_dtype=int4:quant_group_size=32" << false;
            QTest::newRow(qPrintable(QString("prompt bf16 storage %1").arg(dtype)))
                << "prompt" << dtype << "backbone_dtype=bf16" << false;
        }
    }

    void estimateMatchesMeasuredPeak()
    {
        QFETCH(QString, method);
        QFETCH(QString, dtype);
        QFETCH(QString, variant);
        QFETCH(bool, tied);
        MemoryBenchSpec spec;
        spec.llama = tinyLlama(tied);
        spec.dtype = dtype.toStdString();
        spec.batch = 4;
        spec.sourceLength = 24;
        spec.targetLength = 6;
        spec.steps = 2;
        spec.inferenceRepeats = 1;
        const auto r = measureTrainingMemory(spec, withVariant(optionsFor(method.toStdString()), variant));
        const double error = r.estimateError();
        qInfo("%s %s %s%s: measured %llu, estimated %llu, error %+.3f%% (peak at %s)", qPrintable(method),
            qPrintable(variant), qPrintable(dtype), tied ? " tied" : "",
            static_cast<unsigned long long>(r.peakBytes), static_cast<unsigned long long>(r.estimate.total),
            100.0 * error, r.estimate.peakWhere.c_str());
        QVERIFY2(std::abs(error) < 0.01, qPrintable(QString("error %1%").arg(100.0 * error)));
    }

    // A quantised decoder computes the fp32 one's logits within test_quantized's tolerances for one matmul,
    // compounded over the layers (bf16 1%, int8 3%, int4 25% of the largest logit), and keeps what trains.
    void quantisedLogitsAndTrainableSets()
    {
        at::manual_seed(3);
        const auto c = tinyLlama();
        LlamaForCausalLM reference(c);
        const auto ids = at::randint(3, c.vocabSize, { 2, 10 }, at::TensorOptions().dtype(at::kLong));
        at::Tensor fp32;
        {
            c10::NoGradGuard noGrad;
            fp32 = reference->forward(ids, {}, {}).logits;
        }
        for (const auto& [dtype, tolerance] : std::vector<std::pair<std::string, double>> {
                 { "bf16", 0.01 }, { "int8", 0.03 }, { "int4", 0.25 } }) {
            for (const char* m : { "lora", "bitfit", "adapter", "prompt", "ladder" }) {
                auto o = optionsFor(m);
                LlamaForCausalLM dense(c);
                LlamaForCausalLM stored(c);
                {
                    c10::NoGradGuard noGrad;
                    for (auto* model : { &dense, &stored }) {
                        auto params = (*model)->named_parameters(true);
                        for (const auto& p : reference->named_parameters(true))
                            params[p.key()].copy_(p.value());
                    }
                }
                const auto plain = createMethod(dense.ptr(), o);
                nlohmann::json storage { { "backbone_dtype", dtype } };
                if (dtype == "int4")
                    storage["quant_group_size"] = 32;
                o = o.withFields(storage, "storage");
                const auto method = createMethod(stored.ptr(), o);
                QCOMPARE(stored->weightStorage(), weightStorageLabel(dtype, o.quantGroupSize));
                std::set<std::string> a, b;
                for (const auto& [name, _] : plain->namedTrainableParameters())
                    a.insert(name);
                for (const auto& [name, _] : method->namedTrainableParameters())
                    b.insert(name);
                QVERIFY2(a == b, m);
                QCOMPARE(method->trainableParameterCount(), plain->trainableParameterCount());
                QVERIFY(backboneWeightBytes(*stored) < backboneWeightBytes(*dense));
                if (std::string(m) == "lora") {
                    c10::NoGradGuard noGrad;
                    const auto logits = stored->forward(ids, {}, {}).logits;
                    const auto error = relativeMax(logits, fp32);
                    qInfo("%s: logits max error %.4f of the largest", dtype.c_str(), error);
                    QVERIFY2(error < tolerance, qPrintable(QString::number(error)));
                }
            }
        }
    }

    // `ladder info`'s storage table (backboneStorageBytes from a config alone) equals the bytes a quantised
    // model holds, for every storage, tied and untied, with Qwen2's fp32 q/k/v biases.
    void storageBytesFromTheConfigEqualTheModels()
    {
        for (bool tied : { false, true }) {
            auto c = tinyLlama(tied);
            if (tied)
                c.modelType = "qwen2";
            for (const char* dtype : { "fp32", "bf16", "int8", "int4" }) {
                LlamaForCausalLM llama(c);
                for (auto& p : llama->parameters(true))
                    p.set_requires_grad(false);
                quantizeFrozenBackbone(*llama, dtype, 32);
                QCOMPARE(backboneStorageBytes(c, dtype, 32).totalBytes(), backboneWeightBytes(*llama));
            }
        }
        QVERIFY_THROWS_EXCEPTION(Error, backboneStorageBytes(tinyLlama(), "int4", 256));
        // ladder info on a published decoder shape: the same figure; at llama-1b it is the frozen weight
        // bytes `ladder bench memory --shape llama-1b --backbone-dtype int4` holds (619,094,016).
        const auto info
            = test::runCli({ "info", "--shape", "llama-1b", "--backbone-dtype", "int4", "--json" });
        QVERIFY2(info.exitCode == 0, info.err.c_str());
        const auto j = nlohmann::json::parse(info.out);
        QCOMPARE(j.at("backbone_storage_bytes").get<std::int64_t>(), std::int64_t(619094016));
        QCOMPARE(j.at("architecture").get<std::string>(), std::string("llama"));
        const auto plan = test::runCli({ "plan", "--shape", "llama-1b", "--budget", "2GiB", "--batch", "4",
            "--src-len", "192", "--tgt-len", "65", "--methods", "qlora,ladder", "--json" });
        QVERIFY2(plan.exitCode == 0, plan.err.c_str());
    }

    // `ladder plan` on a decoder: the LST option sets it tries are ones a decoder builds (no side_checkpoint,
    // no sdpa: T5's only), keep lists over the decoder's layers, int4 groups that divide its widths; the
    // cheapest set that fits a budget fits it.
    void planCandidatesBuildOnADecoder()
    {
        const auto c = tinyLlama();
        auto base = optionsFor("ladder");
        const auto candidates = memoryOptionCandidates(base, c);
        QVERIFY(candidates.size() > 4);
        for (const auto& cand : candidates) {
            QVERIFY2(
                !cand.options.sideCheckpoint && cand.options.sideAttention == "math", cand.label().c_str());
            try {
                (void)createMethod(LlamaForCausalLM(c).ptr(), cand.options); // throws on a set it refuses
            } catch (const std::exception& e) {
                QFAIL(qPrintable(QString::fromStdString(cand.label() + ": " + e.what())));
            }
        }
        MemoryEstimateInput in;
        in.llama = c;
        in.method = base;
        in.batch = 4;
        in.srcLen = 24;
        in.tgtLen = 6;
        const auto given = estimateTrainingMemory(in).total;
        const auto choice = cheapestFittingOptions(in, given - 1);
        QVERIFY(choice.found);
        QVERIFY(!choice.chosen.changes.empty());
        QVERIFY(choice.chosen.peak < given);
        in.method = choice.chosen.options;
        QCOMPARE(estimateTrainingMemory(in).total, choice.chosen.peak);
    }

    // QLoRA on a decoder trains: the loss goes down over a few steps on one batch; the LoRA matrices move,
    // the stored weights do not exist as parameters.
    void qloraTrainsOnADecoder()
    {
        at::manual_seed(5);
        const auto c = tinyLlama(true);
        LlamaForCausalLM llama(c);
        auto o = optionsFor("qlora");
        const auto method = createMethod(llama.ptr(), o);
        QVERIFY(llama->embeddingQuantized().defined());
        QCOMPARE(llama->model->embed_tokens->weight.numel(), std::int64_t(0));
        method->train(true);
        torch::optim::AdamW optimizer(method->trainableParameters(), torch::optim::AdamWOptions(1e-2));
        Seq2SeqBatch batch;
        const auto longs = at::TensorOptions().dtype(at::kLong);
        batch.inputIds = at::randint(3, c.vocabSize, { 4, 12 }, longs);
        batch.attentionMask = at::ones_like(batch.inputIds);
        batch.labels = at::randint(3, c.vocabSize, { 4, 3 }, longs);
        double first = 0.0, last = 0.0;
        for (int step = 0; step < 8; ++step) {
            optimizer.zero_grad();
            const auto loss = method->forward(batch).loss;
            loss.backward();
            optimizer.step();
            (step == 0 ? first : last) = loss.item<double>();
        }
        QVERIFY2(last < first, qPrintable(QString("%1 -> %2").arg(first).arg(last)));
    }
};

QTEST_GUILESS_MAIN(TestDecoderMemory)
#include "test_decoder_memory.moc"
