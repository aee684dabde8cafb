#include "data/SceneTasks.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "data/VisualFeatures.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/SplitMix64.h"

namespace ladder {

namespace {

constexpr const char* kVqa = "vqa";
constexpr const char* kGqa = "gqa";
constexpr const char* kNlvr2 = "nlvr2";
constexpr const char* kCaption = "caption";
constexpr DemoSplit kSplits[] = { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test };
constexpr const char* kNumberWords[]
    = { "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine" };
constexpr int kVqaAnswers = 10;

// ---- small helpers ----

std::string pad5(std::size_t n)
{
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%05zu", n);
    return buffer;
}

template <typename T> const T& pick(const std::vector<T>& items, SplitMix64& rng)
{
    return items[static_cast<std::size_t>(rng.uniform(items.size()))];
}

template <typename T> void shuffle(std::vector<T>& items, SplitMix64& rng)
{
    for (std::size_t i = items.size(); i > 1; --i)
        std::swap(items[i - 1], items[static_cast<std::size_t>(rng.uniform(i))]);
}

// Mean 0, variance 1, within +-6: the Irwin-Hall sum of 12 uniforms, in plain double arithmetic (the same
// bits everywhere, unlike std::normal_distribution).
double gaussianLike(SplitMix64& rng)
{
    double sum = 0.0;
    for (int i = 0; i < 12; ++i)
        sum += static_cast<double>(rng.next() >> 11) * (1.0 / 9007199254740992.0);
    return sum - 6.0;
}

std::string joinList(const std::vector<std::string>& parts)
{
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0)
            out += i + 1 == parts.size() ? " and " : ", ";
        out += parts[i];
    }
    return out;
}

// ---- attribute filters: the referring expressions and counted noun phrases ----

constexpr int kColorBit = 1;
constexpr int kShapeBit = 2;
constexpr int kSizeBit = 4;

struct Filter {
    int color = -1;
    int shape = -1;
    int size = -1;

    bool matches(const SceneObject& o) const
    {
        return (color < 0 || color == static_cast<int>(o.color))
            && (shape < 0 || shape == static_cast<int>(o.shape))
            && (size < 0 || size == static_cast<int>(o.size));
    }
    // "large red circle", "red object", "object"
    std::string singular() const
    {
        std::string out;
        if (size >= 0)
            out += std::string(toString(static_cast<SceneSize>(size))) + " ";
        if (color >= 0)
            out += std::string(toString(static_cast<SceneColor>(color))) + " ";
        out += shape >= 0 ? toString(static_cast<SceneShape>(shape)) : "object";
        return out;
    }
    std::string plural() const { return singular() + "s"; }
    std::string definite() const { return "the " + singular(); }
    bool operator<(const Filter& other) const
    {
        return std::tie(color, shape, size) < std::tie(other.color, other.shape, other.size);
    }
};

Filter filterOf(const SceneObject& o, int mask)
{
    Filter f;
    if (mask & kColorBit)
        f.color = static_cast<int>(o.color);
    if (mask & kShapeBit)
        f.shape = static_cast<int>(o.shape);
    if (mask & kSizeBit)
        f.size = static_cast<int>(o.size);
    return f;
}

Filter randomFilter(int mask, SplitMix64& rng)
{
    Filter f;
    if (mask & kColorBit)
        f.color = static_cast<int>(rng.uniform(kSceneColors));
    if (mask & kShapeBit)
        f.shape = static_cast<int>(rng.uniform(kSceneShapes));
    if (mask & kSizeBit)
        f.size = static_cast<int>(rng.uniform(kSceneSizes));
    return f;
}

int countMatching(const Scene& scene, const Filter& f)
{
    return static_cast<int>(std::count_if(
        scene.objects.begin(), scene.objects.end(), [&](const SceneObject& o) { return f.matches(o); }));
}

// The expressions ("the red circle", "the large object") that pick out `o` alone, using no attribute of
// `forbidden` (the one asked about).
std::vector<Filter> uniqueDescriptions(const Scene& scene, const SceneObject& o, int forbidden)
{
    std::vector<Filter> out;
    for (int mask = 1; mask < 8; ++mask)
        if ((mask & forbidden) == 0 && countMatching(scene, filterOf(o, mask)) == 1)
            out.push_back(filterOf(o, mask));
    return out;
}

// "there is a red circle" / "there are two red circles"
std::string countedPhrase(int count, const Filter& f)
{
    if (count == 1)
        return "a " + f.singular();
    return std::string(kNumberWords[count]) + " " + f.plural();
}

// ---- spatial relations: "left of" and "right of" are the same row, "above" and "below" the same column ----

enum class Relation { LeftOf, RightOf, Above, Below };
constexpr Relation kRelations[] = { Relation::LeftOf, Relation::RightOf, Relation::Above, Relation::Below };

const char* toString(Relation r)
{
    switch (r) {
    case Relation::LeftOf:
        return "left of";
    case Relation::RightOf:
        return "right of";
    case Relation::Above:
        return "above";
    case Relation::Below:
        break;
    }
    return "below";
}

// Whether `a` is `r` of `b`.
bool holds(Relation r, const SceneObject& a, const SceneObject& b)
{
    const int ar = a.cell / kSceneGrid, ac = a.cell % kSceneGrid, br = b.cell / kSceneGrid,
              bc = b.cell % kSceneGrid;
    switch (r) {
    case Relation::LeftOf:
        return ar == br && ac < bc;
    case Relation::RightOf:
        return ar == br && ac > bc;
    case Relation::Above:
        return ac == bc && ar < br;
    case Relation::Below:
        break;
    }
    return ac == bc && ar > br;
}

