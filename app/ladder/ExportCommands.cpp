// `ladder export`: a finished run as a HuggingFace T5 folder, a PEFT adapter or a ladder bundle
// (core/export, docs/EXPORT.md).

#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "export/Export.h"
#include "store/ResultsStore.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

struct ExportFlags {
    std::int64_t run = 0;
    std::string store;
    std::string format;
    std::string out;
    bool json = false;
};

std::int64_t fileBytes(const std::string& path)
{
    std::error_code ec;
    const auto n = std::filesystem::file_size(path, ec);
    return ec ? -1 : static_cast<std::int64_t>(n);
}

// "812 B", "94.1 kB", "308.9 MB" (10^3, 10^6: as the CLI's tables show memory).
std::string sizeText(std::int64_t bytes)
{
    if (bytes < 0)
        return "?";
    if (bytes < 1000)
        return std::to_string(bytes) + " B";
    if (bytes < 1000000)
        return mb(static_cast<double>(bytes) * 1000.0) + " kB";
    return mb(static_cast<double>(bytes)) + " MB";
}

int runExport(const ExportFlags& flags)
{
    const auto path
        = requireExistingStore(flags.store); // export only reads: a missing store is never created
    ResultsStore store;
    std::string error;
    if (!store.open(path, ResultsStore::OpenMode::ReadOnly, &error))
        throw Error(error);
    if (!flags.json)
        std::cerr << "exporting run " << flags.run << " as " << flags.format << " to " << flags.out << "\n";
    const auto result = exportRun(store, flags.run, flags.format, flags.out);
    if (flags.json) {
        auto files = nlohmann::json::array();
        for (const auto& f : result.files)
            files.push_back({ { "name", f }, { "bytes", fileBytes(result.directory + "/" + f) } });
        printJson({ { "run", flags.run }, { "store", path }, { "format", result.format },
            { "out", result.directory }, { "files", files }, { "load", result.howToLoad },
            { "notes", result.notes } });
        return kExitDone;
    }
    std::cout << "run " << flags.run << " exported as " << result.format << " to " << result.directory
              << "\n";
    std::int64_t total = 0;
    for (const auto& f : result.files) {
        const auto bytes = fileBytes(result.directory + "/" + f);
        total += std::max<std::int64_t>(bytes, 0);
        std::cout << "  " << f << "  " << sizeText(bytes) << "\n";
    }
    std::cout << "  (" << result.files.size() << " files, " << sizeText(total) << ")\n";
    for (const auto& note : result.notes)
        std::cout << "note: " << note << "\n";
    std::cout << "load it with (DIR = " << result.directory << "):\n";
    std::string line;
    for (char c : result.howToLoad + "\n")
        if (c == '\n') {
            std::cout << "  " << line << "\n";
            line.clear();
        } else {
            line += c;
        }
    return kExitDone;
}

} // namespace

void registerExportCommands(CLI::App& app)
{
    auto flags = std::make_shared<ExportFlags>();
    auto* cmd = app.add_subcommand("export",
        "A finished run as a HuggingFace T5 folder (hf: full, BitFit, LoRA merged), a PEFT adapter (peft: "
        "LoRA, "
        "prompt tuning) or a self-contained ladder bundle (ladder: every method, for ladder predict)");
    cmd->add_option("--run", flags->run, "run id")->required();
    cmd->add_option("--store", flags->store,
        "results store (default: " + ResultsStore::defaultPath() + "; never created)");
    cmd->add_option("--format", flags->format, "hf, peft or ladder")
        ->required()
        ->check(CLI::IsMember({ "hf", "peft", "ladder" }));
    cmd->add_option("--out", flags->out, "the folder to create (must not exist, or be empty)")->required();
    cmd->add_flag(
        "--json", flags->json, "machine-readable output: {run, store, format, out, files, load, notes}");
    cmd->callback([flags] { runGuarded("export", [&] { return runExport(*flags); }); });
}

} // namespace ladder::cli
