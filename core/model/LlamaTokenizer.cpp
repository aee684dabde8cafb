#include "model/LlamaTokenizer.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>

#include "model/SentencePiece.h"
#include "util/Error.h"
#include "util/Text.h"

namespace ladder {
namespace {

const std::string kMeta = "\xE2\x96\x81"; // "▁", SentencePiece's space

// Appended to the model file's bytes: a second normalizer_spec (ModelProto field 3) whose fields protobuf
// merges over the first one's (the wire format's rule for a message field that occurs twice). It sets
// precompiled_charsmap (field 2) empty, add_dummy_prefix (3) and remove_extra_whitespaces (4) false: HF's
// converted tokenizer normalises nothing and adds its "▁" itself (see the header), so SentencePiece must not.
// SentencePiece's own API has no switch for these, and Debian ships no sentencepiece_model.pb.h to edit
// the ModelProto with.
const std::string kNoNormalizer("\x1a\x06\x12\x00\x18\x00\x20\x00", 8);

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(path + ": cannot open (expected a SentencePiece tokenizer.model)");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to)
{
    for (std::size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
        text.replace(pos, from.size(), to);
    return text;
}

// HF's ByteFallback decoder reads a token as a byte when it is exactly "<0xNN>".
std::optional<unsigned char> bytePiece(const std::string& piece)
{
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>')
        return std::nullopt;
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    const int hi = hex(piece[3]), lo = hex(piece[4]);
    if (hi < 0 || lo < 0)
        return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
}

} // namespace

LlamaTokenizer::LlamaTokenizer(const std::string& modelPath, const TokenizerConfig& config)
    : m_path(modelPath)
{
    const std::string bytes = readFile(modelPath);
    try {
        m_sp = std::make_unique<SentencePieceModel>(
            SentencePieceModel::fromBytes(bytes + kNoNormalizer, modelPath));
    } catch (const Error& e) {
        throw Error(modelPath + ": not a SentencePiece model (" + oneLine(e.what(), 200) + ")");
    }
    m_spSize = m_sp->pieceSize();
    if (m_spSize <= 0)
        throw Error(modelPath + ": a SentencePiece model without pieces");

    // The model's own special pieces are HF's added tokens (all special); tokenizer_config.json may add more.
    const auto addModelPiece = [&](int id) {
        if (id >= 0 && id < m_spSize)
            m_added.push_back({ m_sp->idToPiece(id), id, true });
    };
    addModelPiece(m_sp->unkId());
    addModelPiece(m_sp->bosId());
    addModelPiece(m_sp->eosId());
    m_vocabSize = m_spSize;
    for (const auto& token : config.addedTokens) {
        if (token.id < 0 || token.content.empty())
            throw Error(config.source + ": added_tokens_decoder: token " + std::to_string(token.id)
                + " has a negative id or no content");
        const auto same
            = std::find_if(m_added.begin(), m_added.end(), [&](const auto& t) { return t.id == token.id; });
        if (same != m_added.end())
            *same = { token.content, token.id, token.special || same->special };
        else
            m_added.push_back({ token.content, token.id, token.special });
        m_vocabSize = std::max(m_vocabSize, token.id + 1);
    }

    const auto lookup = [&](const std::string& piece, const char* field) -> std::int64_t {
        for (const auto& token : m_added)
            if (token.content == piece)
                return token.id;
        const int id = m_sp->pieceToId(piece);
        if (id >= 0 && id < m_spSize && m_sp->idToPiece(id) == piece)
            return id;
        throw Error(config.source + ": " + field + " '" + printable(piece, true, 60) + "' is not a piece of "
            + modelPath);
    };
    const auto inRange = [&](std::int64_t id, const char* what) {
        if (id < 0 || id >= m_vocabSize)
            throw Error(modelPath + ": the model config's " + what + " " + std::to_string(id)
                + " is outside the vocabulary of " + std::to_string(m_vocabSize));
        return id;
    };
    m_unkId = config.unkToken ? lookup(*config.unkToken, "unk_token") : std::max(m_sp->unkId(), 0);
    if (config.bosToken)
        m_bosId = lookup(*config.bosToken, "bos_token");
    else if (m_sp->bosId() >= 0)
        m_bosId = m_sp->bosId();
    else if (config.modelIds.bosId)
        m_bosId = inRange(*config.modelIds.bosId, "bos_token_id");
    if (config.eosToken)
        m_eosId = lookup(*config.eosToken, "eos_token");
    else if (m_sp->eosId() >= 0)
        m_eosId = m_sp->eosId();
    else if (config.modelIds.eosId)
        m_eosId = inRange(*config.modelIds.eosId, "eos_token_id");
    else
        throw Error(modelPath
            + ": the model has no eos piece and neither tokenizer_config.json nor config.json "
              "names one");
    if (config.padToken)
        m_padId = lookup(*config.padToken, "pad_token");
    else if (config.modelIds.padId)
        m_padId = inRange(*config.modelIds.padId, "pad_token_id");
    else
        m_padId = m_unkId;

    m_addBos = config.addBosToken.value_or(true) && m_bosId.has_value();
    m_addEos = config.addEosToken.value_or(false);
    // HF's _get_prepend_scheme: add_prefix_space (default true) with legacy (LlamaTokenizer's default false).
    if (!config.addPrefixSpace.value_or(true))
        m_prepend = Prepend::Never;
    else
        m_prepend = config.legacy.value_or(false) ? Prepend::Always : Prepend::First;
}

LlamaTokenizer::~LlamaTokenizer() = default;

void LlamaTokenizer::encodePiece(std::string piece, bool prepend, std::vector<std::int64_t>* ids) const
{
    piece = replaceAll(std::move(piece), " ", kMeta);
    if (prepend)
        piece.insert(0, kMeta);
    std::vector<int> out;
    std::string error;
    if (!m_sp->encode(piece, &out, &error))
        throw Error(m_path + ": SentencePiece cannot encode a text: " + oneLine(error, 200));
    ids->insert(ids->end(), out.begin(), out.end());
}

std::vector<std::int64_t> LlamaTokenizer::encodeText(const std::string& text, bool joinSpace) const
{
    std::vector<std::int64_t> ids;
    const auto segments = tokenization::splitAddedTokens(text, m_added);
    // The joining space of a target is a "▁" of its own when the target starts with an added token.
    if (joinSpace && (segments.empty() || segments.front().id >= 0))
        encodePiece("", true, &ids);
    for (const auto& segment : segments) {
        if (segment.id >= 0) {
            ids.push_back(segment.id);
            continue;
        }
        std::string piece = text.substr(segment.begin, segment.end - segment.begin);
        const bool startsWithSpace = piece.front() == ' ' || piece.compare(0, kMeta.size(), kMeta) == 0;
        bool prepend = false;
        if (joinSpace && segment.begin == 0)
            prepend = true; // the space between prompt and target, whatever the target starts with
        else if (m_prepend == Prepend::Always || (m_prepend == Prepend::First && segment.begin == 0))
            prepend = !startsWithSpace; // Metaspace adds "▁" only where there is none
        encodePiece(std::move(piece), prepend, &ids);
    }
    return ids;
}

std::vector<std::int64_t> LlamaTokenizer::encode(const std::string& text, bool addSpecialTokens) const
{
    auto ids = encodeText(text, false);
    return addSpecialTokens ? withSpecialTokens(std::move(ids)) : ids;
}

std::vector<std::int64_t> LlamaTokenizer::withSpecialTokens(std::vector<std::int64_t> ids) const
{
    if (m_addBos)
        ids.insert(ids.begin(), *m_bosId);
    if (m_addEos)
        ids.push_back(m_eosId);
    return ids;
}

std::size_t LlamaTokenizer::specialTokensAdded() const
{
    return (m_addBos ? 1 : 0) + (m_addEos ? 1 : 0);
}

std::vector<std::int64_t> LlamaTokenizer::encodeTarget(const std::string& text) const
{
    auto ids = encodeText(text, true);
    ids.push_back(m_eosId);
    return ids;
}

std::string LlamaTokenizer::idToPiece(std::int64_t id) const
{
    for (const auto& token : m_added)
        if (token.id == id)
            return token.content;
    if (id < 0 || id >= m_spSize)
        throw Error(m_path + ": token id " + std::to_string(id) + " is outside the vocabulary of "
            + std::to_string(m_vocabSize));
    return m_sp->idToPiece(static_cast<int>(id));
}

bool LlamaTokenizer::isSpecial(std::int64_t id) const
{
    if (id == m_padId)
        return true;
    return std::any_of(
        m_added.begin(), m_added.end(), [&](const auto& t) { return t.id == id && t.special; });
}

std::string LlamaTokenizer::decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens) const
{
    std::string out, bytes;
    const auto flushBytes = [&] {
        if (tokenization::isValidUtf8(bytes))
            out += bytes;
        else
            for (std::size_t i = 0; i < bytes.size(); ++i)
                out += "\xEF\xBF\xBD"; // HF's ByteFallback: one U+FFFD per byte of an invalid run
        bytes.clear();
    };
    for (const auto id : ids) {
        if (id < 0)
            throw Error(m_path + ": token id " + std::to_string(id) + " is negative");
        if (skipSpecialTokens && isSpecial(id))
            continue;
        const bool known = id < m_spSize
            || std::any_of(m_added.begin(), m_added.end(), [&](const auto& t) { return t.id == id; });
        if (!known)
            continue; // HF's decode drops ids it does not know
        const std::string piece = idToPiece(id);
        if (const auto byte = bytePiece(piece)) {
            bytes += static_cast<char>(*byte);
            continue;
        }
        flushBytes();
        out += replaceAll(piece, kMeta, " ");
    }
    flushBytes();
    // HF's Strip decoder (added with the prefix space): the first character, when it is a space.
    if (m_prepend != Prepend::Never && !out.empty() && out.front() == ' ')
        out.erase(0, 1);
    return out;
}

} // namespace ladder
