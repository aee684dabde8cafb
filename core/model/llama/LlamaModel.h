#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "model/BackboneModel.h"
#include "model/T5Model.h"
#include "model/llama/LlamaConfig.h"

namespace ladder {

// Llama, Mistral and Qwen2 (decoder-only causal LMs) in LibTorch, computed as HF transformers 5's
// LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM compute them. Module and parameter names equal
// HF's state-dict keys (model.embed_tokens, model.layers.N.self_attn.q_proj, ..., model.norm, lm_head), so
// a checkpoint maps 1:1. Every projection is a T5Linear (model/T5Model.h): LoRA, BitFit and frozen storage
// extend it in place exactly as for T5.
//
// Positions. HF's forward() numbers positions 0, 1, 2, ... by column; HF's generate() numbers them
// cumsum(attention_mask) - 1, so that a left-padded prompt computes as the unpadded one. Here a row's
// position is its column minus the row's count of leading padding columns (over past + current columns):
// the two agree wherever the row's real tokens are contiguous, so a right-padded row equals HF's forward
// at every column (padding included) and a left-padded row equals HF's generate(). (A mask with holes in
// the middle is positioned by column after the hole; neither HF path produces one.)

// HF's LlamaRMSNorm: variance in float32, then weight * x.to(input dtype).
class LlamaRMSNormImpl : public torch::nn::Module {
public:
    LlamaRMSNormImpl(std::int64_t dim, double eps);
    at::Tensor forward(const at::Tensor& hidden);

    at::Tensor weight;

private:
    double m_eps;
};
TORCH_MODULE(LlamaRMSNorm);

// The rotary tables for given positions: cos and sin (batch, length, head_dim) in float32 (HF computes
// them in float32 and casts to the activations' dtype).
struct RotaryTables {
    at::Tensor cos;
    at::Tensor sin;
};

// What every layer of a causal stack reads besides its input (LlamaModelImpl::forward, LST's side decoder):
// the rotary tables at the rows' positions (column minus the row's leading padding), cast to `dtype`, and
// `allowed` (batch, 1, length, past + length): causal, padding masked, within the sliding window if any.
// mask: (batch, past + length) 0/1, undefined = all ones. invFreq: the stack's inverse frequencies.
struct LlamaAttentionInputs {
    RotaryTables rope;
    at::Tensor allowed;
};
LlamaAttentionInputs llamaAttentionInputs(const at::Tensor& mask, std::int64_t batch, std::int64_t past,
    std::int64_t length, c10::Device device, c10::ScalarType dtype, const at::Tensor& invFreq,
    std::optional<std::int64_t> slidingWindow);

// Self-attention with grouped-query heads (num_key_value_heads), rotary embeddings on q and k, scale
// head_dim^-0.5, softmax in float32.
class LlamaAttentionImpl : public torch::nn::Module {
public:
    explicit LlamaAttentionImpl(const LlamaConfig& config);
    // allowed: (batch, 1, length, past + length) bool, true where a query may see a key. cache: the layer's
    // keys and values before this call (batch, kv heads, past, head_dim); appended to.
    at::Tensor forward(
        const at::Tensor& hidden, const RotaryTables& rope, const at::Tensor& allowed, AttentionCache* cache);

    T5Linear q_proj { nullptr }, k_proj { nullptr }, v_proj { nullptr }, o_proj { nullptr };

private:
    std::int64_t m_heads;
    std::int64_t m_kvHeads;
    std::int64_t m_headDim;
};
TORCH_MODULE(LlamaAttention);

// SwiGLU: down(silu(gate(x)) * up(x)).
class LlamaMLPImpl : public torch::nn::Module {
public:
    explicit LlamaMLPImpl(const LlamaConfig& config);
    at::Tensor forward(const at::Tensor& x);

    T5Linear gate_proj { nullptr }, up_proj { nullptr }, down_proj { nullptr };
};
TORCH_MODULE(LlamaMLP);

// Pre-norm block: h + attn(norm(h)), then h + mlp(norm(h)). The adapters (Houlsby, the Adapters method)
// are applied to the attention output and to the MLP output before each residual, when added.
class LlamaDecoderLayerImpl : public torch::nn::Module {
public:
    explicit LlamaDecoderLayerImpl(const LlamaConfig& config);
    at::Tensor forward(
        const at::Tensor& hidden, const RotaryTables& rope, const at::Tensor& allowed, AttentionCache* cache);
    // Registers attn_adapter and mlp_adapter (BottleneckAdapter, near-identity at initialisation).
    void addAdapters(std::int64_t hidden, const std::string& activation);

    LlamaAttention self_attn { nullptr };
    LlamaMLP mlp { nullptr };
    LlamaRMSNorm input_layernorm { nullptr }, post_attention_layernorm { nullptr };
    BottleneckAdapter attn_adapter { nullptr }, mlp_adapter { nullptr };
};
TORCH_MODULE(LlamaDecoderLayer);

// HF's LlamaModel ("model."): embeddings, layers, final norm, and the rotary frequencies.
class LlamaModelImpl : public torch::nn::Module {
public:
    explicit LlamaModelImpl(const LlamaConfig& config);
    // The layers over embeddings (batch, length, hidden). mask: (batch, past + length) 0/1, undefined = all
    // ones. cache: appended to. keep: the layers whose outputs StackOutput::blockOutputs returns (nullptr:
    // all).
    StackOutput forward(const at::Tensor& embeddings, const at::Tensor& mask, DecoderCache* cache,
        const std::vector<std::int64_t>* keep);
    // cos/sin for positions (batch, length) of int64, in float32.
    RotaryTables rotary(const at::Tensor& positions) const;
    // HF's inv_freq for the config's rope type (float32, head_dim / 2 entries).
    static at::Tensor inverseFrequencies(const LlamaConfig& config);

