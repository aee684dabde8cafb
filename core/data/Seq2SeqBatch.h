#pragma once

#include <functional>
#include <optional>

#include <ATen/core/Tensor.h>

#include "model/VisualInput.h"

namespace ladder {

// One batch of a sequence-to-sequence task, as data/ serves it and every method's forward reads it;
// labels use -100 for ignored positions. Only the tensor type: data/ compiles without torch/nn
// (docs/ARCHITECTURE.md, the floors).
struct Seq2SeqBatch {
    at::Tensor inputIds; // (batch, source length) int64
    at::Tensor attentionMask; // (batch, source length) 0/1
    at::Tensor labels; // (batch, target length) int64
    // A vision-and-language batch's images (docs/VL.md): undefined for text.
    VisualInput visual;
};

// The batch on `device` (its visual input too).
inline Seq2SeqBatch onDevice(const Seq2SeqBatch& b, const c10::Device& device)
{
    return Seq2SeqBatch { b.inputIds.to(device), b.attentionMask.to(device), b.labels.to(device),
        b.visual.to(device) };
}

// Batches one after another (a method's data-driven initialisation, LST's Fisher pruning); nullopt when
// exhausted.
using BatchSource = std::function<std::optional<Seq2SeqBatch>()>;

} // namespace ladder
