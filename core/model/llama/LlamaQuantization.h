#pragma once

#include <cstdint>
#include <string>

#include "model/T5Quantization.h"
#include "model/llama/LlamaModel.h"

namespace ladder {

// Frozen backbone storage for decoder-only backbones (issue 18's backbone_dtype on Llama, Mistral, Qwen2;
// docs/PERFORMANCE.md "Frozen backbone storage"), as model/T5Quantization.h does it for T5.
//
// Stored as bf16 / int8 / int4: every frozen projection (q, k, v, o, gate, up, down of every layer), the
// embedding (and with it a tied LM head) and an untied lm_head. What stays fp32: the RMSNorm weights (they
// scale every hidden state), the projections' biases (Qwen2's q/k/v; BitFit's train), adapters, LoRA
// matrices and LST's side network (trainable). The rotary tables are computed, not stored.

// Quantises every frozen matrix of `model` to `dtype` ("bf16", "int8" or "int4"; "fp32" does nothing), int4
// in groups of groupSize along the input dimension. Call it after a method has built its modules and frozen
// the backbone (createMethod does). Frees each dense matrix as soon as its stored form exists. Returns the
// number of matrices now stored; sets model.weightStorage() ("int4 g64").
std::int64_t quantizeFrozenBackbone(
    LlamaForCausalLMImpl& model, const std::string& dtype, std::int64_t groupSize);

// Frees every stored matrix's kernel forms (after an evaluation with the kernels, before training steps).
std::int64_t releaseKernelForms(const LlamaForCausalLMImpl& model);

// What quantizeFrozenBackbone would make of `config`'s weights, without building them (`ladder info`): every
// projection, the embedding and an untied lm_head in `dtype` ("fp32" for comparison); RMSNorm weights and
// biases fp32. Throws ladder::Error naming the width an int4 group does not divide.
BackboneStorageBytes backboneStorageBytes(
    const LlamaConfig& config, const std::string& dtype, std::int64_t groupSize);

// Bytes the backbone's weights take now: the dense parameters (placeholders hold none) and the stored
// matrices (QuantizedWeight::bytes()).
std::int64_t backboneWeightBytes(const LlamaForCausalLMImpl& model);

} // namespace ladder
