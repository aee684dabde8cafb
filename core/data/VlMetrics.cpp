#include "data/VlMetrics.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "util/Error.h"

namespace ladder::vlmetrics {

namespace {

// ---------------------------------------------------------------------------------------------------------
// Text helpers with Python's str semantics on UTF-8.

// Byte length of the whitespace character (Python's str.isspace) at `i`, 0 when there is none.
std::size_t spaceLengthAt(const std::string& s, std::size_t i)
{
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 == ' ' || (b0 >= 0x09 && b0 <= 0x0d) || (b0 >= 0x1c && b0 <= 0x1f))
        return 1;
    if (b0 < 0x80 || i + 1 >= s.size())
        return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xc2 && (b1 == 0x85 || b1 == 0xa0)) // U+0085, U+00A0
        return 2;
    if (i + 2 >= s.size())
        return 0;
    const auto b2 = static_cast<unsigned char>(s[i + 2]);
    if (b0 == 0xe1 && b1 == 0x9a && b2 == 0x80) // U+1680
        return 3;
    if (b0 == 0xe2 && b1 == 0x80
        && (b2 <= 0x8a || b2 == 0xa8 || b2 == 0xa9 || b2 == 0xaf)) // U+2000..200A, 2028,
        return 3; //                                                                        2029, 202F
    if (b0 == 0xe2 && b1 == 0x81 && b2 == 0x9f) // U+205F
        return 3;
    if (b0 == 0xe3 && b1 == 0x80 && b2 == 0x80) // U+3000
        return 3;
    return 0;
}

// Python's str.split(): the runs between whitespace, none empty.
std::vector<std::string> splitWhitespace(const std::string& s)
{
    std::vector<std::string> words;
    std::string current;
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t space = spaceLengthAt(s, i);
        if (space > 0) {
            if (!current.empty())
                words.push_back(std::move(current));
            current.clear();
            i += space;
        } else {
            current += s[i++];
        }
    }
    if (!current.empty())
        words.push_back(std::move(current));
    return words;
}

// Python's str.strip().
std::string strip(const std::string& s)
{
    std::size_t begin = 0;
    std::size_t end = 0; // one past the last non-space byte
    bool seenText = false;
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t space = spaceLengthAt(s, i);
        if (space > 0) {
            i += space;
            continue;
        }
        if (!seenText) {
            begin = i;
            seenText = true;
        }
        ++i;
        end = i;
    }
    return seenText ? s.substr(begin, end - begin) : std::string();
}

// ASCII and Latin-1 (U+00C0..U+00DE but U+00D7) lowercase; other characters unchanged.
std::string lower(const std::string& s)
{
    std::string out = s;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const auto b = static_cast<unsigned char>(out[i]);
        if (b >= 'A' && b <= 'Z') {
            out[i] = static_cast<char>(b + ('a' - 'A'));
        } else if (b == 0xc3 && i + 1 < out.size()) {
            const auto next = static_cast<unsigned char>(out[i + 1]);
            if (next >= 0x80 && next <= 0x9e && next != 0x97)
                out[i + 1] = static_cast<char>(next + 0x20);
            ++i;
        }
    }
    return out;
}

bool isDigit(char c)
{
    return c >= '0' && c <= '9';
}

void replaceAll(std::string& s, const std::string& from, const std::string& to)
{
    std::size_t at = 0;
    while ((at = s.find(from, at)) != std::string::npos) {
        s.replace(at, from.size(), to);
        at += to.size();
    }
}

std::string joinWords(const std::vector<std::string>& words, char separator = ' ')
{
    std::string out;
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i > 0)
            out += separator;
        out += words[i];
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------------
// VQA: vqaEval.py's tables.

