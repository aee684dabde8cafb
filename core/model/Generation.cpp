#include "model/Generation.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "model/CausalJoin.h"
#include "util/Error.h"

namespace ladder {

// ---------------------------------------------------------------------------------------------------
void T5Stepper::begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies)
{
    at::Tensor hidden, mask;
    if (m_encode) {
        std::tie(hidden, mask) = m_encode(inputIds, attentionMask);
    } else {
        hidden = m_model->encode(inputIds, attentionMask).lastHiddenState;
        mask = attentionMask;
    }
    m_encoderHidden = hidden.repeat_interleave(copies, 0);
    m_encoderMask = mask.defined() ? mask.repeat_interleave(copies, 0) : at::Tensor();
    m_cache = m_model->makeCache();
}

at::Tensor T5Stepper::step(const at::Tensor& tokens)
{
    auto decoded = m_model->decode(tokens, m_encoderHidden, m_encoderMask, &m_cache);
    return m_model->lmLogits(decoded.lastHiddenState).select(1, -1).to(at::kFloat);
}

void T5Stepper::reorder(const at::Tensor& rowIndices)
{
    m_cache.reorder(rowIndices);
    m_encoderHidden = m_encoderHidden.index_select(0, rowIndices);
    if (m_encoderMask.defined())
        m_encoderMask = m_encoderMask.index_select(0, rowIndices);
}

at::Tensor Seq2SeqStepper::startTokens(std::int64_t rows, std::int64_t decoderStartTokenId) const
{
    return at::full({ rows }, decoderStartTokenId, at::kLong);
}

void Seq2SeqStepper::setVisual(const VisualInput& visual)
{
    if (visual.defined())
        throw Error("generation: this model takes no images (a text-only run; docs/VL.md)");
}

// ---------------------------------------------------------------------------------------------------
void CausalStepper::begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies)
{
    const auto prompt = leftPad(inputIds, attentionMask, m_padTokenId);
    const auto ids = prompt.inputIds.repeat_interleave(copies, 0);
    const auto mask = prompt.attentionMask.repeat_interleave(copies, 0);
    const auto length = ids.size(1);
    resetCaches();
    m_start = ids.select(1, length - 1).contiguous();
    auto [embeddings, headMask] = headEmbeddings(ids.narrow(1, 0, length - 1), mask.narrow(1, 0, length - 1));
    m_mask = headMask.to(ids.device());
    if (embeddings.size(1) > 0)
        hidden(embeddings, m_mask);
}

at::Tensor CausalStepper::step(const at::Tensor& tokens)
{
    m_mask = at::cat({ m_mask, at::ones({ m_mask.size(0), tokens.size(1) }, m_mask.options()) }, 1);
    const auto h = hidden(m_model->embed(tokens), m_mask.to(tokens.device()));
    return m_model->lmLogits(h).select(1, -1).to(at::kFloat);
}

std::pair<at::Tensor, at::Tensor> CausalStepper::headEmbeddings(const at::Tensor& ids, const at::Tensor& mask)
{
    return { m_model->embed(ids), mask };
}

at::Tensor CausalStepper::hidden(const at::Tensor& embeddings, const at::Tensor& mask)
{
    static const std::vector<std::int64_t> none;
    return m_model->runDecoder(embeddings, {}, {}, &m_cache, &none, mask).lastHiddenState;
}

void CausalStepper::resetCaches()
{
    m_cache = m_model->makeCache();
}

void CausalStepper::reorderCaches(const at::Tensor& rowIndices)
{
    m_cache.reorder(rowIndices);
}

void CausalStepper::reorder(const at::Tensor& rowIndices)
{
    reorderCaches(rowIndices);
    m_mask = m_mask.index_select(0, rowIndices.to(m_mask.device()));
    m_start = m_start.index_select(0, rowIndices.to(m_start.device()));
}

at::Tensor CausalStepper::startTokens(std::int64_t rows, std::int64_t) const
{
    if (!m_start.defined() || m_start.size(0) != rows)
        throw Error("causal generation: startTokens() before begin() or for another number of rows");
    return m_start;
}

