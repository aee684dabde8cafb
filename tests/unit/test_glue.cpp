// GLUE task data (core/data): the readers on every task of ../shared/fixtures/glue (row counts after the
// paper's splits, first examples equal to HF's processors), the text-to-text cast, split determinism (equal
// to torch.randperm) and malformed files. The generic reader: test_generic_task; the Batcher: test_batcher.
#include <QtTest>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "TaskTestHelpers.h"
#include "TestSupport.h"
#include "data/GenericTask.h"
#include "data/GlueTasks.h"
#include "data/Metrics.h"
#include "data/Permutation.h"
#include "util/Error.h"

using ladder::GlueLoadOptions;
using ladder::GlueTask;
using ladder::GlueTasks;
using ladder::TaskSplits;
using ladder::TextExample;
using ladder::test::task_data::errorOf;
using ladder::test::task_data::glue;
using ladder::test::task_data::ids;
using ladder::test::task_data::writeFile;

namespace {

const nlohmann::json& hfReference()
{
    static const nlohmann::json json = [] {
        std::ifstream in(ladder::test::fixture("glue/hf_reference/hf_glue_processors_and_metrics.json"));
        return in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    }();
    return json;
}

// A synthetic MNLI folder in the GLUE layout (train: 12 columns, dev: 16).
std::string makeMnliFolder()
{
    const std::string dir = ladder::test::makeTempDir() + "/MNLI";
    const std::string trainHeader
        = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
          "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n";
    const std::string devHeader
        = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
          "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
          "label4\tlabel5\tgold_label\n";
    const char* labels[] = { "entailment", "neutral", "contradiction" };
    std::string train = trainHeader;
    for (int i = 0; i < 7; ++i)
        train += std::to_string(i) + "\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tPremise \""
            + std::to_string(i) + "\tHypothesis " + std::to_string(i) + "\t" + labels[i % 3] + "\t"
            + labels[i % 3] + "\n";
    auto dev = [&](const std::string& tag, int n) {
        std::string text = devHeader;
        for (int i = 0; i < n; ++i)
            text += std::to_string(i) + "\t1\t1e\tslate\tx\ty\tx\ty\t" + tag + " premise " + std::to_string(i)
                + "\t" + tag + " hypothesis\t" + labels[(i + 1) % 3] + "\tn\tn\tn\tn\t" + labels[(i + 1) % 3]
                + "\n";
        return text;
    };
    writeFile(dir + "/train.tsv", train);
    writeFile(dir + "/dev_matched.tsv", dev("matched", 5));
    writeFile(dir + "/dev_mismatched.tsv", dev("mismatched", 4));
    return dir;
}

// A synthetic QQP folder: 1100 training rows (1000 go to validation), 10 dev rows.
std::string makeQqpFolder(const std::string& folderName = "QQP")
{
    const std::string dir = ladder::test::makeTempDir() + "/" + folderName;
    std::string train = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n";
    for (int i = 0; i < 1100; ++i)
        train += std::to_string(1000 + i) + "\t" + std::to_string(2 * i) + "\t" + std::to_string(2 * i + 1)
            + "\tHow do I \"learn " + std::to_string(i) + "?\tWhat is " + std::to_string(i) + "?\t"
            + std::to_string(i % 2) + "\n";
    std::string dev = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n";
    for (int i = 0; i < 10; ++i)
        dev += std::to_string(i) + "\ta\tb\tq1 " + std::to_string(i) + "\tq2\t" + std::to_string((i / 3) % 2)
            + "\n";
    writeFile(dir + "/train.tsv", train);
    writeFile(dir + "/dev.tsv", dev);
    return dir;
}

const std::string kRteHeader = "index\tsentence1\tsentence2\tlabel\n";

} // namespace

