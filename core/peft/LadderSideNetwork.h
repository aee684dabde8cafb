#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/T5Config.h"
#include "model/T5Model.h"

namespace ladder {

// The side network of Ladder Side-Tuning (docs/LST.md, docs/LST.md): a T5 encoder-decoder of width
// d_model/r beside the frozen backbone, fed by "ladders" (downsampled backbone block outputs) through learned
// gates. Parameter names are stable, keyed by the backbone layer index i that a side block mirrors:
//
//   side_encoder.downsample.embed.{weight,bias}     Linear(d, d/r) on the token embeddings
//   side_encoder.downsample.{i}.{weight,bias}       Linear(d, d/r) on backbone encoder block i's output
//   side_encoder.gate.{i}                           alpha_i, shape (1), mu_i = sigmoid(alpha_i / T)
//   side_encoder.block.{i}.layer.{...}              a T5 block of the side config (HF names inside)
//   side_encoder.final_layer_norm.weight            RMSNorm(d/r)
//   side_decoder.(same)
//   side_final_upsample.{weight,bias}               Linear(d/r, d) before the frozen LM head
//   side_merge_gate                                 (1), only with a merge of the backbone's final output
// Ablations add or drop entries: side_{encoder,decoder}.ladder_attention.{i}.* (cross-attention),
// side_{encoder,decoder}.block.{i}.{layer_norm,down,up} (adapter-blocks), no gates/downsample.{i}
// (no-ladders, side-tuning), no side_encoder at all (adapter-blocks).

// How the side network is built. Plain values; validate() throws ladder::Error naming the field.
struct LadderSideOptions {
    // The backbone's configuration; the side configuration derives from it (sideConfig()).
    T5Config backbone;
    // Reduction factor r: d_model, d_ff and d_kv are divided by r, the number of heads is kept.
    std::int64_t r = 8;
    // Kept side layers of each stack: sorted, unique backbone layer indices (0-based). A dropped index
    // has no side block, no downsample and no gate; the side state passes it unchanged.
    std::vector<std::int64_t> encoderKeep;
    std::vector<std::int64_t> decoderKeep;
    // Gate temperature T in mu = sigmoid(alpha / T).
    double gateTemperature = 0.1;
    // "none", "side-tuning", "no-ladders", "adapter-blocks" or "cross-attention" (docs/LST.md).
    std::string ablation = "none";
    // A learned gate merging the upsampled side output with the backbone decoder's final output.
    bool mergeBackbone = false;
    // Memory options (issue 18; MethodOptions documents them): recompute each side layer in backward,
    // side attention "math" or "sdpa" (model/Recompute.h), the ladder inputs' dtype (undefined = as the
    // backbone computes them), side heads (0 = the backbone's).
    bool sideCheckpoint = false;
    std::string sideAttention = "math";
    std::optional<at::ScalarType> ladderDtype;
    std::int64_t sideHeads = 0;

    // d_model/r, d_ff/r, d_kv/r, same heads, buckets, dropout, activation; with sideHeads, that many heads of
    // heads x d_kv / (r x sideHeads).
    T5Config sideConfig() const;
    void validate() const;

    // What the ablation implies.
    bool usesLadders() const; // per-layer downsamples of backbone block outputs
    bool usesGates() const; // gated ladders (none, adapter-blocks)
    bool usesMerge() const; // the final merge with the backbone output (side-tuning or mergeBackbone)
    bool hasSideEncoder() const; // adapter blocks have no attention: no side encoder to attend to
    bool needsBackbone() const; // whether the backbone transformer runs at all
};

// Adapter-style side block (ablation "adapter-blocks", paper Appendix A): a pre-norm two-layer bottleneck
// x + dropout(up(act(down(RMSNorm(x))))), width d/r, hidden max(1, d/(2r)), no attention.
class LadderAdapterBlockImpl : public torch::nn::Module {
public:
    LadderAdapterBlockImpl(const T5Config& sideConfig, std::int64_t hidden);
    at::Tensor forward(const at::Tensor& hidden);

    T5LayerNorm layer_norm { nullptr };
    torch::nn::Linear down { nullptr }, up { nullptr };

private:
    std::string m_activation;
    double m_dropout;
};
TORCH_MODULE(LadderAdapterBlock);

// Key/value caches of one side decoder during incremental decoding.
struct LadderSideCache {
    DecoderCache blocks; // indexed by backbone layer index
    std::map<std::int64_t, at::Tensor> ladderKeys; // cross-attention ablation: Down_i(backbone) of past steps
    void reorder(const at::Tensor& rowIndices);
};

// One side stack (side_encoder or side_decoder).
class LadderSideStackImpl : public torch::nn::Module {
public:
    LadderSideStackImpl(const LadderSideOptions& options, bool isDecoder);

