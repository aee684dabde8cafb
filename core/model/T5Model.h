#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "model/BackboneModel.h"
#include "model/QuantizedWeight.h"
#include "model/T5Config.h"

namespace ladder {

// T5 in LibTorch, module and parameter names identical to HF's T5ForConditionalGeneration state dict
// (docs/ARCHITECTURE.md, "model/"), so a checkpoint maps 1:1.

// RMS layer norm without bias or mean subtraction; the variance is computed in float32.
class T5LayerNormImpl : public torch::nn::Module {
public:
    T5LayerNormImpl(std::int64_t dim, double eps);
    at::Tensor forward(const at::Tensor& hidden);
    // BitFit: a zero-initialised bias, registered as "bias".
    void addBias();

    at::Tensor weight;
    at::Tensor bias; // undefined unless addBias()

private:
    double m_eps;
};
TORCH_MODULE(T5LayerNorm);

// While alive on this thread, new T5 projections and norms skip their random initialisation (their memory
// stays untouched until written). Used when weights are loaded right after, and to count parameters of
// large shapes (t5-3b) cheaply.
class SkipParameterInit {
public:
    SkipParameterInit();
    ~SkipParameterInit();
    SkipParameterInit(const SkipParameterInit&) = delete;
    SkipParameterInit& operator=(const SkipParameterInit&) = delete;
    static bool active();

private:
    bool m_previous;
};

// A bias-free linear map y = x W^T, as every T5 projection, that parameter-efficient methods extend in
// place: add() a zero-initialised bias (BitFit, registered as "bias") or a LoRA path
// (y += dropout(x) A^T B^T * alpha/rank, registered as "lora_A" (rank, in) and "lora_B" (out, rank)).
//
// Frozen storage (issue 18, docs/PERFORMANCE.md "Frozen backbone storage"): quantize() holds a frozen W as
// a QuantizedWeight (bf16, int8 or int4) and forward() multiplies through QuantizedWeight::matmul, then adds
// the bias and the LoRA path as before. `weight` stays registered under its name as an empty placeholder
// (0 elements) of the compute dtype and device, so names and the options of added modules are unchanged;
// countParameters() counts the stored weight in its place. Whatever needs W itself uses denseWeight().
class T5LinearImpl : public torch::nn::Module {
public:
    T5LinearImpl(std::int64_t in, std::int64_t out);
    at::Tensor forward(const at::Tensor& x);

    void addBias();
    void addLora(std::int64_t rank, double alpha, double dropout);
    // Folds B A * scale into the weight (inference); unmerge() restores it. Outputs are unchanged. A
    // quantised weight cannot take the merge (it would be requantised): ladder::Error.
    void mergeLora();
    void unmergeLora();
    bool hasLora() const { return lora_A.defined(); }
    bool loraMerged() const { return m_merged; }

    std::int64_t inFeatures() const { return m_in; }
    std::int64_t outFeatures() const { return m_out; }

    // Stores the weight as `dtype` and frees the dense one. The weight must not require a gradient and no
    // LoRA may be merged into it (ladder::Error).
    void quantize(QuantDtype dtype, std::int64_t groupSize);
    // Installs a stored weight (loadQuantizedBackbone): shapes must match (out, in).
    void setQuantized(QuantizedWeight stored);
    bool quantized() const { return m_quantized.defined(); }
    const QuantizedWeight& quantizedWeight() const { return m_quantized; }
    // W (out, in) as a tensor of the compute dtype: `weight` itself, or a dequantised copy when quantised.
    at::Tensor denseWeight() const;

    // Modules move their parameters; a quantised weight moves with them (its dtype stays: the placeholder
    // carries the compute dtype).
    void to(torch::Device device, torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Device device, bool nonBlocking = false) override;

    at::Tensor weight; // an empty placeholder while quantized()
    at::Tensor bias; // undefined unless addBias()
    at::Tensor lora_A; // undefined unless addLora()
    at::Tensor lora_B;

private:
    std::int64_t m_in;
    std::int64_t m_out;
    double m_loraScale = 0.0;
    double m_loraDropout = 0.0;
    bool m_merged = false;
    QuantizedWeight m_quantized;
};
TORCH_MODULE(T5Linear);

// Houlsby bottleneck: x + up(act(down(x))), down/up with biases, near-identity at initialisation.
class BottleneckAdapterImpl : public torch::nn::Module {
public:
    BottleneckAdapterImpl(std::int64_t dim, std::int64_t hidden, std::string activation);
    at::Tensor forward(const at::Tensor& x);

