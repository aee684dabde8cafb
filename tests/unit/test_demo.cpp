// The built-in demo: WordNet tasks (deterministic, valid labels, disjoint splits), span corruption, HF
// initialisation, and a tiny pretraining run whose folder loadT5 and T5Tokenizer load.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/DemoTasks.h"
#include "data/WordNet.h"
#include "model/T5Checkpoint.h"
#include "model/T5Tokenizer.h"
#include "train/Pretrain.h"
#include "util/Error.h"

using namespace ladder;

namespace {

#define REQUIRE_WORDNET()                                                                                    \
    do {                                                                                                     \
        if (!wordNetAvailable())                                                                             \
            QSKIP(                                                                                           \
                "WordNet's data files are not installed (Debian package wordnet-base, /usr/share/wordnet)"); \
    } while (0)

const std::vector<Synset>& wordnet()
{
    static const auto synsets = loadWordNet();
    return synsets;
}

// A slice of the real corpus for the tiny runs: every 40th sentence, ~4,000 lines.
std::vector<std::string> corpusSlice()
{
    const auto all = wordNetCorpus(wordnet());
    std::vector<std::string> slice;
    for (std::size_t i = 0; i < all.size(); i += 40)
        slice.push_back(all[i]);
    return slice;
}

std::string field(const DemoExample& e, const std::string& name)
{
    for (const auto& [k, v] : e.fields)
        if (k == name)
            return v;
    return {};
}

std::string readBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Whether a staging folder ("<name>.partial-...") was left in `dir`.
bool hasStagingLeftovers(const std::string& dir)
{
    const auto names
        = QDir(QString::fromStdString(dir)).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
    for (const auto& name : names)
        if (name.contains(".partial-"))
            return true;
    return false;
}

bool sameExamples(const std::vector<DemoExample>& a, const std::vector<DemoExample>& b)
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].id != b[i].id || a[i].fields != b[i].fields || a[i].label != b[i].label)
            return false;
    return true;
}

} // namespace

