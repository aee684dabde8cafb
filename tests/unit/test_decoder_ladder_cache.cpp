// The LST activation cache on a decoder-only backbone (core/train/DecoderActivationCache.cpp,
// docs/PERFORMANCE.md): an entry is each kept layer's output over the example's real columns of the causal
// join; a cached forward gives the uncached one's loss and gradients bit for bit at the same padding;
// trained through the Trainer on tests/fixtures/decoder/llama-gqa, fp32 losses are bit-equal to an
// uncached run over 3 shuffled epochs with padding "same" (RAM and disk), to fp32 rounding with "any",
// within bf16 rounding with bf16 storage; a disk cache is reused by a second run and a damaged entry is
// computed again; the key covers the decoder and what its values depend on.
#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <QDir>
#include <QtTest>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include "LlamaTestHelpers.h"
#include "TestSupport.h"
#include "model/BackboneLoad.h"
#include "peft/DecoderLadder.h"
#include "peft/DecoderMethods.h"
#include "train/LadderActivationCache.h"
#include "train/MemoryMeter.h"
#include "train/RunSpec.h"
#include "train/Trainer.h"
#include "util/Error.h"

using namespace ladder;

namespace {

LlamaForCausalLM loadFixture(const std::string& name)
{
    return llamaOf(loadBackbone(test::decoderFixture(name)).model);
}

MethodOptions ladderOptions(std::vector<std::int64_t> keep = {})
{
    auto o = MethodOptions::defaults("ladder");
    o.r = 2;
    o.init = "random"; // the cache stores backbone outputs, whatever the side starts from
    o.keep = std::move(keep);
    return o;
}

std::unique_ptr<DecoderLadderMethod> makeMethod(const MethodOptions& o = ladderOptions())
{
    at::manual_seed(5);
    auto method = createMethod(loadFixture("llama-gqa").ptr(), o);
    auto* lst = dynamic_cast<DecoderLadderMethod*>(method.get());
    if (!lst)
        throw std::runtime_error("not a decoder LST method");
    method.release();
    return std::unique_ptr<DecoderLadderMethod>(lst);
}

// Example e: source of sources[e] ids (right-padded to padSource), targets[e] labels (then -100 to
// padTarget).
Seq2SeqBatch batchOf(const std::vector<std::size_t>& examples, const std::vector<std::int64_t>& sources,
    const std::vector<std::int64_t>& targets, std::int64_t padSource, std::int64_t padTarget)
{
    const auto rows = static_cast<std::int64_t>(examples.size());
    Seq2SeqBatch b;
    b.inputIds = at::zeros({ rows, padSource }, at::kLong);
    b.attentionMask = at::zeros({ rows, padSource }, at::kLong);
    b.labels = at::full({ rows, padTarget }, -100, at::kLong);
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto e = static_cast<std::int64_t>(examples[static_cast<std::size_t>(r)]);
        for (std::int64_t t = 0; t < sources[static_cast<std::size_t>(e)]; ++t) {
            b.inputIds[r][t] = 3 + (e * 37 + t * 11 + t * t) % 90;
            b.attentionMask[r][t] = 1;
        }
        for (std::int64_t t = 0; t < targets[static_cast<std::size_t>(e)]; ++t)
            b.labels[r][t] = 3 + (e * 13 + t * 7) % 90;
    }
    return b;
}

struct Pass {
    double loss = 0.0;
    std::vector<at::Tensor> grads;
};

Pass runPass(Method& method, const std::function<at::Tensor()>& forward)
{
    for (auto& [name, p] : method.namedTrainableParameters())
        p.mutable_grad() = at::Tensor();
    auto loss = forward();
    loss.backward();
    Pass out;
    out.loss = loss.item<double>();
    for (auto& [name, p] : method.namedTrainableParameters())
        out.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    return out;
}

bool sameGradients(const Pass& a, const Pass& b)
{
    if (a.grads.size() != b.grads.size())
        return false;
    for (std::size_t i = 0; i < a.grads.size(); ++i)
        if (a.grads[i].defined() != b.grads[i].defined()
            || (a.grads[i].defined() && !at::equal(a.grads[i], b.grads[i])))
            return false;
    return true;
}