const std::unordered_map<std::string, std::string>& vqaContractions()
{
    // VQAEval.contractions, re-typed (the keys with capitals never match: the text is lowercased first).
    static const std::unordered_map<std::string, std::string> table = {
        { "aint", "ain't" },
        { "arent", "aren't" },
        { "cant", "can't" },
        { "couldve", "could've" },
        { "couldnt", "couldn't" },
        { "couldn'tve", "couldn't've" },
        { "couldnt've", "couldn't've" },
        { "didnt", "didn't" },
        { "doesnt", "doesn't" },
        { "dont", "don't" },
        { "hadnt", "hadn't" },
        { "hadnt've", "hadn't've" },
        { "hadn'tve", "hadn't've" },
        { "hasnt", "hasn't" },
        { "havent", "haven't" },
        { "hed", "he'd" },
        { "hed've", "he'd've" },
        { "he'dve", "he'd've" },
        { "hes", "he's" },
        { "howd", "how'd" },
        { "howll", "how'll" },
        { "hows", "how's" },
        { "Id've", "I'd've" },
        { "I'dve", "I'd've" },
        { "Im", "I'm" },
        { "Ive", "I've" },
        { "isnt", "isn't" },
        { "itd", "it'd" },
        { "itd've", "it'd've" },
        { "it'dve", "it'd've" },
        { "itll", "it'll" },
        { "let's", "let's" },
        { "maam", "ma'am" },
        { "mightnt", "mightn't" },
        { "mightnt've", "mightn't've" },
        { "mightn'tve", "mightn't've" },
        { "mightve", "might've" },
        { "mustnt", "mustn't" },
        { "mustve", "must've" },
        { "neednt", "needn't" },
        { "notve", "not've" },
        { "oclock", "o'clock" },
        { "oughtnt", "oughtn't" },
        { "ow's'at", "'ow's'at" },
        { "'ows'at", "'ow's'at" },
        { "'ow'sat", "'ow's'at" },
        { "shant", "shan't" },
        { "shed've", "she'd've" },
        { "she'dve", "she'd've" },
        { "she's", "she's" },
        { "shouldve", "should've" },
        { "shouldnt", "shouldn't" },
        { "shouldnt've", "shouldn't've" },
        { "shouldn'tve", "shouldn't've" },
        { "somebody'd", "somebodyd" }, // sic: the official table maps this way round
        { "somebodyd've", "somebody'd've" },
        { "somebody'dve", "somebody'd've" },
        { "somebodyll", "somebody'll" },
        { "somebodys", "somebody's" },
        { "someoned", "someone'd" },
        { "someoned've", "someone'd've" },
        { "someone'dve", "someone'd've" },
        { "someonell", "someone'll" },
        { "someones", "someone's" },
        { "somethingd", "something'd" },
        { "somethingd've", "something'd've" },
        { "something'dve", "something'd've" },
        { "somethingll", "something'll" },
        { "thats", "that's" },
        { "thered", "there'd" },
        { "thered've", "there'd've" },
        { "there'dve", "there'd've" },
        { "therere", "there're" },
        { "theres", "there's" },
        { "theyd", "they'd" },
        { "theyd've", "they'd've" },
        { "they'dve", "they'd've" },
        { "theyll", "they'll" },
        { "theyre", "they're" },
        { "theyve", "they've" },
        { "twas", "'twas" },
        { "wasnt", "wasn't" },
        { "wed've", "we'd've" },
        { "we'dve", "we'd've" },
        { "weve", "we've" },
        { "werent", "weren't" },
        { "whatll", "what'll" },
        { "whatre", "what're" },
        { "whats", "what's" },
        { "whatve", "what've" },
        { "whens", "when's" },
        { "whered", "where'd" },
        { "wheres", "where's" },
        { "whereve", "where've" },
        { "whod", "who'd" },
        { "whod've", "who'd've" },
        { "who'dve", "who'd've" },
        { "wholl", "who'll" },
        { "whos", "who's" },
        { "whove", "who've" },
        { "whyll", "why'll" },
        { "whyre", "why're" },
        { "whys", "why's" },
        { "wont", "won't" },
        { "wouldve", "would've" },
        { "wouldnt", "wouldn't" },
        { "wouldnt've", "wouldn't've" },
        { "wouldn'tve", "wouldn't've" },
        { "yall", "y'all" },
        { "yall'll", "y'all'll" },
        { "y'allll", "y'all'll" },
        { "yall'd've", "y'all'd've" },
        { "y'alld've", "y'all'd've" },
        { "y'all'dve", "y'all'd've" },
        { "youd", "you'd" },
        { "youd've", "you'd've" },
        { "you'dve", "you'd've" },
        { "youll", "you'll" },
        { "youre", "you're" },
        { "youve", "you've" },
    };
    return table;
}

const std::unordered_map<std::string, std::string>& vqaNumberWords()
{
    static const std::unordered_map<std::string, std::string> table = {
        { "none", "0" },
        { "zero", "0" },
        { "one", "1" },
        { "two", "2" },
        { "three", "3" },
        { "four", "4" },
        { "five", "5" },
        { "six", "6" },
        { "seven", "7" },
        { "eight", "8" },
        { "nine", "9" },
        { "ten", "10" },
    };
    return table;
}

// VQAEval.punct, in its order (the order matters: each is replaced in turn).
constexpr const char* kVqaPunctuation[] = { ";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_",
    "-", ">", "<", "@", "`", ",", "?", "!" };

// re.sub(periodStrip, "", text, re.UNICODE): re.UNICODE (32) lands in sub's count argument.
constexpr int kPeriodStripCount = 32;

