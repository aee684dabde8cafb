// The built-in VL demo's scene tasks (core/data/SceneTasks.h, issue #22): deterministic, every answer
// re-derived from its scene by a checker written here independently of the generators (it reads the
// question's words), NLVR2 balanced, disjoint splits, a features file of the right shapes whose tokens
// follow the scene, and the atomic ensure/complete of the demo builders.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include <ATen/ATen.h>
#include <QElapsedTimer>
#include <QProcess>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "data/SceneTasks.h"
#include "data/VisualFeatures.h"
#include "data/VlTask.h"
#include "model/Safetensors.h"
#include "util/Error.h"

using namespace ladder;

namespace {

std::string readBytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

bool hasStagingLeftovers(const std::string& dir)
{
    const auto names
        = QDir(QString::fromStdString(dir)).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
    for (const auto& name : names)
        if (name.contains(".partial-"))
            return true;
    return false;
}

SceneTaskOptions smallOptions()
{
    SceneTaskOptions o;
    o.train = 203; // not a multiple of 4: the remainder goes to vqa, gqa, nlvr2
    o.validation = 40;
    o.test = 41;
    return o;
}

// ---- the checker: the scene in words, and the question's words read against it ----

struct Thing {
    int row = 0;
    int col = 0;
    std::string color, shape, size;
};

std::vector<Thing> things(const Scene& scene)
{
    std::vector<Thing> out;
    for (const auto& o : scene.objects)
        out.push_back({ o.cell / 3, o.cell % 3, toString(o.color), toString(o.shape), toString(o.size) });
    return out;
}

const char* const kPlaces[3][3] = { { "top left", "top middle", "top right" },
    { "middle left", "center", "middle right" }, { "bottom left", "bottom middle", "bottom right" } };
const char* const kNumbers[] = { "zero", "one", "two", "three", "four", "five" };

int numberOf(const std::string& word)
{
    for (int i = 0; i < 6; ++i)
        if (word == kNumbers[i])
            return i;
    throw std::runtime_error("not a number word: " + word);
}

// "large red circle", "red objects", "squares", "object": whether `t` is one.
bool fits(const Thing& t, const std::string& phrase)
{
    static const std::regex np("^(?:(small|large) )?(?:(red|green|blue|yellow|purple|gray) )?"
                               "(circle|square|triangle|object)s?$");
    std::smatch m;
    if (!std::regex_match(phrase, m, np))
        throw std::runtime_error("not a noun phrase: '" + phrase + "'");
    return (!m[1].matched || m[1] == t.size) && (!m[2].matched || m[2] == t.color)
        && (m[3] == "object" || m[3] == t.shape);
}

int count(const std::vector<Thing>& scene, const std::string& phrase)
{
    return static_cast<int>(
        std::count_if(scene.begin(), scene.end(), [&](const Thing& t) { return fits(t, phrase); }));
}

// The one thing the phrase describes; throws when it describes none or several (the question would be
// ambiguous).
const Thing& theOne(const std::vector<Thing>& scene, const std::string& phrase)
{
    const Thing* found = nullptr;
    for (const auto& t : scene)
        if (fits(t, phrase)) {
            if (found)
                throw std::runtime_error("'" + phrase + "' describes several objects");
            found = &t;
        }
    if (!found)
        throw std::runtime_error("'" + phrase + "' describes no object");
    return *found;
}

// "a is REL of b": left/right in the same row, above/below in the same column.
bool related(const Thing& a, const std::string& relation, const Thing& b)
{
    if (relation == "left of")
        return a.row == b.row && a.col < b.col;
    if (relation == "right of")
        return a.row == b.row && a.col > b.col;
    if (relation == "above")
        return a.col == b.col && a.row < b.row;
    if (relation == "below")
        return a.col == b.col && a.row > b.row;
    throw std::runtime_error("unknown relation " + relation);
}

std::string answerQuestion(const std::vector<Thing>& scene, const std::string& q)
{
    static const std::string rel = "(left of|right of|above|below)";
    static const std::regex relShape("^what shape is " + rel + " the (.+)\\?$");
    static const std::regex relColor("^which color is the object " + rel + " the (.+)\\?$");
    static const std::regex relSize("^what size is the object " + rel + " the (.+)\\?$");
    static const std::regex isRel("^is the (.+) " + rel + " the (.+)\\?$");
    static const std::regex same("^are the (.+) and the (.+) the same (color|shape|size)\\?$");
    static const std::regex color("^what color is the (.+)\\?$");
    static const std::regex shape("^what shape is the (.+)\\?$");
    static const std::regex size("^what size is the (.+)\\?$");
    static const std::regex where("^where is the (.+)\\?$");
    static const std::regex howMany("^how many (.+) are there\\?$");
    static const std::regex exists("^is there a (.+)\\?$");
    std::smatch m;
    auto target = [&](const std::string& relation, const std::string& phrase) -> const Thing& {
        const auto& ref = theOne(scene, phrase);
        const Thing* found = nullptr;
        for (const auto& t : scene)
            if (related(t, relation, ref)) {
                if (found)
                    throw std::runtime_error("several objects are " + relation + " the " + phrase);
                found = &t;
            }
        if (!found)
            throw std::runtime_error("nothing is " + relation + " the " + phrase);
        return *found;
    };
    if (std::regex_match(q, m, relShape))
        return target(m[1], m[2]).shape;
    if (std::regex_match(q, m, relColor))
        return target(m[1], m[2]).color;
    if (std::regex_match(q, m, relSize))
        return target(m[1], m[2]).size;
    if (std::regex_match(q, m, isRel))
        return related(theOne(scene, m[1]), m[2], theOne(scene, m[3])) ? "yes" : "no";
    if (std::regex_match(q, m, same)) {
        const auto& a = theOne(scene, m[1]);
        const auto& b = theOne(scene, m[2]);
        const bool equal = m[3] == "color" ? a.color == b.color
            : m[3] == "shape"              ? a.shape == b.shape
                                           : a.size == b.size;
        return equal ? "yes" : "no";
    }
    if (std::regex_match(q, m, color))
        return theOne(scene, m[1]).color;
    if (std::regex_match(q, m, shape))
        return theOne(scene, m[1]).shape;
    if (std::regex_match(q, m, size))
        return theOne(scene, m[1]).size;
    if (std::regex_match(q, m, where)) {
        const auto& t = theOne(scene, m[1]);
        return kPlaces[t.row][t.col];
    }
    if (std::regex_match(q, m, howMany))
        return std::to_string(count(scene, m[1]));
    if (std::regex_match(q, m, exists))
        return count(scene, m[1]) > 0 ? "yes" : "no";
    throw std::runtime_error("unknown question: " + q);
}

bool judgeStatement(const std::vector<Thing>& left, const std::vector<Thing>& right, const std::string& s)
{
    static const std::regex more("^the (left|right) image contains more (.+) than the (left|right) image$");
    static const std::regex both("^both images contain a (.+)$");
    static const std::regex exactly(
        "^there (?:is|are) exactly (one|two|three|four|five) (.+) in the (left|right) image$");
    static const std::regex contains("^the (left|right) image contains a (.+)$");
    static const std::regex exactlyOne("^exactly one of the images contains a (.+)$");
    static const std::regex sameNumber("^the two images contain the same number of (.+)$");
    static const std::regex neither("^neither image contains a (.+)$");
    std::smatch m;
    auto side
        = [&](const std::string& name) -> const std::vector<Thing>& { return name == "left" ? left : right; };
    if (std::regex_match(s, m, more)) {
        if (m[1] == m[3])
            throw std::runtime_error("compares an image with itself: " + s);
        return count(side(m[1]), m[2]) > count(side(m[3]), m[2]);
    }
    if (std::regex_match(s, m, both))
        return count(left, m[1]) > 0 && count(right, m[1]) > 0;
    if (std::regex_match(s, m, exactly)) {
        const int n = numberOf(m[1]);
        if ((n == 1) != (s.rfind("there is ", 0) == 0))
            throw std::runtime_error("number agreement: " + s);
        return count(side(m[3]), m[2]) == n;
    }
    if (std::regex_match(s, m, contains))
        return count(side(m[1]), m[2]) > 0;
    if (std::regex_match(s, m, exactlyOne))
        return (count(left, m[1]) > 0) != (count(right, m[1]) > 0);
    if (std::regex_match(s, m, sameNumber))
        return count(left, m[1]) == count(right, m[1]);
    if (std::regex_match(s, m, neither))
        return count(left, m[1]) == 0 && count(right, m[1]) == 0;
    throw std::runtime_error("unknown statement: " + s);
}

// Every "a red circle" / "two small blue squares" / "a red circle in the top left" of a caption must add
// up to the scene: the counts per (size, colour, shape) (size only where the caption says it), places where
// given, and "N objects:" when it says so.
void checkCaption(const std::vector<Thing>& scene, const std::string& caption)
{
    static const std::regex phrase(
        "(a|one|two|three|four|five) (?:(small|large) )?"
        "(red|green|blue|yellow|purple|gray) (circle|square|triangle)s?"
        "(?: in the (top left|top middle|top right|middle left|center|middle right|"
        "bottom left|bottom middle|bottom right))?");
    static const std::regex objects("^(one|two|three|four|five) objects?: ");
    std::map<std::string, int> said;
    bool sized = false;
    bool any = false;
    for (std::sregex_iterator it(caption.begin(), caption.end(), phrase), end; it != end; ++it) {
        const auto& m = *it;
        any = true;
        const int n = m[1] == "a" ? 1 : numberOf(m[1]);
        if ((n == 1) == (m[0].str().find(m[4].str() + "s") != std::string::npos))
            throw std::runtime_error("number agreement in caption: " + caption);
        sized = sized || m[2].matched;
        said[m[2].str() + "/" + m[3].str() + "/" + m[4].str()] += n;
        if (m[5].matched) {
            bool found = false;
            for (const auto& t : scene)
                found = found || (kPlaces[t.row][t.col] == m[5] && t.color == m[3] && t.shape == m[4]);
            if (!found)
                throw std::runtime_error("wrong place in caption: " + caption);
        }
    }
    if (!any)
        throw std::runtime_error("caption names no object: " + caption);
    std::map<std::string, int> actual;
    for (const auto& t : scene)
        actual[(sized ? t.size : std::string()) + "/" + t.color + "/" + t.shape] += 1;
    if (said != actual)
        throw std::runtime_error("caption does not add up to the scene: " + caption);
    std::smatch m;
    if (std::regex_search(caption, m, objects) && numberOf(m[1]) != static_cast<int>(scene.size()))
        throw std::runtime_error("wrong object count in caption: " + caption);
}

// The written variants a VQA human may give, and what they mean.
const std::map<std::string, std::string>& variantOf()
{
    static const std::map<std::string, std::string> table = { { "grey", "gray" }, { "violet", "purple" },
        { "round", "circle" }, { "a circle", "circle" }, { "a square", "square" },
        { "a triangle", "triangle" }, { "triangular", "triangle" }, { "little", "small" },
        { "tiny", "small" }, { "big", "large" }, { "upper left", "top left" }, { "top-left", "top left" },
        { "top", "top middle" }, { "top center", "top middle" }, { "upper right", "top right" },
        { "top-right", "top right" }, { "left", "middle left" }, { "center left", "middle left" },
        { "middle", "center" }, { "right", "middle right" }, { "center right", "middle right" },
        { "lower left", "bottom left" }, { "bottom-left", "bottom left" }, { "bottom", "bottom middle" },
        { "bottom center", "bottom middle" }, { "lower right", "bottom right" },
        { "bottom-right", "bottom right" }, { "zero", "0" }, { "one", "1" }, { "two", "2" }, { "three", "3" },
        { "four", "4" }, { "five", "5" }, { "six", "6" } };
    return table;
}

// Every canonical answer.
const std::set<std::string>& vocabulary()
{
    static const std::set<std::string> words = { "yes", "no", "red", "green", "blue", "yellow", "purple",
        "gray", "circle", "square", "triangle", "small", "large", "top left", "top middle", "top right",
        "middle left", "center", "middle right", "bottom left", "bottom middle", "bottom right", "0", "1",
        "2", "3", "4", "5", "6" };
    return words;
}

std::string sceneText(const Scene& scene)
{
    std::string out;
    for (const auto& o : scene.objects)
        out += std::string(scenePositionName(o.cell)) + ": " + toString(o.size) + " " + toString(o.color)
            + " " + toString(o.shape) + "; ";
    return out;
}

// The first n words of a sentence.
std::string firstWords(const std::string& text, int n)
{
    std::size_t end = 0;
    for (int i = 0; i < n && end != std::string::npos; ++i)
        end = text.find(' ', end == 0 ? 0 : end + 1);
    return text.substr(0, end);
}

double rms(const at::Tensor& t)
{
    return std::sqrt(t.to(at::kDouble).pow(2).mean().item<double>());
}

} // namespace

