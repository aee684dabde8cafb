#include "model/T5Tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "model/SentencePiece.h"
#include "util/Error.h"

namespace ladder {
namespace {

constexpr const char* kPadPiece = "<pad>";
constexpr const char* kEosPiece = "</s>";
constexpr const char* kUnkPiece = "<unk>";
constexpr const char* kSentinelPrefix = "<extra_id_";
constexpr int kMaxExtraIds = 100000; // far above any real model; keeps the sentinel arithmetic in range

// Python's str.isspace() for one code point (what str.strip()/lstrip()/rstrip() remove).
bool isPythonSpace(char32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680
        || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F
        || c == 0x3000;
}

// Decodes the UTF-8 code point of s[begin, end); returns U+FFFD (never a space) for malformed bytes.
char32_t decodeCodePoint(const std::string& s, std::size_t begin, std::size_t end)
{
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const std::size_t n = end - begin;
    const unsigned char b0 = byte(begin);
    if (n == 1)
        return b0 < 0x80 ? b0 : 0xFFFD;
    char32_t c = 0;
    if (n == 2 && (b0 & 0xE0) == 0xC0)
        c = b0 & 0x1F;
    else if (n == 3 && (b0 & 0xF0) == 0xE0)
        c = b0 & 0x0F;
    else if (n == 4 && (b0 & 0xF8) == 0xF0)
        c = b0 & 0x07;
    else
        return 0xFFFD;
    for (std::size_t i = begin + 1; i < end; ++i) {
        if ((byte(i) & 0xC0) != 0x80)
            return 0xFFFD;
        c = (c << 6) | (byte(i) & 0x3F);
    }
    return c;
}

std::size_t codePointLength(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    if ((lead & 0xF8) == 0xF0)
        return 4;
    return 1; // a stray continuation byte or an invalid lead: one byte, not a space
}

void lstripPython(std::string& s)
{
    std::size_t pos = 0;
    while (pos < s.size()) {
        const std::size_t len = std::min(codePointLength(static_cast<unsigned char>(s[pos])), s.size() - pos);
        if (!isPythonSpace(decodeCodePoint(s, pos, pos + len)))
            break;
        pos += len;
    }
    s.erase(0, pos);
}

void rstripPython(std::string& s)
{
    while (!s.empty()) {
        std::size_t begin = s.size() - 1;
        while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80 && s.size() - begin < 4)
            --begin;
        if (!isPythonSpace(decodeCodePoint(s, begin, s.size())))
            break;
        s.resize(begin);
    }
}

// Python's str.replace(from, to): every non-overlapping occurrence, left to right.
void replaceAll(std::string& s, const std::string& from, const std::string& to)
{
    std::string out;
    out.reserve(s.size());
    std::size_t start = 0;
    for (std::size_t hit = s.find(from); hit != std::string::npos; hit = s.find(from, start)) {
        out.append(s, start, hit - start);
        out += to;
        start = hit + from.size();
    }
    out.append(s, start, std::string::npos);
    s = std::move(out);
}

// HF's PreTrainedTokenizerBase.clean_up_tokenization (clean_up_tokenization_spaces=True in 4.26).
void cleanUpTokenization(std::string& s)
{
    static const std::pair<const char*, const char*> kRules[] = {
        { " .", "." },
        { " ?", "?" },
        { " !", "!" },
        { " ,", "," },
        { " ' ", "'" },
        { " n't", "n't" },
        { " 'm", "'m" },
        { " 's", "'s" },
        { " 've", "'ve" },
        { " 're", "'re" },
    };
    for (const auto& [from, to] : kRules)
        replaceAll(s, from, to);
}

// One piece of the input after the special tokens were cut out.
struct Segment {
    std::string text;
    std::int64_t specialId = -1; // >= 0: a special token written in the text
};

} // namespace