// The \n, \t and strip step VQAEval.evaluate applies to every answer and the prediction.
std::string vqaClean(std::string text)
{
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::replace(text.begin(), text.end(), '\t', ' ');
    return strip(text);
}

// VQAEval.commaStrip: (\d)(\,)(\d) anywhere.
bool hasDigitCommaDigit(const std::string& text)
{
    for (std::size_t i = 1; i + 1 < text.size(); ++i)
        if (text[i] == ',' && isDigit(text[i - 1]) && isDigit(text[i + 1]))
            return true;
    return false;
}

std::string processPunctuation(const std::string& inText)
{
    std::string outText = inText;
    const bool commaHit = hasDigitCommaDigit(inText);
    for (const char* p : kVqaPunctuation) {
        const std::string punct = p;
        if (inText.find(punct + " ") != std::string::npos || inText.find(" " + punct) != std::string::npos
            || commaHit)
            replaceAll(outText, punct, "");
        else
            replaceAll(outText, punct, " ");
    }
    // periodStrip "(?!<=\d)(\.)(?!\d)": the first group is a lookahead (not a lookbehind) that a '.' always
    // passes, so this removes a '.' not followed by a digit; matched on the text before any removal.
    std::string stripped;
    stripped.reserve(outText.size());
    int removed = 0;
    for (std::size_t i = 0; i < outText.size(); ++i) {
        const bool followedByDigit = i + 1 < outText.size() && isDigit(outText[i + 1]);
        if (outText[i] == '.' && !followedByDigit && removed < kPeriodStripCount) {
            ++removed;
            continue;
        }
        stripped += outText[i];
    }
    return stripped;
}

std::string processDigitArticle(const std::string& inText)
{
    std::vector<std::string> outText;
    for (std::string word : splitWhitespace(lower(inText))) {
        const auto number = vqaNumberWords().find(word);
        if (number != vqaNumberWords().end())
            word = number->second;
        if (word != "a" && word != "an" && word != "the")
            outText.push_back(word);
    }
    for (std::string& word : outText) {
        const auto contraction = vqaContractions().find(word);
        if (contraction != vqaContractions().end())
            word = contraction->second;
    }
    return joinWords(outText);
}

// ---------------------------------------------------------------------------------------------------------
// Captioning: the PTB tokenizer subset.

bool isAsciiAlpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool isAsciiAlnum(char c)
{
    return isAsciiAlpha(c) || isDigit(c);
}

// A byte of a word: ASCII letters and digits, '_', and every byte of a non-ASCII character (letters for
// the captions this is meant for; the quotes and dashes CoreNLP treats as punctuation are mapped to ASCII
// before the scan).
bool isWordByte(char c)
{
    return isAsciiAlnum(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}

// Unicode punctuation PTBTokenizer normalises to ASCII forms, as the scan's ASCII equivalents.
std::string mapUnicodePunctuation(const std::string& text)
{
    static const std::pair<const char*, const char*> kMap[] = {
        { "\xe2\x80\x98", "`" }, // U+2018 left single quote -> `
        { "\xe2\x80\x99", "'" }, // U+2019 right single quote -> '
        { "\xe2\x80\x9c", "\"" }, // U+201C left double quote
        { "\xe2\x80\x9d", "\"" }, // U+201D right double quote
        { "\xe2\x80\x93", " -- " }, // U+2013 en dash -> --
        { "\xe2\x80\x94", " -- " }, // U+2014 em dash -> --
        { "&amp;", "&" }, // normalizeAmpersandEntity
        { "&lt;", "<" },
        { "&gt;", ">" },
    };
    std::string out = text;
    for (const auto& [from, to] : kMap)
        replaceAll(out, from, to);
    return out;
}

// Words PTBLexer keeps a final period on (the abbreviations probed against CoreNLP 3.4.1; "no." is not).
const std::unordered_set<std::string>& periodAbbreviations()
{
    static const std::unordered_set<std::string> words = {
        "mr",
        "mrs",
        "ms",
        "messrs",
        "dr",
        "prof",
        "st",
        "mt",
        "ave",
        "ft",
        "jr",
        "sr",
        "co",
        "inc",
        "corp",
        "ltd",
        "bros",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "gov",
        "sen",
        "rep",
        "rev",
        "hon",
        "etc",
        "vs",
        "al",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    };
    return words;
}

// The words PTBLexer takes as a new sentence after "a." (a capital first, the rest in any case, and the
// whole whitespace-delimited chunk: "The," is not one), probed against CoreNLP 3.4.1.
bool isSentenceStart(const std::string& chunk)
{
    static const std::unordered_set<std::string> words
        = { "a", "an", "the", "this", "that", "these", "there", "here", "it", "he", "she", "her", "we",
              "they", "their", "our", "you", "in", "at", "some", "many", "one", "what", "when", "but", "so",
              "if", "as", "while", "since", "after", "then", "now", "however", "other", "such" };
    return !chunk.empty() && chunk[0] >= 'A' && chunk[0] <= 'Z' && words.count(lower(chunk)) > 0;
}

// "u.s", "a.m", "e.g": letters separated by single periods (a dotted acronym before its final period).
bool isDottedAcronym(const std::string& word)
{
    if (word.size() < 3)
        return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        const bool letterSlot = i % 2 == 0;
        if (letterSlot ? !isAsciiAlpha(word[i]) : word[i] != '.')
            return false;
    }
    return word.size() % 2 == 1;
}

