#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ladder {

// What the code above model/ asks of a tokenizer (the Batcher, evaluation, predict, the CLI). Three
// implementations, each reproducing one HF tokenizer (docs/DECODERS.md, "Tokenizers"):
// - T5Tokenizer (model/T5Tokenizer.h): SentencePiece + sentinels, </s> appended;
// - LlamaTokenizer (model/LlamaTokenizer.h): SentencePiece `tokenizer.model` with HF's LlamaTokenizer
//   semantics (<s> prepended, no </s>, byte fallback);
// - ByteLevelBpeTokenizer (model/ByteLevelBpe.h): a `tokenizer.json` byte-level BPE (Llama 3, Qwen2).
// loadTokenizer (model/TokenizerLoad.h) picks one for a backbone folder. Implementations are immutable after
// construction; their const methods are thread-safe. Errors throw ladder::Error naming the file.
class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    // "t5", "llama-sentencepiece" or "byte-level-bpe" (reports, ladder info).
    virtual std::string kind() const = 0;

    // HF's tokenizer(text)["input_ids"]: addSpecialTokens adds what the model's tokenizer adds around a
    // text (T5: </s> last; Llama: <s> first; Qwen2: nothing).
    virtual std::vector<std::int64_t> encode(const std::string& text, bool addSpecialTokens = true) const = 0;
    // What addSpecialTokens adds to ids already encoded without them (HF's build_inputs_with_special_tokens),
    // and how many ids that is (HF's num_special_tokens_to_add): truncation keeps room for them.
    virtual std::vector<std::int64_t> withSpecialTokens(std::vector<std::int64_t> ids) const = 0;
    virtual std::size_t specialTokensAdded() const = 0;

    // The ids of a generation target: what the model must produce for `text`, ending with eosId().
    // Sequence-to-sequence (T5): encode(text). A causal LM: the ids of " " + text as they follow a prompt (no
    // <s>, the joining space included: Llama's "▁", Qwen's "Ġ"), eos appended, so that
    // encode(prompt) + encodeTarget(answer) == encode(prompt + " " + answer) + [eos] wherever the vocabulary
    // has no piece across the join (Llama's and Qwen's have none: their pieces never end in a space).
    virtual std::vector<std::int64_t> encodeTarget(const std::string& text) const
    {
        return encode(text, true);
    }

    // HF's decode(ids, skip_special_tokens=...). T5 throws ladder::Error for an id outside [0, vocabSize()).
    // The decoder tokenizers throw for a negative id and drop ids they do not know, as HF's decode does: a
    // model's embedding may be larger than its tokenizer's vocabulary (Qwen2: 151936 rows, 151665 tokens).
    virtual std::string decode(
        const std::vector<std::int64_t>& ids, bool skipSpecialTokens = false) const = 0;
    // The token string of one id as HF's convert_ids_to_tokens gives it.
    virtual std::string idToPiece(std::int64_t id) const = 0;

    virtual std::int64_t vocabSize() const = 0;
    virtual std::int64_t padId() const = 0;
    virtual std::int64_t eosId() const = 0;
    virtual std::optional<std::int64_t> bosId() const { return std::nullopt; }
    // The ids HF's skip_special_tokens drops (and padId(): padding is never text).
    virtual bool isSpecial(std::int64_t id) const = 0;

    // HF's tokenizer(texts, truncation=True, max_length=maxLength, padding=...) for a batch.
    struct Batch {
        std::vector<std::vector<std::int64_t>> inputIds; // padded with padId() on the right
        std::vector<std::vector<std::int64_t>> attentionMask; // 1 for tokens, 0 for padding
    };
    // maxLength > 0: each text is cut from the right to leave room for the special tokens, which are then
    // added, and padded to maxLength (padding="max_length"), or to the longest sequence of the batch when
    // padToLongest. maxLength <= 0: no truncation, padded to the longest.
    virtual Batch encodeBatch(
        const std::vector<std::string>& texts, int maxLength, bool padToLongest = false) const;
};

// Pieces the decoder tokenizers share (model/LlamaTokenizer.cpp, model/ByteLevelBpe.cpp).
namespace tokenization {

// A token written in the text that HF splits out before the model sees the rest (HF's added tokens).
struct AddedToken {
    std::string content;
    std::int64_t id = 0;
    bool special = false;
    bool lstrip = false; // the match takes the whitespace on its left
    bool rstrip = false; // and on its right
};

// A piece of a text: an added token (id >= 0) or text the model encodes (id < 0), by byte offsets.
struct Segment {
    std::size_t begin = 0, end = 0;
    std::int64_t id = -1;
};

// HF's AddedVocabulary split: the leftmost, then longest, match of any added token's content, repeatedly;
// the text between matches is left as text segments (empty ones dropped).
std::vector<Segment> splitAddedTokens(const std::string& text, const std::vector<AddedToken>& tokens);

// Rust's String::from_utf8_lossy (HF's byte-level decoder): each maximal invalid subsequence becomes U+FFFD.
std::string utf8Lossy(const std::string& bytes);
bool isValidUtf8(const std::string& bytes);

} // namespace tokenization

} // namespace ladder
