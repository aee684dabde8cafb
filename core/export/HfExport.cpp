#include "export/HfExport.h"

#include <filesystem>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/Safetensors.h"
#include "model/T5Tokenizer.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

bool endsWith(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The biased T5 of a run with BitFit biases (HfExport.h). Written into the folder as modeling_ladder_t5.py.
const char* const kModelingFile
    = R"PY("""T5 with biases, written by LadderBench's `ladder export --format hf` (docs/EXPORT.md).

A LadderBench run that trained BitFit biases (method bitfit, or lora with bitfit true) adds a bias to every
projection (q, k, v, o, wi, wi_0, wi_1, wo), every layer norm and the LM head of T5. HuggingFace's T5 has
none, so T5ForConditionalGeneration would drop them and compute other logits. This class is
T5ForConditionalGeneration with those biases (zero where the run trained none); load the folder with

    AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
"""

import torch
from torch import nn
from transformers import T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5LayerNorm


class LadderT5LayerNorm(T5LayerNorm):
    """T5's RMS layer norm followed by a bias: weight * x / rms(x) + bias."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__(hidden_size, eps)
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, hidden_states):
        return super().forward(hidden_states) + self.bias


class LadderT5ForConditionalGeneration(T5ForConditionalGeneration):
    """T5ForConditionalGeneration with a bias on every linear map and layer norm (LadderBench's BitFit)."""

    def __init__(self, config):
        super().__init__(config)
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, T5LayerNorm) and not isinstance(child, LadderT5LayerNorm):
                    norm = LadderT5LayerNorm(child.weight.shape[0], child.variance_epsilon)
                    norm.weight = child.weight
                    norm.bias = nn.Parameter(
                        torch.zeros(child.weight.shape[0], dtype=child.weight.dtype, device=child.weight.device))
                    setattr(parent, name, norm)
                elif isinstance(child, nn.Linear) and child.bias is None:
                    child.bias = nn.Parameter(
                        torch.zeros(child.out_features, dtype=child.weight.dtype, device=child.weight.device))
)PY";

// Whether `name` is the weight of a T5 projection or layer norm, which the biased T5 gives a bias.
bool takesBias(const std::string& name)
{
    for (const char* p : { ".q.weight", ".k.weight", ".v.weight", ".o.weight", ".wi.weight", ".wi_0.weight",
             ".wi_1.weight", ".wo.weight", "layer_norm.weight" })
        if (endsWith(name, p))
            return true;
    return false;
}

// HF's special tokens of T5's tokenizer: </s>, <unk>, <pad> and extraIds sentinels.
nlohmann::json sentinels(int extraIds)
{
    auto out = nlohmann::json::array();
    for (int i = 0; i < extraIds; ++i)
        out.push_back("<extra_id_" + std::to_string(i) + ">");
    return out;
}

