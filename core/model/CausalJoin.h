#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace ladder {

// The sequence-to-sequence contract (a source, labels) on a decoder-only model: the source and the labels
// become one causal sequence, so that target token j is predicted from the source and targets 0..j-1.
//
//   source  (batch, S), 0/1 mask, right- or left-padded   labels (batch, T), -100 on padding (right-padded)
//   joined  = [ source moved to the right (padding on the left) | labels[:, :-1], -100 -> pad ]
//   mask    = [ the moved source mask                           | labels[:, :-1] != -100       ]
//   targets = joined logits at columns S-1 .. S+T-2             (loss: crossEntropy(targets, labels))
//
// Why: in T5 the decoder start token is the input that predicts labels[:, 0]. Here the source's last real
// token plays that role: moving every row's source to end at column S-1 puts that token in the same column
// for every row, so the target logits are one slice (no per-row gather) and the labels keep their columns.
// The padding moved to the left is masked out and, as the model numbers positions from the first real token
// (model/llama/LlamaModel.h), each row computes as it would unpadded. A row whose source is all padding has
// no token to predict labels[:, 0] from: an error.
struct CausalJoin {
    at::Tensor inputIds; // (batch, S + T - 1) int64
    at::Tensor attentionMask; // (batch, S + T - 1) int64 0/1
    std::int64_t sourceLength = 0; // S
    std::int64_t targetLength = 0; // T

    // Joined logits (batch, S + T - 1, vocab) -> the target positions' logits (batch, T, vocab).
    at::Tensor targetLogits(const at::Tensor& joinedLogits) const;

    // attentionMask undefined = all ones. padId fills the label padding (masked out anyway).
    static CausalJoin make(const at::Tensor& inputIds, const at::Tensor& attentionMask,
        const at::Tensor& labels, std::int64_t padId);
};

// Moves each row's real tokens (mask 1, order kept) to the right end, padding (ids set to padId, mask 0) to
// the left: the layout HF's generate() expects of a decoder-only prompt. A left-padded input is returned
// unchanged. attentionMask undefined = all ones. Throws ladder::Error when a row has no real token.
struct LeftPadded {
    at::Tensor inputIds;
    at::Tensor attentionMask; // int64 0/1
};
LeftPadded leftPad(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t padId);

} // namespace ladder
