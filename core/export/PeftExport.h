#pragma once

#include <string>

#include "export/ExportFolder.h"
#include "export/RunModel.h"

namespace ladder {

// `ladder export --format peft` (docs/EXPORT.md): a LoRA or prompt-tuning run as a PEFT adapter folder that
// PeftModel.from_pretrained(base, DIR) loads over the run's backbone (base: T5ForConditionalGeneration of the
// backbone folder).
//
// - LoRA: adapter_config.json (peft_type "LORA", task_type "SEQ_2_SEQ_LM", r, lora_alpha, lora_dropout,
//   target_modules, bias "none", fan_in_fan_out false, inference_mode true, ...) and
//   adapter_model.safetensors with PEFT's keys, base_model.model.<module>.lora_A.weight / lora_B.weight. PEFT
//   scales the path by lora_alpha / r, as LadderBench does. target_modules are the short names (q, v, wi_0,
//   ...) or, when the run froze its first layers (freeze > 0), the full names of the adapted modules.
// - Prompt tuning: peft_type "PROMPT_TUNING", num_virtual_tokens, token_dim, num_transformer_submodules 1,
//   and the key prompt_embeddings (num_virtual_tokens, d_model). With 1 submodule PEFT prepends the prompt
//   to the encoder's input embeddings only, with a mask of ones, as LadderBench's prompt tuning does; with 2
//   (PEFT's default for seq2seq) it would also prefix the decoder's inputs, which LadderBench never trained.
//
// What PEFT cannot express is refused (checkPeftExportable): a LoRA run with BitFit biases (bitfit true, the
// paper's setting; PEFT's LoRA trains no new biases and T5 has none), a backbone held in frozen storage
// (qlora, backbone_dtype: PEFT would apply the adapter to the fp32 backbone the run never saw), and every
// other method.

// Throws Error when a run of `spec` has no PEFT form, naming why and what to use instead. Reads no file.
void checkPeftExportable(const RunSpec& spec);

// Writes the folder into `dir` (an existing, empty folder).
ExportedFolder writePeftFolder(const LoadedRun& run, const std::string& dir);

} // namespace ladder
