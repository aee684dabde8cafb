#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ladder {

// A sweep file (`ladder sweep --config`): {"base": <run spec>, "methods": [<method options>...],
// "seeds": [0, 1, 2], "grid": {"training.learning_rate": [...], "method.r": [...]}, "store": PATH} -> the
// run specs of its cartesian product, base first, then methods, seeds and the grid's keys in order.
// A "methods" entry is a method options object or {"method": {...}, "training": {...overrides...},
// "backbone": "demo-llama", "task": {...}, "name": "..."}: training merged into the base's, backbone, task
// and name replacing the base's (a decoder row in a T5 sweep, a vision-and-language row on the scene demo).
// Or {"runs": [<run spec>...], "store": PATH}: those specs, in order (the workbench's Tools > Sweeps
// exports its list so).
// A grid key is a dotted path of at most 8 non-empty names through objects. At most kMaxSweepRuns specs:
// a larger product is refused before it is built. Throws ladder::Error "PATH: field ...: ...".
inline constexpr std::size_t kMaxSweepRuns = 10000;
std::vector<nlohmann::json> expandSweep(const nlohmann::json& sweep, const std::string& path);

} // namespace ladder