// ---- VQA: the 10 human answers ----

std::vector<std::string> variantsOf(const std::string& answer)
{
    static const std::map<std::string, std::vector<std::string>> table = {
        { "gray", { "grey" } },
        { "purple", { "violet" } },
        { "circle", { "round", "a circle" } },
        { "square", { "a square" } },
        { "triangle", { "a triangle", "triangular" } },
        { "small", { "little", "tiny" } },
        { "large", { "big" } },
        { "top left", { "upper left", "top-left" } },
        { "top middle", { "top", "top center" } },
        { "top right", { "upper right", "top-right" } },
        { "middle left", { "left", "center left" } },
        { "center", { "middle" } },
        { "middle right", { "right", "center right" } },
        { "bottom left", { "lower left", "bottom-left" } },
        { "bottom middle", { "bottom", "bottom center" } },
        { "bottom right", { "lower right", "bottom-right" } },
    };
    if (answer.size() == 1 && answer[0] >= '0' && answer[0] <= '9')
        return { kNumberWords[answer[0] - '0'] };
    const auto it = table.find(answer);
    return it == table.end() ? std::vector<std::string> {} : it->second;
}

// Answers of the same kind as `answer` (a colour for a colour, ...) that are wrong.
std::vector<std::string> wrongAnswersFor(const std::string& answer)
{
    std::vector<std::vector<std::string>> domains = { { "yes", "no" }, {}, {}, {}, {} };
    for (int c = 0; c < kSceneColors; ++c)
        domains[1].push_back(toString(static_cast<SceneColor>(c)));
    for (int s = 0; s < kSceneShapes; ++s)
        domains[2].push_back(toString(static_cast<SceneShape>(s)));
    for (int s = 0; s < kSceneSizes; ++s)
        domains[3].push_back(toString(static_cast<SceneSize>(s)));
    for (int c = 0; c < kSceneCells; ++c)
        domains[4].push_back(scenePositionName(c));
    if (answer.size() == 1 && answer[0] >= '0' && answer[0] <= '9') {
        const int n = answer[0] - '0';
        std::vector<std::string> out = { std::to_string(n + 1) };
        if (n > 0)
            out.push_back(std::to_string(n - 1));
        return out;
    }
    for (const auto& domain : domains)
        if (std::count(domain.begin(), domain.end(), answer)) {
            std::vector<std::string> out;
            for (const auto& other : domain)
                if (other != answer)
                    out.push_back(other);
            return out;
        }
    throw Error("scene tasks: no wrong answers for '" + answer + "'");
}

// 6 to 10 copies of the right answer, up to 3 written variants (when it has any) and, for 3 questions in 10,
// one wrong answer; shuffled.
std::vector<std::string> humanAnswers(const std::string& answer, SplitMix64& rng)
{
    const auto variants = variantsOf(answer);
    const int wrong = rng.uniform(10) < 3 ? 1 : 0;
    const int written = variants.empty() ? 0 : static_cast<int>(rng.uniform(4));
    std::vector<std::string> out;
    for (int i = 0; i < kVqaAnswers - wrong - written; ++i)
        out.push_back(answer);
    for (int i = 0; i < written; ++i)
        out.push_back(pick(variants, rng));
    if (wrong)
        out.push_back(pick(wrongAnswersFor(answer), rng));
    shuffle(out, rng);
    return out;
}

// ---- the question generators; each returns nothing when the scene does not allow the question ----

struct Qa {
    std::string question;
    std::string answer;
};

enum class QaKind { Color, Shape, Size, Where, Count, Exists, Relation, CompareRelation, SameAttribute };

std::optional<Qa> attributeQuestion(const Scene& scene, QaKind kind, SplitMix64& rng)
{
    const auto& o = pick(scene.objects, rng);
    const int forbidden = kind == QaKind::Color ? kColorBit
        : kind == QaKind::Shape                 ? kShapeBit
        : kind == QaKind::Size                  ? kSizeBit
                                                : 0;
    const auto descriptions = uniqueDescriptions(scene, o, forbidden);
    if (descriptions.empty())
        return std::nullopt;
    const auto what = pick(descriptions, rng).definite();
    switch (kind) {
    case QaKind::Color:
        return Qa { "what color is " + what + "?", toString(o.color) };
    case QaKind::Shape:
        return Qa { "what shape is " + what + "?", toString(o.shape) };
    case QaKind::Size:
        return Qa { "what size is " + what + "?", toString(o.size) };
    default:
        break;
    }
    return Qa { "where is " + what + "?", scenePositionName(o.cell) };
}

std::optional<Qa> countQuestion(const Scene& scene, SplitMix64& rng)
{
    static const int masks[] = { 0, kShapeBit, kColorBit, kColorBit | kShapeBit, kSizeBit | kShapeBit };
    const int mask = masks[rng.uniform(5)];
    // Mostly about something in the scene; 1 in 4 about anything (0 is an answer too).
    const auto f = rng.uniform(4) < 3 ? filterOf(pick(scene.objects, rng), mask) : randomFilter(mask, rng);
    return Qa { "how many " + f.plural() + " are there?", std::to_string(countMatching(scene, f)) };
}

