#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ladder {

// JSON from files a stranger may have written: config.json, inputs.json, run and sweep specs, presets,
// task files, manifests, the spec a store row holds. nlohmann parses without recursion, but copying,
// printing or destroying a value recurses once per level: 100,000 nested brackets overflowed the stack
// with no message (docs/RELIABILITY.md). Every such text goes through parseJson, which refuses more than
// kMaxJsonDepth levels; no file this project reads needs more than 6.
inline constexpr std::size_t kMaxJsonDepth = 64;

// The deepest nesting of objects and arrays in `text` (brackets inside strings do not count), found
// without parsing.
std::size_t jsonNesting(std::string_view text);

// Throws ladder::Error "SOURCE: JSON nested deeper than 64 levels" or "SOURCE: not valid JSON: ..." (the
// parser's message, one line, capped).
nlohmann::json parseJson(std::string_view text, const std::string& source);

// The value, or nullopt where parseJson would throw (text a program of this project wrote, read back where a
// damaged copy is shown rather than refused).
std::optional<nlohmann::json> tryParseJson(std::string_view text);

// Reads and parses a whole file; "PATH: cannot open (expected WHAT)" when it cannot be read.
nlohmann::json readJsonFile(const std::string& path, const std::string& expected);

// A value as an error message may quote it: scalars and small values as JSON, cut at 60 characters;
// arrays and objects of more than 4 elements as "an array of N items" / "an object of N fields".
std::string brief(const nlohmann::json& value);

} // namespace ladder
