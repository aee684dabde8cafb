#pragma once

#include <memory>

#include "model/llama/LlamaModel.h"
#include "peft/Method.h"

namespace ladder {

// The methods on a decoder-only backbone (Llama, Mistral, Qwen2: model/llama/LlamaModel.h), as they are on
// T5 (peft/Baselines.h, peft/Ladder.h) where the architecture allows, and documented where it differs
// (docs/DECODERS.md, "Methods"):
// - full: every weight; freeze N freezes the embedding (and a tied LM head) and layers 0..N-1.
// - bitfit: the biases of every projection (q, k, v, o, gate, up, down) of the unfrozen layers. Llama has
//   none: zero-initialised ones are added, as LadderBench's T5 BitFit adds them to bias-free T5; Qwen2's own
//   q/k/v biases train from their pretrained values. No norm or LM-head biases: HF's Llama modules have no
//   place for them, so a BitFit run stays a plain HF folder plus biases.
// - adapter: Houlsby adapters after the attention and the MLP of every unfrozen layer, before each residual,
//   with the layer norms (and the final norm) trained, as the reference trains T5's.
// - lora / qlora: LoRA on the targets among q, k, v, o, gate, up, down (HF PEFT's q_proj ... down_proj);
//   bitfit true adds BitFit's biases.
// - prompt: N trainable vectors before the whole causal sequence (PEFT's prompt tuning for a causal LM).
// - ladder: LST with a side decoder (peft/DecoderLadder.h).
std::unique_ptr<Method> createDecoderMethod(BackboneModel backbone, const MethodOptions& options,
    const BatchSource& data, const MethodInitHooks& hooks);

// The Llama module of `backbone`, or ladder::Error naming the architecture.
LlamaForCausalLM llamaOf(const BackboneModel& backbone);

} // namespace ladder
