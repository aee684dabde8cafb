// ladder info | forward | generate: the backbone from a HuggingFace folder; ladder devices: where it can run.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "Commands.h"
#include "JsonOutput.h"
#include "MethodFlags.h"
#include "device/Devices.h"
#include "model/BackboneLoad.h"
#include "model/Generation.h"
#include "model/ModelInputs.h"
#include "model/T5Checkpoint.h"
#include "model/T5Quantization.h"
#include "model/llama/LlamaCheckpoint.h"
#include "model/llama/LlamaQuantization.h"
#include "model/llama/LlamaShapes.h"
#include "peft/Ladder.h"
#include "peft/LadderReferenceNames.h"
#include "util/Error.h"

namespace ladder::cli {
namespace {

struct BackboneFlags {
    std::string model;
    std::string device = "cpu";
    std::string dtype = "fp32";
};

// forward --method ladder: LST over the backbone with side weights stored under the reference
// implementation's names (core/peft/LadderReferenceNames.h).
struct MethodForwardFlags {
    std::string method;
    std::optional<std::int64_t> r;
    std::optional<std::string> keep;
    std::string sideWeights;
    bool json = false; // print {out, tensors, loss} instead of a sentence
};

void addBackboneFlags(CLI::App* cmd, BackboneFlags& f)
{
    cmd->add_option(
           "--model", f.model, "HuggingFace folder (config.json + weights): T5, Llama, Mistral or Qwen2")
        ->required();
    cmd->add_option("--device", f.device, "cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--dtype", f.dtype, "compute dtype: fp32 or bf16")->capture_default_str();
}

T5LoadOptions loadOptions(const BackboneFlags& f)
{
    T5LoadOptions o;
    if (f.dtype == "fp32")
        o.dtype = at::kFloat;
    else if (f.dtype == "bf16")
        o.dtype = at::kBFloat16;
    else
        throw Error("--dtype: expected fp32 or bf16, got '" + f.dtype + "'");
    try {
        o.device = c10::Device(f.device);
    } catch (const std::exception&) {
        throw Error("--device: expected cpu, cuda or cuda:N, got '" + f.device + "'");
    }
    if (!o.device.is_cpu() && !o.device.is_cuda())
        throw Error("--device: expected cpu, cuda or cuda:N, got '" + f.device + "'");
    if (o.device.is_cuda() && !at::hasCUDA())
        throw Error("--device " + f.device + ": no CUDA device is available");
    return o;
}

std::string humanBytes(double bytes)
{
    const char* units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        ++u;
    }
    std::ostringstream s;
    s << std::fixed << std::setprecision(u == 0 ? 0 : 2) << bytes << " " << units[u];
    return s.str();
}

// ladder info: a HF folder (--model) or a published shape (--shape), and the frozen storage of issue 18.
struct InfoFlags {
    BackboneFlags backbone;
    std::string shape;
    std::string backboneDtype = "fp32";
    std::int64_t quantGroupSize = 64;
};

// The weight memory of the backbone with its matrices in each frozen storage (model/T5Quantization.h):
// fp32, bf16, int8, int4 g<groupSize>; no value where the int4 group does not divide a width.
std::vector<std::pair<std::string, std::optional<std::int64_t>>> storageTable(
    const T5Config& config, std::int64_t groupSize)
{
    std::vector<std::pair<std::string, std::optional<std::int64_t>>> out;
    for (const char* dtype : { "fp32", "bf16", "int8", "int4" }) {
        std::optional<std::int64_t> bytes;
        try {
            bytes = backboneStorageBytes(config, dtype, groupSize).totalBytes();
        } catch (const Error&) {
        }
        out.emplace_back(weightStorageLabel(dtype, groupSize), bytes);
    }
    return out;
}

// A decoder-only folder (model_type llama, mistral, qwen2) rather than T5's: the commands dispatch on it.
// Anything else (no folder, no config.json, no model_type) takes the T5 path, whose errors are unchanged.
bool isDecoderFolder(const std::string& model)
{
    if (model.empty())
        return false;
    try {
        return LlamaConfig::supportsModelType(readModelType(model));
    } catch (const Error&) {
        return false;
    }
}

LlamaLoadOptions decoderLoadOptions(const BackboneFlags& f)
{
    const auto o = loadOptions(f);
    return { o.dtype, o.device };
}

std::string joinIds(const std::vector<std::int64_t>& ids)
{
    std::string s;
    for (const auto id : ids)
        s += (s.empty() ? "" : ", ") + std::to_string(id);
    return s.empty() ? "none" : s;
}

// ladder info for a decoder folder or a published decoder shape (llama-1b, llama2-7b): the config and the
// weights' headers only (nothing allocated), and the frozen storage of backbone_dtype
// (model/llama/LlamaQuantization.h: the projections, the embedding and an untied lm_head).
int runDecoderInfo(const InfoFlags& info, const LlamaConfig& config, bool asJson)
{
    const auto& f = info.backbone;
    const auto options = loadOptions(f);
    CheckpointShapes weights;
    if (info.shape.empty()) {
        const auto configPath = (std::filesystem::path(f.model) / "config.json").string();
        weights = readCheckpointShapes(f.model);
        checkLlamaConfigMatchesWeights(config, weights.shapes, configPath, weights.description);
    }
    const auto params = config.parameterCount();
    const auto weightBytes
        = static_cast<double>(params) * static_cast<double>(c10::elementSize(options.dtype));
    const auto storage = backboneStorageBytes(config, info.backboneDtype, info.quantGroupSize);
    const auto storageLabel = weightStorageLabel(info.backboneDtype, info.quantGroupSize);
    std::vector<std::pair<std::string, std::optional<std::int64_t>>> table;
    for (const char* dtype : { "fp32", "bf16", "int8", "int4" }) {
        std::optional<std::int64_t> bytes;
        try {
            bytes = backboneStorageBytes(config, dtype, info.quantGroupSize).totalBytes();
        } catch (const Error&) { // an int4 group that does not divide a width: n/a
        }
        table.emplace_back(weightStorageLabel(dtype, info.quantGroupSize), bytes);
    }
    std::string biases;
    if (config.qkvBias())
        biases += std::string(biases.empty() ? "" : ", ") + "q/k/v";
    if (config.oBias())
        biases += std::string(biases.empty() ? "" : ", ") + "o";
    if (config.mlpHasBias())
        biases += std::string(biases.empty() ? "" : ", ") + "mlp";
    if (asJson) {
        nlohmann::json out { { "model", jsonText(f.model) }, { "shape", jsonText(info.shape) },
            { "architecture", config.modelType }, { "weights", jsonText(weights.description) },
            { "stored_dtype", jsonText(weights.storedDtype) }, { "compute_dtype", f.dtype },
            { "device", f.device }, { "parameters", params },
            { "weight_bytes", static_cast<std::int64_t>(weightBytes) }, { "layers", config.numHiddenLayers },
            { "hidden_size", config.hiddenSize }, { "heads", config.numAttentionHeads },
            { "key_value_heads", config.numKeyValueHeads }, { "head_dim", config.headDim },
            { "rope", config.ropeDescription() }, { "tied_embeddings", config.tieWordEmbeddings },
            { "biases", biases.empty() ? "none" : biases }, { "backbone_dtype", info.backboneDtype },
            { "quant_group_size",
                info.backboneDtype == "int4" ? nlohmann::json(info.quantGroupSize) : nullptr },
            { "backbone_storage_bytes", storage.totalBytes() },
            { "quantized_parameters", storage.matrixParameters }, { "config", config.toJson() } };
        for (const auto& [label, bytes] : table)
            out["storage_bytes"][label] = jsonOptional(bytes);
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    if (info.shape.empty())
        std::cout << "model          " << f.model << "\n"
                  << "weights        " << weights.description << " (" << weights.storedDtype << ")\n";
    else
        std::cout << "shape          " << info.shape << " (published config, no weights read)\n";
    std::cout << "architecture   " << config.modelType << " (decoder-only, "
              << (config.tieWordEmbeddings ? "tied" : "untied") << " embeddings)\n"
              << "layers         " << config.numHiddenLayers << "\n"
              << "hidden         " << config.hiddenSize << ", intermediate " << config.intermediateSize
              << "\n"
              << "heads          " << config.numAttentionHeads << " (key/value heads "
              << config.numKeyValueHeads << "), head_dim " << config.headDim << "\n"
              << "rope           " << config.ropeDescription() << "\n"
              << "sliding window " << (config.slidingWindow ? std::to_string(*config.slidingWindow) : "none")
              << "\n"
              << "biases         " << (biases.empty() ? "none" : biases) << "\n"
              << "vocabulary     " << config.vocabSize << " (bos "
              << (config.bosTokenId ? std::to_string(*config.bosTokenId) : "none") << ", eos "
              << joinIds(config.eosTokenIds) << ", pad "
              << (config.padTokenId ? std::to_string(*config.padTokenId) : "none") << ")\n"
              << "parameters     " << params << "\n"
              << "compute dtype  " << f.dtype << " on " << f.device << "\n"
              << "weight memory  " << humanBytes(weightBytes) << " ("
              << static_cast<std::int64_t>(weightBytes) << " bytes)\n";
    if (info.backboneDtype != "fp32") {
        const double share
            = 100.0 * static_cast<double>(storage.matrixParameters) / static_cast<double>(params);
        std::cout << "frozen storage " << storageLabel << ": "
                  << humanBytes(static_cast<double>(storage.totalBytes())) << " (" << storage.totalBytes()
                  << " bytes; the matrices, " << std::fixed << std::setprecision(2) << share
                  << "% of the parameters, in " << storageLabel << "; RMSNorm weights and biases fp32)\n";
    }
    std::cout << "by storage     ";
    for (std::size_t k = 0; k < table.size(); ++k)
        std::cout << (k ? ", " : "") << table[k].first << " "
                  << (table[k].second ? humanBytes(static_cast<double>(*table[k].second))
                                      : std::string("n/a"));
    std::cout << "\n";
    return 0;
}

int runInfo(const InfoFlags& info, bool asJson)
{
    const auto& f = info.backbone;
    if (f.model.empty() == info.shape.empty())
        throw UsageError("info: give --model DIR or --shape NAME");
    if (info.backboneDtype != "int4" && info.quantGroupSize != 64)
        throw UsageError("--quant-group-size: only meaningful with --backbone-dtype int4");
    if (isDecoderFolder(f.model))
        return runDecoderInfo(info,
            LlamaConfig::fromJsonFile((std::filesystem::path(f.model) / "config.json").string()), asJson);
    if (const auto preset = llamaShapePreset(info.shape))
        return runDecoderInfo(info, *preset, asJson);
    // The config and the weights' headers only: nothing the size of the model is allocated, so a config
    // that lies about its sizes fails with one line (checkConfigMatchesWeights) and a model larger than
    // this machine's memory can still be described.
    const auto options = loadOptions(f);
    T5Config config;
    CheckpointShapes weights;
    if (info.shape.empty()) {
        const auto configPath = (std::filesystem::path(f.model) / "config.json").string();
        config = T5Config::fromJsonFile(configPath);
        weights = readCheckpointShapes(f.model);
        checkConfigMatchesWeights(config, weights.shapes, configPath, weights.description);
    } else {
        config = T5Config::preset(info.shape);
    }
    const auto params = config.parameterCount();
    const auto elementSize = c10::elementSize(options.dtype);
    const auto weightBytes = static_cast<double>(params) * static_cast<double>(elementSize);
    // Frozen storage: the matrices in --backbone-dtype, layer norms and position biases fp32.
    const auto storage = backboneStorageBytes(config, info.backboneDtype, info.quantGroupSize);
    const auto storageLabel = weightStorageLabel(info.backboneDtype, info.quantGroupSize);
    nlohmann::json out { { "model", jsonText(f.model) }, { "shape", jsonText(info.shape) },
        { "weights", jsonText(weights.description) }, { "stored_dtype", jsonText(weights.storedDtype) },
        { "compute_dtype", f.dtype }, { "device", f.device }, { "parameters", params },
        { "weight_bytes", static_cast<std::int64_t>(weightBytes) }, { "backbone_dtype", info.backboneDtype },
        { "quant_group_size", info.backboneDtype == "int4" ? nlohmann::json(info.quantGroupSize) : nullptr },
        { "backbone_storage_bytes", storage.totalBytes() },
        { "quantized_parameters", storage.matrixParameters }, { "config", config.toJson() } };
    const auto table = storageTable(config, info.quantGroupSize);
    for (const auto& [label, bytes] : table)
        out["storage_bytes"][label] = jsonOptional(bytes);
    if (asJson) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    const auto& c = config;
    if (info.shape.empty())
        std::cout << "model          " << f.model << "\n"
                  << "weights        " << weights.description << " (" << weights.storedDtype << ")\n";
    else
        std::cout << "shape          " << info.shape << " (published config, no weights read)\n";
    std::cout << "architecture   T5 " << (c.isGatedAct() ? "v1.1 (" : "v1.0 (") << c.feedForwardProj << ", "
              << (c.tieWordEmbeddings ? "tied" : "untied") << " embeddings)\n"
              << "layers         " << c.numLayers << " encoder + " << c.numDecoderLayers << " decoder\n"
              << "d_model        " << c.dModel << ", d_kv " << c.dKv << " x " << c.numHeads << " heads, d_ff "
              << c.dFf << "\n"
              << "vocabulary     " << c.vocabSize << "\n"
              << "rel. buckets   " << c.relativeAttentionNumBuckets << ", max distance "
              << c.relativeAttentionMaxDistance << "\n"
              << "dropout        " << c.dropoutRate << "\n"
              << "parameters     " << params << "\n"
              << "compute dtype  " << f.dtype << " on " << f.device << "\n"
              << "weight memory  " << humanBytes(weightBytes) << " ("
              << static_cast<std::int64_t>(weightBytes) << " bytes)\n";
    if (info.backboneDtype != "fp32") {
        const double share
            = 100.0 * static_cast<double>(storage.matrixParameters) / static_cast<double>(params);
        std::cout << "frozen storage " << storageLabel << ": "
                  << humanBytes(static_cast<double>(storage.totalBytes())) << " (" << storage.totalBytes()
                  << " bytes; the matrices, " << std::fixed << std::setprecision(2) << share
                  << "% of the parameters, in " << storageLabel
                  << "; layer norms and position biases fp32)\n";
    }
    std::cout << "by storage     ";
    for (std::size_t i = 0; i < table.size(); ++i)
        std::cout << (i ? ", " : "") << table[i].first << " "
                  << (table[i].second ? humanBytes(static_cast<double>(*table[i].second))
                                      : std::string("n/a"));
    std::cout << "\n";
    return 0;
}

// LST's logits and loss: the side network built with --r/--keep, its weights from --side-weights.
int runLadderForward(const BackboneFlags& f, const MethodForwardFlags& m, const std::string& inputsPath,
    const std::string& outPath)
{
    if (m.method != "ladder")
        throw Error("--method: forward supports ladder only, got '" + m.method + "'");
    if (m.sideWeights.empty())
        throw Error("--method ladder needs --side-weights FILE.safetensors (side weights under the "
                    "reference implementation's names)");
    MethodFlags flags;
    flags.r = m.r;
    flags.keep = m.keep;
    // --side-weights gives every side tensor, so the initialisation is never seen: init random (the default,
    // fisher, would need task data).
    const auto options = withoutFisherInit(flags.optionsFor("ladder", true));
    auto opts = loadOptions(f);
    auto loaded = loadT5(f.model, opts);
    const auto inputs = ModelInputs::fromJsonFile(inputsPath, loaded.config.vocabSize);
    if (!inputs.labels.defined())
        throw Error(inputsPath
            + ": field labels is required for forward (decoder inputs are the shifted "
              "labels)");
    LadderMethod method(loaded.model, options, {});
    auto side = method.sideNetwork();
    loadReferenceSideWeights(side, m.sideWeights);
    c10::NoGradGuard noGrad;
    const auto out = method.forward({ inputs.inputIds.to(opts.device), inputs.attentionMask.to(opts.device),
        inputs.labels.to(opts.device) });
    TensorMap tensors { { "logits", out.logits.to(at::kFloat).cpu() },
        { "loss", out.loss.to(at::kFloat).cpu().reshape({ 1 }) } };
    writeSafetensors(outPath, tensors,
        { { "producer", "ladder forward --method ladder" }, { "model", f.model },
            { "side_weights", m.sideWeights } });
    if (m.json) {
        printJson({ { "out", outPath }, { "tensors", tensors.size() }, { "method", "ladder" },
            { "r", options.r }, { "loss", jsonNumber(out.loss.item<double>()) } });
        return 0;
    }
    std::cout << "wrote " << tensors.size() << " tensors to " << outPath << " (LST r " << options.r
              << ", loss " << std::setprecision(8) << out.loss.item<double>() << ")\n";
    return 0;
}

// ladder forward for a decoder: HF's forward(input_ids, attention_mask, labels) with labels of the inputs'
// length (shifted inside); float32 logits, loss and hidden_states.{i} (embeddings, each layer, the last after
// the final norm).
int runDecoderForward(const BackboneFlags& f, const MethodForwardFlags& m, const std::string& inputsPath,
    const std::string& outPath)
{
    if (!m.method.empty() || m.r || m.keep || !m.sideWeights.empty())
        throw Error(
            "--method, --r, --keep and --side-weights: forward with a method supports T5 folders only; "
            + f.model + " is a decoder-only model");
    const auto opts = decoderLoadOptions(f);
    auto loaded = loadLlama(f.model, opts);
    const auto inputs = ModelInputs::fromJsonFile(inputsPath, loaded.config.vocabSize);
    if (!inputs.labels.defined())
        throw Error(inputsPath + ": field labels is required for forward");
    if (inputs.labels.sizes() != inputs.inputIds.sizes())
        throw Error(inputsPath
            + ": field labels: a decoder-only model needs labels of input_ids' shape (HF's causal-LM loss "
              "shifts "
              "them inside)");
    c10::NoGradGuard noGrad;
    const auto out = loaded.model->forward(
        inputs.inputIds.to(opts.device), inputs.attentionMask.to(opts.device), inputs.labels.to(opts.device));
    TensorMap tensors;
    auto put = [&](const std::string& name, const at::Tensor& t) { tensors[name] = t.to(at::kFloat).cpu(); };
    put("logits", out.logits);
    put("loss", out.loss.reshape({ 1 }));
    const auto hidden = out.stack.hfHiddenStates();
    for (std::size_t i = 0; i < hidden.size(); ++i)
        put("hidden_states." + std::to_string(i), hidden[i]);
    writeSafetensors(outPath, tensors, { { "producer", "ladder forward" }, { "model", f.model } });
    if (m.json) {
        printJson({ { "out", outPath }, { "tensors", tensors.size() }, { "method", nullptr },
            { "r", nullptr }, { "loss", jsonNumber(out.loss.item<double>()) } });
        return 0;
    }
    std::cout << "wrote " << tensors.size() << " tensors to " << outPath << " (loss " << std::setprecision(8)
              << out.loss.item<double>() << ")\n";
    return 0;
}

int runForward(const BackboneFlags& f, const MethodForwardFlags& m, const std::string& inputsPath,
    const std::string& outPath)
{
    if (isDecoderFolder(f.model))
        return runDecoderForward(f, m, inputsPath, outPath);
    if (!m.method.empty())
        return runLadderForward(f, m, inputsPath, outPath);
    if (m.r || m.keep || !m.sideWeights.empty())
        throw Error("--r, --keep and --side-weights need --method ladder");
    auto opts = loadOptions(f);
    auto loaded = loadT5(f.model, opts);
    const auto inputs = ModelInputs::fromJsonFile(inputsPath, loaded.config.vocabSize);
    if (!inputs.labels.defined())
        throw Error(
            inputsPath + ": field labels is required for forward (decoder inputs are the shifted labels)");
    c10::NoGradGuard noGrad;
    const auto out = loaded.model->forward(
        inputs.inputIds.to(opts.device), inputs.attentionMask.to(opts.device), inputs.labels.to(opts.device));
    TensorMap tensors;
    auto put = [&](const std::string& name, const at::Tensor& t) { tensors[name] = t.to(at::kFloat).cpu(); };
    put("logits", out.logits);
    put("encoder_last_hidden_state", out.encoder.lastHiddenState);
    put("loss", out.loss.reshape({ 1 }));
    const auto enc = out.encoder.hfHiddenStates();
    for (std::size_t i = 0; i < enc.size(); ++i)
        put("encoder_hidden_states." + std::to_string(i), enc[i]);
    const auto dec = out.decoder.hfHiddenStates();
    for (std::size_t i = 0; i < dec.size(); ++i)
        put("decoder_hidden_states." + std::to_string(i), dec[i]);
    writeSafetensors(outPath, tensors, { { "producer", "ladder forward" }, { "model", f.model } });
    if (m.json) {
        printJson({ { "out", outPath }, { "tensors", tensors.size() }, { "method", nullptr },
            { "r", nullptr }, { "loss", jsonNumber(out.loss.item<double>()) } });
        return 0;
    }
    std::cout << "wrote " << tensors.size() << " tensors to " << outPath << " (loss " << std::setprecision(8)
              << out.loss.item<double>() << ")\n";
    return 0;
}

int runGenerate(const BackboneFlags& f, const std::string& inputsPath, std::int64_t numBeams,
    std::int64_t maxNewTokens, bool withScores)
{
    GenerationResult result;
    if (isDecoderFolder(f.model)) {
        // HF's generate() of a causal LM: the prompt (left-padded) followed by the new tokens.
        const auto opts = decoderLoadOptions(f);
        auto loaded = loadLlama(f.model, opts);
        const auto inputs = ModelInputs::fromJsonFile(inputsPath, loaded.config.vocabSize);
        auto gen = GenerationOptions::forConfig(loaded.config);
        gen.numBeams = numBeams;
        gen.maxNewTokens = maxNewTokens > 0 ? maxNewTokens : inputs.maxNewTokens.value_or(20);
        c10::NoGradGuard noGrad;
        result = generateCausal(
            *loaded.model, inputs.inputIds.to(opts.device), inputs.attentionMask.to(opts.device), gen);
    } else {
        auto opts = loadOptions(f);
        auto loaded = loadT5(f.model, opts);
        const auto inputs = ModelInputs::fromJsonFile(inputsPath, loaded.config.vocabSize);
        auto gen = GenerationOptions::forConfig(loaded.config);
        gen.numBeams = numBeams;
        gen.maxNewTokens = maxNewTokens > 0 ? maxNewTokens : inputs.maxNewTokens.value_or(20);
        result = generate(
            loaded.model, inputs.inputIds.to(opts.device), inputs.attentionMask.to(opts.device), gen);
    }
    nlohmann::json sequences = nlohmann::json::array();
    const auto seq = result.sequences.contiguous();
    for (std::int64_t r = 0; r < seq.size(0); ++r) {
        nlohmann::json row = nlohmann::json::array();
        for (std::int64_t c = 0; c < seq.size(1); ++c)
            row.push_back(seq[r][c].item<std::int64_t>());
        sequences.push_back(row);
    }
    nlohmann::json out { { "sequences", sequences } };
    if (withScores) // null where there are none (greedy search)
        out["sequences_scores"]
            = result.sequenceScores.empty() ? nlohmann::json(nullptr) : nlohmann::json(result.sequenceScores);
    std::cout << out.dump() << "\n";
    return 0;
}

// The compute devices: the CPU with its RAM, then every CUDA device with its free memory.
int runDevices(bool json)
{
    const auto devices = listComputeDevices();
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& d : devices)
            out.push_back({ { "id", d.id }, { "name", d.name }, { "total_bytes", d.totalBytes },
                { "free_bytes", d.freeBytes } });
        std::cout << nlohmann::json {
            { "devices", out }, { "torch", torchVersion() }, { "cuda", cudaRuntimeVersion() }
        }.dump(2) << "\n";
        return 0;
    }
    std::cout << std::left << std::setw(10) << "id" << std::setw(36) << "name" << std::right << std::setw(12)
              << "total MB" << std::setw(12) << "free MB"
              << "\n";
    for (const auto& d : devices)
        std::cout << std::left << std::setw(10) << d.id << std::setw(36) << d.name << std::right
                  << std::setw(12) << d.totalBytes / 1000000 << std::setw(12) << d.freeBytes / 1000000
                  << "\n";
    std::cout << "LibTorch " << torchVersion() << ", CUDA " << cudaRuntimeVersion() << "\n";
    return 0;
}

} // namespace

