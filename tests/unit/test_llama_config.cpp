// Decoder configs and checkpoints (issue #21) as strangers' files: both config.json layouts, every config
// error naming the file and the field, every loading error naming the file and the tensor (built in temp
// folders from tests/fixtures/decoder), BF16/F16-stored and bf16-computed models, sharded and
// pytorch_model.bin copies, tied embeddings as HF 5.25 ties them, and `ladder info` on each fixture.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <QProcess>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "LlamaTestHelpers.h"
#include "TensorFileTestHelpers.h"
#include "TestSupport.h"
#include "model/BackboneLoad.h"
#include "model/Safetensors.h"
#include "model/llama/LlamaCheckpoint.h"
#include "model/llama/LlamaConfig.h"
#include "util/Error.h"

using namespace ladder;
using nlohmann::json;
using tensor_file_test::ladderErrorOf;

namespace {
namespace fs = std::filesystem;

const char* const kModels[] = { "llama-gqa", "qwen2-bias", "llama-rope-scaling", "mistral-window" };

// Tolerances against HF's fp32 logits, in units u of the dtype's rounding (2^-8 for bf16, 2^-11 for f16).
// Weights stored in BF16/F16 and computed in fp32: every weight is rounded once (the exact check in
// reducedPrecisionStorage proves it is nothing else); the errors of ~20 matrices add up and the sharp
// attention and SwiGLU of these fixtures (init range 0.2) amplify them: measured 2.7u to 4.1u for BF16
// (1.07e-2 to 1.6e-2) and 2.8u to 3.3u for F16 (1.36e-3 to 1.6e-3). Bound: 10u, 2.5x the largest; a dropped
// or misplaced weight is O(1) (0.3 and more).
constexpr double kBf16StoredTolerance = 10.0 / 256; // 3.9e-2
constexpr double kF16StoredTolerance = 10.0 / 2048; // 4.9e-3
// Computing in bf16 (BackboneLoadOptions dtype kBFloat16) also rounds every activation (matmul outputs, the
// residual stream, the rotary tables; RMSNorm's variance and the softmax stay fp32 as in HF): measured 4.8u
// to 6.1u (1.9e-2 to 2.4e-2; the loss within 2.2e-3). Bound: 15u.
constexpr double kBf16ComputeTolerance = 15.0 / 256; // 5.9e-2

json readJson(const std::string& path)
{
    std::ifstream in(path);
    return json::parse(in);
}

void writeText(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    QVERIFY2(out.good(), path.c_str());
}

json fixtureConfig(const std::string& name, const std::string& file = "config.json")
{
    return readJson(test::decoderFixture(name) + "/" + file);
}

TensorMap fixtureWeights(const std::string& name)
{
    return readSafetensors(test::decoderFixture(name) + "/model.safetensors");
}

TensorMap fixtureExpected(const std::string& name)
{
    return readSafetensors(test::decoderFixture(name) + "/expected.safetensors");
}

// `patch`'s top-level keys set on `base`; a null value removes the key (as "missing").
json patched(json base, const json& patch)
{
    for (const auto& [key, value] : patch.items()) {
        if (value.is_null())
            base.erase(key);
        else
            base[key] = value;
    }
    return base;
}

// A fresh folder with `config` as config.json and `tensors` (when any) as model.safetensors.
std::string writeModelFolder(const json& config, const TensorMap& tensors)
{
    const auto dir = test::makeTempDir();
    writeText(dir + "/config.json", config.dump(2));
    if (!tensors.empty())
        writeSafetensors(dir + "/model.safetensors", tensors, { { "format", "pt" } });
    return dir;
}

TensorMap convertedTo(const TensorMap& tensors, at::ScalarType dtype)
{
    TensorMap out;
    for (const auto& [name, t] : tensors)
        out.emplace(name, t.to(dtype));
    return out;
}

// HF's forward(input_ids, attention_mask) on the fixture's inputs: logits as float32.
at::Tensor logitsOf(LlamaForCausalLMImpl& model, const TensorMap& expected)
{
    c10::NoGradGuard noGrad;
    return model.forward(expected.at("input_ids"), expected.at("attention_mask"), {}).logits.to(at::kFloat);
}

// "128x63" -> {128, 63}.
std::vector<std::int64_t> parseShape(const QString& text)
{
    std::vector<std::int64_t> shape;
    for (const auto& part : text.split('x'))
        shape.push_back(part.toLongLong());
    return shape;
}

// The python of the HF venv (tests/export/check_export.py's: LADDER_HF_VENV or /opt/ladderbench/hf-venv), or
// "" when it is not there.
std::string hfPython()
{
    const char* env = std::getenv("LADDER_HF_VENV");
    const auto python = std::string(env && *env ? env : "/opt/ladderbench/hf-venv") + "/bin/python";
    return fs::exists(python) ? python : std::string();
}

// torch.save of a fixture's weights as pytorch_model.bin in `dir` (HF's pre-safetensors format). With `tie`,
// lm_head.weight is the embedding's own tensor (one storage), as a tied model's state_dict() saves it.
QString writeTorchBin(const std::string& python, const std::string& src, const std::string& dir, bool tie)
{
    const char* script = "import sys, torch\n"
                         "from safetensors.torch import load_file\n"
                         "t = load_file(sys.argv[1])\n"
                         "if sys.argv[3] == 'tie':\n"
                         "    t['lm_head.weight'] = t['model.embed_tokens.weight']\n"
                         "torch.save(t, sys.argv[2])\n";
    QProcess p;
    p.start(QString::fromStdString(python),
        { "-c", script, QString::fromStdString(src), QString::fromStdString(dir + "/pytorch_model.bin"),
            tie ? "tie" : "untied" });
    if (!p.waitForFinished(180000))
        return "timed out";
    if (p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0)
        return QString::fromUtf8(p.readAllStandardError());
    return {};
}

// The fixture's weights split in two shards (by name) with HF's model.safetensors.index.json, in a new
// folder.
std::string writeShardedCopy(const std::string& name)
{
    const auto dir = test::makeTempDir();
    fs::copy_file(test::decoderFixture(name) + "/config.json", dir + "/config.json");
    const auto all = fixtureWeights(name);
    TensorMap shards[2];
    json weightMap = json::object();
    std::int64_t totalSize = 0;
    std::size_t i = 0;
    for (const auto& [tensorName, t] : all) {
        const int shard = i++ < all.size() / 2 ? 0 : 1;
        shards[shard].emplace(tensorName, t);
        weightMap[tensorName] = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
        totalSize += t.numel() * static_cast<std::int64_t>(t.element_size());
    }
    for (int s = 0; s < 2; ++s)
        writeSafetensors(dir + "/model-0000" + std::to_string(s + 1) + "-of-00002.safetensors", shards[s],
            { { "format", "pt" } });
    writeText(dir + "/model.safetensors.index.json",
        json { { "metadata", { { "total_size", totalSize } } }, { "weight_map", weightMap } }.dump(2));
    return dir;
}

// Replaces "{dir}" in each needle by the folder.
std::vector<std::string> needlesIn(const QStringList& needles, const std::string& dir)
{
    std::vector<std::string> out;
    for (auto n : needles)
        out.push_back(n.replace("{dir}", QString::fromStdString(dir)).toStdString());
    return out;
}

#define VERIFY_ERROR_HAS_ALL(message, needles)                                                               \
    do {                                                                                                     \
        const std::string m_ = (message);                                                                    \
        QVERIFY2(!tensor_file_test::contains(m_, "UNEXPECTED") && m_ != "NO EXCEPTION", m_.c_str());         \
        for (const auto& n_ : (needles))                                                                     \
            QVERIFY2(tensor_file_test::contains(m_, n_), ("'" + n_ + "' not in: " + m_).c_str());            \
    } while (false)

} // namespace

