#pragma once

#include <map>
#include <string>
#include <vector>

#include "data/Task.h"

namespace ladder {

// Metric names, as evaluate() reports them and TaskInfo::metrics lists them. Values are fractions in
// [0, 1] (correlations in [-1, 1]), as sklearn and HF's glue_compute_metrics return them; the paper's
// tables show 100 times these.
namespace metric {
inline constexpr const char* kAccuracy = "accuracy";
inline constexpr const char* kF1 = "f1"; // binary, positive label "1"
inline constexpr const char* kMcc = "mcc"; // Matthews correlation
inline constexpr const char* kPearson = "pearson";
inline constexpr const char* kSpearman = "spearman";
inline constexpr const char* kAccuracyF1 = "accuracy_f1_mean"; // MRPC, QQP
inline constexpr const char* kPearsonSpearman = "pearson_spearman_mean"; // STS-B
} // namespace metric

struct TaskMetrics {
    std::map<std::string, double> values; // every metric of TaskInfo::metrics
    std::string mainName; // TaskInfo::mainMetric
    double main = 0.0; // values[mainName]
    std::size_t count = 0; // examples scored
    std::size_t invalid = 0; // predictions that did not parse as a label / a number
};

// The plain metrics on label indices and numbers, equal to sklearn 1.2 / scipy 1.10 (to ~1e-12).
class Metrics {
public:
    // Value of an unparseable regression prediction: the reference's string_to_float default. STS-B
    // scores lie in [0, 5], so -1 is outside every gold score (a wrong, never a neutral, guess).
    static constexpr double kInvalidScore = -1.0;

    static double accuracy(const std::vector<int>& predictions, const std::vector<int>& gold);
    // sklearn.metrics.f1_score(gold, predictions) with pos_label `positive`: 2TP / (2TP + FP + FN),
    // 0 when that is 0/0. Any value other than `positive` counts as negative.
    static double f1(const std::vector<int>& predictions, const std::vector<int>& gold, int positive = 1);
    // sklearn.metrics.matthews_corrcoef (the multiclass R_K form, equal to the binary phi coefficient for
    // two classes); 0 when undefined. Values are class ids: any int, including ids gold never uses.
    static double matthews(const std::vector<int>& predictions, const std::vector<int>& gold);
    // scipy.stats.pearsonr(x, y)[0]; NaN when either side is constant or there are fewer than 2 values.
    static double pearson(const std::vector<double>& x, const std::vector<double>& y);
    // scipy.stats.spearmanr(x, y)[0]: Pearson on average ranks (ties share the mean of their ranks).
    static double spearman(const std::vector<double>& x, const std::vector<double>& y);
    // scipy.stats.rankdata(values, method="average"), ranks from 1.
    static std::vector<double> averageRanks(const std::vector<double>& values);

    // Parsing generated text. Both strip leading and trailing whitespace first (the reference strips the
    // decoded text). A classification prediction is valid when it equals one of TaskInfo::labels exactly;
    // a regression prediction when it is a finite decimal number (Python float() syntax, without nan/inf).
    static int parseLabel(const TaskInfo& info, const std::string& prediction);
    static bool parseScore(const std::string& prediction, double& value);
};

// Scores generated `predictions` against `references` (same order, same count) with the task's metrics.
// Classification: a prediction that is not one of info.labels is wrong: for accuracy it never matches;
// for F1 it counts as the opposite of the gold label (a false negative when gold is positive, a false
// positive otherwise, the reference's f1_score_with_invalid); for MCC each distinct unparseable string
// is a class of its own that gold never uses (sklearn on the reference's strings). Regression: an
// unparseable prediction scores Metrics::kInvalidScore (-1); a correlation that is undefined (constant
// predictions) is 0, as in the reference. Gold: TextExample::labelIndex (classification; when -1, the
// index of TextExample::target) or TextExample::score (regression: the original score, not the rounded
// target, as GLUE and HF score STS-B). Throws ladder::Error when the counts differ, a reference has no
// valid gold value, or the task asks for a metric this function does not know.
TaskMetrics evaluate(const TaskInfo& info, const std::vector<std::string>& predictions,
    const std::vector<TextExample>& references);

} // namespace ladder
