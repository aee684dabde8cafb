#include "store/StoreTypes.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace ladder {

namespace {

struct StatusName {
    RunState status;
    const char* name;
};
constexpr StatusName kStatusNames[] = {
    { RunState::Queued, "queued" },
    { RunState::Running, "running" },
    { RunState::Finished, "finished" },
    { RunState::Failed, "failed" },
    { RunState::Cancelled, "cancelled" },
    { RunState::Interrupted, "interrupted" },
};

struct LevelName {
    LogLevel level;
    const char* name;
};
constexpr LevelName kLevelNames[] = {
    { LogLevel::Debug, "debug" },
    { LogLevel::Info, "info" },
    { LogLevel::Warning, "warning" },
    { LogLevel::Error, "error" },
};

} // namespace

const char* toString(RunState status)
{
    for (const auto& entry : kStatusNames)
        if (entry.status == status)
            return entry.name;
    return "unknown";
}

bool parseRunState(const std::string& text, RunState* status)
{
    for (const auto& entry : kStatusNames) {
        if (text == entry.name) {
            if (status)
                *status = entry.status;
            return true;
        }
    }
    return false;
}

bool isFinalState(RunState status)
{
    return status != RunState::Queued && status != RunState::Running;
}

const char* toString(LogLevel level)
{
    for (const auto& entry : kLevelNames)
        if (entry.level == level)
            return entry.name;
    return "info";
}

bool parseLogLevel(const std::string& text, LogLevel* level)
{
    for (const auto& entry : kLevelNames) {
        if (text == entry.name) {
            if (level)
                *level = entry.level;
            return true;
        }
    }
    return false;
}

std::string utcNowIso8601()
{
    return utcIso8601(std::chrono::system_clock::now());
}

std::string utcIso8601(std::chrono::system_clock::time_point now)
{
    using namespace std::chrono;
    const auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    const std::time_t seconds = system_clock::to_time_t(now);
    std::tm utc {};
    gmtime_r(&seconds, &utc);
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
        utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(millis));
    return buffer;
}

std::optional<double> RunRecord::trainablePercent() const
{
    const auto& denominator = figures.backboneParams ? figures.backboneParams : figures.totalParams;
    if (!figures.trainableParams || !denominator || *denominator <= 0)
        return std::nullopt;
    return 100.0 * static_cast<double>(*figures.trainableParams) / static_cast<double>(*denominator);
}

} // namespace ladder