GenerationOptions GenerationOptions::forConfig(const LlamaConfig& config)
{
    GenerationOptions o;
    o.decoderOnly = true;
    o.eosTokenIds = config.eosTokenIds;
    o.eosTokenId = config.eosTokenIds.empty() ? -1 : config.eosTokenIds.front();
    o.padTokenId = config.generationPadId();
    o.decoderStartTokenId = 0; // unused: the prompt's last token starts each row
    return o;
}

std::vector<std::int64_t> GenerationOptions::stopIds() const
{
    if (!eosTokenIds.empty())
        return eosTokenIds;
    return { eosTokenId };
}

GenerationOptions GenerationOptions::forConfig(const T5Config& config)
{
    GenerationOptions o;
    o.decoderStartTokenId = config.decoderStartTokenId;
    o.eosTokenId = config.eosTokenId;
    o.padTokenId = config.padTokenId;
    return o;
}

namespace {

using Tokens = std::vector<std::int64_t>;

// HF's BeamHypotheses: the n best finished hypotheses of one example.
class BeamHypotheses {
public:
    BeamHypotheses(std::int64_t numBeams, double lengthPenalty, bool earlyStopping)
        : m_numBeams(numBeams)
        , m_lengthPenalty(lengthPenalty)
        , m_earlyStopping(earlyStopping)
    {
    }

    // `length` normalises the score (the generated tokens); `endToken` is the eos id that finished the
    // hypothesis (written after it in the output), -1 for an open beam.
    void add(const Tokens& hyp, double sumLogProbs, std::int64_t length, std::int64_t endToken)
    {
        const double score = sumLogProbs / std::pow(static_cast<double>(length), m_lengthPenalty);
        if (static_cast<std::int64_t>(m_beams.size()) < m_numBeams || score > m_worstScore) {
            m_beams.push_back({ score, hyp, endToken });
            if (static_cast<std::int64_t>(m_beams.size()) > m_numBeams) {
                // Drop the worst (lowest score, then lowest index); the next worst becomes the bar.
                std::vector<std::pair<double, std::size_t>> ranked;
                for (std::size_t i = 0; i < m_beams.size(); ++i)
                    ranked.emplace_back(m_beams[i].score, i);
                std::sort(ranked.begin(), ranked.end());
                m_beams.erase(m_beams.begin() + static_cast<std::ptrdiff_t>(ranked[0].second));
                m_worstScore = ranked[1].first;
            } else {
                m_worstScore = std::min(score, m_worstScore);
            }
        }
    }

    bool isDone(double bestSumLogProbs, std::int64_t curLen) const
    {
        if (static_cast<std::int64_t>(m_beams.size()) < m_numBeams)
            return false;
        if (m_earlyStopping)
            return true;
        return m_worstScore >= bestSumLogProbs / std::pow(static_cast<double>(curLen), m_lengthPenalty);
    }

    struct Hypothesis {
        double score;
        Tokens tokens;
        std::int64_t endToken;
    };

    // Highest score; among equal scores the one added last (Python's stable sort then pop()).
    Hypothesis best() const
    {
        auto sorted = m_beams;
        std::stable_sort(
            sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.score < b.score; });
        return sorted.back();
    }

private:
    std::int64_t m_numBeams;
    double m_lengthPenalty;
    bool m_earlyStopping;
    double m_worstScore = 1e9;
    std::vector<Hypothesis> m_beams;
};

