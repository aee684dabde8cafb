#pragma once

namespace CLI {
class App;
}

namespace ladder::cli {

// `ladder bench scaling`: 1 and 2 ranks of the real `ladder train` measured side by side on this machine,
// and each method's all-reduce per step at t5-base and t5-3b on paper (docs/SCALING.md). Added under
// `bench`.
void registerBenchScalingCommand(CLI::App* bench);

} // namespace ladder::cli
