// `ladder train`, `runs`, `eval` and `sweep` end to end on a tiny backbone folder and a generic task,
// with a real results store file.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/Safetensors.h"
#include "model/T5Model.h"
#include "store/ResultsStore.h"

using namespace ladder;

namespace {

// config.json + model.safetensors of a tiny random T5 over the real T5 vocabulary, + spiece.model.
std::string makeTinyBackbone(const std::string& root)
{
    const auto dir = root + "/tiny-t5";
    test::writeTinyBackbone(dir, 1);
    return dir;
}

// A two-class JSONL task: fruit or animal, from one word.
std::string makeTask(const std::string& root)
{
    const auto path = root + "/fruit.jsonl";
    std::ofstream out(path);
    const char* fruit[] = {"apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"};
    const char* animal[] = {"horse", "tiger", "mouse", "eagle", "snake", "whale", "sheep", "camel"};
    for (int rep = 0; rep < 5; ++rep)
        for (int i = 0; i < 8; ++i) {
            out << nlohmann::json{{"text", std::string("the ") + fruit[i] + " is here " + std::to_string(rep)}, {"label", "fruit"}}.dump() << "\n";
            out << nlohmann::json{{"text", std::string("the ") + animal[i] + " is here " + std::to_string(rep)}, {"label", "animal"}}.dump() << "\n";
        }
    return path;
}

nlohmann::json specFor(const std::string& backbone, const std::string& task, const std::string& method)
{
    return {{"backbone", backbone},
            {"task", {{"type", "generic"}, {"path", task}, {"name", "fruit"}, {"validation_fraction", 0.2}, {"test_fraction", 0.2}}},
            {"method", method == "ladder" ? nlohmann::json{{"method", "ladder"}, {"r", 4}}
                                          : method == "lora" ? nlohmann::json{{"method", "lora"}, {"rank", 4}}
                                                             : nlohmann::json{{"method", method}}},
            {"training", {{"max_steps", 12}, {"batch_size", 8}, {"warmup_steps", 2}, {"learning_rate", 0.01}, {"max_source_length", 16}}},
            {"seed", 0}};
}

} // namespace

