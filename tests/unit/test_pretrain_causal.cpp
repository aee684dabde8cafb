// The demo's decoder backbone (issue #21): a tiny Llama pretraining whose folder loadBackbone and
// loadTokenizer read as HF's LlamaForCausalLM / LlamaTokenizer would (config and tokenizer round-trips,
// HF's tensor names, Llama's special ids, pad = unk), whose held-out loss falls; cancellation; the demo
// cache's resumability for backbone-llama/ (`ladder demo --backbones llama` reuses a complete folder);
// and the demo sweep presets with their decoder rows.
#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <QDir>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/DemoTasks.h"
#include "data/SceneTasks.h"
#include "data/WordNet.h"
#include "model/BackboneLoad.h"
#include "model/Safetensors.h"
#include "model/T5Checkpoint.h"
#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"
#include "model/llama/LlamaModel.h"
#include "peft/MethodOptions.h"
#include "train/Pretrain.h"
#include "train/PretrainCausal.h"
#include "train/RunSpec.h"
#include "train/Sweep.h"
#include "util/Error.h"
#include "util/Json.h"

using namespace ladder;

namespace {

#define REQUIRE_WORDNET()                                                                                    \
    do {                                                                                                     \
        if (!wordNetAvailable())                                                                             \
            QSKIP(                                                                                           \
                "WordNet's data files are not installed (Debian package wordnet-base, /usr/share/wordnet)"); \
    } while (0)

// Every 40th sentence of the real corpus, ~4,000 lines (test_demo's slice).
std::vector<std::string> corpusSlice()
{
    static const auto all = wordNetCorpus(loadWordNet());
    std::vector<std::string> slice;
    for (std::size_t i = 0; i < all.size(); i += 40)
        slice.push_back(all[i]);
    return slice;
}

nlohmann::json readJson(const std::string& path)
{
    return readJsonFile(path, "test file");
}

void writeJson(const std::string& path, const nlohmann::json& json)
{
    std::ofstream out(path, std::ios::trunc);
    out << json.dump(2) << "\n";
}

bool hasStagingLeftovers(const std::string& dir)
{
    const auto names
        = QDir(QString::fromStdString(dir)).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
    for (const auto& name : names)
        if (name.contains(".partial-"))
            return true;
    return false;
}

CausalPretrainOptions tinyOptions()
{
    auto o = CausalPretrainOptions::tiny();
    o.numThreads = 1; // tiny ops: libgomp's spinning costs more than a second thread gains (PITFALLS.md)
    return o;
}

// A copy of a tiny folder whose manifest claims the demo recipe: what a finished `ladder demo` leaves.
void markAsDemo(const std::string& dir, const CausalPretrainOptions& recipe)
{
    auto manifest = readJson(dir + "/ladderbench.json");
    manifest["recipe"] = "demo";
    manifest["recipe_options"] = recipe.recipeJson();
    writeJson(dir + "/ladderbench.json", manifest);
}

} // namespace

