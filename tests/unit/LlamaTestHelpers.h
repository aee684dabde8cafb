#pragma once
// Shared by the decoder tests: where tests/fixtures/decoder is, and a fixture folder with a chosen config.
#include <filesystem>
#include <string>

#include "TestSupport.h"

namespace ladder::test {

inline std::string decoderFixture(const std::string& name)
{
    return (std::filesystem::path(testDataDir()) / ".." / "fixtures" / "decoder" / name)
        .lexically_normal()
        .string();
}

inline bool hasDecoderFixtures()
{
    return std::filesystem::exists(decoderFixture("llama-gqa") + "/model.safetensors");
}

// A temporary copy of a fixture folder whose config.json is `configFile` of the fixture (config.json or
// config.tf4.json); the weights are linked, not copied.
inline std::string fixtureWithConfig(const std::string& name, const std::string& configFile)
{
    namespace fs = std::filesystem;
    const auto src = decoderFixture(name);
    const auto dir = makeTempDir() + "/" + name;
    fs::create_directories(dir);
    fs::copy_file(src + "/" + configFile, dir + "/config.json");
    fs::create_symlink(src + "/model.safetensors", dir + "/model.safetensors");
    return dir;
}

} // namespace ladder::test

#define LADDER_REQUIRE_DECODER_FIXTURES()                                                                    \
    do {                                                                                                     \
        if (!ladder::test::hasDecoderFixtures())                                                             \
            QSKIP("tests/fixtures/decoder is missing (run tests/fixtures/decoder/make_fixtures.py)");        \
    } while (false)