    // embeddings: the backbone's token embeddings (batch, length, d), without dropout (the side applies
    // its own). ladders: backbone block outputs indexed by layer (entries of dropped layers may be
    // undefined; empty when the ablation uses no ladders). attentionMask: encoder padding mask (encoder).
    // sideEncoderHidden/encoderMask: the side encoder output and its mask (decoder). cache: incremental
    // decoding. textLength (side encoder, vision-and-language; docs/VL.md): the embeddings are textLength
    // text positions then visual ones; the ladders (text only) are zero-padded over the visual positions,
    // so the gates mix the backbone into the text positions only, and the relative position bias is the
    // text's (model/T5Model.h textOnlyPositionBias). Returns the side stack's output after the final norm
    // and dropout, (batch, length, d/r).
    at::Tensor forward(const at::Tensor& embeddings, const std::vector<at::Tensor>& ladders,
        const at::Tensor& attentionMask, const at::Tensor& sideEncoderHidden = {},
        const at::Tensor& encoderMask = {}, LadderSideCache* cache = nullptr, std::int64_t textLength = -1);

    // mu_i = sigmoid(alpha_i / T) of kept layer i (a gated stack only).
    at::Tensor gateValue(std::int64_t layer) const;
    const std::vector<std::int64_t>& keptLayers() const { return m_keep; }
    bool isDecoder() const { return m_isDecoder; }

    // Typed views of the registered submodules, keyed by backbone layer index.
    torch::nn::Linear downsampleEmbed { nullptr };
    std::map<std::int64_t, torch::nn::Linear> downsamples;
    std::map<std::int64_t, at::Tensor> gates;
    std::map<std::int64_t, T5Block> blocks; // transformer side blocks
    std::map<std::int64_t, LadderAdapterBlock> adapterBlocks; // ablation adapter-blocks
    std::map<std::int64_t, T5LayerAttention> ladderAttention; // ablation cross-attention
    T5LayerNorm final_layer_norm { nullptr };

private:
    at::Tensor ladderInput(std::int64_t layer, const std::vector<at::Tensor>& ladders) const;
    // Down_i(ladder): a ladder held in a lower precision than the downsample's weight is cast inside a
    // recomputed unit, so that only the low-precision ladder is kept for the weight's gradient.
    at::Tensor downsampleLadder(std::int64_t layer, const at::Tensor& ladder);
    // One kept side layer: gate mix with the ladder, the block (or adapter block), ladder cross-attention.
    at::Tensor sideLayer(std::int64_t layer, const at::Tensor& side, const at::Tensor& ladder,
        const at::Tensor& selfBias, const at::Tensor& sideEncoderHidden, const at::Tensor& crossBias,
        LadderSideCache* cache);

    LadderSideOptions m_options;
    T5Config m_sideConfig;
    bool m_isDecoder;
    std::vector<std::int64_t> m_keep;
};
TORCH_MODULE(LadderSideStack);

// The whole side network: side_encoder (absent for adapter-blocks), side_decoder, side_final_upsample and
// the optional side_merge_gate.
class LadderSideNetworkImpl : public torch::nn::Module {
public:
    explicit LadderSideNetworkImpl(const LadderSideOptions& options);

    // Side decoder output (d/r) -> d_model hidden states for the backbone's LM head: upsample, then
    // the learned merge with the backbone decoder's final output when enabled (backboneFinal may be
    // undefined otherwise). The d_model^-0.5 rescale of tied embeddings is the LM head's (lmLogits).
    at::Tensor head(const at::Tensor& sideDecoderOutput, const at::Tensor& backboneFinal);
    // sigmoid(side_merge_gate / T): the weight of the side output in the merge.
    at::Tensor mergeGateValue() const;

    const LadderSideOptions& options() const { return m_options; }
    LadderSideCache makeCache() const;

    LadderSideStack side_encoder { nullptr };
    LadderSideStack side_decoder { nullptr };
    torch::nn::Linear side_final_upsample { nullptr };
    at::Tensor side_merge_gate; // undefined unless options().usesMerge()

private:
    LadderSideOptions m_options;
};
TORCH_MODULE(LadderSideNetwork);

} // namespace ladder
