// The `ladder` CLI end to end: info, forward and generate against the HF fixtures, and bad input.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/Safetensors.h"

using namespace ladder;

namespace {
const char* kSynthV11 = "t5-synthetic-hf/t5-v1_1-gated-gelu-synth";

void writeFile(const std::string& path, const std::string& text)
{
    std::ofstream(path) << text;
}

int countLines(const std::string& s)
{
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}
} // namespace

class TestCli : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void version()
    {
        const auto r = test::runCli({ "--version" });
        QCOMPARE(r.exitCode, 0);
        QVERIFY(r.out.find("LibTorch") != std::string::npos);
    }

    // One table of exit codes, at the end of `ladder --help` and of every command's --help.
    void helpHasTheExitCodeTable()
    {
        for (const QStringList& args : { QStringList { "--help" }, QStringList { "train", "--help" },
                 QStringList { "runs", "list", "--help" } }) {
            const auto r = test::runCli(args);
            QCOMPARE(r.exitCode, 0);
            for (const char* line : { "Exit status", "  0    done", "  1    error", "  2    usage",
                     "  130  cancelled", "a missing value is null" })
                QVERIFY2(r.out.find(line) != std::string::npos,
                    (args.join(' ').toStdString() + ": " + line).c_str());
        }
    }

    // Every parse error exits 2 (CLI11's own codes are 105-109), with the parser's message on stderr and
    // nothing on stdout; so do the few command-line checks a command makes itself.
    void usageErrorsExit2_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("expect");
        QTest::newRow("no command") << QStringList {} << "subcommand";
        QTest::newRow("unknown command") << QStringList { "bogus" } << "";
        QTest::newRow("unknown option") << QStringList { "devices", "--bogus" } << "--bogus";
        QTest::newRow("missing required option")
            << QStringList { "params", "--shape", "t5-small" } << "--method";
        QTest::newRow("value out of range") << QStringList { "estimate", "--shape", "t5-small", "--method",
            "lora", "--batch", "0" } << "--batch";
        QTest::newRow("value of the wrong type")
            << QStringList { "estimate", "--shape", "t5-small", "--method", "lora", "--batch", "many" }
            << "--batch";
        QTest::newRow("group without subcommand") << QStringList { "runs" } << "subcommand";
        QTest::newRow("missing positional") << QStringList { "runs", "show" } << "id";
        QTest::newRow("excluded options") << QStringList { "params", "--shape", "t5-small", "--model", "/x",
            "--method", "lora" } << "--shape";
        QTest::newRow("neither alternative")
            << QStringList { "params", "--method", "lora" } << "exactly one of";
        QTest::newRow("store given twice") << QStringList { "runs", "--store", "/tmp/a.sqlite", "list",
            "--store", "/tmp/b.sqlite" } << "--store";
    }

    void usageErrorsExit2()
    {
        QFETCH(QStringList, args);
        QFETCH(QString, expect);
        const auto r = test::runCli(args);
        QVERIFY2(r.exitCode == 2, ("exit " + std::to_string(r.exitCode) + ": " + r.err).c_str());
        QVERIFY2(r.out.empty(), r.out.c_str());
        QVERIFY(!r.err.empty());
        QVERIFY2(r.err.find(expect.toStdString()) != std::string::npos, r.err.c_str());
    }

    // Commands that only read a store never create one: a missing path is exactly "no results store at
    // PATH", exit 1, and no file appears. --store works before and after the runs subcommand.
    void readOnlyCommandsNeverCreateAStore_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("command");
        QTest::newRow("runs --store list") << QStringList { "runs", "--store", "@", "list" } << "runs list";
        QTest::newRow("runs list --store") << QStringList { "runs", "list", "--store", "@" } << "runs list";
        QTest::newRow("runs list --json")
            << QStringList { "runs", "list", "--json", "--store", "@" } << "runs list";
        QTest::newRow("runs --store show")
            << QStringList { "runs", "--store", "@", "show", "1" } << "runs show";
        QTest::newRow("runs show --store")
            << QStringList { "runs", "show", "1", "--store", "@" } << "runs show";
        QTest::newRow("runs export --store")
            << QStringList { "runs", "export", "--csv", "@.csv", "--store", "@" } << "runs export";
        QTest::newRow("runs --store export")
            << QStringList { "runs", "--store", "@", "export", "--csv", "@.csv" } << "runs export";
        QTest::newRow("eval") << QStringList { "eval", "--run", "1", "--store", "@" } << "eval";
        QTest::newRow("eval --json") << QStringList { "eval", "--run", "1", "--json", "--store", "@" }
                                     << "eval";
    }

    void readOnlyCommandsNeverCreateAStore()
    {
        QFETCH(QStringList, args);
        QFETCH(QString, command);
        const auto dir = test::makeTempDir();
        const auto store = dir + "/missing.sqlite";
        for (auto& a : args)
            a.replace("@", QString::fromStdString(store));
        const auto r = test::runCli(args);
        QVERIFY2(r.exitCode == 1, ("exit " + std::to_string(r.exitCode) + ": " + r.err).c_str());
        QCOMPARE(QString::fromStdString(r.err),
            QString("ladder %1: no results store at %2\n").arg(command, QString::fromStdString(store)));
        QVERIFY2(r.out.empty(), r.out.c_str());
        QVERIFY(std::filesystem::is_empty(dir)); // no store, no -wal or -shm, no CSV, no checkpoints folder
    }

    // A missing input file is an error (1), not a usage error: the command line itself was well formed.
    void missingFileExits1()
    {
        const auto dir = test::makeTempDir();
        const auto r = test::runCli({ "train", "--config", QString::fromStdString(dir + "/none.json"),
            "--store", QString::fromStdString(dir + "/s.sqlite") });
        QVERIFY2(r.exitCode == 1, ("exit " + std::to_string(r.exitCode) + ": " + r.err).c_str());
        QVERIFY2(r.err.find("none.json") != std::string::npos, r.err.c_str());
        QCOMPARE(countLines(r.err), 1);
    }

    // --json: one document with every key present; what is missing is null (bench memory without full).
    void paramsJsonHasNoMissingKeys()
    {
        const auto r = test::runCli({ "params", "--shape", "t5-small", "--method", "bitfit", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = nlohmann::json::parse(r.out);
        for (const char* key :
            { "backbone", "method", "total_params", "trainable_params", "all_params", "percent" })
            QVERIFY2(j.contains(key), key);
    }

    void info()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto r
            = test::runCli({ "info", "--model", QString::fromStdString(test::fixture(kSynthV11)), "--json" });
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j.at("parameters").get<std::int64_t>(), std::int64_t(61440));
        QCOMPARE(j.at("weight_bytes").get<std::int64_t>(), std::int64_t(61440 * 4));
        QCOMPARE(QString::fromStdString(j.at("config").at("feed_forward_proj").get<std::string>()),
            QString("gated-gelu"));
    }

    void forwardMatchesFixture_data()
    {
        QTest::addColumn<QString>("dir");
        QTest::newRow("v1_0") << "t5-synthetic-hf/t5-v1_0-relu-synth";
        QTest::newRow("v1_1") << kSynthV11;
        QTest::newRow("tiny-random") << "t5-tiny-random";
    }

    void forwardMatchesFixture()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, dir);
        const auto root = QString::fromStdString(test::fixture(dir.toStdString()));
        const auto out = QString::fromStdString(test::makeTempDir() + "/out.safetensors");
        const auto r = test::runCli({ "forward", "--model", root, "--inputs", root + "/expected/inputs.json",
            "--out", out, "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto ours = readSafetensors(out.toStdString());
        // --json: what was written, and the loss; the method fields are null for the backbone alone.
        const auto printed = nlohmann::json::parse(r.out);
        QCOMPARE(printed.at("out").get<std::string>(), out.toStdString());
        QCOMPARE(printed.at("tensors").get<std::size_t>(), ours.size());
        QVERIFY(printed.at("method").is_null() && printed.at("r").is_null());
        QVERIFY(std::abs(printed.at("loss").get<double>() - ours.at("loss").item<double>()) < 1e-5);
        const auto ref = readSafetensors((root + "/expected/expected_outputs.safetensors").toStdString());
        int compared = 0;
        for (const auto& [name, tensor] : ours) {
            QVERIFY2(ref.count(name), ("unexpected output " + name).c_str());
            QCOMPARE(tensor.scalar_type(), at::kFloat);
            QVERIFY2(test::relativeError(tensor, ref.at(name)) < 1e-4, name.c_str());
            ++compared;
        }
        for (const char* required : { "logits", "loss", "encoder_last_hidden_state",
                 "encoder_hidden_states.0", "decoder_hidden_states.0" })
            QVERIFY(ours.count(required));
        QVERIFY(compared >= 6);
    }

    void generateMatchesFixture_data()
    {
        QTest::addColumn<QString>("dir");
        QTest::addColumn<QString>("mode");
        QTest::addColumn<QString>("beams");
        QTest::newRow("v1_0 greedy") << "t5-synthetic-hf/t5-v1_0-relu-synth"
                                     << "greedy"
                                     << "1";
        QTest::newRow("v1_0 beam3") << "t5-synthetic-hf/t5-v1_0-relu-synth"
                                    << "beam3"
                                    << "3";
        QTest::newRow("v1_1 greedy") << kSynthV11 << "greedy"
                                     << "1";
        QTest::newRow("v1_1 beam3") << kSynthV11 << "beam3"
                                    << "3";
    }

    void generateMatchesFixture()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, dir);
        QFETCH(QString, mode);
        QFETCH(QString, beams);
        const auto root = QString::fromStdString(test::fixture(dir.toStdString()));
        const auto r = test::runCli({ "generate", "--model", root, "--inputs", root + "/expected/inputs.json",
            "--num-beams", beams, "--max-new-tokens", "10" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        std::ifstream in((root + "/expected/expected_outputs.json").toStdString());
        const auto expected
            = nlohmann::json::parse(in).at("generation").at(mode.toStdString()).at("sequences");
        const auto ours = nlohmann::json::parse(r.out);
        QCOMPARE(ours.size(), std::size_t(1)); // exactly {"sequences": ...}
        QCOMPARE(
            QString::fromStdString(ours.at("sequences").dump()), QString::fromStdString(expected.dump()));
    }

    // `ladder params` reproduces the paper's "update params per task" at the published shapes.
    void paramsMatchPaper_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<double>("percent");
        QTest::newRow("LST base") << QStringList { "--shape", "t5-base", "--method", "ladder", "--r", "8",
            "--keep", "1,2,3,5,6,7,9,10,11" }
                                  << 1.740;
        QTest::newRow("LST large") << QStringList { "--shape", "t5-large", "--method", "ladder", "--r", "8",
            "--keep", "1,3,5,7,9,11,13,15,17,19,21,23" }
                                   << 1.228;
        QTest::newRow("LST 3b") << QStringList { "--shape", "t5-3b", "--method", "ladder", "--r", "8",
            "--keep", "23" } << 0.087;
        QTest::newRow("adapter") << QStringList { "--shape", "t5-base", "--method", "adapter", "--hidden",
            "48" } << 1.627;
        QTest::newRow("lora") << QStringList { "--shape", "t5-base", "--method", "lora", "--rank", "32" }
                              << 1.714;
        QTest::newRow("bitfit") << QStringList { "--shape", "t5-base", "--method", "bitfit" } << 0.127;
        QTest::newRow("prompt") << QStringList { "--shape", "t5-base", "--method", "prompt", "--prompts",
            "100" } << 0.034;
    }

    void paramsMatchPaper()
    {
        QFETCH(QStringList, args);
        QFETCH(double, percent);
        const auto r = test::runCli(QStringList { "params", "--json" } + args);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = nlohmann::json::parse(r.out);
        QVERIFY2(std::abs(j.at("percent").get<double>() - percent) < 0.0005, r.out.c_str());
        if (j.at("method").at("method") == "ladder") // counted without data; the options shown are the given
            QCOMPARE(j.at("method").at("init").get<std::string>(), std::string("fisher"));
    }

    void paramsRejectsForeignFlag()
    {
        const auto r = test::runCli({ "params", "--shape", "t5-small", "--method", "lora", "--hidden", "8" });
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("--hidden is not an option of method lora") != std::string::npos, r.err.c_str());
        QCOMPARE(countLines(r.err), 1);
    }

    // Real AdamW steps on a small shape: every method measured, LST below full, the JSON fields there.
    void benchMemoryJson()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto r = test::runCli({ "bench", "memory", "--model",
            QString::fromStdString(test::fixture(kSynthV11)), "--batch", "4", "--src-len", "16", "--tgt-len",
            "4", "--steps", "2", "--rank", "4", "--hidden", "8", "--prompts", "4", "--r", "2", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = nlohmann::json::parse(r.out);
        for (const char* m : { "full", "bitfit", "adapter", "lora", "prompt", "ladder" }) {
            QVERIFY2(j.contains(m), m);
            for (const char* field : { "peak_bytes", "static_bytes", "trainable_params", "total_params" })
                QVERIFY2(j.at(m).contains(field), field);
            QVERIFY(j.at(m).at("peak_bytes").get<std::uint64_t>()
                >= j.at(m).at("static_bytes").get<std::uint64_t>());
        }
        // full: weights + gradients + two AdamW moments of every parameter (61,440 parameters).
        QVERIFY(j.at("full").at("static_bytes").get<std::uint64_t>() >= 61440ull * 16);
        QVERIFY(j.at("ladder").at("peak_bytes").get<std::uint64_t>()
            < j.at("full").at("peak_bytes").get<std::uint64_t>());
        // LST's default init, fisher, needs task data: the bench builds it with init random (memory is the
        // same).
        QCOMPARE(j.at("ladder").at("options").at("init").get<std::string>(), std::string("random"));
        // The --json convention: a figure that does not exist is null, never an absent key (no reserved
        // bytes on the CPU).
        QVERIFY(j.at("full").at("peak_reserved_bytes").is_null());
        QCOMPARE(j.at("full").at("ratio_to_full").get<double>(), 1.0);
    }

    // Any bad input: non-zero exit, one line on stderr naming the problem, no crash.
    void badInputGivesOneLine_data()
    {
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("expect");
        QTest::newRow("missing folder") << "missing-folder"
                                        << "not a folder";
        QTest::newRow("inputs not json") << "inputs-garbage"
                                         << "not valid JSON";
        QTest::newRow("ragged input_ids") << "inputs-ragged"
                                          << "input_ids[1]";
        QTest::newRow("id outside vocab") << "inputs-vocab"
                                          << "input_ids[0][1] = 999";
        QTest::newRow("no labels") << "inputs-nolabels"
                                   << "labels";
        QTest::newRow("bad dtype flag") << "bad-dtype"
                                        << "--dtype";
        QTest::newRow("truncated weights") << "truncated-weights"
                                           << "model.safetensors";
        QTest::newRow("config missing d_model") << "config-missing"
                                                << "d_model";
    }

    void badInputGivesOneLine()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(QString, kind);
        QFETCH(QString, expect);
        const auto tmp = test::makeTempDir();
        const auto src = test::fixture(kSynthV11);
        QString model = QString::fromStdString(src);
        QString inputs = QString::fromStdString(tmp + "/inputs.json");
        QStringList extra;
        writeFile(inputs.toStdString(), R"({"input_ids": [[5, 6, 1]], "labels": [[7, 1]]})");
        if (kind == "missing-folder") {
            model = QString::fromStdString(tmp + "/nope");
        } else if (kind == "inputs-garbage") {
            writeFile(inputs.toStdString(), "{\"input_ids\": [[1, 2");
        } else if (kind == "inputs-ragged") {
            writeFile(
                inputs.toStdString(), R"({"input_ids": [[5, 6, 1], [5, 1]], "labels": [[7, 1], [7, 1]]})");
        } else if (kind == "inputs-vocab") {
            writeFile(inputs.toStdString(), R"({"input_ids": [[5, 999, 1]], "labels": [[7, 1]]})");
        } else if (kind == "inputs-nolabels") {
            writeFile(inputs.toStdString(), R"({"input_ids": [[5, 6, 1]]})");
        } else if (kind == "bad-dtype") {
            extra << "--dtype"
                  << "fp8";
        } else {
            const auto dir = tmp + "/model";
            std::filesystem::create_directory(dir);
            std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
            std::filesystem::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
            if (kind == "truncated-weights")
                std::filesystem::resize_file(dir + "/model.safetensors", 5000);
            else
                writeFile(dir + "/config.json", R"({"vocab_size": 256, "d_kv": 6, "d_ff": 48, "num_heads": 4,
                                                  "num_layers": 3})");
            model = QString::fromStdString(dir);
        }
        const auto r = test::runCli(QStringList { "forward", "--model", model, "--inputs", inputs, "--out",
                                        QString::fromStdString(tmp + "/o.safetensors") }
            + extra);
        QVERIFY2(r.exitCode == 1, ("exit " + std::to_string(r.exitCode) + " " + r.err).c_str());
        QCOMPARE(countLines(r.err), 1);
        QVERIFY2(r.err.find(expect.toStdString()) != std::string::npos, r.err.c_str());
        QVERIFY(!std::filesystem::exists(tmp + "/o.safetensors"));
    }
};

LADDER_TEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
