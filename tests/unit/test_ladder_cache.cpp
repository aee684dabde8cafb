// The LST ladder activation cache (core/train/LadderActivationCache.*, docs/PERFORMANCE.md): cached training
// gives the uncached run's losses bit for bit in fp32 (shuffled epochs, dynamic padding) and within bf16
// rounding in bf16; the key changes exactly when the stored values would; a disk cache round-trips through
// its memory-mapped file and is reused by a second run; truncated or corrupted files are rebuilt or their
// entries recomputed, never read; options that cannot be cached are refused with a clear error.
#include <cmath>
#include <cstdio>
#include <fstream>

#include <ATen/ATen.h>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "TestSupport.h"
#include "model/T5Tokenizer.h"
#include "peft/Ladder.h"
#include "train/LadderActivationCache.h"
#include "train/MemoryMeter.h"
#include "train/Trainer.h"
#include "train/TrainerInputs.h"
#include "util/Error.h"

using namespace ladder;

namespace {

T5Config tinyConfig(std::int64_t vocab = 64, double dropout = 0.1)
{
    T5Config c;
    c.vocabSize = vocab;
    c.dModel = 32;
    c.dKv = 8;
    c.dFf = 64;
    c.numHeads = 4;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 20;
    c.dropoutRate = dropout;
    return c;
}

MethodOptions ladderOptions(std::vector<std::int64_t> keep = {}, std::string ablation = "none")
{
    auto o = MethodOptions::defaults("ladder");
    o.init = "random"; // the cache stores backbone outputs, whatever the side network starts from
    o.r = 4;
    o.keep = std::move(keep);
    o.ablation = std::move(ablation);
    return o;
}

// Example e: `length` random source ids ending in </s> (1), targets of 2 ids; deterministic per example.
std::vector<std::int64_t> sourceOf(std::size_t e, std::int64_t length)
{
    std::vector<std::int64_t> ids;
    for (std::int64_t t = 0; t + 1 < length; ++t)
        ids.push_back(2 + static_cast<std::int64_t>((e * 7919 + t * 104729 + t * t * 31) % 60));
    ids.push_back(1);
    return ids;
}

// A padded batch of examples with given source lengths, padded to `padTo` (>= the longest).
Seq2SeqBatch batchOf(const std::vector<std::size_t>& examples, const std::vector<std::int64_t>& lengths,
    std::int64_t padTo, std::int64_t targetLength = 2)
{
    const auto rows = static_cast<std::int64_t>(examples.size());
    Seq2SeqBatch b;
    b.inputIds = at::zeros({ rows, padTo }, at::kLong);
    b.attentionMask = at::zeros({ rows, padTo }, at::kLong);
    b.labels = at::full({ rows, targetLength }, -100, at::kLong);
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto e = examples[static_cast<std::size_t>(r)];
        const auto ids = sourceOf(e, lengths[e]);
        for (std::size_t t = 0; t < ids.size(); ++t) {
            b.inputIds[r][static_cast<std::int64_t>(t)] = ids[t];
            b.attentionMask[r][static_cast<std::int64_t>(t)] = 1;
        }
        b.labels[r][0] = 2 + static_cast<std::int64_t>(e % 2);
        b.labels[r][1] = 1;
    }
    return b;
}

struct Fixture {
    T5ForConditionalGeneration backbone { nullptr };
    std::unique_ptr<LadderMethod> method;
    std::vector<std::int64_t> lengths;
    std::unique_ptr<LadderActivationCache> cache;

    explicit Fixture(const MethodOptions& options, std::vector<std::int64_t> sourceLengths,
        std::string dtype = "fp32", std::string padding = "same")
        : lengths(std::move(sourceLengths))
    {
        at::manual_seed(11);
        backbone = T5ForConditionalGeneration(tinyConfig());
        method = std::make_unique<LadderMethod>(backbone, options, BatchSource {});
        method->train(true);
        LadderCacheOptions co;
        co.dtype = dtype;
        co.padding = padding;
        cache = std::make_unique<LadderActivationCache>(
            LadderCacheLayout::forSide(method->sideNetwork()->options()), lengths,
            std::vector<std::int64_t>(lengths.size(), 2), LadderCacheKey {}, co);
    }
};

// Loss and the gradients of every trainable parameter after one forward/backward, with the RNG seeded first
// (the side network's dropout draws the same masks when the same operations run).
struct Pass {
    double loss = 0.0;
    std::vector<at::Tensor> grads;
};

