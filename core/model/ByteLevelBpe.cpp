#include "model/ByteLevelBpe.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>

#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace {

using nlohmann::json;

// GPT-2's pattern, what ByteLevel's use_regex splits with.
const char* const kGpt2Pattern
    = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Words longer than this are not cached (tokenizers caches words of any length up to its capacity, but a
// long run of spaces or digits would only fill the cache); the cache holds at most kCacheCapacity words.
constexpr std::size_t kCacheWordLimit = 256;
constexpr std::size_t kCacheCapacity = 100000;

std::string utf8Of(UChar32 c)
{
    std::string out;
    icu::UnicodeString(c).toUTF8String(out);
    return out;
}

// Oniguruma's \s is Unicode White_Space; ICU's is [\t\n\f\r\p{Z}], without \v and U+0085. The pattern is
// otherwise passed as it is: \p{L}, \p{N}, (?i:...), lookahead and {m,n} mean the same in both.
std::string toIcuPattern(const std::string& pattern)
{
    std::string out;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] != '\\' || i + 1 >= pattern.size()) {
            out += pattern[i];
            continue;
        }
        const char next = pattern[++i];
        if (next == 's')
            out += "\\p{White_Space}";
        else if (next == 'S')
            out += "\\P{White_Space}";
        else {
            out += '\\';
            out += next;
        }
    }
    return out;
}

struct Field {
    const std::string& source;
    std::string path;
    Error error(const std::string& what) const { return Error(source + ": " + path + ": " + what); }
    Field operator/(const std::string& key) const { return { source, path + "." + key }; }
    Field operator[](std::size_t i) const { return { source, path + "[" + std::to_string(i) + "]" }; }
};

const json& member(const json& object, const char* key)
{
    static const json null;
    if (!object.is_object())
        return null;
    const auto it = object.find(key);
    return it == object.end() ? null : *it;
}

std::string stringOf(const json& value, const Field& field)
{
    if (!value.is_string())
        throw field.error("expected a string, found " + brief(value));
    return value.get<std::string>();
}

bool boolOf(const json& object, const char* key, bool fallback, const Field& field)
{
    const json& value = member(object, key);
    if (value.is_null())
        return fallback;
    if (!value.is_boolean())
        throw(field / key).error("expected true or false, found " + brief(value));
    return value.get<bool>();
}

std::int64_t idOf(const json& value, const Field& field)
{
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0
        || value.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max())
        throw field.error("expected a token id, found " + brief(value));
    return value.get<std::int64_t>();
}

std::string typeOf(const json& object, const Field& field)
{
    return stringOf(member(object, "type"), field / "type");
}

} // namespace

struct ByteLevelBpeTokenizer::Impl {
    std::string source;

    // The model.
    std::unordered_map<std::string, std::int64_t> tokenToId;
    std::vector<std::string> idToToken; // "" for an id the tokenizer does not have
    std::vector<char> known;
    struct Merge {
        int rank = 0;
        std::int64_t id = 0;
    };
    std::unordered_map<std::uint64_t, Merge> merges; // by (left id << 32 | right id)
    std::optional<std::int64_t> unkId;
    bool fuseUnk = false;
    bool ignoreMerges = false;

    // The pipeline.
    std::vector<const icu::Normalizer2*> normalizers;
    struct PreTokenizer {
        std::shared_ptr<icu::RegexPattern> split; // Split, or ByteLevel's use_regex
        bool byteLevel = false;
        bool addPrefixSpace = false;
    };
    std::vector<PreTokenizer> preTokenizers;
    std::array<std::string, 256> byteToChar; // GPT-2's alphabet, as UTF-8
    std::unordered_map<UChar32, unsigned char> charToByte;

    std::vector<tokenization::AddedToken> added;
    std::unordered_set<std::int64_t> special;
    std::vector<std::int64_t> prefix, suffix; // the template's special tokens around $A

    std::int64_t eos = 0, pad = 0;
    std::optional<std::int64_t> bos;

    mutable std::mutex cacheMutex;
    mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache;

    Impl(const json& root, const std::string& sourceName, const TokenizerConfig& config);
    void readModel(const json& model, const Field& field);
    void readNormalizer(const json& normalizer, const Field& field);
    void readPreTokenizer(const json& preTokenizer, const Field& field);
    void readPostProcessor(const json& processor, const Field& field);
    void readDecoder(const json& decoder, const Field& field);
    std::shared_ptr<icu::RegexPattern> compile(const std::string& pattern, const Field& field) const;
    std::optional<std::int64_t> lookup(const std::string& token) const;