// "is there a red circle?": yes for half of them (a described object of the scene), no for the other half.
std::optional<Qa> existsQuestion(const Scene& scene, SplitMix64& rng, bool colorAndShape, bool yes)
{
    static const int masks[] = { kColorBit | kShapeBit, kColorBit, kShapeBit, kSizeBit | kShapeBit,
        kSizeBit | kColorBit | kShapeBit };
    const int mask = colorAndShape ? (kColorBit | kShapeBit) : masks[rng.uniform(5)];
    Filter f = filterOf(pick(scene.objects, rng), mask);
    for (int attempt = 0; !yes && attempt < 50 && countMatching(scene, f) > 0; ++attempt)
        f = randomFilter(mask, rng);
    const int n = countMatching(scene, f);
    if (yes != (n > 0))
        return std::nullopt;
    return Qa { "is there a " + f.singular() + "?", n > 0 ? "yes" : "no" };
}

// "what shape is left of the green object?", "which color is the object above the square?"
std::optional<Qa> relationQuestion(const Scene& scene, SplitMix64& rng)
{
    const auto& ref = pick(scene.objects, rng);
    const auto relation = kRelations[rng.uniform(4)];
    const SceneObject* target = nullptr;
    int targets = 0;
    for (const auto& o : scene.objects)
        if (holds(relation, o, ref)) {
            target = &o;
            ++targets;
        }
    const auto descriptions = uniqueDescriptions(scene, ref, 0);
    if (targets != 1 || descriptions.empty())
        return std::nullopt;
    const auto where = std::string(toString(relation)) + " " + pick(descriptions, rng).definite();
    switch (rng.uniform(3)) {
    case 0:
        return Qa { "what shape is " + where + "?", toString(target->shape) };
    case 1:
        return Qa { "which color is the object " + where + "?", toString(target->color) };
    default:
        break;
    }
    return Qa { "what size is the object " + where + "?", toString(target->size) };
}

// Two distinct objects of the scene that both have a unique description, with one each.
std::optional<std::pair<std::pair<const SceneObject*, Filter>, std::pair<const SceneObject*, Filter>>>
twoObjects(const Scene& scene, SplitMix64& rng)
{
    if (scene.objects.size() < 2)
        return std::nullopt;
    const auto i = rng.uniform(scene.objects.size());
    auto j = rng.uniform(scene.objects.size() - 1);
    if (j >= i)
        ++j;
    const auto& a = scene.objects[i];
    const auto& b = scene.objects[j];
    const auto da = uniqueDescriptions(scene, a, 0);
    const auto db = uniqueDescriptions(scene, b, 0);
    if (da.empty() || db.empty())
        return std::nullopt;
    // One draw after the other: the order of a call's arguments is unspecified.
    auto first = std::make_pair(&a, pick(da, rng));
    auto second = std::make_pair(&b, pick(db, rng));
    return std::make_pair(first, second);
}

// "is the red circle left of the blue square?": yes or no with equal odds.
std::optional<Qa> compareRelationQuestion(const Scene& scene, SplitMix64& rng, bool yes)
{
    const auto pair = twoObjects(scene, rng);
    if (!pair)
        return std::nullopt;
    const auto& [a, b] = *pair;
    std::vector<Relation> candidates;
    for (const auto r : kRelations)
        if (holds(r, *a.first, *b.first) == yes)
            candidates.push_back(r);
    if (candidates.empty())
        return std::nullopt;
    const auto r = pick(candidates, rng);
    return Qa { "is " + a.second.definite() + " " + toString(r) + " " + b.second.definite() + "?",
        yes ? "yes" : "no" };
}

// "are the red circle and the large object the same color?": yes or no with equal odds.
std::optional<Qa> sameAttributeQuestion(const Scene& scene, SplitMix64& rng, bool yes)
{
    const auto pair = twoObjects(scene, rng);
    if (!pair)
        return std::nullopt;
    const auto& [a, b] = *pair;
    const auto which = rng.uniform(3);
    const char* attribute = which == 0 ? "color" : which == 1 ? "shape" : "size";
    const bool same = which == 0 ? a.first->color == b.first->color
        : which == 1             ? a.first->shape == b.first->shape
                                 : a.first->size == b.first->size;
    if (same != yes)
        return std::nullopt;
    return Qa { "are " + a.second.definite() + " and " + b.second.definite() + " the same " + attribute + "?",
        same ? "yes" : "no" };
}

// `yes`: the answer a yes/no question must have (fixed per question, not per attempt: a retry that drew
// it anew would favour the answer that is easier to find).
std::optional<Qa> makeQuestion(const Scene& scene, QaKind kind, SplitMix64& rng, bool gqa, bool yes)
{
    switch (kind) {
    case QaKind::Color:
    case QaKind::Shape:
    case QaKind::Size:
    case QaKind::Where:
        return attributeQuestion(scene, kind, rng);
    case QaKind::Count:
        return countQuestion(scene, rng);
    case QaKind::Exists:
        return existsQuestion(scene, rng, gqa, yes);
    case QaKind::Relation:
        return relationQuestion(scene, rng);
    case QaKind::CompareRelation:
        return compareRelationQuestion(scene, rng, yes);
    case QaKind::SameAttribute:
        break;
    }
    return sameAttributeQuestion(scene, rng, yes);
}

