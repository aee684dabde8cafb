// pytorch_model.bin: the zip archive (LibTorch's reader) and the pickle of the state dict (TorchBin's strict
// unpickler): records, opcodes, storages, strides, sizes.
#include "FuzzSupport.h"
#include "model/TorchBin.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("pytorch_model.bin");
    ladder::fuzz::writeBytes(path, data, size);
    try {
        ladder::readTorchBin(path);
    } catch (const ladder::Error&) {
    }
    return 0;
}
