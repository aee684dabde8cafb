// Bad input, as a list (docs/RELIABILITY.md): hostile and mistaken files of every kind the CLI reads, each
// run through the real `ladder`. Each must end with exit status 1 (2 for a usage error), exactly one line on
// stderr of at most a few hundred characters that names the file and the field or line, no abort or stack
// trace, bounded memory, and the results store byte-identical afterwards. The exception: `ladder train`
// records its run before it loads the backbone and the task (so that Ctrl+C during a load is recorded as a
// cancelled run), so a bad backbone or task folder ends that run as failed, with the same one line as its
// reason, next to the progress lines; nothing else in the store changes.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <QDir>
#include <QProcess>
#include <QStandardPaths>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "FruitTask.h"
#include "TestSupport.h"
#include "store/ResultsStore.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

using namespace ladder;
namespace fs = std::filesystem;

namespace {

const char* kSynth = "t5-synthetic-hf/t5-v1_1-gated-gelu-synth";
const char* kSynthBin = "t5-synthetic-hf/t5-v1_0-relu-synth";
// "ladder COMMAND: " + the CLI's 400-character cap + " ... (N more characters)".
constexpr std::size_t kMaxLine = 480;

void writeFile(const std::string& path, const std::string& text)
{
    std::ofstream(path, std::ios::binary) << text;
}

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string nested(std::size_t depth)
{
    return std::string(depth, '[') + std::string(depth, ']');
}

// What a case has to work with; each case writes its files under `dir`.
struct Env {
    std::string root; // shared, read-only inputs
    std::string dir; // this case's folder
    std::string store; // an existing results store, which every case must leave byte-identical
    std::string tiny; // a tiny T5 with spiece.model
    std::string task; // a valid JSONL task
};

// A copy of a fixture model in env.dir/model, config.json changed by `edit`.
std::string modelWith(
    const Env& env, const std::function<void(nlohmann::json&)>& edit, const char* fixture = kSynth)
{
    const auto src = test::fixture(fixture);
    const auto dir = env.dir + "/model";
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(src))
        if (entry.is_regular_file() && entry.path().filename() != "expected")
            fs::copy_file(entry.path(), dir + "/" + entry.path().filename().string());
    auto config = nlohmann::json::parse(readFile(src + "/config.json"));
    edit(config);
    writeFile(dir + "/config.json", config.dump());
    return dir;
}

std::string modelWithConfigText(const Env& env, const std::string& text)
{
    const auto dir = modelWith(env, [](nlohmann::json&) {});
    writeFile(dir + "/config.json", text);
    return dir;
}

QStringList info(const std::string& model)
{
    return { "info", "--model", QString::fromStdString(model) };
}

QStringList forward(const Env& env, const std::string& model, const std::string& inputsText)
{
    writeFile(env.dir + "/inputs.json", inputsText);
    return { "forward", "--model", QString::fromStdString(model), "--inputs",
        QString::fromStdString(env.dir + "/inputs.json"), "--out",
        QString::fromStdString(env.dir + "/out.safetensors") };
}

nlohmann::json goodSpec(const Env& env)
{
    return { { "backbone", env.tiny }, { "task", test::fruitTaskSpec(env.task) },
        { "method", { { "method", "lora" }, { "rank", 4 } } },
        { "training", { { "max_steps", 2 }, { "batch_size", 8 }, { "max_source_length", 16 } } },
        { "seed", 0 } };
}

QStringList trainText(const Env& env, const std::string& specText)
{
    writeFile(env.dir + "/run.json", specText);
    return { "train", "--config", QString::fromStdString(env.dir + "/run.json"), "--store",
        QString::fromStdString(env.store) };
}

QStringList train(const Env& env, const std::function<void(nlohmann::json&)>& edit)
{
    auto spec = goodSpec(env);
    edit(spec);
    return trainText(env, spec.dump());
}

