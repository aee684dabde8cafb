#include "data/Task.h"

#include <charconv>
#include <cmath>

#include "util/Error.h"

namespace ladder {

const char* toString(TaskKind kind)
{
    switch (kind) {
    case TaskKind::Regression:
        return "regression";
    case TaskKind::Generation:
        return "generation";
    case TaskKind::Classification:
        break;
    }
    return "classification";
}

int TaskInfo::labelIndexOf(const std::string& target) const
{
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (labels[i] == target)
            return static_cast<int>(i);
    }
    return -1;
}

std::string formatScoreTarget(double value, int decimals)
{
    if (decimals < 0 || decimals > 9)
        throw Error("formatScoreTarget: decimals must be in [0, 9], got " + std::to_string(decimals));
    if (!std::isfinite(value))
        throw Error("formatScoreTarget: the score is not a finite number");
    // numpy.round(x, d): rint(x * 10^d) / 10^d, rint rounding half to even (the default FP mode).
    const double scale = std::pow(10.0, decimals);
    const double rounded = std::nearbyint(value * scale) / scale;
    // std::to_chars, not printf: independent of the C locale (Qt sets LC_NUMERIC from the environment).
    char buffer[64];
    const auto result
        = std::to_chars(buffer, buffer + sizeof buffer, rounded, std::chars_format::fixed, decimals);
    if (result.ec != std::errc())
        throw Error("formatScoreTarget: the score is too large to write");
    return std::string(buffer, result.ptr);
}

} // namespace ladder