    void encodeText(const std::string& text, std::vector<std::int64_t>* ids) const;
    void encodeWord(const std::string& word, std::vector<std::int64_t>* ids) const;
    std::vector<std::int64_t> bpe(const std::string& word) const;
};

ByteLevelBpeTokenizer::Impl::Impl(
    const json& root, const std::string& sourceName, const TokenizerConfig& config)
    : source(sourceName)
{
    const Field top { source, "tokenizer.json" };
    if (!root.is_object())
        throw Error(source + ": expected a JSON object (a HF tokenizers tokenizer.json)");
    // GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves, the others for 256, 257, ...
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable
            = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const UChar32 c = printable ? b : next++;
        byteToChar[static_cast<std::size_t>(b)] = utf8Of(c);
        charToByte[c] = static_cast<unsigned char>(b);
    }
    readModel(member(root, "model"), { source, "model" });
    readNormalizer(member(root, "normalizer"), { source, "normalizer" });
    readPreTokenizer(member(root, "pre_tokenizer"), { source, "pre_tokenizer" });
    if (std::none_of(preTokenizers.begin(), preTokenizers.end(), [](const auto& p) { return p.byteLevel; }))
        throw Field { source, "pre_tokenizer" }.error(
            "no ByteLevel pre-tokenizer: only byte-level BPE tokenizer.json files are supported (Llama 3, "
            "Qwen2); a SentencePiece-based folder needs its tokenizer.model");
    readDecoder(member(root, "decoder"), { source, "decoder" });

    const json& addedTokens = member(root, "added_tokens");
    if (!addedTokens.is_null() && !addedTokens.is_array())
        throw Field { source, "added_tokens" }.error("expected an array, found " + brief(addedTokens));
    const auto addToken = [&](tokenization::AddedToken token) {
        if (static_cast<std::size_t>(token.id) >= idToToken.size()) {
            idToToken.resize(static_cast<std::size_t>(token.id) + 1);
            known.resize(idToToken.size(), 0);
        }
        idToToken[static_cast<std::size_t>(token.id)] = token.content;
        known[static_cast<std::size_t>(token.id)] = 1;
        tokenToId.emplace(token.content, token.id);
        if (token.special)
            special.insert(token.id);
        const auto same
            = std::find_if(added.begin(), added.end(), [&](const auto& t) { return t.id == token.id; });
        if (same != added.end())
            *same = token;
        else
            added.push_back(std::move(token));
    };
    for (std::size_t i = 0; i < addedTokens.size(); ++i) {
        const json& entry = addedTokens[i];
        const Field field = Field { source, "added_tokens" }[i];
        tokenization::AddedToken token;
        token.id = idOf(member(entry, "id"), field / "id");
        token.content = stringOf(member(entry, "content"), field / "content");
        if (token.content.empty())
            throw(field / "content").error("an added token without content");
        token.special = boolOf(entry, "special", false, field);
        token.lstrip = boolOf(entry, "lstrip", false, field);
        token.rstrip = boolOf(entry, "rstrip", false, field);
        if (boolOf(entry, "single_word", false, field))
            throw(field / "single_word").error("single_word added tokens are not supported");
        addToken(std::move(token));
    }
    for (const auto& token : config.addedTokens)
        if (!std::any_of(added.begin(), added.end(), [&](const auto& t) { return t.id == token.id; }))
            addToken({ token.content, token.id, token.special });
    readPostProcessor(member(root, "post_processor"), { source, "post_processor" });

    const auto configToken = [&](const std::string& token, const char* field) {
        const auto id = lookup(token);
        if (!id)
            throw Error(config.source + ": " + field + " '" + printable(token, true, 60)
                + "' is not a token of " + source);
        return *id;
    };
    const auto inRange = [&](std::int64_t id, const char* what) {
        if (id < 0 || id >= static_cast<std::int64_t>(idToToken.size())
            || !known[static_cast<std::size_t>(id)])
            throw Error(source + ": the model config's " + std::string(what) + " " + std::to_string(id)
                + " is not a token of this tokenizer");
        return id;
    };
    if (config.eosToken)
        eos = configToken(*config.eosToken, "eos_token");
    else if (config.modelIds.eosId)
        eos = inRange(*config.modelIds.eosId, "eos_token_id");
    else
        throw Error(source
            + ": no eos token: tokenizer_config.json has no eos_token and config.json no "
              "eos_token_id");
    if (config.bosToken)
        bos = configToken(*config.bosToken, "bos_token");
    else if (!prefix.empty())
        bos = prefix.front();
    if (config.padToken)
        pad = configToken(*config.padToken, "pad_token");
    else if (config.modelIds.padId)
        pad = inRange(*config.modelIds.padId, "pad_token_id");
    else
        pad = eos;
}

