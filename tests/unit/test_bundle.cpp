// Ladder bundles and `ladder predict` (docs/EXPORT.md): runs of LST, Adapters and LoRA trained on the fruit
// task over a tiny backbone, written as bundles, read back and predicted with; the predictions equal the
// trainer's evaluation (`ladder eval`'s path) on the same split, scores equal a teacher-forced recomputation,
// damaged bundles and bad input lines give errors naming the file, line and field.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <unistd.h>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "data/GlueTasks.h"
#include "data/PromptTemplate.h"
#include "export/LadderBundle.h"
#include "export/Predict.h"
#include "export/RunModel.h"
#include "export/TaskFormat.h"
#include "model/T5Tokenizer.h"
#include "peft/Method.h"
#include "store/ResultsStore.h"
#include "train/TaskLoad.h"
#include "train/Trainer.h"
#include "train/TrainerInputs.h"

using namespace ladder;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string readText(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<json> readJsonLines(const std::string& path)
{
    std::vector<json> lines;
    std::istringstream in(readText(path));
    std::string line;
    while (std::getline(in, line))
        if (!line.empty())
            lines.push_back(json::parse(line));
    return lines;
}

// A copy of a bundle folder to damage.
std::string copyBundle(const std::string& from, const std::string& to)
{
    fs::copy(from, to, fs::copy_options::recursive);
    return to;
}

template <typename F> std::string errorOf(F&& f)
{
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no error)";
}

} // namespace

class TestBundle : public QObject {
    Q_OBJECT