bool keepsFinalPeriod(const std::string& word)
{
    if (word.size() == 1 && isAsciiAlpha(word[0]))
        return true;
    return isDottedAcronym(word) || periodAbbreviations().count(word) > 0;
}

// The letters of `text` from `at` (a run of ASCII letters).
std::size_t letterRunEnd(const std::string& text, std::size_t at)
{
    while (at < text.size() && isAsciiAlpha(text[at]))
        ++at;
    return at;
}

bool isVowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

// The clitic after an apostrophe at `apostrophe` PTB splits off as its own token ('s 're 've 'll 'd 'm),
// or "" when there is none: the letters after it must be one of those and end the word.
std::string cliticAt(const std::string& text, std::size_t apostrophe)
{
    const std::size_t end = letterRunEnd(text, apostrophe + 1);
    if (end < text.size() && isWordByte(text[end]))
        return {};
    const std::string suffix = text.substr(apostrophe + 1, end - apostrophe - 1);
    if (suffix == "s" || suffix == "re" || suffix == "ve" || suffix == "ll" || suffix == "d" || suffix == "m")
        return "'" + suffix;
    return {};
}

// Whether an apostrophe at `at` (inside a word, letters on both sides) stays inside it: "o'clock",
// "d'angelo", "ma'am"; not "x'y", "dog's", "can't".
bool keepsInnerApostrophe(const std::string& text, std::size_t wordBegin, std::size_t at)
{
    if (at == wordBegin || !isAsciiAlpha(text[at - 1]) || at + 1 >= text.size()
        || !isAsciiAlpha(text[at + 1]))
        return false;
    if (!cliticAt(text, at).empty())
        return false;
    const std::size_t suffixEnd = letterRunEnd(text, at + 1);
    if (suffixEnd - at - 1 < 2)
        return false;
    std::size_t prefixBegin = at;
    while (prefixBegin > wordBegin && isAsciiAlpha(text[prefixBegin - 1]))
        --prefixBegin;
    const std::size_t prefixLength = at - prefixBegin;
    if (prefixLength == 1)
        return text[prefixBegin] != 'i' && text[prefixBegin] != 'y';
    return isVowel(text[at - 1]) && isVowel(text[at + 1]);
}

// The end of the word starting at `begin` (a word byte, or '.'/'#'/'@' before one): word bytes joined by
// '-', '/', '.' (between ASCII letters/digits), '&' (between letters), ',' and ':' (between digits), and
// the apostrophes keepsInnerApostrophe keeps.
std::size_t wordEnd(const std::string& text, std::size_t begin)
{
    std::size_t i = begin + 1;
    while (i < text.size()) {
        const char c = text[i];
        if (isWordByte(c)) {
            ++i;
            continue;
        }
        if (i + 1 >= text.size())
            break;
        const char before = text[i - 1];
        const char after = text[i + 1];
        bool joins = false;
        if (c == '-' || c == '/')
            joins = isWordByte(before) && isWordByte(after);
        else if (c == '.')
            joins = isAsciiAlnum(before) && isAsciiAlnum(after);
        else if (c == '&')
            joins = isAsciiAlpha(before) && isAsciiAlpha(after);
        else if (c == ',' || c == ':')
            joins = isDigit(before) && isDigit(after);
        else if (c == '\'')
            joins = keepsInnerApostrophe(text, begin, i);
        if (!joins)
            break;
        i += 1;
    }
    return i;
}

