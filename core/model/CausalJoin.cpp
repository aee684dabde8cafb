#include "model/CausalJoin.h"

#include <ATen/ATen.h>

#include "util/Error.h"

namespace ladder {

LeftPadded leftPad(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t padId)
{
    if (inputIds.dim() != 2)
        throw Error("causal input: input_ids must be (batch, length)");
    const auto mask
        = attentionMask.defined() ? (attentionMask != 0).to(at::kLong) : at::ones_like(inputIds, at::kLong);
    if (mask.sizes() != inputIds.sizes())
        throw Error("causal input: attention_mask must have the shape of input_ids");
    if (inputIds.size(1) == 0 || (mask.sum(1) == 0).any().item<bool>())
        throw Error(
            "causal input: a row has no token (its attention_mask is all 0): a decoder-only model needs "
            "at least one source token to predict from");
    // A stable sort on the mask puts padding (0) first and keeps the real tokens in order.
    const auto order = std::get<1>(at::sort(mask, true, 1, false));
    LeftPadded out;
    out.attentionMask = mask.gather(1, order);
    out.inputIds = inputIds.gather(1, order).masked_fill(out.attentionMask == 0, padId);
    return out;
}

CausalJoin CausalJoin::make(
    const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& labels, std::int64_t padId)
{
    if (!labels.defined() || labels.dim() != 2 || labels.size(0) != inputIds.size(0) || labels.size(1) < 1)
        throw Error("causal join: labels must be (batch, target length >= 1) with the source's batch");
    const auto source = leftPad(inputIds, attentionMask, padId);
    CausalJoin join;
    join.sourceLength = inputIds.size(1);
    join.targetLength = labels.size(1);
    const auto shifted = labels.to(inputIds.device()).narrow(1, 0, join.targetLength - 1);
    const auto shiftedMask = (shifted != -100).to(at::kLong);
    join.inputIds = at::cat({ source.inputIds, shifted.masked_fill(shifted == -100, padId) }, 1);
    join.attentionMask = at::cat({ source.attentionMask, shiftedMask }, 1);
    return join;
}

at::Tensor CausalJoin::targetLogits(const at::Tensor& joinedLogits) const
{
    return joinedLogits.narrow(1, sourceLength - 1, targetLength);
}

} // namespace ladder
