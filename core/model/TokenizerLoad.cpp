#include "model/TokenizerLoad.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "model/ByteLevelBpe.h"
#include "model/LlamaTokenizer.h"
#include "model/T5Tokenizer.h"
#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool isFile(const fs::path& path)
{
    std::error_code ec;
    return fs::is_regular_file(path, ec);
}

// A special token as tokenizer_config.json writes it: a string, or an AddedToken object with "content".
std::optional<std::string> tokenField(const json& config, const char* key, const std::string& source)
{
    const auto it = config.find(key);
    if (it == config.end() || it->is_null())
        return std::nullopt;
    if (it->is_string())
        return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    throw Error(source + ": " + key + ": expected a token string or {\"content\": ...}, found " + brief(*it));
}

std::optional<bool> boolField(const json& config, const char* key, const std::string& source)
{
    const auto it = config.find(key);
    if (it == config.end() || it->is_null())
        return std::nullopt;
    if (!it->is_boolean())
        throw Error(source + ": " + key + ": expected true or false, found " + brief(*it));
    return it->get<bool>();
}

std::optional<std::int64_t> idField(const json& config, const char* key)
{
    const auto it = config.find(key);
    if (it == config.end())
        return std::nullopt;
    const json& value = it->is_array() && !it->empty() ? (*it)[0] : *it;
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0)
        return std::nullopt;
    return value.get<std::int64_t>();
}

} // namespace

TokenizerConfig readTokenizerConfig(const std::string& folder, const TokenizerLoadOptions& options)
{
    TokenizerConfig config;
    config.modelIds = options;
    const auto path = fs::path(folder) / "tokenizer_config.json";
    if (!isFile(path))
        return config;
    config.source = path.string();
    const json root = readJsonFile(config.source, "a HF tokenizer_config.json");
    if (!root.is_object())
        throw Error(config.source + ": expected a JSON object, found " + brief(root));
    if (root.contains("tokenizer_class") && root["tokenizer_class"].is_string())
        config.tokenizerClass = root["tokenizer_class"].get<std::string>();
    config.bosToken = tokenField(root, "bos_token", config.source);
    config.eosToken = tokenField(root, "eos_token", config.source);
    config.unkToken = tokenField(root, "unk_token", config.source);
    config.padToken = tokenField(root, "pad_token", config.source);
    config.addBosToken = boolField(root, "add_bos_token", config.source);
    config.addEosToken = boolField(root, "add_eos_token", config.source);
    config.legacy = boolField(root, "legacy", config.source);
    config.addPrefixSpace = boolField(root, "add_prefix_space", config.source);
    if (const auto it = root.find("added_tokens_decoder"); it != root.end() && !it->is_null()) {
        if (!it->is_object())
            throw Error(config.source + ": added_tokens_decoder: expected an object, found " + brief(*it));
        for (const auto& [key, entry] : it->items()) {
            const std::string field = config.source + ": added_tokens_decoder." + key;
            TokenizerConfig::AddedToken token;
            try {
                std::size_t used = 0;
                token.id = std::stoll(key, &used);
                if (used != key.size() || token.id < 0)
                    throw std::invalid_argument(key);
            } catch (const std::exception&) {
                throw Error(field + ": the key is not a token id");
            }
            if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string())
                throw Error(field + ": expected {\"content\": ..., \"special\": ...}, found " + brief(entry));
            token.content = entry["content"].get<std::string>();
            token.special = entry.value("special", false);
            config.addedTokens.push_back(std::move(token));
        }
    }
    return config;
}

TokenizerLoadOptions modelConfigIds(const std::string& folder)
{
    TokenizerLoadOptions ids;
    const auto path = fs::path(folder) / "config.json";
    if (!isFile(path))
        return ids;
    const json root = readJsonFile(path.string(), "a HF config.json");
    if (!root.is_object())
        return ids;
    ids.bosId = idField(root, "bos_token_id");
    ids.eosId = idField(root, "eos_token_id");
    ids.padId = idField(root, "pad_token_id");
    return ids;
}

std::shared_ptr<Tokenizer> loadTokenizer(const std::string& folder, const TokenizerLoadOptions& options)
{
    const fs::path dir(folder);
    const auto spiece = dir / "spiece.model";
    const auto tokenizerJson = dir / "tokenizer.json";
    const auto tokenizerModel = dir / "tokenizer.model";

    if (isFile(spiece)) {
        int extraIds = 100;
        const auto configPath = dir / "tokenizer_config.json";
        if (isFile(configPath)) {
            const json root = readJsonFile(configPath.string(), "a HF tokenizer_config.json");
            if (root.is_object() && root.contains("extra_ids")) {
                const json& value = root["extra_ids"];
                if (!value.is_number_integer() || value.get<std::int64_t>() < 0
                    || value.get<std::int64_t>() > 100000)
                    throw Error(configPath.string() + ": extra_ids: expected a count, found " + brief(value));
                extraIds = value.get<int>();
            }
        }
        return std::make_shared<T5Tokenizer>(spiece.string(), extraIds);
    }

    TokenizerLoadOptions ids = modelConfigIds(folder);
    if (options.bosId)
        ids.bosId = options.bosId;
    if (options.eosId)
        ids.eosId = options.eosId;
    if (options.padId)
        ids.padId = options.padId;
    const auto config = [&] { return readTokenizerConfig(folder, ids); };

    // Llama 2's folders hold tokenizer.model and a tokenizer.json converted from it (a Metaspace BPE): the
    // SentencePiece file wins there. A byte-level tokenizer.json is the original of its model.
    std::optional<json> parsed;
    if (isFile(tokenizerJson)) {
        parsed = readJsonFile(tokenizerJson.string(), "a HF tokenizers tokenizer.json");
        if (ByteLevelBpeTokenizer::isByteLevelBpe(*parsed))
            return std::make_shared<ByteLevelBpeTokenizer>(*parsed, tokenizerJson.string(), config());
    }
    if (isFile(tokenizerModel))
        return std::make_shared<LlamaTokenizer>(tokenizerModel.string(), config());
    if (parsed) // not byte-level: the constructor names the field it cannot read
        return std::make_shared<ByteLevelBpeTokenizer>(*parsed, tokenizerJson.string(), config());
    throw Error(folder + ": no tokenizer (looked for spiece.model, tokenizer.json and tokenizer.model)");
}

} // namespace ladder
