#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "model/Safetensors.h"
#include "model/T5Model.h"

namespace ladder {

struct T5LoadOptions {
    c10::ScalarType dtype = c10::kFloat; // compute dtype: kFloat or kBFloat16
    c10::Device device = c10::Device(c10::kCPU);
    // config.json as the caller has read it already (loadBackbone reads it once to dispatch; a folder's
    // config.json is then read exactly once), else read here.
    std::shared_ptr<const nlohmann::json> config;
};

struct LoadedT5 {
    T5ForConditionalGeneration model { nullptr };
    T5Config config;
    std::string directory;
    std::string weightsDescription; // "model.safetensors", "3 safetensors shards", "pytorch_model.bin"
    std::string storedDtype; // dtype(s) found in the files, e.g. "F32" or "BF16"
};

// Reads the weights of a HF folder: model.safetensors, else model.safetensors.index.json (shards), else
// pytorch_model.bin. Throws ladder::Error naming the folder or file.
TensorMap readCheckpointTensors(const std::string& directory, std::string* description = nullptr);

// The weights' names, shapes and stored dtypes without their data (safetensors, single or sharded: the
// headers only; pytorch_model.bin: read whole, the pickle reader has no header-only mode).
struct CheckpointShapes {
    std::map<std::string, std::vector<std::int64_t>> shapes;
    std::string description; // as readCheckpointTensors describes the files
    std::string storedDtype; // "F32", "BF16", "F16+F32", ...
};
CheckpointShapes readCheckpointShapes(const std::string& directory);

// The sizes config.json states against the weights' shapes, before any model is built: the embedding
// (vocab_size, d_model), the first block's attention (num_heads x d_kv, buckets) and feed-forward (d_ff),
// and the number of blocks of each stack. A config that lies (d_model 2^34 beside small weights) fails
// here with one line naming the field, instead of in the allocator.
using ShapeMap = std::map<std::string, std::vector<std::int64_t>>;
void checkConfigMatchesWeights(const T5Config& config, const ShapeMap& shapes, const std::string& configPath,
    const std::string& weights);

// Copies `tensors` into `model` (converting dtype), strictly: a missing, unexpected or mis-shaped tensor
// is an error naming it. Tied-weight keys (encoder/decoder.embed_tokens.weight, lm_head.weight when the
// embeddings are tied) may be present or absent; when present they must have the shared shape. A tensor
// with a NaN or infinite value is refused.
void loadT5StateDict(T5ForConditionalGeneration& model, const TensorMap& tensors, const std::string& source);

// config.json + weights -> a model in eval mode on the chosen device and dtype.
LoadedT5 loadT5(const std::string& directory, const T5LoadOptions& options = {});

// Parameter count, counting tied weights once; a weight held in frozen storage counts as the dense one.
std::int64_t countParameters(const torch::nn::Module& module);

} // namespace ladder
