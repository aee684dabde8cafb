#pragma once

#include <cstdint>
#include <string>

#include "model/Safetensors.h"
#include "model/T5Model.h"
#include "peft/LadderSideNetwork.h"
#include "peft/Method.h"

namespace ladder {

// Structural initialisation of the LST side network by pruning the backbone (paper section 3.3,
// docs/LST.md, docs/LST.md "Initialisation").

// Importance of every backbone parameter, keyed by its state-dict name.
// Magnitude: I = |W|.
TensorMap magnitudeImportance(T5ForConditionalGeneration& backbone);
// Empirical Fisher: the sum over up to `samples` examples (batch size 1; batches from `data` are split
// into rows) of the squared gradients of the task loss of the full backbone. Gradients are enabled only
// for the duration; afterwards every backbone parameter is frozen again (requires_grad false) with an
// undefined .grad() and the backbone's train/eval mode restored, also when it ends by an exception.
// Throws when `data` is empty or yields no example (errors name the field init).
// progress(done, samples) after every example, and (seen, seen) at the end when the data ran out before
// `samples`; cancelled() before every example: true throws InitCancelled.
// Any architecture: the loss is the backbone's forwardTargets (model/BackboneModel.h).
TensorMap fisherImportance(const BackboneModel& backbone, const BatchSource& data, std::int64_t samples,
    const InitProgress& progress = {}, const InitCancelCheck& cancelled = {});
inline TensorMap fisherImportance(T5ForConditionalGeneration& backbone, const BatchSource& data,
    std::int64_t samples, const InitProgress& progress = {}, const InitCancelCheck& cancelled = {})
{
    return fisherImportance(BackboneModel(backbone.ptr()), data, samples, progress, cancelled);
}

// Prunes every block of the backbone by 1/r as the reference's pruning_v2 does (heads kept; the best
// H * d_kv/r attention rows over all heads, regrouped in index order), following one chain of
// kept embedding dimensions through the encoder and on into the decoder. Returns the pruned tensors under
// the backbone's own names ("encoder.block.3.layer.1.DenseReluDense.wi.weight",
// "decoder.final_layer_norm.weight").
// Every returned tensor is a float32 CPU copy. Relative attention biases are not included (copied unpruned).
TensorMap pruneBackbone(T5ForConditionalGeneration& backbone, std::int64_t r, const TensorMap& importance);

// Copies the pruned tensors into the side blocks (side layer i from backbone layer i), the backbone's
// relative attention bias (unpruned) into each stack's first kept layer, and the pruned final layer norms
// into the side final norms. Downsamples, upsample, gates and ablation modules are left as they are.
void initialiseSideFromPruned(
    LadderSideNetwork& side, T5ForConditionalGeneration& backbone, const TensorMap& pruned);

// init "random" (nothing to do), "magnitude" or "fisher" (`hooks` report and cancel the Fisher pass).
void initialiseSideNetwork(LadderSideNetwork& side, T5ForConditionalGeneration& backbone,
    const std::string& init, const BatchSource& data, std::int64_t fisherSamples,
    const MethodInitHooks& hooks = {});

} // namespace ladder
