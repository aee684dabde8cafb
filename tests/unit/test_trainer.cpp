// The trainer: learns a trivially learnable task, stops within one step when cancelled, ends as failed on
// a NaN loss, and reports memory and evaluations; its optimizer steps and learning rates equal HF
// Trainer's (tests/data/hf-schedule.json, made by tools/reference/hf_schedule.py with transformers).
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/T5Model.h"
#include "model/T5Tokenizer.h"
#include "store/ResultsStore.h"
#include "train/StoreRecorder.h"
#include "train/Trainer.h"
#include "train/TrainerInputs.h"
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
    in.backbone = tinyBackbone().ptr();
    in.tokenizer = std::make_shared<T5Tokenizer>(test::fixture("t5-spiece/spiece.model"));
    in.task = trivialTask();
    return in;
}

struct Recorder : TrainerObserver {
    std::vector<TrainStep> steps;
    std::vector<TrainEval> evals;
    std::vector<std::pair<std::int64_t, std::int64_t>> initProgress; // (done, total) of the Fisher pass
    std::vector<std::string> logs;
    std::int64_t cancelAtStep = 0;
    std::int64_t cancelAfterInitExamples = 0;
    bool started = false;
    void onStarted(const RunSummary&) override { started = true; }
    void onStep(const TrainStep& s) override { steps.push_back(s); }
    void onEval(const TrainEval& e) override { evals.push_back(e); }
    void onLog(const std::string&, const std::string& message) override { logs.push_back(message); }
    void onInitProgress(const std::string& what, std::int64_t done, std::int64_t total) override
    {
        QCOMPARE(QString::fromStdString(what), QStringLiteral("Fisher initialisation"));
        initProgress.emplace_back(done, total);
    }
    bool cancelRequested() override
    {
        if (cancelAfterInitExamples > 0 && !initProgress.empty()
            && initProgress.back().first >= cancelAfterInitExamples)
            return true;
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
        // Random init, as this case was tuned: pruning a random-weight tiny backbone gives the side network
        // nothing to start from (Fisher reached 0.75 here); the Fisher cases are below.
        spec.method.init = "random";
        spec.training.learningRate = 3e-2;
        Trainer trainer(spec);
        Recorder rec;
        const auto summary = trainer.run(inputs(), rec);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
        qInfo("LST best validation accuracy %.3f, test %.3f", summary.bestValidation, summary.testMetric);
        QVERIFY(summary.bestValidation >= 0.95);
    }

    // LST's default is the paper's: Fisher pruning over the reference's samples_for_fisher examples.
    void fisherIsTheDefaultInit()
    {
        const auto spec = specFor("ladder", 1);
        QCOMPARE(QString::fromStdString(spec.method.init), QStringLiteral("fisher"));
        QCOMPARE(spec.method.fisherSamples, std::int64_t(1024));
    }