// PTB's split words.
bool splitSpecialWord(const std::string& word, std::vector<std::string>& out)
{
    static const std::pair<const char*, std::pair<const char*, const char*>> kSplits[] = {
        { "cannot", { "can", "not" } },
        { "gonna", { "gon", "na" } },
        { "gotta", { "got", "ta" } },
        { "wanna", { "wan", "na" } },
        { "lemme", { "lem", "me" } },
        { "gimme", { "gim", "me" } },
    };
    for (const auto& [whole, parts] : kSplits) {
        if (word == whole) {
            out.emplace_back(parts.first);
            out.emplace_back(parts.second);
            return true;
        }
    }
    return false;
}

// PTBTokenizer's tokens for one lowercased whitespace-free chunk (before tokenizer.py's filter).
// `beforeSentenceStart`: the next chunk is a capitalised sentence-start word, which makes a single letter's
// period a sentence end ("a. The" -> "a" "." "the").
void tokenizeChunk(const std::string& text, bool beforeSentenceStart, std::vector<std::string>& out)
{
    std::size_t i = 0;
    const std::size_t n = text.size();
    while (i < n) {
        const char c = text[i];
        const bool startsWord = isWordByte(c) || (c == '.' && i + 1 < n && isDigit(text[i + 1]))
            || ((c == '#' || c == '@') && i + 1 < n && isAsciiAlpha(text[i + 1]));
        if (startsWord) {
            std::size_t end = wordEnd(text, i);
            std::string word = text.substr(i, end - i);
            if (word == "y" && text.compare(end, 4, "'all") == 0) { // "y'all" -> "y'" "all"
                out.emplace_back("y'");
                i = end + 1;
                continue;
            }
            // "n't": "isn't" -> "is" "n't", "can't" -> "ca" "n't".
            const bool notClitic = end + 1 < n && text[end] == '\'' && text[end + 1] == 't'
                && (end + 2 >= n || !isWordByte(text[end + 2])) && word.size() > 1 && word.back() == 'n';
            if (notClitic) {
                out.push_back(word.substr(0, word.size() - 1));
                out.emplace_back("n't");
                i = end + 2;
                continue;
            }
            // A final period on an abbreviation stays ("mr.", "u.s.", "a."; "etc.." is "etc." ".").
            const bool sentenceEnd = beforeSentenceStart && word.size() == 1 && end + 1 == n;
            if (end < n && text[end] == '.' && keepsFinalPeriod(word) && !sentenceEnd) {
                out.push_back(word + ".");
                i = end + 1;
                continue;
            }
            if (!splitSpecialWord(word, out))
                out.push_back(word);
            i = end;
            continue;
        }
        if (c == '\'') {
            // A clitic after a word or on its own ("dog's", "'s"); "'tis" and "'twas"; else a quote.
            const std::string clitic = cliticAt(text, i);
            if (!clitic.empty()) {
                out.push_back(clitic);
                i += clitic.size();
                continue;
            }
            const std::size_t end = letterRunEnd(text, i + 1);
            const std::string rest = text.substr(i + 1, end - i - 1);
            const bool wordEnds = end >= n || !isWordByte(text[end]);
            if ((rest == "tis" || rest == "twas") && wordEnds) {
                out.emplace_back("'t");
                out.push_back(rest.substr(1));
                i = end;
                continue;
            }
            if (wordEnds && (rest == "cause" || rest == "em" || rest == "til" || rest == "till")) {
                out.push_back("'" + rest);
                i = end;
                continue;
            }
            // A year or decade: '05, '50, '90s (not '10s, '1990s, '50%).
            if (i + 2 < n && isDigit(text[i + 1]) && isDigit(text[i + 2])) {
                const bool year = i + 3 == n;
                const bool decade
                    = i + 4 == n && text[i + 3] == 's' && text[i + 1] >= '2' && text[i + 2] == '0';
                if (year || decade) {
                    out.push_back(text.substr(i));
                    i = n;
                    continue;
                }
            }
            std::size_t run = i;
            while (run < n && text[run] == '\'')
                ++run;
            out.emplace_back(run - i >= 2 ? "''" : "'");
            i = run;
            continue;
        }
        // Runs of one punctuation character.
        std::size_t run = i;
        while (run < n && text[run] == c)
            ++run;
        const std::size_t length = run - i;
        switch (c) {
        case '.':
            if (length >= 3)
                out.emplace_back("...");
            else
                out.insert(out.end(), length, ".");
            break;
        case '-':
            out.emplace_back(length >= 2 ? "--" : "-");
            break;
        case '!':
        case '?':
            out.emplace_back(text.substr(i, length)); // "!!" and "??" are tokens the filter keeps
            break;
        case '`':
            out.emplace_back(length >= 2 ? "``" : "`");
            break;
        case '"':
            // `` when it opens (at the start or after an opening bracket), else ''; the filter drops both.
            for (std::size_t k = 0; k < length; ++k)
                out.emplace_back(i == 0 ? "``" : "''");
            break;
        case '(':
        case ')':
        case '[':
        case ']':
        case '{':
        case '}': {
            const char* name = c == '(' ? "-lrb-"
                : c == ')'              ? "-rrb-"
                : c == '['              ? "-lsb-"
                : c == ']'              ? "-rsb-"
                : c == '{'              ? "-lcb-"
                                        : "-rcb-";
            out.insert(out.end(), length, name);
            break;
        }
        default:
            // , ; : $ % & * + = < > | ^ \ ~ # @ and the rest: one token per character.
            for (std::size_t k = 0; k < length; ++k)
                out.emplace_back(1, c);
            break;
        }
        i = run;
    }
}

