#pragma once

#include <optional>
#include <string>

#include <ATen/Tensor.h>

namespace ladder {

// A batch in the layout of the fixtures' inputs.json:
// {"input_ids": [[...], ...], "attention_mask": [[...], ...], "labels": [[...], ...], "max_new_tokens": K}
// attention_mask defaults to all ones; labels are optional (-100 = ignore).
struct ModelInputs {
    at::Tensor inputIds; // (batch, source length) int64
    at::Tensor attentionMask; // (batch, source length) int64
    at::Tensor labels; // (batch, target length) int64, or undefined
    std::optional<std::int64_t> maxNewTokens;

    // Validates rectangular shapes, integer values, ids inside [0, vocabSize) (labels may be -100) and a
    // 0/1 mask; errors name the file and the field, e.g. "inputs.json: input_ids[1][3] = 400 is outside the
    // vocabulary of 256 ids".
    static ModelInputs fromJsonFile(const std::string& path, std::int64_t vocabSize);
};

} // namespace ladder
