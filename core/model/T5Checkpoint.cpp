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
#include "util/Json.h"
#include "util/Text.h"

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

// The index of a sharded checkpoint: shard file -> the tensor names it holds.
std::map<std::string, std::set<std::string>> readShardIndex(const fs::path& indexPath)
{
    const nlohmann::json index = readJsonFile(indexPath.string(), "a sharded checkpoint's index");
    if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
        throw Error(
            indexPath.string() + ": field weight_map: expected an object of tensor name -> shard file");
    std::map<std::string, std::set<std::string>> byFile;
    for (const auto& [name, file] : index.at("weight_map").items()) {
        if (!file.is_string())
            throw Error(
                indexPath.string() + ": weight_map[" + oneLine(name, 200) + "]: expected a file name");
        const auto f = file.get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos)
            throw Error(indexPath.string() + ": weight_map[" + oneLine(name, 200) + "]: shard name '"
                + oneLine(f, 200) + "' must be a plain file name in the same folder");
        byFile[f].insert(name);
    }
    return byFile;
}

// Every tensor the index lists, from its shard; `read` gives one shard's name -> value.
template <typename Map, typename Read> Map readShards(const fs::path& indexPath, Read read)
{
    Map all;
    for (const auto& [file, names] : readShardIndex(indexPath)) {
        const auto shardPath = (indexPath.parent_path() / file).string();
        auto shard = read(shardPath);
        for (const auto& name : names) {
            auto it = shard.find(name);
            if (it == shard.end())
                throw Error(shardPath + ": tensor " + oneLine(name, 200) + " is listed in "
                    + indexPath.filename().string() + " but missing from the shard");
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

namespace {

enum class WeightsForm { Safetensors, Sharded, TorchBin };

struct WeightsFile {
    WeightsForm form;
    fs::path path;
    const char* description;
};

// model.safetensors, else model.safetensors.index.json (shards), else pytorch_model.bin.
WeightsFile findWeights(const std::string& directory)
{
    const fs::path dir(directory);
    if (!fs::is_directory(dir))
        throw Error(directory + ": not a folder (expected a HuggingFace model folder with config.json)");
    if (fs::exists(dir / "model.safetensors"))
        return { WeightsForm::Safetensors, dir / "model.safetensors", "model.safetensors" };
    if (fs::exists(dir / "model.safetensors.index.json"))
        return { WeightsForm::Sharded, dir / "model.safetensors.index.json",
            "sharded safetensors (model.safetensors.index.json)" };
    if (fs::exists(dir / "pytorch_model.bin"))
        return { WeightsForm::TorchBin, dir / "pytorch_model.bin", "pytorch_model.bin" };
    throw Error(directory
        + ": no weights found (expected model.safetensors, model.safetensors.index.json or "
          "pytorch_model.bin)");
}

} // namespace

TensorMap readCheckpointTensors(const std::string& directory, std::string* description)
{
    const auto weights = findWeights(directory);
    if (description)
        *description = weights.description;
    switch (weights.form) {
    case WeightsForm::Safetensors:
        return readSafetensors(weights.path.string());
    case WeightsForm::Sharded:
        return readShards<TensorMap>(weights.path, [](const std::string& p) { return readSafetensors(p); });
    case WeightsForm::TorchBin:
        break;
    }
    return readTorchBin(weights.path.string());
}

CheckpointShapes readCheckpointShapes(const std::string& directory)
{
    const auto weights = findWeights(directory);
    CheckpointShapes out;
    out.description = weights.description;
    std::set<std::string> dtypes;
    if (weights.form == WeightsForm::TorchBin) {
        // The pickle reader has no header-only mode: the tensors are read (as many bytes as the file).
        for (const auto& [name, t] : readTorchBin(weights.path.string())) {
            out.shapes.emplace(name, t.sizes().vec());
            dtypes.insert(dtypeName(t.scalar_type()));
        }
    } else {
        using Header = std::map<std::string, SafetensorsEntry>;
        const auto header = weights.form == WeightsForm::Safetensors
            ? readSafetensorsHeader(weights.path.string())
            : readShards<Header>(weights.path, [](const std::string& p) { return readSafetensorsHeader(p); });
        for (const auto& [name, entry] : header) {
            out.shapes.emplace(name, entry.shape);
            dtypes.insert(entry.dtype);
        }
    }
    for (const auto& d : dtypes)
        out.storedDtype += (out.storedDtype.empty() ? "" : "+") + d;
    return out;
}

void checkConfigMatchesWeights(
    const T5Config& c, const ShapeMap& shapes, const std::string& configPath, const std::string& weights)
{
    const auto expect = [&](const std::string& name, std::vector<std::int64_t> shape, const char* fields) {
        const auto it = shapes.find(name);
        if (it != shapes.end() && it->second != shape)
            throw Error(configPath + ": " + fields + " give " + name + " the shape " + shapeString(shape)
                + ", but " + weights + " has " + shapeString(it->second));
    };
    const std::int64_t d = c.dModel, inner = c.innerDim();
    expect("shared.weight", { c.vocabSize, d }, "vocab_size and d_model");
    expect("encoder.embed_tokens.weight", { c.vocabSize, d }, "vocab_size and d_model");
    for (const char* stack : { "encoder", "decoder" }) {
        const std::string block0 = std::string(stack) + ".block.0.layer.";
        expect(block0 + "0.SelfAttention.q.weight", { inner, d }, "num_heads x d_kv and d_model");
        expect(block0 + "0.SelfAttention.relative_attention_bias.weight",
            { c.relativeAttentionNumBuckets, c.numHeads }, "relative_attention_num_buckets and num_heads");
        const std::string ffn = block0 + (std::string(stack) == "encoder" ? "1" : "2") + ".DenseReluDense.";
        expect(ffn + (c.isGatedAct() ? "wi_0.weight" : "wi.weight"), { c.dFf, d }, "d_ff and d_model");
        // The number of blocks: the highest block index in the weights.
        std::int64_t blocks = 0;
        const std::string prefix = std::string(stack) + ".block.";
        for (const auto& [name, _] : shapes) {
            if (name.rfind(prefix, 0) != 0)
                continue;
            const auto end = name.find('.', prefix.size());
            const auto digits = name.substr(prefix.size(), end - prefix.size());
            if (!digits.empty() && digits.size() <= 6
                && digits.find_first_not_of("0123456789") == std::string::npos)
                blocks = std::max<std::int64_t>(blocks, std::stoll(digits) + 1);
        }
        const auto stated = std::string(stack) == "encoder" ? c.numLayers : c.numDecoderLayers;
        if (blocks > 0 && blocks != stated)
            throw Error(configPath + ": field "
                + (std::string(stack) == "encoder" ? "num_layers" : "num_decoder_layers") + " is "
                + std::to_string(stated) + ", but " + weights + " has " + std::to_string(blocks) + " " + stack
                + " blocks");
    }
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
            // A NaN or infinite weight would train (or evaluate) to NaN without a word: refused here.
            if (!at::isfinite(tensor).all().item<bool>())
                throw Error(source + ": tensor " + name + " has NaN or infinite values");
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
    const auto configPath = (fs::path(directory) / "config.json").string();
    loaded.config = options.config ? T5Config::fromJson(*options.config, configPath)
                                   : T5Config::fromJsonFile(configPath);
    auto tensors = readCheckpointTensors(directory, &loaded.weightsDescription);
    std::set<std::string> dtypes;
    for (const auto& [_, t] : tensors)
        dtypes.insert(dtypeName(t.scalar_type()));
    for (const auto& d : dtypes)
        loaded.storedDtype += (loaded.storedDtype.empty() ? "" : "+") + d;

    ShapeMap shapes;
    for (const auto& [name, t] : tensors)
        shapes.emplace(name, t.sizes().vec());
    checkConfigMatchesWeights(
        loaded.config, shapes, (fs::path(directory) / "config.json").string(), loaded.weightsDescription);
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
    // Weights held in frozen storage (issue 18) count as the parameters their empty placeholders stand for.
    return n + quantizedParameterCount(module);
}

} // namespace ladder