class TestPretrainCausal : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { at::manual_seed(0); }

    void tinyPretrainingMakesALlamaFolder()
    {
        REQUIRE_WORDNET();
        const auto corpus = corpusSlice();
        const auto dir = test::makeTempDir() + "/backbone-llama";
        const auto options = tinyOptions();
        std::vector<PretrainProgress::Stage> stages;
        const auto result = pretrainLlama(corpus, dir, options, [&](const PretrainProgress& p) {
            if (stages.empty() || stages.back() != p.stage)
                stages.push_back(p.stage);
            return !(p.stage == PretrainProgress::Stage::Training && p.step > 0 && !std::isfinite(p.loss));
        });
        QVERIFY(!result.cancelled);
        QCOMPARE(stages.size(), std::size_t(5)); // vocabulary, tokenising, embeddings, pretraining, writing
        QCOMPARE(result.losses.size(), static_cast<std::size_t>(options.steps));
        m_tinyLosses = result.losses;
        qInfo("tiny decoder: %lld parameters, loss %.3f -> %.3f, held-out %.3f -> %.3f, %.1f s",
            static_cast<long long>(result.parameters), result.initialLoss, result.finalLoss,
            result.heldOutLossBefore, result.heldOutLossAfter, result.wallSeconds);
        // ln(400) = 6.0 at HF's init; the tiny run must learn well past unigram frequencies' first steps.
        QVERIFY(std::abs(result.heldOutLossBefore - std::log(400.0)) < 0.5);
        QVERIFY(result.heldOutLossAfter < result.heldOutLossBefore - 1.0);
        QVERIFY(result.finalLoss < result.initialLoss - 1.0);

        for (const char* file : { "config.json", "model.safetensors", "tokenizer.model",
                 "tokenizer_config.json", "ladderbench.json" })
            QVERIFY2(demofs::isFile(dir + "/" + file), file);
        QVERIFY(!demofs::exists(dir + "/spiece.model")); // else loadTokenizer would pick T5's
        QVERIFY(causalBackboneComplete(dir));
        QVERIFY(!backboneComplete(dir)); // not a T5 folder
        QVERIFY(!demoLlamaBackboneComplete(dir)); // a custom recipe is not the demo's
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));

        // config.json: HF's LlamaForCausalLM layout, and LlamaConfig reads back what the recipe made.
        const auto configJson = readJson(dir + "/config.json");
        QCOMPARE(configJson.at("model_type").get<std::string>(), std::string("llama"));
        QCOMPARE(configJson.at("architectures")[0].get<std::string>(), std::string("LlamaForCausalLM"));
        QCOMPARE(configJson.at("rope_theta").get<double>(), 10000.0); // transformers 4 reads it here
        QCOMPARE(configJson.at("tie_word_embeddings").get<bool>(), false);
        QCOMPARE(configJson.at("bos_token_id").get<int>(), 1);
        QCOMPARE(configJson.at("eos_token_id").get<int>(), 2);
        QCOMPARE(configJson.at("pad_token_id").get<int>(), 0);
        const auto config = LlamaConfig::fromJsonFile(dir + "/config.json");
        const auto expected = options.llamaConfig(result.pieces);
        QCOMPARE(config.toJson(), expected.toJson());
        QCOMPARE(config.numKeyValueHeads, std::int64_t(2));
        QCOMPARE(config.headDim, options.hiddenSize / options.numHeads);

        // tokenizer_config.json: HF's LlamaTokenizer, pad = unk.
        const auto tokenizerJson = readJson(dir + "/tokenizer_config.json");
        QCOMPARE(tokenizerJson.at("tokenizer_class").get<std::string>(), std::string("LlamaTokenizer"));
        QCOMPARE(tokenizerJson.at("pad_token").get<std::string>(), std::string("<unk>"));
        QCOMPARE(tokenizerJson.at("add_bos_token").get<bool>(), true);

        // HF's tensor names.
        const auto tensors = readSafetensors(dir + "/model.safetensors");
        for (const char* name : { "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight" })
            QVERIFY2(tensors.count(name) == 1, name);
        QCOMPARE(tensors.at("model.layers.0.self_attn.k_proj.weight").size(0), std::int64_t(2 * 16));

        // loadBackbone + loadTokenizer, as a run's backbone folder is read.
        const auto tokenizer = loadTokenizer(dir);
        QCOMPARE(QString::fromStdString(tokenizer->kind()), QStringLiteral("llama-sentencepiece"));
        QCOMPARE(tokenizer->vocabSize(), result.pieces);
        QCOMPARE(tokenizer->bosId(), std::optional<std::int64_t>(1));
        QCOMPARE(tokenizer->eosId(), std::int64_t(2));
        QCOMPARE(tokenizer->padId(), std::int64_t(0));
        QCOMPARE(tokenizer->idToPiece(3), std::string("<0x00>")); // byte fallback, after the specials
        const std::string text = corpus.front();
        const auto ids = tokenizer->encode(text);
        QCOMPARE(ids.front(), std::int64_t(1));
        QCOMPARE(tokenizer->decode(ids, /*skipSpecialTokens=*/true), text);
        const auto accented = tokenizer->encode("café naïve 42");
        QCOMPARE(tokenizer->decode(accented, true), std::string("café naïve 42"));

        auto loaded = loadBackbone(dir);
        QCOMPARE(QString::fromStdString(loaded.modelType), QStringLiteral("llama"));
        QCOMPARE(loaded.shape.encoderBlocks, std::int64_t(0));
        QCOMPARE(loaded.shape.decoderBlocks, options.numLayers);
        auto* llama = asLlama(*loaded.model);
        QVERIFY(llama != nullptr);
        QCOMPARE(countParameters(*llama), result.parameters);
        QCOMPARE(config.parameterCount(), result.parameters);
        // The loaded model scores held-in text near the training loss (far below ln(vocab)).
        const auto input = at::tensor(ids, at::kLong).unsqueeze(0);
        c10::NoGradGuard noGrad;
        const double loss = llama->forward(input, {}, input).loss.item<double>();
        QVERIFY2(std::isfinite(loss) && loss < std::log(400.0) - 0.5, qPrintable(QString::number(loss)));

        QVERIFY_THROWS_EXCEPTION(Error, pretrainLlama(corpus, dir, options)); // never overwritten
    }

    void cancellationLeavesNothing()
    {
        REQUIRE_WORDNET();
        const auto dir = test::makeTempDir() + "/backbone-llama";
        const auto result = pretrainLlama(corpusSlice(), dir, tinyOptions(), [](const PretrainProgress& p) {
            return !(p.stage == PretrainProgress::Stage::Training && p.step >= 3);
        });
        QVERIFY(result.cancelled);
        QCOMPARE(result.losses.size(), std::size_t(3));
        if (m_tinyLosses.size() >= 3) // seeded: the same first steps
            for (std::size_t i = 0; i < 3; ++i)
                QCOMPARE(result.losses[i], m_tinyLosses[i]);
        QVERIFY(!demofs::exists(dir));
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));
    }

    void optionsAreValidated()
    {
        auto o = CausalPretrainOptions::demo();
        o.validate();
        QVERIFY(o.sameRecipe(CausalPretrainOptions::demo()));
        o.numThreads = 2;
        QVERIFY(o.sameRecipe(CausalPretrainOptions::demo())); // threads do not change the recipe
        o.numKeyValueHeads = 3;
        try {
            o.validate();
            QFAIL("3 key/value heads for 4 heads were accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("num_key_value_heads") != std::string::npos, e.what());
        }
        // The demo's size: comparable with the demo T5 (9.4 M), and HF's GQA shape.
        const auto config = CausalPretrainOptions::demo().llamaConfig(8000);
        QCOMPARE(config.numKeyValueHeads, std::int64_t(2));
        QVERIFY(config.parameterCount() > 5'000'000 && config.parameterCount() < 10'000'000);
    }

    // `ladder demo` reuses a complete backbone-llama/ (no WordNet read, nothing rebuilt), and rebuilds a
    // stale one (here it fails on the missing WordNet instead, leaving the stale folder in place).
    void demoReusesACompleteDecoderFolder()
    {
        REQUIRE_WORDNET();
        const auto root = test::makeTempDir() + "/demo";
        const auto llamaDir = root + "/backbone-llama";
        demofs::makeDirectories(root);
        auto options = tinyOptions();
        options.steps = 2;
        pretrainLlama(corpusSlice(), llamaDir, options);
        QVERIFY(!demoLlamaBackboneComplete(llamaDir));
        markAsDemo(llamaDir, CausalPretrainOptions::demo());
        QVERIFY(demoLlamaBackboneComplete(llamaDir));
        QVERIFY(!ensureDemoLlamaBackbone(llamaDir, root + "/no-wordnet").has_value());

        ensureDemoTasks(root + "/tasks"); // seconds; `ladder demo` builds the tasks first
        ensureSceneTasks(root + "/tasks-vl/scenes"); // and the VL scene tasks (under a second)
        const auto run = test::runCli(
            { "demo", "--dir", QString::fromStdString(root), "--backbones", "llama", "--print-llama-path" });
        QVERIFY2(run.exitCode == 0, run.err.c_str());
        QCOMPARE(run.out, llamaDir + "\n");
        QVERIFY2(run.err.find("building") == std::string::npos, run.err.c_str());
        QVERIFY(!demofs::exists(root + "/backbone")); // --backbones llama leaves the T5 alone
        const auto json = test::runCli(
            { "demo", "--dir", QString::fromStdString(root), "--backbones", "llama", "--json" });
        QVERIFY2(json.exitCode == 0, json.err.c_str());
        QCOMPARE(nlohmann::json::parse(json.out).at("backbone_llama").get<std::string>(), llamaDir);

        // Another recipe's folder (or a partial one) is not reused.
        auto stale = CausalPretrainOptions::demo();
        stale.steps += 1;
        markAsDemo(llamaDir, stale);
        QVERIFY(!demoLlamaBackboneComplete(llamaDir));
        QVERIFY_THROWS_EXCEPTION(Error, ensureDemoLlamaBackbone(llamaDir, root + "/no-wordnet"));
        QVERIFY(demofs::isFile(llamaDir + "/ladderbench.json"));
        markAsDemo(llamaDir, CausalPretrainOptions::demo());
        std::remove((llamaDir + "/model.safetensors").c_str());
        QVERIFY(!demoLlamaBackboneComplete(llamaDir));
    }

    void demoSweepPresetsHaveDecoderRows_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("demo-sweep") << QStringLiteral("demo-sweep.json");
        QTest::newRow("demo-sweep-short") << QStringLiteral("demo-sweep-short.json");
    }

    void demoSweepPresetsHaveDecoderRows()
    {
        QFETCH(QString, file);
        const auto path = test::testDataDir() + "/../../resources/presets/" + file.toStdString();
        const auto specs = expandSweep(readJson(path), path);
        const auto t5Shape = PretrainOptions::demo().t5Config(8000).shape();
        const auto llamaShape = CausalPretrainOptions::demo().llamaConfig(8000).shape();
        std::set<std::string> t5Methods, decoderMethods, vlMethods;
        for (std::size_t i = 0; i < specs.size(); ++i) {
            const auto spec = RunSpec::fromJson(specs[i], path + " run " + std::to_string(i));
            QVERIFY2(spec.backbone == "demo" || spec.backbone == "demo-llama", spec.backbone.c_str());
            const bool decoder = spec.backbone == "demo-llama";
            // The vision-and-language rows (docs/VL.md): the scene demo on the T5, through the row's task.
            if (spec.task.type == "vl") {
                QCOMPARE(QString::fromStdString(spec.task.name), QStringLiteral("scenes"));
                QVERIFY(!decoder);
                vlMethods.insert(spec.method.method);
            } else {
                QCOMPARE(QString::fromStdString(spec.task.type), QStringLiteral("demo"));
            }
            // Each row's method fits its backbone (LoRA targets: wi/wo on T5, gate/up/down on Llama).
            spec.method.validate(decoder ? llamaShape : t5Shape);
            (decoder ? decoderMethods : t5Methods).insert(spec.method.method);
        }
        QVERIFY(t5Methods.count("ladder") && t5Methods.count("lora"));
        for (const char* method : { "full", "lora", "adapter", "prompt", "ladder" })
            QVERIFY2(decoderMethods.count(method), method);
        for (const char* method : { "full", "bitfit", "lora", "adapter", "prompt", "ladder" })
            QVERIFY2(vlMethods.count(method), method);
    }

private:
    std::vector<double> m_tinyLosses;
};

QTEST_GUILESS_MAIN(TestPretrainCausal)
#include "test_pretrain_causal.moc"
