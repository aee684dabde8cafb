#pragma once

namespace CLI {
class App;
}

namespace ladder::cli {

// `ladder bench speed`: step time of several methods and LST epoch time with and without the ladder
// activation cache, side by side in one run (docs/PERFORMANCE.md, "Speed"). Added under `bench`.
void registerBenchSpeedCommand(CLI::App* bench);

} // namespace ladder::cli
