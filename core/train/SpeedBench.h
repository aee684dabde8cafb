#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "model/T5Config.h"
#include "peft/MethodOptions.h"

namespace ladder {

// Training speed of several methods on the same data, measured side by side in one run (docs/PERFORMANCE.md,
// "Speed"): random-weight backbone of the given shape, `examples` random examples whose source lengths are
// spread over [sourceLength/2, sourceLength] (dynamic padding, as real tasks have), shuffled batches per
// epoch, AdamW. Each method first takes one untimed warm-up step (AdamW allocates its state there).
struct SpeedBenchSpec {
    T5Config config;
    std::int64_t batch = 16;
    std::int64_t sourceLength = 128;
    std::int64_t targetLength = 4;
    std::int64_t examples = 256;
    std::int64_t epochs = 2; // LST epochs with and without the cache (>= 2)
    c10::Device device = c10::Device(c10::kCPU);
    std::uint64_t seed = 0;
    std::string cacheMode = "ram"; // the cached LST run: ram or disk
    std::string cacheDtype = "fp32";
    std::string cacheDir; // disk: folder of the cache file (removed after the run)
    std::vector<std::string> cachePaddings { "same", "any" }; // one cached LST run per policy
};

// One method's timing over one epoch of the data (LST: over every uncached epoch).
struct SpeedBenchMethod {
    std::string method;
    MethodOptions options;
    std::int64_t trainableParams = 0;
    std::int64_t steps = 0; // timed optimizer steps
    double secondsPerStep = 0.0; // mean over the timed steps
    double epochSeconds = 0.0; // one epoch (LST: the mean of the uncached epochs)
};

struct SpeedBenchResult {
    std::vector<SpeedBenchMethod> methods;
    std::int64_t batchesPerEpoch = 0;
    std::int64_t paddedTokens = 0; // source positions per epoch after padding (the work done)
    // LST without the activation cache, epoch by epoch, and with it, per padding policy (epoch 1 fills it).
    std::vector<double> lstEpochSeconds;
    struct CachedRun {
        std::string padding;
        std::vector<double> epochSeconds;
        std::int64_t hits = 0; // batches served from the cache
        std::int64_t misses = 0; // batches that ran the backbone
        double maxLossDifference = 0.0; // max |cached - uncached| over every step of every epoch
    };
    std::vector<CachedRun> cached;
    std::uint64_t cacheBytes = 0;
    std::string cacheDescription;

    const SpeedBenchMethod* find(const std::string& method) const;
};

// Runs the methods (each its own backbone, the same data and seed); a "ladder" entry also runs the cached
// LST epochs. `progress` (optional) is told one line per phase.
SpeedBenchResult measureSpeed(const SpeedBenchSpec& spec, const std::vector<MethodOptions>& methods,
    const std::function<void(const std::string&)>& progress = {});

} // namespace ladder
