// The trainer: learns a trivially learnable task, stops within one step when cancelled, ends as failed on
// a NaN loss, and reports memory and evaluations; its optimizer steps and learning rates equal HF
// Trainer's (tests/data/hf-schedule.json, made by tools/reference/hf_schedule.py with transformers).
#include <cstdlib>
#include <fstream>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/T5Tokenizer.h"
#include "train/Trainer.h"
#include "util/Error.h"

using namespace ladder;

namespace {

// A tiny T5 over the real T5 vocabulary (so the real tokenizer can be used).
T5ForConditionalGeneration tinyBackbone()
{
    at::manual_seed(3);
    T5Config c;
    c.vocabSize = 32128;
    c.dModel = 32;
    c.dKv = 8;
    c.numHeads = 4;
    c.dFf = 64;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 16;
    c.dropoutRate = 0.0;
    T5ForConditionalGeneration m(c);
    at::NoGradGuard g;
    m->shared->weight.normal_(0.0, 1.0);
    return m;
}

// "fruit: <word> ..." -> "0" for fruit words, "1" for animals: learnable from one token.
TaskSplits trivialTask()
{
    TaskSplits t;
    t.info.name = "trivial";
    t.info.kind = TaskKind::Classification;
    t.info.labels = { "0", "1" };
    t.info.labelNames = { "fruit", "animal" };
    t.info.metrics = { "accuracy" };
    t.info.mainMetric = "accuracy";
    const std::vector<std::string> fruit { "apple", "banana", "cherry", "grape", "lemon", "mango", "peach",
        "plum" };
    const std::vector<std::string> animal { "horse", "tiger", "mouse", "eagle", "snake", "whale", "sheep",
        "camel" };
    const std::vector<std::string> filler { "is here", "was seen today", "looks fine", "is on the table" };
    int n = 0;
    for (int rep = 0; rep < 4; ++rep)
        for (std::size_t i = 0; i < fruit.size(); ++i)
            for (int kind = 0; kind < 2; ++kind) {
                TextExample e;
                const auto& word = kind == 0 ? fruit[i] : animal[i];
                e.source = "trivial sentence: the " + word + " " + filler[(i + rep) % filler.size()];
                e.target = std::to_string(kind);
                e.label = e.target;
                e.labelIndex = kind;
                e.id = "ex-" + std::to_string(n++);
                (rep == 3 ? (i % 2 ? t.test : t.validation) : t.train).push_back(e);
            }
    return t;
}

RunSpec specFor(const std::string& method, std::int64_t maxSteps)
{
    RunSpec s;
    s.backbone = "tiny";
    s.method = MethodOptions::defaults(method);
    s.training.maxSteps = maxSteps;
    s.training.batchSize = 8;
    s.training.warmupSteps = 5;
    s.training.learningRate = 1e-2;
    s.training.evalEverySteps = 20;
    s.training.maxSourceLength = 16;
    s.seed = 0;
    return s;
}

TrainerInputs inputs()
{
    LADDER_REQUIRE_FIXTURES_OR_THROW();
    TrainerInputs in;
    in.backbone = tinyBackbone();
    in.tokenizer = std::make_shared<T5Tokenizer>(test::fixture("t5-spiece/spiece.model"));
    in.task = trivialTask();
    return in;
}

struct Recorder : TrainerObserver {
    std::vector<TrainStep> steps;
    std::vector<TrainEval> evals;
    std::int64_t cancelAtStep = 0;
    bool started = false;
    void onStarted(const RunSummary&) override { started = true; }
    void onStep(const TrainStep& s) override { steps.push_back(s); }
    void onEval(const TrainEval& e) override { evals.push_back(e); }
    bool cancelRequested() override
    {
        return cancelAtStep > 0 && !steps.empty() && steps.back().step >= cancelAtStep;
    }
};

} // namespace

