#include "train/Sweep.h"

#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

constexpr std::size_t kMaxKeyDepth = 8;

// "training.learning_rate" -> {"training", "learning_rate"}; empty names and deep paths are refused.
std::vector<std::string> dottedPath(const std::string& dotted, const std::string& where)
{
    std::vector<std::string> keys;
    std::size_t start = 0;
    for (;;) {
        const auto dot = dotted.find('.', start);
        keys.push_back(dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (keys.back().empty() || keys.size() > kMaxKeyDepth)
            throw Error(where + ": expected a dotted path of 1 to " + std::to_string(kMaxKeyDepth)
                + " non-empty field names, such as training.learning_rate");
        if (dot == std::string::npos)
            return keys;
        start = dot + 1;
    }
}

} // namespace

std::vector<nlohmann::json> expandSweep(const nlohmann::json& sweep, const std::string& path)
{
    if (sweep.is_object() && sweep.contains("runs")) { // a list of run specs, as they are
        for (const auto& [k, _] : sweep.items())
            if (k != "runs" && k != "store")
                throw Error(path + ": field " + oneLine(k, 60)
                    + ": not with runs (a list of run specs stands alone; only store may join it)");
        const auto& runs = sweep.at("runs");
        if (!runs.is_array() || runs.empty())
            throw Error(path + ": field runs: expected a non-empty array of run spec objects");
        if (runs.size() > kMaxSweepRuns)
            throw Error(path + ": field runs: more than " + std::to_string(kMaxSweepRuns) + " runs");
        for (std::size_t i = 0; i < runs.size(); ++i)
            if (!runs[i].is_object())
                throw Error(path + ": field runs[" + std::to_string(i) + "]: expected a run spec object");
        return runs.get<std::vector<nlohmann::json>>();
    }
    if (!sweep.is_object() || !sweep.contains("base") || !sweep.at("base").is_object())
        throw Error(path + ": field base: expected a run spec object");
    for (const auto& [k, _] : sweep.items())
        if (k != "base" && k != "methods" && k != "seeds" && k != "grid" && k != "store")
            throw Error(path + ": field " + oneLine(k, 60)
                + ": unknown (expected base, methods, seeds, grid, store; or runs)");
    // The product's size first, so that a sweep of 20^8 runs is refused instead of built.
    std::size_t runs = 1;
    const auto times = [&](std::size_t n, const std::string& field) {
        if (n == 0 || runs > kMaxSweepRuns / n)
            throw Error(path + ": field " + field + ": the sweep would have more than "
                + std::to_string(kMaxSweepRuns) + " runs");
        runs *= n;
    };
    if (sweep.contains("methods")) {
        if (!sweep.at("methods").is_array() || sweep.at("methods").empty())
            throw Error(path + ": field methods: expected a non-empty array of method options");
        times(sweep.at("methods").size(), "methods");
    }
    if (sweep.contains("grid") && !sweep.at("grid").is_object())
        throw Error(path + ": field grid: expected an object of \"dotted.field\": [values]");
    const auto axis = [&](const std::string& field, const nlohmann::json& values) {
        if (!values.is_array() || values.empty())
            throw Error(path + ": field " + field + ": expected a non-empty array of values");
        times(values.size(), field);
    };
    if (sweep.contains("seeds"))
        axis("seeds", sweep.at("seeds"));
    if (sweep.contains("grid"))
        for (const auto& [k, v] : sweep.at("grid").items())
            axis("grid." + oneLine(k, 60), v);

    std::vector<nlohmann::json> specs { sweep.at("base") };
    const auto expand
        = [&](const std::string& dotted, const nlohmann::json& values, const std::string& field) {
              const auto keys = dottedPath(dotted, path + ": field " + field);
              std::vector<nlohmann::json> next;
              next.reserve(specs.size() * values.size());
              for (const auto& s : specs)
                  for (const auto& v : values) {
                      auto copy = s;
                      nlohmann::json* node = &copy;
                      for (std::size_t i = 0; i + 1 < keys.size(); ++i) {
                          node = &(*node)[keys[i]];
                          if (!node->is_object() && !node->is_null())
                              throw Error(path + ": field " + field + ": " + oneLine(keys[i], 60)
                                  + " is not an object in the base spec");
                      }
                      (*node)[keys.back()] = v;
                      next.push_back(std::move(copy));
                  }
              specs = std::move(next);
          };
    if (sweep.contains("methods")) {
        const auto& methods = sweep.at("methods");
        std::vector<nlohmann::json> next;
        for (const auto& s : specs)
            for (std::size_t i = 0; i < methods.size(); ++i) {
                const auto& m = methods[i];
                const std::string where = path + ": field methods[" + std::to_string(i) + "]";
                if (!m.is_object())
                    throw Error(where + ": expected a method options object");
                auto copy = s;
                if (m.contains("method") && m.at("method").is_object()) {
                    for (const auto& [k, _] : m.items())
                        if (k != "method" && k != "training" && k != "backbone" && k != "name" && k != "task")
                            throw Error(where + "." + oneLine(k, 60)
                                + ": unknown (expected method, training, backbone, task and name)");
                    copy["method"] = m.at("method");
                    // A row on another backbone (the demo sweep's decoder rows: "demo-llama"), and its
                    // name, where the default one would equal a T5 row's ("LST r8").
                    if (m.contains("backbone"))
                        copy["backbone"] = m.at("backbone");
                    if (m.contains("name"))
                        copy["name"] = m.at("name");
                    // A row on another task (the demo sweep's vision-and-language rows: the scene demo).
                    if (m.contains("task"))
                        copy["task"] = m.at("task");
                    if (m.contains("training")) {
                        if (!m.at("training").is_object())
                            throw Error(where + ".training: expected an object of training fields");
                        if (!copy["training"].is_object() && !copy["training"].is_null())
                            throw Error(
                                path + ": field base.training: expected an object of training fields");
                        for (const auto& [k, v] : m.at("training").items())
                            copy["training"][k] = v;
                    }
                } else {
                    copy["method"] = m;
                }
                next.push_back(std::move(copy));
            }
        specs = std::move(next);
    }
    if (sweep.contains("seeds"))
        expand("seed", sweep.at("seeds"), "seeds");
    if (sweep.contains("grid"))
        for (const auto& [k, v] : sweep.at("grid").items())
            expand(k, v, "grid." + oneLine(k, 60));
    return specs;
}

} // namespace ladder
