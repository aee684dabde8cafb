// A sweep as a Slurm job array: the sbatch script, the sweep's copy beside it, and `ladder sweep --index`
// (train/SlurmExport.h; README, "Scaling out").
#include "train/SlurmExport.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ladder/Version.h"
#include "train/RunSpec.h"
#include "train/Sweep.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

namespace fs = std::filesystem;

// One argument for bash, in single quotes.
std::string shellQuoted(const std::string& text)
{
    std::string out = "'";
    for (const char c : text)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// A path sbatch reads from a #SBATCH line: no white space or quotes (the line is split on them), no '%'
// (--output's file name patterns), nothing unprintable.
void checkSbatchPath(const std::string& path, const std::string& what)
{
    for (const unsigned char c : path)
        if (std::isspace(c) || !std::isprint(c) || c == '"' || c == '\'' || c == '%' || c == '\\')
            throw Error(what + " " + oneLine(path, 200)
                + ": has a character an #SBATCH line cannot carry (white space, a quote, a backslash or %); "
                  "choose a folder without them");
}

bool allDigits(const std::string& s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// HH:MM:SS or D-HH:MM:SS, minutes and seconds below 60, more than zero.
bool validTime(const std::string& text)
{
    std::string rest = text;
    long long days = 0;
    if (const auto dash = rest.find('-'); dash != std::string::npos) {
        if (!allDigits(rest.substr(0, dash)) || dash > 3)
            return false;
        days = std::stoll(rest.substr(0, dash));
        rest = rest.substr(dash + 1);
    }
    const auto first = rest.find(':');
    const auto second = first == std::string::npos ? first : rest.find(':', first + 1);
    if (second == std::string::npos)
        return false;
    const auto hours = rest.substr(0, first);
    const auto minutes = rest.substr(first + 1, second - first - 1);
    const auto seconds = rest.substr(second + 1);
    if (!allDigits(hours) || hours.size() > 4 || minutes.size() != 2 || !allDigits(minutes)
        || seconds.size() != 2 || !allDigits(seconds))
        return false;
    if (std::stoi(minutes) >= 60 || std::stoi(seconds) >= 60)
        return false;
    return days + std::stoll(hours) + std::stoi(minutes) + std::stoi(seconds) > 0;
}

} // namespace

void validateSlurmOptions(const SlurmOptions& o)
{
    if (!o.partition.empty()) {
        for (const unsigned char c : o.partition)
            if (!std::isalnum(c) && c != '_' && c != '-' && c != '.' && c != ',')
                throw Error("--partition " + oneLine(o.partition, 80)
                    + ": expected a partition name (letters, digits, _ - . and commas between names)");
    }
    if (o.gpusPerRun < 0 || o.gpusPerRun > 1024)
        throw Error("--gpus-per-run: expected 0 to 1024 GPUs per run, got " + std::to_string(o.gpusPerRun));
    if (o.cpusPerRun < 0 || o.cpusPerRun > 65536)
        throw Error("--cpus-per-run: expected 1 to 65536 CPUs per run, got " + std::to_string(o.cpusPerRun));
    if (o.maxParallel < 0)
        throw Error("--max-parallel: expected 1 or more runs at once, got " + std::to_string(o.maxParallel));
    if (!o.time.empty() && !validTime(o.time))
        throw Error("--time " + oneLine(o.time, 80)
            + ": expected HH:MM:SS (or D-HH:MM:SS), minutes and seconds below 60, above zero, such as "
              "02:30:00");
    if (o.jobName.empty())
        throw Error("the job name is empty");
    for (const unsigned char c : o.jobName)
        if (!std::isalnum(c) && c != '_' && c != '-' && c != '.')
            throw Error("job name " + oneLine(o.jobName, 80) + ": expected letters, digits, _ - and .");
    if (o.ladderPath.empty() || !fs::path(o.ladderPath).is_absolute())
        throw Error(
            "--ladder " + oneLine(o.ladderPath, 200) + ": expected the absolute path of the ladder program");
    if (o.workingDir.empty() || !fs::path(o.workingDir).is_absolute())
        throw Error("the working directory " + oneLine(o.workingDir, 200) + " is not an absolute path");
    checkSbatchPath(o.workingDir, "the working directory");
}

std::string slurmScript(std::size_t runs, const std::string& outDir, const SlurmOptions& o)
{
    if (runs == 0)
        throw Error("a sweep of no runs");
    const std::string script = outDir + "/sweep.sbatch";
    std::ostringstream s;
    s << "#!/bin/bash\n"
      << "# A LadderBench sweep as a Slurm job array, written by `ladder sweep --emit slurm` (LadderBench "
      << kVersion << "):\n"
      << "# " << runs << (runs == 1 ? " run" : " runs") << " of " << outDir
      << "/sweep.json, one array task per run (in `ladder sweep`'s order), each writing a store\n"
      << "# of its own, " << outDir << "/run-<index>.sqlite, and its log to " << outDir
      << "/logs/run-<index>.out.\n"
      << "#   submit:      sbatch " << script << "\n"
      << "#   afterwards:  ladder runs import " << outDir << "/run-*.sqlite\n"
      << "#SBATCH --job-name=" << o.jobName << "\n"
      << "#SBATCH --array=0-" << runs - 1;
    if (o.maxParallel > 0)
        s << "%" << o.maxParallel;
    s << "\n#SBATCH --ntasks=1\n";
    if (o.cpusPerRun > 0)
        s << "#SBATCH --cpus-per-task=" << o.cpusPerRun << "\n";
    if (o.gpusPerRun > 0)
        s << "#SBATCH --gres=gpu:" << o.gpusPerRun << "\n";
    if (!o.time.empty())
        s << "#SBATCH --time=" << o.time << "\n";
    if (!o.partition.empty())
        s << "#SBATCH --partition=" << o.partition << "\n";
    s << "#SBATCH --chdir=" << o.workingDir << "\n"
      << "#SBATCH --output=" << outDir << "/logs/run-%a.out\n"
      << "set -euo pipefail\n";
    if (o.cpusPerRun > 0)
        s << "export OMP_NUM_THREADS=" << o.cpusPerRun << "\n";
    s << "echo \"ladder sweep: job ${SLURM_ARRAY_JOB_ID}, array task ${SLURM_ARRAY_TASK_ID} of " << runs
      << ", on $(hostname)\"\n"
      << "exec " << shellQuoted(o.ladderPath) << " sweep --config " << shellQuoted(outDir + "/sweep.json")
      << " --index \"$SLURM_ARRAY_TASK_ID\" \\\n    --store " << shellQuoted(outDir + "/run-")
      << "\"$SLURM_ARRAY_TASK_ID\".sqlite\n";
    return s.str();
}

SlurmExport writeSlurmSweep(const nlohmann::json& sweep, const std::string& source, const std::string& outDir,
    const SlurmOptions& options)
{
    validateSlurmOptions(options);
    if (outDir.empty())
        throw Error("--out: expected the folder to write the job into");
    const auto raw = expandSweep(sweep, source);
    for (std::size_t i = 0; i < raw.size(); ++i)
        RunSpec::fromJson(raw[i], source + " (run " + std::to_string(i) + ")");

    SlurmExport out;
    out.runs = raw.size();
    std::error_code ec;
    out.outDir = fs::absolute(outDir, ec).lexically_normal().string();
    if (ec)
        throw Error("--out " + outDir + ": " + ec.message());
    while (out.outDir.size() > 1 && out.outDir.back() == '/')
        out.outDir.pop_back();
    checkSbatchPath(out.outDir, "--out");
    if (fs::exists(out.outDir, ec) && !fs::is_directory(out.outDir, ec))
        throw Error("--out " + out.outDir + ": is not a folder");
    out.logsDir = out.outDir + "/logs";
    fs::create_directories(out.logsDir, ec);
    if (ec)
        throw Error("--out: cannot create " + out.logsDir + ": " + ec.message());
    for (const auto& entry : fs::directory_iterator(out.outDir, ec)) {
        const auto name = entry.path().filename().string();
        if (name.rfind("run-", 0) == 0 && name.size() > 11
            && name.compare(name.size() - 7, 7, ".sqlite") == 0)
            throw Error("--out " + out.outDir + ": holds a sweep's results already (" + name
                + "); import them and choose another folder, or remove them");
    }
    out.script = out.outDir + "/sweep.sbatch";
    out.config = out.outDir + "/sweep.json";
    const auto write = [](const std::string& path, const std::string& text, fs::perms perms) {
        const std::string tmp = path + ".tmp";
        {
            std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
            f << text;
            f.close();
            if (!f)
                throw Error("writing " + tmp + " failed");
        }
        std::error_code e;
        fs::permissions(tmp, perms, fs::perm_options::replace, e);
        fs::rename(tmp, path, e);
        if (e)
            throw Error("writing " + path + ": " + e.message());
    };
    using fs::perms;
    const auto readable = perms::owner_read | perms::owner_write | perms::group_read | perms::others_read;
    write(out.config, sweep.dump(2) + "\n", readable);
    write(out.script, slurmScript(out.runs, out.outDir, options),
        readable | perms::owner_exec | perms::group_exec | perms::others_exec);
    out.submitCommand = "sbatch " + out.script;
    out.importCommand = "ladder runs import " + out.outDir + "/run-*.sqlite";
    return out;
}

std::vector<nlohmann::json> selectSweepRuns(
    std::vector<nlohmann::json> runs, long long index, const std::string& source)
{
    if (index < 0)
        return runs;
    if (static_cast<unsigned long long>(index) >= runs.size())
        throw Error(source + ": --index " + std::to_string(index) + " is out of range: the sweep has "
            + std::to_string(runs.size()) + (runs.size() == 1 ? " run (index 0)" : " runs (0 to ")
            + (runs.size() == 1 ? std::string() : std::to_string(runs.size() - 1) + ")"));
    return { std::move(runs[static_cast<std::size_t>(index)]) };
}

} // namespace ladder