// tokenizer.py's PUNCTUATIONS: the tokens dropped after PTBTokenizer. The uppercase bracket names are in
// the list but never match PTBTokenizer's lowercased output.
bool droppedByCocoTokenizer(const std::string& token)
{
    static const std::unordered_set<std::string> dropped = { "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-",
        "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";" };
    return dropped.count(token) > 0;
}

// ---------------------------------------------------------------------------------------------------------
// Captioning: n-grams as pycocoevalcap's precook counts them.

constexpr int kMaxN = 4;

// The n-grams of one sentence for n = 1..4, each list in first-occurrence order (the order in which
// precook's defaultdict iterates them), keyed by the words joined with ' '.
struct NgramCounts {
    std::array<std::vector<std::pair<std::string, int>>, kMaxN> grams;
    std::unordered_map<std::string, int> index; // key -> position in grams[n - 1]
    int length = 0; // words
};

// pycocoevalcap joins a caption's tokens and splits the string at whitespace: tokens with spaces split.
std::vector<std::string> resplit(const Tokens& tokens)
{
    return splitWhitespace(joinWords(tokens));
}

NgramCounts precook(const Tokens& tokens)
{
    const std::vector<std::string> words = resplit(tokens);
    NgramCounts counts;
    counts.length = static_cast<int>(words.size());
    for (int k = 1; k <= kMaxN; ++k) {
        for (int i = 0; i + k <= counts.length; ++i) {
            std::string key = words[i];
            for (int j = 1; j < k; ++j)
                key += ' ' + words[i + j];
            const auto found = counts.index.find(key);
            if (found == counts.index.end()) {
                counts.index.emplace(key, static_cast<int>(counts.grams[k - 1].size()));
                counts.grams[k - 1].emplace_back(std::move(key), 1);
            } else {
                ++counts.grams[k - 1][found->second].second;
            }
        }
    }
    return counts;
}

int countOf(const NgramCounts& counts, int n, const std::string& key)
{
    const auto found = counts.index.find(key);
    return found == counts.index.end() ? 0 : counts.grams[n][found->second].second;
}

void checkCorpus(const char* what, std::size_t candidates, const std::vector<std::vector<Tokens>>& references)
{
    if (candidates != references.size())
        throw Error(std::string(what) + ": " + std::to_string(candidates) + " candidates but "
            + std::to_string(references.size()) + " reference sets");
    if (candidates == 0)
        throw Error(std::string(what) + ": no images to score");
    for (std::size_t i = 0; i < references.size(); ++i)
        if (references[i].empty())
            throw Error(std::string(what) + ": image " + std::to_string(i) + " has no reference caption");
}

// numpy's pairwise summation of a contiguous double array (np.add.reduce, hence np.mean's sum): plain below
// 8 values, 8 accumulators up to 128, halves above.
double numpyPairwiseSum(const double* a, std::size_t n)
{
    if (n < 8) {
        double sum = 0.0;
        for (std::size_t i = 0; i < n; ++i)
            sum += a[i];
        return sum;
    }
    constexpr std::size_t kBlock = 128;
    if (n <= kBlock) {
        double r[8];
        for (int j = 0; j < 8; ++j)
            r[j] = a[j];
        std::size_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; ++j)
                r[j] += a[i + j];
        double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i)
            sum += a[i];
        return sum;
    }
    std::size_t half = n / 2;
    half -= half % 8;
    return numpyPairwiseSum(a, half) + numpyPairwiseSum(a + half, n - half);
}

// CIDEr's tf-idf vector of one sentence: per n, the weights in first-occurrence order plus a lookup.
struct CiderVector {
    std::array<std::vector<std::pair<std::string, double>>, kMaxN> weights;
    std::array<std::unordered_map<std::string, double>, kMaxN> lookup;
    std::array<double, kMaxN> norm {};
    int length = 0; // the bigram count (counts2vec's "length")
};

} // namespace

