#include "TestSupport.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <QDir>
#include <QProcess>
#include <QStringList>
#include <QTemporaryDir>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "data/DemoTasks.h"
#include "model/Safetensors.h"
#include "model/T5Model.h"

namespace ladder::test {

std::string testDataDir()
{
    return LADDER_TEST_DATA_DIR;
}

std::string cliPath()
{
    return LADDER_CLI_PATH;
}

std::string configuredFixturesDir()
{
    const QByteArray fromEnvironment = qgetenv("LADDER_FIXTURES_DIR");
    return fromEnvironment.isEmpty() ? std::string(LADDER_FIXTURES_DIR) : fromEnvironment.toStdString();
}

std::string fixturesDir()
{
    // An empty folder (a ../shared laid without its contents) counts as missing.
    const std::string dir = configuredFixturesDir();
    std::error_code error;
    const bool present
        = std::filesystem::is_directory(dir, error) && !std::filesystem::is_empty(dir, error) && !error;
    return present ? dir : std::string();
}

bool hasFixtures()
{
    return !fixturesDir().empty();
}

std::string fixture(const std::string& relative)
{
    return configuredFixturesDir() + "/" + relative;
}

bool runningInCi()
{
    const QByteArray ci = qgetenv("CI").trimmed().toLower();
    return !ci.isEmpty() && ci != "0" && ci != "false";
}

const char* missingFixturesMessage()
{
    static std::string message;
    message = "shared fixtures not found at " + configuredFixturesDir()
        + " (LADDER_FIXTURES_DIR); lay ../shared beside the clone"
        + (runningInCi() ? std::string("; CI (CI=true) must run with them") : std::string());
    return message.c_str();
}

namespace {
int g_skippedForFixtures = 0;
std::string g_missingPrograms;
} // namespace

void noteSkippedForFixtures()
{
    ++g_skippedForFixtures;
}

void noteSkippedForMissingProgram(const std::string& why)
{
    g_missingPrograms += (g_missingPrograms.empty() ? "" : "; ") + why;
}

int failWhenCiLacksFixtures(const char* program)
{
    if (!runningInCi() || hasFixtures())
        return 0;
    std::fprintf(stderr, "FAIL: %s needs the shared fixtures: %s\n", program, missingFixturesMessage());
    return 1;
}

int testExitCode(int qExecStatus)
{
    if (qExecStatus == 0 && !g_missingPrograms.empty()) {
        std::fprintf(stderr,
            "SKIPPED: %s; exit status 77 so that CTest reports this program as skipped, not passed\n",
            g_missingPrograms.c_str());
        return 77;
    }
    if (qExecStatus != 0 || g_skippedForFixtures == 0)
        return qExecStatus;
    std::fprintf(stderr,
        "SKIPPED: %d test function(s) skipped because the shared fixtures are missing (%s); "
        "exit status 77 so that CTest reports this program as skipped, not passed\n",
        g_skippedForFixtures, configuredFixturesDir().c_str());
    return 77;
}

double relativeError(const at::Tensor& actual, const at::Tensor& reference)
{
    const auto a = actual.to(at::kDouble);
    const auto b = reference.to(at::kDouble);
    const double denom = b.norm().item<double>();
    const double num = (a - b).norm().item<double>();
    return denom == 0.0 ? num : num / denom;
}

std::string makeTempDir()
{
    static std::vector<std::unique_ptr<QTemporaryDir>> dirs; // removed when the test exits
    dirs.push_back(std::make_unique<QTemporaryDir>());
    return dirs.back()->path().toStdString();
}

CommandResult runCli(const QStringList& args, int timeoutMs)
{
    QProcess p;
    p.start(QString::fromStdString(cliPath()), args);
    CommandResult r;
    if (!p.waitForFinished(timeoutMs)) {
        p.kill();
        p.waitForFinished();
        r.err = "timed out";
        return r;
    }
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = p.readAllStandardOutput().toStdString();
    r.err = p.readAllStandardError().toStdString();
    return r;
}

namespace {

// Words of two classes, each with a short definition; the class is plain from the words used.
const char* const kFruits[] = { "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum",
    "melon", "lime", "pear", "fig" };
const char* const kAnimals[] = { "horse", "tiger", "mouse", "eagle", "snake", "whale", "sheep", "camel",
    "zebra", "otter", "goat", "wolf" };

DemoExample example(
    const std::string& id, std::vector<std::pair<std::string, std::string>> fields, const std::string& label)
{
    DemoExample e;
    e.id = id;
    e.fields = std::move(fields);
    e.label = label;
    return e;
}

std::vector<DemoExample>& splitOf(DemoTask& task, int index)
{
    // 4 of 6 to train, 1 to validation, 1 to test.
    const int slot = index % 6;
    return slot < 4 ? task.train : (slot == 4 ? task.validation : task.test);
}

} // namespace

void writeTinyBackbone(const std::string& dir, std::uint64_t seed)
{
    std::filesystem::create_directories(dir);
    T5Config c;
    c.vocabSize = 32128;
    c.dModel = 32;
    c.dKv = 8;
    c.numHeads = 4;
    c.dFf = 64;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.dropoutRate = 0.0;
    at::manual_seed(seed);
    T5ForConditionalGeneration model(c);
    TensorMap tensors;
    for (const auto& item : model->named_parameters(true))
        tensors[item.key()] = item.value().detach();
    writeSafetensors(dir + "/model.safetensors", tensors);
    std::ofstream(dir + "/config.json") << c.toJson().dump(2);
    std::filesystem::copy_file(fixture("t5-spiece/spiece.model"), dir + "/spiece.model",
        std::filesystem::copy_options::overwrite_existing);
}

std::string makeTinyDemo(const std::string& root)
{
    const std::string demo = root + "/tiny-demo";
    const std::string backbone = demo + "/backbone";
    writeTinyBackbone(backbone, 7);

    DemoTask supersense;
    supersense.name = "supersense";
    supersense.description = "tiny test task: fruit or animal from a definition";
    supersense.textColumns = { "definition" };
    supersense.labels = { "noun.animal", "noun.food" };
    DemoTask match;
    match.name = "definition-match";
    match.description = "tiny test task: does the word name the definition";
    match.textColumns = { "word", "definition" };
    match.labels = { "no", "yes" };
    int index = 0;
    for (int rep = 0; rep < 3; ++rep) {
        for (int i = 0; i < 12; ++i, ++index) {
            const std::string fruit = kFruits[i], animal = kAnimals[i];
            const std::string fruitDef = "a sweet " + fruit + " that grows on a plant " + std::to_string(rep);
            const std::string animalDef = "an animal like a " + animal + " that runs " + std::to_string(rep);
            const std::string id = std::to_string(index);
            splitOf(supersense, index)
                .push_back(example("f" + id, { { "definition", fruitDef } }, "noun.food"));
            splitOf(supersense, index)
                .push_back(example("a" + id, { { "definition", animalDef } }, "noun.animal"));
            splitOf(match, index)
                .push_back(example("y" + id, { { "word", fruit }, { "definition", fruitDef } }, "yes"));
            splitOf(match, index)
                .push_back(example("n" + id, { { "word", fruit }, { "definition", animalDef } }, "no"));
        }
    }
    writeDemoTask(supersense, demo + "/tasks");
    writeDemoTask(match, demo + "/tasks");
    return demo;
}

std::string makeCorruptBackbone(const std::string& tinyDemoDir)
{
    const std::string dir = tinyDemoDir + "/corrupt-backbone";
    std::filesystem::create_directories(dir);
    for (const char* name : { "config.json", "spiece.model" })
        std::filesystem::copy_file(tinyDemoDir + "/backbone/" + name, dir + "/" + name,
            std::filesystem::copy_options::overwrite_existing);
    std::ofstream out(dir + "/model.safetensors", std::ios::binary);
    const unsigned char header[8] = { 0x40, 0, 0, 0, 0, 0, 0, 0 }; // says 64 header bytes follow
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out << "{this is not the JSON header of a safetensors file, it is garbage}";
    return dir;
}

std::string fruitTaskText()
{
    std::ostringstream out;
    const char* fruit[] = { "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum" };
    const char* animal[] = { "horse", "tiger", "mouse", "eagle", "snake", "whale", "sheep", "camel" };
    for (int rep = 0; rep < 5; ++rep)
        for (int i = 0; i < 8; ++i)
            for (const auto& [word, label] :
                { std::pair { fruit[i], "fruit" }, std::pair { animal[i], "animal" } })
                out << nlohmann::json { { "text",
                                            std::string("the ") + word + " is here " + std::to_string(rep) },
                    { "label", label } }
                           .dump()
                    << "\n";
    return out.str();
}

std::string writeFruitTask(const std::string& dir)
{
    const auto path = dir + "/fruit.jsonl";
    std::ofstream(path) << fruitTaskText();
    return path;
}

std::string rawQuery(const std::string& path, const std::string& sql)
{
    sqlite3* db = nullptr;
    std::string result;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr)
        != SQLITE_OK) {
        result = std::string("OPEN ERROR: ") + sqlite3_errmsg(db);
        sqlite3_close(db);
        return result;
    }
    char* err = nullptr;
    sqlite3_exec(
        db, sql.c_str(),
        [](void* out, int n, char** values, char**) {
            auto* text = static_cast<std::string*>(out);
            for (int i = 0; i < n; ++i) {
                if (!text->empty())
                    *text += "|";
                *text += values[i] ? values[i] : "NULL";
            }
            return 0;
        },
        &result, &err);
    if (err) {
        result = std::string("SQL ERROR: ") + err;
        sqlite3_free(err);
    }
    sqlite3_close(db);
    return result;
}

} // namespace ladder::test
