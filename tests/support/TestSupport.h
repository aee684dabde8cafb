#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <ATen/Tensor.h>
#include <QString>

namespace ladder::test {

// Root of ../shared/fixtures (LADDER_FIXTURES_DIR); empty when it does not exist.
std::string fixturesDir();
// fixturesDir() + "/" + relative; QSKIP-able check through hasFixtures().
std::string fixture(const std::string& relative);
bool hasFixtures();

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

// Skips the calling test function when the shared fixtures are not laid beside the clone.
#define LADDER_REQUIRE_FIXTURES()                                                                  \
    do {                                                                                           \
        if (!ladder::test::hasFixtures())                                                          \
            QSKIP("shared fixtures not found at LADDER_FIXTURES_DIR; lay ../shared beside the clone"); \
    } while (0)

// For helpers that return a value: throws a std::runtime_error when the fixtures are missing (call
// LADDER_REQUIRE_FIXTURES() in initTestCase to skip the whole test class first).
#define LADDER_REQUIRE_FIXTURES_OR_THROW()                                                         \
    do {                                                                                           \
        if (!ladder::test::hasFixtures())                                                          \
            throw std::runtime_error("shared fixtures not found");                                 \
    } while (0)