// ---- NLVR2 statements over two scenes ----

std::optional<std::pair<std::string, bool>> nlvr2Statement(
    const Scene& left, const Scene& right, SplitMix64& rng)
{
    static const int countMasks[] = { 0, kShapeBit, kColorBit, kColorBit | kShapeBit };
    static const int thingMasks[] = { kShapeBit, kColorBit, kColorBit | kShapeBit, kSizeBit | kShapeBit };
    const Scene* scenes[] = { &left, &right };
    const char* sides[] = { "left", "right" };
    // Mostly about something one of the images holds.
    auto subject = [&](int mask) {
        const auto& scene = *scenes[rng.uniform(2)];
        return rng.uniform(4) < 3 ? filterOf(pick(scene.objects, rng), mask) : randomFilter(mask, rng);
    };
    switch (rng.uniform(7)) {
    case 0: { // "the left image contains more circles than the right image"
        const auto f = subject(countMasks[rng.uniform(4)]);
        const auto side = rng.uniform(2);
        return std::make_pair("the " + std::string(sides[side]) + " image contains more " + f.plural()
                + " than the " + sides[1 - side] + " image",
            countMatching(*scenes[side], f) > countMatching(*scenes[1 - side], f));
    }
    case 1: { // "both images contain a red object"
        const auto f = subject(thingMasks[rng.uniform(4)]);
        return std::make_pair("both images contain a " + f.singular(),
            countMatching(left, f) > 0 && countMatching(right, f) > 0);
    }
    case 2: { // "there are exactly three objects in the right image"
        const auto f = subject(countMasks[rng.uniform(4)]);
        const auto side = rng.uniform(2);
        const int actual = countMatching(*scenes[side], f);
        const int n = rng.uniform(2) == 0 && actual > 0 ? actual : 1 + static_cast<int>(rng.uniform(5));
        return std::make_pair(
            std::string(n == 1 ? "there is exactly one " + f.singular()
                               : "there are exactly " + std::string(kNumberWords[n]) + " " + f.plural())
                + " in the " + sides[side] + " image",
            actual == n);
    }
    case 3: { // "the left image contains a large triangle"
        const auto f = subject(thingMasks[rng.uniform(4)]);
        const auto side = rng.uniform(2);
        return std::make_pair("the " + std::string(sides[side]) + " image contains a " + f.singular(),
            countMatching(*scenes[side], f) > 0);
    }
    case 4: { // "exactly one of the images contains a blue square"
        const auto f = subject(thingMasks[rng.uniform(4)]);
        return std::make_pair("exactly one of the images contains a " + f.singular(),
            (countMatching(left, f) > 0) != (countMatching(right, f) > 0));
    }
    case 5: { // "the two images contain the same number of squares"
        const auto f = subject(countMasks[rng.uniform(4)]);
        return std::make_pair("the two images contain the same number of " + f.plural(),
            countMatching(left, f) == countMatching(right, f));
    }
    default:
        break;
    }
    // "neither image contains a purple circle"
    const auto f = subject(thingMasks[rng.uniform(4)]);
    return std::make_pair("neither image contains a " + f.singular(),
        countMatching(left, f) == 0 && countMatching(right, f) == 0);
}

// ---- captions: 3 to 5 true paraphrases ----

