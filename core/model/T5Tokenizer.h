#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ladder {

// HF's slow T5Tokenizer: a SentencePiece model plus `extraIds` sentinel tokens <extra_id_0..N-1>
// (ids vocab-1 down to vocab-N of the extended vocabulary), </s> appended, pad = 0, eos = 1, unk = 2.
// Special tokens written in the text (</s>, <pad>, <unk>, <extra_id_N>) are split out before
// SentencePiece sees the rest, as HF does.
class T5Tokenizer {
public:
    explicit T5Tokenizer(const std::string& spmPath, int extraIds = 100);
    ~T5Tokenizer();
    T5Tokenizer(T5Tokenizer&&) noexcept;
    T5Tokenizer& operator=(T5Tokenizer&&) noexcept;

    std::vector<std::int64_t> encode(const std::string& text, bool addEos = true) const;
    std::string decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens = false) const;
    // The piece of one id (sentinels included).
    std::string idToPiece(std::int64_t id) const;

    std::int64_t vocabSize() const; // SentencePiece pieces + extraIds
    std::int64_t padId() const { return 0; }
    std::int64_t eosId() const { return 1; }
    std::int64_t unkId() const { return 2; }

private:
    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_sp;
    int m_extraIds = 100;
    std::int64_t m_spSize = 0;
};

} // namespace ladder