    // The Fisher pass reports every example, counting up to the examples it used: all 32 of the task when
    // fisher_samples (1024) is larger, fisher_samples when smaller.
    void fisherProgressCountsTheExamplesUsed()
    {
        for (const std::int64_t samples : { std::int64_t(1024), std::int64_t(10) }) {
            auto spec = specFor("ladder", 1);
            spec.method.r = 2;
            spec.method.fisherSamples = samples;
            spec.training.evalEverySteps = 0;
            spec.training.maxEvalExamples = 2;
            auto in = inputs();
            const auto used
                = std::min<std::int64_t>(samples, static_cast<std::int64_t>(in.task.train.size()));
            Recorder rec;
            const auto summary = Trainer(spec).run(std::move(in), rec);
            QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());
            QVERIFY(!rec.initProgress.empty());
            for (std::size_t i = 0; i < rec.initProgress.size(); ++i) {
                const auto [done, total] = rec.initProgress[i];
                QCOMPARE(total, used);
                QVERIFY(done >= 1 && done <= total);
                if (i > 0)
                    QVERIFY(done >= rec.initProgress[i - 1].first);
            }
            QCOMPARE(rec.initProgress.back().first, used);
            QCOMPARE(rec.initProgress.front().first, std::int64_t(1));
            const auto last
                = "Fisher initialisation " + std::to_string(used) + "/" + std::to_string(used) + " examples";
            QVERIFY(std::count(rec.logs.begin(), rec.logs.end(), last) == 1);
            QVERIFY(summary.initPeakAllocatedBytes > 0);
        }
    }

    // A cancel during the Fisher pass ends the run as Cancelled before any step, with the backbone frozen
    // again and no gradient left on it.
    void cancelDuringFisherInit()
    {
        auto spec = specFor("ladder", 50);
        spec.method.r = 2;
        auto in = inputs();
        const auto backbone = in.backbone;
        Recorder rec;
        rec.cancelAfterInitExamples = 3;
        const auto summary = Trainer(spec).run(std::move(in), rec);
        QCOMPARE(summary.status, RunOutcome::Cancelled);
        QVERIFY2(summary.message.find("Fisher initialisation after 3 of") != std::string::npos,
            summary.message.c_str());
        QVERIFY(!rec.started);
        QVERIFY(rec.steps.empty());
        QCOMPARE(rec.initProgress.back().first, std::int64_t(3));
        for (const auto& item : backbone->named_parameters(true)) {
            QVERIFY2(!item.value().requires_grad(), item.key().c_str());
            QVERIFY2(!item.value().grad().defined(), item.key().c_str());
        }
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

    // The stored peaks (docs/STORE.md): peak_allocated_bytes is the training steps' alone, so it is the
    // highest of the per-step rows (each the training peak so far), with the evaluations between the steps
    // measured apart (eval_peak_allocated_bytes) and the Fisher initialisation too (init_peak_...).
    void storesPeaksOfTrainingEvaluationAndInit_data()
    {
        QTest::addColumn<QString>("method");
        QTest::newRow("full") << "full";
        QTest::newRow("ladder fisher") << "ladder";
    }

    void storesPeaksOfTrainingEvaluationAndInit()
    {
        QFETCH(QString, method);
        auto spec = specFor(method.toStdString(), 6);
        spec.training.evalEverySteps = 2; // evaluations between training steps
        spec.training.maxEvalExamples = 8;
        spec.training.logEverySteps = 1;
        if (method == "ladder") {
            spec.method.r = 2;
            spec.method.init = "fisher";
            spec.method.fisherSamples = 8;
        }
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(test::makeTempDir() + "/results.sqlite", &error), error.c_str());
        std::int64_t id = 0;
        QVERIFY2(store.createRun(newRunFor(spec, RunState::Running), &id, &error), error.c_str());
        Recorder rec;
        StoreRecorder recorder(store, id, rec);
        const auto summary = Trainer(spec).run(inputs(), recorder);
        recorder.finish(summary);
        QVERIFY2(summary.status == RunOutcome::Finished, summary.message.c_str());

        RunRecord run;
        std::vector<MetricPoint> points;
        QVERIFY2(store.getRun(id, &run, &error) && store.getMetrics(id, 0, &points, &error), error.c_str());
        QCOMPARE(points.size(), std::size_t(6));
        std::int64_t highest = 0, previous = 0;
        for (const auto& p : points) {
            QVERIFY(p.peakAllocatedBytes && *p.allocatedBytes <= *p.peakAllocatedBytes);
            QVERIFY(*p.peakAllocatedBytes >= previous); // training's peak so far
            previous = *p.peakAllocatedBytes;
            highest = std::max(highest, *p.peakAllocatedBytes);
        }
        const auto& f = run.figures;
        qInfo("%s: training peak %lld, evaluation peak %lld, init peak %lld bytes", qPrintable(method),
            static_cast<long long>(f.peakAllocatedBytes.value_or(-1)),
            static_cast<long long>(f.evalPeakAllocatedBytes.value_or(-1)),
            static_cast<long long>(f.initPeakAllocatedBytes.value_or(-1)));
        QVERIFY(f.peakAllocatedBytes.has_value());
        QCOMPARE(*f.peakAllocatedBytes, highest);
        QCOMPARE(*f.peakAllocatedBytes, static_cast<std::int64_t>(summary.peakAllocatedBytes));
        QVERIFY(*f.peakAllocatedBytes > *f.weightBytes);
        QVERIFY(f.evalPeakAllocatedBytes.value_or(0) > 0);
        QCOMPARE(*f.evalPeakAllocatedBytes, static_cast<std::int64_t>(summary.evalPeakAllocatedBytes));
        QVERIFY(f.initPeakAllocatedBytes.value_or(0) > 0); // building the method (every run), the Fisher pass
        if (method == "ladder")
            QVERIFY(*f.initPeakAllocatedBytes > *f.weightBytes); // a backward through the backbone
        QCOMPARE(rec.evals.size(), std::size_t(4)); // validation at steps 2, 4, 6 and the test split
    }

    // HF Trainer as the reference: for each (batches per epoch, accumulation, epochs, warm-up) the number of
    // optimizer steps planned and taken, and the learning rate of every step (HF's lr 1.0 gives the
    // schedule's multipliers; here lr 1e-3 times them).
    void hfScheduleAndAccumulation()
    {
        const std::string path = ladder::test::testDataDir() + "/hf-schedule.json";
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

    // The default run names of issue 20: "LST r8 keep 9/12", "LoRA r16 qkvo+ff lr 1e-3", "full lr 1e-3", plus
    // the seed; the learning rate appears only when it is not the method's default (docs/WORKBENCH.md).
    void defaultNamesAreReadable_data()
    {
        QTest::addColumn<QString>("spec");
        QTest::addColumn<int>("layers");
        QTest::addColumn<QString>("name");
        QTest::newRow("lst keep")
            << R"({"method": {"method": "ladder", "r": 8, "keep": [1,2,3,4,5,6,7,8,9]}})" << 12
            << "LST r8 keep 9/12 · seed 0";
        QTest::newRow("lst all") << R"({"method": {"method": "ladder"}, "seed": 2})" << 12
                                 << "LST r8 · seed 2";
        QTest::newRow("lst keep, layers unknown")
            << R"({"method": {"method": "ladder", "r": 16, "keep": [0, 5]}})" << 0
            << "LST r16 keep 2 · seed 0";
        QTest::newRow("lst options")
            << R"({"method": {"method": "ladder", "init": "magnitude", "side_checkpoint": true, "side_attention": "sdpa", "ladder_dtype": "bf16", "backbone_dtype": "int4"}, "training": {"learning_rate": 1e-3}})"
            << 6 << "LST r8 magnitude init ckpt sdpa bf16 ladders int4 lr 1e-3 · seed 0";
        QTest::newRow("lora")
            << R"({"method": {"method": "lora", "rank": 16, "alpha": 16, "targets": ["q","k","v","o","wi","wo"]}, "training": {"learning_rate": 1e-3}, "seed": 1})"
            << 6 << "LoRA r16 qkvo+ff lr 1e-3 · seed 1";
        QTest::newRow("lora default lr")
            << R"({"method": {"method": "lora", "rank": 8, "alpha": 32, "bitfit": false}, "training": {"learning_rate": 3e-4}})"
            << 6 << "LoRA r8 qv alpha 32 no biases · seed 0";
        QTest::newRow("qlora")
            << R"({"method": {"method": "qlora", "rank": 16, "alpha": 16, "targets": ["wi"]}})" << 6
            << "QLoRA r16 wi · seed 0";
        QTest::newRow("full") << R"({"method": {"method": "full"}, "training": {"learning_rate": 0.001}})"
                              << 6 << "full lr 1e-3 · seed 0";
        QTest::newRow("full bf16")
            << R"({"method": {"method": "full"}, "training": {"learning_rate": 2.5e-5, "dtype": "bf16"}})"
            << 6 << "full lr 2.5e-5 bf16 · seed 0";
        QTest::newRow("bitfit") << R"({"method": {"method": "bitfit", "freeze": 4}})" << 6
                                << "BitFit freeze 4 · seed 0";
        QTest::newRow("adapter")
            << R"({"method": {"method": "adapter", "hidden": 32}, "training": {"learning_rate": 3e-3}})" << 6
            << "Adapters h32 lr 3e-3 · seed 0";
        QTest::newRow("prompt")
            << R"({"method": {"method": "prompt", "prompts": 20}, "training": {"learning_rate": 0.3}})" << 6
            << "prompt 20 · seed 0";
        QTest::newRow("named") << R"({"name": "my baseline", "method": {"method": "full"}})" << 6
                               << "my baseline";
    }

    void defaultNamesAreReadable()
    {
        QFETCH(QString, spec);
        QFETCH(int, layers);
        QFETCH(QString, name);
        auto json = nlohmann::json::parse(spec.toStdString());
        json["task"] = { { "type", "demo" }, { "name", "supersense" } };
        const auto s = RunSpec::fromJson(json);
        const std::string got = s.name.empty() ? s.defaultName(layers) : s.displayName();
        QCOMPARE(QString::fromStdString(got), name);
    }
};

LADDER_TEST_GUILESS_MAIN(TestTrainer)
#include "test_trainer.moc"
