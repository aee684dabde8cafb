#include "model/T5Checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/TorchBin.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

std::string dtypeName(c10::ScalarType t)
{
    switch (t) {
    case at::kFloat:
        return "F32";
    case at::kHalf:
        return "F16";
    case at::kBFloat16:
        return "BF16";
    case at::kDouble:
        return "F64";
    default:
        return c10::toString(t);
    }
}

std::string shapeString(at::IntArrayRef shape)
{
    std::ostringstream s;
    s << "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s << (i ? ", " : "") << shape[i];
    s << "]";
    return s.str();
}

TensorMap readShards(const fs::path& indexPath)
{
    nlohmann::json index;
    {
        std::ifstream in(indexPath);
        if (!in)
            throw Error(indexPath.string() + ": cannot open");
        try {
            in >> index;
        } catch (const nlohmann::json::exception& e) {
            throw Error(indexPath.string() + ": not valid JSON: " + e.what());
        }
    }
    if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
        throw Error(
            indexPath.string() + ": field weight_map: expected an object of tensor name -> shard file");
    std::map<std::string, std::set<std::string>> byFile;
    for (const auto& [name, file] : index.at("weight_map").items()) {
        if (!file.is_string())
            throw Error(indexPath.string() + ": weight_map[" + name + "]: expected a file name");
        const auto f = file.get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos)
            throw Error(indexPath.string() + ": weight_map[" + name + "]: shard name '" + f
                + "' must be a plain file name in the same folder");
        byFile[f].insert(name);
    }
    TensorMap all;
    for (const auto& [file, names] : byFile) {
        const auto shardPath = (indexPath.parent_path() / file).string();
        auto shard = readSafetensors(shardPath);
        for (const auto& name : names) {
            auto it = shard.find(name);
            if (it == shard.end())
                throw Error(shardPath + ": tensor " + name + " is listed in " + indexPath.filename().string()
                    + " but missing from the shard");
            all.emplace(name, it->second);
        }
    }
    return all;
}

bool isTiedKey(const std::string& name, bool tied)
{
    return name == "encoder.embed_tokens.weight" || name == "decoder.embed_tokens.weight"
        || (tied && name == "lm_head.weight");
}

} // namespace

TensorMap readCheckpointTensors(const std::string& directory, std::string* description)
{
    const fs::path dir(directory);
    if (!fs::is_directory(dir))
        throw Error(directory + ": not a folder (expected a HuggingFace model folder with config.json)");
    const auto single = dir / "model.safetensors";
    const auto index = dir / "model.safetensors.index.json";
    const auto bin = dir / "pytorch_model.bin";
    if (fs::exists(single)) {
        if (description)
            *description = "model.safetensors";
        return readSafetensors(single.string());
    }
    if (fs::exists(index)) {
        auto tensors = readShards(index);
        if (description)
            *description = "sharded safetensors (model.safetensors.index.json)";
        return tensors;
    }
    if (fs::exists(bin)) {
        if (description)
            *description = "pytorch_model.bin";
        return readTorchBin(bin.string());
    }
    throw Error(directory
        + ": no weights found (expected model.safetensors, model.safetensors.index.json or "
          "pytorch_model.bin)");
}

void loadT5StateDict(T5ForConditionalGeneration& model, const TensorMap& tensors, const std::string& source)
{
    const bool tied = model->config().tieWordEmbeddings;
    c10::NoGradGuard noGrad;
    auto params = model->named_parameters(true);
    std::set<std::string> seen;
    for (const auto& [name, tensor] : tensors) {
        if (!tensor.is_floating_point())
            throw Error(source + ": tensor " + name + ": dtype " + dtypeName(tensor.scalar_type())
                + " is not a floating-point type (expected F32, F16 or BF16)");
        if (auto* p = params.find(name)) {
            if (p->sizes() != tensor.sizes())
                throw Error(source + ": tensor " + name + " has shape " + shapeString(tensor.sizes())
                    + ", expected " + shapeString(p->sizes()));
            p->copy_(tensor);
            seen.insert(name);
            continue;
        }
        if (isTiedKey(name, tied)) {
            const auto expected = model->shared->weight.sizes();
            if (tensor.sizes() != expected)
                throw Error(source + ": tensor " + name + " has shape " + shapeString(tensor.sizes())
                    + ", expected " + shapeString(expected) + " (tied to shared.weight)");
            continue;
        }
        // HF ignores this key on load too (cross-attention never had a relative bias).
        if (name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")
            continue;
        throw Error(source + ": unexpected tensor " + name + " (not part of this T5 configuration)");
    }
    for (const auto& item : params) {
        if (!seen.count(item.key()))
            throw Error(source + ": missing tensor " + item.key());
    }
}

LoadedT5 loadT5(const std::string& directory, const T5LoadOptions& options)
{
    if (options.dtype != at::kFloat && options.dtype != at::kBFloat16)
        throw Error("loading " + directory + ": compute dtype must be fp32 or bf16");
    if (!fs::is_directory(directory))
        throw Error(
            directory + ": not a folder (expected a HuggingFace T5 folder with config.json and weights)");
    LoadedT5 loaded;
    loaded.directory = directory;
    loaded.config = T5Config::fromJsonFile((fs::path(directory) / "config.json").string());
    auto tensors = readCheckpointTensors(directory, &loaded.weightsDescription);
    std::set<std::string> dtypes;
    for (const auto& [_, t] : tensors)
        dtypes.insert(dtypeName(t.scalar_type()));
    for (const auto& d : dtypes)
        loaded.storedDtype += (loaded.storedDtype.empty() ? "" : "+") + d;

    {
        SkipParameterInit skip; // every weight is overwritten from the checkpoint
        loaded.model = T5ForConditionalGeneration(loaded.config);
    }
    loadT5StateDict(loaded.model, tensors, (fs::path(directory) / loaded.weightsDescription).string());
    tensors.clear();
    loaded.model->to(options.device, options.dtype);
    loaded.model->eval();
    return loaded;
}

std::int64_t countParameters(const torch::nn::Module& module)
{
    std::int64_t n = 0;
    std::set<const void*> seen;
    for (const auto& p : module.parameters(true)) {
        if (seen.insert(p.unsafeGetTensorImpl()).second)
            n += p.numel();
    }
    return n;
}

} // namespace ladder