class TestLlamaConfig : public QObject {
    Q_OBJECT
private Q_SLOTS:
    // ---------------------------------------------------------------------------------------------------
    // config.json

    void bothLayoutsParseEqual_data()
    {
        QTest::addColumn<QString>("name");
        for (const char* m : kModels)
            QTest::newRow(m) << QString(m);
    }
    void bothLayoutsParseEqual()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        const auto dir = test::decoderFixture(name.toStdString());
        const auto tf5 = LlamaConfig::fromJsonFile(dir + "/config.json");
        const auto tf4 = LlamaConfig::fromJsonFile(dir + "/config.tf4.json");
        QCOMPARE(QString::fromStdString(tf4.toJson().dump()), QString::fromStdString(tf5.toJson().dump()));
        // toJson is the transformers 5 layout, and reads back to itself.
        QCOMPARE(QString::fromStdString(LlamaConfig::fromJson(tf5.toJson()).toJson().dump()),
            QString::fromStdString(tf5.toJson().dump()));
        QCOMPARE(tf5.numKeyValueHeads, std::int64_t(2));
        QCOMPARE(tf5.headDim, std::int64_t(16));
        if (name == "mistral-window") {
            QCOMPARE(tf5.slidingWindow.value_or(-1), std::int64_t(4));
            QVERIFY(!tf5.qkvBias());
        } else {
            QVERIFY(!tf5.slidingWindow);
        }
        if (name == "qwen2-bias") {
            QVERIFY(tf5.tieWordEmbeddings);
            QVERIFY(tf5.qkvBias() && !tf5.oBias());
            QCOMPARE(tf5.rope.theta, 1e6);
        }
        if (name == "llama-rope-scaling") {
            QCOMPARE(QString::fromStdString(tf5.rope.type), QString("llama3"));
            QCOMPARE(tf5.rope.factor, 8.0);
            QCOMPARE(tf5.rope.originalMaxPositionEmbeddings, std::int64_t(32));
        }
    }

    // The other spellings hub configs carry: rope_scaling's old "type" key, rope_theta outside a
    // rope_parameters without one, eos lists, defaults for the optional sizes.
    void otherSpellingsAndDefaults()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto base = fixtureConfig("llama-gqa", "config.tf4.json");
        const auto linearTf4 = LlamaConfig::fromJson(
            patched(base, json::parse(R"({"rope_scaling": {"type": "linear", "factor": 2.0}})")));
        const auto linearTf5 = LlamaConfig::fromJson(patched(fixtureConfig("llama-gqa"),
            json::parse(
                R"({"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}})")));
        QCOMPARE(QString::fromStdString(linearTf4.toJson().dump()),
            QString::fromStdString(linearTf5.toJson().dump()));
        QCOMPARE(linearTf4.rope.factor, 2.0);

        const auto mixed = LlamaConfig::fromJson(patched(fixtureConfig("llama-gqa"),
            json::parse(R"({"rope_parameters": {"rope_type": "default"}, "rope_theta": 500000.0})")));
        QCOMPARE(mixed.rope.theta, 500000.0);

        const auto defaults = LlamaConfig::fromJson(patched(
            fixtureConfig("llama-gqa"), json::parse(R"({"num_key_value_heads": null, "head_dim": null})")));
        QCOMPARE(defaults.numKeyValueHeads, std::int64_t(4));
        QCOMPARE(defaults.headDim, std::int64_t(16));

        const auto eosList = LlamaConfig::fromJson(
            patched(fixtureConfig("llama-gqa"), json::parse(R"({"eos_token_id": [2, 5]})")));
        QCOMPARE(eosList.eosTokenIds, (std::vector<std::int64_t> { 2, 5 }));

        // Mistral: HF's MistralConfig defaults sliding_window to 4096 when absent; null turns it off.
        const auto mistral = fixtureConfig("mistral-window");
        QCOMPARE(LlamaConfig::fromJson(patched(mistral, json::parse(R"({"sliding_window": null})")))
                     .slidingWindow.value_or(-1),
            std::int64_t(4096));
        auto off = mistral;
        off["sliding_window"] = nullptr;
        QVERIFY(!LlamaConfig::fromJson(off).slidingWindow);
        // Qwen2's sliding_window is read only with use_sliding_window (HF sets it to None otherwise).
        QVERIFY(!LlamaConfig::fromJson(
            patched(fixtureConfig("qwen2-bias"), json::parse(R"({"sliding_window": 8})")))
                     .slidingWindow);

        // Biases as each modeling file builds them: Mistral's are fixed to none even when a config says
        // attention_bias true (HF's MistralAttention: bias=False); Qwen2's q/k/v always, o never; Llama's
        // follow attention_bias and mlp_bias.
        const auto mistralBias
            = LlamaConfig::fromJson(patched(mistral, json::parse(R"({"attention_bias": true})")));
        QVERIFY(!mistralBias.qkvBias() && !mistralBias.oBias() && !mistralBias.mlpHasBias());
        const auto qwen = LlamaConfig::fromJson(patched(
            fixtureConfig("qwen2-bias"), json::parse(R"({"attention_bias": true, "mlp_bias": true})")));
        QVERIFY(qwen.qkvBias() && !qwen.oBias() && !qwen.mlpHasBias());
        const auto llama = LlamaConfig::fromJson(patched(
            fixtureConfig("llama-gqa"), json::parse(R"({"attention_bias": true, "mlp_bias": true})")));
        QVERIFY(llama.qkvBias() && llama.oBias() && llama.mlpHasBias());
    }

    void configErrorsNameFileAndField_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("layout");
        QTest::addColumn<QString>("patch"); // top-level keys (null removes one), or "raw:<file text>"
        QTest::addColumn<QStringList>("needles");
        const QString llama = "llama-gqa", tf5 = "config.json", tf4 = "config.tf4.json";
        // Rope types other than default, linear and llama3, in both layouts and both type keys.
        QTest::newRow("rope yarn")
            << llama << tf5
            << R"({"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                   "original_max_position_embeddings": 32}})"
            << QStringList { "field rope_parameters.rope_type", "'yarn'",
                   "supported: default, linear, llama3" };
        QTest::newRow("rope dynamic (tf4, type)")
            << llama << tf4 << R"({"rope_scaling": {"type": "dynamic", "factor": 2.0}})"
            << QStringList { "field rope_scaling.type", "'dynamic'" };
        QTest::newRow("rope longrope (tf4, rope_type)")
            << llama << tf4
            << R"({"rope_scaling": {"rope_type": "longrope", "short_factor": [1], "long_factor": [1]}})"
            << QStringList { "field rope_scaling.rope_type", "'longrope'" };
        QTest::newRow("rope yarn (tf4)")
            << llama << tf4 << R"({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})"
            << QStringList { "rope_scaling.rope_type", "'yarn'" };
        QTest::newRow("rope type not a string")
            << llama << tf5 << R"({"rope_parameters": {"rope_type": 3, "rope_theta": 10000.0}})"
            << QStringList { "rope_parameters.rope_type", "expected a string" };
        QTest::newRow("rope_parameters not an object")
            << llama << tf5 << R"({"rope_parameters": "default"})" << QStringList { "rope_parameters" };
        QTest::newRow("per-layer rope")
            << llama << tf5 << R"({"rope_parameters": {"full_attention": {"rope_type": "default"}}})"
            << QStringList { "rope_parameters", "per-layer" };
        QTest::newRow("llama3 without low_freq_factor")
            << "llama-rope-scaling" << tf5
            << R"({"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32}})"
            << QStringList { "rope_parameters.low_freq_factor", "required for rope type llama3" };
        QTest::newRow("llama3 high <= low")
            << "llama-rope-scaling" << tf5
            << R"({"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                   "low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}})"
            << QStringList { "rope_parameters.high_freq_factor" };
        QTest::newRow("linear without factor (tf4)")
            << llama << tf4 << R"({"rope_scaling": {"rope_type": "linear"}})"
            << QStringList { "rope_scaling.factor", "required for rope type linear" };
        QTest::newRow("partial rotary")
            << llama << tf5
            << R"({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}})"
            << QStringList { "partial_rotary_factor" };
        QTest::newRow("rope_theta negative (tf4)")
            << llama << tf4 << R"({"rope_theta": -1.0})" << QStringList { "field rope_theta" };

        // Sizes: missing (where HF requires them), negative, 2^40 (refused by validate, before any
        // allocation), not an integer.
        const auto huge = std::to_string(std::int64_t(1) << 40);
        for (const char* f :
            { "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads" })
            QTest::newRow((std::string("missing ") + f).c_str())
                << llama << tf5 << QString("{\"%1\": null}").arg(f)
                << QStringList { QString("missing field ") + f };
        for (const char* f : { "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings" }) {
            QTest::newRow((std::string("negative ") + f).c_str())
                << llama << tf5 << QString("{\"%1\": -1}").arg(f)
                << QStringList { QString("field ") + f + ":", "expected a positive integer, got -1" };
            QTest::newRow((std::string("2^40 ") + f).c_str())
                << llama << tf5 << QString("{\"%1\": %2}").arg(f, QString::fromStdString(huge))
                << QStringList { QString("field ") + f + ":", "expected 1 to", QString::fromStdString(huge) };
        }
        QTest::newRow("float vocab_size") << llama << tf5 << R"({"vocab_size": 320.5})"
                                          << QStringList { "field vocab_size", "positive integer" };
        QTest::newRow("string hidden_size")
            << llama << tf5 << R"({"hidden_size": "64"})" << QStringList { "field hidden_size" };
        QTest::newRow("uint64 max vocab_size") << llama << tf5 << R"({"vocab_size": 18446744073709551615})"
                                               << QStringList { "field vocab_size" };
        QTest::newRow("heads x head_dim too wide")
            << llama << tf5
            << R"({"num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 4096})"
            << QStringList { "num_attention_heads x head_dim" };

        QTest::newRow("kv heads do not divide heads")
            << llama << tf5 << R"({"num_key_value_heads": 3})"
            << QStringList { "field num_key_value_heads", "3 does not divide num_attention_heads 4" };
        QTest::newRow("hidden not a multiple of heads, no head_dim")
            << llama << tf5 << R"({"num_attention_heads": 3, "num_key_value_heads": 3, "head_dim": null})"
            << QStringList { "field hidden_size", "not a multiple of num_attention_heads 3" };
        QTest::newRow("odd head_dim")
            << llama << tf5 << R"({"head_dim": 15})" << QStringList { "field head_dim", "even" };
        QTest::newRow("hidden_act gelu") << llama << tf5 << R"({"hidden_act": "gelu"})"
                                         << QStringList { "field hidden_act", "gelu", "supported: silu" };
        QTest::newRow("hidden_act number")
            << llama << tf5 << R"({"hidden_act": 1})" << QStringList { "field hidden_act" };
        QTest::newRow("unknown model_type")
            << llama << tf5 << R"({"model_type": "gpt_neox"})"
            << QStringList { "field model_type", "'gpt_neox'", "llama, mistral, qwen2" };
        QTest::newRow("model_type t5 (not a decoder)")
            << llama << tf5 << R"({"model_type": "t5"})" << QStringList { "field model_type", "'t5'" };
        QTest::newRow("no model_type")
            << llama << tf5 << R"({"model_type": null})" << QStringList { "field model_type" };
        QTest::newRow("unknown architectures")
            << llama << tf5 << R"({"architectures": ["GPTNeoXForCausalLM"]})"
            << QStringList { "field architectures", "GPTNeoXForCausalLM" };
        QTest::newRow("qwen2 use_sliding_window")
            << "qwen2-bias" << tf5 << R"({"use_sliding_window": true, "sliding_window": 4})"
            << QStringList { "field use_sliding_window" };
        QTest::newRow("qwen2 sliding layer")
            << "qwen2-bias" << tf5 << R"({"layer_types": ["full_attention", "sliding_attention"]})"
            << QStringList { "field layer_types", "sliding_attention" };
        QTest::newRow("mistral window 0") << "mistral-window" << tf5 << R"({"sliding_window": 0})"
                                          << QStringList { "field sliding_window" };
        QTest::newRow("mistral window -4 (tf4)") << "mistral-window" << tf4 << R"({"sliding_window": -4})"
                                                 << QStringList { "field sliding_window" };
        QTest::newRow("mistral window string") << "mistral-window" << tf5 << R"({"sliding_window": "4"})"
                                               << QStringList { "field sliding_window" };
        QTest::newRow("rms_norm_eps 0")
            << llama << tf5 << R"({"rms_norm_eps": 0})" << QStringList { "field rms_norm_eps" };
        QTest::newRow("rms_norm_eps 2")
            << llama << tf5 << R"({"rms_norm_eps": 2})" << QStringList { "field rms_norm_eps" };
        QTest::newRow("eos outside vocabulary") << llama << tf5 << R"({"eos_token_id": 320})"
                                                << QStringList { "eos_token_id", "outside the vocabulary" };
        QTest::newRow("eos list with a string")
            << llama << tf5 << R"({"eos_token_id": [2, "x"]})" << QStringList { "field eos_token_id" };
        QTest::newRow("bos negative")
            << llama << tf5 << R"({"bos_token_id": -1})" << QStringList { "field bos_token_id" };
        QTest::newRow("pad outside vocabulary") << llama << tf5 << R"({"pad_token_id": 1000})"
                                                << QStringList { "pad_token_id", "outside the vocabulary" };
        QTest::newRow("tie not a bool") << llama << tf5 << R"({"tie_word_embeddings": "yes"})"
                                        << QStringList { "field tie_word_embeddings" };
        QTest::newRow("attention_bias not a bool")
            << llama << tf5 << R"({"attention_bias": 1})" << QStringList { "field attention_bias" };
        QTest::newRow("not an object") << llama << tf5 << "raw:[1, 2]" << QStringList { "JSON object" };
        QTest::newRow("not JSON") << llama << tf5 << "raw:{\"vocab_size\": " << QStringList {};
    }
    void configErrorsNameFileAndField()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QString, layout);
        QFETCH(QString, patch);
        QFETCH(QStringList, needles);
        const auto dir = test::makeTempDir();
        const auto path = dir + "/config.json";
        if (patch.startsWith("raw:"))
            writeText(path, patch.mid(4).toStdString());
        else
            writeText(path,
                patched(
                    fixtureConfig(name.toStdString(), layout.toStdString()), json::parse(patch.toStdString()))
                    .dump(2));
        const auto error = ladderErrorOf([&] { LlamaConfig::fromJsonFile(path); });
        auto all = needlesIn(needles, dir);
        all.push_back(path);
        VERIFY_ERROR_HAS_ALL(error, all);
        // loadLlama reads the config first: the same error, before it looks for weights.
        QCOMPARE(
            QString::fromStdString(ladderErrorOf([&] { loadLlama(dir); })), QString::fromStdString(error));
    }

    // hidden_size 2^40 (and a q width of 2^22) stop in validate(), which the model's constructor calls before
    // it builds a module: the error names the field instead of an allocator failing.
    void hugeSizesFailInValidateBeforeAllocation()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto config = LlamaConfig::fromJsonFile(test::decoderFixture("llama-gqa") + "/config.json");
        config.hiddenSize = std::int64_t(1) << 40;
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { config.validate(); }), "field hidden_size", "1099511627776");
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { LlamaForCausalLM model(config); }), "field hidden_size");
        config.hiddenSize = 64;
        config.numAttentionHeads = 1024;
        config.numKeyValueHeads = 1024;
        config.headDim = 4096;
        VERIFY_ERROR_MESSAGE(
            ladderErrorOf([&] { LlamaForCausalLM model(config); }), "num_attention_heads x head_dim");
    }

    // ---------------------------------------------------------------------------------------------------
    // Loading

    void loadingErrorsNameFileAndTensor_data()
    {
        QTest::addColumn<QString>("name");
        // Mutations separated by '|': config:<patch>, drop:<tensor>, add:<tensor>:<shape>,
        // shape:<tensor>:<shape>, nan:<tensor>, inf:<tensor>, int:<tensor>,
        // file:truncate|header|garbage|empty|none.
        QTest::addColumn<QString>("mutation");
        QTest::addColumn<QStringList>("needles"); // "{dir}" is the folder
        const QString llama = "llama-gqa";
        const QString cfg = "{dir}/config.json";
        const QString st = "{dir}/model.safetensors";
        // The config's sizes against the weights' shapes (checked before the model is allocated).
        QTest::newRow("hidden_size") << llama << R"(config:{"hidden_size": 128})"
                                     << QStringList { cfg, "vocab_size and hidden_size",
                                            "model.embed_tokens.weight the shape [320, 128]",
                                            "has [320, 64]" };
        QTest::newRow("vocab_size") << llama << R"(config:{"vocab_size": 400})"
                                    << QStringList { cfg, "model.embed_tokens.weight the shape [400, 64]" };
        QTest::newRow("num_key_value_heads")
            << llama << R"(config:{"num_key_value_heads": 4})"
            << QStringList { cfg, "num_key_value_heads x head_dim",
                   "model.layers.0.self_attn.k_proj.weight the shape [64, 64]", "has [32, 64]" };
        QTest::newRow("num_attention_heads") << llama << R"(config:{"num_attention_heads": 8})"
                                             << QStringList { cfg, "model.layers.0.self_attn.q_proj.weight" };
        QTest::newRow("head_dim") << llama << R"(config:{"head_dim": 32})"
                                  << QStringList { cfg,
                                         "model.layers.0.self_attn.q_proj.weight the shape [128, 64]" };
        QTest::newRow("intermediate_size") << llama << R"(config:{"intermediate_size": 256})"
                                           << QStringList { cfg, "intermediate_size",
                                                  "model.layers.0.mlp.gate_proj.weight the shape [256, 64]" };
        QTest::newRow("more layers") << llama << R"(config:{"num_hidden_layers": 3})"
                                     << QStringList { cfg, "field num_hidden_layers is 3", "has 2 layers" };
        QTest::newRow("fewer layers") << "mistral-window"
                                      << R"(config:{"num_hidden_layers": 1})"
                                      << QStringList { cfg, "field num_hidden_layers is 1", "has 2 layers" };
        QTest::newRow("untied without lm_head")
            << "qwen2-bias"
            << R"(config:{"tie_word_embeddings": false})"
            << QStringList { cfg, "field tie_word_embeddings is false", "no lm_head.weight" };
        // A config that would need a terabyte (vocab 2^22 x hidden 2^16 embeddings): refused by its shapes.
        const QString lying
            = R"(config:{"vocab_size": 4194304, "hidden_size": 65536, "intermediate_size": 262144,
            "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 4096})";
        QTest::newRow("lying sizes") << llama << lying
                                     << QStringList { cfg,
                                            "model.embed_tokens.weight the shape [4194304, 65536]" };
        QTest::newRow("lying sizes, no embedding")
            << llama << lying + "|drop:model.embed_tokens.weight"
            << QStringList { cfg, "model.safetensors: missing tensor model.embed_tokens.weight" };
        QTest::newRow("lying sizes, no layer 0 MLP")
            << llama << lying + "|drop:model.layers.0.mlp.up_proj.weight"
            << QStringList { cfg, "missing tensor model.layers.0.mlp.up_proj.weight" };

        QTest::newRow("missing up_proj")
            << llama << "drop:model.layers.1.mlp.up_proj.weight"
            << QStringList { st + ": missing tensor model.layers.1.mlp.up_proj.weight" };
        QTest::newRow("missing final norm")
            << llama << "drop:model.norm.weight" << QStringList { st + ": missing tensor model.norm.weight" };
        QTest::newRow("missing layer norm")
            << "mistral-window"
            << "drop:model.layers.1.post_attention_layernorm.weight"
            << QStringList { st + ": missing tensor model.layers.1.post_attention_layernorm.weight" };
        QTest::newRow("missing qwen2 bias")
            << "qwen2-bias"
            << "drop:model.layers.1.self_attn.v_proj.bias"
            << QStringList { st + ": missing tensor model.layers.1.self_attn.v_proj.bias" };
        QTest::newRow("missing embedding") << llama << "drop:model.embed_tokens.weight"
                                           << QStringList { "missing tensor model.embed_tokens.weight", cfg };

        QTest::newRow("unexpected q bias")
            << llama << "add:model.layers.0.self_attn.q_proj.bias:64"
            << QStringList { st + ": unexpected tensor model.layers.0.self_attn.q_proj.bias" };
        QTest::newRow("unexpected o bias (qwen2)")
            << "qwen2-bias"
            << "add:model.layers.1.self_attn.o_proj.bias:64"
            << QStringList { st + ": unexpected tensor model.layers.1.self_attn.o_proj.bias", "qwen2" };
        QTest::newRow("unexpected q bias (mistral)")
            << "mistral-window"
            << "add:model.layers.0.self_attn.q_proj.bias:64"
            << QStringList { st + ": unexpected tensor model.layers.0.self_attn.q_proj.bias", "mistral" };
        QTest::newRow("unexpected name") << llama << "add:model.extra.weight:4"
                                         << QStringList { st + ": unexpected tensor model.extra.weight" };
        QTest::newRow("unexpected layer") << llama << "add:model.layers.2.mlp.up_proj.weight:128x64"
                                          << QStringList { cfg, "num_hidden_layers is 2", "has 3 layers" };

        QTest::newRow("mis-shaped up_proj")
            << llama << "shape:model.layers.1.mlp.up_proj.weight:128x63"
            << QStringList { st
                   + ": tensor model.layers.1.mlp.up_proj.weight has shape [128, 63], expected [128, 64]" };
        QTest::newRow("mis-shaped norm")
            << llama << "shape:model.norm.weight:65"
            << QStringList { st + ": tensor model.norm.weight has shape [65], expected [64]" };
        QTest::newRow("norm as a matrix")
            << "qwen2-bias"
            << "shape:model.layers.0.input_layernorm.weight:64x1"
            << QStringList { st + ": tensor model.layers.0.input_layernorm.weight has shape [64, 1]" };
        QTest::newRow("mis-shaped bias")
            << "qwen2-bias"
            << "shape:model.layers.1.self_attn.k_proj.bias:31"
            << QStringList { st + ": tensor model.layers.1.self_attn.k_proj.bias" };
        QTest::newRow("tied lm_head mis-shaped")
            << "qwen2-bias"
            << "add:lm_head.weight:320x63" << QStringList { cfg, "lm_head.weight", "[320, 63]" };

        QTest::newRow("NaN weight") << llama << "nan:model.norm.weight"
                                    << QStringList { st
                                           + ": tensor model.norm.weight has NaN or infinite values" };
        QTest::newRow("Inf weight") << "mistral-window"
                                    << "inf:model.layers.1.mlp.down_proj.weight"
                                    << QStringList { st
                                           + ": tensor model.layers.1.mlp.down_proj.weight has NaN" };
        QTest::newRow("NaN lm_head") << llama << "nan:lm_head.weight"
                                     << QStringList { st + ": tensor lm_head.weight has NaN" };
        QTest::newRow("integer weight")
            << llama << "int:model.norm.weight"
            << QStringList { st + ": tensor model.norm.weight", "not a floating-point type" };

        QTest::newRow("truncated file") << llama << "file:truncate" << QStringList { st };
        QTest::newRow("header length past the end") << llama << "file:header" << QStringList { st };
        QTest::newRow("garbage header") << llama << "file:garbage" << QStringList { st };
        QTest::newRow("empty file") << llama << "file:empty" << QStringList { st };
        QTest::newRow("no weights") << llama << "file:none" << QStringList { "{dir}", "no weights found" };
    }
    void loadingErrorsNameFileAndTensor()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QString, mutation);
        QFETCH(QStringList, needles);
        auto config = fixtureConfig(name.toStdString());
        auto tensors = fixtureWeights(name.toStdString());
        QString fileChange;
        for (const auto& m : mutation.split('|')) {
            const auto kind = m.section(':', 0, 0);
            const auto tensor = m.section(':', 1, 1).toStdString();
            const auto rest = m.section(':', 2);
            if (kind == "config") {
                config = patched(config, json::parse(m.section(':', 1).toStdString()));
            } else if (kind == "drop") {
                QVERIFY2(tensors.erase(tensor) == 1, tensor.c_str());
            } else if (kind == "add" || kind == "shape") {
                QVERIFY2((kind == "add") != (tensors.count(tensor) == 1), tensor.c_str());
                tensors[tensor] = at::full(parseShape(rest), 0.5);
            } else if (kind == "nan" || kind == "inf") {
                auto t = tensors.at(tensor).clone();
                t.view({ -1 })[3] = kind == "nan" ? std::nan("") : HUGE_VAL;
                tensors[tensor] = t;
            } else if (kind == "int") {
                tensors[tensor] = tensors.at(tensor).to(at::kLong);
            } else {
                QCOMPARE(kind, QString("file"));
                fileChange = m.section(':', 1);
            }
        }
        const auto dir = writeModelFolder(config, tensors);
        const auto weights = dir + "/model.safetensors";
        auto bytes = tensor_file_test::readBytes(weights);
        if (fileChange == "truncate")
            tensor_file_test::writeBytes(weights, bytes.substr(0, bytes.size() / 2));
        else if (fileChange == "header")
            tensor_file_test::writeBytes(
                weights, tensor_file_test::le64(std::uint64_t(1) << 40) + bytes.substr(8));
        else if (fileChange == "garbage")
            tensor_file_test::writeBytes(
                weights, bytes.substr(0, 8) + std::string(40, '#') + bytes.substr(48));
        else if (fileChange == "empty")
            tensor_file_test::writeBytes(weights, "");
        else if (fileChange == "none")
            fs::remove(weights);
        VERIFY_ERROR_HAS_ALL(ladderErrorOf([&] { loadLlama(dir); }), needlesIn(needles, dir));
    }

    // HF's rotary buffer (saved by older transformers: model.layers.N.self_attn.rotary_emb.inv_freq) is
    // recomputed, not read, as HF does.
    void rotaryBuffersInTheFileAreIgnored()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto tensors = fixtureWeights("llama-gqa");
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = at::full({ 8 }, 7.0);
        const auto dir = writeModelFolder(fixtureConfig("llama-gqa"), tensors);
        auto loaded = loadLlama(dir);
        const auto expected = fixtureExpected("llama-gqa");
        const auto error = test::relativeError(logitsOf(*loaded.model, expected), expected.at("logits"));
        QVERIFY2(error < 1e-6, qPrintable(QString::number(error)));
    }

    void shardedErrorsNameTheFile()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto index = [](const std::string& dir) { return dir + "/model.safetensors.index.json"; };
        // A tensor the index lists but its shard lacks.
        auto dir = writeShardedCopy("llama-gqa");
        auto idx = readJson(index(dir));
        idx["weight_map"]["model.extra.weight"] = "model-00002-of-00002.safetensors";
        writeText(index(dir), idx.dump());
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { loadLlama(dir); }),
            dir + "/model-00002-of-00002.safetensors",
            "tensor model.extra.weight is listed in model.safetensors.index.json but missing from the shard");
        // A shard outside the folder.
        dir = writeShardedCopy("llama-gqa");
        idx = readJson(index(dir));
        idx["weight_map"]["model.norm.weight"] = "../model.safetensors";
        writeText(index(dir), idx.dump());
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { loadLlama(dir); }), index(dir), "model.norm.weight",
            "must be a plain file name");
        // A missing shard.
        dir = writeShardedCopy("llama-gqa");
        fs::remove(dir + "/model-00001-of-00002.safetensors");
        VERIFY_ERROR_MESSAGE(
            ladderErrorOf([&] { loadLlama(dir); }), dir + "/model-00001-of-00002.safetensors");
        // A tensor in a shard that the index does not list is not read: the model misses it.
        dir = writeShardedCopy("llama-gqa");
        idx = readJson(index(dir));
        idx["weight_map"].erase("model.norm.weight");
        writeText(index(dir), idx.dump());
        VERIFY_ERROR_MESSAGE(
            ladderErrorOf([&] { loadLlama(dir); }), index(dir), "missing tensor model.norm.weight");
        // A NaN in a shard: the error names the index (the file that exists), not the description.
        dir = writeShardedCopy("llama-gqa");
        const auto shard = dir + "/model-00002-of-00002.safetensors";
        auto tensors = readSafetensors(shard);
        auto t = tensors.at("model.norm.weight").clone();
        t[0] = std::nan("");
        tensors["model.norm.weight"] = t;
        writeSafetensors(shard, tensors);
        VERIFY_ERROR_MESSAGE(ladderErrorOf([&] { loadLlama(dir); }),
            index(dir) + ": tensor model.norm.weight has NaN or infinite values");
    }

    // ---------------------------------------------------------------------------------------------------
    // Stored and computed dtypes

    void reducedPrecisionStorage_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("dtype");
        for (const char* m : kModels) {
            QTest::newRow((std::string(m) + " BF16").c_str()) << QString(m) << "BF16";
            QTest::newRow((std::string(m) + " F16").c_str()) << QString(m) << "F16";
        }
    }
    void reducedPrecisionStorage()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QString, dtype);
        const auto n = name.toStdString();
        const auto scalar = dtype == "BF16" ? at::kBFloat16 : at::kHalf;
        const auto dir = writeModelFolder(fixtureConfig(n), convertedTo(fixtureWeights(n), scalar));
        auto stored = loadLlama(dir);
        QCOMPARE(QString::fromStdString(stored.storedDtype), dtype);
        QCOMPARE(stored.model->model->embed_tokens->weight.scalar_type(), at::kFloat);
        const auto expected = fixtureExpected(n);
        const auto logits = logitsOf(*stored.model, expected);

        // Exactly the fp32 model with every weight rounded to the stored dtype: the conversion is one
        // rounding.
        auto reference = loadLlama(test::decoderFixture(n));
        {
            c10::NoGradGuard noGrad;
            for (auto& p : reference.model->parameters())
                p.copy_(p.to(scalar).to(at::kFloat));
        }
        QVERIFY(at::equal(logits, logitsOf(*reference.model, expected)));

        const auto error = test::relativeError(logits, expected.at("logits"));
        qInfo("stored %s %s: logits relative error %.3g", qPrintable(name), qPrintable(dtype), error);
        QVERIFY2(error < (dtype == "BF16" ? kBf16StoredTolerance : kF16StoredTolerance),
            qPrintable(QString::number(error)));
    }

    void bf16Compute_data()
    {
        QTest::addColumn<QString>("name");
        for (const char* m : kModels)
            QTest::newRow(m) << QString(m);
    }
    void bf16Compute()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        const auto n = name.toStdString();
        BackboneLoadOptions options;
        options.dtype = at::kBFloat16;
        const auto loaded = loadBackbone(test::decoderFixture(n), options);
        QCOMPARE(QString::fromStdString(loaded.modelType),
            QString::fromStdString(fixtureConfig(n)["model_type"].get<std::string>()));
        auto* llama = asLlama(*loaded.model);
        QVERIFY(llama);
        QCOMPARE(llama->model->embed_tokens->weight.scalar_type(), at::kBFloat16);
        if (llama->config().tieWordEmbeddings)
            QVERIFY(llama->lmHeadWeight().is_same(llama->model->embed_tokens->weight));
        const auto expected = fixtureExpected(n);
        c10::NoGradGuard noGrad;
        const auto out
            = llama->forward(expected.at("input_ids"), expected.at("attention_mask"), expected.at("labels"));
        QCOMPARE(out.logits.scalar_type(), at::kBFloat16);
        QVERIFY(at::isfinite(out.logits).all().item<bool>());
        QVERIFY(std::isfinite(out.loss.item<double>()));
        const auto error = test::relativeError(out.logits, expected.at("logits"));
        const auto lossError
            = test::relativeError(out.loss.to(at::kFloat).reshape({ 1 }), expected.at("loss"));
        qInfo("bf16 compute %s: logits relative error %.3g, loss %.3g", qPrintable(name), error, lossError);
        QVERIFY2(error < kBf16ComputeTolerance, qPrintable(QString::number(error)));
        QVERIFY2(lossError < kBf16ComputeTolerance, qPrintable(QString::number(lossError)));
    }

    // ---------------------------------------------------------------------------------------------------
    // Other weight files

    void shardedCopyIsBitIdentical_data()
    {
        QTest::addColumn<QString>("name");
        for (const char* m : kModels)
            QTest::newRow(m) << QString(m);
    }
    void shardedCopyIsBitIdentical()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        const auto n = name.toStdString();
        const auto dir = writeShardedCopy(n);
        auto sharded = loadLlama(dir);
        QCOMPARE(QString::fromStdString(sharded.weightsDescription),
            QString("sharded safetensors (model.safetensors.index.json)"));
        auto single = loadLlama(test::decoderFixture(n));
        const auto expected = fixtureExpected(n);
        QVERIFY(at::equal(logitsOf(*sharded.model, expected), logitsOf(*single.model, expected)));
        QCOMPARE(sharded.config.tieWordEmbeddings, single.config.tieWordEmbeddings);
    }

    void torchBinCopyIsBitIdentical_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<bool>("tie");
        QTest::newRow("llama-gqa") << "llama-gqa" << false;
        QTest::newRow("mistral-window") << "mistral-window" << false;
        // A tied model's state_dict holds lm_head.weight as the embedding's own storage: equal, so tied.
        QTest::newRow("qwen2-bias, lm_head saved too") << "qwen2-bias" << true;
    }
    void torchBinCopyIsBitIdentical()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(bool, tie);
        const auto python = hfPython();
        if (python.empty()) {
            test::noteSkippedForMissingProgram("no python at $LADDER_HF_VENV or /opt/ladderbench/hf-venv: "
                                               "pytorch_model.bin needs torch.save");
            QSKIP("the HF venv's python is missing");
        }
        const auto n = name.toStdString();
        const auto dir = test::makeTempDir();
        fs::copy_file(test::decoderFixture(n) + "/config.json", dir + "/config.json");
        const auto failure = writeTorchBin(python, test::decoderFixture(n) + "/model.safetensors", dir, tie);
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        auto bin = loadLlama(dir);
        QCOMPARE(QString::fromStdString(bin.weightsDescription), QString("pytorch_model.bin"));
        auto single = loadLlama(test::decoderFixture(n));
        const auto expected = fixtureExpected(n);
        QVERIFY(at::equal(logitsOf(*bin.model, expected), logitsOf(*single.model, expected)));
        if (tie) {
            QVERIFY(bin.config.tieWordEmbeddings);
            QVERIFY(!bin.model->lm_head);
        }
    }

    // tie_word_embeddings as transformers 5.25's from_pretrained reads it (modeling_utils.py, tie_weights):
    // each case below was run through HF itself (AutoModelForCausalLM on the same files) when written.
    void tiedEmbeddingsAsHf()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto qwenConfig = fixtureConfig("qwen2-bias");
        const auto qwen = fixtureWeights("qwen2-bias");
        const auto expected = fixtureExpected("qwen2-bias");
        const auto& embedding = qwen.at("model.embed_tokens.weight");
        {
            // No lm_head.weight in the file: the head is the embedding, one storage.
            auto loaded = loadLlama(test::decoderFixture("qwen2-bias"));
            QVERIFY(!loaded.model->lm_head);
            QVERIFY(loaded.model->lmHeadWeight().is_same(loaded.model->model->embed_tokens->weight));
        }
        {
            // lm_head.weight present and equal: tied (HF: torch.equal, then tie).
            auto tensors = qwen;
            tensors["lm_head.weight"] = embedding.clone();
            auto loaded = loadLlama(writeModelFolder(qwenConfig, tensors));
            QVERIFY(loaded.config.tieWordEmbeddings);
            QVERIFY(loaded.model->lmHeadWeight().is_same(loaded.model->model->embed_tokens->weight));
            QVERIFY(test::relativeError(logitsOf(*loaded.model, expected), expected.at("logits")) < 1e-6);
        }
        {
            // lm_head.weight present and different: HF warns "both are present in the checkpoints with
            // different values, so we will NOT tie them" and uses each tensor as stored. With the head at
            // half the embedding, the logits are exactly half of HF's tied ones.
            auto tensors = qwen;
            tensors["lm_head.weight"] = embedding * 0.5;
            auto loaded = loadLlama(writeModelFolder(qwenConfig, tensors));
            QVERIFY(!loaded.config.tieWordEmbeddings);
            QVERIFY(loaded.model->lm_head);
            QVERIFY(!loaded.model->lmHeadWeight().is_same(loaded.model->model->embed_tokens->weight));
            QVERIFY(at::equal(loaded.model->model->embed_tokens->weight, embedding));
            const auto error
                = test::relativeError(logitsOf(*loaded.model, expected), expected.at("logits") * 0.5);
            QVERIFY2(error < 1e-6, qPrintable(QString::number(error)));
        }
        {
            // Only lm_head.weight: HF ties the embedding to it (it swaps source and target).
            auto tensors = qwen;
            tensors["lm_head.weight"] = embedding;
            tensors.erase("model.embed_tokens.weight");
            auto loaded = loadLlama(writeModelFolder(qwenConfig, tensors));
            QVERIFY(loaded.config.tieWordEmbeddings);
            QVERIFY(loaded.model->lmHeadWeight().is_same(loaded.model->model->embed_tokens->weight));
            QVERIFY(test::relativeError(logitsOf(*loaded.model, expected), expected.at("logits")) < 1e-6);
        }
        {
            // llama-gqa (its lm_head differs from its embedding) with tie_word_embeddings true: untied, as
            // HF, so it computes what HF computed for the untied fixture.
            const auto llamaExpected = fixtureExpected("llama-gqa");
            auto loaded = loadLlama(writeModelFolder(
                patched(fixtureConfig("llama-gqa"), json { { "tie_word_embeddings", true } }),
                fixtureWeights("llama-gqa")));
            QVERIFY(!loaded.config.tieWordEmbeddings);
            const auto error
                = test::relativeError(logitsOf(*loaded.model, llamaExpected), llamaExpected.at("logits"));
            QVERIFY2(error < 1e-6, qPrintable(QString::number(error)));
        }
        // Untied without lm_head.weight: HF would initialise a random head with a warning; this is refused
        // (loadingErrorsNameFileAndTensor "untied without lm_head").
    }

    // ---------------------------------------------------------------------------------------------------
    // The CLI

    void infoPrintsTheArchitecture_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QStringList>("lines");
        QTest::newRow("llama-gqa") << "llama-gqa"
                                   << QStringList { "architecture   llama (decoder-only, untied embeddings)",
                                          "heads          4 (key/value heads 2), head_dim 16",
                                          "sliding window none", "rope           default theta=10000" };
        QTest::newRow("qwen2-bias") << "qwen2-bias"
                                    << QStringList { "architecture   qwen2 (decoder-only, tied embeddings)",
                                           "biases         q/k/v", "rope           default theta=1e+06" };
        QTest::newRow("llama-rope-scaling")
            << "llama-rope-scaling"
            << QStringList { "architecture   llama (decoder-only, untied embeddings)",
                   "rope           llama3 theta=10000 factor 8 (low 1, high 4, original 32)" };
        QTest::newRow("mistral-window")
            << "mistral-window"
            << QStringList { "architecture   mistral (decoder-only, untied embeddings)", "sliding window 4",
                   "biases         none" };
    }
    void infoPrintsTheArchitecture()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, name);
        QFETCH(QStringList, lines);
        const auto dir = QString::fromStdString(test::decoderFixture(name.toStdString()));
        const auto text = test::runCli({ "info", "--model", dir });
        QVERIFY2(text.exitCode == 0, text.err.c_str());
        for (const auto& line : lines)
            QVERIFY2(tensor_file_test::contains(text.out, line.toStdString()),
                (line.toStdString() + " not in:\n" + text.out).c_str());
        const auto asJson = test::runCli({ "info", "--model", dir, "--json" });
        QVERIFY2(asJson.exitCode == 0, asJson.err.c_str());
        const auto j = json::parse(asJson.out);
        const auto config = LlamaConfig::fromJsonFile(dir.toStdString() + "/config.json");
        QCOMPARE(QString::fromStdString(j.at("architecture").get<std::string>()),
            QString::fromStdString(config.modelType));
        QCOMPARE(j.at("parameters").get<std::int64_t>(), config.parameterCount());
        QCOMPARE(j.at("key_value_heads").get<std::int64_t>(), std::int64_t(2));
        QCOMPARE(j.at("config").dump(), config.toJson().dump());
    }

    void infoRefusesABadFolder()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        // Sizes that disagree with the weights: exit 1, the config file and the field on stderr, nothing
        // read.
        const auto dir = writeModelFolder(
            patched(fixtureConfig("mistral-window"), json { { "intermediate_size", 256 } }),
            fixtureWeights("mistral-window"));
        const auto r = test::runCli({ "info", "--model", QString::fromStdString(dir) });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(tensor_file_test::contains(r.err, dir + "/config.json"), r.err.c_str());
        QVERIFY2(tensor_file_test::contains(r.err, "intermediate_size"), r.err.c_str());
        // An unsupported rope type.
        const auto yarn = writeModelFolder(
            patched(fixtureConfig("llama-gqa"),
                json::parse(R"({"rope_parameters": {"rope_type": "yarn", "factor": 2.0}})")),
            fixtureWeights("llama-gqa"));
        const auto y = test::runCli({ "info", "--model", QString::fromStdString(yarn) });
        QCOMPARE(y.exitCode, 1);
        QVERIFY2(tensor_file_test::contains(y.err, "rope_parameters.rope_type: unsupported rope type 'yarn'"),
            y.err.c_str());
    }
};

LADDER_TEST_GUILESS_MAIN(TestLlamaConfig)
#include "test_llama_config.moc"