T5Tokenizer::T5Tokenizer(const std::string& spmPath, int extraIds)
    : m_extraIds(extraIds)
{
    const std::string context = "loading SentencePiece model " + spmPath;
    if (extraIds < 0 || extraIds > kMaxExtraIds)
        throw Error(context + ": extra ids must be in [0, " + std::to_string(kMaxExtraIds) + "], got "
            + std::to_string(extraIds));
    std::error_code ec;
    if (!std::filesystem::exists(spmPath, ec))
        throw Error(context + ": no such file");
    if (!std::filesystem::is_regular_file(spmPath, ec))
        throw Error(context + ": not a regular file");

    try {
        m_sp = std::make_unique<SentencePieceModel>(spmPath);
    } catch (const Error& e) {
        std::string why = e.what();
        if (why.rfind(spmPath + ": ", 0) == 0)
            why.erase(0, spmPath.size() + 2);
        if (why.find("ParseFromArray") != std::string::npos)
            why = "not a SentencePiece model (the file does not parse as a ModelProto)";
        while (!why.empty() && (why.back() == ' ' || why.back() == '\n'))
            why.pop_back();
        throw Error(context + ": " + why);
    }
    m_spSize = m_sp->pieceSize();
    if (m_spSize <= 0)
        throw Error(context + ": the model has no pieces");

    // T5's fixed special ids (pad 0, eos 1, unk 2) must be what this model says they are.
    const struct {
        const char* piece;
        std::int64_t id;
    } expected[] = { { kPadPiece, padId() }, { kEosPiece, eosId() }, { kUnkPiece, unkId() } };
    for (const auto& e : expected) {
        if (m_sp->pieceToId(e.piece) != e.id || e.id >= m_spSize
            || m_sp->idToPiece(static_cast<int>(e.id)) != e.piece)
            throw Error(context + ": not a T5 SentencePiece model (" + e.piece + " is not id "
                + std::to_string(e.id) + ")");
    }
}

T5Tokenizer::~T5Tokenizer() = default;
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;

std::int64_t T5Tokenizer::vocabSize() const
{
    return m_spSize + m_extraIds;
}

std::int64_t T5Tokenizer::sentinelId(int n) const
{
    if (n < 0 || n >= m_extraIds)
        throw Error("sentinel <extra_id_" + std::to_string(n) + "> does not exist ("
            + std::to_string(m_extraIds) + " extra ids)");
    return vocabSize() - 1 - n;
}

bool T5Tokenizer::isSpecial(std::int64_t id) const
{
    return id == padId() || id == eosId() || id == unkId() || (id >= m_spSize && id < vocabSize());
}

std::string T5Tokenizer::idToPiece(std::int64_t id) const
{
    if (id < 0 || id >= vocabSize())
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, "
            + std::to_string(vocabSize()) + ")");
    if (id < m_spSize)
        return m_sp->idToPiece(static_cast<int>(id));
    return kSentinelPrefix + std::to_string(vocabSize() - 1 - id) + ">";
}

