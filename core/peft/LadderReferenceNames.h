#pragma once

#include <optional>
#include <string>

#include "model/Safetensors.h"
#include "peft/LadderSideNetwork.h"

namespace ladder {

// The parameter names of the reference implementation of LST (github.com/ylsung/Ladder-Side-Tuning,
// seq2seq/third_party/models/t5/modeling_side_t5.py: state_dict() of its T5ForConditionalGeneration) and
// their LadderBench counterparts (docs/LST.md "Checked against the reference implementation"):
//
//   encoder.side_first_downsample.{weight,bias}     side_encoder.downsample.embed.{weight,bias}
//   encoder.side_downsamples.{i}.{weight,bias}      side_encoder.downsample.{i}.{weight,bias}
//   encoder.side_gate_params.{i}                    side_encoder.gate.{i}
//   encoder.side_block.{i}.layer.{...}              side_encoder.block.{i}.layer.{...}
//   encoder.final_side_layer_norm.weight            side_encoder.final_layer_norm.weight
//   decoder.(same)                                  side_decoder.(same)
//   side_final_upsample.{weight,bias}               side_final_upsample.{weight,bias}
//   side_gate_params_merge_last                     side_merge_gate
//
// The reference creates a gate for every layer of a stack, kept or not; the gates of dropped layers are
// never used and have no LadderBench counterpart.

// The reference's name of LadderBench side parameter `ladderName`. Throws ladder::Error for parameters
// that modeling_side_t5.py does not have (the cross-attention and adapter-blocks ablations).
std::string referenceSideName(const std::string& ladderName);

// Whether `referenceName` is the gate of a layer that the reference creates but `options` drops
// ("encoder.side_gate_params.0" when layer 0 of the encoder is not kept).
bool isUnusedReferenceGate(const std::string& referenceName, const LadderSideOptions& options);

// Copies side weights stored under the reference's names into `side` (converted to each parameter's dtype
// and device). Every side parameter must be present with its exact shape; a name that is neither a side
// parameter nor an unused gate (shape (1)) is an error. Errors name the tensor and `source`, e.g.
// "side.safetensors: tensor encoder.side_downsamples.1.weight (side_encoder.downsample.1.weight) has shape
// [8, 16], expected [8, 32]".
void loadReferenceSideWeights(LadderSideNetwork& side, const TensorMap& tensors, const std::string& source);
// The same from a .safetensors file.
void loadReferenceSideWeights(LadderSideNetwork& side, const std::string& path);

} // namespace ladder