std::string normalizeVqaAnswer(const std::string& answer)
{
    return processDigitArticle(processPunctuation(vqaClean(answer)));
}

double vqaSoftAccuracy(const std::string& prediction, const std::vector<std::string>& humanAnswers)
{
    if (humanAnswers.empty())
        return 0.0;
    std::vector<std::string> answers;
    answers.reserve(humanAnswers.size());
    for (const std::string& answer : humanAnswers)
        answers.push_back(vqaClean(answer));
    std::string predicted = vqaClean(prediction);
    // As VQAEval.evaluate: normalised only when the humans did not all give the same text.
    if (std::set<std::string>(answers.begin(), answers.end()).size() > 1) {
        for (std::string& answer : answers)
            answer = processDigitArticle(processPunctuation(answer));
        predicted = processDigitArticle(processPunctuation(predicted));
    }
    double sum = 0.0;
    for (std::size_t i = 0; i < answers.size(); ++i) {
        int matches = 0;
        for (std::size_t j = 0; j < answers.size(); ++j)
            if (j != i && answers[j] == predicted)
                ++matches;
        sum += std::min(1.0, static_cast<double>(matches) / 3.0);
    }
    return sum / static_cast<double>(answers.size());
}

double gqaExactMatch(const std::string& prediction, const std::string& answer)
{
    return lower(strip(prediction)) == lower(strip(answer)) ? 1.0 : 0.0;
}

Tokens tokenizeCaption(const std::string& caption)
{
    std::string text = caption;
    std::replace(text.begin(), text.end(), '\n', ' '); // tokenizer.py's replace('\n', ' ')
    const std::vector<std::string> chunks = splitWhitespace(mapUnicodePunctuation(text));
    Tokens ptb;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        const bool beforeSentenceStart = i + 1 < chunks.size() && isSentenceStart(chunks[i + 1]);
        tokenizeChunk(lower(chunks[i]), beforeSentenceStart, ptb);
    }
    Tokens kept;
    for (std::string& token : ptb)
        if (!droppedByCocoTokenizer(token))
            kept.push_back(std::move(token));
    return kept;
}

std::array<double, 4> bleu(
    const std::vector<Tokens>& candidateTokens, const std::vector<std::vector<Tokens>>& referenceTokens)
{
    checkCorpus("BLEU", candidateTokens.size(), referenceTokens);
    // bleu_scorer.compute_score's epsilons.
    constexpr double kSmall = 1e-9;
    constexpr double kTiny = 1e-15;

    std::array<long long, kMaxN> guess {};
    std::array<long long, kMaxN> correct {};
    long long testLength = 0;
    long long refLength = 0;
    for (std::size_t image = 0; image < candidateTokens.size(); ++image) {
        const NgramCounts test = precook(candidateTokens[image]);
        // cook_refs: each n-gram's largest count in one reference; the reference lengths.
        std::unordered_map<std::string, int> maxCounts;
        std::vector<int> refLengths;
        for (const Tokens& reference : referenceTokens[image]) {
            const NgramCounts ref = precook(reference);
            refLengths.push_back(ref.length);
            for (const auto& grams : ref.grams)
                for (const auto& [key, count] : grams) {
                    int& best = maxCounts[key];
                    best = std::max(best, count);
                }
        }
        // "closest": min over (|l - testlen|, l).
        int closest = refLengths.front();
        for (const int length : refLengths) {
            const int distance = std::abs(length - test.length);
            const int bestDistance = std::abs(closest - test.length);
            if (distance < bestDistance || (distance == bestDistance && length < closest))
                closest = length;
        }
        testLength += test.length;
        refLength += closest;
        for (int k = 0; k < kMaxN; ++k) {
            guess[k] += std::max(0, test.length - k);
            for (const auto& [key, count] : test.grams[k]) {
                const auto found = maxCounts.find(key);
                correct[k] += std::min(found == maxCounts.end() ? 0 : found->second, count);
            }
        }
    }

    std::array<double, 4> bleus {};
    double product = 1.0;
    for (int k = 0; k < kMaxN; ++k) {
        product *= (static_cast<double>(correct[k]) + kTiny) / (static_cast<double>(guess[k]) + kSmall);
        bleus[k] = std::pow(product, 1.0 / (k + 1));
    }
    const double ratio
        = (static_cast<double>(testLength) + kTiny) / (static_cast<double>(refLength) + kSmall);
    if (ratio < 1.0)
        for (double& value : bleus)
            value *= std::exp(1.0 - 1.0 / ratio);
    return bleus;
}

double bleu4(
    const std::vector<Tokens>& candidateTokens, const std::vector<std::vector<Tokens>>& referenceTokens)
{
    return bleu(candidateTokens, referenceTokens)[3];
}

