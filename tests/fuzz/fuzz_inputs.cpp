// inputs.json of `ladder forward`: input_ids, attention_mask and labels as arrays of rows of integers.
#include "FuzzSupport.h"
#include "model/ModelInputs.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("inputs.json");
    ladder::fuzz::writeBytes(path, data, size);
    try {
        ladder::ModelInputs::fromJsonFile(path, 32128);
    } catch (const ladder::Error&) {
    }
    return 0;
}
