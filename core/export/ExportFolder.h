#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ladder {

// What an export wrote: the files of the folder and how to load it, for the CLI and the workbench to show.
struct ExportedFolder {
    std::string format; // "hf", "peft", "ladder"
    std::string directory; // the folder as finally named
    std::vector<std::string> files; // names inside the folder, in the order written
    std::string howToLoad; // Python lines (hf, peft) or a `ladder predict` line (ladder)
    std::vector<std::string> notes; // what the reader must know ("BitFit biases: trust_remote_code=True")
};

// Writes `text` to `path` (replacing it). Throws Error naming the file.
void writeTextFile(const std::string& path, const std::string& text);
// JSON with 2-space indentation and a final newline, as HF writes its JSON files.
void writeJsonFile(const std::string& path, const nlohmann::json& value);
// Copies a file (replacing `to`). Throws Error naming both.
void copyFile(const std::string& from, const std::string& to);

} // namespace ladder