double ciderD(const std::vector<Tokens>& candidateTokens,
    const std::vector<std::vector<Tokens>>& referenceTokens, std::vector<double>* perImage)
{
    checkCorpus("CIDEr-D", candidateTokens.size(), referenceTokens);
    constexpr double kSigma = 6.0;
    constexpr double kE = 2.718281828459045; // np.e

    std::vector<NgramCounts> tests;
    std::vector<std::vector<NgramCounts>> refs(referenceTokens.size());
    for (std::size_t image = 0; image < candidateTokens.size(); ++image) {
        tests.push_back(precook(candidateTokens[image]));
        for (const Tokens& reference : referenceTokens[image])
            refs[image].push_back(precook(reference));
    }
    // compute_doc_freq: in how many images' references each n-gram occurs.
    std::unordered_map<std::string, double> documentFrequency;
    for (const auto& imageRefs : refs) {
        std::unordered_set<std::string> seen;
        for (const NgramCounts& ref : imageRefs)
            for (const auto& grams : ref.grams)
                for (const auto& entry : grams)
                    seen.insert(entry.first);
        for (const std::string& key : seen)
            documentFrequency[key] += 1.0;
    }
    const double refLength = std::log(static_cast<double>(refs.size()));

    const auto counts2vec = [&](const NgramCounts& counts) {
        CiderVector vec;
        for (int n = 0; n < kMaxN; ++n) {
            for (const auto& [key, termFrequency] : counts.grams[n]) {
                const auto found = documentFrequency.find(key);
                const double df
                    = std::log(std::max(1.0, found == documentFrequency.end() ? 0.0 : found->second));
                const double weight = static_cast<double>(termFrequency) * (refLength - df);
                vec.weights[n].emplace_back(key, weight);
                vec.lookup[n].emplace(key, weight);
                vec.norm[n] += std::pow(weight, 2);
                if (n == 1)
                    vec.length += termFrequency;
            }
        }
        for (double& norm : vec.norm)
            norm = std::sqrt(norm);
        return vec;
    };

    std::vector<double> scores;
    scores.reserve(tests.size());
    for (std::size_t image = 0; image < tests.size(); ++image) {
        const CiderVector hyp = counts2vec(tests[image]);
        std::array<double, kMaxN> score {};
        for (const NgramCounts& refCounts : refs[image]) {
            const CiderVector ref = counts2vec(refCounts);
            const double delta = static_cast<double>(hyp.length - ref.length);
            for (int n = 0; n < kMaxN; ++n) {
                double value = 0.0;
                for (const auto& [key, weight] : hyp.weights[n]) {
                    const auto found = ref.lookup[n].find(key);
                    const double refWeight = found == ref.lookup[n].end() ? 0.0 : found->second;
                    value += std::min(weight, refWeight) * refWeight;
                }
                if (hyp.norm[n] != 0.0 && ref.norm[n] != 0.0)
                    value /= hyp.norm[n] * ref.norm[n];
                value *= std::pow(kE, -(delta * delta) / (2.0 * kSigma * kSigma));
                score[n] += value;
            }
        }
        double average = numpyPairwiseSum(score.data(), score.size()) / static_cast<double>(kMaxN);
        average /= static_cast<double>(refs[image].size());
        average *= 10.0;
        scores.push_back(average);
    }
    const double corpus = numpyPairwiseSum(scores.data(), scores.size()) / static_cast<double>(scores.size());
    if (perImage)
        *perImage = std::move(scores);
    return corpus;
}

CaptionScores scoreCaptions(
    const std::vector<std::string>& predictions, const std::vector<std::vector<std::string>>& references)
{
    if (predictions.size() != references.size())
        throw Error("scoring captions: " + std::to_string(predictions.size()) + " predictions but "
            + std::to_string(references.size()) + " reference sets");
    std::vector<Tokens> candidates;
    std::vector<std::vector<Tokens>> referenceTokens;
    for (std::size_t i = 0; i < predictions.size(); ++i) {
        candidates.push_back(tokenizeCaption(predictions[i]));
        std::vector<Tokens> imageRefs;
        for (const std::string& reference : references[i])
            imageRefs.push_back(tokenizeCaption(reference));
        referenceTokens.push_back(std::move(imageRefs));
    }
    CaptionScores scores;
    scores.bleu = bleu(candidates, referenceTokens);
    scores.bleu4 = scores.bleu[3];
    scores.ciderD = ciderD(candidates, referenceTokens, &scores.ciderPerImage);
    return scores;
}

} // namespace ladder::vlmetrics
