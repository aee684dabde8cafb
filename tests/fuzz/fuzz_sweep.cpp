// A sweep file (`ladder sweep --config`): its base, methods, seeds and grid expanded into run specs, each
// then read as a run spec.
#include "FuzzSupport.h"
#include "train/RunSpec.h"
#include "train/Sweep.h"
#include "util/Error.h"
#include "util/Json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const auto specs = ladder::expandSweep(
            ladder::parseJson(ladder::fuzz::text(data, size), "sweep.json"), "sweep.json");
        for (std::size_t i = 0; i < specs.size() && i < 64; ++i)
            ladder::RunSpec::fromJson(specs[i], "sweep.json (run " + std::to_string(i + 1) + ")");
    } catch (const ladder::Error&) {
    }
    return 0;
}