std::vector<std::string> sceneCaptions(const Scene& scene, SplitMix64& rng)
{
    // Groups of equal (colour, shape), and of equal (size, colour, shape), in reading order of their first
    // cell.
    auto groupsBy = [&](int mask) {
        std::vector<std::pair<Filter, int>> groups;
        for (const auto& o : scene.objects) {
            const auto f = filterOf(o, mask);
            auto it = std::find_if(
                groups.begin(), groups.end(), [&](const auto& g) { return !(g.first < f || f < g.first); });
            if (it == groups.end())
                groups.emplace_back(f, 1);
            else
                ++it->second;
        }
        return groups;
    };
    auto phrases = [](const std::vector<std::pair<Filter, int>>& groups) {
        std::vector<std::string> out;
        for (const auto& [f, n] : groups)
            out.push_back(countedPhrase(n, f));
        return out;
    };
    const auto groups = groupsBy(kColorBit | kShapeBit);
    const auto listed = phrases(groups);
    auto reversed = listed;
    std::reverse(reversed.begin(), reversed.end());
    auto byCount = groups;
    std::stable_sort(
        byCount.begin(), byCount.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    const auto n = scene.objects.size();

    std::vector<std::string> candidates;
    candidates.push_back(joinList(reversed));
    candidates.push_back(
        std::string(kNumberWords[n]) + (n == 1 ? " object: " : " objects: ") + joinList(listed));
    candidates.push_back(joinList(phrases(groupsBy(kSizeBit | kColorBit | kShapeBit))));
    candidates.push_back("a picture of " + joinList(phrases(byCount)));
    candidates.push_back(
        std::string("there ") + (groups.front().second == 1 ? "is " : "are ") + joinList(listed));
    if (n <= 3) {
        std::vector<std::string> placed;
        for (const auto& o : scene.objects)
            placed.push_back(countedPhrase(1, filterOf(o, kColorBit | kShapeBit)) + " in the "
                + scenePositionName(o.cell));
        candidates.push_back(joinList(placed));
    }
    shuffle(candidates, rng);
    const auto wanted = 3 + static_cast<std::size_t>(rng.uniform(3));
    std::vector<std::string> out = { joinList(listed) };
    for (const auto& c : candidates)
        if (out.size() < wanted && std::find(out.begin(), out.end(), c) == out.end())
            out.push_back(c);
    return out;
}

// ---- scenes ----

std::string sceneKey(const Scene& scene)
{
    std::string key;
    for (const auto& o : scene.objects)
        key += std::to_string(o.cell) + std::to_string(static_cast<int>(o.color))
            + std::to_string(static_cast<int>(o.shape)) + std::to_string(static_cast<int>(o.size)) + ";";
    return key;
}

struct SplitCounts {
    std::size_t vqa = 0, gqa = 0, nlvr2 = 0, caption = 0;
};

SplitCounts splitCounts(std::size_t total)
{
    SplitCounts c;
    c.vqa = c.gqa = c.nlvr2 = c.caption = total / 4;
    const auto rest = total % 4;
    c.vqa += rest > 0;
    c.gqa += rest > 1;
    c.nlvr2 += rest > 2;
    return c;
}

std::size_t splitTotal(const SceneTaskOptions& options, DemoSplit which)
{
    return which == DemoSplit::Train     ? options.train
        : which == DemoSplit::Validation ? options.validation
                                         : options.test;
}

std::size_t scenesInSplit(const SceneTaskOptions& options, DemoSplit which)
{
    const auto total = splitTotal(options, which);
    return total == 0 ? 0 : std::max<std::size_t>(2, splitCounts(total).caption);
}

std::vector<SceneExample>& examplesOf(SceneDataset& dataset, DemoSplit which)
{
    return which == DemoSplit::Train     ? dataset.train
        : which == DemoSplit::Validation ? dataset.validation
                                         : dataset.test;
}

void sortById(std::vector<SceneExample>& examples)
{
    std::sort(examples.begin(), examples.end(), [](const SceneExample& a, const SceneExample& b) {
        const auto ha = fnv1a64("order/" + a.id), hb = fnv1a64("order/" + b.id);
        return ha != hb ? ha < hb : a.id < b.id;
    });
}

constexpr int kAttempts = 10000;

void addQuestions(std::vector<SceneExample>& out, const std::vector<const Scene*>& pool, const char* task,
    std::size_t count, const SceneTaskOptions& options, DemoSplit which)
{
    const bool gqa = std::string(task) == kGqa;
    // VQA: a quarter counting, a quarter yes/no, the rest attributes and places; GQA: relations, existence,
    // comparisons (about half yes/no).
    static const std::vector<QaKind> vqaKinds = { QaKind::Color, QaKind::Shape, QaKind::Size, QaKind::Where,
        QaKind::Count, QaKind::Count, QaKind::Exists, QaKind::Exists };
    static const std::vector<QaKind> gqaKinds = { QaKind::Relation, QaKind::Relation, QaKind::Exists,
        QaKind::CompareRelation, QaKind::SameAttribute, QaKind::Color };
    const auto& kinds = gqa ? gqaKinds : vqaKinds;
    std::set<std::pair<std::string, std::string>> asked; // (image, question)
    for (std::size_t i = 0; i < count; ++i) {
        const auto id = std::string(toString(which)) + "-" + task + "-" + pad5(i);
        SplitMix64 rng(options.seed ^ fnv1a64("question/" + id));
        const auto kind = kinds[i % kinds.size()];
        const bool yes = (i / kinds.size()) % 2 == 0; // a yes/no kind alternates: balanced
        bool done = false;
        for (int attempt = 0; attempt < kAttempts && !done; ++attempt) {
            const auto& scene = *pick(pool, rng);
            const auto qa = makeQuestion(scene, kind, rng, gqa, yes);
            if (!qa || !asked.insert({ scene.id, qa->question }).second)
                continue;
            SceneExample e;
            e.id = id;
            e.task = task;
            e.images = { scene.id };
            e.question = qa->question;
            e.answer = qa->answer;
            if (!gqa)
                e.answers = humanAnswers(qa->answer, rng);
            out.push_back(std::move(e));
            done = true;
        }
        if (!done)
            throw Error("scene tasks: cannot find a new " + std::string(task) + " question for " + id
                + " among " + std::to_string(pool.size()) + " scenes; the split is too small for its size");
    }
}

void addNlvr2(std::vector<SceneExample>& out, const std::vector<const Scene*>& pool, std::size_t count,
    const SceneTaskOptions& options, DemoSplit which)
{
    std::set<std::tuple<std::string, std::string, std::string>> made;
    for (std::size_t i = 0; i < count; ++i) {
        const auto id = std::string(toString(which)) + "-" + kNlvr2 + "-" + pad5(i);
        SplitMix64 rng(options.seed ^ fnv1a64("statement/" + id));
        const bool wanted = i % 2 == 0; // exactly balanced (an odd count: one more true)
        bool done = false;
        for (int attempt = 0; attempt < kAttempts && !done; ++attempt) {
            const auto a = rng.uniform(pool.size());
            auto b = rng.uniform(pool.size() - 1);
            if (b >= a)
                ++b;
            const auto& left = *pool[a];
            const auto& right = *pool[b];
            const auto statement = nlvr2Statement(left, right, rng);
            if (!statement || statement->second != wanted
                || !made.insert({ left.id, right.id, statement->first }).second)
                continue;
            SceneExample e;
            e.id = id;
            e.task = kNlvr2;
            e.images = { left.id, right.id };
            e.statement = statement->first;
            e.label = statement->second;
            out.push_back(std::move(e));
            done = true;
        }
        if (!done)
            throw Error("scene tasks: cannot find a new nlvr2 statement for " + id);
    }
}

// The official VQA accuracy of one answer, compared exactly (no normalisation): the mean over the 10 ways of
// leaving one human out of min(1, matches among the other 9 / 3).
double vqaAccuracy(const std::string& prediction, const std::vector<std::string>& answers)
{
    if (answers.empty())
        return 0.0;
    double sum = 0.0;
    for (std::size_t i = 0; i < answers.size(); ++i) {
        int matches = 0;
        for (std::size_t j = 0; j < answers.size(); ++j)
            matches += j != i && answers[j] == prediction;
        sum += std::min(1.0, matches / 3.0);
    }
    return sum / static_cast<double>(answers.size());
}

bool isYesNo(const std::string& answer)
{
    return answer == "yes" || answer == "no";
}

// The most frequent answer (ties: the smallest).
std::string majority(const std::map<std::string, std::size_t>& counts)
{
    std::string best;
    std::size_t bestCount = 0;
    for (const auto& [answer, n] : counts)
        if (n > bestCount) {
            best = answer;
            bestCount = n;
        }
    return best;
}

} // namespace