void ByteLevelBpeTokenizer::Impl::readModel(const json& model, const Field& field)
{
    if (!model.is_object())
        throw field.error("expected an object, found " + brief(model));
    const json& type = member(model, "type");
    if (!type.is_null() && stringOf(type, field / "type") != "BPE")
        throw(field / "type")
            .error("'" + printable(type.get<std::string>(), true, 40) + "' is not supported (BPE only)");
    for (const char* key : { "continuing_subword_prefix", "end_of_word_suffix" }) {
        const json& value = member(model, key);
        if (!value.is_null() && !(value.is_string() && value.get<std::string>().empty()))
            throw(field / key).error("not supported by a byte-level BPE (found " + brief(value) + ")");
    }
    const json& dropout = member(model, "dropout");
    if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
        throw(field / "dropout").error("BPE dropout is not supported (found " + brief(dropout) + ")");
    fuseUnk = boolOf(model, "fuse_unk", false, field);
    ignoreMerges = boolOf(model, "ignore_merges", false, field);

    const json& vocab = member(model, "vocab");
    if (!vocab.is_object() || vocab.empty())
        throw(field / "vocab").error("expected an object of tokens and ids, found " + brief(vocab));
    std::int64_t size = 0;
    for (const auto& [token, id] : vocab.items())
        size = std::max(size, idOf(id, field / "vocab" / token) + 1);
    idToToken.assign(static_cast<std::size_t>(size), std::string());
    known.assign(static_cast<std::size_t>(size), 0);
    for (const auto& [token, value] : vocab.items()) {
        const auto id = value.get<std::int64_t>();
        tokenToId[token] = id;
        idToToken[static_cast<std::size_t>(id)] = token;
        known[static_cast<std::size_t>(id)] = 1;
    }
    const json& unk = member(model, "unk_token");
    if (!unk.is_null()) {
        unkId = lookup(stringOf(unk, field / "unk_token"));
        if (!unkId)
            throw(field / "unk_token")
                .error("'" + printable(unk.get<std::string>(), true, 40) + "' is not in the vocab");
    }

    const json& list = member(model, "merges");
    if (!list.is_array())
        throw(field / "merges").error("expected an array, found " + brief(list));
    for (std::size_t i = 0; i < list.size(); ++i) {
        const Field at = (field / "merges")[i];
        std::string left, right;
        if (list[i].is_string()) {
            // The older form "a b": tokens never hold a space there (byte-level writes it "Ġ").
            const auto text = list[i].get<std::string>();
            const auto space = text.find(' ');
            if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
                throw at.error("expected two tokens separated by one space, found " + brief(list[i]));
            left = text.substr(0, space);
            right = text.substr(space + 1);
        } else if (list[i].is_array() && list[i].size() == 2) {
            left = stringOf(list[i][0], at[0]);
            right = stringOf(list[i][1], at[1]);
        } else {
            throw at.error("expected \"a b\" or [a, b], found " + brief(list[i]));
        }
        const auto a = lookup(left), b = lookup(right), merged = lookup(left + right);
        if (!a || !b || !merged)
            throw at.error(
                "a token of the merge '" + printable(left + " " + right, true, 60) + "' is not in the vocab");
        merges.emplace((static_cast<std::uint64_t>(*a) << 32) | static_cast<std::uint64_t>(*b),
            Merge { static_cast<int>(i), *merged });
    }
}

