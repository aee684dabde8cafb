#pragma once

#include <functional>
#include <vector>

#include <ATen/Tensor.h>

namespace ladder {

// Activation recomputation ("gradient checkpointing", issue 18; docs/LST.md, "Memory options"), as
// torch.utils.checkpoint's reentrant variant computes it:
//   forward:  fn(inputs) runs without autograd; only the inputs are kept for backward (they are alive
//             anyway: the caller's tensors), with the default generators' state (CPU, and CUDA when an input
//             is on CUDA) and whether autocast was on.
//   backward: the inputs are detached into new leaves (requires_grad as the originals), the generators are
//             set to the state of the forward and autocast to what it was, fn runs again with autograd, and
//             a reentrant backward from its output with the incoming gradient accumulates into the
//             parameters fn uses (their .grad) and into the leaves, whose gradients are returned. The
//             generators are put back afterwards, so the recomputation draws the same dropout masks and
//             leaves later draws unchanged: gradients equal those of fn run with autograd (bit for bit on
//             the CPU for deterministic ops).
// While one recomputation's backward runs, its activations exist (one unit at a time); nothing else is kept.
// Inputs may be undefined (passed to fn as undefined). fn must return one new tensor. Without grad mode this
// is fn(inputs); with it, the node is recorded even when no input requires grad (fn's parameters may).
using RecomputeFn = std::function<at::Tensor(const std::vector<at::Tensor>&)>;
at::Tensor checkpointed(const RecomputeFn& fn, const std::vector<at::Tensor>& inputs);

// Whether a recomputation (the backward of a checkpointed unit) is running on this thread.
bool insideRecomputation();

// The attention core of a T5 attention layer with its weights recomputed in backward (side_attention sdpa):
// q (batch, heads, q, d_kv), k and v (batch, heads, k, d_kv), bias (1 or batch, heads, q, k: the relative
// position bias plus the additive mask), scale 1.0 as T5. Returns softmax(q k^T + bias) (after dropout p
// when training) @ v, (batch, heads, q, d_kv), equal to the math path to rounding (docs/LST.md).
// Forward: at::scaled_dot_product_attention (ATen's fused kernel: no (q, k) map is materialised) when no
// dropout applies; with dropout, the math path without autograd (its maps are transient). Backward: the
// math path recomputed (checkpointed()), so only q, k, v and the shared bias are kept for it. Inside a
// recomputation (a side layer under side_checkpoint being recomputed) it is the math path itself.
at::Tensor recomputedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& bias, double dropout, bool training);

// The math path itself, as T5Attention computes it: softmax in float32, back to the scores' dtype, dropout
// (at::dropout), then @ v.
at::Tensor mathAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& bias, double dropout, bool training);

} // namespace ladder