class TestCliTrain : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    void trainListShowEvalExport()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto task = makeTask(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        std::ofstream(root + "/run.json") << specFor(backbone, task, "ladder").dump(2);

        auto r = test::runCli({"train", "--config", QString::fromStdString(root + "/run.json"), "--store", store});
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("run 1: finished") != std::string::npos, r.out.c_str());
        QVERIFY2(r.err.find("Fisher initialisation") != std::string::npos, r.err.c_str());

        r = test::runCli({"runs", "--store", store, "list", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto runs = nlohmann::json::parse(r.out);
        QCOMPARE(runs.size(), std::size_t(1));
        QCOMPARE(QString::fromStdString(runs[0].at("status").get<std::string>()), QString("finished"));
        QCOMPARE(QString::fromStdString(runs[0].at("method").get<std::string>()), QString("ladder"));
        QVERIFY(runs[0].at("peak_allocated_bytes").get<std::int64_t>() > 0);
        QVERIFY(!runs[0].at("best_validation").is_null());
        QVERIFY(!runs[0].at("test").is_null());

        r = test::runCli({"runs", "--store", store, "show", "1", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto show = nlohmann::json::parse(r.out);
        QVERIFY(show.at("evaluations").size() >= 2);
        QCOMPARE(show.at("spec").at("method").at("r").get<int>(), 4);
        // LST's default init is the paper's Fisher pruning; its pass over the task showed on the progress
        // line, and eval (below) loads the trained weights without repeating it.
        QCOMPARE(show.at("spec").at("method").at("init").get<std::string>(), std::string("fisher"));

        // Every evaluation keeps what was generated (the first 200 examples; these splits are smaller), and
        // the exact-match rate over the kept predictions is the stored accuracy.
        {
            ResultsStore db;
            std::string error;
            QVERIFY2(db.open(store.toStdString(), &error), error.c_str());
            std::vector<Evaluation> evaluations;
            QVERIFY2(db.getEvaluations(1, &evaluations, &error), error.c_str());
            QVERIFY(evaluations.size() >= 2);
            for (const auto& e : evaluations) {
                const auto predictions = nlohmann::json::parse(e.predictionsJson);
                QVERIFY(predictions.is_array() && !predictions.empty() && predictions.size() < 200);
                int correct = 0;
                for (const auto& p : predictions) {
                    QVERIFY(p.at("id").is_string() && p.at("target").is_string() && p.at("prediction").is_string());
                    correct += p.at("prediction") == p.at("target") ? 1 : 0;
                }
                QVERIFY(e.mainMetric.has_value());
                QCOMPARE(static_cast<double>(correct) / static_cast<double>(predictions.size()), *e.mainMetric);
            }
        }

        r = test::runCli({"eval", "--run", "1", "--store", store});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("test: accuracy") != std::string::npos, r.out.c_str());
        // The stored test figure was computed on the same best weights: eval reproduces it.
        const double stored = runs[0].at("test").get<double>();
        QVERIFY2(r.out.find("test: accuracy " + QString::number(stored, 'g', 4).toStdString()) != std::string::npos,
                 (r.out + " vs " + std::to_string(stored)).c_str());

        const auto csv = root + "/runs.csv";
        r = test::runCli({"runs", "--store", store, "export", "--csv", QString::fromStdString(csv)});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        std::ifstream in(csv);
        std::string header;
        std::getline(in, header);
        QVERIFY(header.find("method") != std::string::npos);
    }

    void sweepRunsGridAndSkipsFinished()
    {
        const auto root = test::makeTempDir();
        const auto backbone = makeTinyBackbone(root);
        const auto task = makeTask(root);
        const auto store = QString::fromStdString(root + "/results.sqlite");
        auto base = specFor(backbone, task, "full");
        base["task"]["label_targets"] = "text"; // the model generates the label text itself
        nlohmann::json sweep{{"base", base},
                             {"methods", {{{"method", "full"}},
                                          // the pair form: method options plus training overrides
                                          {{"method", {{"method", "lora"}, {"rank", 4}}},
                                           {"training", {{"learning_rate", 0.005}}}}}},
                             {"seeds", {3}}};
        std::ofstream(root + "/sweep.json") << sweep.dump(2);
        auto r = test::runCli({"sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store", store});
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("sweep: 2 finished, 0 skipped") != std::string::npos, r.out.c_str());
        r = test::runCli({"runs", "--store", store, "show", "2", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto second = nlohmann::json::parse(r.out).at("spec");
        QCOMPARE(second.at("method").at("rank").get<int>(), 4);
        QCOMPARE(second.at("task").at("label_targets").get<std::string>(), std::string("text"));
        QCOMPARE(second.at("training").at("learning_rate").get<double>(), 0.005);
        QCOMPARE(second.at("training").at("batch_size").get<int>(),
                 specFor(backbone, task, "full").at("training").at("batch_size").get<int>()); // kept from base
        r = test::runCli({"sweep", "--config", QString::fromStdString(root + "/sweep.json"), "--store", store});
        QVERIFY2(r.out.find("sweep: 0 finished, 2 skipped") != std::string::npos, r.out.c_str());
    }

    void badSpecIsOneLine()
    {
        const auto root = test::makeTempDir();
        std::ofstream(root + "/run.json") << R"({"task": {"type": "glue"}, "method": {"method": "lora"}})";
        const auto r = test::runCli({"train", "--config", QString::fromStdString(root + "/run.json"), "--store",
                                     QString::fromStdString(root + "/s.sqlite")});
        QVERIFY(r.exitCode > 0);
        QVERIFY2(r.err.find("task.path") != std::string::npos, r.err.c_str());
        QCOMPARE(std::count(r.err.begin(), r.err.end(), '\n'), 1l);
    }
};

QTEST_GUILESS_MAIN(TestCliTrain)
#include "test_cli_train.moc"