void ByteLevelBpeTokenizer::Impl::readNormalizer(const json& normalizer, const Field& field)
{
    if (normalizer.is_null())
        return;
    const std::string type = typeOf(normalizer, field);
    if (type == "Sequence") {
        const json& list = member(normalizer, "normalizers");
        if (!list.is_array())
            throw(field / "normalizers").error("expected an array, found " + brief(list));
        for (std::size_t i = 0; i < list.size(); ++i)
            readNormalizer(list[i], (field / "normalizers")[i]);
        return;
    }
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* instance = nullptr;
    if (type == "NFC")
        instance = icu::Normalizer2::getNFCInstance(status);
    else if (type == "NFKC")
        instance = icu::Normalizer2::getNFKCInstance(status);
    else if (type == "NFD")
        instance = icu::Normalizer2::getNFDInstance(status);
    else if (type == "NFKD")
        instance = icu::Normalizer2::getNFKDInstance(status);
    else
        throw(field / "type")
            .error(
                "'" + printable(type, true, 40) + "' is not supported (NFC, NFKC, NFD, NFKD or a Sequence)");
    if (U_FAILURE(status) || !instance)
        throw(field / "type").error(std::string("ICU cannot make the normalizer: ") + u_errorName(status));
    normalizers.push_back(instance);
}

std::shared_ptr<icu::RegexPattern> ByteLevelBpeTokenizer::Impl::compile(
    const std::string& pattern, const Field& field) const
{
    UParseError where {};
    UErrorCode status = U_ZERO_ERROR;
    std::shared_ptr<icu::RegexPattern> compiled(
        icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(toIcuPattern(pattern)), 0, where, status));
    if (U_FAILURE(status) || !compiled)
        throw field.error("the regex '" + printable(pattern, true, 80) + "' does not compile (ICU: "
            + u_errorName(status) + " at offset " + std::to_string(where.offset) + ")");
    return compiled;
}

void ByteLevelBpeTokenizer::Impl::readPreTokenizer(const json& preTokenizer, const Field& field)
{
    if (preTokenizer.is_null())
        return;
    const std::string type = typeOf(preTokenizer, field);
    if (type == "Sequence") {
        const json& list = member(preTokenizer, "pretokenizers");
        if (!list.is_array())
            throw(field / "pretokenizers").error("expected an array, found " + brief(list));
        for (std::size_t i = 0; i < list.size(); ++i)
            readPreTokenizer(list[i], (field / "pretokenizers")[i]);
    } else if (type == "ByteLevel") {
        PreTokenizer step;
        step.byteLevel = true;
        step.addPrefixSpace = boolOf(preTokenizer, "add_prefix_space", true, field);
        if (boolOf(preTokenizer, "use_regex", true, field))
            step.split = compile(kGpt2Pattern, field);
        preTokenizers.push_back(std::move(step));
    } else if (type == "Split") {
        const json& behavior = member(preTokenizer, "behavior");
        if (stringOf(behavior, field / "behavior") != "Isolated")
            throw(field / "behavior")
                .error("'" + printable(behavior.get<std::string>(), true, 40)
                    + "' is not supported (Isolated only)");
        if (boolOf(preTokenizer, "invert", false, field))
            throw(field / "invert").error("an inverted Split is not supported");
        const json& pattern = member(preTokenizer, "pattern");
        PreTokenizer step;
        if (member(pattern, "Regex").is_string())
            step.split = compile(member(pattern, "Regex").get<std::string>(), field / "pattern" / "Regex");
        else if (member(pattern, "String").is_string())
            step.split
                = compile("\\Q" + member(pattern, "String").get<std::string>() + "\\E", field / "pattern");
        else
            throw(field / "pattern")
                .error("expected {\"Regex\": ...} or {\"String\": ...}, found " + brief(pattern));
        preTokenizers.push_back(std::move(step));
    } else {
        throw(field / "type")
            .error("'" + printable(type, true, 40)
                + "' is not supported (ByteLevel, Split or a Sequence of them; only byte-level BPE "
                  "tokenizer.json "
                  "files are read)");
    }
}

