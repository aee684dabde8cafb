// `ladder export` (core/export, docs/EXPORT.md) end to end: tiny runs trained by the CLI on the shared
// fixtures' HF-made T5 checkpoints (v1.0: ReLU, tied; v1.1: gated-gelu, untied), exported as hf and peft
// folders, then loaded by the real transformers and peft from PyPI (tests/export/check_export.py, in a venv
// that shares the torch venv's torch): logits equal to LadderBench's to 1e-5 and the same greedy ids. The
// refusals (formats a method has no form in, a non-empty --out, an unfinished run) need no venv.

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <QProcess>
#include <QTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "export/RunModel.h"
#include "model/Generation.h"
#include "model/Safetensors.h"
#include "model/T5Tokenizer.h"
#include "store/ResultsStore.h"

using namespace ladder;
namespace fs = std::filesystem;

namespace {

std::string checkScript()
{
    return test::testDataDir() + "/../export/check_export.py";
}

// Runs `program args`; returns exit code (-1: did not finish) and stdout + stderr.
std::pair<int, std::string> runProgram(const QString& program, const QStringList& args, int timeoutMs)
{
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(program, args);
    if (!p.waitForFinished(timeoutMs)) {
        p.kill();
        p.waitForFinished();
        return { -1, p.readAll().toStdString() + "\n(timed out)" };
    }
    return { p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAll().toStdString() };
}

QStringList q(const std::vector<std::string>& args)
{
    QStringList out;
    for (const auto& a : args)
        out << QString::fromStdString(a);
    return out;
}

// Trains `method` on the fruit task and returns the run's id (the store's runs are numbered from 1).
std::int64_t train(const std::string& root, const std::string& store, const std::string& backbone,
    const std::string& task, const std::string& name, const nlohmann::json& method, double learningRate)
{
    const nlohmann::json spec { { "name", name }, { "backbone", backbone },
        { "task", test::fruitTaskSpec(task) }, { "method", method },
        { "training",
            { { "max_steps", 8 }, { "batch_size", 8 }, { "warmup_steps", 0 },
                { "learning_rate", learningRate }, { "eval_every_steps", 8 }, { "max_eval_examples", 4 },
                { "max_source_length", 16 } } },
        { "seed", 0 } };
    const auto path = root + "/" + name + ".json";
    std::ofstream(path) << spec.dump(2);
    const auto r = test::runCli({ "train", "--config", QString::fromStdString(path), "--store",
                                    QString::fromStdString(store), "--json" },
        300000);
    if (r.exitCode != 0)
        throw std::runtime_error(name + ": ladder train exited " + std::to_string(r.exitCode) + ": " + r.err);
    const auto run = nlohmann::json::parse(r.out); // the run, as `runs list --json` shows it
    if (run.at("status") != "finished")
        throw std::runtime_error(name + ": run " + run.dump() + " did not finish");
    return run.at("id").get<std::int64_t>();
}

// LadderBench's own logits and greedy ids of the stored run on fixed inputs, for check_export.py.
nlohmann::json writeReference(ResultsStore& store, std::int64_t runId, const std::string& path)
{
    auto run = loadFinishedRun(store, runId, "cpu");
    const std::vector<std::string> texts { "fruit text: the apple is here 2",
        "fruit text: the whale is here 4", "fruit text: the plum is here 1 and the tiger is here 3" };
    const std::vector<std::string> targets { "fruit", "animal", "fruit animal" };
    const auto batch = run.tokenizer->encodeBatch(texts, 0, true);
    const auto rows = static_cast<std::int64_t>(texts.size());
    const auto width = static_cast<std::int64_t>(batch.inputIds.front().size());
    std::vector<std::int64_t> flatIds, flatMask;
    std::vector<std::vector<std::int64_t>> labelIds;
    std::size_t labelWidth = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        flatIds.insert(flatIds.end(), batch.inputIds[i].begin(), batch.inputIds[i].end());
        flatMask.insert(flatMask.end(), batch.attentionMask[i].begin(), batch.attentionMask[i].end());
        labelIds.push_back(run.tokenizer->encode(targets[i]));
        labelWidth = std::max(labelWidth, labelIds.back().size());
    }
    std::vector<std::int64_t> flatLabels;
    for (auto& row : labelIds) {
        row.resize(labelWidth, -100);
        flatLabels.insert(flatLabels.end(), row.begin(), row.end());
    }
    const auto ids = at::tensor(flatIds, at::kLong).reshape({ rows, width });
    const auto mask = at::tensor(flatMask, at::kLong).reshape({ rows, width });
    const auto labels
        = at::tensor(flatLabels, at::kLong).reshape({ rows, static_cast<std::int64_t>(labelWidth) });
    c10::NoGradGuard noGrad;
    const auto logits = run.method->forward({ ids, mask, labels }).logits;
    GenerationOptions options = GenerationOptions::forConfig(t5Of(run, "test").config());
    options.maxNewTokens = 6;
    auto stepper = run.method->makeStepper();
    const auto generated = generate(*stepper, ids, mask, options).sequences;
    // The same in float64 (T5's variance and softmax in float32, as HF computes them): the export's exactness
    // apart from float32's rounding, which the trained v1.1 models amplify beyond 1e-5.
    // A backbone held in frozen storage (qlora) computes through its int8/int4 kernels: fp32 only.
    TensorMap tensors { { "input_ids", ids }, { "attention_mask", mask },
        { "decoder_input_ids", run.backbone->shiftRight(labels) },
        { "logits", logits.to(at::kFloat).contiguous() }, { "generated", generated } };
    if (!run.spec.method.quantizedBackbone()) {
        run.method->to(c10::Device(c10::kCPU), at::kDouble);
        tensors["logits64"] = run.method->forward({ ids, mask, labels }).logits.contiguous();
    }
    writeSafetensors(path, tensors);
    nlohmann::json tokenIds = nlohmann::json::array();
    for (const auto& t : texts)
        tokenIds.push_back(run.tokenizer->encode(t));
    return { { "texts", texts }, { "token_ids", tokenIds }, { "max_new_tokens", options.maxNewTokens } };
}

} // namespace

