#include "export/PeftExport.h"

#include <filesystem>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "model/Safetensors.h"
#include "util/Error.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {

bool endsWith(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lastComponent(const std::string& path)
{
    const auto dot = path.rfind('.');
    return dot == std::string::npos ? path : path.substr(dot + 1);
}

// Fields every PEFT config has (PeftConfig): the base is the backbone folder.
nlohmann::json commonFields(const LoadedRun& run, const char* peftType)
{
    return { { "peft_type", peftType }, { "task_type", "SEQ_2_SEQ_LM" },
        { "base_model_name_or_path", fs::absolute(run.backboneDirectory).lexically_normal().string() },
        { "revision", nullptr }, { "inference_mode", true } };
}

ExportedFolder writeLora(const LoadedRun& run, const fs::path& dir, ExportedFolder result)
{
    const auto& options = run.method->options();
    c10::NoGradGuard noGrad;
    TensorMap tensors;
    std::set<std::string> modules, shortNames;
    for (const auto& [name, p] : run.method->namedTrainableParameters()) {
        const bool a = endsWith(name, ".lora_A");
        if (!a && !endsWith(name, ".lora_B"))
            throw Error("parameter " + name + ": PEFT's LoRA adapter holds only lora_A and lora_B");
        const auto module = name.substr(0, name.size() - 7);
        modules.insert(module);
        shortNames.insert(lastComponent(module));
        tensors["base_model.model." + module + (a ? ".lora_A.weight" : ".lora_B.weight")]
            = p.detach().to(at::kCPU, at::kFloat).contiguous().clone();
    }
    if (modules.empty())
        throw Error("the run has no LoRA matrices to export");
    // The short names adapt exactly these modules when no layer was frozen; otherwise every adapted
    // module by its full name (PEFT matches a name equal to an entry, or ending in "." + the entry).
    const auto targets = options.freeze == 0 ? shortNames : modules;
    auto config = commonFields(run, "LORA");
    config.update(
        { { "r", options.rank }, { "lora_alpha", options.alpha }, { "lora_dropout", options.dropout },
            { "target_modules", targets }, { "bias", "none" }, { "fan_in_fan_out", false },
            { "use_rslora", false }, { "use_dora", false }, { "modules_to_save", nullptr },
            { "init_lora_weights", true }, { "layers_to_transform", nullptr }, { "layers_pattern", nullptr },
            { "rank_pattern", nlohmann::json::object() }, { "alpha_pattern", nlohmann::json::object() } });
    writeJsonFile((dir / "adapter_config.json").string(), config);
    writeSafetensors((dir / "adapter_model.safetensors").string(), tensors, { { "format", "pt" } });
    result.files = { "adapter_config.json", "adapter_model.safetensors" };
    result.notes.push_back("LoRA r " + std::to_string(options.rank) + ", alpha "
        + nlohmann::json(options.alpha).dump() + " on " + std::to_string(modules.size()) + " modules ("
        + nlohmann::json(targets).dump() + ")");
    return result;
}

ExportedFolder writePrompt(const LoadedRun& run, const fs::path& dir, ExportedFolder result)
{
    const auto named = run.method->namedTrainableParameters();
    if (named.size() != 1 || named.front().first != "prompt")
        throw Error("a prompt-tuning run holds one tensor named prompt");
    c10::NoGradGuard noGrad;
    const auto prompt = named.front().second.detach().to(at::kCPU, at::kFloat).contiguous().clone();
    const auto& c = t5Of(run, "export --format peft").config();
    auto config = commonFields(run, "PROMPT_TUNING");
    config.update({ { "num_virtual_tokens", prompt.size(0) }, { "token_dim", prompt.size(1) },
        { "num_transformer_submodules", 1 }, { "num_attention_heads", c.numHeads },
        { "num_layers", c.numLayers }, { "modules_to_save", nullptr }, { "prompt_tuning_init", "RANDOM" },
        { "prompt_tuning_init_text", nullptr }, { "tokenizer_name_or_path", nullptr } });
    writeJsonFile((dir / "adapter_config.json").string(), config);
    writeSafetensors((dir / "adapter_model.safetensors").string(), { { "prompt_embeddings", prompt } },
        { { "format", "pt" } });
    result.files = { "adapter_config.json", "adapter_model.safetensors" };
    result.notes.push_back(std::to_string(prompt.size(0))
        + " virtual tokens before the encoder's input "
          "(num_transformer_submodules 1: the decoder is not prefixed)");
    return result;
}

} // namespace

void checkPeftExportable(const RunSpec& spec)
{
    const auto& o = spec.method;
    if (o.method == "prompt") {
        if (o.quantizedBackbone())
            throw Error("the run held its frozen backbone as " + o.backboneDtype
                + ": PEFT would prepend the prompt to the fp32 backbone the run never saw (use --format "
                  "ladder)");
        return;
    }
    if (!o.isLora())
        throw Error("method " + o.method
            + " has no PEFT adapter form here: PEFT exports are for lora and prompt "
            + (o.method == "full" || o.method == "bitfit" ? "(use --format hf or --format ladder)"
                                                          : "(use --format ladder)"));
    if (o.quantizedBackbone())
        throw Error("the run trained LoRA over a backbone held as " + o.backboneDtype
            + (o.method == "qlora" ? " (qlora)" : "")
            + ": PEFT would apply the adapter to the fp32 backbone the run never saw (use --format hf, which "
              "writes the dequantised weights the run computed with and merges LoRA into them, or --format "
              "ladder)");
    if (o.bitfit)
        throw Error(
            "the LoRA run trained BitFit biases alongside (bitfit true, the paper's setting): PEFT's LoRA "
            "has "
            "no place for new biases and T5 has none (use --format hf, LoRA merged with the biases kept, or "
            "--format ladder; or train with --bitfit false)");
}

ExportedFolder writePeftFolder(const LoadedRun& run, const std::string& directory)
{
    checkPeftExportable(run.spec);
    t5Of(run, "export --format peft");
    const fs::path dir(directory);
    ExportedFolder result;
    result.format = "peft";
    result.directory = directory;
    result = run.spec.method.method == "prompt" ? writePrompt(run, dir, result) : writeLora(run, dir, result);
    const auto base = fs::absolute(run.backboneDirectory).lexically_normal().string();
    result.howToLoad = "from transformers import T5ForConditionalGeneration\n"
                       "from peft import PeftModel\n"
                       "base = T5ForConditionalGeneration.from_pretrained(\""
        + base
        + "\")\n"
          "model = PeftModel.from_pretrained(base, DIR)";
    std::string readme = "# LadderBench export (PEFT adapter)\n\n";
    readme += (run.runId > 0 ? "Run " + std::to_string(run.runId) + " (" : "(") + run.spec.displayName()
        + "), method " + run.spec.method.method + ", over the backbone " + base + ".\n\n";
    readme += "Written by `ladder export --format peft`. Load it over the backbone with:\n\n```python\n"
        + result.howToLoad + "\n```\n";
    for (const auto& note : result.notes)
        readme += "\n- " + note + ".";
    readme += "\n\nThe tokenizer is the backbone's (its spiece.model). See docs/EXPORT.md of LadderBench.\n";
    writeTextFile((dir / "README.md").string(), readme);
    result.files.push_back("README.md");
    return result;
}

} // namespace ladder