const char* toString(SceneColor color)
{
    static const char* names[] = { "red", "green", "blue", "yellow", "purple", "gray" };
    return names[static_cast<int>(color)];
}

const char* toString(SceneShape shape)
{
    static const char* names[] = { "circle", "square", "triangle" };
    return names[static_cast<int>(shape)];
}

const char* toString(SceneSize size)
{
    return size == SceneSize::Small ? "small" : "large";
}

const char* scenePositionName(int cell)
{
    static const char* names[] = { "top left", "top middle", "top right", "middle left", "center",
        "middle right", "bottom left", "bottom middle", "bottom right" };
    if (cell < 0 || cell >= kSceneCells)
        throw Error("scene cell " + std::to_string(cell) + " is outside the 3x3 grid");
    return names[cell];
}

const SceneObject* Scene::objectAt(int cell) const
{
    for (const auto& o : objects)
        if (o.cell == cell)
            return &o;
    return nullptr;
}

const std::vector<SceneExample>& SceneDataset::split(DemoSplit which) const
{
    return which == DemoSplit::Train ? train : which == DemoSplit::Validation ? validation : test;
}

std::vector<std::string> sceneTaskNames()
{
    return { kVqa, kGqa, kNlvr2, kCaption };
}

std::vector<Scene> generateScenes(const SceneTaskOptions& options)
{
    // Object counts 1..5 with weights 1, 2, 3, 3, 3: few single-object scenes (only 324 exist).
    static const int weights[] = { 1, 2, 3, 3, 3 };
    std::vector<Scene> scenes;
    std::set<std::string> seen; // content, across splits: no image of one split is repeated in another
    for (const auto which : kSplits) {
        const auto wanted = scenesInSplit(options, which);
        SplitMix64 rng(options.seed ^ fnv1a64(std::string("scenes/") + toString(which)));
        for (std::size_t i = 0; i < wanted; ++i) {
            Scene scene;
            scene.id = std::string(toString(which)) + "-" + pad5(i);
            scene.split = which;
            for (int attempt = 0;; ++attempt) {
                if (attempt == kAttempts)
                    throw Error("scene tasks: cannot make " + std::to_string(wanted) + " distinct scenes");
                auto r = static_cast<int>(rng.uniform(12));
                int objects = 1;
                while (r >= weights[objects - 1]) {
                    r -= weights[objects - 1];
                    ++objects;
                }
                std::vector<int> cells = { 0, 1, 2, 3, 4, 5, 6, 7, 8 };
                shuffle(cells, rng);
                cells.resize(static_cast<std::size_t>(objects));
                std::sort(cells.begin(), cells.end());
                scene.objects.clear();
                for (const int cell : cells) {
                    SceneObject o;
                    o.cell = cell;
                    o.color = static_cast<SceneColor>(rng.uniform(kSceneColors));
                    o.shape = static_cast<SceneShape>(rng.uniform(kSceneShapes));
                    o.size = static_cast<SceneSize>(rng.uniform(kSceneSizes));
                    scene.objects.push_back(o);
                }
                if (seen.insert(sceneKey(scene)).second)
                    break;
            }
            scenes.push_back(std::move(scene));
        }
    }
    return scenes;
}

SceneDataset buildSceneDataset(const SceneTaskOptions& options)
{
    SceneDataset dataset;
    dataset.scenes = generateScenes(options);
    for (const auto which : kSplits) {
        std::vector<const Scene*> pool;
        for (const auto& s : dataset.scenes)
            if (s.split == which)
                pool.push_back(&s);
        const auto counts = splitCounts(splitTotal(options, which));
        auto& out = examplesOf(dataset, which);
        if (pool.empty())
            continue;
        addQuestions(out, pool, kVqa, counts.vqa, options, which);
        addQuestions(out, pool, kGqa, counts.gqa, options, which);
        addNlvr2(out, pool, counts.nlvr2, options, which);
        for (std::size_t i = 0; i < counts.caption; ++i) {
            const auto& scene = *pool[i]; // every image of the split is captioned once
            SceneExample e;
            e.id = std::string(toString(which)) + "-" + kCaption + "-" + pad5(i);
            e.task = kCaption;
            e.images = { scene.id };
            SplitMix64 rng(options.seed ^ fnv1a64("caption/" + e.id));
            e.captions = sceneCaptions(scene, rng);
            out.push_back(std::move(e));
        }
        sortById(out);
    }
    return dataset;
}

