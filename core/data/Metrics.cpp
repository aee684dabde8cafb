#include "data/Metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "data/VlTask.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool isDigit(char c)
{
    return c >= '0' && c <= '9';
}

// [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?
bool isDecimalNumber(const std::string& s)
{
    std::size_t i = 0;
    const std::size_t n = s.size();
    if (i < n && (s[i] == '+' || s[i] == '-'))
        ++i;
    std::size_t digits = 0;
    while (i < n && isDigit(s[i])) {
        ++i;
        ++digits;
    }
    if (i < n && s[i] == '.') {
        ++i;
        while (i < n && isDigit(s[i])) {
            ++i;
            ++digits;
        }
    }
    if (digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            ++i;
        std::size_t exponentDigits = 0;
        while (i < n && isDigit(s[i])) {
            ++i;
            ++exponentDigits;
        }
        if (exponentDigits == 0)
            return false;
    }
    return i == n;
}

void checkSameSize(std::size_t a, std::size_t b, const char* what)
{
    if (a != b)
        throw Error(std::string(what) + ": " + std::to_string(a) + " predictions for " + std::to_string(b)
            + " gold values");
}

double mean(const std::vector<double>& v)
{
    return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double zeroIfNaN(double value)
{
    return std::isnan(value) ? 0.0 : value;
}

} // namespace

double Metrics::accuracy(const std::vector<int>& predictions, const std::vector<int>& gold)
{
    checkSameSize(predictions.size(), gold.size(), "accuracy");
    if (gold.empty())
        return kNaN;
    std::size_t correct = 0;
    for (std::size_t i = 0; i < gold.size(); ++i)
        correct += predictions[i] == gold[i] ? 1 : 0;
    return static_cast<double>(correct) / static_cast<double>(gold.size());
}

double Metrics::f1(const std::vector<int>& predictions, const std::vector<int>& gold, int positive)
{
    checkSameSize(predictions.size(), gold.size(), "f1");
    double tp = 0, fp = 0, fn = 0;
    for (std::size_t i = 0; i < gold.size(); ++i) {
        const bool p = predictions[i] == positive;
        const bool g = gold[i] == positive;
        tp += (p && g) ? 1 : 0;
        fp += (p && !g) ? 1 : 0;
        fn += (!p && g) ? 1 : 0;
    }
    const double denominator = 2 * tp + fp + fn;
    return denominator == 0 ? 0.0 : 2 * tp / denominator;
}

double Metrics::matthews(const std::vector<int>& predictions, const std::vector<int>& gold)
{
    checkSameSize(predictions.size(), gold.size(), "matthews");
    // sklearn: C = confusion matrix, t_k = row sums (true), p_k = column sums (predicted), c = trace,
    // s = total; MCC = (c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), 0 when the denominator is 0.
    std::unordered_map<int, double> trueCount;
    std::unordered_map<int, double> predCount;
    double correct = 0;
    for (std::size_t i = 0; i < gold.size(); ++i) {
        trueCount[gold[i]] += 1;
        predCount[predictions[i]] += 1;
        correct += predictions[i] == gold[i] ? 1 : 0;
    }
    const double s = static_cast<double>(gold.size());
    double tp = 0, pp = 0, tt = 0;
    for (const auto& [label, t] : trueCount) {
        tt += t * t;
        const auto it = predCount.find(label);
        if (it != predCount.end())
            tp += t * it->second;
    }
    for (const auto& [label, p] : predCount)
        pp += p * p;
    const double covYtYp = correct * s - tp;
    const double covYpYp = s * s - pp;
    const double covYtYt = s * s - tt;
    if (covYpYp * covYtYt == 0)
        return 0.0;
    return covYtYp / std::sqrt(covYtYt * covYpYp);
}

double Metrics::pearson(const std::vector<double>& x, const std::vector<double>& y)
{
    checkSameSize(x.size(), y.size(), "pearson");
    if (x.size() < 2)
        return kNaN;
    const bool xConstant = std::all_of(x.begin(), x.end(), [&](double v) { return v == x[0]; });
    const bool yConstant = std::all_of(y.begin(), y.end(), [&](double v) { return v == y[0]; });
    if (xConstant || yConstant)
        return kNaN;
    // scipy 1.10: r = dot(xm / |xm|, ym / |ym|) with xm = x - mean(x), clipped to [-1, 1].
    const double xMean = mean(x);
    const double yMean = mean(y);
    double xx = 0, yy = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        xx += (x[i] - xMean) * (x[i] - xMean);
        yy += (y[i] - yMean) * (y[i] - yMean);
    }
    const double xNorm = std::sqrt(xx);
    const double yNorm = std::sqrt(yy);
    double r = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
        r += ((x[i] - xMean) / xNorm) * ((y[i] - yMean) / yNorm);
    return std::max(-1.0, std::min(1.0, r));
}

