// The Batcher (core/data/Batcher): tokenized batches with dynamic padding and -100 label padding equal to
// the tokenizer's own batch encoding, truncation, shuffled and length-bucketed epoch plans, and dropLast.
#include <QtTest>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "TaskTestHelpers.h"
#include "TestSupport.h"
#include "data/Batcher.h"
#include "data/GlueTasks.h"
#include "model/T5Tokenizer.h"
#include "util/Error.h"

using ladder::TextExample;
using ladder::test::task_data::glue;

class TestBatcher : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<ladder::T5Tokenizer> m_tokenizer;
    const ladder::T5Tokenizer& tokenizer()
    {
        if (!m_tokenizer)
            m_tokenizer
                = std::make_unique<ladder::T5Tokenizer>(ladder::test::fixture("t5-spiece/spiece.model"));
        return *m_tokenizer;
    }

private Q_SLOTS:
    void batching()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto rte = ladder::loadGlueTask(glue("RTE"));
        const auto& tok = tokenizer();
        ladder::BatcherOptions options;
        options.batchSize = 16;
        options.maxSourceLength = 64;
        options.maxTargetLength = ladder::Batcher::targetLengthFor(rte.info, tok, 128);
        QCOMPARE(options.maxTargetLength, 3); // T5's vocabulary: "1" -> "▁1" </s>, "0" -> "▁" "0" </s>
        const ladder::Batcher batcher(tok, rte.validation, options);
        QCOMPARE(batcher.exampleCount(), std::size_t(138));
        QCOMPARE(batcher.batchCount(), std::size_t(9));
        QVERIFY(batcher.truncatedSources() > 0);

        const auto batches = batcher.epoch(0);
        QCOMPARE(batches.size(), std::size_t(9));
        std::vector<std::size_t> seen;
        for (const auto& b : batches) {
            const auto rows = static_cast<std::int64_t>(b.indices.size());
            QCOMPARE(b.batch.inputIds.size(0), rows);
            QCOMPARE(b.batch.inputIds.scalar_type(), at::kLong);
            QCOMPARE(b.batch.attentionMask.scalar_type(), at::kLong);
            QCOMPARE(b.batch.labels.scalar_type(), at::kLong);
            QVERIFY(b.batch.inputIds.size(1) <= 64);
            QVERIFY(b.batch.labels.size(1) <= 3);
            // Dynamic padding: the longest row fills the batch.
            QCOMPARE(b.batch.attentionMask.sum(1).max().item<std::int64_t>(), b.batch.inputIds.size(1));
            // pad where the mask is 0; labels padded with -100 ("1" has 2 ids, "0" 3).
            QCOMPARE(
                b.batch.inputIds.masked_select(b.batch.attentionMask == 0).ne(0).sum().item<std::int64_t>(),
                std::int64_t(0));
            for (std::int64_t r = 0; r < rows; ++r) {
                const auto& ids = batcher.sourceIds(b.indices[static_cast<std::size_t>(r)]);
                const auto length = b.batch.attentionMask[r].sum().item<std::int64_t>();
                QCOMPARE(length, std::int64_t(ids.size()));
                QCOMPARE(b.batch.inputIds[r][length - 1].item<std::int64_t>(), tok.eosId()); // eos kept last
                const auto& ex = rte.validation[b.indices[static_cast<std::size_t>(r)]];
                const auto target = tok.encode(ex.target);
                QVERIFY(target.size() <= 3);
                for (std::size_t c = 0; c < 3; ++c)
                    QCOMPARE(b.batch.labels[r][static_cast<std::int64_t>(c)].item<std::int64_t>(),
                        c < target.size() ? target[c] : ladder::Batcher::kIgnoreIndex);
            }
            seen.insert(seen.end(), b.indices.begin(), b.indices.end());
        }
        // No shuffle: every example once, in order.
        std::vector<std::size_t> expected(138);
        std::iota(expected.begin(), expected.end(), std::size_t(0));
        QCOMPARE(seen, expected);

        // The same rows as the tokenizer's own batch encoding (truncation and padding of HF).
        std::vector<std::string> texts;
        for (std::size_t i = 0; i < 16; ++i)
            texts.push_back(rte.validation[i].source);
        const auto reference = tok.encodeBatch(texts, 64, true);
        const auto& first = batches[0].batch.inputIds;
        QCOMPARE(first.size(1), std::int64_t(reference.inputIds[0].size()));
        for (std::size_t r = 0; r < 16; ++r) {
            for (std::size_t c = 0; c < reference.inputIds[r].size(); ++c)
                QCOMPARE(
                    first[static_cast<std::int64_t>(r)][static_cast<std::int64_t>(c)].item<std::int64_t>(),
                    reference.inputIds[r][c]);
        }
    }

    void labelPaddingAndTruncation()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto& tok = tokenizer();
        std::vector<TextExample> examples(3);
        examples[0].source = "short";
        examples[0].target = "1";
        examples[1].source = "a much longer source sentence that is cut";
        examples[1].target = "a longer target text here";
        examples[2].source = "mid length text";
        examples[2].target = "";
        ladder::BatcherOptions options;
        options.batchSize = 3;
        options.maxSourceLength = 4;
        options.maxTargetLength = 5;
        const ladder::Batcher batcher(tok, examples, options);
        const auto b = batcher.makeBatch({ 0, 1, 2 });
        QCOMPARE(b.batch.inputIds.size(1), std::int64_t(4));
        QCOMPARE(b.batch.inputIds[1][3].item<std::int64_t>(), tok.eosId()); // truncated, eos kept
        QCOMPARE(b.batch.labels.size(1), std::int64_t(5));
        const auto target0 = tok.encode("1");
        for (std::int64_t c = 0; c < 5; ++c) {
            const auto value = b.batch.labels[0][c].item<std::int64_t>();
            if (c < std::int64_t(target0.size()))
                QCOMPARE(value, target0[static_cast<std::size_t>(c)]);
            else
                QCOMPARE(value, ladder::Batcher::kIgnoreIndex);
        }
        QCOMPARE(b.batch.labels[1][4].item<std::int64_t>(), tok.eosId());
        QCOMPARE(b.batch.labels[2][0].item<std::int64_t>(), tok.eosId()); // empty target = </s>
        QCOMPARE(b.batch.labels[2][1].item<std::int64_t>(), ladder::Batcher::kIgnoreIndex);
        QVERIFY(batcher.truncatedTargets() > 0);
        QVERIFY_THROWS_EXCEPTION(ladder::Error, batcher.makeBatch({ 3 }));
        QVERIFY_THROWS_EXCEPTION(ladder::Error, batcher.makeBatch({}));
        options.batchSize = 0;
        QVERIFY_THROWS_EXCEPTION(ladder::Error, (void)ladder::Batcher(tok, examples, options));
    }

    void shuffleAndBucketing()
    {
        LADDER_REQUIRE_FIXTURES();
        const auto rte = ladder::loadGlueTask(glue("RTE"));
        std::vector<TextExample> examples(rte.train.begin(), rte.train.begin() + 600);
        ladder::BatcherOptions options;
        options.batchSize = 10;
        options.maxSourceLength = 256;
        options.shuffle = true;
        options.seed = 3;
        const ladder::Batcher plain(tokenizer(), examples, options);
        options.bucketByLength = true;
        options.bucketChunk = 10;
        const ladder::Batcher bucketed(tokenizer(), examples, options);

        auto flat = [](const std::vector<std::vector<std::size_t>>& plan) {
            std::vector<std::size_t> out;
            for (const auto& b : plan)
                out.insert(out.end(), b.begin(), b.end());
            return out;
        };
        auto padding
            = [&](const ladder::Batcher& batcher, const std::vector<std::vector<std::size_t>>& plan) {
                  std::size_t pad = 0;
                  for (const auto& b : plan) {
                      std::size_t longest = 0;
                      for (const auto i : b)
                          longest = std::max(longest, batcher.sourceIds(i).size());
                      for (const auto i : b)
                          pad += longest - batcher.sourceIds(i).size();
                  }
                  return pad;
              };
        for (const auto* batcher : { &plain, &bucketed }) {
            const auto e0 = batcher->plan(0);
            QCOMPARE(e0.size(), std::size_t(60));
            auto all = flat(e0);
            std::sort(all.begin(), all.end());
            std::vector<std::size_t> expected(600);
            std::iota(expected.begin(), expected.end(), std::size_t(0));
            QCOMPARE(all, expected); // a permutation: every example once
            QCOMPARE(flat(batcher->plan(0)), flat(e0)); // deterministic
            QVERIFY(flat(batcher->plan(1)) != flat(e0)); // a new order per epoch
        }
        // Same seed, new Batcher: same plans. Another seed: another plan.
        const ladder::Batcher again(tokenizer(), examples, options);
        QCOMPARE(again.plan(2), bucketed.plan(2));
        options.seed = 4;
        const ladder::Batcher other(tokenizer(), examples, options);
        QVERIFY(other.plan(2) != bucketed.plan(2));
        // Bucketing cuts padding a lot.
        QVERIFY2(padding(bucketed, bucketed.plan(0)) * 3 < padding(plain, plain.plan(0)),
            qPrintable(QString("%1 vs %2")
                           .arg(padding(bucketed, bucketed.plan(0)))
                           .arg(padding(plain, plain.plan(0)))));

        // dropLast and the BatchSource.
        options.dropLast = true;
        options.batchSize = 7;
        const ladder::Batcher dropping(tokenizer(), examples, options);
        QCOMPARE(dropping.batchCount(), std::size_t(600 / 7));
        QCOMPARE(dropping.plan(0).size(), std::size_t(600 / 7));
        for (const auto& b : dropping.plan(0))
            QCOMPARE(b.size(), std::size_t(7));
        auto source = dropping.source(0);
        std::size_t served = 0;
        while (auto batch = source())
            ++served;
        QCOMPARE(served, std::size_t(600 / 7));
    }
};

LADDER_TEST_GUILESS_MAIN(TestBatcher)
#include "test_batcher.moc"