template <class Forward> Pass runPass(LadderMethod& method, Forward forward)
{
    for (auto& p : method.trainableParameters())
        p.mutable_grad() = at::Tensor();
    at::manual_seed(5);
    at::Tensor loss = forward();
    loss.backward();
    Pass out;
    out.loss = loss.item<double>();
    for (auto& p : method.trainableParameters())
        out.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    return out;
}

bool bitEqual(const Pass& a, const Pass& b)
{
    if (a.loss != b.loss || a.grads.size() != b.grads.size())
        return false;
    for (std::size_t i = 0; i < a.grads.size(); ++i)
        if (a.grads[i].defined() != b.grads[i].defined()
            || (a.grads[i].defined() && !at::equal(a.grads[i], b.grads[i])))
            return false;
    return true;
}

// ---- trainer-level fixtures: the real T5 vocabulary so the real tokenizer can be used --------------------
T5ForConditionalGeneration tinyT5VocabBackbone()
{
    at::manual_seed(3);
    auto c = tinyConfig(32128, 0.1);
    T5ForConditionalGeneration m(c);
    at::NoGradGuard g;
    m->shared->weight.normal_(0.0, 1.0);
    return m;
}

// Sentences of about 17 to 40 tokens (every batch is padded to 16 or more, see docs/PERFORMANCE.md) with
// lengths that differ, so dynamic padding pads each batch differently from epoch to epoch.
TaskSplits lengthyTask(std::size_t trainExamples)
{
    TaskSplits t;
    t.info.name = "lengthy";
    t.info.kind = TaskKind::Classification;
    t.info.labels = { "0", "1" };
    t.info.labelNames = { "fruit", "animal" };
    t.info.metrics = { "accuracy" };
    t.info.mainMetric = "accuracy";
    const std::vector<std::string> words { "apple", "horse", "cherry", "tiger", "grape", "mouse", "lemon",
        "eagle" };
    const std::vector<std::string> filler { "which was seen near the old house on the hill yesterday evening",
        "and the children looked at it for a long time before going home", "while the weather stayed calm",
        "in the garden behind the school" };
    for (std::size_t n = 0; n < trainExamples + 8; ++n) {
        TextExample e;
        const auto kind = static_cast<int>(n % 2);
        e.source = "classify this sentence: the " + words[n % words.size()] + " " + filler[n % filler.size()]
            + (n % 3 == 0 ? " " + filler[(n + 1) % filler.size()] : std::string());
        e.target = std::to_string(kind);
        e.label = e.target;
        e.labelIndex = kind;
        e.id = "ex-" + std::to_string(n);
        (n < trainExamples ? t.train : (n % 2 ? t.test : t.validation)).push_back(e);
    }
    return t;
}

RunSpec lengthySpec(const std::string& cache, const std::string& dtype = "fp32", const std::string& dir = "",
    const std::string& padding = "same")
{
    RunSpec s;
    s.backbone = "tiny";
    s.method = ladderOptions();
    s.method.cache = cache;
    s.method.cacheDtype = dtype;
    s.method.cacheDir = dir;
    s.method.cachePadding = padding;
    s.training.epochs = 3;
    s.training.batchSize = 4;
    s.training.warmupSteps = 2;
    s.training.learningRate = 3e-3;
    s.training.maxSourceLength = 20; // most examples are longer: most batches are padded to 20
    s.training.maxEvalExamples = 4;
    s.seed = 7;
    return s;
}

TrainerInputs lengthyInputs()
{
    LADDER_REQUIRE_FIXTURES_OR_THROW();
    TrainerInputs in;
    in.backbone = tinyT5VocabBackbone().ptr();
    in.tokenizer = std::make_shared<T5Tokenizer>(test::fixture("t5-spiece/spiece.model"));
    in.task = lengthyTask(18); // 5 batches per epoch, the last one smaller
    return in;
}

struct Recorder : TrainerObserver {
    std::vector<double> losses;
    std::vector<std::string> logs;
    void onStep(const TrainStep& s) override { losses.push_back(s.loss); }
    void onLog(const std::string& level, const std::string& message) override
    {
        logs.push_back(level + ": " + message);
    }
    bool logged(const std::string& part) const
    {
        for (const auto& l : logs)
            if (l.find(part) != std::string::npos)
                return true;
        return false;
    }
};

std::vector<double> trainLosses(const RunSpec& spec, Recorder& rec)
{
    Trainer trainer(spec);
    const auto summary = trainer.run(lengthyInputs(), rec);
    if (summary.status != RunOutcome::Finished)
        throw std::runtime_error("run failed: " + summary.message);
    return rec.losses;
}

