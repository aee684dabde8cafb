#include "data/DemoTasks.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"
#include "util/SplitMix64.h"

namespace ladder {

namespace {

constexpr const char* kSupersense = "supersense";
constexpr const char* kDefinitionMatch = "definition-match";
constexpr DemoSplit kSplits[] = { DemoSplit::Train, DemoSplit::Validation, DemoSplit::Test };

std::string lower(std::string text)
{
    std::transform(text.begin(), text.end(), text.begin(),
        [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// Hash-ordered: the order a split's examples are taken and written in. Ties (never seen) fall back to the id.
template <typename T, typename KeyOf>
void sortByHash(std::vector<T>& items, const std::string& salt, KeyOf keyOf)
{
    std::vector<std::pair<std::uint64_t, std::size_t>> keys;
    keys.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i)
        keys.emplace_back(fnv1a64(salt + keyOf(items[i])), i);
    std::sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
        if (a.first != b.first)
            return a.first < b.first;
        return keyOf(items[a.second]) < keyOf(items[b.second]);
    });
    std::vector<T> sorted;
    sorted.reserve(items.size());
    for (const auto& k : keys)
        sorted.push_back(std::move(items[k.second]));
    items = std::move(sorted);
}

std::vector<DemoExample>& splitOf(DemoTask& task, DemoSplit which)
{
    switch (which) {
    case DemoSplit::Train:
        return task.train;
    case DemoSplit::Validation:
        return task.validation;
    case DemoSplit::Test:
        break;
    }
    return task.test;
}

// Synsets whose definition is non-empty and shared with no other synset of `synsets`: a duplicate
// definition would carry two labels, or appear in two splits.
std::vector<const Synset*> withUniqueDefinitions(const std::vector<const Synset*>& synsets)
{
    std::map<std::string, int> counts;
    for (const auto* s : synsets)
        if (!s->definition.empty())
            ++counts[s->definition];
    std::vector<const Synset*> out;
    for (const auto* s : synsets)
        if (!s->definition.empty() && counts[s->definition] == 1 && !s->lemmas.empty())
            out.push_back(s);
    return out;
}

std::size_t splitSize(DemoSplit which, std::size_t train, std::size_t validation, std::size_t test)
{
    return which == DemoSplit::Train ? train : which == DemoSplit::Validation ? validation : test;
}

} // namespace

std::uint64_t fnv1a64(const std::string& text)
{
    std::uint64_t hash = 14695981039346656037ull;
    for (const unsigned char c : text) {
        hash ^= c;
        hash *= 1099511628211ull;
    }
    return hash;
}

const char* toString(DemoSplit split)
{
    switch (split) {
    case DemoSplit::Train:
        return "train";
    case DemoSplit::Validation:
        return "validation";
    case DemoSplit::Test:
        return "test";
    }
    return "?";
}

DemoSplit demoSplitOf(const std::string& synsetId)
{
    const auto bucket = fnv1a64(synsetId) % 10;
    return bucket < 8 ? DemoSplit::Train : bucket == 8 ? DemoSplit::Validation : DemoSplit::Test;
}

const std::vector<DemoExample>& DemoTask::split(DemoSplit which) const
{
    return which == DemoSplit::Train ? train : which == DemoSplit::Validation ? validation : test;
}

std::vector<std::string> demoTaskNames()
{
    return { kSupersense, kDefinitionMatch };
}

DemoTask buildSupersenseTask(const std::vector<Synset>& synsets, const DemoTaskOptions& options)
{
    if (options.nounClasses < 0 || options.verbClasses < 0 || options.nounClasses + options.verbClasses < 2)
        throw Error("supersense task: at least two classes are needed");
    std::vector<const Synset*> candidates;
    for (const auto& s : synsets)
        if (s.pos == WordNetPos::Noun || s.pos == WordNetPos::Verb)
            candidates.push_back(&s);
    candidates = withUniqueDefinitions(candidates);

    // The classes: the most frequent lexicographer files of each part of speech.
    std::map<int, std::size_t> counts;
    for (const auto* s : candidates)
        ++counts[s->lexFileNumber];
    std::vector<std::string> labels;
    for (const auto pos : { WordNetPos::Noun, WordNetPos::Verb }) {
        std::vector<std::pair<std::size_t, int>> ranked; // (count, lex_filenum)
        for (const auto& [lexFile, count] : counts)
            if (wordNetLexname(lexFile).rfind(pos == WordNetPos::Noun ? "noun." : "verb.", 0) == 0)
                ranked.emplace_back(count, lexFile);
        std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        const auto wanted
            = static_cast<std::size_t>(pos == WordNetPos::Noun ? options.nounClasses : options.verbClasses);
        if (ranked.size() < wanted)
            throw Error("supersense task: WordNet has only " + std::to_string(ranked.size()) + " "
                + toString(pos) + " lexicographer files, " + std::to_string(wanted) + " requested");
        for (std::size_t i = 0; i < wanted; ++i)
            labels.push_back(wordNetLexname(ranked[i].second));
    }
    std::sort(labels.begin(), labels.end());

    DemoTask task;
    task.name = kSupersense;
    task.description
        = "Supersense of a WordNet gloss: which lexicographer file (noun.animal, verb.motion, ...) "
          "holds the noun or verb synset this definition belongs to. Class-balanced over the "
        + std::to_string(options.nounClasses) + " most frequent noun and "
        + std::to_string(options.verbClasses) + " most frequent verb lexicographer files.";
    task.textColumns = { "definition" };
    task.labels = labels;

    // Pools per (split, label), hash-ordered; each split takes an equal share of every class.
    std::map<std::pair<DemoSplit, std::string>, std::vector<const Synset*>> pools;
    const std::set<std::string> labelSet(labels.begin(), labels.end());
    for (const auto* s : candidates)
        if (labelSet.count(s->lexname))
            pools[{ demoSplitOf(s->id()), s->lexname }].push_back(s);
    for (const auto which : kSplits) {
        const auto total
            = splitSize(which, options.supersenseTrain, options.supersenseValidation, options.supersenseTest);
        auto& out = splitOf(task, which);
        for (std::size_t c = 0; c < labels.size(); ++c) {
            const auto quota = total / labels.size() + (c < total % labels.size() ? 1 : 0);
            auto pool = pools[{ which, labels[c] }];
            sortByHash(pool, "pick/", [](const Synset* s) { return s->id(); });
            if (pool.size() < quota)
                throw Error("supersense task: " + std::string(toString(which)) + " needs "
                    + std::to_string(quota) + " synsets of " + labels[c] + ", WordNet has "
                    + std::to_string(pool.size()));
            for (std::size_t i = 0; i < quota; ++i)
                out.push_back({ pool[i]->id(), { { "definition", pool[i]->definition } }, labels[c] });
        }
        sortByHash(out, "order/", [](const DemoExample& e) { return e.id; });
    }
    return task;
}

DemoTask buildDefinitionMatchTask(const std::vector<Synset>& synsets, const DemoTaskOptions& options)
{
    std::vector<const Synset*> all;
    for (const auto& s : synsets)
        all.push_back(&s);
    const auto candidates = withUniqueDefinitions(all);

    DemoTask task;
    task.name = kDefinitionMatch;
    task.description
        = "Does this word name what this definition describes? \"yes\": the definition of a WordNet "
          "synset whose first word is this word; \"no\": the definition of another synset of the same "
          "part of speech, none of whose words is this word. One of each per synset, so neither "
          "column alone predicts the label.";
    task.textColumns = { "word", "definition" };
    task.labels = { "no", "yes" };

    for (const auto which : kSplits) {
        const auto total = splitSize(which, options.matchTrain, options.matchValidation, options.matchTest);
        const auto anchorsWanted = total / 2;
        std::vector<const Synset*> pool;
        for (const auto* s : candidates)
            if (demoSplitOf(s->id()) == which)
                pool.push_back(s);
        sortByHash(pool, "pick/", [](const Synset* s) { return s->id(); });
        if (pool.size() < anchorsWanted)
            throw Error("definition-match task: " + std::string(toString(which)) + " needs "
                + std::to_string(anchorsWanted) + " synsets, WordNet has " + std::to_string(pool.size()));
        pool.resize(anchorsWanted);

        // Negatives come from anchors of the same split and part of speech: every definition of a split
        // is used by that split only, once as "yes" and about once as "no".
        std::map<WordNetPos, std::vector<const Synset*>> byPos;
        for (const auto* s : pool)
            byPos[s->pos].push_back(s);

        auto& out = splitOf(task, which);
        for (const auto* anchor : pool) {
            const auto& word = anchor->lemmas.front();
            const auto wordKey = lower(word);
            const auto& others = byPos[anchor->pos];
            SplitMix64 rng(options.seed ^ fnv1a64("negative/" + anchor->id()));
            const Synset* negative = nullptr;
            for (int attempt = 0; attempt < 1000 && !negative && others.size() > 1; ++attempt) {
                const auto* candidate = others[rng.next() % others.size()];
                if (candidate == anchor)
                    continue;
                bool sharesWord = false;
                for (const auto& lemma : candidate->lemmas)
                    sharesWord = sharesWord || lower(lemma) == wordKey;
                if (!sharesWord)
                    negative = candidate;
            }
            if (!negative)
                throw Error("definition-match task: no negative definition found for " + anchor->id() + " in "
                    + toString(which) + "; the split is too small");
            out.push_back(
                { anchor->id(), { { "word", word }, { "definition", anchor->definition } }, "yes" });
            out.push_back({ anchor->id() + "-" + negative->id(),
                { { "word", word }, { "definition", negative->definition } }, "no" });
        }
        sortByHash(out, "order/", [](const DemoExample& e) { return e.id; });
    }
    return task;
}

void writeDemoTask(const DemoTask& task, const std::string& tasksDir)
{
    const auto dir = demofs::join(tasksDir, task.name);
    demofs::makeDirectories(dir);

    nlohmann::json splits = nlohmann::json::object();
    for (const auto which : kSplits) {
        const auto& examples = task.split(which);
        const auto fileName = std::string(toString(which)) + ".jsonl";
        const auto path = demofs::join(dir, fileName);
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        if (!out)
            throw Error(path + ": cannot write");
        std::map<std::string, std::size_t> labelCounts;
        for (const auto& label : task.labels)
            labelCounts[label] = 0;
        for (const auto& e : examples) {
            nlohmann::ordered_json line;
            line["id"] = e.id;
            for (const auto& [column, text] : e.fields)
                line[column] = text;
            line[task.labelColumn] = e.label;
            out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
            ++labelCounts[e.label];
        }
        out.close();
        if (!out)
            throw Error(path + ": write failed");
        splits[toString(which)]
            = { { "file", fileName }, { "size", examples.size() }, { "label_counts", labelCounts } };
    }

    // Chance accuracy on the test split: the majority class's share (balanced tasks: 1 / classes).
    std::size_t majority = 0;
    for (const auto& [label, count] :
        splits["test"]["label_counts"].get<std::map<std::string, std::size_t>>())
        majority = std::max(majority, count);
    const double chance
        = task.test.empty() ? 0.0 : static_cast<double>(majority) / static_cast<double>(task.test.size());

    nlohmann::ordered_json manifest;
    manifest["name"] = task.name;
    manifest["description"] = task.description;
    manifest["text_columns"] = task.textColumns;
    manifest["label_column"] = task.labelColumn;
    manifest["kind"] = "classification";
    manifest["labels"] = task.labels;
    manifest["metric"] = "accuracy";
    manifest["label_targets"] = "text"; // the model generates "noun.animal", not a class index
    manifest["chance_accuracy"] = chance;
    manifest["splits"] = splits;
    manifest["source"] = "WordNet 3.0 (Princeton University), Debian package wordnet-base";
    manifest["recipe_version"] = kDemoRecipeVersion;
    const auto manifestPath = demofs::join(dir, "task.json");
    std::ofstream out(manifestPath, std::ios::binary | std::ios::trunc);
    out << manifest.dump(2) << '\n';
    out.close();
    if (!out)
        throw Error(manifestPath + ": write failed");
}

std::string demoCacheDir()
{
    if (const char* dir = std::getenv("LADDER_DEMO_DIR"); dir && *dir)
        return dir; // tests and shared installations point the demo elsewhere
    std::string base;
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/') {
        base = xdg; // the XDG spec: a relative path is invalid and is ignored
    } else if (const char* home = std::getenv("HOME"); home && *home) {
        base = demofs::join(home, ".cache");
    } else {
        throw Error("cannot find a cache folder: neither XDG_CACHE_HOME nor HOME is set; pass --dir");
    }
    return demofs::join(demofs::join(base, "ladderbench"), kDemoRecipeVersion);
}

