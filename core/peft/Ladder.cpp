#include "peft/Ladder.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "model/T5Checkpoint.h"
#include "peft/LadderInit.h"
#include "peft/VisualT5.h"
#include "util/Error.h"

namespace ladder {
namespace {

at::Tensor selectRows(const at::Tensor& t, const at::Tensor& rows)
{
    return t.defined() ? t.index_select(0, rows.to(t.device())) : t;
}

// ladder_dtype: ladders from the activation cache are held in it too.
std::vector<at::Tensor> inLadderDtype(std::vector<at::Tensor> ladders, const LadderSideOptions& o)
{
    if (o.ladderDtype)
        for (auto& l : ladders)
            if (l.defined() && l.scalar_type() != *o.ladderDtype)
                l = l.to(*o.ladderDtype);
    return ladders;
}

} // namespace

LadderSideOptions ladderSideOptions(const T5Config& config, const MethodOptions& options)
{
    LadderSideOptions side;
    side.backbone = config;
    side.r = options.r;
    // One keep list for both stacks (docs/LST.md); empty = every layer of each stack. Explicit
    // indices must exist in both stacks (also when num_decoder_layers != num_layers).
    side.encoderKeep = options.keptLayers(config.numLayers);
    side.decoderKeep = options.keptLayers(config.numDecoderLayers);
    for (auto* keep : { &side.encoderKeep, &side.decoderKeep })
        std::sort(keep->begin(), keep->end());
    side.gateTemperature = options.gateTemperature;
    side.ablation = options.ablation;
    side.mergeBackbone = options.mergeBackbone;
    side.sideCheckpoint = options.sideCheckpoint;
    side.sideAttention = options.sideAttention;
    if (options.ladderDtype == "bf16")
        side.ladderDtype = at::kBFloat16;
    side.sideHeads = options.sideHeads;
    side.validate();
    return side;
}

// ---------------------------------------------------------------------------------------------------
void LadderEncoderState::select(const at::Tensor& rowIndices)
{
    attentionMask = selectRows(attentionMask, rowIndices);
    sideAttentionMask = selectRows(sideAttentionMask, rowIndices);
    backboneHidden = selectRows(backboneHidden, rowIndices);
    sideHidden = selectRows(sideHidden, rowIndices);
}

LadderModel::LadderModel(std::shared_ptr<Backbone> backbone, LadderSideNetwork side)
    : m_backbone(std::move(backbone))
    , m_side(std::move(side))
{
}

LadderEncoderState LadderModel::encode(const at::Tensor& inputIds, const at::Tensor& attentionMask,
    const LadderBackboneOutputs* cached, LadderBackboneOutputs* record, const at::Tensor& visualEmbeds,
    const at::Tensor& visualMask)
{
    const auto& o = m_side->options();
    LadderEncoderState state;
    state.attentionMask = attentionMask;
    at::Tensor embeddings;
    std::vector<at::Tensor> ladders;
    {
        // No backbone activation is kept for backward: only the ladder inputs, which the downsamples save.
        at::NoGradGuard noGrad;
        const KeptBlockOutputDtype keptDtype(o.ladderDtype);
        embeddings = m_backbone->embed(inputIds);
        if (cached) {
            // The backbone's outputs come from the activation cache; the backbone decoder does not run
            // either (decode() takes its outputs from the cache too), so its encoder output is not needed.
            ladders = inLadderDtype(cached->encoder, o);
        } else if (o.needsBackbone()) {
            // Only the kept layers' outputs survive the backbone pass (the stack releases the others).
            static const std::vector<std::int64_t> none;
            const bool ladder = o.usesLadders() && o.hasSideEncoder();
            auto out = m_backbone->runEncoder(embeddings, attentionMask, ladder ? &o.encoderKeep : &none);
            state.backboneHidden = out.lastHiddenState;
            if (ladder)
                ladders = std::move(out.blockOutputs);
        }
    }
    if (record)
        record->encoder = ladders;
    if (visualEmbeds.defined()) {
        // CLIP-T5 under LST (docs/VL.md): text then visual positions in the side encoder only. The text
        // embeddings come from the frozen backbone (no gradient); the visual ones carry the projection's.
        if (!m_side->side_encoder)
            throw Error("ladder: a vision-and-language run needs the side encoder");
        const auto textLength = embeddings.size(1);
        state.sideAttentionMask = textAndVisualMask(attentionMask, textLength, visualMask,
            visualEmbeds.size(1), embeddings.size(0), embeddings.device());
        const auto combined = at::cat({ embeddings, visualEmbeds.to(embeddings.scalar_type()) }, 1);
        state.sideHidden = m_side->side_encoder->forward(
            combined, ladders, state.sideAttentionMask, {}, {}, nullptr, textLength);
        return state;
    }
    if (m_side->side_encoder)
        state.sideHidden = m_side->side_encoder->forward(embeddings, ladders, attentionMask);
    return state;
}

at::Tensor LadderModel::decode(const at::Tensor& decoderInputIds, const LadderEncoderState& encoded,
    DecoderCache* backboneCache, LadderSideCache* sideCache, const LadderBackboneOutputs* cached,
    LadderBackboneOutputs* record)
{
    const auto& o = m_side->options();
    at::Tensor embeddings, backboneFinal;
    std::vector<at::Tensor> ladders;
    {
        at::NoGradGuard noGrad;
        const KeptBlockOutputDtype keptDtype(o.ladderDtype);
        embeddings = m_backbone->embed(decoderInputIds);
        if (cached) {
            if (backboneCache || sideCache)
                throw Error("ladder: cached backbone outputs are for teacher-forced training, not decoding");
            ladders = inLadderDtype(cached->decoder, o);
            backboneFinal = cached->decoderFinal;
        } else if (o.needsBackbone()) {
            static const std::vector<std::int64_t> none;
            auto out = m_backbone->runDecoder(embeddings, encoded.backboneHidden, encoded.attentionMask,
                backboneCache, o.usesLadders() ? &o.decoderKeep : &none, {});
            if (o.usesMerge())
                backboneFinal = out.lastHiddenState;
            if (o.usesLadders())
                ladders = std::move(out.blockOutputs);
        }
    }
    if (record) {
        record->decoder = ladders;
        record->decoderFinal = backboneFinal;
    }
    const auto sideOut = m_side->side_decoder->forward(embeddings, ladders, at::Tensor(), encoded.sideHidden,
        encoded.sideAttentionMask.defined() ? encoded.sideAttentionMask : encoded.attentionMask, sideCache);
    return m_side->head(sideOut, backboneFinal);
}

at::Tensor LadderModel::logits(const at::Tensor& decoderHidden)
{
    // The frozen LM head, with the d_model^-0.5 rescale when the embeddings are tied.
    return m_backbone->lmLogits(decoderHidden);
}

// ---------------------------------------------------------------------------------------------------
LadderMethod::LadderMethod(T5ForConditionalGeneration backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
    : Method(backbone.ptr(), options)
    , m_model(backbone.ptr(), LadderSideNetwork(ladderSideOptions(backbone->config(), options)))
{
    for (auto& p : m_backbone->parameters(true))
        p.set_requires_grad(false);
    auto side = m_model.side();
    initialiseSideNetwork(side, backbone, options.init, data, options.fisherSamples, hooks);
    const auto& reference = backbone->shared->weight;
    side->to(reference.device(), reference.scalar_type());
    train(false);
}

MethodOutput LadderMethod::forward(const Seq2SeqBatch& batch)
{
    if (!batch.labels.defined())
        throw Error("ladder forward: labels are required");
    const auto decoderInputIds = m_model.backbone().shiftRight(batch.labels);
    const auto visualEmbeds = embedVisual(batch.visual);
    const auto encoded = m_model.encode(
        batch.inputIds, batch.attentionMask, nullptr, nullptr, visualEmbeds, batch.visual.mask);
    MethodOutput out;
    out.logits = m_model.logits(m_model.decode(decoderInputIds, encoded));
    out.loss = Backbone::crossEntropy(out.logits, batch.labels);
    return out;
}

std::unique_ptr<Seq2SeqStepper> LadderMethod::makeStepper()
{
    if (!m_visual)
        return std::make_unique<LadderStepper>(m_model);
    return std::make_unique<LadderStepper>(
        m_model, [this](const VisualInput& visual) { return embedVisual(visual); });
}

void LadderMethod::train(bool on)
{
    m_model.side()->train(on);
    trainVisual(on);
    m_backbone->train(on && m_options.backboneTrainMode);
}

void LadderMethod::to(c10::Device device, c10::ScalarType dtype)
{
    m_backbone->to(device, dtype);
    m_model.side()->to(device, dtype);
    moveVisual(device, dtype);
}

std::vector<std::pair<std::string, at::Tensor>> LadderMethod::namedTrainableParameters() const
{
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : m_model.side()->named_parameters(true))
        out.emplace_back(item.key(), item.value());
    appendVisualParameters(out);
    return out;
}

std::int64_t LadderMethod::totalParameterCount() const
{
    return Method::totalParameterCount() + countParameters(*m_model.side());
}

// ---------------------------------------------------------------------------------------------------
void LadderStepper::setVisual(const VisualInput& visual)
{
    if (visual.defined() && !m_embedVisual)
        Seq2SeqStepper::setVisual(visual); // refuses images on a text run
    m_visual = visual;
}

void LadderStepper::begin(const at::Tensor& inputIds, const at::Tensor& attentionMask, std::int64_t copies)
{
    at::Tensor visualEmbeds;
    if (m_embedVisual)
        visualEmbeds = m_embedVisual(m_visual);
    m_encoded = m_model.encode(inputIds, attentionMask, nullptr, nullptr, visualEmbeds, m_visual.mask);
    if (copies > 1) {
        const auto longOpts = at::TensorOptions().dtype(at::kLong).device(inputIds.device());
        const auto rows = at::arange(inputIds.size(0), longOpts).repeat_interleave(copies);
        m_encoded.select(rows);
    }
    m_backboneCache = m_model.backbone().makeCache();
    m_sideCache = m_model.side()->makeCache();
}

at::Tensor LadderStepper::step(const at::Tensor& tokens)
{
    const auto hidden = m_model.decode(tokens, m_encoded, &m_backboneCache, &m_sideCache);
    return m_model.logits(hidden).select(1, -1).to(at::kFloat);
}

void LadderStepper::reorder(const at::Tensor& rowIndices)
{
    m_backboneCache.reorder(rowIndices);
    m_sideCache.reorder(rowIndices);
    m_encoded.select(rowIndices);
}

// ---------------------------------------------------------------------------------------------------
std::unique_ptr<Method> createLadderMethod(T5ForConditionalGeneration backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks)
{
    if (options.method != "ladder")
        throw Error("createLadderMethod: method is '" + options.method + "', not ladder");
    return std::make_unique<LadderMethod>(std::move(backbone), options, data, hooks);
}

} // namespace ladder