    torch::nn::Linear down { nullptr }, up { nullptr };

private:
    std::string m_activation;
};
TORCH_MODULE(BottleneckAdapter);

struct T5AttentionOptions {
    T5AttentionOptions(const T5Config& config, bool isDecoder, bool hasRelativeBias)
        : dModel(config.dModel)
        , dKv(config.dKv)
        , numHeads(config.numHeads)
        , numBuckets(config.relativeAttentionNumBuckets)
        , maxDistance(config.relativeAttentionMaxDistance)
        , dropout(config.dropoutRate)
        , isDecoder(isDecoder)
        , hasRelativeBias(hasRelativeBias)
    {
    }
    std::int64_t dModel;
    std::int64_t dKv;
    std::int64_t numHeads;
    std::int64_t numBuckets;
    std::int64_t maxDistance;
    double dropout;
    bool isDecoder;
    bool hasRelativeBias;
};

// Multi-head attention without the 1/sqrt(d_kv) scale; q, k, v, o without biases.
class T5AttentionImpl : public torch::nn::Module {
public:
    explicit T5AttentionImpl(const T5AttentionOptions& options);

    // hidden: (batch, q, d_model). keyValueStates: undefined for self-attention, else (batch, k, d_model).
    // positionBias: (1 or batch, heads, q, k) with the attention mask already added.
    // cache: when given, self-attention appends this step's keys/values; cross-attention computes them
    // on the first call and reuses them afterwards.
    at::Tensor forward(const at::Tensor& hidden, const at::Tensor& keyValueStates,
        const at::Tensor& positionBias, AttentionCache* cache = nullptr);

    // The relative position bias (1, heads, queryLength, keyLength) for query positions
    // [keyLength - queryLength, keyLength): only valid when the layer owns relative_attention_bias.
    at::Tensor computeBias(std::int64_t queryLength, std::int64_t keyLength, const c10::Device& device);
    bool hasRelativeBias() const { return m_options.hasRelativeBias; }

    // HF's _relative_position_bucket.
    static at::Tensor relativePositionBucket(const at::Tensor& relativePosition, bool bidirectional,
        std::int64_t numBuckets, std::int64_t maxDistance);

    T5Linear q { nullptr }, k { nullptr }, v { nullptr }, o { nullptr };
    torch::nn::Embedding relative_attention_bias { nullptr };

    // LST's side_attention sdpa: the attention weights are not kept for backward but recomputed
    // (model/Recompute.h recomputedAttention); off by default (HF's math, kept weights).
    void setRecomputedAttention(bool on) { m_recomputeAttention = on; }

private:
    T5AttentionOptions m_options;
    bool m_recomputeAttention = false;
};
TORCH_MODULE(T5Attention);

// The self-attention position bias (1, heads, length, length) of a stack whose first textLength positions
// are text and the rest visual (docs/VL.md): `owner`'s relative bias among the text positions, zero
// elsewhere. textLength < 0 or >= length: the plain bias over every position.
at::Tensor textOnlyPositionBias(
    T5AttentionImpl& owner, std::int64_t textLength, std::int64_t length, const c10::Device& device);

// layer.0 (and layer.1 in the decoder): pre-norm attention with a residual connection.
class T5LayerAttentionImpl : public torch::nn::Module {
public:
    T5LayerAttentionImpl(const T5Config& config, bool isDecoder, bool hasRelativeBias, bool isCross);
    at::Tensor forward(const at::Tensor& hidden, const at::Tensor& keyValueStates,
        const at::Tensor& positionBias, AttentionCache* cache = nullptr);

    // Adds a Houlsby adapter on the attention output, before the residual (registered as "adapter").
    void addAdapter(std::int64_t hidden, const std::string& activation);

    T5Attention attention { nullptr }; // registered as SelfAttention or EncDecAttention
    T5LayerNorm layer_norm { nullptr };
    BottleneckAdapter adapter { nullptr };

private:
    double m_dropout;
};
TORCH_MODULE(T5LayerAttention);

// DenseReluDense: wi -> act -> dropout -> wo, or gated: act(wi_0) * wi_1 -> dropout -> wo.
class T5DenseImpl : public torch::nn::Module {
public:
    explicit T5DenseImpl(const T5Config& config);
    at::Tensor forward(const at::Tensor& hidden);