bool demoTasksComplete(const std::string& tasksDir)
{
    for (const auto& name : demoTaskNames()) {
        const auto dir = demofs::join(tasksDir, name);
        nlohmann::json manifest;
        try {
            manifest = readJsonFile(demofs::join(dir, "task.json"), "a demo task's task.json");
        } catch (const Error&) {
            return false; // missing or unreadable: rebuilt
        }
        // Tasks written before label_targets existed trained on class indices: rebuild them (seconds).
        if (!manifest.is_object() || manifest.value("recipe_version", "") != kDemoRecipeVersion
            || manifest.value("label_targets", "") != "text")
            return false;
        for (const auto which : kSplits)
            if (!demofs::isFile(demofs::join(dir, std::string(toString(which)) + ".jsonl")))
                return false;
    }
    return true;
}

bool ensureDemoTasks(const std::string& tasksDir, const std::string& wordNetDir)
{
    if (demoTasksComplete(tasksDir))
        return false;
    const auto synsets = loadWordNet(wordNetDir);
    const auto options = DemoTaskOptions::defaults();
    const auto staging = makeStagingDir(tasksDir);
    try {
        writeDemoTask(buildSupersenseTask(synsets, options), staging);
        writeDemoTask(buildDefinitionMatchTask(synsets, options), staging);
        publishStagingDir(staging, tasksDir, &demoTasksComplete);
    } catch (...) {
        try {
            demofs::removeTree(staging);
        } catch (const Error&) {
        }
        throw;
    }
    return true;
}

