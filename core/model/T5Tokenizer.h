#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/Tokenizer.h"

namespace ladder {

class SentencePieceModel;

// HF's slow T5Tokenizer: a SentencePiece model plus `extraIds` sentinel tokens <extra_id_0..N-1>
// (ids vocab-1 down to vocab-N of the extended vocabulary), </s> appended, pad = 0, eos = 1, unk = 2.
// Special tokens written in the text (</s>, <pad>, <unk>, <extra_id_N>) are split out before
// SentencePiece sees the rest, as HF does.
//
// Reproduces transformers 4.26 (the "legacy" behaviour, before 4.31):
// - encode: the text is cut at every special token; the text on either side of a special token loses
//   its adjacent whitespace (Python str.strip semantics); each remaining piece of text goes through
//   SentencePiece on its own; </s> is appended unless the ids already end with it.
// - decode: HF's convert_tokens_to_string (a space before a run of special tokens, none after, the
//   result stripped) followed by clean_up_tokenization (" ." -> ".", " 's" -> "'s", ...).
//   skipSpecialTokens drops pad, eos, unk and every sentinel.
// Errors throw ladder::Error. The object is immutable after construction; const methods are thread-safe.
class T5Tokenizer : public Tokenizer {
public:
    // Loads `spmPath`; throws ladder::Error naming the file when it is missing, unreadable or not a
    // SentencePiece model with T5's special pieces (<pad> = 0, </s> = 1, <unk> = 2).
    explicit T5Tokenizer(const std::string& spmPath, int extraIds = 100);
    ~T5Tokenizer();
    T5Tokenizer(T5Tokenizer&&) noexcept;
    T5Tokenizer& operator=(T5Tokenizer&&) noexcept;

    std::string kind() const override { return "t5"; }
    std::vector<std::int64_t> encode(const std::string& text, bool addEos = true) const override;
    // </s> appended unless the ids already end with it.
    std::vector<std::int64_t> withSpecialTokens(std::vector<std::int64_t> ids) const override;
    std::size_t specialTokensAdded() const override { return 1; }
    // Throws ladder::Error for an id outside [0, vocabSize()).
    std::string decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens = false) const override;
    // The piece of one id (sentinels included). Throws ladder::Error for an id outside [0, vocabSize()).
    std::string idToPiece(std::int64_t id) const override;

    std::int64_t vocabSize() const override; // SentencePiece pieces + extraIds
    std::int64_t padId() const override { return 0; }
    std::int64_t eosId() const override { return 1; }
    std::int64_t unkId() const { return 2; }
    int extraIds() const { return m_extraIds; }
    // Id of <extra_id_n> (vocabSize() - 1 - n); throws ladder::Error when n is not in [0, extraIds()).
    std::int64_t sentinelId(int n) const;
    // pad, eos, unk or a sentinel: the ids HF's skip_special_tokens drops.
    bool isSpecial(std::int64_t id) const override;

    // encodeBatch is Tokenizer's: HF's truncation keeps </s> last (withSpecialTokens adds it after the cut).

private:
    std::unique_ptr<SentencePieceModel> m_sp;
    int m_extraIds = 100;
    std::int64_t m_spSize = 0;
};

} // namespace ladder