void ByteLevelBpeTokenizer::Impl::readPostProcessor(const json& processor, const Field& field)
{
    if (processor.is_null())
        return;
    const std::string type = typeOf(processor, field);
    if (type == "ByteLevel")
        return; // it trims offsets, which are not computed here; ids are unchanged
    if (type == "Sequence") {
        const json& list = member(processor, "processors");
        if (!list.is_array())
            throw(field / "processors").error("expected an array, found " + brief(list));
        for (std::size_t i = 0; i < list.size(); ++i)
            readPostProcessor(list[i], (field / "processors")[i]);
        return;
    }
    if (type != "TemplateProcessing")
        throw(field / "type")
            .error("'" + printable(type, true, 40)
                + "' is not supported (TemplateProcessing, ByteLevel or a Sequence of them)");
    const json& single = member(processor, "single");
    const json& specials = member(processor, "special_tokens");
    if (!single.is_array())
        throw(field / "single").error("expected an array, found " + brief(single));
    prefix.clear();
    suffix.clear();
    bool seenA = false;
    for (std::size_t i = 0; i < single.size(); ++i) {
        const Field at = (field / "single")[i];
        const json& piece = single[i];
        if (member(piece, "Sequence").is_object()) {
            const json& id = member(member(piece, "Sequence"), "id");
            if (id != "A" || seenA)
                throw at.error(
                    "expected the one sequence $A of a single-text template, found " + brief(piece));
            seenA = true;
            continue;
        }
        const std::string name
            = stringOf(member(member(piece, "SpecialToken"), "id"), at / "SpecialToken" / "id");
        const json& entry = member(specials, name.c_str());
        const json& ids = member(entry, "ids");
        if (!ids.is_array())
            throw(field / "special_tokens" / name / "ids")
                .error("expected an array of ids, found " + brief(ids));
        for (std::size_t k = 0; k < ids.size(); ++k)
            (seenA ? suffix : prefix).push_back(idOf(ids[k], (field / "special_tokens" / name / "ids")[k]));
    }
    if (!seenA)
        throw(field / "single").error("a template without $A");
}

void ByteLevelBpeTokenizer::Impl::readDecoder(const json& decoder, const Field& field)
{
    const std::string type = decoder.is_null() ? std::string("null") : typeOf(decoder, field);
    if (type == "ByteLevel")
        return;
    if (type == "Sequence") {
        const json& list = member(decoder, "decoders");
        if (list.is_array() && list.size() == 1)
            return readDecoder(list[0], (field / "decoders")[0]);
    }
    throw(field / "type")
        .error("'" + printable(type, true, 40) + "' is not supported (a ByteLevel decoder only)");
}

std::optional<std::int64_t> ByteLevelBpeTokenizer::Impl::lookup(const std::string& token) const
{
    const auto it = tokenToId.find(token);
    if (it == tokenToId.end())
        return std::nullopt;
    return it->second;
}

// tokenizers' BPE::merge_word: the pair of lowest merge rank (then the leftmost) merges first, repeatedly.
std::vector<std::int64_t> ByteLevelBpeTokenizer::Impl::bpe(const std::string& word) const
{
    if (ignoreMerges)
        if (const auto whole = lookup(word))
            return { *whole };
    struct Symbol {
        std::int64_t id;
        int prev, next;
        bool alive;
    };
    std::vector<Symbol> symbols;
    const icu::UnicodeString chars = icu::UnicodeString::fromUTF8(word);
    bool lastWasUnk = false;
    for (int32_t i = 0; i < chars.length();) {
        const UChar32 c = chars.char32At(i);
        i += U16_LENGTH(c);
        std::optional<std::int64_t> id = lookup(utf8Of(c));
        if (!id) {
            if (!unkId)
                continue; // tokenizers drops a character it cannot encode when there is no unk_token
            if (fuseUnk && lastWasUnk)
                continue;
            id = unkId;
        }
        lastWasUnk = unkId && *id == *unkId;
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({ *id, index - 1, -1, true });
        if (index > 0)
            symbols[static_cast<std::size_t>(index - 1)].next = index;
    }
    struct Candidate {
        int rank;
        int pos;
        std::int64_t id;
        bool operator<(const Candidate& other) const // std::priority_queue pops the largest
        {
            return rank != other.rank ? rank > other.rank : pos > other.pos;
        }
    };
    const auto mergeOf = [&](int left, int right) -> const Merge* {
        const auto key = (static_cast<std::uint64_t>(symbols[static_cast<std::size_t>(left)].id) << 32)
            | static_cast<std::uint64_t>(symbols[static_cast<std::size_t>(right)].id);
        const auto it = merges.find(key);
        return it == merges.end() ? nullptr : &it->second;
    };
    std::priority_queue<Candidate> queue;
    for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i)
        if (const Merge* m = mergeOf(i, i + 1))
            queue.push({ m->rank, i, m->id });
    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        auto& symbol = symbols[static_cast<std::size_t>(top.pos)];
        if (!symbol.alive || symbol.next < 0)
            continue;
        const Merge* current = mergeOf(top.pos, symbol.next);
        if (!current || current->rank != top.rank || current->id != top.id)
            continue; // a stale candidate: one of its symbols has merged since
        auto& right = symbols[static_cast<std::size_t>(symbol.next)];
        right.alive = false;
        symbol.id = top.id;
        symbol.next = right.next;
        if (symbol.next >= 0)
            symbols[static_cast<std::size_t>(symbol.next)].prev = top.pos;
        if (symbol.prev >= 0)
            if (const Merge* m = mergeOf(symbol.prev, top.pos))
                queue.push({ m->rank, symbol.prev, m->id });
        if (symbol.next >= 0)
            if (const Merge* m = mergeOf(top.pos, symbol.next))
                queue.push({ m->rank, top.pos, m->id });
    }
    std::vector<std::int64_t> ids;
    for (const auto& symbol : symbols)
        if (symbol.alive)
            ids.push_back(symbol.id);
    return ids;
}