// A JSONL task whose prompts spread over lengths around max_source_length (12 tokens): most are cut there,
// so batches often repeat a padding (padding "same" serves them), some are shorter.
std::string writeTask()
{
    const auto dir = test::makeTempDir();
    const std::vector<std::string> words { "apple", "horse", "banana", "tiger", "cherry", "mouse", "grape",
        "eagle", "lemon", "snake", "mango", "whale", "peach", "sheep" };
    std::ofstream train(dir + "/train.jsonl"), validation(dir + "/validation.jsonl");
    for (std::size_t i = 0; i < words.size(); ++i) {
        std::string text = "the " + words[i];
        for (std::size_t k = 0; k < i % 5; ++k)
            text += " was seen on the table today";
        const nlohmann::json line { { "text", text }, { "label", i % 2 ? "no" : "yes" } };
        train << line.dump() << "\n";
        if (i < 2)
            validation << line.dump() << "\n";
    }
    return dir;
}

RunSpec specFor(const std::string& cache, const std::string& dtype = "fp32", const std::string& dir = "",
    const std::string& padding = "same")
{
    const auto task = writeTask();
    auto method = ladderOptions().toJson();
    method["cache"] = cache;
    if (cache != "none") {
        method["cache_dtype"] = dtype;
        method["cache_padding"] = padding;
        if (!dir.empty())
            method["cache_dir"] = dir;
    }
    const nlohmann::json j {
        { "backbone", test::decoderFixture("llama-gqa") },
        { "task",
            { { "type", "generic" }, { "path", task + "/train.jsonl" },
                { "validation_path", task + "/validation.jsonl" }, { "text_columns", { "text" } },
                { "label_column", "label" }, { "label_targets", "text" },
                { "prompt_template", "Sentence: {text}\nIs it a fruit?" } } },
        { "method", method },
        { "training",
            { { "epochs", 3 }, { "batch_size", 4 }, { "warmup_steps", 2 }, { "learning_rate", 1e-2 },
                { "max_source_length", 12 }, { "max_eval_examples", 2 } } },
        { "seed", 3 },
    };
    return RunSpec::fromJson(j);
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
    std::string last(const std::string& part) const
    {
        std::string found;
        for (const auto& l : logs)
            if (l.find(part) != std::string::npos)
                found = l;
        return found;
    }
};

std::vector<double> trainLosses(const RunSpec& spec, Recorder& rec)
{
    Trainer trainer(spec);
    const auto summary = trainer.run(rec);
    if (summary.status != RunOutcome::Finished)
        throw std::runtime_error("run failed: " + summary.message);
    return rec.losses;
}

void compareExactly(const std::vector<double>& cached, const std::vector<double>& plain)
{
    QCOMPARE(cached.size(), plain.size());
    for (std::size_t i = 0; i < plain.size(); ++i)
        QVERIFY2(cached[i] == plain[i],
            qPrintable(QString("step %1: %2 vs %3")
                           .arg(i + 1)
                           .arg(cached[i], 0, 'g', 17)
                           .arg(plain[i], 0, 'g', 17)));
}

double worstRelative(const std::vector<double>& a, const std::vector<double>& b)
{
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
    return worst;
}

// "H batches served from it, K ran the backbone" of the last epoch's log: H.
std::int64_t hitsIn(const std::string& line)
{
    const auto at = line.find(" batches served from it");
    if (at == std::string::npos)
        return -1;
    const auto start = line.rfind(' ', at - 1);
    return std::stoll(line.substr(start + 1, at - start - 1));
}

} // namespace