void registerModelCommands(CLI::App& app)
{
    {
        auto json = std::make_shared<bool>(false);
        auto* cmd = app.add_subcommand(
            "devices", "List the compute devices (CPU and each CUDA GPU with its free memory)");
        cmd->add_flag("--json", *json, "machine-readable output");
        cmd->callback([json] { runGuarded("devices", [&] { return runDevices(*json); }); });
    }
    {
        auto flags = std::make_shared<InfoFlags>();
        auto json = std::make_shared<bool>(false);
        auto* cmd = app.add_subcommand("info",
            "Print a backbone folder's (or a published shape's) config, parameter count, dtype and weight "
            "memory, "
            "also with the frozen matrices in bf16, int8 or int4");
        auto* model = cmd->add_option("--model", flags->backbone.model,
            "HuggingFace folder (config.json + weights): T5, Llama, Mistral or Qwen2");
        cmd->add_option("--shape", flags->shape,
               "t5-small, t5-base, t5-large, t5-3b, llama-1b, llama2-7b (published configs)")
            ->excludes(model);
        cmd->add_option("--device", flags->backbone.device, "cpu, cuda or cuda:N")->capture_default_str();
        cmd->add_option("--dtype", flags->backbone.dtype, "compute dtype: fp32 or bf16")
            ->capture_default_str();
        cmd->add_option("--backbone-dtype", flags->backboneDtype,
               "frozen storage of the matrices: fp32, bf16, int8 or int4 (docs/PERFORMANCE.md)")
            ->capture_default_str()
            ->check(CLI::IsMember({ "fp32", "bf16", "int8", "int4" }));
        cmd->add_option(
               "--quant-group-size", flags->quantGroupSize, "int4: values per group (32, 64, 128, 256)")
            ->capture_default_str()
            ->check(CLI::IsMember({ 32, 64, 128, 256 }));
        cmd->add_flag("--json", *json, "machine-readable output");
        cmd->callback([flags, json] { runGuarded("info", [&] { return runInfo(*flags, *json); }); });
    }
    {
        auto flags = std::make_shared<BackboneFlags>();
        auto inputs = std::make_shared<std::string>();
        auto out = std::make_shared<std::string>();
        auto method = std::make_shared<MethodForwardFlags>();
        auto* cmd = app.add_subcommand("forward",
            "Teacher-forced forward pass; writes logits, loss and hidden states "
            "(with --method ladder: LST's logits and loss)");
        addBackboneFlags(cmd, *flags);
        cmd->add_option("--inputs", *inputs, "inputs.json with input_ids, attention_mask, labels")
            ->required();
        cmd->add_option("--out", *out, "output .safetensors file")->required();
        cmd->add_option(
            "--method", method->method, "ladder: LST over the backbone (default: the backbone alone)");
        cmd->add_option("--r", method->r, "ladder: reduction factor (8)");
        cmd->add_option("--keep", method->keep, "ladder: side layers kept, 0-based comma list (all)");
        cmd->add_option("--side-weights", method->sideWeights,
            "ladder: .safetensors of side weights under the reference implementation's names "
            "(encoder.side_block.1.layer.0.SelfAttention.q.weight, ...; docs/LST.md)");
        cmd->add_flag("--json", method->json, "print {out, tensors, method, r, loss} as JSON");
        cmd->callback([flags, method, inputs, out] {
            runGuarded("forward", [&] { return runForward(*flags, *method, *inputs, *out); });
        });
    }
    {
        auto flags = std::make_shared<BackboneFlags>();
        auto inputs = std::make_shared<std::string>();
        auto beams = std::make_shared<std::int64_t>(1);
        auto maxNew = std::make_shared<std::int64_t>(0);
        auto scores = std::make_shared<bool>(false);
        auto* cmd = app.add_subcommand(
            "generate", "Greedy or beam-search generation, ids as HF generate() returns them");
        addBackboneFlags(cmd, *flags);
        cmd->add_option("--inputs", *inputs, "inputs.json with input_ids and attention_mask")->required();
        cmd->add_option("--num-beams", *beams, "1 = greedy")->capture_default_str()->check(CLI::Range(1, 64));
        cmd->add_option("--max-new-tokens", *maxNew, "default: max_new_tokens of the inputs file, else 20")
            ->check(CLI::Range(1, 4096));
        cmd->add_flag("--scores", *scores, "also print sequences_scores (beam search; null for greedy)");
        cmd->add_flag("--json", "the output is JSON with or without it (accepted like every command's)");
        cmd->callback([flags, inputs, beams, maxNew, scores] {
            runGuarded("generate", [&] { return runGenerate(*flags, *inputs, *beams, *maxNew, *scores); });
        });
    }
}

} // namespace ladder::cli