// A task file of `text` in place of the valid one.
QStringList trainOnTask(const Env& env, const std::string& name, const std::string& text,
    const std::function<void(nlohmann::json&)>& edit = {})
{
    const auto path = env.dir + "/" + name;
    writeFile(path, text);
    return train(env, [&](nlohmann::json& s) {
        s["task"]["path"] = path;
        if (edit)
            edit(s["task"]);
    });
}

// Little-endian fields of a zip archive, read and written in place.
std::size_t get16(const std::string& zip, std::size_t at)
{
    return static_cast<std::size_t>(static_cast<unsigned char>(zip[at]))
        | (static_cast<std::size_t>(static_cast<unsigned char>(zip[at + 1])) << 8);
}

void put32(std::string& zip, std::size_t at, std::uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        zip[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// Where the header of the record `name` starts: among the local headers ("PK\3\4", name length at 26, name
// at 30) or in the central directory ("PK\1\2", name length at 28, name at 46).
std::size_t zipHeader(const std::string& zip, bool central, const std::string& name)
{
    const std::string signature = central ? "PK\x01\x02" : "PK\x03\x04";
    const std::size_t lengthAt = central ? 28 : 26, nameAt = central ? 46 : 30;
    for (auto at = zip.find(signature); at != std::string::npos; at = zip.find(signature, at + 4))
        if (zip.compare(at + nameAt, get16(zip, at + lengthAt), name) == 0)
            return at;
    throw std::runtime_error("no zip header for " + name);
}

// The fixture's pytorch_model.bin alone in env.dir/model (no safetensors beside it), as bytes to edit.
std::string fixtureBin(const Env& env, std::string* dir)
{
    *dir = modelWith(
        env, [](nlohmann::json&) {}, kSynthBin);
    fs::remove(*dir + "/model.safetensors");
    return readFile(*dir + "/pytorch_model.bin");
}

const std::string kVersionRecord = "pytorch_model/version";

// The fixture's pytorch_model.bin with the bytes of its `version` record replaced (same length; both CRCs
// of the zip updated, so that only the value is wrong).
std::string binWithVersion(const Env& env, const std::string& version)
{
    if (version.size() != 2)
        throw std::runtime_error("binWithVersion: the record holds 2 bytes");
    std::string dir;
    auto zip = fixtureBin(env, &dir);
    std::uint32_t crc = 0xffffffffu;
    for (const unsigned char b : version) {
        crc ^= b;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    crc = ~crc;
    const auto local = zipHeader(zip, false, kVersionRecord);
    zip.replace(local + 30 + get16(zip, local + 26) + get16(zip, local + 28), 2, version);
    put32(zip, local + 14, crc);
    put32(zip, zipHeader(zip, true, kVersionRecord) + 16, crc);
    writeFile(dir + "/pytorch_model.bin", zip);
    return dir;
}

// The fixture's pytorch_model.bin whose zip directory claims `size` bytes for its version record (2 stored).
std::string binClaiming(const Env& env, std::uint32_t size)
{
    std::string dir;
    auto zip = fixtureBin(env, &dir);
    put32(zip, zipHeader(zip, true, kVersionRecord) + 24, size);
    writeFile(dir + "/pytorch_model.bin", zip);
    return dir;
}

// A sweep file: `extra`'s fields beside a valid base spec.
QStringList sweep(const Env& env, const std::string& extra)
{
    auto file = nlohmann::json::parse(extra);
    file["base"] = goodSpec(env);
    writeFile(env.dir + "/sweep.json", file.dump());
    return { "sweep", "--config", QString::fromStdString(env.dir + "/sweep.json"), "--store",
        QString::fromStdString(env.store) };
}

struct Case {
    const char* name;
    const char* expect; // a part of the one line
    std::function<QStringList(const Env&)> make;
    bool recordsFailedRun = false; // `ladder train` failed while loading (see the top of the file)
};

std::vector<Case> cases()
{
    using J = nlohmann::json;
    const auto configField = [](const char* field, J value) {
        return [field, value](const Env& e) { return info(modelWith(e, [&](J& c) { c[field] = value; })); };
    };
    const auto specTraining = [](const char* field, J value) {
        return [field, value](const Env& e) { return train(e, [&](J& s) { s["training"][field] = value; }); };
    };
    return {
        // config.json
        { "config nested 100,000 deep", "nested deeper than 64",
            [](const Env& e) {
                return info(modelWithConfigText(e, "{\"vocab_size\": " + nested(100000) + "}"));
            } },
        { "config not JSON", "not valid JSON",
            [](const Env& e) { return info(modelWithConfigText(e, "\x89PNG\r\n garbage {")); } },
        { "config an array", "expected a JSON object",
            [](const Env& e) { return info(modelWithConfigText(e, "[1, 2]")); } },
        { "config empty file", "not valid JSON",
            [](const Env& e) { return info(modelWithConfigText(e, "")); } },
        { "d_model negative", "d_model", configField("d_model", -32) },
        { "d_model a string", "d_model", configField("d_model", "32") },
        { "d_model 2^34", "d_model: expected at most", configField("d_model", std::int64_t(1) << 34) },
        { "vocab_size 2^40", "vocab_size: expected at most",
            configField("vocab_size", std::int64_t(1) << 40) },
        { "num_layers 2^31", "num_layers: expected at most",
            configField("num_layers", std::int64_t(1) << 31) },
        { "d_ff 2^33", "d_ff: expected at most", configField("d_ff", std::int64_t(1) << 33) },
        { "num_heads 3000", "num_heads: expected at most", configField("num_heads", 3000) },
        { "buckets 2^20", "relative_attention_num_buckets",
            configField("relative_attention_num_buckets", 1 << 20) },
        { "d_model unlike the weights", "d_model give shared.weight the shape", configField("d_model", 64) },
        { "num_layers unlike the weights", "num_layers is 5", configField("num_layers", 5) },
        { "d_ff unlike the weights", "d_ff and d_model", configField("d_ff", 100) },
        { "a 1 MB value echoed", "vocab_size: expected a positive integer",
            configField("vocab_size", std::string(1 << 20, 'x')) },
        { "a 1 MB activation name", "feed_forward_proj",
            configField("feed_forward_proj", std::string(1 << 20, 'g')) },
        // weights
        { "truncated safetensors", "model.safetensors",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                fs::resize_file(m + "/model.safetensors", 5000);
                return info(m);
            } },
        { "safetensors header length lies", "header length",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                auto bytes = readFile(m + "/model.safetensors");
                for (int i = 0; i < 8; ++i)
                    bytes[i] = static_cast<char>(0x7f);
                writeFile(m + "/model.safetensors", bytes);
                return info(m);
            } },
        { "safetensors header nested", "nested deeper than 16",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                const std::string header = "{\"a\": " + nested(5000) + "}";
                std::string bytes(8, '\0');
                for (int i = 0; i < 8; ++i)
                    bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
                writeFile(m + "/model.safetensors", bytes + header);
                return info(m);
            } },
        { "NaN weights", "NaN or infinite",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                auto bytes = readFile(m + "/model.safetensors");
                // The last four bytes are the end of the last tensor's data: a float NaN.
                bytes.replace(bytes.size() - 4, 4, std::string("\x00\x00\xc0\x7f", 4));
                writeFile(m + "/model.safetensors", bytes);
                return forward(e, m, R"({"input_ids": [[5, 6, 1]], "labels": [[7, 1]]})");
            } },
        { "shard index without weight_map", "weight_map",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                fs::remove(m + "/model.safetensors");
                writeFile(m + "/model.safetensors.index.json", R"({"metadata": {}})");
                return info(m);
            } },
        { "shard index nested", "nested deeper than 64",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                fs::remove(m + "/model.safetensors");
                writeFile(m + "/model.safetensors.index.json", "{\"weight_map\": " + nested(100000) + "}");
                return info(m);
            } },
        { "shard outside the folder", "plain file name",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                fs::remove(m + "/model.safetensors");
                writeFile(m + "/model.safetensors.index.json",
                    R"({"weight_map": {"shared.weight": "../x.safetensors"}})");
                return info(m);
            } },
        { "pytorch_model.bin not a zip", "pytorch_model.bin",
            [](const Env& e) {
                const auto m = modelWith(
                    e, [](J&) {}, kSynthBin);
                fs::remove(m + "/model.safetensors");
                writeFile(m + "/pytorch_model.bin", std::string(4096, 'z'));
                return info(m);
            } },
        { "pytorch_model.bin version not a number", "pytorch_model.bin",
            [](const Env& e) { return info(binWithVersion(e, "x\n")); } },
        { "pytorch_model.bin version negative", "pytorch_model.bin",
            [](const Env& e) { return info(binWithVersion(e, "-1")); } },
        { "pytorch_model.bin version too large", "pytorch_model.bin",
            [](const Env& e) { return info(binWithVersion(e, "99")); } },
        { "pytorch_model.bin record claims 4 GB", "claims 4294901760 bytes from 2 stored bytes",
            [](const Env& e) { return info(binClaiming(e, 0xffff0000u)); } },
        { "no weights", "no weights found",
            [](const Env& e) {
                const auto m = modelWith(e, [](J&) {});
                fs::remove(m + "/model.safetensors");
                fs::remove(m + "/pytorch_model.bin");
                return info(m);
            } },
        // inputs.json
        { "inputs nested", "nested deeper than 64",
            [](const Env& e) {
                return forward(e, modelWith(e, [](J&) {}), "{\"input_ids\": " + nested(100000) + "}");
            } },
        { "inputs ragged", "input_ids[1]",
            [](const Env& e) {
                return forward(e, modelWith(e, [](J&) {}),
                    R"({"input_ids": [[5, 6, 1], [5, 1]], "labels": [[7, 1], [7, 1]]})");
            } },
        { "inputs id outside the vocabulary", "input_ids[0][1] = 999",
            [](const Env& e) {
                return forward(
                    e, modelWith(e, [](J&) {}), R"({"input_ids": [[5, 999, 1]], "labels": [[7, 1]]})");
            } },
        { "inputs an array", "expected a JSON object",
            [](const Env& e) { return forward(e, modelWith(e, [](J&) {}), "[]"); } },
        // run specs
        { "spec nested", "nested deeper than 64",
            [](const Env& e) { return trainText(e, "{\"task\": " + nested(100000) + "}"); } },
        { "spec not JSON", "not valid JSON", [](const Env& e) { return trainText(e, "{\"backbone\": "); } },
        { "spec epochs a string", "epochs", specTraining("epochs", "ten") },
        { "spec unknown field", "learning_rat: unknown field", specTraining("learning_rat", 0.1) },
        { "spec batch_size 2^40", "batch_size: expected an integer <= 65536",
            specTraining("batch_size", std::int64_t(1) << 40) },
        { "spec max_source_length 2^30", "max_source_length", specTraining("max_source_length", 1 << 30) },
        { "spec prompts 2^31", "prompts: expected an integer <= 65536",
            [](const Env& e) {
                return train(e, [](J& s) {
                    s["method"] = { { "method", "prompt" }, { "prompts", 2147483648LL } };
                });
            } },
        { "spec unknown method", "unknown method",
            [](const Env& e) { return train(e, [](J& s) {
                                   s["method"] = { { "method", "qlora2" } };
                               }); } },
        { "spec device bogus", "device",
            [](const Env& e) { return train(e, [](J& s) { s["device"] = "tpu"; }); } },
        { "spec backbone missing", "no-such-model",
            [](const Env& e) { return train(e, [&](J& s) { s["backbone"] = e.dir + "/no-such-model"; }); },
            true },
        { "spec backbone lies about d_model", "d_model give shared.weight",
            [](const Env& e) {
                return train(e, [&](J& s) {
                    const auto tiny = e.dir + "/tiny";
                    fs::copy(e.tiny, tiny);
                    auto config = nlohmann::json::parse(readFile(tiny + "/config.json"));
                    config["d_model"] = 48;
                    writeFile(tiny + "/config.json", config.dump());
                    s["backbone"] = tiny;
                });
            },
            true },
        // tasks
        { "tsv ragged row", "tasks.tsv:3",
            [](const Env& e) {
                return trainOnTask(e, "tasks.tsv", "text\tlabel\na b\tfruit\nc d\te\tf\n",
                    [](J& t) { t["format"] = "tsv"; });
            },
            true },
        { "jsonl invalid UTF-8", "fruit.jsonl:2",
            [](const Env& e) {
                return trainOnTask(e, "fruit.jsonl",
                    "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"\xff\xfe\", \"label\": \"y\"}\n");
            },
            true },
        { "jsonl nested", "nested deeper than 64",
            [](const Env& e) {
                return trainOnTask(e, "fruit.jsonl", "{\"text\": " + nested(100000) + "}\n");
            },
            true },
        { "empty task", "fruit.jsonl: file is empty; expected one JSON object per line",
            [](const Env& e) { return trainOnTask(e, "fruit.jsonl", ""); }, true },
        { "label outside the label set", "label",
            [](const Env& e) {
                return trainOnTask(e, "fruit.jsonl",
                    test::fruitTaskText() + "{\"text\": \"odd one\", \"label\": \"mineral\"}\n", [](J& t) {
                        t["labels"] = { "fruit", "animal" };
                    });
            },
            true },
        // sweeps, stores, tokenizers
        { "sweep nested", "nested deeper than 64",
            [](const Env& e) {
                writeFile(e.dir + "/sweep.json", "{\"base\": " + nested(100000) + "}");
                return QStringList { "sweep", "--config", QString::fromStdString(e.dir + "/sweep.json"),
                    "--store", QString::fromStdString(e.store) };
            } },
        { "sweep grid key empty", "field grid.: expected a dotted path",
            [](const Env& e) { return sweep(e, R"({"grid": {"": [1, 2]}})"); } },
        { "sweep grid through a number", "seed is not an object",
            [](const Env& e) { return sweep(e, R"({"grid": {"seed.x": [1, 2]}})"); } },
        { "sweep of 20^8 runs", "more than 10000 runs",
            [](const Env& e) {
                nlohmann::json grid;
                for (int i = 0; i < 8; ++i)
                    grid["training.k" + std::to_string(i)] = std::vector<int>(20, 1);
                return sweep(e, nlohmann::json { { "grid", grid } }.dump());
            } },
        { "store not a database", "garbage.sqlite",
            [](const Env& e) {
                writeFile(e.dir + "/garbage.sqlite", std::string(8192, 'g'));
                return QStringList { "runs", "list", "--store",
                    QString::fromStdString(e.dir + "/garbage.sqlite") };
            } },
        { "spiece.model garbage", "not a SentencePiece model",
            [](const Env& e) {
                writeFile(e.dir + "/spiece.model", std::string(1000, 's'));
                return QStringList { "tokenize", "--spm", QString::fromStdString(e.dir + "/spiece.model"),
                    "hello" };
            } },
        { "decode argument of 100 KB", "is not a JSON array of token ids",
            [](const Env& e) {
                return QStringList { "tokenize", "--spm", QString::fromStdString(e.tiny + "/spiece.model"),
                    "--decode", QString::fromStdString("[" + std::string(100000, '9')) };
            } },
    };
}

} // namespace