    std::string m_root;
    std::string m_backbone;
    std::string m_store;
    std::string m_task;
    std::map<std::string, std::int64_t> m_runs; // method (or decoder key) -> run id
    std::map<std::string, std::string> m_backbones; // the same keys -> the backbone folder

private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_root = test::makeTempDir();
        m_backbone = m_root + "/tiny-t5";
        test::writeTinyBackbone(m_backbone, 1);
        m_task = test::writeFruitTask(m_root);
        m_store = m_root + "/results.sqlite";
        for (const std::string method : { "ladder", "adapter", "lora" }) {
            const json spec { { "backbone", m_backbone }, { "task", test::fruitTaskSpec(m_task) },
                { "method",
                    method == "ladder"     ? json { { "method", "ladder" }, { "r", 4 } }
                        : method == "lora" ? json { { "method", "lora" }, { "rank", 4 } }
                                           : json { { "method", method } } },
                { "training",
                    { { "max_steps", 12 }, { "batch_size", 8 }, { "warmup_steps", 2 },
                        { "learning_rate", 0.01 }, { "max_source_length", 16 } } },
                { "seed", 0 } };
            const auto config = m_root + "/" + method + ".json";
            std::ofstream(config) << spec.dump(2);
            const auto r = test::runCli({ "train", "--config", QString::fromStdString(config), "--store",
                QString::fromStdString(m_store) });
            QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
            m_runs[method] = static_cast<std::int64_t>(m_runs.size()) + 1;
            m_backbones[method] = m_backbone;
        }
        // Decoder runs (issue #21): LST on a Llama with its tokenizer.model, LoRA on a Qwen2 with its
        // tokenizer.json; their sources are prompts.
        const auto decoders = fs::path(test::testDataDir()) / ".." / "fixtures" / "decoder";
        if (!fs::exists(decoders / "llama-gqa" / "model.safetensors"))
            return; // the decoder rows skip
        for (const auto& [key, folder, method] : std::vector<std::tuple<std::string, std::string, json>> {
                 { "llama-ladder", "llama-gqa",
                     json { { "method", "ladder" }, { "r", 2 }, { "init", "magnitude" } } },
                 { "qwen2-lora", "qwen2-bias", json { { "method", "lora" }, { "rank", 4 } } } }) {
            const auto backbone = (decoders / folder).lexically_normal().string();
            const json spec { { "backbone", backbone }, { "task", test::fruitTaskSpec(m_task) },
                { "method", method },
                { "training",
                    { { "max_steps", 12 }, { "batch_size", 8 }, { "warmup_steps", 2 },
                        { "learning_rate", 0.01 }, { "max_source_length", 32 } } },
                { "seed", 0 } };
            const auto config = m_root + "/" + key + ".json";
            std::ofstream(config) << spec.dump(2);
            const auto r = test::runCli({ "train", "--config", QString::fromStdString(config), "--store",
                QString::fromStdString(m_store) });
            QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
            m_runs[key] = static_cast<std::int64_t>(m_runs.size()) + 1;
            m_backbones[key] = backbone;
        }
    }

    // The bundle of each method predicts, input by input, what the trainer's evaluation generated on the
    // validation split, from sources built exactly as the task built them.
    void roundTripEqualsEvaluation_data()
    {
        QTest::addColumn<QString>("key");
        QTest::newRow("lst") << "ladder";
        QTest::newRow("adapter") << "adapter";
        QTest::newRow("lora") << "lora";
        QTest::newRow("llama lst") << "llama-ladder";
        QTest::newRow("qwen2 lora") << "qwen2-lora";
    }
    void roundTripEqualsEvaluation()
    {
        QFETCH(QString, key);
        if (!m_runs.count(key.toStdString()))
            QSKIP("tests/fixtures/decoder is missing");
        const auto id = m_runs.at(key.toStdString());
        const auto backbone = m_backbones.at(key.toStdString());
        const bool decoder = key.contains(QLatin1Char('-'));
        const QString method = decoder ? key.section(QLatin1Char('-'), 1) : key;
        ResultsStore store;
        QVERIFY(store.open(m_store));
        const auto dir = m_root + "/bundle-" + key.toStdString();
        writeLadderBundle(store, id, dir);
        const char* tokenizerFile = !decoder          ? "spiece.model"
            : key.startsWith(QStringLiteral("llama")) ? "tokenizer.model"
                                                      : "tokenizer.json";
        for (const char* f : { "bundle.json", "README.md", "run.json", "weights.safetensors", "task.json",
                 "figures.json", tokenizerFile, "backbone/config.json" })
            QVERIFY2(fs::exists(dir + "/" + f), f);
        QVERIFY(!fs::exists(dir + ".partial-" + std::to_string(::getpid())));

        const auto bundle = readLadderBundle(dir);
        QCOMPARE(bundle.runId, id);
        QCOMPARE(bundle.method, method.toStdString());
        QCOMPARE(bundle.backbonePath, fs::absolute(backbone).lexically_normal().string());
        QCOMPARE(bundle.backboneSha256, backboneIdentity(backbone).sha256);
        QCOMPARE(bundle.format.promptTemplate.empty(), !decoder);
        QCOMPARE(bundle.format.name, std::string("fruit"));
        QCOMPARE(bundle.format.labels, (std::vector<std::string> { "0", "1" }));
        RunRecord record;
        QVERIFY(store.getRun(id, &record));
        QCOMPARE(bundle.weightsSha256, record.checkpointSha256);
        QCOMPARE(bundle.figures.at("test_metric").get<double>(), *record.figures.testMetric);
        QVERIFY(readText(dir + "/README.md").find("ladder predict --bundle") != std::string::npos);

        // The reference: the run's stored weights evaluated as `ladder eval` does.
        auto stored = loadFinishedRun(store, id, "cpu");
        TrainerInputs inputs;
        inputs.backbone = stored.backbone;
        inputs.tokenizer = stored.tokenizer;
        inputs.task = loadTaskSplits(stored.spec.task);
        if (decoder) // as the trainer wrote its sources (train/TrainerInputs.cpp)
            applyPromptTemplate(inputs.task, "", "test");
        const auto reference = evaluateSplit(stored.spec, inputs, *stored.method, "validation");
        QVERIFY(!reference.predictions.empty());

        // Inputs as a user would give them: the text field and the example's id.
        const auto inputsPath = dir + "-inputs.jsonl";
        {
            std::ofstream in(inputsPath);
            for (const auto& ex : inputs.task.validation)
                in << json { { "id", ex.id }, { "text", ex.fields.at(0).second } }.dump() << "\n";
        }
        auto loaded = loadBundleModel(bundle, {}, "cpu");
        PredictOptions options;
        options.inputsPath = inputsPath;
        options.outPath = dir + "-predictions.jsonl";
        options.batchSize = 8; // the run's batch size: the same padded batches as its evaluation
        QCOMPARE(predictToFile(loaded, bundle.format, options),
            static_cast<std::int64_t>(inputs.task.validation.size()));
        const auto lines = readJsonLines(options.outPath);
        QCOMPARE(lines.size(), reference.predictions.size());
        for (std::size_t i = 0; i < lines.size(); ++i) {
            QCOMPARE(lines[i].at("id").get<std::string>(), reference.predictions[i].id);
            QCOMPARE(lines[i].at("input").get<std::string>(), inputs.task.validation[i].source);
            QCOMPARE(lines[i].at("prediction").get<std::string>(), reference.predictions[i].prediction);
            QVERIFY(lines[i].at("score").get<double>() <= 0.0);
        }
        // And through --run, from the store.
        const auto r = test::runCli({ "predict", "--run", QString::number(id), "--store",
            QString::fromStdString(m_store), "--inputs", QString::fromStdString(inputsPath), "--out",
            QString::fromStdString(dir + "-run.jsonl"), "--batch", "8" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto viaRun = readJsonLines(dir + "-run.jsonl");
        QCOMPARE(viaRun.size(), lines.size());
        for (std::size_t i = 0; i < lines.size(); ++i) {
            QCOMPARE(viaRun[i].at("id"), lines[i].at("id"));
            QCOMPARE(viaRun[i].at("input"), lines[i].at("input"));
            QCOMPARE(viaRun[i].at("prediction"), lines[i].at("prediction"));
            QVERIFY(
                std::abs(viaRun[i].at("score").get<double>() - lines[i].at("score").get<double>()) < 1e-5);
        }
    }

    // score: greedy, the sum of the generated tokens' log-probabilities; beams, HF's sequences_scores (that
    // sum over the hypothesis' length, decoder start counted, </s> not). Both recomputed here by one
    // teacher-forced forward of the method over the generated tokens.
    void scoresEqualTeacherForcedLogProbabilities_data()
    {
        QTest::addColumn<int>("beams");
        QTest::newRow("greedy") << 1;
        QTest::newRow("beams 3") << 3;
    }
    void scoresEqualTeacherForcedLogProbabilities()
    {
        QFETCH(int, beams);
        ResultsStore store;
        QVERIFY(store.open(m_store));
        auto run = loadFinishedRun(store, m_runs.at("ladder"), "cpu");
        auto format = taskFormatFor(run.spec, "fruit", *run.tokenizer);
        format.maxNewTokens = 6; // longer answers than the labels: the scores cover several tokens
        const std::vector<std::string> sources { "fruit text: the apple is here 3",
            "fruit text: the cat is here 1", "fruit text: banana" };
        const auto predictions = predictBatch(run, format, sources, beams);
        QCOMPARE(predictions.size(), sources.size());
        for (std::size_t i = 0; i < sources.size(); ++i) {
            const auto& target = predictions[i].ids;
            const auto n = static_cast<std::int64_t>(target.size());
            QVERIFY(n >= 1);
            const auto source = run.tokenizer->encode(sources[i], true);
            Seq2SeqBatch batch;
            batch.inputIds = at::tensor(source, at::kLong).unsqueeze(0);
            batch.attentionMask = at::ones_like(batch.inputIds);
            batch.labels = at::tensor(target, at::kLong).unsqueeze(0);
            at::NoGradGuard noGrad;
            const auto logits = run.method->forward(batch).logits.to(at::kDouble);
            const double sum
                = at::log_softmax(logits, -1).gather(2, batch.labels.unsqueeze(2)).sum().item<double>();
            // A beam's length: the decoder start and its tokens before </s>; an answer cut at maxNewTokens
            // (no </s>) counts every token.
            const bool ended = target.back() == run.tokenizer->eosId();
            const double expected = beams == 1 ? sum : sum / static_cast<double>(ended ? n : n + 1);
            QVERIFY2(std::abs(predictions[i].score - expected) < 1e-4,
                (std::to_string(predictions[i].score) + " vs " + std::to_string(expected)).c_str());
        }
    }

    // The GLUE tasks' sources as TaskFormat builds them equal the task reader's, for every fixture task.
    void glueFormatsEqualTheTaskReader()
    {
        const auto glue = test::fixture("glue");
        T5Tokenizer tokenizer(test::fixture("t5-spiece/spiece.model"));
        int checked = 0;
        for (const auto task : GlueTasks::all()) {
            const std::string display = GlueTasks::info(task).displayName;
            const auto folder = glue + "/" + display;
            if (!fs::exists(folder + "/dev.tsv"))
                continue;
            RunSpec spec;
            spec.task.type = "glue";
            spec.task.path = folder;
            spec.task.name = "auto";
            const auto format = taskFormatFor(spec, "", tokenizer);
            const auto examples = GlueTasks::readFile(task, folder + "/dev.tsv", "dev");
            for (std::size_t i = 0; i < examples.size() && i < 20; ++i) {
                std::vector<std::string> texts;
                for (const auto& [name, text] : examples[i].fields)
                    texts.push_back(text);
                QCOMPARE(format.formatSource(texts), examples[i].source);
                QCOMPARE(format.fields.size(), examples[i].fields.size());
                for (std::size_t k = 0; k < format.fields.size(); ++k)
                    QCOMPARE(format.fields[k].first, examples[i].fields[k].first);
            }
            ++checked;
        }
        QVERIFY(checked >= 4);
    }

    void damagedBundlesAreRefused()
    {
        ResultsStore store;
        QVERIFY(store.open(m_store));
        const auto good = m_root + "/bundle-good";
        writeLadderBundle(store, m_runs.at("adapter"), good);
        // Over a folder that is not empty: refused.
        QVERIFY(errorOf([&] {
            writeLadderBundle(store, m_runs.at("adapter"), good);
        }).find("already exists and is not an empty folder")
            != std::string::npos);

        // One changed byte of the weights.
        const auto flipped = copyBundle(good, m_root + "/bundle-flipped");
        {
            std::fstream f(flipped + "/weights.safetensors", std::ios::in | std::ios::out | std::ios::binary);
            f.seekg(-3, std::ios::end);
            char c = 0;
            f.get(c);
            f.seekp(-3, std::ios::end);
            f.put(static_cast<char>(c ^ 0x40));
        }
        auto e = errorOf([&] { readLadderBundle(flipped); });
        QVERIFY2(e.find("bundle-flipped/weights.safetensors: its SHA-256 is ") != std::string::npos
                && e.find("bundle.json records ") != std::string::npos,
            e.c_str());

        // A missing file.
        const auto missing = copyBundle(good, m_root + "/bundle-missing");
        fs::remove(missing + "/task.json");
        e = errorOf([&] { readLadderBundle(missing); });
        QVERIFY2(e.find("bundle-missing/task.json: missing (bundle.json lists it") != std::string::npos,
            e.c_str());

        // A newer format, a field of the wrong type, no manifest.
        const auto newer = copyBundle(good, m_root + "/bundle-newer");
        auto manifest = json::parse(readText(newer + "/bundle.json"));
        manifest["format_version"] = 7;
        std::ofstream(newer + "/bundle.json") << manifest.dump();
        e = errorOf([&] { readLadderBundle(newer); });
        QVERIFY2(
            e.find("field format_version: 7 is newer than this LadderBench reads (1)") != std::string::npos,
            e.c_str());
        manifest["format_version"] = 1;
        manifest["backbone"]["sha256"] = 42;
        std::ofstream(newer + "/bundle.json") << manifest.dump();
        e = errorOf([&] { readLadderBundle(newer); });
        QVERIFY2(e.find("bundle.json: field backbone: field sha256: expected a string, got 42")
                != std::string::npos,
            e.c_str());
        fs::remove(newer + "/bundle.json");
        e = errorOf([&] { readLadderBundle(newer); });
        QVERIFY2(e.find("bundle.json: missing (not a ladder bundle") != std::string::npos, e.c_str());
    }

    // The backbone: a recorded folder that is gone asks for --backbone; another backbone is refused by its
    // hash; a copy of the right one elsewhere works.
    void backboneIsCheckedByHash()
    {
        ResultsStore store;
        QVERIFY(store.open(m_store));
        const auto dir = m_root + "/bundle-backbone";
        writeLadderBundle(store, m_runs.at("lora"), dir);
        auto bundle = readLadderBundle(dir);
        const auto other = m_root + "/other-t5";
        test::writeTinyBackbone(other, 2);
        auto e = errorOf([&] { loadBundleModel(bundle, other, "cpu"); });
        QVERIFY2(e.find("changed since the run was trained") != std::string::npos
                && e.find(bundle.backboneSha256) != std::string::npos,
            e.c_str());
        bundle.backbonePath = m_root + "/gone";
        e = errorOf([&] { loadBundleModel(bundle, {}, "cpu"); });
        QVERIFY2(
            e.find("is not here; give the folder of that backbone with --backbone DIR") != std::string::npos,
            e.c_str());
        const auto moved = m_root + "/moved-t5";
        fs::copy(m_backbone, moved, fs::copy_options::recursive);
        auto loaded = loadBundleModel(bundle, moved, "cpu");
        QCOMPARE(loaded.backboneDirectory, moved);
    }

    // ladder predict on JSONL, TSV and CSV with a bad line in the middle: exit 1, the error names the file,
    // line and field, and every line before it is in --out.
    void badLineKeepsTheLinesBefore_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("error");
        QTest::addColumn<int>("written");
        QTest::newRow("jsonl missing field")
            << "in.jsonl"
            << "{\"text\": \"the apple is here 1\"}\n{\"id\": \"b\", \"text\": \"the cat is here 2\"}\n"
               "{\"text\": \"the pear is here 3\"}\n\n{\"sentence\": \"no text\"}\n{\"text\": \"the dog\"}\n"
            << "in.jsonl:5: field text: missing (looked for text and input; --text-column names another)"
            << 3;
        QTest::newRow("jsonl not a string") << "in.jsonl"
                                            << "{\"input\": \"the apple is here 1\"}\n{\"input\": 7}\n"
                                            << "in.jsonl:2: field input: expected a string, got 7" << 1;
        QTest::newRow("jsonl bad json") << "in.jsonl"
                                        << "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n"
                                        << "in.jsonl:3: not valid JSON" << 2;
        QTest::newRow("tsv field count")
            << "in.tsv"
            << "id\ttext\n1\tthe apple is here\n2\tthe cat\textra\n3\tthe dog\n"
            << "in.tsv:3: expected 2 tab-separated fields as the header has, found 3" << 1;
        QTest::newRow("csv field count")
            << "in.csv"
            << "text,id\n\"the apple, here\",a\nthe cat,b\nthe dog\nthe pear,d\n"
            << "in.csv:4: expected 2 comma-separated fields as the header has, found 1" << 2;
    }
    void badLineKeepsTheLinesBefore()
    {
        QFETCH(QString, name);
        QFETCH(QString, text);
        QFETCH(QString, error);
        QFETCH(int, written);
        const auto dir = m_root + "/bad-" + std::to_string(std::hash<std::string>()(text.toStdString()));
        fs::create_directories(dir);
        const auto inputs = dir + "/" + name.toStdString();
        std::ofstream(inputs) << text.toStdString();
        const auto out = dir + "/out.jsonl";
        const auto r = test::runCli({ "predict", "--run", QString::number(m_runs.at("ladder")), "--store",
            QString::fromStdString(m_store), "--inputs", QString::fromStdString(inputs), "--out",
            QString::fromStdString(out), "--batch", "2" });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("ladder predict: " + error.toStdString()) != std::string::npos, r.err.c_str());
        const auto lines = readJsonLines(out);
        QCOMPARE(static_cast<int>(lines.size()), written);
        for (const auto& line : lines) {
            QVERIFY(line.contains("id") && line.contains("input") && line.contains("prediction")
                && line.contains("score"));
            QVERIFY(line.at("input").get<std::string>().rfind("fruit text: ", 0) == 0);
        }
        if (name.endsWith(".jsonl") && written == 3) { // ids: the "id" field, else the line number
            QCOMPARE(lines[0].at("id"), json(1));
            QCOMPARE(lines[1].at("id"), json("b"));
            QCOMPARE(lines[2].at("id"), json(3));
        }
    }

    void predictFromTheCommandLineWithBeams()
    {
        ResultsStore store;
        QVERIFY(store.open(m_store));
        const auto dir = m_root + "/bundle-cli";
        writeLadderBundle(store, m_runs.at("ladder"), dir);
        const auto inputs = m_root + "/cli.csv";
        std::ofstream(inputs) << "id,sentence\nq1,the apple is here 4\nq2,the cat is here 9\n";
        const auto out = m_root + "/cli.jsonl";
        auto r = test::runCli(
            { "predict", "--bundle", QString::fromStdString(dir), "--inputs", QString::fromStdString(inputs),
                "--text-column", "sentence", "--out", QString::fromStdString(out), "--num-beams", "3" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.err.find("predict: 2 predictions of bundle") != std::string::npos, r.err.c_str());
        const auto lines = readJsonLines(out);
        QCOMPARE(lines.size(), std::size_t(2));
        QCOMPARE(lines[0].at("id"), json("q1"));
        QCOMPARE(lines[0].at("input"), json("fruit text: the apple is here 4"));
        // Usage: --text-column names a column the file does not have; neither --run nor --bundle.
        r = test::runCli({ "predict", "--bundle", QString::fromStdString(dir), "--inputs",
            QString::fromStdString(inputs), "--text-column", "body", "--out", QString::fromStdString(out) });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(
            r.err.find("cli.csv:1: header: field body: missing (--text-column body)") != std::string::npos,
            r.err.c_str());
        r = test::runCli(
            { "predict", "--inputs", QString::fromStdString(inputs), "--out", QString::fromStdString(out) });
        QCOMPARE(r.exitCode, 2);
    }

    // A bundle imported into another store is a finished run there with its weights, figures and
    // evaluations, exported again bit for bit; importing it twice adds nothing.
    void importIntoAnotherStore()
    {
        ResultsStore store;
        QVERIFY(store.open(m_store));
        const auto dir = m_root + "/bundle-import";
        writeLadderBundle(store, m_runs.at("ladder"), dir);
        RunRecord original;
        QVERIFY(store.getRun(m_runs.at("ladder"), &original));

        ResultsStore other;
        QVERIFY(other.open(m_root + "/other.sqlite"));
        bool present = true;
        const auto id = importLadderBundle(other, dir, &present);
        QVERIFY(!present);
        RunRecord run;
        QVERIFY(other.getRun(id, &run));
        QCOMPARE(run.status, RunState::Finished);
        QCOMPARE(run.specHash, original.specHash);
        QCOMPARE(run.name, original.name);
        QCOMPARE(run.task, original.task);
        QCOMPARE(run.checkpointSha256, original.checkpointSha256);
        QCOMPARE(*run.figures.testMetric, *original.figures.testMetric);
        QCOMPARE(*run.figures.peakAllocatedBytes, *original.figures.peakAllocatedBytes);
        std::string path;
        QVERIFY(other.verifyCheckpoint(id, &path));
        std::vector<Evaluation> a, b;
        QVERIFY(store.getEvaluations(original.id, &a));
        QVERIFY(other.getEvaluations(id, &b));
        QCOMPARE(b.size(), a.size());
        QCOMPARE(importLadderBundle(other, dir, &present), id);
        QVERIFY(present);
        const auto again = m_root + "/bundle-again";
        writeLadderBundle(other, id, again);
        QCOMPARE(readLadderBundle(again).weightsSha256, original.checkpointSha256);
    }
};

LADDER_TEST_GUILESS_MAIN(TestBundle)

#include "test_bundle.moc"
