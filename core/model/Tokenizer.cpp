#include "model/Tokenizer.h"

#include <algorithm>

namespace ladder {

Tokenizer::Batch Tokenizer::encodeBatch(
    const std::vector<std::string>& texts, int maxLength, bool padToLongest) const
{
    Batch batch;
    batch.inputIds.reserve(texts.size());
    std::size_t longest = 0;
    const std::size_t special = specialTokensAdded();
    for (const auto& text : texts) {
        auto ids = encode(text, false);
        // HF's truncate_sequences then build_inputs_with_special_tokens: the special tokens count towards
        // max_length and are added after the cut.
        if (maxLength > 0) {
            const auto room = static_cast<std::size_t>(maxLength) > special
                ? static_cast<std::size_t>(maxLength) - special
                : 0;
            if (ids.size() > room)
                ids.resize(room);
        }
        ids = withSpecialTokens(std::move(ids));
        longest = std::max(longest, ids.size());
        batch.inputIds.push_back(std::move(ids));
    }
    const std::size_t target
        = (maxLength > 0 && !padToLongest) ? static_cast<std::size_t>(maxLength) : longest;
    batch.attentionMask.reserve(texts.size());
    for (auto& ids : batch.inputIds) {
        std::vector<std::int64_t> mask(ids.size(), 1);
        mask.resize(std::max(target, ids.size()), 0);
        ids.resize(mask.size(), padId());
        batch.attentionMask.push_back(std::move(mask));
    }
    return batch;
}

} // namespace ladder
