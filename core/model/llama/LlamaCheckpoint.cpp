#include "model/llama/LlamaCheckpoint.h"

#include <filesystem>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/T5Checkpoint.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

std::string shapeString(at::IntArrayRef shape)
{
    std::ostringstream s;
    s << "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s << (i ? ", " : "") << shape[i];
    s << "]";
    return s.str();
}

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

bool isRotaryBuffer(const std::string& name)
{
    const std::string suffix = "rotary_emb.inv_freq";
    return name.size() >= suffix.size()
        && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// tie_word_embeddings true as transformers 5.25's from_pretrained reads it (PreTrainedModel.tie_weights with
// the checkpoint's missing keys): only lm_head.weight present -> the embedding is tied to it (the key is
// renamed here); both present and torch.equal -> tied; both present and different -> NOT tied (HF warns
// "both are present in the checkpoints with different values, so we will NOT tie them" and uses each as
// stored), so the config is untied here and lm_head is built and loaded.
void tieLikeHf(LlamaConfig& config, TensorMap& tensors)
{
    if (!config.tieWordEmbeddings)
        return;
    const auto head = tensors.find("lm_head.weight");
    if (head == tensors.end())
        return;
    const auto embedding = tensors.find("model.embed_tokens.weight");
    if (embedding == tensors.end()) {
        tensors.emplace("model.embed_tokens.weight", head->second);
        tensors.erase(head);
        return;
    }
    const auto& a = head->second;
    const auto& b = embedding->second;
    // HF compares the loaded parameters (one dtype); a shape mismatch is "not equal", then lm_head's shape is
    // refused when it is loaded.
    const bool equal = a.sizes() == b.sizes() && a.is_floating_point() && b.is_floating_point()
        && at::equal(a.to(at::kFloat), b.to(at::kFloat));
    if (!equal)
        config.tieWordEmbeddings = false;
}

} // namespace

void checkLlamaConfigMatchesWeights(const LlamaConfig& c,
    const std::map<std::string, std::vector<std::int64_t>>& shapes, const std::string& configPath,
    const std::string& weights)
{
    const auto expect = [&](const std::string& name, std::vector<std::int64_t> shape, const char* fields) {
        const auto it = shapes.find(name);
        if (it != shapes.end() && it->second != shape)
            throw Error(configPath + ": " + fields + " give " + name + " the shape " + shapeString(shape)
                + ", but " + weights + " has " + shapeString(it->second));
    };
    const auto h = c.hiddenSize, q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
    // The tensors that pin every size down must be there: without them a lying config.json (vocab_size 2^22,
    // 1,024 layers of hidden_size 2^16) would be allocated before the missing tensor is noticed. A tied
    // checkpoint may carry the embedding as lm_head.weight alone (HF ties it the other way round).
    const bool embedding = shapes.count("model.embed_tokens.weight")
        || (c.tieWordEmbeddings && shapes.count("lm_head.weight"));
    if (!embedding)
        throw Error(weights + ": missing tensor model.embed_tokens.weight (config " + configPath + ")");
    for (const char* part :
        { "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight" })
        if (!shapes.count(std::string("model.layers.0.") + part))
            throw Error(weights + ": missing tensor model.layers.0." + part + " (config " + configPath + ")");
    expect("model.embed_tokens.weight", { c.vocabSize, h }, "vocab_size and hidden_size");
    expect("lm_head.weight", { c.vocabSize, h }, "vocab_size and hidden_size");
    const std::string l0 = "model.layers.0.";
    expect(l0 + "self_attn.q_proj.weight", { q, h }, "num_attention_heads x head_dim and hidden_size");
    expect(l0 + "self_attn.k_proj.weight", { kv, h }, "num_key_value_heads x head_dim and hidden_size");
    expect(l0 + "self_attn.v_proj.weight", { kv, h }, "num_key_value_heads x head_dim and hidden_size");
    expect(l0 + "self_attn.o_proj.weight", { h, q }, "hidden_size and num_attention_heads x head_dim");
    expect(l0 + "mlp.gate_proj.weight", { c.intermediateSize, h }, "intermediate_size and hidden_size");
    expect(l0 + "mlp.up_proj.weight", { c.intermediateSize, h }, "intermediate_size and hidden_size");
    expect(l0 + "mlp.down_proj.weight", { h, c.intermediateSize }, "hidden_size and intermediate_size");
    std::int64_t layers = 0;
    const std::string prefix = "model.layers.";
    for (const auto& [name, _] : shapes) {
        if (name.rfind(prefix, 0) != 0)
            continue;
        const auto end = name.find('.', prefix.size());
        const auto digits = name.substr(prefix.size(), end - prefix.size());
        if (!digits.empty() && digits.size() <= 6
            && digits.find_first_not_of("0123456789") == std::string::npos)
            layers = std::max<std::int64_t>(layers, std::stoll(digits) + 1);
    }
    if (layers > 0 && layers != c.numHiddenLayers)
        throw Error(configPath + ": field num_hidden_layers is " + std::to_string(c.numHiddenLayers)
            + ", but " + weights + " has " + std::to_string(layers) + " layers");
    if (!c.tieWordEmbeddings && shapes.count("model.embed_tokens.weight") && !shapes.count("lm_head.weight"))
        throw Error(configPath + ": field tie_word_embeddings is false, but " + weights
            + " has no lm_head.weight (set tie_word_embeddings true if the head is the embedding)");
}