    // The projections that exist in this configuration (wi or wi_0 + wi_1, then wo).
    std::vector<T5Linear> projections() const;

    T5Linear wi { nullptr }, wi_0 { nullptr }, wi_1 { nullptr }, wo { nullptr };

private:
    std::string m_act;
    bool m_gated;
    double m_dropout;
};
TORCH_MODULE(T5Dense);

class T5LayerFFImpl : public torch::nn::Module {
public:
    explicit T5LayerFFImpl(const T5Config& config);
    at::Tensor forward(const at::Tensor& hidden);

    void addAdapter(std::int64_t hidden, const std::string& activation);

    T5Dense DenseReluDense { nullptr };
    T5LayerNorm layer_norm { nullptr };
    BottleneckAdapter adapter { nullptr };

private:
    double m_dropout;
};
TORCH_MODULE(T5LayerFF);

class T5BlockImpl : public torch::nn::Module {
public:
    T5BlockImpl(const T5Config& config, bool isDecoder, bool hasRelativeBias);
    at::Tensor forward(const at::Tensor& hidden, const at::Tensor& selfBias, const at::Tensor& encoderHidden,
        const at::Tensor& crossBias, BlockCache* cache = nullptr);

    torch::nn::ModuleList layer { nullptr };
    T5LayerAttention selfAttention { nullptr }; // layer.0
    T5LayerAttention crossAttention { nullptr }; // layer.1 (decoder only)
    T5LayerFF feedForward { nullptr }; // layer.1 (encoder) or layer.2 (decoder)
};
TORCH_MODULE(T5Block);

class T5StackImpl : public torch::nn::Module {
public:
    T5StackImpl(const T5Config& config, bool isDecoder, torch::nn::Embedding sharedEmbedding);

    // inputsEmbeds: (batch, length, d_model) already embedded. attentionMask: (batch, length) of 0/1
    // (undefined = all ones). For the decoder, encoderHidden/encoderMask feed cross-attention and cache
    // enables incremental decoding.
    // keepBlockOutputs (optional): indices of the blocks whose outputs are returned; the others are
    // released as soon as the next block has run (LST keeps only its ladder inputs).
    // textLength (encoder, vision-and-language; docs/VL.md): the inputs are textLength text positions then
    // visual positions; the relative position bias is the text's among the text positions and zero wherever
    // a visual position takes part, as VL-T5 builds it. < 0: every position is text.
    StackOutput forward(const at::Tensor& inputsEmbeds, const at::Tensor& attentionMask,
        const at::Tensor& encoderHidden = {}, const at::Tensor& encoderMask = {},
        DecoderCache* cache = nullptr, const std::vector<std::int64_t>* keepBlockOutputs = nullptr,
        std::int64_t textLength = -1);

    torch::nn::ModuleList block { nullptr };
    T5LayerNorm final_layer_norm { nullptr };
    std::vector<T5Block> blocks; // typed views of `block`

    // (1 - mask) * finfo(dtype).min, shaped (batch, 1, 1 or q, k).
    static at::Tensor extendedMask(const at::Tensor& mask01, c10::ScalarType dtype);

private:
    torch::nn::Embedding m_embed; // the shared embedding; not registered here (it is `shared`)
    bool m_isDecoder;
    double m_dropout;
};
TORCH_MODULE(T5Stack);

struct Seq2SeqOutput {
    at::Tensor logits; // (batch, target length, vocab)
    at::Tensor loss; // scalar mean over labels != -100; undefined without labels
    StackOutput encoder;
    StackOutput decoder;
};

// The whole model, and the Backbone (model/Backbone.h) that LST and generation see.
class T5ForConditionalGenerationImpl : public BackboneModelImpl {
public:
    explicit T5ForConditionalGenerationImpl(const T5Config& config);

    // Teacher-forced forward. decoderInputIds defaults to shiftRight(labels).
    Seq2SeqOutput forward(const at::Tensor& inputIds, const at::Tensor& attentionMask,
        const at::Tensor& labels, const at::Tensor& decoderInputIds = {});
    // forward() with the labels (BackboneModelImpl).
    TargetOutput forwardTargets(
        const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels) override;