void ByteLevelBpeTokenizer::Impl::encodeWord(const std::string& bytes, std::vector<std::int64_t>* ids) const
{
    std::string word;
    for (const char b : bytes)
        word += byteToChar[static_cast<unsigned char>(b)];
    if (word.size() <= kCacheWordLimit) {
        std::lock_guard<std::mutex> lock(cacheMutex);
        const auto it = cache.find(word);
        if (it != cache.end()) {
            ids->insert(ids->end(), it->second.begin(), it->second.end());
            return;
        }
    }
    auto out = bpe(word);
    ids->insert(ids->end(), out.begin(), out.end());
    if (word.size() <= kCacheWordLimit) {
        std::lock_guard<std::mutex> lock(cacheMutex);
        if (cache.size() < kCacheCapacity)
            cache.emplace(std::move(word), std::move(out));
    }
}

void ByteLevelBpeTokenizer::Impl::encodeText(const std::string& text, std::vector<std::int64_t>* ids) const
{
    icu::UnicodeString normalized = icu::UnicodeString::fromUTF8(text);
    for (const auto* normalizer : normalizers) {
        UErrorCode status = U_ZERO_ERROR;
        normalized = normalizer->normalize(normalized, status);
        if (U_FAILURE(status))
            throw Error(source + ": normalizer: ICU failed on a text: " + u_errorName(status));
    }
    std::vector<icu::UnicodeString> pieces { normalized };
    for (const auto& step : preTokenizers) {
        std::vector<icu::UnicodeString> next;
        for (auto& piece : pieces) {
            // tokenizers' ByteLevel prefixes every piece it is given, not only the first.
            if (step.byteLevel && step.addPrefixSpace && !piece.startsWith(icu::UnicodeString(u' ')))
                piece.insert(0, u' ');
            if (!step.split) {
                next.push_back(piece);
                continue;
            }
            UErrorCode status = U_ZERO_ERROR;
            std::unique_ptr<icu::RegexMatcher> matcher(step.split->matcher(piece, status));
            if (U_FAILURE(status))
                throw Error(source + ": pre_tokenizer: ICU cannot match: " + u_errorName(status));
            int32_t last = 0;
            while (matcher->find(status) && U_SUCCESS(status)) {
                const int32_t begin = matcher->start(status), end = matcher->end(status);
                if (begin == end)
                    continue;
                if (begin > last)
                    next.push_back(icu::UnicodeString(piece, last, begin - last));
                next.push_back(icu::UnicodeString(piece, begin, end - begin));
                last = end;
            }
            if (U_FAILURE(status))
                throw Error(source + ": pre_tokenizer: ICU failed on a text: " + u_errorName(status));
            if (last < piece.length())
                next.push_back(icu::UnicodeString(piece, last));
        }
        pieces = std::move(next);
    }
    for (const auto& piece : pieces) {
        std::string bytes;
        piece.toUTF8String(bytes);
        if (!bytes.empty())
            encodeWord(bytes, ids);
    }
}

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(const std::string& path, const TokenizerConfig& config)
    : ByteLevelBpeTokenizer(readJsonFile(path, "a HF tokenizers tokenizer.json"), path, config)
{
}

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(
    const nlohmann::json& tokenizerJson, const std::string& source, const TokenizerConfig& config)
    : m_impl(std::make_unique<Impl>(tokenizerJson, source, config))
{
}

ByteLevelBpeTokenizer::~ByteLevelBpeTokenizer() = default;

