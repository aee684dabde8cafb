#include "data/WordNet.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "util/Error.h"

namespace ladder {

namespace {

// lexnames(5) of WordNet 3.0.
const std::array<std::string, kWordNetLexFileCount> kLexnames = {
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
};

constexpr const char* kWhitespace = " \t\r\n\v\f";

std::string trimmed(const std::string& text)
{
    const auto begin = text.find_first_not_of(kWhitespace);
    if (begin == std::string::npos)
        return {};
    const auto end = text.find_last_not_of(kWhitespace);
    return text.substr(begin, end - begin + 1);
}

// Runs of whitespace -> one space, ends trimmed.
std::string collapsed(const std::string& text)
{
    std::string out;
    out.reserve(text.size());
    bool space = false;
    for (const char c : text) {
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
            space = true;
            continue;
        }
        if (space && !out.empty())
            out.push_back(' ');
        space = false;
        out.push_back(c);
    }
    return out;
}

bool allDigits(const std::string& s, bool hex)
{
    if (s.empty())
        return false;
    for (const unsigned char c : s) {
        const bool ok = hex ? std::isxdigit(c) != 0 : std::isdigit(c) != 0;
        if (!ok)
            return false;
    }
    return true;
}

// Reads the fields of one line (the part before the gloss) with a location for errors.
class FieldReader {
public:
    FieldReader(const std::string& head, std::string where)
        : m_where(std::move(where))
    {
        std::istringstream in(head);
        std::string field;
        while (in >> field)
            m_fields.push_back(field);
    }

    bool atEnd() const { return m_next >= m_fields.size(); }
    std::size_t remaining() const { return m_fields.size() - m_next; }

    const std::string& next(const char* what)
    {
        if (atEnd())
            throw Error(m_where + ": the line ends before " + what);
        return m_fields[m_next++];
    }

    long number(const char* what, bool hex)
    {
        const auto& field = next(what);
        if (!allDigits(field, hex))
            throw Error(m_where + ": " + what + " '" + field + "' is not a" + (hex ? " hexadecimal" : "")
                + " number");
        return std::strtol(field.c_str(), nullptr, hex ? 16 : 10);
    }