    StackOutput encode(const at::Tensor& inputIds, const at::Tensor& attentionMask);
    StackOutput decode(const at::Tensor& decoderInputIds, const at::Tensor& encoderHidden,
        const at::Tensor& encoderMask, DecoderCache* cache = nullptr);
    // Decoder output -> logits (with the d_model^-0.5 rescale when the embeddings are tied).
    at::Tensor lmLogits(const at::Tensor& decoderHidden) override;
    // The LM head matrix (vocab, d_model): lm_head.weight, or shared.weight when tied. ladder::Error when it
    // is stored quantised (lmHeadQuantized() then holds it).
    at::Tensor lmHeadWeight() const;

    // HF's _shift_right: decoder start token first, labels shifted right, -100 replaced by pad.
    at::Tensor shiftRight(const at::Tensor& labels) const override;
    // crossEntropy(logits, labels) is Backbone's.

    DecoderCache makeCache() const override;
    const T5Config& config() const { return m_config; }

    // The rest of Backbone: shared, encoder and decoder as they are, config.json and named_parameters.
    BackboneShape shape() const override;
    at::Tensor embed(const at::Tensor& ids) override;
    StackOutput runEncoder(const at::Tensor& embeddings, const at::Tensor& attentionMask,
        const std::vector<std::int64_t>* keepBlockOutputs) override;
    StackOutput runDecoder(const at::Tensor& embeddings, const at::Tensor& encoderHidden,
        const at::Tensor& encoderMask, DecoderCache* cache, const std::vector<std::int64_t>* keepBlockOutputs,
        const at::Tensor& selfAttentionMask) override;
    std::unique_ptr<Seq2SeqStepper> makeStepper() override; // a T5Stepper (model/Generation.h)
    std::string configJson() const override;
    // named_parameters, where a weight held in frozen storage appears as its parts ("<name>.qdata",
    // "<name>.qscale", "<name>.qzero": QuantizedWeight::parts()) instead of its empty placeholder.
    std::vector<std::pair<std::string, at::Tensor>> namedWeights() const override;
    std::string weightStorage() const override;

    // Frozen storage of the embedding (issue 18): `shared` (and with it the tied LM head) and an untied
    // lm_head. Their `weight` parameters become empty placeholders as in T5Linear; embed() gathers and
    // dequantises only the rows it needs, lmLogits() multiplies through QuantizedWeight::matmul (in chunks of
    // rows: the vocabulary is the largest matrix). Called by quantizeFrozenBackbone (model/T5Quantization.h).
    void quantizeShared(QuantDtype dtype, std::int64_t groupSize);
    void quantizeLmHead(QuantDtype dtype, std::int64_t groupSize); // untied only
    void setSharedQuantized(QuantizedWeight stored);
    void setLmHeadQuantized(QuantizedWeight stored);
    const QuantizedWeight& sharedQuantized() const { return m_sharedQuantized; }
    // The LM head's storage: sharedQuantized() when tied; undefined when the head is dense.
    const QuantizedWeight& lmHeadQuantized() const;
    // The storage label, "fp32" until quantizeFrozenBackbone; e.g. "int4 g64" (Backbone::weightStorage).
    void setWeightStorage(std::string label) { m_weightStorage = std::move(label); }
    // Every weight held in frozen storage, by parameter name
    // ("encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight", "lm_head.weight"), in
    // named_parameters order.
    std::vector<std::pair<std::string, const QuantizedWeight*>> quantizedWeights() const;

    void to(torch::Device device, torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Dtype dtype, bool nonBlocking = false) override;
    void to(torch::Device device, bool nonBlocking = false) override;

    torch::nn::Embedding shared { nullptr };
    T5Stack encoder { nullptr };
    T5Stack decoder { nullptr };
    torch::nn::Linear lm_head { nullptr }; // only when tie_word_embeddings is false
    // BitFit: a zero-initialised bias on the LM head (registered as "lm_head_bias"; HF T5 has none).
    void addLmHeadBias();
    at::Tensor lm_head_bias;

private:
    T5Config m_config;
    QuantizedWeight m_sharedQuantized;
    QuantizedWeight m_lmHeadQuantized;
    std::string m_weightStorage = "fp32";
};
TORCH_MODULE(T5ForConditionalGeneration);

// The parameters that weights held in frozen storage stand for (their placeholders hold none):
// countParameters() adds this, so parameter counts do not change when a backbone is quantised.
std::int64_t quantizedParameterCount(const torch::nn::Module& module);

} // namespace ladder