std::string onlyCacheFile(const std::string& dir)
{
    const auto files = QDir(QString::fromStdString(dir)).entryList({ "*.lcache" }, QDir::Files);
    return files.size() == 1 ? dir + "/" + files.front().toStdString() : std::string();
}

} // namespace

class TestLadderCache : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    // What exactness rests on. An example's backbone outputs do not depend on the other rows of its batch
    // (the premise of cache_padding "same"), but they do depend, in the last bits, on the padded length of
    // the batch (why "any" is only equal to fp32 rounding): reductions over the padded key dimension take
    // other kernel paths for other lengths.
    void backboneOutputsAndPadding()
    {
        at::manual_seed(1);
        T5ForConditionalGeneration m(tinyConfig(64, 0.0));
        m->eval();
        at::NoGradGuard g;
        const std::vector<std::int64_t> keep { 0, 1 };
        const std::vector<std::int64_t> lengths { 20, 9, 31, 17, 40, 12 };
        // Encoder and decoder block outputs of one row, its real positions only.
        auto outputsOf = [&](std::vector<std::size_t> rows, std::int64_t padTo, std::size_t row) {
            const auto b = batchOf(rows, lengths, padTo);
            const auto enc
                = m->encoder->forward(m->shared(b.inputIds), b.attentionMask, {}, {}, nullptr, &keep);
            const auto dec = m->decoder->forward(m->shared(m->shiftRight(b.labels)), at::Tensor(),
                enc.lastHiddenState, b.attentionMask, nullptr, &keep);
            const auto r = static_cast<std::int64_t>(row);
            const auto len = lengths[rows[row]];
            return at::cat({ enc.blockOutputs[0][r].slice(0, 0, len), enc.blockOutputs[1][r].slice(0, 0, len),
                dec.blockOutputs[0][r], dec.blockOutputs[1][r] });
        };
        const auto reference = outputsOf({ 0, 1 }, 35, 0);
        QVERIFY(at::equal(outputsOf({ 1, 0, 3 }, 35, 1), reference)); // other rows, same padding
        QVERIFY(at::equal(outputsOf({ 2, 5, 1, 0, 3 }, 35, 3), reference)); // a larger batch
        double worst = 0.0;
        int differing = 0;
        for (std::int64_t pad = 20; pad <= 64; ++pad) {
            const auto diff = (outputsOf({ 0, 3, 5 }, pad, 0) - reference).abs().max().item<double>();
            worst = std::max(worst, diff);
            differing += diff > 0.0 ? 1 : 0;
        }
        qInfo("example of 20 tokens padded to 20..64 vs 35: %d of 45 paddings differ, max |diff| %g",
            differing, worst);
        QVERIFY(worst < 1e-5);
    }

    // One batch: the cached forward (zeros at padded positions) gives the uncached loss and gradients bit for
    // bit, and other batches regroup and re-pad stored examples with the same result as running the backbone.
    void cachedForwardEqualsUncached_data()
    {
        QTest::addColumn<QString>("ablation");
        QTest::addColumn<bool>("merge");
        QTest::newRow("none") << "none" << false;
        QTest::newRow("none+merge") << "none" << true;
        QTest::newRow("cross-attention") << "cross-attention" << false;
        QTest::newRow("adapter-blocks") << "adapter-blocks" << false;
        QTest::newRow("side-tuning") << "side-tuning" << false;
    }
    void cachedForwardEqualsUncached()
    {
        QFETCH(QString, ablation);
        QFETCH(bool, merge);
        auto options = ladderOptions({}, ablation.toStdString());
        options.mergeBackbone = merge;
        Fixture f(options, { 20, 17, 31, 25, 40, 18 });
        auto& m = *f.method;
        const std::vector<std::size_t> first { 0, 1, 2 };
        const auto b1 = batchOf(first, f.lengths, 35); // longer than needed: padded positions must not matter
        const auto plain = runPass(m, [&] { return m.forward(b1).loss; });
        const auto filling = runPass(m, [&] { return forwardWithCache(m, b1, first, *f.cache).loss; });
        QVERIFY(bitEqual(filling, plain));
        QCOMPARE(f.cache->storedCount(), std::size_t(3));
        const auto cached = runPass(m, [&] { return forwardWithCache(m, b1, first, *f.cache).loss; });
        QVERIFY2(bitEqual(cached, plain),
            qPrintable(QString("loss %1 vs %2").arg(cached.loss, 0, 'g', 17).arg(plain.loss, 0, 'g', 17)));

        // Store the rest, then regroup stored examples in another order and batch at their padding: served
        // from the cache, bit-equal to running the backbone.
        const std::vector<std::size_t> rest { 3, 4, 5 };
        (void)runPass(
            m, [&] { return forwardWithCache(m, batchOf(rest, f.lengths, 40), rest, *f.cache).loss; });
        QVERIFY(f.cache->contains({ 0, 1, 2, 3, 4, 5 }));
        const std::vector<std::size_t> regrouped { 5, 3 };
        const auto b2 = batchOf(regrouped, f.lengths, 40);
        const auto hitsBefore = f.cache->hits;
        const auto fromCache = runPass(m, [&] { return forwardWithCache(m, b2, regrouped, *f.cache).loss; });
        QCOMPARE(f.cache->hits, hitsBefore + 1);
        QVERIFY(bitEqual(fromCache, runPass(m, [&] { return m.forward(b2).loss; })));

        // Padding "same": examples stored at other paddings run the backbone again (and are stored anew).
        const std::vector<std::size_t> mixed { 4, 0, 5, 1 };
        const auto b3 = batchOf(mixed, f.lengths, 40);
        const auto missesBefore = f.cache->misses;
        const auto recomputed = runPass(m, [&] { return forwardWithCache(m, b3, mixed, *f.cache).loss; });
        QCOMPARE(f.cache->misses, missesBefore + 1);
        QVERIFY(bitEqual(recomputed, runPass(m, [&] { return m.forward(b3).loss; })));
        QVERIFY(f.cache->contains({ 0, 1 }, 40, 2));
        QVERIFY(!f.cache->contains({ 2 }, 40, 2));
    }

    // Padding "any": stored values are used at any padding; equal to the uncached run to fp32 rounding.
    void anyPaddingWithinRounding()
    {
        Fixture f(ladderOptions(), { 20, 17, 31, 25, 40, 18 }, "fp32", "any");
        auto& m = *f.method;
        const std::vector<std::size_t> first { 0, 1, 2 }, rest { 3, 4, 5 }, mixed { 4, 0, 5, 1 };
        (void)forwardWithCache(m, batchOf(first, f.lengths, 35), first, *f.cache);
        (void)forwardWithCache(m, batchOf(rest, f.lengths, 40), rest, *f.cache);
        const auto b = batchOf(mixed, f.lengths, 43);
        const auto hitsBefore = f.cache->hits;
        const auto cached = runPass(m, [&] { return forwardWithCache(m, b, mixed, *f.cache).loss; });
        QCOMPARE(f.cache->hits, hitsBefore + 1);
        const auto plain = runPass(m, [&] { return m.forward(b).loss; });
        qInfo("padding any: loss %.9g vs %.9g", cached.loss, plain.loss);
        QVERIFY(std::abs(cached.loss - plain.loss) <= 1e-6 * std::abs(plain.loss));
        for (std::size_t i = 0; i < plain.grads.size(); ++i)
            if (plain.grads[i].defined())
                QVERIFY(test::relativeError(cached.grads[i], plain.grads[i]) < 1e-4);
    }

    void bf16StorageWithinRounding()
    {
        Fixture f(ladderOptions(), { 20, 17, 31, 25 }, "bf16");
        auto& m = *f.method;
        const std::vector<std::size_t> all { 0, 1, 2, 3 };
        const auto b = batchOf(all, f.lengths, 31);
        const auto plain = runPass(m, [&] { return m.forward(b).loss; });
        (void)runPass(m, [&] { return forwardWithCache(m, b, all, *f.cache).loss; });
        const auto cached = runPass(m, [&] { return forwardWithCache(m, b, all, *f.cache).loss; });
        qInfo("bf16 cache: loss %.9f vs %.9f", cached.loss, plain.loss);
        QVERIFY(cached.loss != plain.loss); // the bf16 path is really taken
        QVERIFY(std::abs(cached.loss - plain.loss) <= 1e-2 * std::abs(plain.loss));
        // The stored values are the backbone's rounded to bf16 (relative error at most 2^-8 per value).
        const auto stored = f.cache->gather(all, 31, 2, c10::kCPU);
        QCOMPARE(stored.encoder[0].scalar_type(), at::kFloat);
        LadderBackboneOutputs exact;
        {
            at::NoGradGuard g;
            m.model().encode(b.inputIds, b.attentionMask, nullptr, &exact);
        }
        const auto valid = b.attentionMask.unsqueeze(-1).to(at::kFloat);
        const auto rounded = exact.encoder[1].to(at::kBFloat16).to(at::kFloat) * valid;
        QVERIFY(at::equal(stored.encoder[1], rounded));
    }

    void trainerFp32LossesExactOverEpochs()
    {
        LADDER_REQUIRE_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(lengthySpec("none"), plainRec);
        const auto cached = trainLosses(lengthySpec("ram"), cachedRec);
        QCOMPARE(plain.size(), std::size_t(15)); // 3 epochs x 5 batches
        QCOMPARE(cached.size(), plain.size());
        for (std::size_t i = 0; i < plain.size(); ++i)
            QVERIFY2(cached[i] == plain[i],
                qPrintable(QString("step %1: %2 vs %3")
                               .arg(i + 1)
                               .arg(cached[i], 0, 'g', 17)
                               .arg(plain[i], 0, 'g', 17)));
        QVERIFY(plain.front() != plain.back()); // it trained
        QVERIFY(cachedRec.logged("ladder cache (ram, fp32, padding same)"));
        QVERIFY(cachedRec.logged("18 of 18 examples stored"));
        // Some later batches were served from the cache (the others ran the backbone at a new padding).
        std::string last;
        for (const auto& l : cachedRec.logs)
            if (l.find("batches served from it") != std::string::npos)
                last = l;
        qInfo("%s", last.c_str());
        QVERIFY(last.find("; 0 batches served") == std::string::npos);
    }

    void trainerAnyPaddingWithinRounding()
    {
        LADDER_REQUIRE_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(lengthySpec("none"), plainRec);
        const auto cached = trainLosses(lengthySpec("ram", "fp32", "", "any"), cachedRec);
        QCOMPARE(cached.size(), plain.size());
        double worst = 0.0;
        for (std::size_t i = 0; i < plain.size(); ++i)
            worst = std::max(worst, std::abs(cached[i] - plain[i]) / std::abs(plain[i]));
        qInfo("padding any: largest relative loss difference over 3 epochs: %g", worst);
        QVERIFY(worst < 1e-5);
        // Every batch after the first epoch is served from the cache.
        QVERIFY(cachedRec.logged("10 batches served from it, 5 ran the backbone"));
    }

    void trainerBf16LossesWithinRounding()
    {
        LADDER_REQUIRE_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(lengthySpec("none"), plainRec);
        const auto cached = trainLosses(lengthySpec("ram", "bf16", "", "any"), cachedRec);
        QCOMPARE(cached.size(), plain.size());
        double worst = 0.0;
        for (std::size_t i = 0; i < plain.size(); ++i) {
            if (i < 5)
                QCOMPARE(cached[i], plain[i]); // epoch 1 runs the backbone
            worst = std::max(worst, std::abs(cached[i] - plain[i]) / std::abs(plain[i]));
        }
        qInfo("bf16 cache: largest relative loss difference over epochs 2-3: %g", worst);
        QVERIFY(worst > 0.0);
        QVERIFY(worst < 1e-2);
    }

    // The key covers what the stored values are a function of, and nothing else.
    void keyChangesExactlyWhenValuesWould()
    {
        at::manual_seed(2);
        T5ForConditionalGeneration backbone(tinyConfig());
        const std::vector<std::vector<std::int64_t>> sources { { 5, 6, 7, 1 }, { 8, 9, 1 } };
        const std::vector<std::vector<std::int64_t>> targets { { 3, 1 }, { 4, 1 } };
        auto layoutFor = [&](const MethodOptions& o) {
            return LadderCacheLayout::forSide(ladderSideOptions(backbone->config(), o));
        };
        auto keyFor
            = [&](const MethodOptions& o, const std::string& compute = "cpu-fp32",
                  const std::string& dtype = "fp32", decltype(sources) s = {}, decltype(targets) t = {}) {
                  return LadderCacheKey::make(*backbone, layoutFor(o), compute, dtype,
                      s.empty() ? sources : s, t.empty() ? targets : t)
                      .hash;
              };
        const auto base = keyFor(ladderOptions({ 0, 1 }));
        QCOMPARE(keyFor(ladderOptions({ 0, 1 })), base); // deterministic
        auto o = ladderOptions({ 0, 1 });
        o.r = 8;
        o.gateTemperature = 0.5;
        o.init = "magnitude";
        QCOMPARE(keyFor(o), base); // side-network choices do not change the backbone's outputs
        QVERIFY(keyFor(ladderOptions({ 1 })) != base); // keep list
        QVERIFY(keyFor(ladderOptions({ 0, 1 }), "cuda-fp32") != base);
        QVERIFY(keyFor(ladderOptions({ 0, 1 }), "cpu-fp32", "bf16") != base);
        QVERIFY(keyFor(ladderOptions({ 0, 1 }), "cpu-fp32", "fp32", { { 5, 6, 7, 1 }, { 8, 10, 1 } })
            != base); // data
        QVERIFY(keyFor(ladderOptions({ 0, 1 }), "cpu-fp32", "fp32", { { 5, 6, 1 }, { 8, 9, 1 } })
            != base); // truncation
        QVERIFY(keyFor(ladderOptions({ 0, 1 }), "cpu-fp32", "fp32", {}, { { 3, 1 }, { 5, 1 } })
            != base); // targets
        auto merged = ladderOptions({ 0, 1 });
        merged.mergeBackbone = true;
        QVERIFY(keyFor(merged) != base); // the decoder's final output is stored too
        {
            at::NoGradGuard g;
            backbone->encoder->blocks[1]->parameters()[0].view(-1)[0] += 1e-3f;
        }
        QVERIFY(keyFor(ladderOptions({ 0, 1 })) != base); // one backbone weight
    }

    void diskRoundTripAndReuse()
    {
        const auto dir = test::makeTempDir();
        LadderCacheOptions co;
        co.mode = "disk";
        co.dir = dir + "/cache";
        const std::vector<std::int64_t> lengths { 20, 17, 31, 25 };
        Fixture f(ladderOptions(), lengths);
        auto& m = *f.method;
        const auto layout = LadderCacheLayout::forSide(m.sideNetwork()->options());
        LadderCacheKey key { "test", 42 };
        const std::vector<std::size_t> all { 0, 1, 2, 3 };
        const auto b = batchOf(all, lengths, 33);
        LadderBackboneOutputs reference;
        std::vector<std::string> logs;
        auto log = [&](const std::string& level, const std::string& message) {
            logs.push_back(level + ": " + message);
        };
        {
            LadderActivationCache disk(layout, lengths, { 2, 2, 2, 2 }, key, co, log);
            QCOMPARE(disk.reusedCount(), std::size_t(0));
            QVERIFY(QFile::exists(QString::fromStdString(disk.path())));
            (void)forwardWithCache(m, b, all, disk);
            reference = disk.gather(all, 33, 2, c10::kCPU);
            QCOMPARE(disk.bytes(), LadderActivationCache::bytesFor(layout, lengths, { 2, 2, 2, 2 }, "fp32"));
        }
        {
            LadderActivationCache again(layout, lengths, { 2, 2, 2, 2 }, key, co, log);
            QCOMPARE(again.reusedCount(), std::size_t(4));
            const auto read = again.gather(all, 33, 2, c10::kCPU);
            for (std::size_t l = 0; l < read.encoder.size(); ++l)
                QVERIFY(at::equal(read.encoder[l], reference.encoder[l]));
            for (std::size_t l = 0; l < read.decoder.size(); ++l)
                QVERIFY(at::equal(read.decoder[l], reference.decoder[l]));
            // Against the backbone itself (zeros where padded).
            LadderBackboneOutputs direct;
            {
                at::NoGradGuard g;
                m.model().encode(b.inputIds, b.attentionMask, nullptr, &direct);
            }
            QVERIFY(
                at::equal(read.encoder[0], direct.encoder[0] * b.attentionMask.unsqueeze(-1).to(at::kFloat)));
        }
        // Another key uses another file.
        LadderActivationCache other(layout, lengths, { 2, 2, 2, 2 }, LadderCacheKey { "other", 43 }, co, log);
        QCOMPARE(other.reusedCount(), std::size_t(0));
    }

    void corruptFilesAreRebuiltOrRecomputed()
    {
        const auto dir = test::makeTempDir();
        LadderCacheOptions co;
        co.mode = "disk";
        co.dir = dir;
        const std::vector<std::int64_t> lengths { 20, 17, 31, 25 };
        const std::vector<std::int64_t> targets { 2, 2, 2, 2 };
        Fixture f(ladderOptions(), lengths);
        const auto layout = LadderCacheLayout::forSide(f.method->sideNetwork()->options());
        const LadderCacheKey key { "test", 7 };
        const std::vector<std::size_t> all { 0, 1, 2, 3 };
        const auto b = batchOf(all, lengths, 31);
        std::vector<std::string> logs;
        auto log = [&](const std::string& level, const std::string& message) {
            logs.push_back(level + ": " + message);
        };
        auto fill = [&] {
            LadderActivationCache c(layout, lengths, targets, key, co, log);
            (void)forwardWithCache(*f.method, b, all, c);
            return c.path();
        };
        auto reopen
            = [&] { return std::make_unique<LadderActivationCache>(layout, lengths, targets, key, co, log); };
        const auto path = fill();
        const auto size = QFileInfo(QString::fromStdString(path)).size();

        // A flipped byte in the values of example 3 (the last): that entry alone is computed again.
        {
            std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
            io.seekg(size - 100);
            const char c = static_cast<char>(io.get());
            io.seekp(size - 100);
            io.put(static_cast<char>(c ^ 0x5a));
        }
        logs.clear();
        {
            auto c = reopen();
            QCOMPARE(c->reusedCount(), std::size_t(3));
            QVERIFY(!c->contains({ 3 }));
            QVERIFY(logs.size() >= 1 && logs.front().find("failed their checksum") != std::string::npos);
            (void)forwardWithCache(*f.method, b, all, *c);
            QVERIFY(c->contains(all));
        }

        // Truncated: rebuilt from scratch, with a warning that says why.
        QVERIFY(QFile::resize(QString::fromStdString(path), size / 2));
        logs.clear();
        {
            auto c = reopen();
            QCOMPARE(c->reusedCount(), std::size_t(0));
            QVERIFY(logs.front().find("truncated") != std::string::npos);
            QVERIFY(logs.front().find("rebuilding") != std::string::npos);
            QCOMPARE(QFileInfo(QString::fromStdString(path)).size(), size);
            (void)forwardWithCache(*f.method, b, all, *c);
        }

        // A damaged header (magic, then a field under the checksum), and a file of zeros.
        for (int damage = 0; damage < 3; ++damage) {
            {
                std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
                if (damage == 2) {
                    const std::string zeros(static_cast<std::size_t>(size), '\0');
                    io.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
                } else {
                    io.seekp(damage == 0 ? 0 : 24);
                    io.put('\x11');
                }
            }
            logs.clear();
            auto c = reopen();
            QCOMPARE(c->reusedCount(), std::size_t(0));
            QVERIFY2(!logs.empty() && logs.front().find("rebuilding") != std::string::npos,
                logs.empty() ? "no log" : logs.front().c_str());
            (void)forwardWithCache(*f.method, b, all, *c);
            QVERIFY(c->contains(all));
        }
        // The rebuilt file is valid again.
        QCOMPARE(reopen()->reusedCount(), std::size_t(4));

        // A cache folder that cannot be created is a clear error.
        LadderCacheOptions bad = co;
        bad.dir = path + "/sub"; // below a regular file
        try {
            LadderActivationCache c(layout, lengths, targets, key, bad, log);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("cannot create the folder") != std::string::npos, e.what());
        }
    }

    void trainerDiskCacheReusedBySecondRun()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto dir = test::makeTempDir();
        Recorder first, second, plainRec;
        const auto a = trainLosses(lengthySpec("disk", "fp32", dir), first);
        QVERIFY(first.logged("ladder cache: created"));
        const auto path = onlyCacheFile(dir);
        QVERIFY(!path.empty());
        const auto b = trainLosses(lengthySpec("disk", "fp32", dir), second);
        QVERIFY(second.logged("ladder cache: reusing"));
        QVERIFY(second.logged("(18 of 18 examples stored)"));
        QCOMPARE(b, a);
        const auto plain = trainLosses(lengthySpec("none"), plainRec);
        QCOMPARE(a, plain);
        // Another keep list: another key, another file.
        auto spec = lengthySpec("disk", "fp32", dir);
        spec.method.keep = { 1 };
        Recorder third;
        (void)trainLosses(spec, third);
        QVERIFY(third.logged("ladder cache: created"));
        QCOMPARE(QDir(QString::fromStdString(dir)).entryList({ "*.lcache" }, QDir::Files).size(), 2);
    }

    // `ladder bench speed` end to end on a tiny shape (a config.json): every method timed, both cache
    // policies run, the cached losses equal to the uncached ones; bad flags are one-line errors.
    void benchSpeedCommand()
    {
        const auto dir = test::makeTempDir();
        {
            std::ofstream out(dir + "/config.json");
            out << nlohmann::json {
                { "d_model", 32 }, { "d_kv", 8 }, { "d_ff", 64 }, { "num_heads", 4 }, { "num_layers", 2 },
                { "num_decoder_layers", 2 }, { "vocab_size", 64 }, { "relative_attention_num_buckets", 8 },
                { "relative_attention_max_distance", 20 }, { "feed_forward_proj", "relu" },
                { "tie_word_embeddings", true }, { "dropout_rate", 0.1 }, { "layer_norm_epsilon", 1e-6 },
                { "pad_token_id", 0 }, { "eos_token_id", 1 }, { "decoder_start_token_id", 0 }
            }.dump();
        }
        const auto r = test::runCli(
            { "bench", "speed", "--model", QString::fromStdString(dir), "--batch", "4", "--src-len", "24",
                "--tgt-len", "3", "--examples", "12", "--epochs", "2", "--threads", "1", "--json" });
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j.at("batches_per_epoch").get<int>(), 3);
        for (const char* m : { "full", "lora", "adapter", "ladder" })
            QVERIFY2(j.at("methods").at(m).at("seconds_per_step").get<double>() > 0.0, m);
        QCOMPARE(j.at("methods").at("full").at("step_ratio_to_full").get<double>(), 1.0);
        const auto& cache = j.at("ladder_cache");
        QCOMPARE(cache.size(), std::size_t(2));
        for (const auto& c : cache) {
            QCOMPARE(c.at("epoch_seconds").size(), std::size_t(2));
            QCOMPARE(c.at("hits").get<int>() + c.at("misses").get<int>(), 6);
        }
        QCOMPARE(cache[0].at("padding").get<std::string>(), std::string("same"));
        QCOMPARE(cache[0].at("max_loss_difference").get<double>(), 0.0); // bit-equal by construction
        QCOMPARE(cache[1].at("hits").get<int>(), 3); // "any": all of epoch 2
        QVERIFY(cache[1].at("max_loss_difference").get<double>() < 1e-5);

        const auto bad
            = test::runCli({ "bench", "speed", "--model", QString::fromStdString(dir), "--epochs", "1" });
        QVERIFY(bad.exitCode != 0);
        QVERIFY2(bad.err.find("--epochs") != std::string::npos, bad.err.c_str());
        const auto order = test::runCli(
            { "bench", "speed", "--model", QString::fromStdString(dir), "--methods", "ladder,full" });
        QVERIFY(order.exitCode != 0);
        QVERIFY2(order.err.find("must start with full") != std::string::npos, order.err.c_str());
    }

    void refusesWhatCannotBeCached()
    {
        auto expectError = [](const nlohmann::json& j, const std::string& part) {
            try {
                (void)MethodOptions::fromJson(j, "run.json");
                QFAIL(("expected an error for " + j.dump()).c_str());
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(part) != std::string::npos, e.what());
            }
        };
        expectError({ { "method", "ladder" }, { "cache", "ram" }, { "backbone_train_mode", true } },
            "run.json: field cache: the ladder activation cache needs the backbone in eval mode");
        expectError(
            { { "method", "ladder" }, { "cache", "ram" }, { "ablation", "no-ladders" } }, "nothing to cache");
        expectError({ { "method", "ladder" }, { "cache", "disk" } }, "field cache_dir");
        expectError(
            { { "method", "ladder" }, { "cache", "gpu" } }, "field cache: expected one of none, ram, disk");
        expectError(
            { { "method", "ladder" }, { "cache", "ram" }, { "cache_dtype", "fp16" } }, "field cache_dtype");
        expectError(
            { { "method", "ladder" }, { "cache_dtype", "bf16" } }, "only meaningful with cache ram or disk");
        expectError({ { "method", "ladder" }, { "cache", "ram" }, { "cache_padding", "some" } },
            "field cache_padding");
        expectError(
            { { "method", "lora" }, { "cache", "ram" } }, "field cache: not an option of method lora");

        const auto o = MethodOptions::fromJson({ { "method", "ladder" }, { "cache", "disk" },
            { "cache_dtype", "bf16" }, { "cache_dir", "/tmp/x" } });
        QCOMPARE(o.toJson().at("cache").get<std::string>(), std::string("disk"));
        QCOMPARE(MethodOptions::fromJson(o.toJson()).cacheDir, std::string("/tmp/x"));
        QVERIFY(!MethodOptions::defaults("ladder").toJson().contains(
            "cache")); // specs without the cache unchanged

        // A trainer run with backbone_train_mode and a cache fails with the message, not a crash.
        auto options = ladderOptions();
        options.backboneTrainMode = true;
        options.cache = "ram";
        try {
            options.validate(tinyConfig());
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY(std::string(e.what()).find("eval mode") != std::string::npos);
        }
        Fixture f(ladderOptions(), { 20, 17 });
        auto trainMode = ladderOptions();
        trainMode.backboneTrainMode = true;
        LadderMethod m(f.backbone, trainMode, BatchSource {});
        try {
            (void)forwardWithCache(m, batchOf({ 0, 1 }, f.lengths, 20), { 0, 1 }, *f.cache);
            QFAIL("expected an error");
        } catch (const Error& e) {
            QVERIFY(std::string(e.what()).find("eval mode") != std::string::npos);
        }
    }
};

LADDER_TEST_GUILESS_MAIN(TestLadderCache)
#include "test_ladder_cache.moc"
