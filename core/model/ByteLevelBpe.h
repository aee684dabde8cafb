#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/Tokenizer.h"
#include "model/TokenizerLoad.h"

namespace ladder {

// A byte-level BPE `tokenizer.json` (Llama 3, Qwen2, GPT-2) with the semantics of HF's `tokenizers`
// library, tested against it on tests/fixtures/decoder/qwen2-bias and llama3-bpe. No kept C or C++
// library of HF tokenizers is reachable here (none packaged for Debian 12; tokenizers-cpp builds the Rust
// crate; docs/DECODERS.md, "Tokenizers"), so this is the smallest implementation of the parts those files
// use, behind the Tokenizer interface:
// - added_tokens: split out of the text first (exact match, leftmost then longest, lstrip/rstrip), on the
//   text before normalisation (HF matches normalized=true tokens after it: the same for NFC-stable tokens);
// - normalizer: NFC, NFKC, NFD, NFKD (ICU) or a Sequence of them;
// - pre_tokenizer: Split (a Regex or String pattern, behavior Isolated, not inverted) and ByteLevel
//   (add_prefix_space, use_regex with GPT-2's pattern), alone or in a Sequence. Patterns run on ICU's regex
//   engine, with \s and \S read as Oniguruma reads them (Unicode White_Space: ICU's \s lacks \v and U+0085);
// - model: BPE over vocab and merges (either "a b" strings or [a, b] pairs), merges applied by rank with
//   ties to the left as `tokenizers` does, ignore_merges (Llama 3), an unk_token; a cache per word;
// - post_processor: none, ByteLevel (offsets only), TemplateProcessing's single form (special tokens around
//   $A: Llama 3's <|begin_of_text|>), or a Sequence of those;
// - decoder: ByteLevel (a token whose characters are all in the byte alphabet is its bytes, another its
//   UTF-8 text; the whole then read as Rust's from_utf8_lossy does).
// Anything else (a Unigram or WordPiece model, another normalizer, a Metaspace pre-tokenizer, ...) is an
// error naming the file and the JSON field. Text that is not valid UTF-8 has each bad byte read as U+FFFD.
// Special ids: eos is tokenizer_config.json's eos_token, else the model config's eos_token_id; bos is its
// bos_token, else the template's first special token, else none (Qwen2 has none); pad is its pad_token,
// else the model config's pad_token_id, else eos (what Qwen2's tokenizer and Llama 3 recipes use).
// Immutable after construction except for the word cache (behind a mutex); const methods are thread-safe.
class ByteLevelBpeTokenizer : public Tokenizer {
public:
    // Throws ladder::Error "PATH: FIELD: ..." for a file that cannot be read or that holds something above
    // lists as unsupported.
    explicit ByteLevelBpeTokenizer(const std::string& path, const TokenizerConfig& config = {});
    // The same from tokenizer.json already parsed; `source` names it in errors.
    ByteLevelBpeTokenizer(
        const nlohmann::json& tokenizerJson, const std::string& source, const TokenizerConfig& config = {});
    ~ByteLevelBpeTokenizer() override;
    ByteLevelBpeTokenizer(const ByteLevelBpeTokenizer&) = delete;
    ByteLevelBpeTokenizer& operator=(const ByteLevelBpeTokenizer&) = delete;

    // Whether a parsed tokenizer.json is a BPE model with a ByteLevel pre-tokenizer (what this class reads).
    static bool isByteLevelBpe(const nlohmann::json& tokenizerJson);

    std::string kind() const override { return "byte-level-bpe"; }
    std::vector<std::int64_t> encode(const std::string& text, bool addSpecialTokens = true) const override;
    // The template's special tokens around the ids.
    std::vector<std::int64_t> withSpecialTokens(std::vector<std::int64_t> ids) const override;
    std::size_t specialTokensAdded() const override;
    // encode(" " + text) without special tokens, then eos.
    std::vector<std::int64_t> encodeTarget(const std::string& text) const override;

    std::string decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens = false) const override;
    std::string idToPiece(std::int64_t id) const override;

    std::int64_t vocabSize() const override;
    std::int64_t padId() const override;
    std::int64_t eosId() const override;
    std::optional<std::int64_t> bosId() const override;
    bool isSpecial(std::int64_t id) const override;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace ladder
