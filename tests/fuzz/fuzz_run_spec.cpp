// A run spec (ladder train --config, the workbench's presets and its stored specs) with its method options.
#include "FuzzSupport.h"
#include "train/RunSpec.h"
#include "util/Error.h"
#include "util/Json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const auto spec = ladder::RunSpec::fromJson(
            ladder::parseJson(ladder::fuzz::text(data, size), "run.json"), "run.json");
        (void)spec.toJson().dump();
        (void)spec.displayName();
    } catch (const ladder::Error&) {
    }
    return 0;
}