namespace demofs {

namespace {
bool statOk(const std::string& path, struct stat& st)
{
    return ::stat(path.c_str(), &st) == 0;
}

int removeEntry(const char* path, const struct stat*, int, struct FTW*)
{
    return ::remove(path) == 0 ? 0 : errno;
}
} // namespace

bool exists(const std::string& path)
{
    struct stat st { };
    return ::lstat(path.c_str(), &st) == 0;
}

bool isFile(const std::string& path)
{
    struct stat st { };
    return statOk(path, st) && S_ISREG(st.st_mode);
}

bool isDirectory(const std::string& path)
{
    struct stat st { };
    return statOk(path, st) && S_ISDIR(st.st_mode);
}

bool isEmptyDirectory(const std::string& path)
{
    DIR* dir = ::opendir(path.c_str());
    if (!dir)
        return false;
    bool empty = true;
    while (const auto* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") {
            empty = false;
            break;
        }
    }
    ::closedir(dir);
    return empty;
}

void makeDirectories(const std::string& path)
{
    if (path.empty() || isDirectory(path))
        return;
    const auto parent = parentOf(path);
    if (parent != path && parent != ".")
        makeDirectories(parent);
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error(path + ": cannot create the folder: " + std::strerror(errno));
}

void removeTree(const std::string& path)
{
    if (!exists(path))
        return;
    const int rc = ::nftw(path.c_str(), &removeEntry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0)
        throw Error(path + ": cannot remove: " + std::strerror(rc > 0 ? rc : errno));
}

