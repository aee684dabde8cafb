#pragma once

#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "model/BackboneModel.h"
#include "model/BackboneShape.h"

namespace ladder {

struct BackboneLoadOptions {
    c10::ScalarType dtype = c10::kFloat; // compute dtype: kFloat or kBFloat16
    c10::Device device = c10::Device(c10::kCPU);
};

struct LoadedBackbone {
    BackboneModel model; // T5ForConditionalGenerationImpl or LlamaForCausalLMImpl (asT5(), asLlama())
    BackboneShape shape;
    std::string modelType; // config.json's model_type: "t5", "llama", "mistral", "qwen2"
    std::string directory;
    std::string weightsDescription; // "model.safetensors", "sharded safetensors (...)", "pytorch_model.bin"
    std::string storedDtype; // "F32", "BF16", ...
};

// config.json's model_type, read without building anything ("t5", "llama", ...). Throws ladder::Error naming
// the file when it is missing or not a string.
std::string readModelType(const std::string& directory);

// Any supported HF folder: model_type "t5" -> loadT5 (model/T5Checkpoint.h); "llama", "mistral", "qwen2" ->
// loadLlama (model/llama/LlamaCheckpoint.h). Another model_type: ladder::Error listing the supported ones.
LoadedBackbone loadBackbone(const std::string& directory, const BackboneLoadOptions& options = {});

} // namespace ladder
