// Task data (core/data): GLUE readers on every task of ../shared/fixtures/glue (row counts after the paper's
// splits, first examples equal to HF's processors), the text-to-text cast, split determinism (equal to
// torch.randperm), malformed files, the generic JSONL / CSV / TSV reader and the Batcher.
#include <QtTest>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/Batcher.h"
#include "data/GenericTask.h"
#include "data/GlueTasks.h"
#include "data/Metrics.h"
#include "data/Permutation.h"
#include "data/TextTable.h"
#include "model/T5Tokenizer.h"
#include "util/Error.h"

using ladder::GlueLoadOptions;
using ladder::GlueTask;
using ladder::GlueTasks;
using ladder::TaskSplits;
using ladder::TextExample;

namespace {

std::string glue(const std::string& folder)
{
    return ladder::test::fixture("glue/" + folder);
}

void writeFile(const std::string& path, const std::string& bytes)
{
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

const nlohmann::json& hfReference()
{
    static const nlohmann::json json = [] {
        std::ifstream in(ladder::test::fixture("glue/hf_reference/hf_glue_processors_and_metrics.json"));
        return in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    }();
    return json;
}

std::vector<std::string> ids(const std::vector<TextExample>& examples)
{
    std::vector<std::string> out;
    for (const auto& ex : examples)
        out.push_back(ex.id);
    return out;
}

// The message of the ladder::Error `f` throws; fails the test when it throws nothing.
template <typename F> std::string errorOf(F&& f)
{
    try {
        f();
    } catch (const ladder::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("NOT A ladder::Error: ") + e.what();
    }
    return "NO ERROR";
}

#define VERIFY_CONTAINS(haystack, needle)                                                                    \
    QVERIFY2(std::string(haystack).find(needle) != std::string::npos,                                        \
        qPrintable(                                                                                          \
            QString::fromStdString("'" + std::string(haystack) + "' lacks '" + std::string(needle) + "'")))

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

private:
    std::unique_ptr<ladder::T5Tokenizer> m_tokenizer;
    const ladder::T5Tokenizer& tokenizer()
    {
        if (!m_tokenizer)
            m_tokenizer
                = std::make_unique<ladder::T5Tokenizer>(ladder::test::fixture("t5-spiece/spiece.model"));
        return *m_tokenizer;
    }

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

    // ---- Generic tasks -------------------------------------------------------------------------------

    void genericCsv()
    {
        const std::string dir = ladder::test::makeTempDir();
        // RFC 4180: quoted fields with commas, "" escapes and an embedded newline; CRLF line ends.
        writeFile(dir + "/train.csv",
            "text,extra,label\r\n"
            "\"Hello, world\",x,pos\r\n"
            "\"She said \"\"hi\"\"\",y,neg\r\n"
            "\"two\nlines\",z,pos\r\n"
            "plain,w,neutral\r\n");
        ladder::GenericTaskOptions options;
        options.path = dir + "/train.csv";
        options.textColumns = { "text" };
        options.taskName = "sentiment";
        options.validationFraction = 0;
        options.testFraction = 0;
        const auto splits = ladder::loadGenericTask(options);
        QCOMPARE(splits.train.size(), std::size_t(4));
        // Sorted label list by default.
        QCOMPARE(splits.info.labelNames, (std::vector<std::string> { "neg", "neutral", "pos" }));
        QCOMPARE(splits.info.labels, (std::vector<std::string> { "0", "1", "2" }));
        std::map<std::string, TextExample> byId;
        for (const auto& ex : splits.train)
            byId[ex.id] = ex;
        QCOMPARE(byId.at("train.csv:2").source, std::string("sentiment text: Hello, world"));
        QCOMPARE(byId.at("train.csv:2").target, std::string("2"));
        QCOMPARE(byId.at("train.csv:3").fields[0].second, std::string("She said \"hi\""));
        QCOMPARE(byId.at("train.csv:4").fields[0].second, std::string("two\nlines"));
        QCOMPARE(
            byId.at("train.csv:6").label, std::string("neutral")); // physical line, after a 2-line record
        // First-appearance order and label text as targets.
        options.labelOrder = ladder::GenericTaskOptions::LabelOrder::FirstAppearance;
        options.labelTextTargets = true;
        const auto text = ladder::loadGenericTask(options);
        QCOMPARE(text.info.labels, (std::vector<std::string> { "pos", "neg", "neutral" }));
        for (const auto& ex : text.train)
            QCOMPARE(ex.target, ex.label);
    }

    void genericJsonlAndTsv()
    {
        const std::string dir = ladder::test::makeTempDir();
        std::string jsonl;
        for (int i = 0; i < 50; ++i)
            jsonl += "{\"premise\": \"p" + std::to_string(i) + "\", \"hypothesis\": \"h\", \"score\": "
                + std::to_string(i % 6) + ".25, \"meta\": [1, 2]}\n";
        jsonl += "\n"; // a blank line is skipped
        writeFile(dir + "/sim.jsonl", jsonl);
        ladder::GenericTaskOptions options;
        options.path = dir + "/sim.jsonl";
        options.textColumns = { "premise", "hypothesis" };
        options.labelColumn = "score";
        options.kind = ladder::TaskKind::Regression;
        options.taskName = "sim";
        const auto splits = ladder::loadGenericTask(options);
        QCOMPARE(splits.validation.size(), std::size_t(5));
        QCOMPARE(splits.test.size(), std::size_t(5));
        QCOMPARE(splits.train.size(), std::size_t(40));
        QCOMPARE(splits.info.mainMetric, std::string(ladder::metric::kPearsonSpearman));
        const auto& ex = splits.train[0];
        QVERIFY(ex.source.rfind("sim premise: p", 0) == 0);
        QVERIFY(ex.source.find(" hypothesis: h") != std::string::npos);
        QCOMPARE(ex.target, ladder::formatScoreTarget(ex.score, 1));
        // Same seed -> same split; another seed -> another.
        QCOMPARE(ids(ladder::loadGenericTask(options).validation), ids(splits.validation));
        options.seed = 1;
        QVERIFY(ids(ladder::loadGenericTask(options).validation) != ids(splits.validation));

        // TSV with separate validation and test files; a .json array file.
        writeFile(dir + "/train.tsv", "sentence\tlabel\na \"b\tyes\nc\tno\n");
        writeFile(dir + "/dev.tsv", "sentence\tlabel\nd\tno\n");
        writeFile(dir + "/test.json",
            "[{\"sentence\": \"e\", \"label\": \"yes\"}, {\"sentence\": 5, \"label\": \"no\"}]");
        ladder::GenericTaskOptions tsv;
        tsv.path = dir + "/train.tsv";
        tsv.validationPath = dir + "/dev.tsv";
        tsv.testPath = dir + "/test.json";
        tsv.textColumns = { "sentence" };
        tsv.taskName = "";
        const auto files = ladder::loadGenericTask(tsv);
        QCOMPARE(files.train.size(), std::size_t(2));
        QCOMPARE(files.train[0].source, std::string("sentence: a \"b")); // no prefix, no quoting in TSV
        QCOMPARE(files.validation.size(), std::size_t(1));
        QCOMPARE(files.test.size(), std::size_t(2));
        QCOMPARE(files.test[1].source, std::string("sentence: 5"));
        QCOMPARE(files.test[1].id, std::string("test.json: item 2"));
    }

    void malformedGeneric_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QByteArray>("content");
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("expected");
        QTest::newRow("jsonl missing label")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"}\n")
            << "classification"
            << "train.jsonl:2: column 'label' is missing";
        QTest::newRow("csv missing label column")
            << "train.csv" << QByteArray("text,lbl\na,x\n") << "classification"
            << "train.csv:2: column 'label' is missing";
        QTest::newRow("csv wrong count")
            << "train.csv" << QByteArray("text,label\na,x\nb,y\n\"c,d\",e,f\n") << "classification"
            << "train.csv:4: expected 2 comma-separated fields";
        QTest::newRow("csv unclosed quote")
            << "train.csv" << QByteArray("text,label\na,x\nb,\"y\nc,z\n") << "classification"
            << "train.csv:3: field 2 opens a quote that is never closed";
        QTest::newRow("csv text after quote")
            << "train.csv" << QByteArray("text,label\n\"a\"b,x\n") << "classification"
            << "train.csv:2: field 1 has text after its closing quote";
        QTest::newRow("csv duplicate column")
            << "train.csv" << QByteArray("text,text,label\na,b,x\n") << "classification"
            << "train.csv:1: column 'text' appears twice";
        QTest::newRow("jsonl bad json")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n{\"text\": \n")
            << "classification"
            << "train.jsonl:2: not valid JSON";
        QTest::newRow("json array of numbers") << "train.jsonl" << QByteArray("[1, 2]\n") << "classification"
                                               << "train.jsonl: item 1: expected a JSON object";
        QTest::newRow("jsonl array line")
            << "train.jsonl" << QByteArray("{\"text\":\"a\",\"label\":\"x\"}\n\"just text\"\n")
            << "classification"
            << "train.jsonl:2: expected a JSON object";
        QTest::newRow("jsonl structured text")
            << "train.jsonl" << QByteArray("{\"text\":[\"a\"],\"label\":\"x\"}\n") << "classification"
            << "train.jsonl:1: column 'text' holds an array";
        QTest::newRow("regression not a number")
            << "train.tsv" << QByteArray("text\tlabel\na\t0.5\nb\thigh\n") << "regression"
            << "train.tsv:3: label 'high' in column 'label' is not a number";
        QTest::newRow("empty label") << "train.tsv" << QByteArray("text\tlabel\na\t \n") << "classification"
                                     << "train.tsv:2: column 'label' is empty";
        QTest::newRow("empty file") << "train.csv" << QByteArray("") << "classification"
                                    << "train.csv: file is empty";
        QTest::newRow("header only") << "train.csv" << QByteArray("text,label\n") << "classification"
                                     << "train.csv: no data rows";
        QTest::newRow("binary") << "train.jsonl" << QByteArray("\x1f\x8b\x08\x00\x00\x00", 6)
                                << "classification"
                                << "train.jsonl:1: not UTF-8 text (byte 0x8b";
        QTest::newRow("NUL") << "train.csv" << QByteArray("text,label\na\0b,x\n", 17) << "classification"
                             << "train.csv:2: binary data";
        QTest::newRow("unknown extension")
            << "train.txt" << QByteArray("text,label\na,x\n") << "classification"
            << "cannot tell the format";
        QTest::newRow("missing file") << "" << QByteArray() << "classification"
                                      << "file not found";
    }
    void malformedGeneric()
    {
        QFETCH(QString, file);
        QFETCH(QByteArray, content);
        QFETCH(QString, kind);
        QFETCH(QString, expected);
        const std::string dir = ladder::test::makeTempDir();
        ladder::GenericTaskOptions options;
        options.path = dir + "/" + (file.isEmpty() ? std::string("absent.csv") : file.toStdString());
        if (!file.isEmpty())
            writeFile(options.path, content.toStdString());
        options.textColumns = { "text" };
        options.kind = kind == "regression" ? ladder::TaskKind::Regression : ladder::TaskKind::Classification;
        options.validationFraction = 0;
        options.testFraction = 0;
        const std::string message = errorOf([&] { ladder::loadGenericTask(options); });
        VERIFY_CONTAINS(message, expected.toStdString());
    }

    void genericLabelErrors()
    {
        const std::string dir = ladder::test::makeTempDir();
        writeFile(dir + "/train.csv", "text,label\na,neg\nb,pos\n");
        writeFile(dir + "/dev.csv", "text,label\nc,pos\nd,maybe\n");
        ladder::GenericTaskOptions options;
        options.path = dir + "/train.csv";
        options.validationPath = dir + "/dev.csv";
        options.textColumns = { "text" };
        options.testFraction = 0;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }),
            "dev.csv:3: unknown label 'maybe' in column 'label'; the labels of train.csv are 'neg', 'pos'");
        options.validationPath.clear();
        options.labels = { "neg" };
        VERIFY_CONTAINS(
            errorOf([&] { ladder::loadGenericTask(options); }), "train.csv:3: unknown label 'pos'");
        options.labels.clear();
        options.validationFraction = 0.5;
        options.testFraction = 0.5;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "must be below 1");
        options.validationFraction = 0.4;
        options.testFraction = 0.4;
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "too few");
        options.textColumns = {};
        VERIFY_CONTAINS(errorOf([&] { ladder::loadGenericTask(options); }), "no text columns");
    }

    void csvParser()
    {
        using ladder::TextTable;
        const auto rows = TextTable::splitCsv("a,b\n\n\"x\"\"y\",\"\"\r\n,\n\"multi\r\nline\",z", "t.csv");
        QCOMPARE(rows.size(), std::size_t(4));
        QCOMPARE(rows[0].fields, (std::vector<std::string> { "a", "b" }));
        QCOMPARE(rows[1].line, std::size_t(3));
        QCOMPARE(rows[1].fields, (std::vector<std::string> { "x\"y", "" }));
        QCOMPARE(rows[2].fields, (std::vector<std::string> { "", "" }));
        QCOMPARE(rows[3].line, std::size_t(5));
        QCOMPARE(rows[3].fields, (std::vector<std::string> { "multi\r\nline", "z" }));
        const auto tsv = TextTable::splitTsv("a\tb\r\nc\"\td\re\tf");
        QCOMPARE(tsv.size(), std::size_t(3));
        QCOMPARE(tsv[1].fields, (std::vector<std::string> { "c\"", "d" }));
        QCOMPARE(tsv[2].line, std::size_t(3));
    }

    // ---- Batching ------------------------------------------------------------------------------------

    void batching()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto rte = ladder::loadGlueTask(glue("RTE"));
        const auto& tok = tokenizer();
        ladder::BatcherOptions options;
        options.batchSize = 16;
        options.maxSourceLength = 64;
        options.maxTargetLength = ladder::Batcher::targetLengthFor(rte.info, tok, 128);
        QCOMPARE(options.maxTargetLength, 3); // T5's vocabulary: "1" -> "▁1" </s>, "0" -> "▁" "0" </s>
        const ladder::Batcher batcher(tok, rte.validation, options);
        QCOMPARE(batcher.exampleCount(), std::size_t(138));
        QCOMPARE(batcher.batchCount(), std::size_t(9));
        QVERIFY(batcher.truncatedSources() > 0);

        const auto batches = batcher.epoch(0);
        QCOMPARE(batches.size(), std::size_t(9));
        std::vector<std::size_t> seen;
        for (const auto& b : batches) {
            const auto rows = static_cast<std::int64_t>(b.indices.size());
            QCOMPARE(b.batch.inputIds.size(0), rows);
            QCOMPARE(b.batch.inputIds.scalar_type(), at::kLong);
            QCOMPARE(b.batch.attentionMask.scalar_type(), at::kLong);
            QCOMPARE(b.batch.labels.scalar_type(), at::kLong);
            QVERIFY(b.batch.inputIds.size(1) <= 64);
            QVERIFY(b.batch.labels.size(1) <= 3);
            // Dynamic padding: the longest row fills the batch.
            QCOMPARE(b.batch.attentionMask.sum(1).max().item<std::int64_t>(), b.batch.inputIds.size(1));
            // pad where the mask is 0; labels padded with -100 ("1" has 2 ids, "0" 3).
            QCOMPARE(
                b.batch.inputIds.masked_select(b.batch.attentionMask == 0).ne(0).sum().item<std::int64_t>(),
                std::int64_t(0));
            for (std::int64_t r = 0; r < rows; ++r) {
                const auto& ids = batcher.sourceIds(b.indices[static_cast<std::size_t>(r)]);
                const auto length = b.batch.attentionMask[r].sum().item<std::int64_t>();
                QCOMPARE(length, std::int64_t(ids.size()));
                QCOMPARE(b.batch.inputIds[r][length - 1].item<std::int64_t>(), tok.eosId()); // eos kept last
                const auto& ex = rte.validation[b.indices[static_cast<std::size_t>(r)]];
                const auto target = tok.encode(ex.target);
                QVERIFY(target.size() <= 3);
                for (std::size_t c = 0; c < 3; ++c)
                    QCOMPARE(b.batch.labels[r][static_cast<std::int64_t>(c)].item<std::int64_t>(),
                        c < target.size() ? target[c] : ladder::Batcher::kIgnoreIndex);
            }
            seen.insert(seen.end(), b.indices.begin(), b.indices.end());
        }
        // No shuffle: every example once, in order.
        std::vector<std::size_t> expected(138);
        std::iota(expected.begin(), expected.end(), std::size_t(0));
        QCOMPARE(seen, expected);

        // The same rows as the tokenizer's own batch encoding (truncation and padding of HF).
        std::vector<std::string> texts;
        for (std::size_t i = 0; i < 16; ++i)
            texts.push_back(rte.validation[i].source);
        const auto reference = tok.encodeBatch(texts, 64, true);
        const auto& first = batches[0].batch.inputIds;
        QCOMPARE(first.size(1), std::int64_t(reference.inputIds[0].size()));
        for (std::size_t r = 0; r < 16; ++r) {
            for (std::size_t c = 0; c < reference.inputIds[r].size(); ++c)
                QCOMPARE(
                    first[static_cast<std::int64_t>(r)][static_cast<std::int64_t>(c)].item<std::int64_t>(),
                    reference.inputIds[r][c]);
        }
    }

    void labelPaddingAndTruncation()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto& tok = tokenizer();
        std::vector<TextExample> examples(3);
        examples[0].source = "short";
        examples[0].target = "1";
        examples[1].source = "a much longer source sentence that is cut";
        examples[1].target = "a longer target text here";
        examples[2].source = "mid length text";
        examples[2].target = "";
        ladder::BatcherOptions options;
        options.batchSize = 3;
        options.maxSourceLength = 4;
        options.maxTargetLength = 5;
        const ladder::Batcher batcher(tok, examples, options);
        const auto b = batcher.makeBatch({ 0, 1, 2 });
        QCOMPARE(b.batch.inputIds.size(1), std::int64_t(4));
        QCOMPARE(b.batch.inputIds[1][3].item<std::int64_t>(), tok.eosId()); // truncated, eos kept
        QCOMPARE(b.batch.labels.size(1), std::int64_t(5));
        const auto target0 = tok.encode("1");
        for (std::int64_t c = 0; c < 5; ++c) {
            const auto value = b.batch.labels[0][c].item<std::int64_t>();
            if (c < std::int64_t(target0.size()))
                QCOMPARE(value, target0[static_cast<std::size_t>(c)]);
            else
                QCOMPARE(value, ladder::Batcher::kIgnoreIndex);
        }
        QCOMPARE(b.batch.labels[1][4].item<std::int64_t>(), tok.eosId());
        QCOMPARE(b.batch.labels[2][0].item<std::int64_t>(), tok.eosId()); // empty target = </s>
        QCOMPARE(b.batch.labels[2][1].item<std::int64_t>(), ladder::Batcher::kIgnoreIndex);
        QVERIFY(batcher.truncatedTargets() > 0);
        QVERIFY_THROWS_EXCEPTION(ladder::Error, batcher.makeBatch({ 3 }));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, batcher.makeBatch({}));
        options.batchSize = 0;
        QVERIFY_THROWS_EXCEPTION(ladder::Error, (void)ladder::Batcher(tok, examples, options));
    }

    void shuffleAndBucketing()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto rte = ladder::loadGlueTask(glue("RTE"));
        std::vector<TextExample> examples(rte.train.begin(), rte.train.begin() + 600);
        ladder::BatcherOptions options;
        options.batchSize = 10;
        options.maxSourceLength = 256;
        options.shuffle = true;
        options.seed = 3;
        const ladder::Batcher plain(tokenizer(), examples, options);
        options.bucketByLength = true;
        options.bucketChunk = 10;
        const ladder::Batcher bucketed(tokenizer(), examples, options);

        auto flat = [](const std::vector<std::vector<std::size_t>>& plan) {
            std::vector<std::size_t> out;
            for (const auto& b : plan)
                out.insert(out.end(), b.begin(), b.end());
            return out;
        };
        auto padding
            = [&](const ladder::Batcher& batcher, const std::vector<std::vector<std::size_t>>& plan) {
                  std::size_t pad = 0;
                  for (const auto& b : plan) {
                      std::size_t longest = 0;
                      for (const auto i : b)
                          longest = std::max(longest, batcher.sourceIds(i).size());
                      for (const auto i : b)
                          pad += longest - batcher.sourceIds(i).size();
                  }
                  return pad;
              };
        for (const auto* batcher : { &plain, &bucketed }) {
            const auto e0 = batcher->plan(0);
            QCOMPARE(e0.size(), std::size_t(60));
            auto all = flat(e0);
            std::sort(all.begin(), all.end());
            std::vector<std::size_t> expected(600);
            std::iota(expected.begin(), expected.end(), std::size_t(0));
            QCOMPARE(all, expected); // a permutation: every example once
            QCOMPARE(flat(batcher->plan(0)), flat(e0)); // deterministic
            QVERIFY(flat(batcher->plan(1)) != flat(e0)); // a new order per epoch
        }
        // Same seed, new Batcher: same plans. Another seed: another plan.
        const ladder::Batcher again(tokenizer(), examples, options);
        QCOMPARE(again.plan(2), bucketed.plan(2));
        options.seed = 4;
        const ladder::Batcher other(tokenizer(), examples, options);
        QVERIFY(other.plan(2) != bucketed.plan(2));
        // Bucketing cuts padding a lot.
        QVERIFY2(padding(bucketed, bucketed.plan(0)) * 3 < padding(plain, plain.plan(0)),
            qPrintable(QString("%1 vs %2")
                           .arg(padding(bucketed, bucketed.plan(0)))
                           .arg(padding(plain, plain.plan(0)))));

        // dropLast and the BatchSource.
        options.dropLast = true;
        options.batchSize = 7;
        const ladder::Batcher dropping(tokenizer(), examples, options);
        QCOMPARE(dropping.batchCount(), std::size_t(600 / 7));
        QCOMPARE(dropping.plan(0).size(), std::size_t(600 / 7));
        for (const auto& b : dropping.plan(0))
            QCOMPARE(b.size(), std::size_t(7));
        auto source = dropping.source(0);
        std::size_t served = 0;
        while (auto batch = source())
            ++served;
        QCOMPARE(served, std::size_t(600 / 7));
    }
};

LADDER_TEST_GUILESS_MAIN(TestGlue)
#include "test_glue.moc"
