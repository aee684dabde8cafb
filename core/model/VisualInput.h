#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace ladder {

// The visual side of one vision-and-language batch (docs/VL.md): precomputed features of a frozen image
// encoder (CLIP), as data/ serves them beside the text. Only the tensor type: data/ compiles without
// torch/nn. Undefined tensors = a text-only batch.
struct VisualInput {
    at::Tensor features; // (batch, V, D) float32: V = images per example x visual tokens per image
    at::Tensor boxes; // (batch, V, 4) float32: (x1, x2, y1, y2) in [0, 1] (zeros when the file has none)
    at::Tensor imageOrder; // (batch, V) int64: which image of its example a token belongs to (NLVR2: 0, 1)
    at::Tensor mask; // (batch, V) int64 0/1: 0 where an example has fewer images than the batch's widest
    std::int64_t tokensPerImage = 0;

    bool defined() const { return features.defined(); }
    // Keeps row rows[r] as row r (beam expansion, reordering).
    VisualInput select(const at::Tensor& rows) const;
    VisualInput to(const c10::Device& device) const;
};

} // namespace ladder