class TestBadInputs : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        LADDER_REQUIRE_FIXTURES();
        m_env.root = test::makeTempDir();
        m_env.tiny = m_env.root + "/tiny-t5";
        test::writeTinyBackbone(m_env.tiny, 1);
        m_env.task = test::writeFruitTask(m_env.root);
        m_env.store = m_env.root + "/results.sqlite";
        ResultsStore store;
        std::string error;
        QVERIFY2(store.open(m_env.store, &error), error.c_str());
    }

    void cliRefusesBadInput_data()
    {
        QTest::addColumn<int>("index");
        const auto all = cases();
        for (std::size_t i = 0; i < all.size(); ++i)
            QTest::newRow(all[i].name) << static_cast<int>(i);
    }

    void cliRefusesBadInput()
    {
        LADDER_REQUIRE_FIXTURES();
        QFETCH(int, index);
        const auto c = cases().at(static_cast<std::size_t>(index));
        Env env = m_env;
        env.dir = m_env.root + "/case" + std::to_string(index);
        fs::create_directories(env.dir);
        env.store = env.dir + "/results.sqlite"; // this case's copy of the store
        fs::copy_file(m_env.store, env.store);
        const auto storeBefore = readFile(env.store);
        const auto r = test::runCli(c.make(env));
        QVERIFY2(
            r.exitCode == 1, ("exit " + std::to_string(r.exitCode) + ": " + r.err.substr(0, 2000)).c_str());
        QVERIFY2(r.err.find("terminate called") == std::string::npos, r.err.c_str());
        // The one line: all of stderr, or (a run that failed while loading) the line after its progress.
        std::vector<std::string> lines;
        for (std::size_t at = 0, nl; (nl = r.err.find('\n', at)) != std::string::npos; at = nl + 1)
            if (nl > at)
                lines.push_back(r.err.substr(at, nl - at));
        if (!c.recordsFailedRun)
            QVERIFY2(lines.size() == 1 && r.err.back() == '\n',
                ("not one line: " + r.err.substr(0, 2000)).c_str());
        QVERIFY2(!lines.empty(), "no message");
        const auto& line = lines.back();
        QVERIFY2(
            line.size() <= kMaxLine, ("a line of " + std::to_string(line.size()) + " characters").c_str());
        QVERIFY2(line.find(c.expect) != std::string::npos, r.err.c_str());
        if (c.recordsFailedRun) {
            // One run, failed, with the reason; nothing else.
            QCOMPARE(
                QString::fromStdString(test::rawQuery(env.store, "SELECT count(*) FROM runs")), QString("1"));
            QCOMPARE(QString::fromStdString(test::rawQuery(env.store, "SELECT status FROM runs")),
                QString("failed"));
            const auto reason = test::rawQuery(env.store, "SELECT error_message FROM runs");
            QVERIFY2(reason.find(c.expect) != std::string::npos && reason.size() <= 1100, reason.c_str());
            QCOMPARE(
                QString::fromStdString(test::rawQuery(env.store, "PRAGMA integrity_check")), QString("ok"));
        } else {
            QVERIFY2(readFile(env.store) == storeBefore, "the results store changed");
            QVERIFY2(!fs::exists(env.store + "-wal") || fs::file_size(env.store + "-wal") == 0,
                "the results store has a write-ahead log to replay");
        }
        // Bounded memory: no child of this test has held more than 3 GiB (ru_maxrss is in KiB, the largest
        // of all waited-for children).
        rusage usage {};
        getrusage(RUSAGE_CHILDREN, &usage);
        QVERIFY2(usage.ru_maxrss < 3L * 1024 * 1024, (std::to_string(usage.ru_maxrss) + " KiB").c_str());
        qInfo("%s", line.c_str());
    }

    // A store this user may not read, and one it may read but not write (another user's 0444 file in a
    // 0555 folder), through the real CLI as the user nobody (when the test runs as root, through setpriv):
    // one line naming the file and the reason, the store unchanged; `ladder runs` lists the read-only one.
    void storeThatCannotBeReadOrWritten()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto program = QString::fromStdString(test::cliPath());
        QStringList prefix;
        if (geteuid() == 0) {
            if (QStandardPaths::findExecutable(QStringLiteral("setpriv")).isEmpty())
                QSKIP("running as root without setpriv: a file root cannot read does not exist");
            prefix = { QStringLiteral("--reuid=65534"), QStringLiteral("--regid=65534"),
                QStringLiteral("--clear-groups"), program };
        }
        const auto run = [&](const QStringList& args) {
            QProcess p;
            if (prefix.isEmpty())
                p.start(program, args);
            else
                p.start(QStringLiteral("setpriv"), prefix + args);
            p.waitForFinished(120000);
            return std::make_pair(p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1,
                p.readAllStandardOutput().toStdString() + "|" + p.readAllStandardError().toStdString());
        };
        char pattern[] = "/tmp/ladder-unreadable-XXXXXX";
        QVERIFY(::mkdtemp(pattern));
        const std::string dir = pattern;
        const auto store = dir + "/results.sqlite";
        fs::copy_file(m_env.store, store);
        fs::permissions(dir,
            fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read
                | fs::perms::others_exec);
        const auto before = readFile(store);
        const auto qs = QString::fromStdString(store);

        fs::permissions(store, fs::perms::none);
        auto [code, text] = run({ "runs", "list", "--store", qs });
        QCOMPARE(code, 1);
        QVERIFY2(text.find("results store " + store) != std::string::npos
                && text.find("Permission denied") != std::string::npos,
            text.c_str());
        qInfo("unreadable: %s", text.substr(text.find('|') + 1).c_str());

        fs::permissions(store, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
        fs::permissions(dir,
            fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec
                | fs::perms::others_read | fs::perms::others_exec);
        std::tie(code, text) = run({ "runs", "list", "--store", qs });
        QVERIFY2(code == 0 && text.find("status") != std::string::npos, text.c_str()); // the listing
        writeFile(m_env.root + "/readonly-run.json", goodSpec(m_env).dump());
        fs::permissions(m_env.root, fs::perms::others_read | fs::perms::others_exec, fs::perm_options::add);
        std::tie(code, text) = run({ "train", "--config",
            QString::fromStdString(m_env.root + "/readonly-run.json"), "--store", qs });
        QCOMPARE(code, 1);
        QVERIFY2(text.find("results store " + store) != std::string::npos, text.c_str());
        qInfo("not writable: %s", text.substr(text.find('|') + 1).c_str());
        QVERIFY(readFile(store) == before);
        QVERIFY(!fs::exists(store + "-wal"));
        fs::permissions(dir, fs::perms::owner_all);
        // Not fs::remove_all: LibTorch's wheel exports a copy of it that crashes (core/data/DemoTasks.h).
        QDir(QString::fromStdString(dir)).removeRecursively();
    }

    // The bounds themselves: 64 levels parse, 65 do not, brackets inside strings do not count; a message
    // quotes at most its cap and says how much it left out.
    void boundsOfWhatIsQuoted()
    {
        QCOMPARE(parseJson("{\"a\": " + nested(63) + "}", "x").at("a").size(), std::size_t(1));
        QVERIFY_THROWS_EXCEPTION(Error, parseJson("{\"a\": " + nested(64) + "}", "x"));
        QCOMPARE(jsonNesting("{\"a\": \"[[[[{{{{\\\"[[\"}"), std::size_t(1));
        try {
            parseJson(nested(1000000), "deep.json");
            QFAIL("no error");
        } catch (const Error& e) {
            QCOMPARE(QString(e.what()), QString("deep.json: JSON nested deeper than 64 levels"));
        }
        QVERIFY(!tryParseJson(nested(65)).has_value());
        QVERIFY(!tryParseJson("{").has_value());
        const std::string big(1000000, 'x');
        QCOMPARE(
            QString::fromStdString(oneLine(big, 10)), QString("xxxxxxxxxx ... (999990 more characters)"));
        QCOMPARE(
            QString::fromStdString(oneLine("first\nsecond", 300)), QString("first ... (7 more characters)"));
        QCOMPARE(QString::fromStdString(oneLine("short", 300)), QString("short"));
        QCOMPARE(QString::fromStdString(brief(nlohmann::json::array({ 1, 2, 3, 4, 5, 6 }))),
            QString("an array of 6 items"));
        QCOMPARE(QString::fromStdString(brief(nlohmann::json("abc"))), QString("\"abc\""));
        QVERIFY(brief(nlohmann::json(big)).size() < 100);
    }

    void atLeastFortyCases() { QVERIFY(cases().size() >= 40); }

private:
    Env m_env;
};

LADDER_TEST_GUILESS_MAIN(TestBadInputs)
#include "test_bad_inputs.moc"
