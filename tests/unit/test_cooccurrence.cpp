// Co-occurrence embeddings (train/CooccurrenceEmbeddings): the PPMI matrix and its factorisation against
// a reference computed here by plain loops and LAPACK's full SVD, topic structure on a synthetic corpus,
// determinism, and the errors.
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <QtTest>

#include "train/CooccurrenceEmbeddings.h"
#include "util/Error.h"
#include "util/SplitMix64.h"

using namespace ladder;

namespace {

// Two topics over disjoint ids (4..11 and 12..19) plus shared function words (2, 3); each sentence
// draws from one topic. Id 0 and 1 never occur, id 20 occurs once alone (no neighbour).
std::vector<std::vector<std::int64_t>> topicCorpus(std::uint64_t seed, int sentences)
{
    SplitMix64 rng(seed);
    std::vector<std::vector<std::int64_t>> out;
    for (int s = 0; s < sentences; ++s) {
        const std::int64_t base = (s % 2 == 0) ? 4 : 12;
        std::vector<std::int64_t> ids;
        const auto length = 4 + static_cast<int>(rng.uniform(6));
        for (int i = 0; i < length; ++i)
            ids.push_back(rng.uniform(5) == 0 ? 2 + static_cast<std::int64_t>(rng.uniform(2))
                                              : base + static_cast<std::int64_t>(rng.uniform(8)));
        out.push_back(ids);
    }
    out.push_back({ 20 });
    return out;
}

// PPMI by the textbook definition, in double precision, one cell at a time.
std::vector<std::vector<double>> referencePpmi(
    const std::vector<std::vector<std::int64_t>>& corpus, int pieces, int window, double alpha)
{
    std::vector<std::vector<double>> c(pieces, std::vector<double>(pieces, 0.0));
    for (const auto& s : corpus)
        for (std::size_t i = 0; i < s.size(); ++i)
            for (std::size_t j = 0; j < s.size(); ++j) {
                const auto d = i > j ? i - j : j - i;
                if (d >= 1 && d <= static_cast<std::size_t>(window))
                    c[s[i]][s[j]] += 1.0 / static_cast<double>(d);
            }
    double total = 0.0;
    std::vector<double> row(pieces, 0.0), ctx(pieces, 0.0);
    for (int w = 0; w < pieces; ++w)
        for (int x = 0; x < pieces; ++x) {
            total += c[w][x];
            row[w] += c[w][x];
            ctx[x] += c[w][x];
        }
    double ctxNorm = 0.0;
    for (int x = 0; x < pieces; ++x)
        ctxNorm += std::pow(ctx[x], alpha);
    std::vector<std::vector<double>> p(pieces, std::vector<double>(pieces, 0.0));
    for (int w = 0; w < pieces; ++w)
        for (int x = 0; x < pieces; ++x)
            if (c[w][x] > 0.0) {
                const double pmi = std::log(c[w][x] / total) - std::log(row[w] / total)
                    - std::log(std::pow(ctx[x], alpha) / ctxNorm);
                p[w][x] = std::max(0.0, pmi);
            }
    return p;
}

double cosine(const at::Tensor& a, const at::Tensor& b)
{
    return (a * b).sum().item<double>() / (a.norm().item<double>() * b.norm().item<double>());
}

} // namespace

class TestCooccurrence : public QObject {
    Q_OBJECT

private Q_SLOTS:
    // E E^T equals the best rank-d approximation U_d S_d U_d^T of the reference PPMI (up to the std
    // scale), i.e. the randomised SVD found the leading subspace, for a matrix whose spectrum is not flat.
    void factorisationMatchesFullSvdOfReferencePpmi()
    {
        const int pieces = 21;
        const auto corpus = topicCorpus(7, 400);
        CooccurrenceOptions o;
        o.dims = 4;
        o.window = 3;
        o.powerIterations = 6;
        const auto got = cooccurrenceEmbeddings(corpus, pieces, o);

        const auto ref = referencePpmi(corpus, pieces, 3, 0.75);
        auto m = at::zeros({ pieces, pieces }, at::kDouble);
        for (int w = 0; w < pieces; ++w)
            for (int x = 0; x < pieces; ++x)
                m[w][x] = ref[w][x];
        const auto [u, s, vh] = at::linalg_svd(m, false);
        const auto ud = u.narrow(1, 0, 4);
        const auto best = ud.mm(at::diag(s.narrow(0, 0, 4))).mm(ud.t());

        const auto e = got.vectors.to(at::kDouble);
        // Undo the std scaling: E_raw = E * sigma, with sigma fixed by matching traces.
        const auto gram = e.mm(e.t());
        const double scale = best.trace().item<double>() / gram.trace().item<double>();
        const double err = (gram * scale - best).abs().max().item<double>() / best.abs().max().item<double>();
        QVERIFY2(err < 1e-3, qPrintable(QString("max relative error %1").arg(err)));
        QVERIFY(scale > 0.0);
    }

