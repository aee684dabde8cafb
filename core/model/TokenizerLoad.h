#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ladder {

class Tokenizer;

// The model config's special ids (config.json's bos_token_id, eos_token_id, pad_token_id). They fill what a
// folder's tokenizer files leave open (a Llama folder without a pad token gets pad_token_id); the tokenizer
// files win where both say.
struct TokenizerLoadOptions {
    std::optional<std::int64_t> bosId;
    std::optional<std::int64_t> eosId;
    std::optional<std::int64_t> padId;
};

// What a folder's tokenizer_config.json says (HF's PreTrainedTokenizer init kwargs), plus the model config's
// ids. A field the file does not have (or has as null) is nullopt; each tokenizer applies HF's default.
struct TokenizerConfig {
    std::string source; // the tokenizer_config.json read, "" when the folder has none
    std::string tokenizerClass;
    std::optional<std::string> bosToken, eosToken, unkToken, padToken;
    std::optional<bool> addBosToken, addEosToken, legacy, addPrefixSpace;
    // added_tokens_decoder: tokens HF splits out of a text before the model sees it.
    struct AddedToken {
        std::int64_t id = 0;
        std::string content;
        bool special = false;
    };
    std::vector<AddedToken> addedTokens;
    TokenizerLoadOptions modelIds;
};

// Reads FOLDER/tokenizer_config.json when there is one (an empty config otherwise). Throws ladder::Error
// naming the file and the field for a field of the wrong type.
TokenizerConfig readTokenizerConfig(const std::string& folder, const TokenizerLoadOptions& options = {});

// config.json's bos_token_id, eos_token_id (the first of a list, as Llama 3.1's) and pad_token_id, where they
// are integers; empty when FOLDER has no config.json.
TokenizerLoadOptions modelConfigIds(const std::string& folder);

// The tokenizer of a backbone folder (docs/DECODERS.md, "Tokenizers"):
// - spiece.model: T5Tokenizer (T5's folders; 100 sentinels, or tokenizer_config.json's extra_ids);
// - tokenizer.json whose model is a byte-level BPE (Llama 3, Qwen2, GPT-2): ByteLevelBpeTokenizer;
// - tokenizer.model: LlamaTokenizer (Llama 2, Mistral, TinyLlama). Such folders often hold a tokenizer.json
//   as well (a Metaspace BPE converted from tokenizer.model): the SentencePiece file wins, as it is the
//   original and HF's LlamaTokenizer reproduces it.
// Options left open are filled from FOLDER/config.json (modelConfigIds). Throws ladder::Error naming the
// folder and the files looked for when none is there, or naming the file and field it cannot read.
std::shared_ptr<Tokenizer> loadTokenizer(const std::string& folder, const TokenizerLoadOptions& options = {});

} // namespace ladder