void loadLlamaStateDict(LlamaForCausalLM& model, const TensorMap& tensors, const std::string& source)
{
    const bool tied = model->config().tieWordEmbeddings;
    c10::NoGradGuard noGrad;
    auto params = model->named_parameters(true);
    std::set<std::string> seen;
    for (const auto& [name, tensor] : tensors) {
        if (isRotaryBuffer(name))
            continue; // recomputed from the config, as HF does (a non-persistent buffer)
        if (!tensor.is_floating_point())
            throw Error(source + ": tensor " + name + ": dtype " + dtypeName(tensor.scalar_type())
                + " is not a floating-point type (expected F32, F16 or BF16)");
        if (auto* p = params.find(name)) {
            if (p->sizes() != tensor.sizes())
                throw Error(source + ": tensor " + name + " has shape " + shapeString(tensor.sizes())
                    + ", expected " + shapeString(p->sizes()));
            if (!at::isfinite(tensor).all().item<bool>())
                throw Error(source + ": tensor " + name + " has NaN or infinite values");
            p->copy_(tensor);
            seen.insert(name);
            continue;
        }
        if (tied && name == "lm_head.weight") {
            const auto expected = model->model->embed_tokens->weight.sizes();
            if (tensor.sizes() != expected)
                throw Error(source + ": tensor " + name + " has shape " + shapeString(tensor.sizes())
                    + ", expected " + shapeString(expected) + " (tied to model.embed_tokens.weight)");
            continue;
        }
        throw Error(source + ": unexpected tensor " + name + " (not part of this " + model->config().modelType
            + " configuration)");
    }
    for (const auto& item : params)
        if (!seen.count(item.key()))
            throw Error(source + ": missing tensor " + item.key());
}

LoadedLlama loadLlama(const std::string& directory, const LlamaLoadOptions& options)
{
    if (options.dtype != at::kFloat && options.dtype != at::kBFloat16)
        throw Error("loading " + directory + ": compute dtype must be fp32 or bf16");
    if (!fs::is_directory(directory))
        throw Error(
            directory + ": not a folder (expected a HuggingFace model folder with config.json and weights)");
    LoadedLlama loaded;
    loaded.directory = directory;
    const auto configPath = (fs::path(directory) / "config.json").string();
    loaded.config = options.config ? LlamaConfig::fromJson(*options.config, configPath)
                                   : LlamaConfig::fromJsonFile(configPath);
    auto tensors = readCheckpointTensors(directory, &loaded.weightsDescription);
    // Errors name a file that exists: the index of a sharded checkpoint, else the weights file.
    const auto weightsPath = (fs::path(directory)
        / (loaded.weightsDescription.rfind("sharded", 0) == 0 ? "model.safetensors.index.json"
                                                              : loaded.weightsDescription))
                                 .string();
    tieLikeHf(loaded.config, tensors);
    // The config against the weights' shapes before the model is allocated: a config that lies (hidden_size
    // 2^16 beside small weights) fails naming the field instead of in the allocator.
    std::map<std::string, std::vector<std::int64_t>> shapes;
    for (const auto& [name, t] : tensors)
        shapes.emplace(name, t.sizes().vec());
    checkLlamaConfigMatchesWeights(loaded.config, shapes, configPath, loaded.weightsDescription);
    std::set<std::string> dtypes;
    for (const auto& [_, t] : tensors)
        dtypes.insert(dtypeName(t.scalar_type()));
    for (const auto& d : dtypes)
        loaded.storedDtype += (loaded.storedDtype.empty() ? "" : "+") + d;
    {
        SkipParameterInit skip; // every weight is overwritten from the checkpoint
        loaded.model = LlamaForCausalLM(loaded.config);
    }
    loadLlamaStateDict(loaded.model, tensors, weightsPath);
    tensors.clear();
    loaded.model->to(options.device, options.dtype);
    loaded.model->eval();
    return loaded;
}

} // namespace ladder
