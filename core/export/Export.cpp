#include "export/Export.h"

#include <algorithm>
#include <filesystem>

#include "data/DemoTasks.h"
#include "export/HfExport.h"
#include "export/LadderBundle.h"
#include "export/PeftExport.h"
#include "export/RunModel.h"
#include "store/ResultsStore.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

void checkOutDir(const std::string& outDir)
{
    if (outDir.empty())
        throw Error("--out: expected a folder to create");
    std::error_code ec;
    const auto status = fs::symlink_status(outDir, ec);
    if (!fs::exists(status))
        return;
    if (!fs::is_directory(status))
        throw Error(outDir + " exists and is not a folder (export writes a new folder; give another --out)");
    if (!fs::is_empty(outDir, ec))
        throw Error(
            outDir + " exists and is not empty (export writes a new folder; give another --out or empty it)");
}

std::vector<std::string> filesUnder(const std::string& dir)
{
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (it->is_regular_file())
            out.push_back(fs::relative(it->path(), dir).string());
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

const std::vector<std::string>& exportFormats()
{
    static const std::vector<std::string> formats { "hf", "peft", "ladder" };
    return formats;
}

ExportedFolder exportRun(
    ResultsStore& store, std::int64_t runId, const std::string& format, const std::string& outDir)
{
    if (std::find(exportFormats().begin(), exportFormats().end(), format) == exportFormats().end())
        throw Error("--format: expected hf, peft or ladder, got '" + format + "'");
    const auto spec = runSpecOf(store, runId);
    const auto name = "run " + std::to_string(runId) + " (" + spec.method.method + ")";
    try {
        if (format == "hf")
            checkHfExportable(spec);
        else if (format == "peft")
            checkPeftExportable(spec);
    } catch (const Error& e) {
        throw Error(name + ": " + e.what());
    }
    checkOutDir(outDir);
    const auto target = fs::path(outDir).lexically_normal().string();

    if (format == "ladder") {
        writeLadderBundle(store, runId, target);
        ExportedFolder result;
        result.format = "ladder";
        result.directory = target;
        result.files = filesUnder(target);
        result.howToLoad
            = "ladder predict --bundle " + target + " --inputs FILE.jsonl --out predictions.jsonl";
        return result;
    }

    const auto run = loadFinishedRun(store, runId, "cpu");
    const auto staging = makeStagingDir(target);
    try {
        auto result = format == "hf" ? writeHfFolder(run, staging) : writePeftFolder(run, staging);
        std::error_code ec;
        fs::rename(staging, target, ec);
        if (ec)
            throw Error("cannot rename " + staging + " to " + target + ": " + ec.message());
        result.directory = target;
        return result;
    } catch (...) {
        try {
            demofs::removeTree(staging); // the folder this call created, never the user's
        } catch (const Error&) {
        }
        throw;
    }
}

} // namespace ladder
