#pragma once

#include <string>

#include "model/Safetensors.h"
#include "peft/DecoderLadder.h"

namespace ladder {

// The pruning initialisation of a decoder's side network (paper section 3.3 carried over; docs/LST.md, "On
// a decoder-only backbone"). Side layer i starts as backbone layer i pruned to 1/r of its widths:
// - hidden dimensions: the d/r with the largest L1 importance of the embedding over the vocabulary, one set
//   for every layer, the norms and the residual stream (a decoder layer adds its output to its input, so
//   one set keeps the residual stream aligned; T5's reference re-chooses per block);
// - queries and keys: the side's rotary pairs (DecoderSideOptions::ropePairs: backbone pairs r*j, both
//   halves) of every head, so the pruned rows rotate at the frequencies the side applies;
// - values: per key/value head, the head_dim/r rows of largest importance; o_proj's columns follow each
//   query head's key/value group;
// - the MLP: the intermediate_size/r gate and up rows of largest joint importance; down_proj's columns
//   follow.
// Biases (Qwen2's q/k/v) follow their rows. Downsamples, the upsample and the gates stay as built.
// Returns the pruned tensors under the side's names ("side_decoder.block.3.self_attn.q_proj.weight",
// "side_decoder.norm.weight"), float32 on the CPU.
TensorMap pruneDecoderBackbone(
    LlamaForCausalLM& backbone, const DecoderSideOptions& options, const TensorMap& importance);

// init "random" (nothing), "magnitude" (|W|) or "fisher" (the empirical Fisher of the task loss, over up to
// fisherSamples examples of `data`: fisherImportance, peft/LadderInit.h).
void initialiseDecoderSide(DecoderSideNetwork& side, LlamaForCausalLM& backbone, const std::string& init,
    const BatchSource& data, std::int64_t fisherSamples, const MethodInitHooks& hooks = {});

} // namespace ladder