bool ByteLevelBpeTokenizer::isByteLevelBpe(const nlohmann::json& root)
{
    const json& model = member(root, "model");
    const json& type = member(model, "type");
    if (!model.is_object() || !(type.is_null() || type == "BPE"))
        return false;
    // The pre-tokenizer, alone or in a Sequence, is ByteLevel.
    std::vector<const json*> todo { &member(root, "pre_tokenizer") };
    while (!todo.empty()) {
        const json* node = todo.back();
        todo.pop_back();
        if (member(*node, "type") == "ByteLevel")
            return true;
        if (member(*node, "type") == "Sequence" && member(*node, "pretokenizers").is_array())
            for (const auto& child : member(*node, "pretokenizers"))
                todo.push_back(&child);
    }
    return false;
}

std::vector<std::int64_t> ByteLevelBpeTokenizer::encode(const std::string& text, bool addSpecialTokens) const
{
    std::vector<std::int64_t> ids;
    for (const auto& segment : tokenization::splitAddedTokens(text, m_impl->added)) {
        if (segment.id >= 0)
            ids.push_back(segment.id);
        else
            m_impl->encodeText(text.substr(segment.begin, segment.end - segment.begin), &ids);
    }
    return addSpecialTokens ? withSpecialTokens(std::move(ids)) : ids;
}

std::vector<std::int64_t> ByteLevelBpeTokenizer::withSpecialTokens(std::vector<std::int64_t> ids) const
{
    ids.insert(ids.begin(), m_impl->prefix.begin(), m_impl->prefix.end());
    ids.insert(ids.end(), m_impl->suffix.begin(), m_impl->suffix.end());
    return ids;
}

std::size_t ByteLevelBpeTokenizer::specialTokensAdded() const
{
    return m_impl->prefix.size() + m_impl->suffix.size();
}

std::vector<std::int64_t> ByteLevelBpeTokenizer::encodeTarget(const std::string& text) const
{
    auto ids = encode(" " + text, false);
    ids.push_back(m_impl->eos);
    return ids;
}

std::string ByteLevelBpeTokenizer::decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens) const
{
    std::string bytes;
    for (const auto id : ids) {
        if (id < 0)
            throw Error(m_impl->source + ": token id " + std::to_string(id) + " is negative");
        if (id >= vocabSize() || !m_impl->known[static_cast<std::size_t>(id)])
            continue; // HF's decode drops ids it does not know
        if (skipSpecialTokens && isSpecial(id))
            continue;
        // HF's ByteLevel decoder: a token all of whose characters are in the alphabet is its bytes; any
        // other (an added token such as "<|im_start|>" is ASCII and maps to itself) is its UTF-8 text.
        const std::string& token = m_impl->idToToken[static_cast<std::size_t>(id)];
        const icu::UnicodeString chars = icu::UnicodeString::fromUTF8(token);
        std::string mapped;
        bool all = true;
        for (int32_t i = 0; i < chars.length() && all;) {
            const UChar32 c = chars.char32At(i);
            i += U16_LENGTH(c);
            const auto it = m_impl->charToByte.find(c);
            if (it == m_impl->charToByte.end())
                all = false;
            else
                mapped += static_cast<char>(it->second);
        }
        bytes += all ? mapped : token;
    }
    return tokenization::utf8Lossy(bytes);
}

std::string ByteLevelBpeTokenizer::idToPiece(std::int64_t id) const
{
    if (id < 0 || id >= vocabSize() || !m_impl->known[static_cast<std::size_t>(id)])
        throw Error(m_impl->source + ": token id " + std::to_string(id) + " is not in the vocabulary");
    return m_impl->idToToken[static_cast<std::size_t>(id)];
}

std::int64_t ByteLevelBpeTokenizer::vocabSize() const
{
    return static_cast<std::int64_t>(m_impl->idToToken.size());
}

std::int64_t ByteLevelBpeTokenizer::padId() const
{
    return m_impl->pad;
}

std::int64_t ByteLevelBpeTokenizer::eosId() const
{
    return m_impl->eos;
}

std::optional<std::int64_t> ByteLevelBpeTokenizer::bosId() const
{
    return m_impl->bos;
}

bool ByteLevelBpeTokenizer::isSpecial(std::int64_t id) const
{
    return id == m_impl->pad || m_impl->special.count(id) > 0;
}

} // namespace ladder
