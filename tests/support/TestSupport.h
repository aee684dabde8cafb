#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <QString>
#include <QTest>

namespace at {
class Tensor; // relativeError: the callers include the ATen they use
}

namespace ladder::test {

// Where the shared fixtures should be: the environment variable LADDER_FIXTURES_DIR when set and not
// empty, else the CMake cache variable of the same name (default ../shared/fixtures beside the clone).
std::string configuredFixturesDir();
// configuredFixturesDir() when it is a directory with something in it; empty when it is missing or empty.
std::string fixturesDir();
// configuredFixturesDir() + "/" + relative; QSKIP-able check through hasFixtures().
std::string fixture(const std::string& relative);
bool hasFixtures();

// The project's own test data (tests/data) and the built `ladder` CLI. Paths of this checkout, known only
// to TestSupport.cpp: a test file that named them in a macro would miss the compiler cache in every clone
// at another path (docs/BUILD.md).
std::string testDataDir();
std::string cliPath();

// True when the environment variable CI is set to anything but "", "0" or "false" (.ci/run sets CI=true).
// In CI a test that needs the shared fixtures fails when they are missing instead of skipping.
bool runningInCi();

// What LADDER_REQUIRE_FIXTURES reports: names the missing directory (valid until the next call).
const char* missingFixturesMessage();
// Counts a test function skipped because the fixtures are missing (LADDER_REQUIRE_FIXTURES does it).
void noteSkippedForFixtures();
// Counts a test function skipped because this machine lacks a program it needs (the soak's Xvfb): the
// program then exits 77 as for missing fixtures, and `why` is printed.
void noteSkippedForMissingProgram(const std::string& why);

// Before QTest::qExec in LADDER_TEST_MAIN: in CI (runningInCi()) with the fixtures missing, prints
// missingFixturesMessage() and returns 1 (the program fails before any test function runs: a QFAIL in a
// _data function would abort the program); else returns 0 and the tests run.
int failWhenCiLacksFixtures(const char* program);
// The exit status of a test program (LADDER_TEST_MAIN): QTest::qExec's status when it is not 0 (a failure),
// else 77, CTest's SKIP_RETURN_CODE, when a test function was skipped for missing fixtures, else 0.
int testExitCode(int qExecStatus);

// ||a - b|| / ||b|| in double precision.
double relativeError(const at::Tensor& actual, const at::Tensor& reference);

// A fresh temporary directory for one test (removed at exit).
std::string makeTempDir();

// Runs the built `ladder` CLI with arguments; returns exit code and captures stdout/stderr.
struct CommandResult {
    int exitCode = -1;
    std::string out;
    std::string err;
};
CommandResult runCli(const QStringList& args, int timeoutMs = 120000);

// A two-class JSONL task (fields text and label): "the <word> is here <n>", fruit or animal, 80 lines.
std::string fruitTaskText();
// fruitTaskText() written to <dir>/fruit.jsonl; returns the path.
std::string writeFruitTask(const std::string& dir);

// Runs SQL on an SQLite file through a connection of its own (to look at or tamper with a store):
// rows as "a|b" (NULL as "NULL"), an error as "SQL ERROR: ..." or "OPEN ERROR: ...".
std::string rawQuery(const std::string& path, const std::string& sql);

// A random tiny T5 (d_model 32, 2+2 layers, T5's vocabulary) with the fixture spiece.model, written as an
// HF folder at `dir` (created when missing); `seed` seeds its initialisation.
void writeTinyBackbone(const std::string& dir, std::uint64_t seed);

// A tiny built-in demo for tests, in a new folder under `root`, laid out as demoCacheDir() is: backbone/
// (writeTinyBackbone) and tasks/supersense and tasks/definition-match (small separable JSONL tasks: 48
// training, 12 validation and 12 test examples each, written by writeDemoTask). Point LADDER_DEMO_DIR at
// the returned folder. Takes well under a second. Needs the shared fixtures (LADDER_REQUIRE_FIXTURES first).
std::string makeTinyDemo(const std::string& root);

// A backbone folder beside a tiny demo whose model.safetensors is corrupt (its header is garbage): a
// run on it fails while loading the checkpoint. Returns the folder.
std::string makeCorruptBackbone(const std::string& tinyDemoDir);

} // namespace ladder::test

// Skips the calling test function (the whole class when called in initTestCase) when the shared fixtures
// are not laid beside the clone, and counts the skip, so that LADDER_TEST_MAIN exits 77 and CTest reports
// the program as skipped, not passed. In CI (runningInCi()) it fails instead: CI must run with the fixtures.
#define LADDER_REQUIRE_FIXTURES()                                                                            \
    do {                                                                                                     \
        if (!ladder::test::hasFixtures()) {                                                                  \
            if (ladder::test::runningInCi())                                                                 \
                QFAIL(ladder::test::missingFixturesMessage());                                               \
            ladder::test::noteSkippedForFixtures();                                                          \
            QSKIP(ladder::test::missingFixturesMessage());                                                   \
        }                                                                                                    \
    } while (0)

// For helpers that return a value: throws a std::runtime_error when the fixtures are missing (call
// LADDER_REQUIRE_FIXTURES() in initTestCase to skip the whole test class first).
#define LADDER_REQUIRE_FIXTURES_OR_THROW()                                                                   \
    do {                                                                                                     \
        if (!ladder::test::hasFixtures())                                                                    \
            throw std::runtime_error(ladder::test::missingFixturesMessage());                                \
    } while (0)

// The main() of a Qt Test program that needs the shared fixtures (CMake refuses a program that calls
// LADDER_REQUIRE_FIXTURES without it): QTEST_MAIN / QTEST_GUILESS_MAIN (the same application object and
// set-up, Qt 6's QTEST_MAIN_WRAPPER), whose exit status goes through ladder::test::testExitCode: 77 when a
// test function was skipped for missing fixtures and none failed. In CI without the fixtures it fails at
// once.
#define LADDER_TEST_MAIN_WRAPPER(TestObject, ...)                                                            \
    int main(int argc, char* argv[])                                                                         \
    {                                                                                                        \
        if (const int ciStatus = ladder::test::failWhenCiLacksFixtures(#TestObject))                         \
            return ciStatus;                                                                                 \
        QT_PREPEND_NAMESPACE(QTest::Internal::callInitMain)<TestObject>();                                   \
        __VA_ARGS__                                                                                          \
        TestObject tc;                                                                                       \
        QTEST_SET_MAIN_SOURCE_PATH                                                                           \
        return ladder::test::testExitCode(QTest::qExec(&tc, argc, argv));                                    \
    }
// With a QApplication (QGuiApplication, QCoreApplication) as QTEST_MAIN picks it.
#define LADDER_TEST_MAIN(TestObject) LADDER_TEST_MAIN_WRAPPER(TestObject, QTEST_MAIN_SETUP())
// With a QCoreApplication, as QTEST_GUILESS_MAIN.
#define LADDER_TEST_GUILESS_MAIN(TestObject)                                                                 \
    LADDER_TEST_MAIN_WRAPPER(TestObject, QTEST_QAPP_SETUP(QCoreApplication))