// model.safetensors' tensors: HF's names, LoRA merged, stored matrices dequantised, fp32 on the CPU.
TensorMap hfStateDict(const LoadedRun& run, bool withBiases)
{
    auto& model = t5Of(run, "export --format hf");
    std::map<std::string, const QuantizedWeight*> stored;
    for (const auto& [name, q] : model.quantizedWeights())
        stored[name] = q;
    c10::NoGradGuard noGrad;
    TensorMap out;
    std::map<std::string, at::Tensor> loraA, loraB;
    for (const auto& item : model.named_parameters(true)) {
        const auto& name = item.key();
        const auto cpu
            = [](const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous().clone(); };
        if (endsWith(name, ".lora_A")) {
            loraA[name.substr(0, name.size() - 7)] = cpu(item.value());
            continue;
        }
        if (endsWith(name, ".lora_B")) {
            loraB[name.substr(0, name.size() - 7)] = cpu(item.value());
            continue;
        }
        if (name == "encoder.embed_tokens.weight" || name == "decoder.embed_tokens.weight")
            continue; // shared.weight's ties
        if (name.find(".adapter.") != std::string::npos)
            throw Error("parameter " + name + ": adapters have no place in HF's T5 (use --format ladder)");
        const auto it = stored.find(name);
        auto tensor = it != stored.end() ? it->second->dequantize(at::kFloat).contiguous().clone()
                                         : cpu(item.value());
        out[name == "lm_head_bias" ? "lm_head.bias" : name] = tensor;
    }
    const auto& options = run.method->options();
    const double scale = options.alpha / static_cast<double>(options.rank);
    for (const auto& [path, a] : loraA) {
        const auto b = loraB.find(path);
        const auto w = out.find(path + ".weight");
        if (b == loraB.end() || w == out.end())
            throw Error("LoRA on " + path + ": lora_A without lora_B or without the weight it adapts");
        // W + (alpha / r) B A, as PEFT merges and as LadderBench's LoRA scales its path, in float64.
        w->second
            = (w->second.to(at::kDouble) + scale * at::matmul(b->second.to(at::kDouble), a.to(at::kDouble)))
                  .to(at::kFloat)
                  .contiguous();
    }
    if (withBiases) {
        std::vector<std::pair<std::string, at::Tensor>> missing;
        for (const auto& [name, t] : out)
            if (takesBias(name)) {
                const auto bias = name.substr(0, name.size() - 7) + ".bias";
                if (!out.count(bias))
                    missing.emplace_back(bias, at::zeros({ t.size(0) }, at::kFloat));
            }
        for (auto& [name, t] : missing)
            out[name] = t;
        if (!out.count("lm_head.bias"))
            out["lm_head.bias"] = at::zeros({ model.config().vocabSize }, at::kFloat);
    }
    return out;
}

void writeTokenizerFiles(const LoadedRun& run, const fs::path& dir, std::vector<std::string>& files)
{
    const fs::path from(run.backboneDirectory);
    copyFile((from / "spiece.model").string(), (dir / "spiece.model").string());
    files.push_back("spiece.model");
    // The backbone's own tokenizer files when it has them (a folder from the Hub does).
    for (const char* name : { "tokenizer.json", "added_tokens.json", "generation_config.json" })
        if (fs::exists(from / name)) {
            copyFile((from / name).string(), (dir / name).string());
            files.push_back(name);
        }
    const auto* t5Tokenizer = dynamic_cast<const T5Tokenizer*>(run.tokenizer.get());
    if (!t5Tokenizer)
        throw Error("export --format hf: the run's tokenizer is not T5's");
    const int extraIds = t5Tokenizer->extraIds();
    if (fs::exists(from / "special_tokens_map.json"))
        copyFile((from / "special_tokens_map.json").string(), (dir / "special_tokens_map.json").string());
    else
        writeJsonFile((dir / "special_tokens_map.json").string(),
            { { "eos_token", "</s>" }, { "unk_token", "<unk>" }, { "pad_token", "<pad>" },
                { "additional_special_tokens", sentinels(extraIds) } });
    files.push_back("special_tokens_map.json");
    if (fs::exists(from / "tokenizer_config.json"))
        copyFile((from / "tokenizer_config.json").string(), (dir / "tokenizer_config.json").string());
    else
        // As HF's T5Tokenizer saves itself; legacy true: LadderBench's tokenizer is transformers 4.26's.
        writeJsonFile((dir / "tokenizer_config.json").string(),
            { { "tokenizer_class", "T5Tokenizer" }, { "eos_token", "</s>" }, { "unk_token", "<unk>" },
                { "pad_token", "<pad>" }, { "extra_ids", extraIds },
                { "additional_special_tokens", sentinels(extraIds) }, { "model_max_length", 512 },
                { "legacy", true }, { "clean_up_tokenization_spaces", true } });
    files.push_back("tokenizer_config.json");
}

std::string runLine(const LoadedRun& run)
{
    return (run.runId > 0 ? "run " + std::to_string(run.runId) + " (" : "(") + run.spec.displayName()
        + "), method " + run.spec.method.method + ", backbone " + run.backboneDirectory;
}

} // namespace

