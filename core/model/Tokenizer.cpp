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

namespace ladder::tokenization {

std::vector<Segment> splitAddedTokens(const std::string& text, const std::vector<AddedToken>& tokens)
{
    // Candidates by first byte, longest first: at each position the first that matches is the longest.
    std::vector<std::vector<const AddedToken*>> byFirst(256);
    for (const auto& token : tokens)
        if (!token.content.empty())
            byFirst[static_cast<unsigned char>(token.content[0])].push_back(&token);
    for (auto& list : byFirst)
        std::stable_sort(list.begin(), list.end(),
            [](const AddedToken* a, const AddedToken* b) { return a->content.size() > b->content.size(); });

    const auto isSpace
        = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    std::vector<Segment> segments;
    std::size_t textStart = 0; // where the pending text segment begins
    std::size_t pos = 0;
    while (pos < text.size()) {
        const AddedToken* found = nullptr;
        for (const auto* token : byFirst[static_cast<unsigned char>(text[pos])]) {
            if (text.compare(pos, token->content.size(), token->content) == 0) {
                found = token;
                break;
            }
        }
        if (!found) {
            ++pos;
            continue;
        }
        std::size_t begin = pos, end = pos + found->content.size();
        if (found->lstrip)
            while (begin > textStart && isSpace(text[begin - 1]))
                --begin;
        if (found->rstrip)
            while (end < text.size() && isSpace(text[end]))
                ++end;
        if (begin > textStart)
            segments.push_back({ textStart, begin, -1 });
        segments.push_back({ begin, end, found->id });
        textStart = pos = end;
    }
    if (textStart < text.size())
        segments.push_back({ textStart, text.size(), -1 });
    return segments;
}

namespace {

// The length of the valid UTF-8 sequence at bytes[i], or, when it is invalid, minus the length of its
// maximal valid prefix (at least 1): Unicode's "maximal subpart" rule, which Rust's from_utf8_lossy follows.
int utf8Step(const std::string& bytes, std::size_t i)
{
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
    const unsigned char lead = at(i);
    if (lead < 0x80)
        return 1;
    int length = 0;
    unsigned char lo = 0x80, hi = 0xBF; // the range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF)
        length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0)
            lo = 0xA0;
        if (lead == 0xED)
            hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0)
            lo = 0x90;
        if (lead == 0xF4)
            hi = 0x8F;
    } else
        return -1;
    for (int k = 1; k < length; ++k) {
        if (i + k >= bytes.size())
            return -k;
        const unsigned char c = at(i + k);
        const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
        if (!ok)
            return -k;
    }
    return length;
}

} // namespace

std::string utf8Lossy(const std::string& bytes)
{
    static const std::string kReplacement = "\xEF\xBF\xBD";
    std::string out;
    out.reserve(bytes.size());
    for (std::size_t i = 0; i < bytes.size();) {
        const int step = utf8Step(bytes, i);
        if (step > 0) {
            out.append(bytes, i, static_cast<std::size_t>(step));
            i += static_cast<std::size_t>(step);
        } else {
            out += kReplacement;
            i += static_cast<std::size_t>(-step);
        }
    }
    return out;
}

bool isValidUtf8(const std::string& bytes)
{
    for (std::size_t i = 0; i < bytes.size();) {
        const int step = utf8Step(bytes, i);
        if (step < 0)
            return false;
        i += static_cast<std::size_t>(step);
    }
    return true;
}

} // namespace ladder::tokenization
