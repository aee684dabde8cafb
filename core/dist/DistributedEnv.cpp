#include "dist/DistributedEnv.h"

#include <cstdlib>

#include "util/Error.h"

namespace ladder {
namespace {

long long integerOf(const char* name, const char* value, long long low, long long high)
{
    const std::string v(value);
    try {
        std::size_t used = 0;
        const auto n = std::stoll(v, &used);
        if (used == v.size() && n >= low && n <= high)
            return n;
    } catch (const std::exception&) {
    }
    throw Error(std::string(name) + ": expected an integer from " + std::to_string(low) + " to "
        + std::to_string(high) + ", got '" + v + "'");
}

} // namespace

std::string firstSlurmHost(const std::string& nodelist)
{
    // The first entry ends at the first comma outside brackets.
    std::string first;
    int depth = 0;
    for (const char c : nodelist) {
        if (c == ',' && depth == 0)
            break;
        depth += c == '[' ? 1 : (c == ']' ? -1 : 0);
        first += c;
    }
    const auto open = first.find('[');
    if (open == std::string::npos)
        return first;
    const auto close = first.find(']', open);
    if (close == std::string::npos)
        throw Error("SLURM_JOB_NODELIST: unbalanced '[' in '" + nodelist + "'");
    // "gpu[03-05,07]" -> prefix "gpu" + the first number of the range list, with its zero padding kept.
    auto range = first.substr(open + 1, close - open - 1);
    const auto cut = range.find_first_of(",-");
    if (cut != std::string::npos)
        range.resize(cut);
    if (range.empty())
        throw Error("SLURM_JOB_NODELIST: empty range in '" + nodelist + "'");
    return first.substr(0, open) + range + first.substr(close + 1);
}

std::optional<DistributedEnv> distributedEnvFrom(const EnvLookup& lookup)
{
    const auto get = [&](const char* name) -> const char* {
        const char* v = lookup(name);
        return v && *v ? v : nullptr;
    };
    DistributedEnv env;
    if (get("RANK") && get("WORLD_SIZE")) {
        env.worldSize = static_cast<int>(integerOf("WORLD_SIZE", get("WORLD_SIZE"), 1, 65536));
        env.rank = static_cast<int>(integerOf("RANK", get("RANK"), 0, env.worldSize - 1));
        env.localRank = get("LOCAL_RANK")
            ? static_cast<int>(integerOf("LOCAL_RANK", get("LOCAL_RANK"), 0, env.worldSize - 1))
            : env.rank;
        if (get("MASTER_ADDR"))
            env.masterAddr = get("MASTER_ADDR");
        if (get("MASTER_PORT"))
            env.masterPort = static_cast<int>(integerOf("MASTER_PORT", get("MASTER_PORT"), 1, 65535));
        const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
        env.agentStore = agent && std::string(agent) == "True";
        const char* launcher = get("LADDER_LAUNCHER");
        env.launcher = launcher ? launcher : "torchrun";
        return env;
    }
    if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
        env.worldSize = static_cast<int>(integerOf("SLURM_NTASKS", get("SLURM_NTASKS"), 1, 65536));
        if (env.worldSize == 1)
            return std::nullopt;
        env.rank = static_cast<int>(integerOf("SLURM_PROCID", get("SLURM_PROCID"), 0, env.worldSize - 1));
        env.localRank = get("SLURM_LOCALID")
            ? static_cast<int>(integerOf("SLURM_LOCALID", get("SLURM_LOCALID"), 0, env.worldSize - 1))
            : 0;
        if (get("MASTER_ADDR"))
            env.masterAddr = get("MASTER_ADDR");
        else if (get("SLURM_JOB_NODELIST"))
            env.masterAddr = firstSlurmHost(get("SLURM_JOB_NODELIST"));
        else
            throw Error("SLURM_JOB_NODELIST: not set, and no MASTER_ADDR either: cannot find rank 0's host");
        if (get("MASTER_PORT"))
            env.masterPort = static_cast<int>(integerOf("MASTER_PORT", get("MASTER_PORT"), 1, 65535));
        else if (get("SLURM_JOB_ID"))
            env.masterPort = 20000
                + static_cast<int>(integerOf("SLURM_JOB_ID", get("SLURM_JOB_ID"), 0, 1LL << 62) % 20000);
        env.launcher = "slurm";
        return env;
    }
    return std::nullopt;
}

std::optional<DistributedEnv> distributedEnvFromProcess()
{
    return distributedEnvFrom([](const char* name) { return std::getenv(name); });
}

std::chrono::milliseconds collectiveTimeoutFrom(const EnvLookup& lookup, std::chrono::milliseconds fallback)
{
    const char* v = lookup("LADDER_DIST_TIMEOUT");
    if (!v || !*v)
        return fallback;
    try {
        std::size_t used = 0;
        const double seconds = std::stod(v, &used);
        if (used == std::string(v).size() && seconds > 0 && seconds <= 7 * 24 * 3600)
            return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
    } catch (const std::exception&) {
    }
    throw Error(std::string("LADDER_DIST_TIMEOUT: expected seconds (a positive number), got '") + v + "'");
}

} // namespace ladder