GenerationResult greedy(Seq2SeqStepper& stepper, const at::Tensor& inputIds, const at::Tensor& attentionMask,
    const GenerationOptions& o)
{
    const auto batch = inputIds.size(0);
    const auto longOpts = at::TensorOptions().dtype(at::kLong).device(inputIds.device());
    stepper.begin(inputIds, attentionMask, 1);
    auto sequences = stepper.startTokens(batch, o.decoderStartTokenId).to(longOpts).view({ batch, 1 });
    const auto stop = at::tensor(o.stopIds(), longOpts);
    auto unfinished = at::ones({ batch }, longOpts);
    at::Tensor scores; // (batch) float64: the running sum of the chosen tokens' log-probabilities
    if (o.outputScores)
        scores = at::zeros({ batch }, at::TensorOptions().dtype(at::kDouble).device(inputIds.device()));
    for (std::int64_t t = 0; t < o.maxNewTokens; ++t) {
        const auto logits = stepper.step(sequences.narrow(1, sequences.size(1) - 1, 1));
        auto next = logits.argmax(-1);
        if (o.outputScores) {
            const auto chosen = at::log_softmax(logits, -1).gather(1, next.unsqueeze(1)).squeeze(1);
            scores = scores + chosen.to(at::kDouble) * unfinished.to(at::kDouble);
        }
        next = next * unfinished + o.padTokenId * (1 - unfinished);
        sequences = at::cat({ sequences, next.unsqueeze(1) }, 1);
        unfinished = unfinished * at::isin(next, stop).logical_not().to(at::kLong);
        if (unfinished.max().item<std::int64_t>() == 0)
            break;
    }
    GenerationResult result { sequences.cpu(), {} };
    if (o.outputScores) {
        const auto s = scores.cpu().contiguous();
        result.sequenceScores.assign(s.data_ptr<double>(), s.data_ptr<double>() + batch);
    }
    return result;
}

GenerationResult beamSearch(Seq2SeqStepper& stepper, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& o)
{
    const auto batch = inputIds.size(0);
    const auto beams = o.numBeams;
    const auto rows = batch * beams;
    const auto maxLength = 1 + o.maxNewTokens;
    const auto device = inputIds.device();
    stepper.begin(inputIds, attentionMask, beams);
    const auto stopIds = o.stopIds();
    const auto isStop = [&stopIds](std::int64_t token) {
        return std::find(stopIds.begin(), stopIds.end(), token) != stopIds.end();
    };
    // HF keeps max(2, 1 + number of eos ids) x num_beams candidates, so that num_beams open ones remain.
    const auto keep = std::max<std::int64_t>(2, 1 + static_cast<std::int64_t>(stopIds.size())) * beams;

    auto lastTokens = stepper.startTokens(rows, o.decoderStartTokenId).to(at::kLong).cpu().contiguous();
    std::vector<Tokens> seqs(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r)
        seqs[r] = Tokens { lastTokens.data_ptr<std::int64_t>()[r] };
    auto beamScores = at::zeros({ batch, beams }, at::kFloat);
    if (beams > 1)
        beamScores.narrow(1, 1, beams - 1).fill_(-1e9);
    beamScores = beamScores.view({ rows });
    std::vector<BeamHypotheses> hyps(
        static_cast<std::size_t>(batch), BeamHypotheses(beams, o.lengthPenalty, o.earlyStopping));
    std::vector<bool> done(static_cast<std::size_t>(batch), false);
    lastTokens = lastTokens.to(device).view({ rows, 1 });
    std::int64_t curLen = 1;

    while (true) {
        const auto logits = stepper.step(lastTokens);
        const auto vocab = logits.size(-1);
        auto scores = at::log_softmax(logits, -1).cpu() + beamScores.unsqueeze(1);
        scores = scores.view({ batch, beams * vocab });
        const auto top = at::topk(scores, keep, 1, true, true);
        const auto topScores = std::get<0>(top).contiguous();
        const auto topIds = std::get<1>(top).contiguous();
        const auto* sc = topScores.data_ptr<float>();
        const auto* id = topIds.data_ptr<std::int64_t>();

        auto nextScores = at::zeros({ rows }, at::kFloat);
        auto nextTokens = at::full({ rows }, o.padTokenId, at::kLong);
        auto nextRows = at::zeros({ rows }, at::kLong);
        auto* ns = nextScores.data_ptr<float>();
        auto* nt = nextTokens.data_ptr<std::int64_t>();
        auto* nr = nextRows.data_ptr<std::int64_t>();
        for (std::int64_t b = 0; b < batch; ++b) {
            if (done[b])
                continue; // scores 0, pad tokens, row 0: ignored by finalisation
            std::int64_t beam = 0;
            for (std::int64_t rank = 0; rank < keep; ++rank) {
                const auto flat = id[b * keep + rank];
                const auto token = flat % vocab;
                const auto row = b * beams + flat / vocab;
                const float score = sc[b * keep + rank];
                if (isStop(token)) {
                    if (rank >= beams)
                        continue;
                    // Its length: the generated tokens, eos included (seqs[row] holds the start token).
                    hyps[b].add(seqs[row], score, static_cast<std::int64_t>(seqs[row].size()), token);
                } else {
                    ns[b * beams + beam] = score;
                    nt[b * beams + beam] = token;
                    nr[b * beams + beam] = row;
                    ++beam;
                }
                if (beam == beams)
                    break;
            }
            // HF 5 (decoderOnly) bounds the open beams by the best open one; T5's scoring by the best
            // candidate.
            const double bestScore = o.decoderOnly ? ns[b * beams] : sc[b * keep];
            done[b] = done[b] || hyps[b].isDone(bestScore, curLen);
        }

        std::vector<Tokens> nextSeqs(static_cast<std::size_t>(rows));
        for (std::int64_t r = 0; r < rows; ++r) {
            nextSeqs[r] = seqs[nr[r]];
            nextSeqs[r].push_back(nt[r]);
        }
        seqs = std::move(nextSeqs);
        beamScores = nextScores;
        stepper.reorder(nextRows.to(device));
        lastTokens = nextTokens.to(device).unsqueeze(1);
        ++curLen;
        if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) || curLen >= maxLength)
            break;
    }

    // Finalise: open beams of unfinished examples compete with the finished hypotheses.
    const auto* fs = beamScores.data_ptr<float>();
    std::vector<BeamHypotheses::Hypothesis> best;
    for (std::int64_t b = 0; b < batch; ++b) {
        if (!done[b])
            for (std::int64_t j = 0; j < beams; ++j)
                hyps[b].add(seqs[b * beams + j], fs[b * beams + j],
                    static_cast<std::int64_t>(seqs[b * beams + j].size()) - (o.decoderOnly ? 1 : 0), -1);
        best.push_back(hyps[b].best());
    }
    std::int64_t longest = 0;
    for (const auto& h : best)
        longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(h.tokens.size()));
    const auto width = std::min(longest + 1, maxLength);
    GenerationResult result;
    result.sequences = at::full({ batch, width }, o.padTokenId, at::kLong);
    auto* out = result.sequences.data_ptr<std::int64_t>();
    for (std::int64_t b = 0; b < batch; ++b) {
        const auto& tokens = best[b].tokens;
        const auto len = static_cast<std::int64_t>(tokens.size());
        for (std::int64_t t = 0; t < len && t < width; ++t)
            out[b * width + t] = tokens[t];
        if (len < maxLength)
            out[b * width + len] = best[b].endToken >= 0 ? best[b].endToken : o.eosTokenId;
        result.sequenceScores.push_back(best[b].score);
    }
    return result;
}

} // namespace

