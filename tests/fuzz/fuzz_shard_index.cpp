// model.safetensors.index.json of a sharded checkpoint, beside one valid shard
// (model-00001-of-00001.safetensors, two tensors) that the index may or may not name: the index's JSON, its
// weight_map, shard names that try to leave the folder, tensors listed but missing.
#include <filesystem>

#include <ATen/ATen.h>

#include "FuzzSupport.h"
#include "model/Safetensors.h"
#include "model/T5Checkpoint.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string dir = [] {
        const auto d = ladder::fuzz::scratchPath("sharded");
        std::filesystem::create_directories(d);
        ladder::writeSafetensors(d + "/model-00001-of-00001.safetensors",
            { { "shared.weight", at::ones({ 4, 2 }) },
                { "encoder.final_layer_norm.weight", at::ones({ 2 }) } });
        return d;
    }();
    ladder::fuzz::writeBytes(dir + "/model.safetensors.index.json", data, size);
    try {
        ladder::readCheckpointShapes(dir);
        ladder::readCheckpointTensors(dir);
    } catch (const ladder::Error&) {
    }
    return 0;
}