void checkHfExportable(const RunSpec& spec)
{
    const auto& m = spec.method.method;
    if (m == "ladder")
        throw Error("an LST (ladder) run has no HuggingFace form: its side network is an architecture of its "
                    "own (use --format ladder)");
    if (m == "adapter")
        throw Error("an Adapters run has no HuggingFace T5 form: HF's T5 has no bottleneck adapters (use "
                    "--format ladder)");
    if (m == "prompt")
        throw Error("a prompt-tuning run changes no weight: its prompt is an input (use --format peft, which "
                    "PEFT loads over the backbone, or --format ladder)");
    if (m != "full" && m != "bitfit" && !spec.method.isLora())
        throw Error("method " + m + ": no HuggingFace export (use --format ladder)");
}

bool hfExportHasBiases(const LoadedRun& run)
{
    for (const auto& item : run.backbone->named_parameters(true))
        if (item.key() == "lm_head_bias" || endsWith(item.key(), ".bias"))
            return true;
    return false;
}

ExportedFolder writeHfFolder(const LoadedRun& run, const std::string& directory)
{
    checkHfExportable(run.spec);
    t5Of(run, "export --format hf");
    const fs::path dir(directory);
    const bool biases = hfExportHasBiases(run);
    ExportedFolder result;
    result.format = "hf";
    result.directory = directory;

    auto config
        = readJsonFile((fs::path(run.backboneDirectory) / "config.json").string(), "a T5 config.json");
    if (!config.is_object())
        throw Error(run.backboneDirectory + "/config.json: expected a JSON object");
    config["architectures"] = nlohmann::json::array(
        { biases ? "LadderT5ForConditionalGeneration" : "T5ForConditionalGeneration" });
    if (biases) {
        config["auto_map"]
            = { { "AutoModelForSeq2SeqLM", "modeling_ladder_t5.LadderT5ForConditionalGeneration" } };
        writeTextFile((dir / "modeling_ladder_t5.py").string(), kModelingFile);
        result.files.push_back("modeling_ladder_t5.py");
    }
    config["torch_dtype"] = "float32";
    writeJsonFile((dir / "config.json").string(), config);
    result.files.push_back("config.json");

    writeSafetensors((dir / "model.safetensors").string(), hfStateDict(run, biases), { { "format", "pt" } });
    result.files.push_back("model.safetensors");
    writeTokenizerFiles(run, dir, result.files);

    if (biases) {
        result.howToLoad = "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n"
                           "model = AutoModelForSeq2SeqLM.from_pretrained(DIR, trust_remote_code=True)\n"
                           "tokenizer = AutoTokenizer.from_pretrained(DIR)";
        result.notes.push_back(
            "the run trained BitFit biases, which HF's T5 has not: the folder's "
            "modeling_ladder_t5.py adds them; load with trust_remote_code=True (plain "
            "T5ForConditionalGeneration would drop them and report them as unexpected keys)");
    } else {
        result.howToLoad = "from transformers import T5ForConditionalGeneration, AutoTokenizer\n"
                           "model = T5ForConditionalGeneration.from_pretrained(DIR)\n"
                           "tokenizer = AutoTokenizer.from_pretrained(DIR)";
    }
    if (run.spec.method.isLora())
        result.notes.push_back("LoRA merged into the weights: W + (alpha / r) B A, alpha "
            + nlohmann::json(run.spec.method.alpha).dump() + ", r " + std::to_string(run.spec.method.rank));
    if (run.spec.method.quantizedBackbone())
        result.notes.push_back("the frozen backbone was held as " + run.spec.method.backboneDtype
            + ": its weights are written dequantised to fp32, as the run computed with them");

    std::string readme = "# LadderBench export (HuggingFace T5)\n\n" + runLine(run) + ".\n\n";
    readme += "Written by `ladder export --format hf`. Load it with:\n\n```python\n" + result.howToLoad
        + "\n```\n";
    for (const auto& note : result.notes)
        readme += "\n- " + note + ".";
    readme += "\n\nFiles: config.json, model.safetensors (fp32, HF's state-dict names), spiece.model and the "
              "tokenizer files"
        + std::string(biases ? ", modeling_ladder_t5.py" : "") + ". See docs/EXPORT.md of LadderBench.\n";
    writeTextFile((dir / "README.md").string(), readme);
    result.files.push_back("README.md");
    return result;
}

} // namespace ladder
