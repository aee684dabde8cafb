#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ladder {

// A reader for Princeton WordNet 3.0's data files (wndb(5)), as Debian's wordnet-base installs them
// (/usr/share/wordnet/data.{noun,verb,adj,adv}). LadderBench builds its offline demo from them
// (docs/DEMO.md). No Qt, no LibTorch.

enum class WordNetPos { Noun, Verb, Adjective, Adverb };

// "noun", "verb", "adj", "adv": the suffix of the data file.
const char* toString(WordNetPos pos);
// 'n', 'v', 'a', 'r': the letter WordNet uses for the part of speech (satellites are 'a' here).
char posLetter(WordNetPos pos);

// WordNet 3.0's lexicographer files, lexnames(5): 0 "adj.all" ... 44 "adj.ppl". The lexnames file is not
// part of wordnet-base, so the standard table is built in. Throws ladder::Error outside [0, 44].
const std::string& wordNetLexname(int lexFileNumber);
constexpr int kWordNetLexFileCount = 45;

struct Synset {
    std::uint32_t offset = 0; // byte offset of the line in its data file (the synset's key)
    WordNetPos pos = WordNetPos::Noun;
    char ssType = 'n'; // n, v, a, s (adjective satellite), r
    int lexFileNumber = 0; // lex_filenum, 0..44
    std::string lexname; // "noun.animal", "verb.motion"
    std::vector<std::string> lemmas; // words in file order, underscores -> spaces, adjective markers
                                     // such as "(a)", "(p)", "(ip)" removed
    std::string gloss; // the whole gloss, trailing spaces removed
    std::string definition; // the gloss before its first quoted example, without the trailing "; "
    std::vector<std::string> examples; // the quoted parts of the gloss, without the quotes

    // POS letter + 8-digit offset: "n02084071". Unique over the four data files; stable across platforms.
    std::string id() const;
};

// Parses one data file. `pos` is the part of speech the file holds (each synset's ss_type must agree).
// Lines starting with two spaces (the license header) and empty lines are skipped. A malformed line
// throws ladder::Error naming the file and the line: "/usr/share/wordnet/data.noun:31: w_cnt 'zz' is
// not a hexadecimal number".
std::vector<Synset> readWordNetDataFile(const std::string& path, WordNetPos pos);

// The folder that holds the data files: $WNSEARCHDIR when set, else /usr/share/wordnet.
std::string defaultWordNetDir();
// Whether `dir` holds all four data files.
bool wordNetAvailable(const std::string& dir = defaultWordNetDir());

// Every synset of data.noun, data.verb, data.adj and data.adv in `dir`, in that order and file order.
// Throws ladder::Error when a file is missing ("WordNet not found in DIR: install the wordnet-base
// package") or malformed.
std::vector<Synset> loadWordNet(const std::string& dir = defaultWordNetDir());

// The pretraining corpus: for each synset in the given order, its definition, then each example, one
// sentence per line, whitespace collapsed, empty sentences left out. Deterministic.
std::vector<std::string> wordNetCorpus(const std::vector<Synset>& synsets);

} // namespace ladder