std::string join(const std::string& a, const std::string& b)
{
    if (a.empty())
        return b;
    return a.back() == '/' ? a + b : a + "/" + b;
}

std::string parentOf(const std::string& path)
{
    auto p = path;
    while (p.size() > 1 && p.back() == '/')
        p.pop_back();
    const auto slash = p.find_last_of('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : p.substr(0, slash);
}

std::string fileNameOf(const std::string& path)
{
    auto p = path;
    while (p.size() > 1 && p.back() == '/')
        p.pop_back();
    const auto slash = p.find_last_of('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

} // namespace demofs

namespace {

// Staging folders of processes that died (killed, power loss) are removed by the next build.
void removeDeadStagingDirs(const std::string& parent, const std::string& name)
{
    const auto prefix = name + ".partial-";
    std::vector<std::string> dead;
    if (DIR* dir = ::opendir(parent.c_str())) {
        while (const auto* entry = ::readdir(dir)) {
            const std::string entryName = entry->d_name;
            if (entryName.rfind(prefix, 0) != 0)
                continue;
            const auto pid = std::strtol(entryName.c_str() + prefix.size(), nullptr, 10);
            if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
                dead.push_back(demofs::join(parent, entryName));
        }
        ::closedir(dir);
    }
    for (const auto& path : dead) {
        try {
            demofs::removeTree(path);
        } catch (const Error&) {
            // Best effort: a folder we cannot remove does not stop a new build.
        }
    }
}

} // namespace

std::string makeStagingDir(const std::string& target)
{
    static std::atomic<unsigned> counter { 0 };
    const auto parent = demofs::parentOf(target);
    demofs::makeDirectories(parent);
    removeDeadStagingDirs(parent, demofs::fileNameOf(target));
    int lastErrno = 0;
    for (int attempt = 0; attempt < 100; ++attempt) {
        const auto staging = demofs::join(parent,
            demofs::fileNameOf(target) + ".partial-" + std::to_string(::getpid()) + "-"
                + std::to_string(counter++));
        if (::mkdir(staging.c_str(), 0755) == 0)
            return staging;
        lastErrno = errno;
    }
    throw Error(parent + ": cannot create a staging folder beside " + demofs::fileNameOf(target) + ": "
        + std::strerror(lastErrno));
}

void publishStagingDir(
    const std::string& staging, const std::string& target, bool (*isComplete)(const std::string&))
{
    if (demofs::exists(target)) {
        if (isComplete && isComplete(target)) {
            // Another process finished first; its folder is as good as ours.
            demofs::removeTree(staging);
            return;
        }
        demofs::removeTree(target);
    }
    if (::rename(staging.c_str(), target.c_str()) != 0) {
        const int error = errno;
        if (isComplete && isComplete(target)) {
            demofs::removeTree(staging);
            return;
        }
        throw Error("cannot rename " + staging + " to " + target + ": " + std::strerror(error));
    }
}

} // namespace ladder