SceneEncoder::SceneEncoder(std::uint64_t seed, int dim, double noise)
    : m_seed(seed)
    , m_dim(dim)
    , m_noise(noise)
{
    if (dim < 1 || dim > 65536)
        throw Error("scene encoder: dim " + std::to_string(dim) + " is outside 1..65536");
    if (!(noise >= 0.0) || !std::isfinite(noise))
        throw Error("scene encoder: the noise must be a finite number >= 0");
    SplitMix64 rng(seed);
    m_weight.resize(static_cast<std::size_t>(dim) * kInputs);
    for (auto& w : m_weight)
        w = 0.5 * gaussianLike(rng);
    m_bias.resize(static_cast<std::size_t>(dim));
    for (auto& b : m_bias)
        b = 0.1 * gaussianLike(rng);
}

std::vector<double> SceneEncoder::cellInput(const Scene& scene, int cell)
{
    std::vector<double> x(kInputs, 0.0);
    if (const auto* o = scene.objectAt(cell)) {
        x[1 + static_cast<int>(o->color)] = 1.0;
        x[7 + static_cast<int>(o->shape)] = 1.0;
        x[10 + static_cast<int>(o->size)] = 1.0;
    } else {
        x[0] = 1.0;
    }
    x[12 + cell / kSceneGrid] = 1.0;
    x[15 + cell % kSceneGrid] = 1.0;
    return x;
}

at::Tensor SceneEncoder::encode(const Scene& scene) const
{
    auto out = at::empty({ kSceneCells, m_dim }, at::kFloat);
    auto* data = out.data_ptr<float>();
    SplitMix64 noise(m_seed ^ fnv1a64("noise/" + scene.id));
    for (int cell = 0; cell < kSceneCells; ++cell) {
        const auto x = cellInput(scene, cell);
        for (int d = 0; d < m_dim; ++d) {
            double sum = m_bias[static_cast<std::size_t>(d)];
            const auto* w = &m_weight[static_cast<std::size_t>(d) * kInputs];
            for (int k = 0; k < kInputs; ++k)
                sum += w[k] * x[static_cast<std::size_t>(k)];
            data[cell * m_dim + d] = static_cast<float>(std::tanh(sum) + m_noise * gaussianLike(noise));
        }
    }
    return out;
}

std::string SceneEncoder::description() const
{
    return "scenes: frozen random encoder seed " + std::to_string(m_seed) + ", dim " + std::to_string(m_dim);
}

at::Tensor sceneBoxes()
{
    auto boxes = at::empty({ kSceneCells, 4 }, at::kFloat);
    auto* data = boxes.data_ptr<float>();
    for (int cell = 0; cell < kSceneCells; ++cell) {
        const int r = cell / kSceneGrid, c = cell % kSceneGrid;
        data[cell * 4 + 0] = static_cast<float>(c) / kSceneGrid;
        data[cell * 4 + 1] = static_cast<float>(c + 1) / kSceneGrid;
        data[cell * 4 + 2] = static_cast<float>(r) / kSceneGrid;
        data[cell * 4 + 3] = static_cast<float>(r + 1) / kSceneGrid;
    }
    return boxes;
}