std::vector<double> Metrics::averageRanks(const std::vector<double>& values)
{
    std::vector<std::size_t> order(values.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(
        order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
    std::vector<double> ranks(values.size());
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i + 1;
        while (j < order.size() && values[order[j]] == values[order[i]])
            ++j;
        // Positions i..j-1 (ranks i+1..j) share their mean.
        const double rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
        for (std::size_t k = i; k < j; ++k)
            ranks[order[k]] = rank;
        i = j;
    }
    return ranks;
}

double Metrics::spearman(const std::vector<double>& x, const std::vector<double>& y)
{
    checkSameSize(x.size(), y.size(), "spearman");
    return pearson(averageRanks(x), averageRanks(y));
}

int Metrics::parseLabel(const TaskInfo& info, const std::string& prediction)
{
    return info.labelIndexOf(stripAsciiSpace(prediction));
}

bool Metrics::parseScore(const std::string& prediction, double& value)
{
    std::string s = stripAsciiSpace(prediction);
    if (!isDecimalNumber(s))
        return false;
    // std::from_chars rejects a leading '+' and is locale-independent (strtod is not).
    if (s[0] == '+')
        s.erase(0, 1);
    double parsed = 0;
    const auto result = std::from_chars(s.data(), s.data() + s.size(), parsed);
    if (result.ec != std::errc() || result.ptr != s.data() + s.size() || !std::isfinite(parsed))
        return false;
    value = parsed;
    return true;
}

TaskMetrics evaluate(const TaskInfo& info, const std::vector<std::string>& predictions,
    const std::vector<TextExample>& references)
{
    const std::string context = "evaluating " + (info.name.empty() ? std::string("task") : info.name);
    if (predictions.size() != references.size())
        throw Error(context + ": " + std::to_string(predictions.size()) + " predictions for "
            + std::to_string(references.size()) + " references");
    if (references.empty())
        throw Error(context + ": no examples to score");
    if (info.metrics.empty())
        throw Error(context + ": the task lists no metrics");
    if (info.kind == TaskKind::Generation)
        return evaluateVl(info, predictions, references); // the VL tasks (data/VlTask.h)

    TaskMetrics result;
    result.count = references.size();
    result.mainName = info.mainMetric.empty() ? info.metrics.front() : info.mainMetric;

    if (info.kind == TaskKind::Classification) {
        if (info.labels.empty())
            throw Error(context + ": a classification task needs its label list");
        std::vector<int> gold(references.size());
        std::vector<int> predicted(references.size());
        std::vector<bool> valid(references.size());
        std::unordered_map<std::string, int> invalidIds; // distinct unparseable strings -> -1, -2, ...
        for (std::size_t i = 0; i < references.size(); ++i) {
            const auto& ref = references[i];
            int g = ref.labelIndex >= 0 ? ref.labelIndex : info.labelIndexOf(ref.target);
            if (g < 0 || g >= static_cast<int>(info.labels.size()))
                throw Error(context + ": reference " + (ref.id.empty() ? std::to_string(i) : ref.id)
                    + " has no valid label (target '" + ref.target + "')");
            gold[i] = g;
            const int p = Metrics::parseLabel(info, predictions[i]);
            valid[i] = p >= 0;
            if (p >= 0) {
                predicted[i] = p;
            } else {
                ++result.invalid;
                const auto inserted = invalidIds.emplace(
                    stripAsciiSpace(predictions[i]), -static_cast<int>(invalidIds.size()) - 1);
                predicted[i] = inserted.first->second;
            }
        }
        for (const auto& name : info.metrics) {
            if (name == metric::kAccuracy) {
                result.values[name] = Metrics::accuracy(predicted, gold);
            } else if (name == metric::kMcc) {
                result.values[name] = Metrics::matthews(predicted, gold);
            } else if (name == metric::kF1 || name == metric::kAccuracyF1) {
                int positive = info.labelIndexOf("1");
                if (positive < 0 && info.labels.size() == 2)
                    positive = 1;
                if (positive < 0 || info.labels.size() != 2)
                    throw Error(context + ": F1 needs two labels, the positive one \"1\"");
                const int negative = 1 - positive;
                std::vector<int> forF1 = predicted;
                for (std::size_t i = 0; i < forF1.size(); ++i) {
                    if (!valid[i])
                        forF1[i] = gold[i] == positive ? negative : positive;
                }
                const double f1 = Metrics::f1(forF1, gold, positive);
                if (name == metric::kF1)
                    result.values[name] = f1;
                else
                    result.values[name] = (Metrics::accuracy(predicted, gold) + f1) / 2.0;
            } else {
                throw Error(context + ": metric '" + name + "' does not apply to a classification task");
            }
        }
    } else {
        std::vector<double> gold(references.size());
        std::vector<double> predicted(references.size());
        for (std::size_t i = 0; i < references.size(); ++i) {
            const auto& ref = references[i];
            if (!std::isfinite(ref.score))
                throw Error(context + ": reference " + (ref.id.empty() ? std::to_string(i) : ref.id)
                    + " has no gold score");
            gold[i] = ref.score;
            double value = 0;
            if (Metrics::parseScore(predictions[i], value)) {
                predicted[i] = value;
            } else {
                predicted[i] = Metrics::kInvalidScore;
                ++result.invalid;
            }
        }
        for (const auto& name : info.metrics) {
            if (name == metric::kPearson) {
                result.values[name] = zeroIfNaN(Metrics::pearson(gold, predicted));
            } else if (name == metric::kSpearman) {
                result.values[name] = zeroIfNaN(Metrics::spearman(gold, predicted));
            } else if (name == metric::kPearsonSpearman) {
                result.values[name] = (zeroIfNaN(Metrics::pearson(gold, predicted))
                                          + zeroIfNaN(Metrics::spearman(gold, predicted)))
                    / 2.0;
            } else {
                throw Error(context + ": metric '" + name + "' does not apply to a regression task");
            }
        }
    }

    const auto main = result.values.find(result.mainName);
    if (main == result.values.end())
        throw Error(context + ": the main metric '" + result.mainName + "' is not among the task's metrics");
    result.main = main->second;
    return result;
}

} // namespace ladder