    void unseenRowsAreZeroAndScaleIsOne()
    {
        const auto corpus = topicCorpus(3, 200);
        CooccurrenceOptions o;
        o.dims = 6;
        const auto got = cooccurrenceEmbeddings(corpus, 24, o);
        QCOMPARE(got.vectors.sizes().vec(), (std::vector<std::int64_t> { 24, 6 }));
        for (const int id : { 0, 1, 20, 21, 22, 23 }) { // never seen, or seen without a neighbour
            QVERIFY2(!got.seen[id], qPrintable(QString::number(id)));
            QCOMPARE(got.vectors[id].abs().sum().item<double>(), 0.0);
        }
        for (int id = 2; id < 20; ++id)
            QVERIFY(got.seen[id]);
        const auto seen = got.vectors.narrow(0, 2, 18);
        QVERIFY(std::abs(seen.std().item<double>() - 1.0) < 1e-5);
        QVERIFY(got.pairs > 0);
    }

    // Words of one topic end up closer to each other than to the other topic's words.
    void topicsSeparate()
    {
        const auto corpus = topicCorpus(11, 600);
        CooccurrenceOptions o;
        o.dims = 4;
        const auto e = cooccurrenceEmbeddings(corpus, 21, o).vectors;
        double within = 0.0, across = 0.0;
        int nw = 0, na = 0;
        for (int a = 4; a < 20; ++a)
            for (int b = a + 1; b < 20; ++b) {
                const bool same = (a < 12) == (b < 12);
                (same ? within : across) += cosine(e[a], e[b]);
                ++(same ? nw : na);
            }
        within /= nw;
        across /= na;
        QVERIFY2(within > 0.5 && across < within - 0.5,
            qPrintable(QString("within %1, across %2").arg(within).arg(across)));
    }

    void deterministicForASeedAndSignNormalised()
    {
        const auto corpus = topicCorpus(5, 300);
        CooccurrenceOptions o;
        o.dims = 5;
        o.seed = 42;
        const auto a = cooccurrenceEmbeddings(corpus, 21, o).vectors;
        const auto b = cooccurrenceEmbeddings(corpus, 21, o).vectors;
        QVERIFY(at::equal(a, b));
        // Each column's largest-magnitude entry is positive.
        for (int d = 0; d < 5; ++d) {
            const auto col = a.select(1, d);
            QVERIFY(col[col.abs().argmax().item<std::int64_t>()].item<double>() > 0.0);
        }
    }

    void errorsNameTheProblem()
    {
        CooccurrenceOptions o;
        o.dims = 4;
        try {
            cooccurrenceEmbeddings({ { 1, 2, 9 } }, 8, o);
            QFAIL("an out-of-range id was accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("token id 9") != std::string::npos, e.what());
        }
        o.dims = 9;
        QVERIFY_THROWS_EXCEPTION(Error, cooccurrenceEmbeddings({ { 1, 2 } }, 8, o));
        o.dims = 2;
        QVERIFY_THROWS_EXCEPTION(Error, cooccurrenceEmbeddings({ { 1 }, { 2 } }, 8, o)); // no neighbours
        o.window = 0;
        QVERIFY_THROWS_EXCEPTION(Error, cooccurrenceEmbeddings({ { 1, 2 } }, 8, o));
    }
};

QTEST_GUILESS_MAIN(TestCooccurrence)
#include "test_cooccurrence.moc"