void writeSceneTasks(const std::string& folder, const SceneTaskOptions& options)
{
    const auto dataset = buildSceneDataset(options);
    const SceneEncoder encoder(options.encoderSeed, options.visualDim, options.noise);
    demofs::makeDirectories(folder);

    // The features of every image of every split.
    std::vector<std::pair<std::string, VisualFeatures>> images;
    images.reserve(dataset.scenes.size());
    const auto boxes = sceneBoxes();
    for (const auto& scene : dataset.scenes)
        images.push_back({ scene.id, VisualFeatures { encoder.encode(scene), boxes } });
    writeVisualFeatureFile(demofs::join(folder, kVisualFeaturesFileName), images, encoder.description());

    nlohmann::ordered_json splits = nlohmann::ordered_json::object();
    for (const auto which : kSplits) {
        const auto& examples = dataset.split(which);
        const auto fileName = std::string(toString(which)) + ".jsonl";
        const auto path = demofs::join(folder, fileName);
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        if (!out)
            throw Error(path + ": cannot write");
        nlohmann::ordered_json perTask = nlohmann::ordered_json::object();
        for (const auto& name : sceneTaskNames())
            perTask[name] = 0;
        for (const auto& e : examples) {
            nlohmann::ordered_json line;
            line["id"] = e.id;
            line["task"] = e.task;
            if (e.task == kNlvr2)
                line["images"] = e.images;
            else
                line["image"] = e.images.front();
            if (e.task == kVqa || e.task == kGqa)
                line["question"] = e.question;
            if (e.task == kNlvr2)
                line["statement"] = e.statement;
            if (e.task == kVqa)
                line["answers"] = e.answers;
            else if (e.task == kGqa)
                line["answer"] = e.answer;
            else if (e.task == kNlvr2)
                line["label"] = e.label;
            else
                line["captions"] = e.captions;
            out << line.dump() << '\n';
            perTask[e.task] = perTask[e.task].get<std::size_t>() + 1;
        }
        out.close();
        if (!out)
            throw Error(path + ": write failed");
        std::size_t sceneCount = 0;
        for (const auto& s : dataset.scenes)
            sceneCount += s.split == which;
        splits[toString(which)] = { { "file", fileName }, { "size", examples.size() },
            { "images", sceneCount }, { "per_task", perTask } };
    }

    // Chance: the best constant answer, chosen on train, scored on test.
    std::map<std::string, std::map<std::string, std::size_t>> trainAnswers;
    for (const auto& e : dataset.train)
        if (e.task == kVqa || e.task == kGqa)
            ++trainAnswers[e.task][e.answer];
        else if (e.task == kNlvr2)
            ++trainAnswers[e.task][e.label ? "true" : "false"];
    nlohmann::ordered_json chance = nlohmann::ordered_json::object();
    nlohmann::ordered_json detail = nlohmann::ordered_json::object();
    for (const char* task : { kVqa, kGqa, kNlvr2 }) {
        const auto constant = majority(trainAnswers[task]);
        double score = 0.0;
        std::size_t n = 0, yesNo = 0;
        for (const auto& e : dataset.test) {
            if (e.task != task)
                continue;
            ++n;
            yesNo += isYesNo(e.answer);
            score += e.task == kVqa ? vqaAccuracy(constant, e.answers)
                : e.task == kGqa    ? static_cast<double>(e.answer == constant)
                                    : static_cast<double>((e.label ? "true" : "false") == constant);
        }
        const double accuracy = n == 0 ? 0.0 : score / static_cast<double>(n);
        chance[task] = accuracy;
        nlohmann::ordered_json d;
        d["constant_answer"] = task == std::string(kNlvr2) ? nlohmann::ordered_json(constant == "true")
                                                           : nlohmann::ordered_json(constant);
        d["metric"] = task == std::string(kVqa) ? "VQA soft accuracy, exact match of the answer strings"
            : task == std::string(kGqa)         ? "exact match"
                                                : "accuracy";
        d["test_score"] = accuracy;
        if (task != std::string(kNlvr2))
            d["yes_no_share"] = n == 0 ? 0.0 : static_cast<double>(yesNo) / static_cast<double>(n);
        detail[task] = d;
    }
    detail[kCaption]
        = "no constant-answer baseline: captions are scored by BLEU-4 and CIDEr-D against 3-5 references";

    nlohmann::ordered_json manifest;
    manifest["name"] = "scenes";
    manifest["description"]
        = "Program-generated vision-and-language demo: 3x3 grid scenes of 1-5 coloured shapes (6 colours, 3 "
          "shapes, 2 sizes), one visual token per cell from a fixed frozen random encoder, and four tasks in "
          "the "
          "layout of the LST paper's VL tasks whose answers follow from the scenes: vqa (open questions, 10 "
          "human answers), gqa (one exact answer, spatial relations), nlvr2 (a statement about two images, "
          "true/false, balanced) and caption (3-5 reference captions). \"left of\"/\"right of\" mean in the "
          "same row, \"above\"/\"below\" in the same column.";
    manifest["kind"] = "vl";
    manifest["tasks"] = sceneTaskNames();
    manifest["visual_tokens"] = kSceneCells;
    manifest["visual_dim"] = options.visualDim;
    manifest["features"] = kVisualFeaturesFileName;
    manifest["splits"] = splits;
    manifest["chance"] = chance;
    manifest["chance_detail"] = detail;
    manifest["options"] = { { "seed", options.seed }, { "encoder_seed", options.encoderSeed },
        { "visual_dim", options.visualDim }, { "noise", options.noise } };
    manifest["encoder"] = encoder.description();
    manifest["recipe_version"] = kSceneRecipeVersion;
    const auto manifestPath = demofs::join(folder, "task.json");
    std::ofstream out(manifestPath, std::ios::binary | std::ios::trunc);
    out << manifest.dump(2) << '\n';
    out.close();
    if (!out)
        throw Error(manifestPath + ": write failed");
}

bool sceneTasksComplete(const std::string& folder)
{
    nlohmann::json manifest;
    try {
        manifest = readJsonFile(demofs::join(folder, "task.json"), "the scene tasks' task.json");
    } catch (const Error&) {
        return false;
    }
    if (!manifest.is_object() || manifest.value("recipe_version", "") != kSceneRecipeVersion
        || manifest.value("kind", "") != "vl")
        return false;
    for (const auto which : kSplits)
        if (!demofs::isFile(demofs::join(folder, std::string(toString(which)) + ".jsonl")))
            return false;
    return demofs::isFile(demofs::join(folder, kVisualFeaturesFileName));
}

bool ensureSceneTasks(const std::string& folder)
{
    if (sceneTasksComplete(folder))
        return false;
    const auto staging = makeStagingDir(folder);
    try {
        writeSceneTasks(staging);
        publishStagingDir(staging, folder, &sceneTasksComplete);
    } catch (...) {
        try {
            demofs::removeTree(staging);
        } catch (const Error&) {
        }
        throw;
    }
    return true;
}

std::string sceneTasksDir()
{
    return demofs::join(demoCacheDir(), "tasks-vl/scenes");
}

} // namespace ladder
