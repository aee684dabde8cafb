#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace ladder {

// The stable identity of a run spec, stored in runs.spec_hash: FNV-1a 64 of the canonical JSON dump
// (keys sorted, no whitespace, nlohmann::json's number formatting) as 16 lower-case hex digits. Two specs
// that differ only in key order or white space hash the same. The caller decides what is in the spec it
// hashes (a sweep drops fields such as the store path that do not change the result).
std::string specHash(const nlohmann::json& spec);
// The same for JSON text: parses `specJson` first; throws ladder::Error when it is not valid JSON.
std::string specHashFromText(const std::string& specJson);

} // namespace ladder
