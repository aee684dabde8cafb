#pragma once

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