class TestDecoderLadderCache : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { installCpuMemoryTracker(); }

    // An entry is each kept layer's output over the row's real columns of the join; a batch the cache serves
    // gets them back there and zeros elsewhere, and gives the uncached loss and gradients bit for bit: the
    // backbone's values at padded columns (left padding, the columns after a row's last input) never reach
    // a loss term. Rows regrouped at another padding are served only with padding "any".
    void cachedForwardEqualsUncached()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto method = makeMethod(ladderOptions({ 0, 1 }));
        auto& m = *method;
        m.train(true);
        const std::vector<std::int64_t> sources { 7, 3, 9, 5 }, targets { 3, 1, 2, 3 };
        const auto layout = LadderCacheLayout::forMethod(m);
        QVERIFY(layout.joined);
        QCOMPARE(layout.elementsFor(7, 3), std::int64_t(64 * 9 * 2));
        LadderCacheOptions co;
        LadderActivationCache cache(layout, sources, targets, LadderCacheKey {}, co);
        const std::vector<std::size_t> all { 0, 1, 2, 3 };
        const auto b = batchOf(all, sources, targets, 11, 4); // padded longer than needed
        const auto plain = runPass(m, [&] { return m.forward(b).loss; });
        const auto filling = runPass(m, [&] { return forwardWithCache(m, b, all, cache).loss; });
        QCOMPARE(cache.misses, std::int64_t(1));
        QCOMPARE(filling.loss, plain.loss);
        QVERIFY(sameGradients(filling, plain));
        const auto served = runPass(m, [&] { return forwardWithCache(m, b, all, cache).loss; });
        QCOMPARE(cache.hits, std::int64_t(1));
        QVERIFY2(served.loss == plain.loss, qPrintable(QString::number(served.loss - plain.loss, 'g', 17)));
        QVERIFY(sameGradients(served, plain));

        // The stored values are the backbone's at the real columns, zeros elsewhere.
        std::vector<at::Tensor> recorded;
        {
            at::NoGradGuard g;
            (void)m.forwardLadders(b, nullptr, &recorded);
        }
        const auto read = cache.gatherJoined(all, 11, 4, c10::kCPU);
        QCOMPARE(read.size(), std::size_t(2));
        auto real = at::zeros({ 4, 11 + 4 - 1, 1 });
        for (std::int64_t r = 0; r < 4; ++r)
            real[r]
                .narrow(0, 11 - sources[static_cast<std::size_t>(r)],
                    sources[static_cast<std::size_t>(r)] + targets[static_cast<std::size_t>(r)] - 1)
                .fill_(1.0);
        for (std::size_t l = 0; l < 2; ++l)
            QVERIFY(at::equal(read[l], recorded[l] * real));

        // Regrouped at another padding: "same" runs the backbone again (and replaces the entries), "any"
        // serves the stored values, equal to fp32 rounding.
        const std::vector<std::size_t> pair { 2, 0 };
        const auto other = batchOf(pair, sources, targets, 9, 3);
        const auto uncached = runPass(m, [&] { return m.forward(other).loss; });
        const auto same = runPass(m, [&] { return forwardWithCache(m, other, pair, cache).loss; });
        QCOMPARE(cache.misses, std::int64_t(2));
        QCOMPARE(same.loss, uncached.loss);
        co.padding = "any";
        LadderActivationCache any(layout, sources, targets, LadderCacheKey {}, co);
        (void)forwardWithCache(m, b, all, any);
        const auto anyPass = runPass(m, [&] { return forwardWithCache(m, other, pair, any).loss; });
        QCOMPARE(any.hits, std::int64_t(1));
        QVERIFY(std::abs(anyPass.loss - uncached.loss) <= 1e-6 * std::abs(uncached.loss));
    }

    // The decoder's values depend on its config and weights, the kept layers, the compute and storage
    // dtypes and every example's ids; the side network's options do not change them. The layout marks the
    // key as a joined sequence's (a T5 cache is never read as a decoder's).
    void keyCoversTheDecoder()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto llama = loadFixture("llama-gqa");
        const std::vector<std::vector<std::int64_t>> sources { { 5, 6, 7 }, { 8, 9 } },
            targets { { 3 }, { 4, 2 } };
        auto layoutFor = [&](const MethodOptions& o) {
            return LadderCacheLayout::forDecoderSide(decoderSideOptions(llama->config(), o));
        };
        auto keyFor = [&](const Backbone& backbone, const LadderCacheLayout& layout,
                          const std::string& compute = "cpu-fp32", const std::string& dtype = "fp32",
                          decltype(sources) s = {}, decltype(targets) t = {}) {
            return LadderCacheKey::make(
                backbone, layout, compute, dtype, s.empty() ? sources : s, t.empty() ? targets : t);
        };
        const auto base = keyFor(*llama, layoutFor(ladderOptions()));
        QVERIFY(base.description.find("\"sequence\":\"causal join\"") != std::string::npos);
        QVERIFY(base.description.find("\"decoder_layers\":[0,1]") != std::string::npos);
        QCOMPARE(keyFor(*llama, layoutFor(ladderOptions())).hash, base.hash);
        auto o = ladderOptions();
        o.r = 4;
        o.gateTemperature = 0.5;
        QCOMPARE(keyFor(*llama, layoutFor(o)).hash, base.hash);
        QVERIFY(keyFor(*llama, layoutFor(ladderOptions({ 1 }))).hash != base.hash);
        QVERIFY(keyFor(*llama, layoutFor(ladderOptions()), "cuda-fp32").hash != base.hash);
        QVERIFY(keyFor(*llama, layoutFor(ladderOptions()), "cpu-fp32", "bf16").hash != base.hash);
        QVERIFY(
            keyFor(*llama, layoutFor(ladderOptions()), "cpu-fp32", "fp32", { { 5, 6, 7 }, { 8, 10 } }).hash
            != base.hash);
        QVERIFY(keyFor(*llama, layoutFor(ladderOptions()), "cpu-fp32", "fp32", {}, { { 3 }, { 4 } }).hash
            != base.hash);
        // The same layer lists as T5's layout would name: only the joined sequence tells them apart.
        auto unjoined = layoutFor(ladderOptions());
        unjoined.joined = false;
        QVERIFY(keyFor(*llama, unjoined).hash != base.hash);
        QVERIFY(keyFor(*llama, unjoined).description.find("sequence") == std::string::npos);
        // Another decoder (Qwen2-style, with biases): another key.
        auto qwen = loadFixture("qwen2-bias");
        const auto qwenLayout
            = LadderCacheLayout::forDecoderSide(decoderSideOptions(qwen->config(), ladderOptions()));
        QVERIFY(keyFor(*qwen, qwenLayout).hash != base.hash);
        {
            at::NoGradGuard g;
            llama->model->layers[1]->parameters()[0].view(-1)[0] += 1e-3f;
        }
        QVERIFY(keyFor(*llama, layoutFor(ladderOptions())).hash != base.hash); // one backbone weight
    }

    // The size shown before a run: d x (s + t - 1) x kept layers per example.
    void bytesForAJoinedLayout()
    {
        LadderCacheLayout l;
        l.joined = true;
        l.dModel = 64;
        l.decoderLayers = 4;
        l.decoderStored = { 1, 3 };
        QCOMPARE(LadderActivationCache::bytesFor(l, { 10, 4 }, { 3, 1 }, "fp32"),
            std::uint64_t(64 * 2 * (12 + 4) * 4));
        QCOMPARE(LadderActivationCache::bytesFor(l, { 10, 4 }, { 3, 1 }, "bf16"),
            std::uint64_t(64 * 2 * (12 + 4) * 2));
    }

    // The backbone stays in eval mode (the cache stores what an eval-mode backbone computes), and a run
    // that trains it is refused.
    void backboneInEvalMode()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto method = makeMethod();
        method->train(true);
        QVERIFY(!method->backbone()->is_training());
        QVERIFY(method->sideNetwork()->is_training());
        auto o = ladderOptions();
        o.cache = "ram";
        o.backboneTrainMode = true;
        try {
            (void)makeMethod(o);
            auto spec = specFor("ram");
            spec.method.backboneTrainMode = true;
            Trainer trainer(spec);
            Recorder rec;
            const auto summary = trainer.run(rec);
            QVERIFY(summary.status != RunOutcome::Finished);
            QVERIFY2(summary.message.find("field cache") != std::string::npos, summary.message.c_str());
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("field cache") != std::string::npos, e.what());
        }
    }

    // Through the Trainer, 3 shuffled epochs with dynamic padding: fp32 losses bit-equal to an uncached run
    // with padding "same" (RAM), and batches served from the cache from epoch 2 on.
    void trainerFp32LossesExact()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(specFor("none"), plainRec);
        const auto cached = trainLosses(specFor("ram"), cachedRec);
        QCOMPARE(plain.size(), std::size_t(12)); // 3 epochs x 4 batches
        compareExactly(cached, plain);
        QVERIFY(plain.front() != plain.back()); // it trained
        QVERIFY(cachedRec.logged("ladder cache (ram, fp32, padding same)"));
        QVERIFY(cachedRec.logged("decoder layer outputs over the joined sequence"));
        QVERIFY(cachedRec.logged("13 of 13 examples stored"));
        const auto last = cachedRec.last("batches served from it");
        qInfo("padding same: %s", last.c_str());
        QVERIFY(hitsIn(last) > 0);
    }

    void trainerAnyPaddingWithinRounding()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(specFor("none"), plainRec);
        const auto cached = trainLosses(specFor("ram", "fp32", "", "any"), cachedRec);
        QCOMPARE(cached.size(), plain.size());
        for (std::size_t i = 0; i < 4; ++i)
            QCOMPARE(cached[i], plain[i]); // epoch 1 runs the backbone
        const auto worst = worstRelative(cached, plain);
        qInfo("padding any: largest relative loss difference over 3 epochs: %g", worst);
        QVERIFY(worst < 1e-5);
        QVERIFY(cachedRec.logged("8 batches served from it, 4 ran the backbone"));
    }

    void trainerBf16StorageWithinRounding()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(specFor("none"), plainRec);
        const auto cached = trainLosses(specFor("ram", "bf16", "", "any"), cachedRec);
        QCOMPARE(cached.size(), plain.size());
        for (std::size_t i = 0; i < 4; ++i)
            QCOMPARE(cached[i], plain[i]);
        const auto worst = worstRelative(cached, plain);
        qInfo("bf16 cache: largest relative loss difference over epochs 2-3: %g", worst);
        QVERIFY(worst > 0.0);
        QVERIFY(worst < 1e-2);
    }

    // Under bf16 autocast the kept outputs are stored in the dtype they were computed in and come back in
    // it: padding "same" is still bit-equal to the uncached bf16 run.
    void trainerBf16AutocastExact()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        auto plainSpec = specFor("none"), cachedSpec = specFor("ram");
        plainSpec.training.dtype = cachedSpec.training.dtype = "bf16";
        Recorder plainRec, cachedRec;
        const auto plain = trainLosses(plainSpec, plainRec);
        compareExactly(trainLosses(cachedSpec, cachedRec), plain);
        QVERIFY(hitsIn(cachedRec.last("batches served from it")) > 0);
    }

    // A disk cache: bit-equal losses; a second run with the same key reuses the file (every batch of its
    // first epoch that repeats the padding is served); a damaged entry is computed again, still bit-equal.
    void trainerDiskReuseAndDamage()
    {
        LADDER_REQUIRE_DECODER_FIXTURES();
        const auto dir = test::makeTempDir() + "/cache";
        Recorder plainRec, firstRec, secondRec, thirdRec;
        const auto plain = trainLosses(specFor("none"), plainRec);
        compareExactly(trainLosses(specFor("disk", "fp32", dir), firstRec), plain);
        QVERIFY(firstRec.logged("ladder cache: created"));
        const auto files = QDir(QString::fromStdString(dir)).entryList({ "ladder-*.lcache" }, QDir::Files);
        QCOMPARE(files.size(), 1);
        compareExactly(trainLosses(specFor("disk", "fp32", dir), secondRec), plain);
        QVERIFY(secondRec.logged("(13 of 13 examples stored)"));
        QVERIFY(hitsIn(secondRec.last("batches served from it"))
            >= hitsIn(firstRec.last("batches served from it")));

        // Flip a byte of the first entry's data (the data area starts on the page after the index).
        const auto path = dir + "/" + files.front().toStdString();
        {
            std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
            f.seekg(8192 + 5);
            char c = 0;
            f.read(&c, 1);
            c = static_cast<char>(c ^ 0x40);
            f.seekp(8192 + 5);
            f.write(&c, 1);
        }
        compareExactly(trainLosses(specFor("disk", "fp32", dir), thirdRec), plain);
        QVERIFY(thirdRec.logged("1 entries failed their checksum"));
    }
};

QTEST_GUILESS_MAIN(TestDecoderLadderCache)
#include "test_decoder_ladder_cache.moc"
