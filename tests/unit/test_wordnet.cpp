// WordNet's data files: counts per part of speech, lexicographer names, glosses, malformed lines.
#include <algorithm>
#include <fstream>
#include <map>

#include <QtTest>

#include "TestSupport.h"
#include "data/WordNet.h"
#include "util/Error.h"

using namespace ladder;

namespace {

#define REQUIRE_WORDNET()                                                                                    \
    do {                                                                                                     \
        if (!wordNetAvailable())                                                                             \
            QSKIP(                                                                                           \
                "WordNet's data files are not installed (Debian package wordnet-base, /usr/share/wordnet)"); \
    } while (0)

std::string writeFile(const std::string& dir, const std::string& name, const std::string& text)
{
    const auto path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << text;
    return path;
}

// A valid data.noun line of the real file (dog), used to build malformed variants.
const std::string kDogLine
    = "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 02083346 n 0000 "
      "~ 01322604 n 0000 | a member of the genus Canis; \"the dog barked all night\"  ";
const std::string kHeader = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
                            "  2 Princeton University under the following license.  \n";

} // namespace

class TestWordNet : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void lexnames()
    {
        QCOMPARE(wordNetLexname(0), std::string("adj.all"));
        QCOMPARE(wordNetLexname(3), std::string("noun.Tops"));
        QCOMPARE(wordNetLexname(5), std::string("noun.animal"));
        QCOMPARE(wordNetLexname(18), std::string("noun.person"));
        QCOMPARE(wordNetLexname(29), std::string("verb.body"));
        QCOMPARE(wordNetLexname(38), std::string("verb.motion"));
        QCOMPARE(wordNetLexname(43), std::string("verb.weather"));
        QCOMPARE(wordNetLexname(44), std::string("adj.ppl"));
        QVERIFY_THROWS_EXCEPTION(Error, wordNetLexname(45));
        QVERIFY_THROWS_EXCEPTION(Error, wordNetLexname(-1));
    }

    void countsPerPartOfSpeech_data()
    {
        QTest::addColumn<int>("pos");
        QTest::addColumn<int>("count");
        // WordNet 3.0's published counts (wnstats(7WN)).
        QTest::newRow("noun") << static_cast<int>(WordNetPos::Noun) << 82115;
        QTest::newRow("verb") << static_cast<int>(WordNetPos::Verb) << 13767;
        QTest::newRow("adj") << static_cast<int>(WordNetPos::Adjective) << 18156;
        QTest::newRow("adv") << static_cast<int>(WordNetPos::Adverb) << 3621;
    }

    void countsPerPartOfSpeech()
    {
        REQUIRE_WORDNET();
        QFETCH(int, pos);
        QFETCH(int, count);
        const auto p = static_cast<WordNetPos>(pos);
        const auto path = defaultWordNetDir() + "/data." + toString(p);
        const auto synsets = readWordNetDataFile(path, p);
        QCOMPARE(static_cast<int>(synsets.size()), count);

        // Every synset: its lexicographer file belongs to its part of speech, it has words and a gloss,
        // and its offset is the byte offset of its line (the invariant WordNet's own tools rely on).
        const std::string prefix = p == WordNetPos::Noun ? "noun."
            : p == WordNetPos::Verb                      ? "verb."
            : p == WordNetPos::Adjective                 ? "adj."
                                                         : "adv.";
        std::ifstream in(path, std::ios::binary);
        for (std::size_t i = 0; i < synsets.size(); i += 97) {
            const auto& s = synsets[i];
            QVERIFY2(s.lexname.rfind(prefix, 0) == 0, s.id().c_str());
            QVERIFY(!s.lemmas.empty());
            QVERIFY(!s.gloss.empty());
            in.seekg(s.offset);
            std::string head(8, ' ');
            in.read(head.data(), 8);
            char expected[9];
            std::snprintf(expected, sizeof expected, "%08u", static_cast<unsigned>(s.offset));
            QCOMPARE(head, std::string(expected));
        }
        // Offsets increase through the file.
        QVERIFY(std::is_sorted(synsets.begin(), synsets.end(),
            [](const Synset& a, const Synset& b) { return a.offset < b.offset; }));
    }

    void knownSynsets()
    {
        REQUIRE_WORDNET();
        const auto all = loadWordNet();
        QCOMPARE(all.size(), std::size_t(117659));
        auto find = [&](const std::string& id) -> const Synset& {
            const auto it
                = std::find_if(all.begin(), all.end(), [&](const Synset& s) { return s.id() == id; });
            if (it == all.end())
                throw Error("no synset " + id);
            return *it;
        };
        const auto& dog = find("n02084071");
        QCOMPARE(dog.lexname, std::string("noun.animal"));
        QCOMPARE(dog.lexFileNumber, 5);
        QCOMPARE(dog.ssType, 'n');
        QCOMPARE(dog.lemmas, (std::vector<std::string> { "dog", "domestic dog", "Canis familiaris" }));
        QCOMPARE(dog.definition,
            std::string("a member of the genus Canis (probably descended from the common wolf) that "
                        "has been domesticated by man since prehistoric times; occurs in many breeds"));
        QCOMPARE(dog.examples, (std::vector<std::string> { "the dog barked all night" }));

        const auto& breathe = find("v00001740");
        QCOMPARE(breathe.lexname, std::string("verb.body"));
        QCOMPARE(breathe.lemmas.front(), std::string("breathe"));
        QCOMPARE(breathe.lemmas.size(), std::size_t(4));

        // An adjective satellite whose word carries a syntactic marker: galore(ip) -> galore.
        const auto& abounding = find("a00014358");
        QCOMPARE(abounding.ssType, 's');
        QCOMPARE(abounding.pos, WordNetPos::Adjective);
        QCOMPARE(abounding.lemmas, (std::vector<std::string> { "abounding", "galore" }));

        const auto& entity = find("n00001740");
        QCOMPARE(entity.lexname, std::string("noun.Tops"));
        QCOMPARE(entity.definition,
            std::string("that which is perceived or known or inferred to have its own distinct "
                        "existence (living or nonliving)"));
        QVERIFY(entity.examples.empty());
    }

    void glossWithAttributionAndUnbalancedQuote()
    {
        const auto dir = test::makeTempDir();
        const auto path = writeFile(dir, "data.adj",
            "00000001 00 a 01 faulty 0 000 | characterized by errors; \"he submitted a faulty report\"; \"an "
            "incorrect "
            "transcription\"; the wrong side of the road\"  \n"
            "00000002 00 a 01 abstemious 0 000 | sparing in consumption; \"the pleasures of the table\"- "
            "John "
            "Galsworthy  \n"
            "00000003 00 a 01 assimilative 0 000 | capable of taking into a solution; \"an assimilative "
            "substance  \n");
        const auto synsets = readWordNetDataFile(path, WordNetPos::Adjective);
        QCOMPARE(synsets.size(), std::size_t(3));
        QCOMPARE(synsets[0].definition, std::string("characterized by errors"));
        QCOMPARE(synsets[0].examples,
            (std::vector<std::string> { "he submitted a faulty report", "an incorrect transcription" }));
        QCOMPARE(synsets[1].examples, (std::vector<std::string> { "the pleasures of the table" }));
        QCOMPARE(synsets[2].examples, (std::vector<std::string> { "an assimilative substance" }));
    }

    void headerAndBlankLinesAreSkipped()
    {
        const auto dir = test::makeTempDir();
        const auto path = writeFile(dir, "data.noun", kHeader + kDogLine + "\n\n" + kDogLine + "\r\n");
        const auto synsets = readWordNetDataFile(path, WordNetPos::Noun);
        QCOMPARE(synsets.size(), std::size_t(2));
        QCOMPARE(synsets[1].gloss, std::string("a member of the genus Canis; \"the dog barked all night\""));
        QCOMPARE(synsets[1].lemmas.size(), std::size_t(3));
    }

    void malformedLines_data()
    {
        QTest::addColumn<QString>("line");
        QTest::addColumn<QString>("message");
        auto replace = [](std::string text, const std::string& from, const std::string& to) {
            text.replace(text.find(from), from.size(), to);
            return QString::fromStdString(text);
        };
        QTest::newRow("no gloss") << replace(kDogLine, "|", "") << "'|' separator is missing";
        QTest::newRow("short offset") << replace(kDogLine, "02084071", "2084071") << "not an 8-digit number";
        QTest::newRow("lex_filenum") << replace(kDogLine, " 05 n", " 45 n") << "outside 00..44";
        QTest::newRow("lex_filenum not a number")
            << replace(kDogLine, " 05 n", " x5 n") << "lex_filenum 'x5'";
        QTest::newRow("ss_type") << replace(kDogLine, " 05 n ", " 05 v ") << "ss_type 'v'";
        QTest::newRow("w_cnt") << replace(kDogLine, " n 03 ", " n zz ")
                               << "w_cnt 'zz' is not a hexadecimal number";
        QTest::newRow("w_cnt too large") << replace(kDogLine, " n 03 ", " n 09 ") << "lex_id '@'";
        QTest::newRow("p_cnt") << replace(kDogLine, " 002 @", " 0x2 @") << "p_cnt";
        QTest::newRow("pointer pos") << replace(kDogLine, "02083346 n", "02083346 q") << "pos 'q'";
        QTest::newRow("extra field") << replace(kDogLine, "0000 |", "0000 junk |") << "unexpected field";
    }

    void malformedLines()
    {
        QFETCH(QString, line);
        QFETCH(QString, message);
        const auto dir = test::makeTempDir();
        // The bad line is line 4: after two header lines and a good line.
        const auto path = writeFile(dir, "data.noun", kHeader + kDogLine + "\n" + line.toStdString() + "\n");
        try {
            readWordNetDataFile(path, WordNetPos::Noun);
            QFAIL("expected an error");
        } catch (const Error& e) {
            const std::string what = e.what();
            QVERIFY2(what.find(path + ":4: ") == 0, what.c_str());
            QVERIFY2(what.find(message.toStdString()) != std::string::npos, what.c_str());
        }
    }

    void missingFolderNamesThePackage()
    {
        const auto dir = test::makeTempDir();
        QVERIFY(!wordNetAvailable(dir));
        try {
            loadWordNet(dir);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("wordnet-base") != std::string::npos, e.what());
        }
    }

    void corpusIsDeterministic()
    {
        REQUIRE_WORDNET();
        const auto synsets = loadWordNet();
        const auto corpus = wordNetCorpus(synsets);
        QCOMPARE(corpus, wordNetCorpus(loadWordNet()));
        std::size_t expected = 0;
        for (const auto& s : synsets)
            expected += (s.definition.empty() ? 0 : 1) + s.examples.size();
        QCOMPARE(corpus.size(), expected);
        QVERIFY(corpus.size() > 150000);
        QCOMPARE(corpus.front(), synsets.front().definition);
        for (const auto& line : corpus) {
            QVERIFY(!line.empty());
            QVERIFY(line.find('\n') == std::string::npos);
            QVERIFY(line.front() != ' ' && line.back() != ' ');
        }
    }
};

QTEST_GUILESS_MAIN(TestWordNet)
#include "test_wordnet.moc"