    [[noreturn]] void fail(const std::string& message) const { throw Error(m_where + ": " + message); }

private:
    std::vector<std::string> m_fields;
    std::size_t m_next = 0;
    std::string m_where;
};

// Removes an adjective's syntactic marker: "galore(ip)" -> "galore".
std::string withoutMarker(const std::string& word)
{
    for (const char* marker : { "(a)", "(p)", "(ip)" }) {
        const std::string m(marker);
        if (word.size() > m.size() && word.compare(word.size() - m.size(), m.size(), m) == 0)
            return word.substr(0, word.size() - m.size());
    }
    return word;
}

// Splits a gloss into its definition (before the first quote) and its quoted examples. WordNet's
// glosses are not always balanced: an unclosed quote runs to the end of the gloss; attributions after a
// closing quote ("- John Galsworthy") are not part of an example.
void splitGloss(const std::string& gloss, std::string& definition, std::vector<std::string>& examples)
{
    const auto firstQuote = gloss.find('"');
    std::string def = gloss.substr(0, firstQuote);
    // Drop the separators between the definition and the examples.
    while (!def.empty() && (def.back() == ';' || def.back() == ' ' || def.back() == '\t'))
        def.pop_back();
    definition = collapsed(def);
    examples.clear();
    auto pos = firstQuote;
    while (pos != std::string::npos) {
        const auto close = gloss.find('"', pos + 1);
        const auto text = collapsed(
            gloss.substr(pos + 1, close == std::string::npos ? std::string::npos : close - pos - 1));
        if (!text.empty())
            examples.push_back(text);
        if (close == std::string::npos)
            break;
        pos = gloss.find('"', close + 1);
    }
}

Synset parseLine(const std::string& line, WordNetPos pos, const std::string& where)
{
    const auto bar = line.find('|');
    if (bar == std::string::npos)
        throw Error(where + ": no gloss (the '|' separator is missing)");
    FieldReader f(line.substr(0, bar), where);

    Synset s;
    s.pos = pos;
    const auto& offsetField = f.next("synset_offset");
    if (offsetField.size() != 8 || !allDigits(offsetField, false))
        f.fail("synset_offset '" + offsetField + "' is not an 8-digit number");
    s.offset = static_cast<std::uint32_t>(std::strtoul(offsetField.c_str(), nullptr, 10));

    const auto lexFile = f.number("lex_filenum", false);
    if (lexFile < 0 || lexFile >= kWordNetLexFileCount)
        f.fail("lex_filenum " + std::to_string(lexFile) + " is outside 00..44");
    s.lexFileNumber = static_cast<int>(lexFile);
    s.lexname = kLexnames[static_cast<std::size_t>(lexFile)];

    const auto& type = f.next("ss_type");
    const std::string allowed = pos == WordNetPos::Adjective ? "as" : std::string(1, posLetter(pos));
    if (type.size() != 1 || allowed.find(type[0]) == std::string::npos)
        f.fail("ss_type '" + type + "' does not belong in data." + toString(pos));
    s.ssType = type[0];

    const auto wordCount = f.number("w_cnt", true);
    if (wordCount < 1)
        f.fail("w_cnt is 0: a synset has at least one word");
    for (long i = 0; i < wordCount; ++i) {
        std::string word = withoutMarker(f.next("a word"));
        f.number("lex_id", true);
        for (auto& c : word)
            if (c == '_')
                c = ' ';
        s.lemmas.push_back(std::move(word));
    }

    const auto pointerCount = f.number("p_cnt", false);
    for (long i = 0; i < pointerCount; ++i) {
        f.next("a pointer symbol");
        const auto& target = f.next("a pointer's synset_offset");
        if (target.size() != 8 || !allDigits(target, false))
            f.fail("pointer " + std::to_string(i + 1) + ": synset_offset '" + target
                + "' is not an 8-digit number");
        const auto& targetPos = f.next("a pointer's pos");
        if (targetPos.size() != 1 || std::string("nvasr").find(targetPos[0]) == std::string::npos)
            f.fail(
                "pointer " + std::to_string(i + 1) + ": pos '" + targetPos + "' is not one of n, v, a, s, r");
        const auto& sourceTarget = f.next("a pointer's source/target");
        if (sourceTarget.size() != 4 || !allDigits(sourceTarget, true))
            f.fail("pointer " + std::to_string(i + 1) + ": source/target '" + sourceTarget
                + "' is not 4 hexadecimal digits");
    }

    // Verbs list their sentence frames: f_cnt, then "+ f_num w_num" for each.
    if (pos == WordNetPos::Verb && !f.atEnd()) {
        const auto frameCount = f.number("f_cnt", false);
        for (long i = 0; i < frameCount; ++i) {
            if (f.next("a frame's '+'") != "+")
                f.fail("frame " + std::to_string(i + 1) + " does not start with '+'");
            f.number("f_num", false);
            f.number("w_num", true);
        }
    }
    if (!f.atEnd())
        f.fail(std::to_string(f.remaining()) + " unexpected field(s) before the gloss");

    s.gloss = trimmed(line.substr(bar + 1));
    splitGloss(s.gloss, s.definition, s.examples);
    return s;
}

bool isFile(const std::string& path)
{
    struct stat st { };
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

constexpr std::array<WordNetPos, 4> kFileOrder
    = { WordNetPos::Noun, WordNetPos::Verb, WordNetPos::Adjective, WordNetPos::Adverb };

} // namespace

const char* toString(WordNetPos pos)
{
    switch (pos) {
    case WordNetPos::Noun:
        return "noun";
    case WordNetPos::Verb:
        return "verb";
    case WordNetPos::Adjective:
        return "adj";
    case WordNetPos::Adverb:
        return "adv";
    }
    return "?";
}

char posLetter(WordNetPos pos)
{
    switch (pos) {
    case WordNetPos::Noun:
        return 'n';
    case WordNetPos::Verb:
        return 'v';
    case WordNetPos::Adjective:
        return 'a';
    case WordNetPos::Adverb:
        return 'r';
    }
    return '?';
}

const std::string& wordNetLexname(int lexFileNumber)
{
    if (lexFileNumber < 0 || lexFileNumber >= kWordNetLexFileCount)
        throw Error("WordNet lex_filenum " + std::to_string(lexFileNumber) + " is outside 0..44");
    return kLexnames[static_cast<std::size_t>(lexFileNumber)];
}

std::string Synset::id() const
{
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "%c%08u", posLetter(pos), static_cast<unsigned>(offset));
    return buffer;
}

std::vector<Synset> readWordNetDataFile(const std::string& path, WordNetPos pos)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(path + ": cannot open the WordNet data file");
    std::vector<Synset> synsets;
    std::string line;
    std::size_t lineNumber = 0;
    while (std::getline(in, line)) {
        ++lineNumber;
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.rfind("  ", 0) == 0 || trimmed(line).empty())
            continue; // license header, blank line
        synsets.push_back(parseLine(line, pos, path + ":" + std::to_string(lineNumber)));
    }
    if (in.bad())
        throw Error(path + ": read error after line " + std::to_string(lineNumber));
    return synsets;
}

std::string defaultWordNetDir()
{
    if (const char* env = std::getenv("WNSEARCHDIR"); env && *env)
        return env;
    return "/usr/share/wordnet";
}

bool wordNetAvailable(const std::string& dir)
{
    for (const auto pos : kFileOrder)
        if (!isFile(dir + "/data." + toString(pos)))
            return false;
    return true;
}

std::vector<Synset> loadWordNet(const std::string& dir)
{
    std::vector<Synset> all;
    for (const auto pos : kFileOrder) {
        const auto path = dir + "/data." + toString(pos);
        if (!isFile(path))
            throw Error("WordNet not found: " + path
                + " is missing (install the Debian package wordnet-base, or set WNSEARCHDIR)");
        auto part = readWordNetDataFile(path, pos);
        all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
    return all;
}

std::vector<std::string> wordNetCorpus(const std::vector<Synset>& synsets)
{
    std::vector<std::string> lines;
    lines.reserve(synsets.size() * 2);
    for (const auto& s : synsets) {
        if (!s.definition.empty())
            lines.push_back(s.definition);
        for (const auto& e : s.examples)
            lines.push_back(e);
    }
    return lines;
}

} // namespace ladder
