#pragma once

#include <cstdint>
#include <string>

#include "model/T5Config.h"
#include "model/T5Model.h"

namespace ladder {

// Frozen backbone storage for T5 (issue 18; docs/PERFORMANCE.md "Frozen backbone storage").
//
// What is stored as bf16 / int8 / int4: every frozen (requires_grad == false) projection (q, k, v, o, wi or
// wi_0 and wi_1, wo of every block), the shared embedding (and with it the tied LM head) and an untied
// lm_head: the matrices, 99.9% of T5's weights. What stays fp32: the layer norms' weights and the
// relative_attention_bias tables (tiny: 0.02% of t5-base; the norms scale every hidden state, and the
// position bias is added to the attention logits before the softmax, where an error of a few percent moves
// the attention of every head), biases, adapters, LoRA matrices and LST's side network (trainable).

// Quantises every frozen matrix of `model` to `dtype` ("bf16", "int8" or "int4"; "fp32" does nothing),
// int4 in groups of groupSize along the input dimension. Call it after a method has built its modules and
// frozen the backbone (createMethod does): a trainable weight stays dense. Frees each dense matrix as soon
// as its stored form exists. Returns the number of matrices now stored; sets model.weightStorage().
std::int64_t quantizeFrozenBackbone(
    T5ForConditionalGenerationImpl& model, const std::string& dtype, std::int64_t groupSize);

// Frees every stored matrix's kernel forms (QuantizedWeight::releaseKernelForms): after an evaluation that
// used the kernels (bf16 compute, few rows), before training steps. Returns the bytes freed.
std::int64_t releaseKernelForms(const T5ForConditionalGenerationImpl& model);

// "fp32", "bf16", "int8", "int4 g64": the label of weightStorage() and of the activation cache's key.
std::string weightStorageLabel(const std::string& dtype, std::int64_t groupSize);

// Bytes the backbone's weights take now: the dense parameters (placeholders hold none) and the stored
// matrices (QuantizedWeight::bytes()).
std::int64_t backboneWeightBytes(const T5ForConditionalGenerationImpl& model);

// The weights of a config with its matrices stored as `dtype` ("fp32", "bf16", "int8", "int4") and the rest
// fp32, without building the model (`ladder info --backbone-dtype`).
struct BackboneStorageBytes {
    std::int64_t matrixParameters = 0; // the matrices quantizeFrozenBackbone stores
    std::int64_t matrixBytes = 0;
    std::int64_t otherParameters = 0; // layer norms and relative_attention_bias: fp32
    std::int64_t otherBytes = 0;
    std::int64_t totalBytes() const { return matrixBytes + otherBytes; }
};
BackboneStorageBytes backboneStorageBytes(
    const T5Config& config, const std::string& dtype, std::int64_t groupSize);

// A quantised backbone as one safetensors file: every dense parameter under its name, every stored matrix
// as its parts ("<name>.qdata", ".qscale", ".qzero": the layout of model/QuantizedWeight.h), with the
// config, the storage dtype and group size in the metadata. Loading puts the same tensors back bit for bit
// into a model of the same config (dense or already quantised; the stored matrices are frozen there):
// names, shapes, dtypes and the config are checked, an error names the file and tensor.
void saveQuantizedBackbone(const T5ForConditionalGenerationImpl& model, const std::string& path);
void loadQuantizedBackbone(T5ForConditionalGenerationImpl& model, const std::string& path);

} // namespace ladder
