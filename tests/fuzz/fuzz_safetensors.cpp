// A .safetensors file: its header (length, JSON, dtypes, shapes, offsets) and its data spans, read whole and
// header-only. Every malformed file must be a ladder::Error; anything else escaping is a finding.
#include "FuzzSupport.h"
#include "model/Safetensors.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("model.safetensors");
    ladder::fuzz::writeBytes(path, data, size);
    try {
        ladder::readSafetensorsHeader(path);
        ladder::readSafetensorsMetadata(path);
        ladder::readSafetensors(path);
    } catch (const ladder::Error&) {
    }
    return 0;
}