class TestSceneTasks : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        m_dataset = buildSceneDataset();
        for (const auto& s : m_dataset.scenes)
            m_scenes[s.id] = &s;
    }

    void scenesAreWellFormed()
    {
        const auto& scenes = m_dataset.scenes;
        // One image per caption example: 1,000 + 100 + 100.
        std::map<DemoSplit, int> perSplit;
        std::set<std::string> ids, contents;
        std::map<std::size_t, int> sizes;
        for (const auto& s : scenes) {
            ++perSplit[s.split];
            QVERIFY(ids.insert(s.id).second);
            QVERIFY(s.id.rfind(std::string(toString(s.split)) + "-", 0) == 0);
            QVERIFY(s.objects.size() >= 1 && s.objects.size() <= 5);
            ++sizes[s.objects.size()];
            for (std::size_t i = 0; i < s.objects.size(); ++i) {
                QVERIFY(s.objects[i].cell >= 0 && s.objects[i].cell < 9);
                if (i > 0)
                    QVERIFY(s.objects[i - 1].cell < s.objects[i].cell); // own cells, sorted
                QCOMPARE(s.objectAt(s.objects[i].cell), &s.objects[i]);
            }
            // No scene is repeated, in its split or another.
            QVERIFY2(contents.insert(sceneText(s)).second, sceneText(s).c_str());
        }
        QCOMPARE(perSplit[DemoSplit::Train], 1000);
        QCOMPARE(perSplit[DemoSplit::Validation], 100);
        QCOMPARE(perSplit[DemoSplit::Test], 100);
        for (std::size_t n = 1; n <= 5; ++n)
            QVERIFY(sizes[n] > 0);
        QVERIFY(sizes[1] < sizes[3]); // weights 1, 2, 3, 3, 3
        QCOMPARE(std::string(scenePositionName(0)), std::string("top left"));
        QCOMPARE(std::string(scenePositionName(4)), std::string("center"));
        QCOMPARE(std::string(scenePositionName(8)), std::string("bottom right"));
        QVERIFY_THROWS_EXCEPTION(Error, scenePositionName(9));
    }

    void deterministic()
    {
        const auto again = buildSceneDataset();
        QCOMPARE(again.scenes.size(), m_dataset.scenes.size());
        for (std::size_t i = 0; i < again.scenes.size(); ++i)
            QCOMPARE(sceneText(again.scenes[i]), sceneText(m_dataset.scenes[i]));
        // Two writes: byte-identical files.
        const auto root = test::makeTempDir();
        writeSceneTasks(root + "/a", smallOptions());
        writeSceneTasks(root + "/b", smallOptions());
        for (const char* file :
            { "train.jsonl", "validation.jsonl", "test.jsonl", "features.safetensors", "task.json" }) {
            const auto a = readBytes(root + "/a/" + file);
            QVERIFY2(!a.empty(), file);
            QVERIFY2(a == readBytes(root + "/b/" + file), file);
        }
        // Another seed: other scenes.
        auto other = smallOptions();
        other.seed += 1;
        QVERIFY(
            sceneText(generateScenes(other).front()) != sceneText(generateScenes(smallOptions()).front()));
    }

    void splitSizesAndMixture()
    {
        const std::map<std::string, std::size_t> expected
            = { { "vqa", 1000 }, { "gqa", 1000 }, { "nlvr2", 1000 }, { "caption", 1000 } };
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            const auto& examples = m_dataset.split(which);
            const std::size_t scale = which == DemoSplit::Train ? 1 : 10;
            QCOMPARE(examples.size(), 4000 / scale);
            std::map<std::string, std::size_t> perTask;
            std::set<std::string> ids;
            for (const auto& e : examples) {
                ++perTask[e.task];
                QVERIFY(ids.insert(e.id).second);
            }
            for (const auto& [task, n] : expected)
                QCOMPARE(perTask[task], n / scale);
        }
        // The remainder of an odd size goes to vqa, gqa, nlvr2.
        const auto small = buildSceneDataset(smallOptions());
        std::map<std::string, std::size_t> perTask;
        for (const auto& e : small.train)
            ++perTask[e.task];
        QCOMPARE(perTask["vqa"], std::size_t(51));
        QCOMPARE(perTask["gqa"], std::size_t(51));
        QCOMPARE(perTask["nlvr2"], std::size_t(51));
        QCOMPARE(perTask["caption"], std::size_t(50));
        QCOMPARE(small.test.size(), std::size_t(41));
    }

    void splitsAreDisjoint()
    {
        std::map<std::string, DemoSplit> used;
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test })
            for (const auto& e : m_dataset.split(which)) {
                QVERIFY(e.id.rfind(std::string(toString(which)) + "-", 0) == 0);
                QCOMPARE(e.images.size(), std::size_t(e.task == "nlvr2" ? 2 : 1));
                for (const auto& image : e.images) {
                    QVERIFY2(m_scenes.count(image), image.c_str());
                    QVERIFY2(m_scenes.at(image)->split == which, (e.id + " sees " + image).c_str());
                    const auto [it, added] = used.emplace(image, which);
                    QVERIFY(added || it->second == which);
                }
            }
        // Every image is captioned once in its split.
        std::map<std::string, int> captioned;
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test })
            for (const auto& e : m_dataset.split(which))
                if (e.task == "caption")
                    ++captioned[e.images.front()];
        QCOMPARE(captioned.size(), m_dataset.scenes.size());
        for (const auto& [image, n] : captioned)
            QCOMPARE(n, 1);
    }

    void everyAnswerFollowsFromItsScene()
    {
        std::size_t withVariants = 0, withWrong = 0, vqaYesNo = 0, vqaCount = 0, gqaYesNo = 0, gqaCount = 0;
        std::set<std::string> vqaStarts, gqaStarts;
        std::map<std::string, int> yesMinusNo;
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            std::set<std::tuple<std::string, std::string, std::string>> asked; // (task, image, question)
            for (const auto& e : m_dataset.split(which)) {
                const auto where = e.id + ": ";
                try {
                    if (e.task == "vqa" || e.task == "gqa") {
                        const auto& scene = *m_scenes.at(e.images.front());
                        const auto answer = answerQuestion(things(scene), e.question);
                        QVERIFY2(answer == e.answer,
                            (where + e.question + " -> " + e.answer + ", the checker says " + answer + " on "
                                + sceneText(scene))
                                .c_str());
                        QVERIFY2(asked.insert({ e.task, scene.id, e.question }).second,
                            (where + "asked twice").c_str());
                        const auto yesNo = answer == "yes" || answer == "no";
                        yesMinusNo[e.task] += answer == "yes" ? 1 : answer == "no" ? -1 : 0;
                        (e.task == "vqa" ? vqaYesNo : gqaYesNo) += yesNo;
                        ++(e.task == "vqa" ? vqaCount : gqaCount);
                        (e.task == "vqa" ? vqaStarts : gqaStarts).insert(firstWords(e.question, 2));
                    }
                    if (e.task == "vqa") {
                        QCOMPARE(e.answers.size(), std::size_t(10));
                        const auto right = std::count(e.answers.begin(), e.answers.end(), e.answer);
                        QVERIFY2(right >= 6, where.c_str()); // soft accuracy 1 for the right answer
                        // Each other answer is a written variant of the right one (the checker's own table)
                        // or one wrong answer of the same kind.
                        int wrong = 0, variants = 0;
                        for (const auto& a : e.answers) {
                            if (a == e.answer)
                                continue;
                            const auto it = variantOf().find(a);
                            if (it != variantOf().end()) {
                                QVERIFY2(it->second == e.answer, (where + a + " for " + e.answer).c_str());
                                ++variants;
                            } else {
                                QVERIFY2(vocabulary().count(a), (where + a).c_str());
                                ++wrong;
                            }
                        }
                        QVERIFY2(wrong <= 1 && variants <= 3, where.c_str());
                        withWrong += wrong > 0;
                        withVariants += variants > 0;
                    } else if (e.task == "nlvr2") {
                        const auto& left = *m_scenes.at(e.images[0]);
                        const auto& right = *m_scenes.at(e.images[1]);
                        QVERIFY(left.id != right.id);
                        const bool truth = judgeStatement(things(left), things(right), e.statement);
                        QVERIFY2(truth == e.label,
                            (where + e.statement + " -> " + (e.label ? "true" : "false") + " on L "
                                + sceneText(left) + " R " + sceneText(right))
                                .c_str());
                    } else if (e.task == "caption") {
                        const auto& scene = *m_scenes.at(e.images.front());
                        QVERIFY(e.captions.size() >= 3 && e.captions.size() <= 5);
                        QCOMPARE(std::set<std::string>(e.captions.begin(), e.captions.end()).size(),
                            e.captions.size());
                        for (const auto& c : e.captions)
                            checkCaption(things(scene), c);
                    }
                } catch (const std::exception& error) {
                    QFAIL((where + error.what()).c_str());
                }
            }
        }
        qInfo(
            "vqa: %zu questions, %.1f%% yes/no; gqa: %zu, %.1f%% yes/no; vqa with a wrong human answer: %zu",
            vqaCount, 100.0 * vqaYesNo / vqaCount, gqaCount, 100.0 * gqaYesNo / gqaCount, withWrong);
        QVERIFY(withVariants > 50); // written variants ("grey", "two", "big") exercise soft accuracy
        QVERIFY(withWrong > 20);
        QVERIFY(vqaYesNo > vqaCount / 5 && vqaYesNo < vqaCount / 2);
        QVERIFY(gqaYesNo > gqaCount / 3 && gqaYesNo < 2 * gqaCount / 3);
        // Yes and no equally often (each yes/no kind alternates; up to 2 per kind and split for a partial
        // cycle).
        QVERIFY2(std::abs(yesMinusNo["vqa"]) <= 6, std::to_string(yesMinusNo["vqa"]).c_str());
        QVERIFY2(std::abs(yesMinusNo["gqa"]) <= 9, std::to_string(yesMinusNo["gqa"]).c_str());
        // Each kind of question is asked.
        for (const char* start :
            { "what color", "what shape", "what size", "where is", "how many", "is there" })
            QVERIFY2(vqaStarts.count(start), start);
        for (const char* start :
            { "what shape", "which color", "what size", "is there", "is the", "are the" })
            QVERIFY2(gqaStarts.count(start), start);
    }

    void nlvr2IsBalanced()
    {
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            int yes = 0, no = 0;
            std::set<std::string> kinds;
            for (const auto& e : m_dataset.split(which))
                if (e.task == "nlvr2") {
                    (e.label ? yes : no) += 1;
                    kinds.insert(firstWords(e.statement, 3));
                }
            QCOMPARE(yes, no);
            if (which == DemoSplit::Train)
                QVERIFY(kinds.size() >= 6);
        }
    }

    void checkerCatchesWrongAnswers()
    {
        // The checker is not a rubber stamp: flipped answers and labels fail it.
        int caught = 0, tried = 0;
        for (const auto& e : m_dataset.validation) {
            const auto& scene = *m_scenes.at(e.images.front());
            if (e.task == "gqa") {
                ++tried;
                const auto answer = answerQuestion(things(scene), e.question);
                caught += answer != (e.answer == "yes" ? "no" : e.answer == "no" ? "yes" : e.answer + "x");
            } else if (e.task == "nlvr2") {
                ++tried;
                caught += judgeStatement(things(scene), things(*m_scenes.at(e.images[1])), e.statement)
                    != !e.label;
            }
        }
        QCOMPARE(caught, tried);
        QVERIFY_THROWS_EXCEPTION(
            std::runtime_error, checkCaption({ { 0, 0, "red", "circle", "small" } }, "two red circles"));
        QVERIFY_THROWS_EXCEPTION(
            std::runtime_error, checkCaption({ { 0, 0, "red", "circle", "small" } }, "a blue circle"));
        QVERIFY_THROWS_EXCEPTION(std::runtime_error,
            checkCaption({ { 0, 0, "red", "circle", "small" } }, "a red circle in the center"));
        checkCaption({ { 0, 0, "red", "circle", "small" } }, "a red circle in the top left");
    }

    void encoderFollowsTheScene()
    {
        const SceneEncoder encoder;
        QCOMPARE(encoder.dim(), 64);
        QCOMPARE(encoder.description(), std::string("scenes: frozen random encoder seed 22, dim 64"));
        Scene a;
        a.id = "probe";
        a.objects = { { 0, SceneColor::Red, SceneShape::Circle, SceneSize::Small },
            { 4, SceneColor::Blue, SceneShape::Square, SceneSize::Large } };
        // The one-hot input: empty flag, colour, shape, size, row, column.
        const auto x0 = SceneEncoder::cellInput(a, 0);
        QCOMPARE(x0.size(), std::size_t(SceneEncoder::kInputs));
        const std::vector<double> expected0 = { 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0 };
        QVERIFY(x0 == expected0);
        const auto x5 = SceneEncoder::cellInput(a, 5); // empty, middle row, right column
        const std::vector<double> expected5 = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1 };
        QVERIFY(x5 == expected5);

        const auto fa = encoder.encode(a);
        QCOMPARE(fa.scalar_type(), at::kFloat);
        QCOMPARE(fa.sizes().vec(), (std::vector<std::int64_t> { 9, 64 }));
        QVERIFY(fa.abs().max().item<float>() < 1.5f);
        // The same scene id and one object changed: only that cell's token changes (same noise).
        Scene b = a;
        b.objects[1].color = SceneColor::Yellow;
        const auto fb = encoder.encode(b);
        for (int cell = 0; cell < 9; ++cell) {
            const bool equal = at::equal(fa[cell], fb[cell]);
            QVERIFY2(equal == (cell != 4), std::to_string(cell).c_str());
        }
        // Another id: other noise. Up to noise (sd 0.05, twice), the unchanged cells agree; the changed one
        // differs by far more.
        Scene c = b;
        c.id = "probe-2";
        const auto fc = encoder.encode(c);
        double unchanged = 0.0;
        for (int cell = 0; cell < 9; ++cell)
            if (cell != 4) {
                const auto d = rms(fa[cell] - fc[cell]);
                QVERIFY(d > 0.0); // not a lookup table
                unchanged = std::max(unchanged, d);
            }
        const auto changed = rms(fa[4] - fc[4]);
        qInfo("rms token difference: changed cell %.3f, unchanged cells at most %.3f", changed, unchanged);
        QVERIFY(unchanged < 0.12);
        QVERIFY(changed > 3 * unchanged);
        // Without noise, a token is exactly tanh(W x + b): equal cells of two scenes give equal tokens.
        const SceneEncoder clean(22, 64, 0.0);
        const auto ca = clean.encode(a), cc = clean.encode(c);
        QVERIFY(at::equal(ca[0], cc[0]));
        QVERIFY(!at::equal(ca[4], cc[4]));
        QVERIFY(rms(ca - fa) < 0.08);
        // Occupied and empty cells differ; so do the empty cells of different places.
        QVERIFY(rms(ca[4] - ca[5]) > 0.2);
        QVERIFY(rms(ca[5] - ca[6]) > 0.2);
        // Another encoder seed: another encoder.
        QVERIFY(rms(SceneEncoder(23, 64, 0.0).encode(a) - ca) > 0.2);

        const auto boxes = sceneBoxes();
        QCOMPARE(boxes.sizes().vec(), (std::vector<std::int64_t> { 9, 4 }));
        // Cell 5 (middle row, right column): x1 2/3, x2 1, y1 1/3, y2 2/3.
        QVERIFY(at::allclose(boxes[5], at::tensor({ 2.f / 3, 1.f, 1.f / 3, 2.f / 3 })));
    }

    void writtenFolderIsReadable()
    {
        const auto dir = test::makeTempDir() + "/scenes";
        const auto options = smallOptions();
        writeSceneTasks(dir, options);
        const auto dataset = buildSceneDataset(options);

        // The features: one [9, 64] float32 tensor per image, named by its id, and its "#boxes" [9, 4].
        const auto path = dir + "/features.safetensors";
        const auto header = readSafetensorsHeader(path);
        QCOMPARE(header.size(), 2 * dataset.scenes.size());
        const auto metadata = readSafetensorsMetadata(path);
        QCOMPARE(metadata.at("format"), std::string("ladder-visual-features-v1"));
        QCOMPARE(metadata.at("encoder"), std::string("scenes: frozen random encoder seed 22, dim 64"));
        const auto tensors = readSafetensors(path);
        const SceneEncoder encoder;
        for (const auto& s : dataset.scenes) {
            const auto& f = tensors.at(s.id);
            QCOMPARE(f.scalar_type(), at::kFloat);
            QCOMPARE(f.sizes().vec(), (std::vector<std::int64_t> { 9, 64 }));
            QVERIFY(at::equal(f, encoder.encode(s)));
            QVERIFY(at::equal(tensors.at(s.id + "#boxes"), sceneBoxes()));
        }
        // The VL reader opens it.
        const VisualFeatureFile file(path);
        QCOMPARE(file.info().images, std::int64_t(dataset.scenes.size()));
        QCOMPARE(file.info().boxes, std::int64_t(9));
        QCOMPARE(file.info().dim, std::int64_t(64));
        QVERIFY(
            at::equal(file.read(dataset.scenes.back().id).features, encoder.encode(dataset.scenes.back())));

        // The VL task loader reads the folder: captions one example per reference in train, per image else.
        {
            VlTaskOptions vl;
            vl.folder = dir;
            const auto loaded = loadVlTask(vl);
            QCOMPARE(loaded.info.name, std::string("scenes"));
            QCOMPARE(loaded.info.visualTokens, std::int64_t(9));
            QCOMPARE(loaded.info.visualDim, std::int64_t(64));
            std::size_t references = 0;
            for (const auto& e : dataset.train)
                references += e.task == "caption" ? e.captions.size() : 1;
            QCOMPARE(loaded.train.size(), references);
            QCOMPARE(loaded.validation.size(), dataset.validation.size());
            QCOMPARE(loaded.test.size(), dataset.test.size());
        }

        // The manifest.
        const auto manifest = nlohmann::json::parse(readBytes(dir + "/task.json"));
        QCOMPARE(manifest.at("name").get<std::string>(), std::string("scenes"));
        QCOMPARE(manifest.at("kind").get<std::string>(), std::string("vl"));
        QCOMPARE(manifest.at("tasks").get<std::vector<std::string>>(), sceneTaskNames());
        QCOMPARE(manifest.at("visual_tokens").get<int>(), 9);
        QCOMPARE(manifest.at("visual_dim").get<int>(), 64);
        QCOMPARE(manifest.at("features").get<std::string>(), std::string("features.safetensors"));
        QCOMPARE(manifest.at("recipe_version").get<std::string>(), std::string(kSceneRecipeVersion));
        QCOMPARE(manifest.at("chance").at("nlvr2").get<double>(), 0.5); // 5 true, 5 false
        QVERIFY(manifest.at("chance").at("vqa").get<double>() > 0.0);
        QVERIFY(manifest.at("chance").at("gqa").get<double>() > 0.0);

        // The JSONL: exactly the layout's keys per task, in order; counts as the manifest says.
        const std::map<std::string, std::vector<std::string>> keys = {
            { "vqa", { "id", "task", "image", "question", "answers" } },
            { "gqa", { "id", "task", "image", "question", "answer" } },
            { "nlvr2", { "id", "task", "images", "statement", "label" } },
            { "caption", { "id", "task", "image", "captions" } },
        };
        for (const auto which : { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test }) {
            const std::string split = toString(which);
            const auto& info = manifest.at("splits").at(split);
            QCOMPARE(info.at("file").get<std::string>(), split + ".jsonl");
            std::ifstream in(dir + "/" + split + ".jsonl");
            std::string line;
            std::size_t rows = 0;
            std::map<std::string, std::size_t> perTask;
            while (std::getline(in, line)) {
                const auto row = nlohmann::ordered_json::parse(line);
                const auto task = row.at("task").get<std::string>();
                std::vector<std::string> names;
                for (const auto& item : row.items())
                    names.push_back(item.key());
                QVERIFY2(names == keys.at(task), line.c_str());
                if (task == "nlvr2")
                    QVERIFY(row.at("label").is_boolean());
                if (task == "vqa")
                    QCOMPARE(row.at("answers").size(), std::size_t(10));
                const auto& e = dataset.split(which)[rows];
                QCOMPARE(row.at("id").get<std::string>(), e.id);
                ++perTask[task];
                ++rows;
            }
            QCOMPARE(rows, info.at("size").get<std::size_t>());
            QCOMPARE(rows, dataset.split(which).size());
            for (const auto& [task, n] : perTask)
                QCOMPARE(info.at("per_task").at(task).get<std::size_t>(), n);
        }
    }

    void ensureBuildsOnceAndAtomically()
    {
        const auto dir = test::makeTempDir() + "/tasks-vl/scenes";
        QVERIFY(!sceneTasksComplete(dir));
        // What a build killed half-way leaves: a staging folder named after a process that has ended.
        QProcess finished;
        finished.start("sleep", { "0.1" });
        QVERIFY(finished.waitForStarted());
        const auto deadPid = finished.processId();
        QVERIFY(finished.waitForFinished());
        const auto deadStaging = dir + ".partial-" + std::to_string(deadPid) + "-0";
        demofs::makeDirectories(deadStaging);
        std::ofstream(deadStaging + "/train.jsonl") << "{\"id\": \"half\"}\n";

        QElapsedTimer timer;
        timer.start();
        QVERIFY(ensureSceneTasks(dir));
        const auto ms = timer.elapsed();
        qInfo("ensureSceneTasks with the default sizes (4,000 / 400 / 400): %lld ms",
            static_cast<long long>(ms));
        QVERIFY(ms < 60000); // about a second in a release build
        QVERIFY(!demofs::exists(deadStaging));
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));
        QVERIFY(sceneTasksComplete(dir));
        QVERIFY(!ensureSceneTasks(dir)); // cached

        const auto manifest = nlohmann::json::parse(readBytes(dir + "/task.json"));
        QCOMPARE(manifest.at("splits").at("train").at("size").get<std::size_t>(), std::size_t(4000));
        QCOMPARE(manifest.at("splits").at("validation").at("size").get<std::size_t>(), std::size_t(400));
        QCOMPARE(manifest.at("splits").at("test").at("size").get<std::size_t>(), std::size_t(400));
        QCOMPARE(manifest.at("splits").at("test").at("per_task").at("caption").get<std::size_t>(),
            std::size_t(100));
        QCOMPARE(manifest.at("chance").at("nlvr2").get<double>(), 0.5);
        qInfo("chance: %s; %s", manifest.at("chance").dump().c_str(),
            manifest.at("chance_detail").dump().c_str());

        // A stale recipe is rebuilt; so is a folder that lost its features.
        {
            auto stale = manifest;
            stale["recipe_version"] = "scenes-v0";
            std::ofstream(dir + "/task.json") << stale.dump();
        }
        QVERIFY(!sceneTasksComplete(dir));
        QVERIFY(ensureSceneTasks(dir));
        QVERIFY(sceneTasksComplete(dir));
        QVERIFY(std::remove((dir + "/features.safetensors").c_str()) == 0);
        QVERIFY(!sceneTasksComplete(dir));
        QVERIFY(ensureSceneTasks(dir));
        QVERIFY(sceneTasksComplete(dir));
        QVERIFY(!hasStagingLeftovers(demofs::parentOf(dir)));

        // Where the demo keeps them.
        const auto previous = qgetenv("LADDER_DEMO_DIR");
        qputenv("LADDER_DEMO_DIR", "/somewhere/demo");
        QCOMPARE(sceneTasksDir(), std::string("/somewhere/demo/tasks-vl/scenes"));
        if (previous.isNull())
            qunsetenv("LADDER_DEMO_DIR");
        else
            qputenv("LADDER_DEMO_DIR", previous);
    }

private:
    SceneDataset m_dataset;
    std::map<std::string, const Scene*> m_scenes;
};

QTEST_GUILESS_MAIN(TestSceneTasks)
#include "test_scene_tasks.moc"
