// A run on a decoder-only backbone end to end, as `ladder train` runs one: the run spec names a backbone
// folder (tests/fixtures/decoder/llama-gqa: a Llama with its SentencePiece tokenizer.model;
// qwen2-bias: a Qwen2 with its byte-level tokenizer.json), the task is a generic JSONL file, the prompt
// template writes its fields into a prompt, and the trainer trains, evaluates by generation and reports.
// The backbones are random and tiny: a task learnable from one word checks that training, generation and
// scoring meet (a wrong prompt/target join or a wrong start token leaves the accuracy at chance).
#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include <fstream>

#include "LlamaTestHelpers.h"
#include "TestSupport.h"
#include "train/MemoryMeter.h"
#include "train/RunSpec.h"
#include "train/Trainer.h"
#include "train/TrainerInputs.h"
#include "util/Error.h"

using namespace ladder;

namespace {

struct Recorder : TrainerObserver {
    std::vector<TrainStep> steps;
    std::vector<TrainEval> evals;
    std::vector<std::string> logs;
    void onStep(const TrainStep& s) override { steps.push_back(s); }
    void onEval(const TrainEval& e) override { evals.push_back(e); }
    void onLog(const std::string&, const std::string& m) override { logs.push_back(m); }
};

// "the <fruit> ..." -> "yes", "the <animal> ..." -> "no" in three JSONL splits.
std::string writeTask()
{
    const auto dir = test::makeTempDir();
    const std::vector<std::string> fruit { "apple", "banana", "cherry", "grape", "lemon", "mango", "peach",
        "plum" };
    const std::vector<std::string> animal { "horse", "tiger", "mouse", "eagle", "snake", "whale", "sheep",
        "camel" };
    const std::vector<std::string> filler { "is here", "was seen today", "looks fine", "is on the table" };
    std::ofstream train(dir + "/train.jsonl"), validation(dir + "/validation.jsonl"),
        test(dir + "/test.jsonl");
    for (int rep = 0; rep < 4; ++rep)
        for (std::size_t i = 0; i < fruit.size(); ++i)
            for (int kind = 0; kind < 2; ++kind) {
                const auto& word = kind == 0 ? fruit[i] : animal[i];
                const nlohmann::json line { { "text",
                                                "the " + word + " " + filler[(i + rep) % filler.size()] },
                    { "label", kind == 0 ? "yes" : "no" } };
                (rep == 3 ? (i % 2 ? test : validation) : train) << line.dump() << "\n";
            }
    return dir;
}

RunSpec specFor(const std::string& backbone, const std::string& method, std::int64_t steps, double lr)
{
    const auto dir = writeTask();
    nlohmann::json j {
        { "backbone", test::decoderFixture(backbone) },
        { "task",
            { { "type", "generic" }, { "path", dir + "/train.jsonl" },
                { "validation_path", dir + "/validation.jsonl" }, { "test_path", dir + "/test.jsonl" },
                { "text_columns", { "text" } }, { "label_column", "label" }, { "label_targets", "text" },
                { "prompt_template", "Sentence: {text}\nIs it a fruit?" } } },
        { "method", MethodOptions::defaults(method).toJson() },
        { "training",
            { { "max_steps", steps }, { "batch_size", 8 }, { "warmup_steps", 5 }, { "learning_rate", lr },
                { "eval_every_steps", steps }, { "max_source_length", 32 } } },
        { "seed", 0 },
    };
    if (method == "ladder") {
        j["method"]["r"] = 2;
        j["method"]["init"] = "fisher";
        j["method"]["fisher_samples"] = 16;
    }
    return RunSpec::fromJson(j);
}

} // namespace

class TestDecoderTrainer : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    void trainsAndEvaluates_data()
    {
        QTest::addColumn<QString>("backbone");
        QTest::addColumn<QString>("method");
        QTest::addColumn<double>("lr");
        QTest::addColumn<double>("accuracy"); // the least accepted on validation and test
        // Chance is 0.5 on 8 validation and 8 test examples. The backbones are random (no pretraining): full
        // fine-tuning and LST's side network learn the word; LoRA (q, v) and prompt tuning over a random
        // backbone train their loss down but need more than these steps to generalise, so for them the run
        // has to finish and report, not to learn.
        QTest::newRow("llama full") << "llama-gqa"
                                    << "full" << 3e-3 << 0.75;
        QTest::newRow("llama lora") << "llama-gqa"
                                    << "lora" << 1e-2 << 0.0;
        QTest::newRow("llama ladder") << "llama-gqa"
                                      << "ladder" << 1e-2 << 0.75;
        QTest::newRow("qwen2 ladder") << "qwen2-bias"
                                      << "ladder" << 1e-2 << 0.75;
        QTest::newRow("qwen2 prompt") << "qwen2-bias"
                                      << "prompt" << 0.3 << 0.0;
    }
    void trainsAndEvaluates()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        QFETCH(QString, backbone);
        QFETCH(QString, method);
        QFETCH(double, lr);
        QFETCH(double, accuracy);
        Trainer trainer(specFor(backbone.toStdString(), method.toStdString(), 60, lr));
        Recorder rec;
        const auto summary = trainer.run(rec);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        QCOMPARE(static_cast<std::int64_t>(rec.steps.size()), std::int64_t(60));
        QVERIFY(rec.steps.back().loss < rec.steps.front().loss);
        qInfo("%s %s: loss %.3f -> %.3f, validation %.3f, test %.3f, peak %.1f MB", qPrintable(backbone),
            qPrintable(method), rec.steps.front().loss, rec.steps.back().loss, summary.bestValidation,
            summary.testMetric, summary.peakAllocatedBytes / 1e6);
        QVERIFY2(summary.bestValidation >= accuracy, qPrintable(QString::number(summary.bestValidation)));
        QVERIFY2(summary.testMetric >= accuracy, qPrintable(QString::number(summary.testMetric)));
        QVERIFY(!rec.evals.empty());
    }

    void badTemplateNamesTheField()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto spec = specFor("llama-gqa", "lora", 1, 1e-3);
        spec.task.generic["prompt_template"] = "Sentence: {sentence}";
        try {
            loadTrainerInputs(spec);
            QFAIL("a template naming no field must be refused");
        } catch (const Error& e) {
            const std::string what = e.what();
            QVERIFY2(what.find("prompt_template") != std::string::npos
                    && what.find("{sentence}") != std::string::npos && what.find("text") != std::string::npos,
                e.what());
        }
    }
};

QTEST_GUILESS_MAIN(TestDecoderTrainer)
#include "test_decoder_trainer.moc"