    torch::nn::Embedding embed_tokens { nullptr };
    torch::nn::ModuleList layers { nullptr };
    LlamaRMSNorm norm { nullptr };
    std::vector<LlamaDecoderLayer> layerList;

private:
    LlamaConfig m_config;
    at::Tensor m_invFreq; // a buffer of HF's, not in the state dict (persistent=False): kept off the module
};
TORCH_MODULE(LlamaModel);

// HF's causal-LM output: logits, the loss (labels shifted inside), the hidden states.
struct CausalLMOutput {
    at::Tensor logits; // (batch, length, vocab) in the compute dtype
    at::Tensor loss; // undefined without labels
    StackOutput stack; // stack.hfHiddenStates(): HF's output_hidden_states
};

// The top module: model + lm_head (untied) and the Backbone / BackboneModelImpl seam.
class LlamaForCausalLMImpl : public BackboneModelImpl {
public:
    explicit LlamaForCausalLMImpl(const LlamaConfig& config);

    // HF's forward(input_ids, attention_mask, labels): loss = mean cross-entropy of logits[:, :-1] against
    // labels[:, 1:] over labels != -100 (HF's ForCausalLMLoss). attentionMask undefined = all ones.
    CausalLMOutput forward(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels);
    // The sequence-to-sequence contract through CausalJoin (model/CausalJoin.h).
    TargetOutput forwardTargets(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels) override;

    // Every projection by its HF name ("model.layers.0.self_attn.q_proj", ..., "lm_head" when untied), in
    // registration order: the targets of LoRA (filter by the last name part: q_proj, k_proj, v_proj, o_proj,
    // gate_proj, up_proj, down_proj) and of BitFit.
    std::vector<std::pair<std::string, T5Linear>> namedProjections() const;
    // Registers attn_adapter and mlp_adapter in every layer.
    void addAdapters(std::int64_t hidden, const std::string& activation);

    const LlamaConfig& config() const { return m_config; }
    // The LM head's weight (vocab, hidden): lm_head's, or embed_tokens' when tied.
    at::Tensor lmHeadWeight() const;

    // Backbone.
    BackboneShape shape() const override;
    at::Tensor embed(const at::Tensor& ids) override;
    // Throws: a decoder-only model has no encoder.
    StackOutput runEncoder(const at::Tensor& embeddings, const at::Tensor& attentionMask,
        const std::vector<std::int64_t>* keepBlockOutputs) override;
    // encoderHidden and encoderMask must be undefined; selfAttentionMask is the (batch, past + length) 0/1
    // padding mask (undefined = all ones).
    StackOutput runDecoder(const at::Tensor& embeddings, const at::Tensor& encoderHidden,
        const at::Tensor& encoderMask, DecoderCache* cache, const std::vector<std::int64_t>* keepBlockOutputs,
        const at::Tensor& selfAttentionMask) override;
    at::Tensor lmLogits(const at::Tensor& decoderHidden) override;
    // Throws: a decoder-only model joins source and labels instead (model/CausalJoin.h).
    at::Tensor shiftRight(const at::Tensor& labels) const override;
    DecoderCache makeCache() const override;
    std::unique_ptr<Seq2SeqStepper> makeStepper() override; // a CausalStepper (model/Generation.h)
    std::string configJson() const override;
    std::vector<std::pair<std::string, at::Tensor>> namedWeights() const override;
    std::string weightStorage() const override { return m_weightStorage; }
    void setWeightStorage(std::string label) { m_weightStorage = std::move(label); }

    // Frozen storage of the embedding (and with it a tied LM head; model/llama/LlamaQuantization.h): the
    // parameter becomes an empty placeholder of the compute dtype, embed() gathers and dequantises only the
    // rows it reads, a tied lmLogits() multiplies through QuantizedWeight::matmul (chunked). The embedding
    // must not require a gradient (ladder::Error).
    void quantizeEmbedding(QuantDtype dtype, std::int64_t groupSize);
    const QuantizedWeight& embeddingQuantized() const { return m_embedQuantized; }
    // Every stored matrix by its parameter name ("model.embed_tokens.weight",
    // "model.layers.0...q_proj.weight").
    std::vector<std::pair<std::string, const QuantizedWeight*>> quantizedWeights() const;

    // A stored embedding moves with the module (its dtype stays).
    void to(torch::Device device, torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Device device, bool nonBlocking = false) override;

    LlamaModel model { nullptr };
    T5Linear lm_head { nullptr }; // null when tie_word_embeddings

private:
    LlamaConfig m_config;
    std::string m_weightStorage = "fp32";
    QuantizedWeight m_embedQuantized;
};
TORCH_MODULE(LlamaForCausalLM);

// The Llama module behind a BackboneModel, or nullptr when it is another architecture.
LlamaForCausalLMImpl* asLlama(BackboneModelImpl& model);
const LlamaForCausalLMImpl* asLlama(const BackboneModelImpl& model);

} // namespace ladder
