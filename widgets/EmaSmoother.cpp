#include "EmaSmoother.h"

#include <algorithm>
#include <cmath>

namespace ladder::widgets {
namespace {
constexpr double kMaxWeight = 0.999;
}

EmaSmoother::EmaSmoother(double weight)
    : m_weight(std::clamp(weight, 0.0, kMaxWeight))
{
}

void EmaSmoother::setWeight(double weight)
{
    m_weight = std::clamp(weight, 0.0, kMaxWeight);
    reset();
}

void EmaSmoother::reset()
{
    m_last = 0.0;
    m_debias = 1.0;
}

double EmaSmoother::add(double value)
{
    if (!std::isfinite(value))
        return value;
    m_last = m_last * m_weight + (1.0 - m_weight) * value;
    m_debias *= m_weight;
    const double correction = 1.0 - m_debias;
    return correction > 0.0 ? m_last / correction : value;
}

std::vector<double> EmaSmoother::smoothAll(const std::vector<double>& values, double weight)
{
    EmaSmoother smoother(weight);
    std::vector<double> out;
    out.reserve(values.size());
    for (double v : values)
        out.push_back(smoother.add(v));
    return out;
}

} // namespace ladder::widgets