GenerationResult generate(Seq2SeqStepper& stepper, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options)
{
    if (options.numBeams < 1)
        throw Error("generate: num_beams must be at least 1");
    if (options.maxNewTokens < 1)
        throw Error("generate: max_new_tokens must be at least 1");
    if (inputIds.dim() != 2)
        throw Error("generate: input_ids must be (batch, length)");
    c10::NoGradGuard noGrad;
    return options.numBeams == 1 ? greedy(stepper, inputIds, attentionMask, options)
                                 : beamSearch(stepper, inputIds, attentionMask, options);
}

GenerationResult generate(T5ForConditionalGeneration& model, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options)
{
    const auto stepper = model->makeStepper();
    return generate(*stepper, inputIds, attentionMask, options);
}

} // namespace ladder

namespace ladder {

GenerationResult generateCausal(BackboneModelImpl& model, const at::Tensor& inputIds,
    const at::Tensor& attentionMask, const GenerationOptions& options, Seq2SeqStepper* stepper)
{
    std::unique_ptr<Seq2SeqStepper> own;
    if (!stepper) {
        own = model.makeStepper();
        stepper = own.get();
    }
    auto result = generate(*stepper, inputIds, attentionMask, options);
    // The stepper fed the prompt's last token first: the prompt without it, then the generated rows.
    const auto prompt = leftPad(inputIds, attentionMask, options.padTokenId).inputIds.cpu();
    result.sequences = at::cat({ prompt.narrow(1, 0, prompt.size(1) - 1), result.sequences }, 1);
    return result;
}

} // namespace ladder
