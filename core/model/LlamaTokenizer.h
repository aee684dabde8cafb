#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"

namespace ladder {

class SentencePieceModel;

// A SentencePiece BPE `tokenizer.model` (Llama 2, Mistral, TinyLlama) with the semantics of HF's
// LlamaTokenizer as transformers 5 builds it (a tokenizers BPE converted from the file: Metaspace
// pre-tokenizer, byte fallback, no normalizer), tested against it on tests/fixtures/decoder/llama-gqa.
//
// encode:
// - <unk>, <s>, </s> and tokenizer_config.json's added tokens written in the text are split out first
//   (exact match, leftmost then longest; the spaces around them stay text);
// - each remaining piece of text has its spaces written "▁" and is encoded by SentencePiece with the model's
//   own dummy prefix switched off. HF's Metaspace adds that "▁" itself: to the text at the start of the
//   input only (legacy false, transformers 5's default; legacy true: to every piece) and only when the
//   piece does not start with a space already. So "  a" is "▁▁a", where SentencePiece alone gives
//   "▁▁▁a" (the one string of the fixture where the two differ; HF's is reproduced, as issue #21 asks);
// - the model's normalisation rule and remove_extra_whitespaces are not applied either, as HF's converted
//   tokenizer has no normalizer (Llama's models use the identity rule and keep whitespace anyway);
// - <s> first when add_bos_token (default true), </s> last when add_eos_token (default false).
// decode: pieces with "▁" as a space, runs of byte pieces <0xNN> as their bytes (a run that is not valid
// UTF-8 gives one U+FFFD per byte, as HF's ByteFallback), then one leading space dropped. No clean-up:
// transformers 5 skips clean_up_tokenization_spaces for BPE models.
// Special ids: unk, bos and eos are tokenizer_config.json's tokens where it names them, else the model's;
// pad is tokenizer_config.json's pad_token, else the model config's pad_token_id, else unk (Llama has no
// pad token; unk is what Llama 2 fine-tuning commonly pads with, and it is special, so decode drops it).
// Errors throw ladder::Error naming the file. Immutable after construction; const methods are thread-safe.
class LlamaTokenizer : public Tokenizer {
public:
    // Throws ladder::Error "PATH: ..." when the file is missing or not a SentencePiece model, or when a
    // token that tokenizer_config.json names is not in it.
    explicit LlamaTokenizer(const std::string& modelPath, const TokenizerConfig& config = {});
    ~LlamaTokenizer() override;
    LlamaTokenizer(const LlamaTokenizer&) = delete;
    LlamaTokenizer& operator=(const LlamaTokenizer&) = delete;

    std::string kind() const override { return "llama-sentencepiece"; }
    std::vector<std::int64_t> encode(const std::string& text, bool addSpecialTokens = true) const override;
    std::vector<std::int64_t> withSpecialTokens(std::vector<std::int64_t> ids) const override;
    std::size_t specialTokensAdded() const override;
    // The ids of "▁" + text (spaces as "▁"), then eos: what follows a prompt and one joining space.
    std::vector<std::int64_t> encodeTarget(const std::string& text) const override;

    std::string decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens = false) const override;
    std::string idToPiece(std::int64_t id) const override;

    std::int64_t vocabSize() const override { return m_vocabSize; }
    std::int64_t padId() const override { return m_padId; }
    std::int64_t eosId() const override { return m_eosId; }
    std::optional<std::int64_t> bosId() const override { return m_bosId; }
    std::int64_t unkId() const { return m_unkId; }
    bool isSpecial(std::int64_t id) const override;

private:
    enum class Prepend { Never, First, Always }; // HF's Metaspace prepend_scheme
    // The ids of the text between added tokens; `joinSpace` forces the leading "▁" of the first piece.
    std::vector<std::int64_t> encodeText(const std::string& text, bool joinSpace) const;
    void encodePiece(std::string piece, bool prepend, std::vector<std::int64_t>* ids) const;

    std::string m_path;
    std::unique_ptr<SentencePieceModel> m_sp;
    std::int64_t m_spSize = 0;
    std::int64_t m_vocabSize = 0;
    std::vector<tokenization::AddedToken> m_added;
    std::int64_t m_unkId = 0;
    std::optional<std::int64_t> m_bosId;
    std::int64_t m_eosId = 0;
    std::int64_t m_padId = 0;
    bool m_addBos = true;
    bool m_addEos = false;
    Prepend m_prepend = Prepend::First;
};

} // namespace ladder
