#pragma once

// The task object of a run spec on the fruit task (test::writeFruitTask): a generic JSONL task split 60/20/20
// by the spec's data seed. Header-only, for the tests that write run specs as JSON.

#include <string>

#include <nlohmann/json.hpp>

namespace ladder::test {

inline nlohmann::json fruitTaskSpec(const std::string& taskPath)
{
    return { { "type", "generic" }, { "path", taskPath }, { "name", "fruit" }, { "validation_fraction", 0.2 },
        { "test_fraction", 0.2 } };
}

} // namespace ladder::test