class TestDemo : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { at::manual_seed(0); }

    void stableHashAndSplits()
    {
        // FNV-1a 64 reference values: the splits depend on nothing else.
        QCOMPARE(fnv1a64(""), std::uint64_t(0xcbf29ce484222325ull));
        QCOMPARE(fnv1a64("a"), std::uint64_t(0xaf63dc4c8601ec8cull));
        QCOMPARE(fnv1a64("foobar"), std::uint64_t(0x85944171f73967e8ull));
        std::map<DemoSplit, int> counts;
        for (int i = 0; i < 10000; ++i) {
            char id[16];
            std::snprintf(id, sizeof id, "n%08d", i * 37);
            ++counts[demoSplitOf(id)];
        }
        QVERIFY(counts[DemoSplit::Train] > 7600 && counts[DemoSplit::Train] < 8400);
        QVERIFY(counts[DemoSplit::Validation] > 800 && counts[DemoSplit::Validation] < 1200);
        QVERIFY(counts[DemoSplit::Test] > 800 && counts[DemoSplit::Test] < 1200);
    }

    void supersenseTask()
    {
        REQUIRE_WORDNET();
        const auto task = buildSupersenseTask(wordnet());
        QCOMPARE(task.labels.size(), std::size_t(12));
        QVERIFY(std::is_sorted(task.labels.begin(), task.labels.end()));
        for (const char* expected :
            { "noun.animal", "noun.artifact", "noun.person", "noun.plant", "verb.change", "verb.motion" })
            QVERIFY2(std::count(task.labels.begin(), task.labels.end(), expected) == 1, expected);
        QCOMPARE(task.train.size(), std::size_t(4000));
        QCOMPARE(task.validation.size(), std::size_t(500));
        QCOMPARE(task.test.size(), std::size_t(500));

        // Deterministic.
        const auto again = buildSupersenseTask(wordnet());
        QVERIFY(sameExamples(task.train, again.train));
        QVERIFY(sameExamples(task.validation, again.validation));
        QVERIFY(sameExamples(task.test, again.test));

        // Labels valid and balanced (within one), labels true to WordNet, splits disjoint and by hash.
        std::map<std::string, const Synset*> byId;
        for (const auto& s : wordnet())
            byId[s.id()] = &s;
        std::set<std::string> seenIds, seenDefinitions;
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            std::map<std::string, int> counts;
            for (const auto& e : task.split(which)) {
                QVERIFY(std::count(task.labels.begin(), task.labels.end(), e.label) == 1);
                ++counts[e.label];
                QCOMPARE(demoSplitOf(e.id), which);
                QVERIFY2(seenIds.insert(e.id).second, e.id.c_str());
                QVERIFY2(seenDefinitions.insert(field(e, "definition")).second, e.id.c_str());
                const auto* s = byId.at(e.id);
                QCOMPARE(e.label, s->lexname);
                QCOMPARE(field(e, "definition"), s->definition);
            }
            const auto [minIt, maxIt] = std::minmax_element(counts.begin(), counts.end(),
                [](const auto& a, const auto& b) { return a.second < b.second; });
            QCOMPARE(counts.size(), task.labels.size());
            QVERIFY(maxIt->second - minIt->second <= 1);
        }
    }

    void definitionMatchTask()
    {
        REQUIRE_WORDNET();
        const auto task = buildDefinitionMatchTask(wordnet());
        QCOMPARE(task.labels, (std::vector<std::string> { "no", "yes" }));
        QCOMPARE(task.textColumns, (std::vector<std::string> { "word", "definition" }));
        QCOMPARE(task.train.size(), std::size_t(4000));
        QCOMPARE(task.validation.size(), std::size_t(500));
        QCOMPARE(task.test.size(), std::size_t(500));
        QVERIFY(sameExamples(task.test, buildDefinitionMatchTask(wordnet()).test));

        std::map<std::string, const Synset*> byId;
        for (const auto& s : wordnet())
            byId[s.id()] = &s;
        std::map<std::string, DemoSplit> definitionSplit;
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            int yes = 0;
            for (const auto& e : task.split(which)) {
                const auto anchorId = e.id.substr(0, 9);
                const auto* anchor = byId.at(anchorId);
                QCOMPARE(demoSplitOf(anchorId), which);
                QCOMPARE(field(e, "word"), anchor->lemmas.front());
                if (e.label == "yes") {
                    ++yes;
                    QCOMPARE(field(e, "definition"), anchor->definition);
                } else {
                    QCOMPARE(e.label, std::string("no"));
                    const auto* other = byId.at(e.id.substr(10));
                    QCOMPARE(demoSplitOf(other->id()), which);
                    QCOMPARE(other->pos, anchor->pos);
                    QCOMPARE(field(e, "definition"), other->definition);
                    for (const auto& lemma : other->lemmas)
                        QVERIFY(QString::fromStdString(lemma).compare(
                                    QString::fromStdString(anchor->lemmas.front()), Qt::CaseInsensitive)
                            != 0);
                }
                // A definition belongs to one split only.
                const auto [it, inserted] = definitionSplit.emplace(field(e, "definition"), which);
                QVERIFY(inserted || it->second == which);
            }
            QCOMPARE(static_cast<std::size_t>(yes) * 2, task.split(which).size());
        }
    }

    void writtenTasksAreReadable()
    {
        REQUIRE_WORDNET();
        const auto dir = test::makeTempDir() + "/tasks";
        QVERIFY(!demoTasksComplete(dir));
        // What a build killed half-way leaves: a staging folder named after a process that has ended.
        QProcess finished;
        finished.start("sleep", { "0.1" });
        QVERIFY(finished.waitForStarted());
        const auto deadPid = finished.processId();
        QVERIFY(deadPid > 0);
        QVERIFY(finished.waitForFinished());
        const auto deadStaging = dir + ".partial-" + std::to_string(deadPid) + "-0";
        demofs::makeDirectories(deadStaging + "/supersense");
        QVERIFY(ensureDemoTasks(dir));
        QVERIFY(!demofs::exists(deadStaging));
        QVERIFY(demoTasksComplete(dir));
        QVERIFY(!ensureDemoTasks(dir)); // cached
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));

        for (const auto& name : demoTaskNames()) {
            const auto manifest = nlohmann::json::parse(readBytes(dir + "/" + name + "/task.json"));
            QCOMPARE(manifest.at("name").get<std::string>(), name);
            QCOMPARE(manifest.at("kind").get<std::string>(), std::string("classification"));
            QCOMPARE(manifest.at("metric").get<std::string>(), std::string("accuracy"));
            QCOMPARE(manifest.at("label_column").get<std::string>(), std::string("label"));
            QCOMPARE(manifest.at("label_targets").get<std::string>(), std::string("text"));
            const auto labels = manifest.at("labels").get<std::vector<std::string>>();
            const auto columns = manifest.at("text_columns").get<std::vector<std::string>>();
            QVERIFY(manifest.at("chance_accuracy").get<double>() < 0.51);
            for (const char* split : { "train", "validation", "test" }) {
                std::ifstream in(dir + "/" + name + "/" + split + ".jsonl");
                std::string line;
                std::size_t rows = 0;
                while (std::getline(in, line)) {
                    const auto row = nlohmann::json::parse(line);
                    for (const auto& c : columns)
                        QVERIFY(!row.at(c).get<std::string>().empty());
                    QVERIFY(
                        std::count(labels.begin(), labels.end(), row.at("label").get<std::string>()) == 1);
                    ++rows;
                }
                QCOMPARE(rows, manifest.at("splits").at(split).at("size").get<std::size_t>());
            }
        }
        // A stale recipe version is rebuilt.
        {
            auto manifest = nlohmann::json::parse(readBytes(dir + "/supersense/task.json"));
            manifest["recipe_version"] = "demo-v0";
            std::ofstream(dir + "/supersense/task.json") << manifest.dump();
        }
        QVERIFY(!demoTasksComplete(dir));
        QVERIFY(ensureDemoTasks(dir));
        QVERIFY(demoTasksComplete(dir));
        // So are tasks written before label_targets existed (they trained on class indices).
        {
            auto manifest = nlohmann::json::parse(readBytes(dir + "/definition-match/task.json"));
            manifest.erase("label_targets");
            std::ofstream(dir + "/definition-match/task.json") << manifest.dump();
        }
        QVERIFY(!demoTasksComplete(dir));
        QVERIFY(ensureDemoTasks(dir));
        QVERIFY(demoTasksComplete(dir));
    }

    void noiseMask_data()
    {
        QTest::addColumn<int>("length");
        QTest::addColumn<int>("noise");
        QTest::addColumn<int>("spans");
        // round(L * 0.15), then round(noise / 3) spans (numpy rounding, half to even).
        QTest::newRow("114") << 114 << 17 << 6;
        QTest::newRow("40") << 40 << 6 << 2;
        QTest::newRow("10") << 10 << 2 << 1; // round(1.5) = 2, round(0.67) = 1
        QTest::newRow("2") << 2 << 1 << 1; // at least 1 noise token, at most length - 1
    }

    void noiseMask()
    {
        QFETCH(int, length);
        QFETCH(int, noise);
        QFETCH(int, spans);
        std::uint64_t state = 7;
        auto uniform = [&](std::uint64_t n) {
            return (state = state * 6364136223846793005ull + 1442695040888963407ull) % n;
        };
        for (int trial = 0; trial < 20; ++trial) {
            const auto mask = randomSpansNoiseMask(length, 0.15, 3.0, uniform);
            QCOMPARE(static_cast<int>(mask.size()), length);
            QCOMPARE(static_cast<int>(std::count(mask.begin(), mask.end(), true)), noise);
            int starts = 0;
            for (int i = 0; i < length; ++i)
                starts += mask[static_cast<std::size_t>(i)]
                    && (i == 0 || !mask[static_cast<std::size_t>(i - 1)]);
            QCOMPARE(starts, spans);
            QVERIFY(!mask.front()); // spans alternate, non-noise first
        }
    }

    void spanCorruptionRoundTrips()
    {
        std::vector<std::int64_t> tokens;
        for (int i = 0; i < 114; ++i)
            tokens.push_back(10 + i);
        std::uint64_t state = 3;
        auto uniform = [&](std::uint64_t n) {
            return (state = state * 6364136223846793005ull + 1442695040888963407ull) % n;
        };
        const auto mask = randomSpansNoiseMask(114, 0.15, 3.0, uniform);
        const std::int64_t sentinel0 = 8099, eos = 1;
        const auto c = applySpanCorruption(tokens, mask, sentinel0, eos, 100);
        QCOMPARE(c.inputs.size(), std::size_t(114 - 17 + 6 + 1));
        QCOMPARE(c.targets.size(), std::size_t(17 + 6 + 1));
        QCOMPARE(c.inputs.back(), eos);
        QCOMPARE(c.targets.back(), eos);
        QCOMPARE(c.targets.front(), sentinel0);
        // Putting each target span back at its sentinel restores the text.
        std::map<std::int64_t, std::vector<std::int64_t>> spans;
        std::int64_t current = -1;
        for (std::size_t i = 0; i + 1 < c.targets.size(); ++i) {
            if (c.targets[i] > sentinel0 - 100)
                current = c.targets[i];
            else
                spans[current].push_back(c.targets[i]);
        }
        std::vector<std::int64_t> restored;
        std::int64_t expectedSentinel = sentinel0;
        for (std::size_t i = 0; i + 1 < c.inputs.size(); ++i) {
            if (c.inputs[i] > sentinel0 - 100) {
                QCOMPARE(c.inputs[i], expectedSentinel--); // descending from <extra_id_0>
                restored.insert(restored.end(), spans[c.inputs[i]].begin(), spans[c.inputs[i]].end());
            } else {
                restored.push_back(c.inputs[i]);
            }
        }
        QCOMPARE(restored, tokens);
        QVERIFY_THROWS_EXCEPTION(Error, applySpanCorruption(tokens, mask, sentinel0, eos, 3));
    }

    void initialisationFollowsHF()
    {
        auto options = PretrainOptions::demo();
        const auto config = options.t5Config(8000);
        QCOMPARE(config.vocabSize, std::int64_t(8100));
        T5ForConditionalGeneration model(config);
        initT5WeightsLikeHF(*model, 5);
        const double d = 256, dkv = 64, heads = 4, dff = 1024;
        auto stdOf
            = [&](const std::string& name) { return model->named_parameters()[name].std().item<double>(); };
        auto near = [](double actual, double expected) { return std::abs(actual / expected - 1.0) < 0.05; };
        QVERIFY(near(stdOf("shared.weight"), 1.0));
        QVERIFY(near(stdOf("encoder.block.0.layer.0.SelfAttention.q.weight"), std::pow(d * dkv, -0.5)));
        QVERIFY(near(stdOf("decoder.block.3.layer.1.EncDecAttention.k.weight"), std::pow(d, -0.5)));
        QVERIFY(near(stdOf("decoder.block.1.layer.0.SelfAttention.v.weight"), std::pow(d, -0.5)));
        QVERIFY(near(stdOf("encoder.block.2.layer.0.SelfAttention.o.weight"), std::pow(heads * dkv, -0.5)));
        QVERIFY(near(stdOf("encoder.block.1.layer.1.DenseReluDense.wi.weight"), std::pow(d, -0.5)));
        QVERIFY(near(stdOf("decoder.block.0.layer.2.DenseReluDense.wo.weight"), std::pow(dff, -0.5)));
        QVERIFY(std::abs(stdOf("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
                        / std::pow(d, -0.5)
                    - 1.0)
            < 0.25);
        QCOMPARE(model->named_parameters()["encoder.final_layer_norm.weight"].min().item<double>(), 1.0);
        // The same seed gives the same weights.
        T5ForConditionalGeneration again(config);
        initT5WeightsLikeHF(*again, 5);
        QVERIFY(at::equal(model->shared->weight, again->shared->weight));
    }

    void sentencePieceIsDeterministic()
    {
        REQUIRE_WORDNET();
        const auto slice = corpusSlice();
        const auto a = trainT5SentencePiece(slice, 320, 0);
        const auto b = trainT5SentencePiece(slice, 320, 0);
        QVERIFY(a == b);
        const auto dir = test::makeTempDir();
        std::ofstream(dir + "/spiece.model", std::ios::binary) << a;
        const T5Tokenizer tokenizer(dir + "/spiece.model");
        QCOMPARE(tokenizer.vocabSize(), std::int64_t(320 + 100));
        QCOMPARE(tokenizer.idToPiece(1), std::string("</s>"));
        QCOMPARE(tokenizer.idToPiece(tokenizer.sentinelId(0)), std::string("<extra_id_0>"));
        QCOMPARE(tokenizer.decode(tokenizer.encode("the dog barked all night"), true),
            std::string("the dog barked all night"));
    }

    void tinyPretraining()
    {
        REQUIRE_WORDNET();
        const auto corpus = corpusSlice();
        const auto dir = test::makeTempDir() + "/backbone";
        auto options = PretrainOptions::tiny();
        options.numThreads = 2;
        std::vector<PretrainProgress::Stage> stages;
        std::int64_t lastStep = 0;
        const auto result = pretrainT5(corpus, dir, options, [&](const PretrainProgress& p) {
            if (stages.empty() || stages.back() != p.stage)
                stages.push_back(p.stage);
            if (p.stage == PretrainProgress::Stage::Training && p.step > 0) {
                lastStep = p.step;
                if (!std::isfinite(p.loss) || p.tokensPerSecond <= 0)
                    return false;
            }
            return true;
        });
        QVERIFY(!result.cancelled);
        QCOMPARE(lastStep, options.steps);
        QCOMPARE(stages.size(), std::size_t(5)); // vocabulary, tokenising, embeddings, pretraining, writing
        QVERIFY(stages[2] == PretrainProgress::Stage::Embeddings);
        // Co-occurrence rows for most pieces (not pad, eos, unk or pieces never seen in the slice).
        QVERIFY2(result.embeddedPieces > 250 && result.embeddedPieces < result.pieces,
            qPrintable(QString::number(result.embeddedPieces)));
        QCOMPARE(result.losses.size(), static_cast<std::size_t>(options.steps));
        m_tinyLosses = result.losses;
        qInfo("tiny pretraining: loss %.3f -> %.3f, held-out %.3f -> %.3f, %.1f s", result.initialLoss,
            result.finalLoss, result.heldOutLossBefore, result.heldOutLossAfter, result.wallSeconds);
        QVERIFY(result.finalLoss < result.initialLoss - 0.5);
        QVERIFY(result.heldOutLossAfter < result.heldOutLossBefore - 0.5);

        // Every file, complete, no staging folder left.
        for (const char* file : { "config.json", "model.safetensors", "spiece.model", "tokenizer_config.json",
                 "ladderbench.json" })
            QVERIFY2(demofs::isFile(dir + "/" + file), file);
        QVERIFY(backboneComplete(dir));
        QVERIFY(!demoBackboneComplete(dir)); // a custom recipe is not the demo's
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));
        const auto manifest = nlohmann::json::parse(readBytes(dir + "/ladderbench.json"));
        QCOMPARE(manifest.at("steps").get<std::int64_t>(), options.steps);
        QCOMPARE(manifest.at("losses").size(), static_cast<std::size_t>(options.steps));
        QCOMPARE(manifest.at("embeddings").at("init").get<std::string>(), std::string("cooccurrence"));
        QCOMPARE(manifest.at("embeddings").at("pieces_from_cooccurrence").get<std::int64_t>(),
            result.embeddedPieces);
        QCOMPARE(manifest.at("recipe_options").at("embedding_init").get<std::string>(),
            std::string("cooccurrence"));

        // It loads like any HF folder, and its loss on held-in text is finite.
        auto loaded = loadT5(dir);
        const T5Tokenizer tokenizer(dir + "/spiece.model");
        QCOMPARE(loaded.config.vocabSize, tokenizer.vocabSize());
        QCOMPARE(loaded.config.dModel, options.dModel);
        QCOMPARE(countParameters(*loaded.model), result.parameters);
        const auto ids = tokenizer.encode(corpus.front());
        const auto input = at::tensor(ids, at::kLong).unsqueeze(0);
        c10::NoGradGuard noGrad;
        const auto out = loaded.model->forward(input, at::ones_like(input), input);
        QVERIFY(std::isfinite(out.loss.item<double>()));

        // The output folder is never overwritten.
        QVERIFY_THROWS_EXCEPTION(Error, pretrainT5(corpus, dir, options));
    }

    void cancellationLeavesNothing()
    {
        REQUIRE_WORDNET();
        const auto dir = test::makeTempDir() + "/backbone";
        auto options = PretrainOptions::tiny();
        options.numThreads = 2;
        const auto result = pretrainT5(corpusSlice(), dir, options, [](const PretrainProgress& p) {
            return !(p.stage == PretrainProgress::Stage::Training && p.step >= 3);
        });
        QVERIFY(result.cancelled);
        QCOMPARE(result.losses.size(), std::size_t(3));
        // Same seed, same first steps: vocabulary, initialisation, data order, masks and dropout are seeded.
        if (m_tinyLosses.size() >= 3)
            for (std::size_t i = 0; i < 3; ++i)
                QCOMPARE(result.losses[i], m_tinyLosses[i]);
        QVERIFY(!demofs::exists(dir));
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));
    }

    void randomEmbeddingInit()
    {
        REQUIRE_WORDNET();
        const auto dir = test::makeTempDir() + "/backbone";
        auto options = PretrainOptions::tiny();
        options.steps = 2;
        options.embeddingInit = "random";
        bool sawEmbeddings = false;
        const auto result = pretrainT5(corpusSlice(), dir, options, [&](const PretrainProgress& p) {
            sawEmbeddings = sawEmbeddings || p.stage == PretrainProgress::Stage::Embeddings;
            return true;
        });
        QVERIFY(!sawEmbeddings);
        QCOMPARE(result.embeddedPieces, std::int64_t(0));
        const auto manifest = nlohmann::json::parse(readBytes(dir + "/ladderbench.json"));
        QCOMPARE(manifest.at("embeddings").at("init").get<std::string>(), std::string("random"));
        options.embeddingInit = "glove";
        try {
            options.validate();
            QFAIL("an unknown embedding_init was accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("embedding_init") != std::string::npos, e.what());
        }
    }

    void corpusTooSmall()
    {
        const auto dir = test::makeTempDir();
        auto options = PretrainOptions::tiny();
        options.vocabSize = 40;
        options.embeddingInit = "random"; // co-occurrence vectors of d_model 64 need 64 pieces
        std::vector<std::string> corpus(20, "a tiny corpus of the same few words");
        try {
            pretrainT5(corpus, dir + "/out", options);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("too small") != std::string::npos
                    || std::string(e.what()).find("SentencePiece") != std::string::npos,
                e.what());
        }
        QVERIFY(!demofs::exists(dir + "/out"));
    }

    void cliPretrainThenInfo()
    {
        REQUIRE_WORDNET();
        const auto dir = test::makeTempDir();
        {
            std::ofstream out(dir + "/corpus.txt");
            for (const auto& line : corpusSlice())
                out << line << "\n";
        }
        // The demo's model shape on a small corpus, for 3 steps: the command's wiring, not its quality.
        const auto pretrain = test::runCli({ "pretrain", "--corpus",
            QString::fromStdString(dir + "/corpus.txt"), "--out", QString::fromStdString(dir + "/model"),
            "--steps", "3", "--vocab-size", "320", "--batch-size", "4", "--threads", "2" });
        QVERIFY2(pretrain.exitCode == 0, pretrain.err.c_str());
        QCOMPARE(pretrain.out, dir + "/model\n");
        QVERIFY(pretrain.err.find("step 3/3") != std::string::npos);
        QVERIFY(backboneComplete(dir + "/model"));
        const auto info
            = test::runCli({ "info", "--model", QString::fromStdString(dir + "/model"), "--json" });
        QVERIFY2(info.exitCode == 0, info.err.c_str());
        const auto json = nlohmann::json::parse(info.out);
        QCOMPARE(json.at("config").at("vocab_size").get<std::int64_t>(), std::int64_t(420));
        QCOMPARE(json.at("config").at("d_model").get<std::int64_t>(), std::int64_t(256));
        // An existing output folder is refused with one line.
        const auto again = test::runCli({ "pretrain", "--corpus", QString::fromStdString(dir + "/corpus.txt"),
            "--out", QString::fromStdString(dir + "/model"), "--steps", "3" });
        QCOMPARE(again.exitCode, 1);
        QVERIFY2(again.err.find("already exists") != std::string::npos, again.err.c_str());
    }

private:
    std::vector<double> m_tinyLosses;
};

QTEST_GUILESS_MAIN(TestDemo)
#include "test_demo.moc"
