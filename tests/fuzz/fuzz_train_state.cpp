// A run's training state file (core/train/TrainState.h), which `ladder train --resume` reads back: its
// safetensors container, the metadata's fields, and the tensors' names and shapes against each other.
// Every malformed file must be a ladder::Error; anything else escaping is a finding.
#include "FuzzSupport.h"
#include "train/TrainState.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("run-1.state");
    ladder::fuzz::writeBytes(path, data, size);
    try {
        ladder::readTrainStateHeader(path);
        ladder::loadTrainState(path);
    } catch (const ladder::Error&) {
    }
    return 0;
}