class TestExportHf : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    // Formats a method has no form in, a non-empty --out, an unfinished run: one clear line each, and
    // nothing written under --out.
    void refusals()
    {
        const auto root = test::makeTempDir();
        const auto backbone = root + "/backbone";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const auto store = root + "/store.sqlite";
        const auto lst
            = train(root, store, backbone, task, "lst", { { "method", "ladder" }, { "r", 4 } }, 3e-3);
        const auto lora
            = train(root, store, backbone, task, "lora", { { "method", "lora" }, { "rank", 4 } }, 1e-2);
        const auto prompt
            = train(root, store, backbone, task, "prompt", { { "method", "prompt" }, { "prompts", 4 } }, 0.3);
        const auto qlora = train(root, store, backbone, task, "qlora",
            { { "method", "qlora" }, { "rank", 4 }, { "backbone_dtype", "int8" }, { "bitfit", false } },
            1e-2);
        const auto exportRun = [&](std::int64_t id, const std::string& format, const std::string& out) {
            return test::runCli(q({ "export", "--run", std::to_string(id), "--store", store, "--format",
                format, "--out", out }));
        };
        struct Case {
            std::int64_t run;
            std::string format;
            std::string expected;
        };
        for (const auto& c : std::vector<Case> {
                 { lst, "hf", "an LST (ladder) run has no HuggingFace form" },
                 { lst, "peft", "method ladder has no PEFT adapter form here" },
                 { lora, "peft", "trained BitFit biases alongside (bitfit true, the paper's setting)" },
                 { prompt, "hf", "a prompt-tuning run changes no weight" },
                 { qlora, "peft", "PEFT would apply the adapter to the fp32 backbone the run never saw" },
             }) {
            const auto out = root + "/out-" + std::to_string(c.run) + "-" + c.format;
            const auto r = exportRun(c.run, c.format, out);
            QCOMPARE(r.exitCode, 1);
            QVERIFY2(r.err.find(c.expected) != std::string::npos, r.err.c_str());
            QVERIFY2(r.err.find("use --format") != std::string::npos, r.err.c_str());
            QVERIFY(!fs::exists(out));
        }
        // A folder with something in it is never written into.
        const auto busy = root + "/busy";
        fs::create_directories(busy);
        std::ofstream(busy + "/keep.txt") << "mine";
        auto r = exportRun(lora, "hf", busy);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("exists and is not empty") != std::string::npos, r.err.c_str());
        QCOMPARE(static_cast<int>(std::distance(fs::directory_iterator(busy), fs::directory_iterator())), 1);
        // An unknown run, an unknown format.
        r = exportRun(99, "hf", root + "/none");
        QCOMPARE(r.exitCode, 1);
        r = exportRun(lora, "onnx", root + "/none");
        QCOMPARE(r.exitCode, 2);
        // A finished LoRA run exports as hf (merged, biases kept) into an empty existing folder; no partial
        // folder stays beside it.
        const auto empty = root + "/empty";
        fs::create_directories(empty);
        r = exportRun(lora, "hf", empty);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("trust_remote_code=True") != std::string::npos, r.out.c_str());
        for (const char* f : { "config.json", "model.safetensors", "modeling_ladder_t5.py", "spiece.model",
                 "tokenizer_config.json", "special_tokens_map.json", "README.md" })
            QVERIFY2(fs::exists(empty + "/" + f), f);
        for (const auto& e : fs::directory_iterator(root))
            QVERIFY2(e.path().filename().string().find(".partial-") == std::string::npos, e.path().c_str());
    }

    // The round trip through the real transformers and peft.
    void roundTripThroughTransformersAndPeft()
    {
        const auto [venvStatus, venvOut] = runProgram(
            "python3", q({ checkScript(), "venv", "--torch-python", LADDER_TORCH_PYTHON }), 900000);
        if (venvStatus == 77) {
            test::noteSkippedForMissingProgram(venvOut);
            QSKIP(venvOut.c_str());
        }
        QVERIFY2(venvStatus == 0, venvOut.c_str());
        const auto python
            = QString::fromStdString(venvOut.substr(venvOut.rfind('\n', venvOut.size() - 2) + 1))
                  .trimmed(); // the last line
        // LADDER_EXPORT_TEST_DIR (a new folder): keeps the runs, exports and the manifest there to look at.
        const auto keep = qEnvironmentVariable("LADDER_EXPORT_TEST_DIR").toStdString();
        const auto root = keep.empty() ? test::makeTempDir() : keep;
        fs::create_directories(root);
        const auto task = test::writeFruitTask(root);
        const auto store = root + "/store.sqlite";
        nlohmann::json cases = nlohmann::json::array();
        struct Export {
            std::string name;
            nlohmann::json method;
            double learningRate;
            std::vector<std::pair<std::string, std::string>> exports; // (format, kind for check_export.py)
        };
        const std::vector<Export> runs {
            { "full", { { "method", "full" } }, 1e-2, { { "hf", "hf" } } },
            { "bitfit", { { "method", "bitfit" } }, 5e-2, { { "hf", "hf-remote" } } },
            { "lora", { { "method", "lora" }, { "rank", 4 }, { "alpha", 8 }, { "bitfit", false } }, 5e-2,
                { { "hf", "hf" }, { "peft", "peft" } } },
            { "lora-wi-o-freeze1",
                { { "method", "lora" }, { "rank", 2 }, { "targets", { "q", "o", "wi" } }, { "freeze", 1 },
                    { "bitfit", false } },
                5e-2, { { "hf", "hf" }, { "peft", "peft" } } },
            { "lora-bitfit", { { "method", "lora" }, { "rank", 4 } }, 5e-2, { { "hf", "hf-remote" } } },
            // QLoRA over an int8 backbone: the hf folder holds the dequantised weights with LoRA merged.
            { "qlora-int8",
                { { "method", "qlora" }, { "rank", 4 }, { "backbone_dtype", "int8" }, { "bitfit", false } },
                5e-2, { { "hf", "hf" } } },
            { "prompt", { { "method", "prompt" }, { "prompts", 5 } }, 0.3, { { "peft", "peft" } } },
        };
        ResultsStore reader;
        for (const char* variant : { "t5-v1_0-relu-synth", "t5-v1_1-gated-gelu-synth" }) {
            // The fixture's HF weights and config, with a SentencePiece model of its 256-id vocabulary (at
            // most 156 pieces + T5's 100 sentinels) trained on the task's text.
            const auto backbone = root + "/" + variant;
            fs::create_directories(backbone);
            for (const char* f : { "config.json", "model.safetensors" })
                fs::copy_file(
                    test::fixture(std::string("t5-synthetic-hf/") + variant + "/" + f), backbone + "/" + f);
            const auto [spmStatus, spmOut] = runProgram(
                python, q({ checkScript(), "make-spm", task, backbone + "/spiece.model", "156" }), 120000);
            QVERIFY2(spmStatus == 0, spmOut.c_str());
            for (const auto& run : runs) {
                const auto name = std::string(variant).substr(3, 4) + "-" + run.name; // v1_0-full, v1_1-full
                const auto id = train(root, store, backbone, task, name, run.method, run.learningRate);
                if (!reader.isOpen())
                    QVERIFY(reader.open(store, ResultsStore::OpenMode::ReadOnly));
                const auto reference = root + "/" + name + ".reference.safetensors";
                const auto inputs = writeReference(reader, id, reference);
                for (const auto& [format, kind] : run.exports) {
                    const auto out = root + "/" + name + "-" + format;
                    const auto r = test::runCli(q({ "export", "--run", std::to_string(id), "--store", store,
                        "--format", format, "--out", out }));
                    QVERIFY2(r.exitCode == 0, (name + " " + format + ": " + r.err).c_str());
                    auto c = inputs;
                    c.update({ { "name", name + " " + format }, { "kind", kind }, { "dir", out },
                        { "base", backbone }, { "reference", reference } });
                    cases.push_back(c);
                }
            }
        }
        const auto manifest = root + "/manifest.json";
        std::ofstream(manifest) << nlohmann::json { { "tolerance", 1e-5 }, { "cases", cases } }.dump(1);
        const auto [status, out] = runProgram(python, q({ checkScript(), "check", manifest }), 600000);
        for (const auto& line : QString::fromStdString(out).split('\n'))
            if (!line.startsWith("RESULT") && !line.trimmed().isEmpty())
                qInfo().noquote() << line;
        QVERIFY2(status == 0, out.c_str());
        QVERIFY2(out.find("FAIL") == std::string::npos, out.c_str());
    }
};

LADDER_TEST_MAIN(TestExportHf)
#include "test_export_hf.moc"
