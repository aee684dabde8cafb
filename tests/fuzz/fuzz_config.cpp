// A HuggingFace T5 config.json: JSON depth, field types, sizes and their bounds.
#include "FuzzSupport.h"
#include "model/T5Config.h"
#include "util/Error.h"
#include "util/Json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const auto config
            = ladder::T5Config::fromJson(ladder::parseJson(ladder::fuzz::text(data, size), "config.json"));
        (void)config.parameterCount();
        (void)config.toJson().dump();
    } catch (const ladder::Error&) {
    }
    return 0;
}