std::vector<std::int64_t> T5Tokenizer::encode(const std::string& text, bool addEos) const
{
    // 1. Cut the text at the special tokens (HF's added-tokens trie). No special token is a prefix of
    //    another and each contains '<' only at its start, so a left-to-right scan finds HF's matches.
    const auto matchSpecial = [&](std::size_t pos, std::size_t& length) -> std::int64_t {
        for (const auto& [piece, id] : { std::pair<const char*, std::int64_t> { kEosPiece, eosId() },
                 { kPadPiece, padId() }, { kUnkPiece, unkId() } }) {
            if (text.compare(pos, std::char_traits<char>::length(piece), piece) == 0) {
                length = std::char_traits<char>::length(piece);
                return id;
            }
        }
        const std::size_t prefixLength = std::char_traits<char>::length(kSentinelPrefix);
        if (text.compare(pos, prefixLength, kSentinelPrefix) != 0)
            return -1;
        std::size_t end = pos + prefixLength;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9' && end - pos - prefixLength <= 6)
            ++end;
        const std::size_t digits = end - pos - prefixLength;
        if (digits == 0 || digits > 6 || end >= text.size() || text[end] != '>')
            return -1;
        if (digits > 1 && text[pos + prefixLength] == '0') // "<extra_id_05>" is not a registered token
            return -1;
        const int n = std::stoi(text.substr(pos + prefixLength, digits));
        if (n >= m_extraIds)
            return -1;
        length = end + 1 - pos;
        return vocabSize() - 1 - n;
    };

    std::vector<Segment> segments;
    std::size_t textStart = 0;
    for (std::size_t pos = text.find('<'); pos != std::string::npos;) {
        std::size_t length = 0;
        const std::int64_t id = matchSpecial(pos, length);
        if (id < 0) {
            pos = text.find('<', pos + 1);
            continue;
        }
        if (pos > textStart)
            segments.push_back({ text.substr(textStart, pos - textStart), -1 });
        segments.push_back({ text.substr(pos, length), id });
        textStart = pos + length;
        pos = text.find('<', textStart);
    }
    if (textStart < text.size())
        segments.push_back({ text.substr(textStart), -1 });

    // 2. The special tokens are plain strings in T5Tokenizer (not AddedToken), so HF strips the
    //    whitespace on both sides of each of them.
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (segments[i].specialId < 0)
            continue;
        if (i + 1 < segments.size() && segments[i + 1].specialId < 0)
            lstripPython(segments[i + 1].text);
        if (i > 0 && segments[i - 1].specialId < 0)
            rstripPython(segments[i - 1].text);
    }

    // 3. SentencePiece on each piece of text on its own.
    std::vector<std::int64_t> ids;
    std::vector<int> pieceIds;
    for (const auto& segment : segments) {
        if (segment.specialId >= 0) {
            ids.push_back(segment.specialId);
            continue;
        }
        if (segment.text.empty())
            continue;
        pieceIds.clear();
        std::string error;
        if (!m_sp->encode(segment.text, &pieceIds, &error))
            throw Error("tokenizing text: " + error);
        ids.insert(ids.end(), pieceIds.begin(), pieceIds.end());
    }

    // 4. HF's _add_eos_if_not_present.
    if (addEos && (ids.empty() || ids.back() != eosId()))
        ids.push_back(eosId());
    return ids;
}

std::string T5Tokenizer::decode(const std::vector<std::int64_t>& ids, bool skipSpecialTokens) const
{
    // HF's T5Tokenizer.convert_tokens_to_string over convert_ids_to_tokens(ids, skip_special_tokens).
    std::string out;
    std::vector<int> run; // ordinary SentencePiece ids since the last special token
    std::string decoded;
    const auto decodeRun = [&]() -> const std::string& {
        decoded.clear();
        if (!run.empty()) {
            std::string error;
            if (!m_sp->decode(run, &decoded, &error))
                throw Error("decoding ids: " + error);
            run.clear();
        }
        return decoded;
    };

    bool previousIsSpecial = false;
    for (const std::int64_t id : ids) {
        if (id < 0 || id >= vocabSize())
            throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, "
                + std::to_string(vocabSize()) + ")");
        if (!isSpecial(id)) {
            run.push_back(static_cast<int>(id));
            previousIsSpecial = false;
            continue;
        }
        if (skipSpecialTokens)
            continue;
        if (!previousIsSpecial)
            out += ' ';
        out += decodeRun();
        out += idToPiece(id);
        previousIsSpecial = true;
    }
    out += decodeRun();

    lstripPython(out);
    rstripPython(out);
    cleanUpTokenization(out);
    return out;
}

std::vector<std::int64_t> T5Tokenizer::withSpecialTokens(std::vector<std::int64_t> ids) const
{
    if (ids.empty() || ids.back() != eosId())
        ids.push_back(eosId());
    return ids;
}

} // namespace ladder
