#include "model/Generation.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

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

    void add(const Tokens& hyp, double sumLogProbs)
    {
        const double score = sumLogProbs / std::pow(static_cast<double>(hyp.size()), m_lengthPenalty);
        if (static_cast<std::int64_t>(m_beams.size()) < m_numBeams || score > m_worstScore) {
            m_beams.emplace_back(score, hyp);
            if (static_cast<std::int64_t>(m_beams.size()) > m_numBeams) {
                // Drop the worst (lowest score, then lowest index); the next worst becomes the bar.
                std::vector<std::pair<double, std::size_t>> ranked;
                for (std::size_t i = 0; i < m_beams.size(); ++i)
                    ranked.emplace_back(m_beams[i].first, i);
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

    // Highest score; among equal scores the one added last (Python's stable sort then pop()).
    std::pair<double, Tokens> best() const
    {
        auto sorted = m_beams;
        std::stable_sort(
            sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        return sorted.back();
    }

private:
    std::int64_t m_numBeams;
    double m_lengthPenalty;
    bool m_earlyStopping;
    double m_worstScore = 1e9;
    std::vector<std::pair<double, Tokens>> m_beams;
};

GenerationResult greedy(Seq2SeqStepper& stepper, const at::Tensor& inputIds, const at::Tensor& attentionMask,
    const GenerationOptions& o)
{
    const auto batch = inputIds.size(0);
    const auto longOpts = at::TensorOptions().dtype(at::kLong).device(inputIds.device());
    stepper.begin(inputIds, attentionMask, 1);
    auto sequences = at::full({ batch, 1 }, o.decoderStartTokenId, longOpts);
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
        unfinished = unfinished * (next != o.eosTokenId).to(at::kLong);
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

    std::vector<Tokens> seqs(static_cast<std::size_t>(rows), Tokens { o.decoderStartTokenId });
    auto beamScores = at::zeros({ batch, beams }, at::kFloat);
    if (beams > 1)
        beamScores.narrow(1, 1, beams - 1).fill_(-1e9);
    beamScores = beamScores.view({ rows });
    std::vector<BeamHypotheses> hyps(
        static_cast<std::size_t>(batch), BeamHypotheses(beams, o.lengthPenalty, o.earlyStopping));
    std::vector<bool> done(static_cast<std::size_t>(batch), false);
    auto lastTokens
        = at::full({ rows, 1 }, o.decoderStartTokenId, at::TensorOptions().dtype(at::kLong).device(device));
    std::int64_t curLen = 1;

    while (true) {
        const auto logits = stepper.step(lastTokens);
        const auto vocab = logits.size(-1);
        auto scores = at::log_softmax(logits, -1).cpu() + beamScores.unsqueeze(1);
        scores = scores.view({ batch, beams * vocab });
        const auto top = at::topk(scores, 2 * beams, 1, true, true);
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
            for (std::int64_t rank = 0; rank < 2 * beams; ++rank) {
                const auto flat = id[b * 2 * beams + rank];
                const auto token = flat % vocab;
                const auto row = b * beams + flat / vocab;
                const float score = sc[b * 2 * beams + rank];
                if (token == o.eosTokenId) {
                    if (rank >= beams)
                        continue;
                    hyps[b].add(seqs[row], score);
                } else {
                    ns[b * beams + beam] = score;
                    nt[b * beams + beam] = token;
                    nr[b * beams + beam] = row;
                    ++beam;
                }
                if (beam == beams)
                    break;
            }
            done[b] = done[b] || hyps[b].isDone(sc[b * 2 * beams], curLen);
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
    std::vector<std::pair<double, Tokens>> best;
    for (std::int64_t b = 0; b < batch; ++b) {
        if (!done[b])
            for (std::int64_t j = 0; j < beams; ++j)
                hyps[b].add(seqs[b * beams + j], fs[b * beams + j]);
        best.push_back(hyps[b].best());
    }
    std::int64_t longest = 0;
    for (const auto& h : best)
        longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(h.second.size()));
    const auto width = std::min(longest + 1, maxLength);
    GenerationResult result;
    result.sequences = at::full({ batch, width }, o.padTokenId, at::kLong);
    auto* out = result.sequences.data_ptr<std::int64_t>();
    for (std::int64_t b = 0; b < batch; ++b) {
        const auto& tokens = best[b].second;
        const auto len = static_cast<std::int64_t>(tokens.size());
        for (std::int64_t t = 0; t < len && t < width; ++t)
            out[b * width + t] = tokens[t];
        if (len < maxLength)
            out[b * width + len] = o.eosTokenId;
        result.sequenceScores.push_back(best[b].first);
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
