#pragma once

#include <cstddef>
#include <vector>

namespace ladder::widgets {

// TensorBoard's scalar smoothing: an exponential moving average with weight w in [0, 1),
//   last = w * last + (1 - w) * y,  smoothed = last / (1 - w^n)
// where n counts the finite values seen so far (the division removes the bias towards the zero start,
// so a constant series stays constant). Non-finite values pass through unchanged and do not update the
// average. w = 0 returns the raw values. Values are appended one at a time, so the live chart smooths
// only its new points; changing the weight recomputes everything (smoothAll).
class EmaSmoother {
public:
    explicit EmaSmoother(double weight = 0.6);

    double weight() const { return m_weight; }
    // Clamped to [0, 0.999]; resets the running state.
    void setWeight(double weight);
    void reset();

    // The smoothed value of the next point.
    double add(double value);

    // Every value smoothed from the start with `weight`.
    static std::vector<double> smoothAll(const std::vector<double>& values, double weight);

private:
    double m_weight;
    double m_last = 0.0;
    double m_debias = 1.0; // w^n
};

} // namespace ladder::widgets
