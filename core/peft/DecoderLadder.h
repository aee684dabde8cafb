#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/llama/LlamaModel.h"
#include "peft/Method.h"

namespace ladder {

// Ladder Side-Tuning on a decoder-only backbone (docs/LST.md, "On a decoder-only backbone"): T5's side
// decoder carried over. A side decoder of Llama layers of width d/r runs beside the frozen backbone; before
// side layer i, a gate mixes the side state with the downsampled output of backbone layer i; the side's
// final norm and an upsample to d feed the backbone's frozen LM head. No encoder: a decoder-only backbone
// has one stack, so the side network has one (what T5's side encoder read, the source, is here the start of
// the causal sequence). Parameter names (stable, keyed by the backbone layer index i a side layer mirrors):
//
//   side_decoder.downsample.embed.{weight,bias}   Linear(d, d/r) on the token embeddings
//   side_decoder.downsample.{i}.{weight,bias}     Linear(d, d/r) on backbone layer i's output
//   side_decoder.gate.{i}                         alpha_i (1), mu_i = sigmoid(alpha_i / T)
//   side_decoder.block.{i}.{self_attn,mlp,...}    a Llama layer of the side config (HF names inside)
//   side_decoder.norm.weight                      RMSNorm(d/r)
//   side_final_upsample.{weight,bias}             Linear(d/r, d) before the frozen LM head
//
// The side config divides hidden_size, intermediate_size and head_dim by r and keeps the heads and the
// key/value heads (so grouped-query attention keeps its grouping). Its rotary frequencies are the
// backbone's, every r-th one (frequency r*j for side pair j): the side's head dims are a strided choice of
// the backbone's rotary pairs, so the side spans the backbone's range of wavelengths, and the pruning
// initialisation (peft/DecoderLadderInit.h) keeps exactly those pairs of every query and key head.
struct DecoderSideOptions {
    LlamaConfig backbone;
    std::int64_t r = 8;
    std::vector<std::int64_t> keep; // sorted unique backbone layer indices
    double gateTemperature = 0.1;
    std::optional<at::ScalarType> ladderDtype; // the kept backbone outputs' dtype (ladder_dtype bf16)

    LlamaConfig sideConfig() const;
    // The backbone's rotary pair indices the side keeps: r * j for j < head_dim / (2r).
    std::vector<std::int64_t> ropePairs() const;
    void validate() const;
};

// The side decoder (registered as side_decoder in DecoderSideNetwork).
class DecoderSideStackImpl : public torch::nn::Module {
public:
    explicit DecoderSideStackImpl(const DecoderSideOptions& options);

    // embeddings: the backbone's token embeddings (batch, length, d). ladders: backbone layer outputs
    // indexed by layer (kept ones defined). mask: (batch, past + length) 0/1 padding mask. cache: the side
    // layers' keys and values, indexed by backbone layer. Returns the side state after the final norm,
    // (batch, length, d/r).
    at::Tensor forward(const at::Tensor& embeddings, const std::vector<at::Tensor>& ladders,
        const at::Tensor& mask, DecoderCache* cache);

    at::Tensor gateValue(std::int64_t layer) const;
    const std::vector<std::int64_t>& keptLayers() const { return m_options.keep; }
    const LlamaConfig& sideConfig() const { return m_sideConfig; }

    torch::nn::Linear downsampleEmbed { nullptr };
    std::map<std::int64_t, torch::nn::Linear> downsamples;
    std::map<std::int64_t, at::Tensor> gates;
    std::map<std::int64_t, LlamaDecoderLayer> blocks;
    LlamaRMSNorm norm { nullptr };

private:
    DecoderSideOptions m_options;
    LlamaConfig m_sideConfig;
    at::Tensor m_invFreq; // float32 (side head_dim / 2): the backbone's inverse frequencies at ropePairs()
};
TORCH_MODULE(DecoderSideStack);

class DecoderSideNetworkImpl : public torch::nn::Module {
public:
    explicit DecoderSideNetworkImpl(const DecoderSideOptions& options);
    // Side output (d/r) -> d hidden states for the backbone's LM head.
    at::Tensor head(const at::Tensor& sideOutput) { return side_final_upsample(sideOutput); }
    const DecoderSideOptions& options() const { return m_options; }