class TestTrainer : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        installCpuMemoryTracker();
        LADDER_REQUIRE_FIXTURES();
    }

    void learnsTrivialTask()
    {
        Trainer trainer(specFor("full", 80));
        Recorder rec;
        const auto summary = trainer.run(inputs(), rec);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        QVERIFY(rec.started);
        QCOMPARE(static_cast<std::int64_t>(rec.steps.size()), std::int64_t(80));
        QVERIFY(rec.steps.back().loss < rec.steps.front().loss);
        QVERIFY(rec.steps.front().learningRate < rec.steps[5].learningRate); // warm-up
        QVERIFY(rec.steps.back().learningRate < rec.steps[5].learningRate); // decay
        QVERIFY(summary.peakAllocatedBytes > summary.weightBytes);
        qInfo("best validation accuracy %.3f at step %lld, test %.3f", summary.bestValidation,
            static_cast<long long>(summary.bestStep), summary.testMetric);
        QVERIFY(summary.bestValidation >= 0.95);
        QVERIFY(summary.testMetric >= 0.95);
        QCOMPARE(QString::fromStdString(rec.evals.back().split), QString("test"));
    }

    void ladderLearnsTrivialTask()
    {
        auto spec = specFor("ladder", 200);
        spec.method.r = 2;
        spec.training.learningRate = 3e-2;
        Trainer trainer(spec);
        Recorder rec;
        const auto summary = trainer.run(inputs(), rec);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        qInfo("LST best validation accuracy %.3f, test %.3f", summary.bestValidation, summary.testMetric);
        QVERIFY(summary.bestValidation >= 0.95);
    }

    void cancelsWithinOneStep()
    {
        Trainer trainer(specFor("lora", 50));
        Recorder rec;
        rec.cancelAtStep = 3;
        const auto summary = trainer.run(inputs(), rec);
        QCOMPARE(summary.status, RunOutcome::Cancelled);
        QCOMPARE(rec.steps.back().step, std::int64_t(3));
        QCOMPARE(summary.steps, std::int64_t(3));
    }

    void nanLossFailsTheRun()
    {
        Trainer trainer(specFor("adapter", 50));
        trainer.lossHook = [](at::Tensor& loss, std::int64_t step) {
            if (step == 4)
                loss = loss * std::numeric_limits<double>::quiet_NaN();
        };
        Recorder rec;
        const auto summary = trainer.run(inputs(), rec);
        QCOMPARE(summary.status, RunOutcome::Failed);
        QVERIFY2(summary.message.find("NaN at step 4") != std::string::npos, summary.message.c_str());
        QCOMPARE(rec.steps.size(), std::size_t(3));
    }

    // HF Trainer as the reference: for each (batches per epoch, accumulation, epochs, warm-up) the number of
    // optimizer steps planned and taken, and the learning rate of every step (HF's lr 1.0 gives the
    // schedule's multipliers; here lr 1e-3 times them).
    void hfScheduleAndAccumulation()
    {
        const std::string path = std::string(LADDER_TEST_DATA_DIR) + "/hf-schedule.json";
        std::ifstream in(path);
        QVERIFY2(in.good(), ("missing " + path).c_str());
        const auto reference = nlohmann::json::parse(in);
        QVERIFY(reference.at("cases").size() >= 5);
        for (const auto& c : reference.at("cases")) {
            auto spec = specFor("bitfit", 0);
            spec.training.maxSteps = 0;
            spec.training.epochs = c.at("epochs").get<std::int64_t>();
            spec.training.batchSize = c.at("batch_size").get<std::int64_t>();
            spec.training.gradientAccumulation = c.at("gradient_accumulation").get<std::int64_t>();
            spec.training.warmupSteps = c.at("warmup_steps").get<std::int64_t>();
            spec.training.learningRate = 1e-3;
            spec.training.evalEverySteps = 0;
            spec.training.maxEvalExamples = 2;
            auto in = inputs();
            QCOMPARE(static_cast<std::int64_t>(in.task.train.size()), c.at("examples").get<std::int64_t>());
            Trainer trainer(spec);
            Recorder rec;
            const auto summary = trainer.run(std::move(in), rec);
            QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
            const auto& rates = c.at("learning_rates");
            const auto label = QString("batches %1, accumulation %2, epochs %3, warm-up %4")
                                   .arg(c.at("batches_per_epoch").get<int>())
                                   .arg(c.at("gradient_accumulation").get<int>())
                                   .arg(c.at("epochs").get<int>())
                                   .arg(c.at("warmup_steps").get<int>());
            qInfo("%s: HF planned %d and took %d steps; LadderBench planned %lld and took %zu",
                qPrintable(label), c.at("planned_steps").get<int>(), c.at("steps").get<int>(),
                static_cast<long long>(rec.steps.empty() ? 0 : rec.steps.back().totalSteps),
                rec.steps.size());
            QCOMPARE(static_cast<int>(rec.steps.size()), c.at("steps").get<int>());
            QCOMPARE(static_cast<int>(rec.steps.back().totalSteps), c.at("planned_steps").get<int>());
            for (std::size_t k = 0; k < rec.steps.size(); ++k) {
                const double expected = 1e-3 * rates.at(k).get<double>();
                QVERIFY2(std::abs(rec.steps[k].learningRate - expected) < 1e-12,
                    qPrintable(label
                        + QString(", step %1: lr %2, HF %3")
                              .arg(k + 1)
                              .arg(rec.steps[k].learningRate)
                              .arg(expected)));
            }
        }
    }

    // LADDER_FAULT_INJECT=nan@N (docs/GPU.md) fails the run at step N, as a diverging loss would.
    void faultInjectionNan()
    {
        qputenv("LADDER_FAULT_INJECT", "nan@3");
        Trainer trainer(specFor("bitfit", 20));
        Recorder rec;
        const auto summary = trainer.run(inputs(), rec);
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(summary.status, RunOutcome::Failed);
        QVERIFY2(summary.message.find("NaN at step 3") != std::string::npos, summary.message.c_str());
        qputenv("LADDER_FAULT_INJECT", "segv");
        const auto bad = Trainer(specFor("bitfit", 5)).run(inputs(), rec);
        qunsetenv("LADDER_FAULT_INJECT");
        QCOMPARE(bad.status, RunOutcome::Failed);
        QVERIFY2(bad.message.find("LADDER_FAULT_INJECT") != std::string::npos, bad.message.c_str());
    }

    void badSpecFieldsAreNamed_data()
    {
        QTest::addColumn<QString>("json");
        QTest::addColumn<QString>("expect");
        QTest::newRow("no task") << R"({"method": {"method": "lora"}})"
                                 << "field task";
        QTest::newRow("bad batch") << R"({"task": {"type": "glue", "path": "x"}, "method": {"method": "lora"},
                                       "training": {"batch_size": 0}})"
                                   << "training.batch_size";
        QTest::newRow("unknown field")
            << R"({"task": {"type": "glue", "path": "x"}, "method": {"method": "lora"},
                                           "training": {"epoch": 3}})"
            << "training.epoch";
        QTest::newRow("bad task type") << R"({"task": {"type": "csv"}, "method": {"method": "lora"}})"
                                       << "task.type";
        QTest::newRow("method field")
            << R"({"task": {"type": "glue", "path": "x"}, "method": {"method": "lora", "r": 8}})"
            << "field r";
        QTest::newRow("device")
            << R"({"task": {"type": "glue", "path": "x"}, "method": {"method": "lora"}, "device": "tpu"})"
            << "device";
    }

    void badSpecFieldsAreNamed()
    {
        QFETCH(QString, json);
        QFETCH(QString, expect);
        try {
            RunSpec::fromJson(nlohmann::json::parse(json.toStdString()), "run.json");
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find(expect.toStdString()) != std::string::npos, e.what());
            QVERIFY(std::string(e.what()).find("run.json") != std::string::npos);
        }
    }

    void specRoundTrips()
    {
        const auto s = RunSpec::fromJson(
            nlohmann::json::parse(R"({"task": {"type": "glue", "path": "/g/RTE", "name": "rte"},
            "method": {"method": "ladder", "r": 16, "keep": [1, 3]}, "training": {"epochs": 3, "batch_size": 16}, "seed": 2})"));
        const auto again = RunSpec::fromJson(s.toJson());
        QCOMPARE(QString::fromStdString(again.toJson().dump()), QString::fromStdString(s.toJson().dump()));
        QCOMPARE(again.training.learningRateFor("ladder"), 3e-3);
    }
};

QTEST_GUILESS_MAIN(TestTrainer)
#include "test_trainer.moc"