class TestGlue : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // ---- GLUE on the shared fixtures ----------------------------------------------------------------------

    void splitsOnFixtures_data()
    {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<QString>("task");
        QTest::addColumn<int>("train");
        QTest::addColumn<int>("validation");
        QTest::addColumn<int>("test");
        // Small sets: dev halved (validation = floor(n/2)); large: 1000 of train to validation, dev = test.
        QTest::newRow("CoLA") << "CoLA"
                              << "cola" << 8551 << 521 << 522;
        QTest::newRow("RTE") << "RTE"
                             << "rte" << 2490 << 138 << 139;
        QTest::newRow("MRPC") << "MRPC"
                              << "mrpc" << 3668 << 204 << 204;
        QTest::newRow("STS-B") << "STS-B"
                               << "stsb" << 5749 << 750 << 750;
        QTest::newRow("SST-2") << "SST-2"
                               << "sst2" << 67349 - 1000 << 1000 << 872;
    }
    void splitsOnFixtures()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, folder);
        QFETCH(QString, task);
        QFETCH(int, train);
        QFETCH(int, validation);
        QFETCH(int, test);
        const auto splits = ladder::loadGlueTask(glue(folder.toStdString()));
        QCOMPARE(QString::fromStdString(splits.info.name), task);
        QCOMPARE(int(splits.train.size()), train);
        QCOMPARE(int(splits.validation.size()), validation);
        QCOMPARE(int(splits.test.size()), test);
        QVERIFY(!splits.notes.empty());
        // Validation and test never share an example, and together they are the whole source split.
        std::set<std::string> seen;
        for (const auto& ex : splits.validation)
            QVERIFY(seen.insert(ex.id).second);
        for (const auto& ex : splits.test)
            QVERIFY(seen.insert(ex.id).second);
        if (task == "sst2") {
            for (const auto& ex : splits.train)
                QVERIFY(seen.insert(ex.id).second);
            QCOMPARE(int(seen.size()), 67349 + 872); // train ids and dev ids differ by prefix
        }
        // Every example is cast: a source with the task prefix and a target of the task's label list.
        for (const auto* part : { &splits.train, &splits.validation, &splits.test }) {
            for (const auto& ex : *part) {
                QVERIFY(ex.source.rfind(splits.info.name + " ", 0) == 0);
                if (splits.info.kind == ladder::TaskKind::Classification) {
                    QVERIFY(ex.labelIndex >= 0);
                    QCOMPARE(ex.target, std::to_string(ex.labelIndex));
                } else {
                    QVERIFY(splits.info.labels.size() == 26);
                    QCOMPARE(ex.target, ladder::formatScoreTarget(ex.score, 1));
                }
            }
        }
    }

    // QNLI in the fixtures is dev-only: training needs train.tsv, so the default load fails with a clear
    // message; requireTrain = false loads the evaluation split (dev -> test).
    void devOnlyFolder()
    {
        LADDER_REQUIRE_FIXTURES();
        const std::string message = errorOf([] { ladder::loadGlueTask(glue("QNLI")); });
        VERIFY_CONTAINS(message, "QNLI/train.tsv: file not found");
        VERIFY_CONTAINS(message, "requireTrain");
        GlueLoadOptions options;
        options.requireTrain = false;
        const auto splits = GlueTasks::load(glue("QNLI"), options);
        QCOMPARE(splits.info.name, std::string("qnli"));
        QCOMPARE(splits.train.size(), std::size_t(0));
        QCOMPARE(splits.validation.size(), std::size_t(0));
        QCOMPARE(splits.test.size(), std::size_t(5463));
        QCOMPARE(splits.test[0].source,
            std::string(
                "qnli question: What came into force after the new constitution was herald? sentence: As of "
                "that day, the new constitution heralding the Second Republic came into force."));
        QCOMPARE(splits.test[0].target, std::string("0")); // entailment = 0
        // A small task without train.tsv still halves its dev set.
        const std::string dir = ladder::test::makeTempDir() + "/RTE";
        std::filesystem::create_directories(dir);
        std::filesystem::copy_file(glue("RTE") + "/dev.tsv", dir + "/dev.tsv");
        const auto rte = GlueTasks::load(dir, options);
        QCOMPARE(rte.train.size(), std::size_t(0));
        QCOMPARE(rte.validation.size(), std::size_t(138));
        QCOMPARE(rte.test.size(), std::size_t(139));
    }

    void detection_data()
    {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<QString>("task");
        QTest::newRow("CoLA") << "CoLA"
                              << "cola";
        QTest::newRow("RTE") << "RTE"
                             << "rte";
        QTest::newRow("MRPC") << "MRPC"
                              << "mrpc";
        QTest::newRow("STS-B") << "STS-B"
                               << "stsb";
        QTest::newRow("SST-2") << "SST-2"
                               << "sst2";
        QTest::newRow("QNLI") << "QNLI"
                              << "qnli";
    }
    // Detected from the files alone: each dev.tsv is copied into a folder with a neutral name.
    void detection()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, folder);
        QFETCH(QString, task);
        QCOMPARE(QString(GlueTasks::name(GlueTasks::detect(glue(folder.toStdString())))), task);
        const std::string neutral = ladder::test::makeTempDir() + "/data";
        std::filesystem::create_directories(neutral);
        std::filesystem::copy_file(glue(folder.toStdString()) + "/dev.tsv", neutral + "/dev.tsv");
        QCOMPARE(QString(GlueTasks::name(GlueTasks::detect(neutral))), task);
    }

    void detectionErrors()
    {
        const std::string root = ladder::test::makeTempDir();
        VERIFY_CONTAINS(errorOf([&] { GlueTasks::detect(root + "/missing"); }), "not a folder");
        std::filesystem::create_directories(root + "/empty");
        VERIFY_CONTAINS(errorOf([&] { GlueTasks::detect(root + "/empty"); }), "no dev.tsv or train.tsv");
        writeFile(root + "/odd/dev.tsv", "a\tb\tc\n1\t2\t3\n");
        VERIFY_CONTAINS(errorOf([&] { GlueTasks::detect(root + "/odd"); }), "cannot tell which GLUE task");
        writeFile(root + "/wnli/dev.tsv", kRteHeader + "0\tThe cat sat.\tIt sat.\t1\n");
        VERIFY_CONTAINS(errorOf([&] { GlueTasks::detect(root + "/wnli"); }), "WNLI");
        // The folder's name decides when the file does not (a headerless RTE-like file named by folder).
        writeFile(root + "/rte/dev.tsv", "garbage\n");
        QCOMPARE(GlueTasks::detect(root + "/rte"), GlueTask::RTE);
        VERIFY_CONTAINS(errorOf([] { GlueTasks::parseName("wnli"); }), "unknown GLUE task 'wnli'");
        QCOMPARE(GlueTasks::parseName("SST-2"), GlueTask::SST2);
        QCOMPARE(GlueTasks::parseName("sts_b"), GlueTask::STSB);
        QCOMPARE(GlueTasks::parseName("MNLI"), GlueTask::MNLI);
    }

    // The first dev and train examples equal those of HF's glue processors (guid, texts, label).
    void firstExamplesMatchHf_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("folder");
        QTest::newRow("cola") << "cola"
                              << "CoLA";
        QTest::newRow("sst-2") << "sst-2"
                               << "SST-2";
        QTest::newRow("mrpc") << "mrpc"
                              << "MRPC";
        QTest::newRow("sts-b") << "sts-b"
                               << "STS-B";
        QTest::newRow("rte") << "rte"
                             << "RTE";
        QTest::newRow("qnli") << "qnli"
                              << "QNLI";
    }
    void firstExamplesMatchHf()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, key);
        QFETCH(QString, folder);
        const auto& entry = hfReference()["tasks"][key.toStdString()];
        QVERIFY(entry.is_object());
        const std::string dir = glue(folder.toStdString());
        const GlueTask task = GlueTasks::detect(dir);
        for (const char* set : { "dev", "train" }) {
            const std::string file = dir + "/" + set + ".tsv";
            const char* examplesKey = std::string(set) == "dev" ? "first_examples" : "first_train_examples";
            if (!std::filesystem::exists(file)) {
                QVERIFY(!entry.contains(examplesKey));
                continue;
            }
            const auto& expected = entry[examplesKey];
            const auto examples = GlueTasks::readFile(task, file, set);
            QCOMPARE(
                examples.size(), entry[std::string(set) == "dev" ? "n_dev" : "n_train"].get<std::size_t>());
            for (std::size_t i = 0; i < expected.size(); ++i) {
                const auto& hf = expected[i];
                const auto& ours = examples[i];
                QCOMPARE(ours.id, hf["guid"].get<std::string>());
                QCOMPARE(ours.fields[0].second, hf["text_a"].get<std::string>());
                if (hf["text_b"].is_null())
                    QCOMPARE(ours.fields.size(), std::size_t(1));
                else
                    QCOMPARE(ours.fields[1].second, hf["text_b"].get<std::string>());
                QCOMPARE(ours.label, hf["label"].get<std::string>());
                // HF's label_list order is our label index order.
                if (entry["output_mode"] == "classification") {
                    const auto& list = entry["label_list"];
                    QCOMPARE(list[static_cast<std::size_t>(ours.labelIndex)].get<std::string>(), ours.label);
                }
            }
        }
    }

    // The text-to-text cast of the reference (seq2seq_format: ' '.join([prefix, key1, text1, key2, text2])).
    void textToText()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto rte = GlueTasks::readFile(GlueTask::RTE, glue("RTE") + "/dev.tsv", "dev");
        QCOMPARE(rte[0].source,
            std::string("rte sentence1: Dana Reeve, the widow of the actor Christopher Reeve, has died of "
                        "lung cancer "
                        "at age 44, according to the Christopher Reeve Foundation. sentence2: Christopher "
                        "Reeve had an "
                        "accident."));
        QCOMPARE(rte[0].target, std::string("1")); // not_entailment = 1
        const auto cola = GlueTasks::readFile(GlueTask::CoLA, glue("CoLA") + "/dev.tsv", "dev");
        QCOMPARE(
            cola[0].source, std::string("cola sentence: The sailors rode the breeze clear of the rocks."));
        QCOMPARE(cola[0].target, std::string("1"));
        QCOMPARE(cola.back().id, std::string("dev-1042")); // the last line has no newline
        const auto sst = GlueTasks::readFile(GlueTask::SST2, glue("SST-2") + "/dev.tsv", "dev");
        QCOMPARE(
            sst[0].source, std::string("sst2 sentence: it 's a charming and often affecting journey . "));
        const auto mrpc = GlueTasks::readFile(GlueTask::MRPC, glue("MRPC") + "/dev.tsv", "dev");
        QVERIFY(mrpc[0].source.rfind("mrpc sentence1: He said", 0) == 0); // the BOM is gone
        QCOMPARE(mrpc[0].fields[1].second.front(), '"'); // quotes kept as text
        const auto stsb = GlueTasks::readFile(GlueTask::STSB, glue("STS-B") + "/dev.tsv", "dev");
        QCOMPARE(stsb[0].source,
            std::string("stsb sentence1: A man with a hard hat is dancing. sentence2: A man wearing a hard "
                        "hat is dancing."));
        QCOMPARE(stsb[0].target, std::string("5.0"));
        QCOMPARE(stsb[5].label, std::string("2.615"));
        QCOMPARE(stsb[5].target, std::string("2.6"));
        QCOMPARE(stsb[1].target, std::string("4.8")); // 4.75 -> 4.8 (half to even on 47.5)
        // STS-B is read with quoting disabled: no row swallows its neighbours.
        QCOMPARE(stsb.size(), std::size_t(1500));
    }

    // Synthetic MNLI: mismatched -> validation, matched -> test; the reference's "hypothesis" keyword
    // (no colon); entailment 0, neutral 1, contradiction 2 (HF datasets' order).
    void mnli()
    {
        const std::string dir = makeMnliFolder();
        QCOMPARE(GlueTasks::detect(dir), GlueTask::MNLI);
        const auto splits = ladder::loadGlueTask(dir);
        QCOMPARE(splits.train.size(), std::size_t(7));
        QCOMPARE(splits.validation.size(), std::size_t(4));
        QCOMPARE(splits.test.size(), std::size_t(5));
        QCOMPARE(splits.train[0].source, std::string("mnli premise: Premise \"0 hypothesis Hypothesis 0"));
        QCOMPARE(splits.train[0].target, std::string("0"));
        QCOMPARE(splits.train[1].target, std::string("1"));
        QCOMPARE(splits.train[2].target, std::string("2"));
        QVERIFY(splits.validation[0].source.find("mismatched premise 0") != std::string::npos);
        QVERIFY(splits.test[0].source.find("matched premise 0") != std::string::npos);
        QCOMPARE(splits.test[0].id, std::string("dev_matched-0"));
        QCOMPARE(splits.info.labels, (std::vector<std::string> { "0", "1", "2" }));
    }

    // Synthetic QQP: 1000 of train to validation, dev -> test; detected by its header.
    void qqp()
    {
        const std::string dir = makeQqpFolder("questions");
        QCOMPARE(GlueTasks::detect(dir), GlueTask::QQP);
        const auto splits = ladder::loadGlueTask(dir);
        QCOMPARE(splits.train.size(), std::size_t(100));
        QCOMPARE(splits.validation.size(), std::size_t(1000));
        QCOMPARE(splits.test.size(), std::size_t(10));
        QCOMPARE(splits.test[0].source, std::string("qqp question1: q1 0 question2: q2"));
        QCOMPARE(splits.test[0].id, std::string("dev-0"));
        // The carve-out is torch.randperm(1100, seed 42)'s first 1000.
        const auto order = ladder::randomPermutation(1100, 42);
        QCOMPARE(splits.validation[0].id, "train-" + std::to_string(1000 + order[0]));
        QCOMPARE(splits.train[0].id, "train-" + std::to_string(1000 + order[1000]));
        QCOMPARE(splits.info.mainMetric, std::string(ladder::metric::kAccuracyF1));
        // Too small to carve 1000 out.
        GlueLoadOptions options;
        options.largeValidationSize = 1100;
        VERIFY_CONTAINS(errorOf([&] { GlueTasks::load(dir, options); }), "expected more than 1100");
    }

    // ---- Splits: deterministic, equal to the reference's torch.randperm ----------------------------------

    void permutationEqualsTorchRandperm()
    {
        // torch 2.11: torch.randperm(277, generator=torch.Generator().manual_seed(42))[:10].
        const std::vector<std::size_t> python = { 207, 84, 253, 243, 190, 28, 165, 111, 87, 170 };
        const auto ours = ladder::randomPermutation(277, 42);
        QCOMPARE(std::vector<std::size_t>(ours.begin(), ours.begin() + 10), python);
        for (const std::int64_t n : { 0, 1, 2, 5, 277, 1043, 67349 }) {
            for (const std::uint64_t seed : { 0ull, 1ull, 42ull, 12345678901ull }) {
                auto generator = at::make_generator<at::CPUGeneratorImpl>(seed & 0xffffffffu);
                const auto torchPerm = at::randperm(n, generator, at::TensorOptions().dtype(at::kLong));
                const auto mine = ladder::randomPermutation(static_cast<std::size_t>(n), seed);
                QCOMPARE(std::int64_t(mine.size()), n);
                const auto* data = torchPerm.data_ptr<std::int64_t>();
                for (std::int64_t i = 0; i < n; ++i) {
                    if (static_cast<std::int64_t>(mine[static_cast<std::size_t>(i)]) != data[i])
                        QFAIL(qPrintable(QString("n %1 seed %2: differs at %3").arg(n).arg(seed).arg(i)));
                }
            }
        }
    }

    void splitDeterminism()
    {
        LADDER_REQUIRE_FIXTURES();
        // Small set: the halves are the reference's (validation = the first 138 of randperm(277, 42)).
        const auto rte = ladder::loadGlueTask(glue("RTE"));
        const auto dev = GlueTasks::readFile(GlueTask::RTE, glue("RTE") + "/dev.tsv", "dev");
        const auto order = ladder::randomPermutation(dev.size(), 42);
        QCOMPARE(rte.validation[0].id, dev[207].id);
        QCOMPARE(rte.validation.back().id, dev[order[137]].id);
        QCOMPARE(rte.test[0].id, dev[order[138]].id);
        QCOMPARE(ids(ladder::loadGlueTask(glue("RTE"), "rte", 42).validation), ids(rte.validation));
        QVERIFY(ids(ladder::loadGlueTask(glue("RTE"), "rte", 7).validation) != ids(rte.validation));

        // Large set: same seed -> the same carve-out; another seed -> another one.
        const auto a = ladder::loadGlueTask(glue("SST-2"), "auto", 42);
        const auto b = ladder::loadGlueTask(glue("SST-2"), "sst-2", 42);
        const auto c = ladder::loadGlueTask(glue("SST-2"), "auto", 43);
        QCOMPARE(ids(a.validation), ids(b.validation));
        QCOMPARE(ids(a.train), ids(b.train));
        QVERIFY(ids(a.validation) != ids(c.validation));
        QCOMPARE(ids(a.test), ids(c.test)); // the test split (dev) does not depend on the seed
        QCOMPARE(a.validation[0].id, "train-" + std::to_string(6677 + 1)); // randperm(67349, 42)[0] = 6677
    }

    // ---- Malformed GLUE files ----------------------------------------------------------------------------

    void malformedGlue_data()
    {
        QTest::addColumn<QString>("task");
        QTest::addColumn<QByteArray>("content");
        QTest::addColumn<QString>("expected");
        const QByteArray rteHeader = QByteArray::fromStdString(kRteHeader);
        QTest::newRow("too few fields") << "rte" << rteHeader + "0\ta\tb\n"
                                        << "dev.tsv:2: expected 4 tab-separated fields";
        QTest::newRow("too many fields")
            << "rte" << rteHeader + "0\ta\tb\tentailment\n1\ta\tb\tc\tentailment\n"
            << "dev.tsv:3: expected 4 tab-separated fields";
        QTest::newRow("unknown label") << "rte" << rteHeader + "0\ta\tb\tmaybe\n"
                                       << "dev.tsv:2: unknown label 'maybe' for RTE";
        QTest::newRow("empty") << "rte" << QByteArray() << "dev.tsv: file is empty";
        QTest::newRow("whitespace only") << "rte" << QByteArray("\n\n  \n") << "dev.tsv: file is empty";
        QTest::newRow("header only") << "rte" << rteHeader << "dev.tsv: no data rows";
        QTest::newRow("test file (no labels)")
            << "rte" << QByteArray("index\tsentence1\tsentence2\n0\ta\tb\n")
            << "dev.tsv:1: column 'label' is missing";
        QTest::newRow("png") << "rte" << QByteArray("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16)
                             << "dev.tsv:1: not UTF-8 text (byte 0x89";
        QTest::newRow("NUL byte") << "rte"
                                  << rteHeader + "0\ta\tb\tentailment\n1\ta" + QByteArray(1, '\0')
                + "\tb\tentailment\n"
                                  << "dev.tsv:3: binary data";
        QTest::newRow("latin-1") << "rte" << rteHeader + "0\tcaf\xe9\tb\tentailment\n"
                                 << "dev.tsv:2: not UTF-8 text";
        QTest::newRow("stsb score")
            << "stsb"
            << QByteArray("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                          "sentence2\tscore\n0\tg\tf\ty\t1\ts\ts\ta\tb\thigh\n")
            << "dev.tsv:2: score 'high' is not a number";
        QTest::newRow("cola label") << "cola" << QByteArray("gj04\t1\t\tA.\ngj04\t0\t*\tB.\ngj04\tx\t\tC.\n")
                                    << "dev.tsv:3: unknown label 'x' for CoLA";
        QTest::newRow("cola fields") << "cola" << QByteArray("gj04\t1\t\tA.\ngj04\t1\tA.\n")
                                     << "dev.tsv:2: expected 4 tab-separated fields";
        QTest::newRow("cola test file") << "cola" << QByteArray("index\tsentence\n0\tA.\n")
                                        << "dev.tsv:1: this is CoLA's unlabelled test file";
        QTest::newRow("mrpc label")
            << "mrpc"
            << QByteArray("\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n2\t1\t2\ta\tb\n")
            << "dev.tsv:2: unknown label '2' for MRPC";
        QTest::newRow("sst2 wrong header")
            << "sst2" << QByteArray("text\tlabel\nok\t1\n") << "dev.tsv:1: column 'sentence' is missing";
    }
    void malformedGlue()
    {
        QFETCH(QString, task);
        QFETCH(QByteArray, content);
        QFETCH(QString, expected);
        const std::string path = ladder::test::makeTempDir() + "/dev.tsv";
        writeFile(path, content.toStdString());
        const std::string message
            = errorOf([&] { GlueTasks::readFile(GlueTasks::parseName(task.toStdString()), path, "dev"); });
        VERIFY_CONTAINS(message, expected.toStdString());
        VERIFY_CONTAINS(message, path); // the file is named in full
    }

    // Quirks every reader must take: CRLF, a BOM anywhere, no final newline, blank lines, a header on CoLA.
    void glueQuirks()
    {
        const std::string dir = ladder::test::makeTempDir();
        writeFile(dir + "/a.tsv",
            "\xef\xbb\xbf" + kRteHeader + "0\tA \"quoted\tB\tentailment\r\n\r\n1\tC\tD\tnot_entailment");
        const auto rte = GlueTasks::readFile(GlueTask::RTE, dir + "/a.tsv", "dev");
        QCOMPARE(rte.size(), std::size_t(2));
        QCOMPARE(rte[0].fields[0].second, std::string("A \"quoted"));
        QCOMPARE(rte[1].label, std::string("not_entailment"));
        QCOMPARE(rte[1].id, std::string("dev-1"));
        writeFile(dir + "/b.tsv", "source\tlabel\toriginal\tsentence\ngj04\t0\t*\tBad sentence.\n");
        const auto cola = GlueTasks::readFile(GlueTask::CoLA, dir + "/b.tsv", "train");
        QCOMPARE(cola.size(), std::size_t(1));
        QCOMPARE(cola[0].source, std::string("cola sentence: Bad sentence."));
        QCOMPARE(cola[0].target, std::string("0"));
    }

    // Random edits of small valid files (inserted tabs, newlines, quotes, NULs, broken UTF-8; deletions;
    // truncation): every outcome is examples or a ladder::Error, never a crash or another exception.
    void fuzzedFilesNeverCrash()
    {
        const std::string dir = ladder::test::makeTempDir();
        const std::string seeds[] = {
            kRteHeader + "0\tA b.\tC d.\tentailment\n1\t\"E\tF\tnot_entailment\n",
            "text,label\n\"a, b\",x\n\"c\"\"d\",y\nplain,x\n",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n",
        };
        const char* const names[] = { "/f.tsv", "/f.csv", "/f.jsonl" };
        const char alphabet[] = { '\t', '\n', '\r', '"', ',', '{', '}', '\0', '\xff', '\xc3', 'a', '1' };
        std::mt19937 rng(7);
        int errors = 0;
        int loaded = 0;
        for (int round = 0; round < 300; ++round) {
            for (int kind = 0; kind < 3; ++kind) {
                std::string text = seeds[kind];
                const unsigned edits = 1 + rng() % 4;
                for (unsigned e = 0; e < edits; ++e) {
                    const std::size_t pos = rng() % (text.size() + 1);
                    switch (rng() % 3) {
                    case 0:
                        text.insert(pos, 1, alphabet[rng() % sizeof alphabet]);
                        break;
                    case 1:
                        if (pos < text.size())
                            text.erase(pos, 1 + rng() % 3);
                        break;
                    default:
                        if (rng() % 4 == 0)
                            text.resize(pos);
                        break;
                    }
                }
                const std::string path = dir + names[kind];
                writeFile(path, text);
                try {
                    if (kind == 0) {
                        GlueTasks::readFile(GlueTask::RTE, path, "dev");
                    } else {
                        ladder::GenericTaskOptions options;
                        options.path = path;
                        options.textColumns = { "text" };
                        options.validationFraction = 0;
                        options.testFraction = 0;
                        ladder::loadGenericTask(options);
                    }
                    ++loaded;
                } catch (const ladder::Error&) {
                    ++errors;
                }
            }
        }
        QVERIFY(errors > 100);
        QVERIFY(loaded > 50);
    }
};

LADDER_TEST_GUILESS_MAIN(TestGlue)
#include "test_glue.moc"