    DecoderSideStack side_decoder { nullptr };
    torch::nn::Linear side_final_upsample { nullptr };

private:
    DecoderSideOptions m_options;
};
TORCH_MODULE(DecoderSideNetwork);

// The side options an LST method uses on `config` (keep resolved: empty = every layer).
DecoderSideOptions decoderSideOptions(const LlamaConfig& config, const MethodOptions& options);

// Backbone + side network, shared by the method and its stepper.
class DecoderLadderModel {
public:
    DecoderLadderModel(LlamaForCausalLM backbone, DecoderSideNetwork side)
        : m_backbone(std::move(backbone))
        , m_side(std::move(side))
    {
    }
    // One causal sequence (batch, length) with its (batch, past + length) mask: the backbone under no_grad,
    // keeping the kept layers' outputs, then the side decoder with grad; returns the d-wide hidden states
    // for lmLogits. With caches: incremental decoding. cached: the kept layers' outputs (indexed by layer,
    // (batch, length, d)) from the LST activation cache (train/LadderActivationCache.h), so that only the
    // embedding lookup of the backbone runs; record: receives the kept outputs the backbone computed.
    at::Tensor hidden(const at::Tensor& ids, const at::Tensor& mask, DecoderCache* backboneCache = nullptr,
        DecoderCache* sideCache = nullptr, const std::vector<at::Tensor>* cached = nullptr,
        std::vector<at::Tensor>* record = nullptr);
    // The same from the backbone's embeddings of the ids (a stepper embeds its tokens itself).
    at::Tensor hiddenFromEmbeddings(const at::Tensor& embeddings, const at::Tensor& mask,
        DecoderCache* backboneCache = nullptr, DecoderCache* sideCache = nullptr,
        const std::vector<at::Tensor>* cached = nullptr, std::vector<at::Tensor>* record = nullptr);

    LlamaForCausalLM backbone() const { return m_backbone; }
    DecoderSideNetwork side() const { return m_side; }

private:
    LlamaForCausalLM m_backbone;
    DecoderSideNetwork m_side;
};

class DecoderLadderMethod : public Method {
public:
    // Freezes the backbone, builds the side network, initialises it (options.init: random, magnitude or
    // fisher, peft/DecoderLadderInit.h) and leaves everything in eval mode.
    DecoderLadderMethod(LlamaForCausalLM backbone, const MethodOptions& options, const BatchSource& data,
        const MethodInitHooks& hooks = {});

    MethodOutput forward(const Seq2SeqBatch& batch) override;
    // forward() with the kept layers' outputs over the joined sequence (CausalJoin: batch, S + T - 1, d)
    // taken from `cached` instead of running the backbone, or recorded into `record`: the activation
    // cache's forward (train/LadderActivationCache.h), one code path with forward() so that they agree
    // bit for bit.
    MethodOutput forwardLadders(
        const Seq2SeqBatch& batch, const std::vector<at::Tensor>* cached, std::vector<at::Tensor>* record);
    std::unique_ptr<Seq2SeqStepper> makeStepper() override;
    void train(bool on) override;
    void to(c10::Device device, c10::ScalarType dtype) override;
    std::vector<std::pair<std::string, at::Tensor>> namedTrainableParameters() const override;
    std::int64_t totalParameterCount() const override;

    DecoderSideNetwork sideNetwork() const { return m_model.side(); }

private:
    DecoderLadderModel m_model;
};

std::unique_ptr<Method> createDecoderLadderMethod(LlamaForCausalLM backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks);

} // namespace ladder
