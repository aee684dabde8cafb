// The processes that own running runs: how the store tells a live owner from a dead one
// (ResultsStoreImpl.h, docs/STORE.md "Interrupted runs").
#include <cerrno>
#include <fstream>
#include <sstream>

#include <signal.h>
#include <unistd.h>

#include "store/ResultsStoreImpl.h"

namespace ladder::store_detail {

namespace {

struct ProcessStat {
    char state = '?';
    std::int64_t startTicks = 0;
};

// Fields 3 (state) and 22 (start time in clock ticks since boot) of /proc/<pid>/stat.
std::optional<ProcessStat> readProcessStat(std::int64_t pid)
{
    std::ifstream in("/proc/" + str(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line))
        return std::nullopt;
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 > line.size())
        return std::nullopt;
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    ProcessStat stat;
    for (int index = 3; index <= 22; ++index) {
        if (!(fields >> field))
            return std::nullopt;
        if (index == 3)
            stat.state = field.empty() ? '?' : field[0];
    }
    try {
        stat.startTicks = std::stoll(field);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    return stat;
}

} // namespace

std::optional<std::int64_t> ownStartTicks()
{
    const auto stat = readProcessStat(getpid());
    if (!stat)
        return std::nullopt;
    return stat->startTicks;
}

// A reused pid, such as the same pid in a new container, has another start time.
bool ownerAlive(std::optional<std::int64_t> pid, std::optional<std::int64_t> startTicks)
{
    if (!pid || *pid <= 0)
        return false;
    if (*pid != getpid() && kill(static_cast<pid_t>(*pid), 0) != 0 && errno == ESRCH)
        return false;
    const auto stat = readProcessStat(*pid);
    if (!stat)
        return true; // exists (kill said so) but /proc is not readable: assume alive
    if (stat->state == 'Z' || stat->state == 'X')
        return false;
    if (startTicks && stat->startTicks != *startTicks)
        return false;
    return true;
}

std::string hostName()
{
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
        return "localhost";
    return name;
}

} // namespace ladder::store_detail
