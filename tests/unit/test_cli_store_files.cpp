// Two stores in one folder through the `ladder` CLI (issue 15): each trains a run with id 1, each run's
// checkpoint stays in its own store's files folder, `ladder eval` evaluates each store's own weights, a
// tampered checkpoint is refused naming the file and both hashes, and deleting a run removes its file.
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/FileHash.h"
#include "store/ResultsStore.h"

using namespace ladder;

namespace {

namespace fs = std::filesystem;

// BitFit for a few steps; the two stores differ by seed and learning rate, so their weights differ.
nlohmann::json specFor(const std::string& backbone, const std::string& task, int seed, double learningRate)
{
    return { { "backbone", backbone }, { "task", test::fruitTaskSpec(task) },
        { "method", { { "method", "bitfit" } } },
        { "training",
            { { "max_steps", 6 }, { "batch_size", 8 }, { "warmup_steps", 1 },
                { "learning_rate", learningRate }, { "max_source_length", 16 } } },
        { "seed", seed } };
}

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

} // namespace

class TestCliStoreFiles : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { LADDER_REQUIRE_FIXTURES(); }

    void twoStoresInOneFolder()
    {
        const auto root = test::makeTempDir();
        const auto backbone = root + "/tiny-t5";
        test::writeTinyBackbone(backbone, 1);
        const auto task = test::writeFruitTask(root);
        const std::string storeA = root + "/a.sqlite";
        const std::string storeB = root + "/b.sqlite";
        std::ofstream(root + "/a.json") << specFor(backbone, task, 0, 0.01).dump(2);
        std::ofstream(root + "/b.json") << specFor(backbone, task, 1, 0.05).dump(2);
        for (const auto& [config, store] :
            { std::pair { root + "/a.json", storeA }, { root + "/b.json", storeB } }) {
            const auto r = test::runCli({ "train", "--config", QString::fromStdString(config), "--store",
                QString::fromStdString(store) });
            QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
            QVERIFY2(contains(r.out, "run 1: finished"), r.out.c_str()); // both are run 1
        }
        const std::string checkpointA = storeA + ".files/checkpoints/run-1.safetensors";
        const std::string checkpointB = storeB + ".files/checkpoints/run-1.safetensors";
        QVERIFY(fs::exists(checkpointA));
        QVERIFY(fs::exists(checkpointB));
        QVERIFY(!fs::exists(root + "/checkpoints")); // the folder both used to share
        QVERIFY(readFile(checkpointA) != readFile(checkpointB));
        for (const auto& [store, checkpoint] :
            { std::pair { storeA, checkpointA }, { storeB, checkpointB } }) {
            ResultsStore db;
            std::string error;
            QVERIFY2(db.open(store, ResultsStore::OpenMode::ReadOnly, &error), error.c_str());
            RunRecord run;
            QVERIFY2(db.getRun(1, &run, &error), error.c_str());
            QCOMPARE(run.checkpointSha256, hashFile(checkpoint).sha256);
        }

        // eval reads each store's own weights: it reproduces each store's own test figure.
        for (const auto& store : { storeA, storeB }) {
            const auto r = test::runCli({ "eval", "--run", "1", "--store", QString::fromStdString(store) });
            QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
            ResultsStore db;
            QVERIFY(db.open(store, ResultsStore::OpenMode::ReadOnly));
            std::vector<Evaluation> evaluations;
            QVERIFY(db.getEvaluations(1, &evaluations));
            RunRecord run;
            QVERIFY(db.getRun(1, &run));
            QVERIFY(run.figures.testMetric.has_value());
            const Evaluation* last = nullptr; // eval's test evaluation: the newest test row
            for (const auto& e : evaluations)
                if (e.split == "test" && (!last || e.id > last->id))
                    last = &e;
            QVERIFY(last && last->mainMetric);
            QCOMPARE(*last->mainMetric, *run.figures.testMetric);
        }

        // A tampered checkpoint is refused before it is loaded, naming the file and both hashes.
        const std::string recorded = hashFile(checkpointB).sha256;
        std::string bytes = readFile(checkpointB);
        bytes[bytes.size() / 2] ^= 0x40;
        std::ofstream(checkpointB, std::ios::binary | std::ios::trunc) << bytes;
        const std::string found = hashFile(checkpointB).sha256;
        auto r = test::runCli({ "eval", "--run", "1", "--store", QString::fromStdString(storeB) });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(contains(r.err, checkpointB), r.err.c_str());
        QVERIFY2(contains(r.err, "its SHA-256 is " + found), r.err.c_str());
        QVERIFY2(contains(r.err, "the store recorded " + recorded), r.err.c_str());
        qInfo("ladder eval of a tampered checkpoint: %s", r.err.c_str());

        // Deleting store a's run 1 removes a's file only.
        {
            ResultsStore db;
            std::string error;
            QVERIFY(db.open(storeA));
            QVERIFY2(db.deleteRun(1, &error), error.c_str());
        }
        QVERIFY(!fs::exists(checkpointA));
        QVERIFY(fs::exists(checkpointB));
    }
};

LADDER_TEST_GUILESS_MAIN(TestCliStoreFiles)
#include "test_cli_store_files.moc"
