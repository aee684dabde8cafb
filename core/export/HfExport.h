#pragma once

#include <string>

#include "export/ExportFolder.h"
#include "export/RunModel.h"

namespace ladder {

// `ladder export --format hf` (docs/EXPORT.md): a trained run as a HuggingFace T5 folder.
//
// - config.json: the backbone's, with architectures ["T5ForConditionalGeneration"].
// - model.safetensors: every weight under HF's state-dict names (LadderBench's names are HF's):
// shared.weight,
//   lm_head.weight when the embeddings are untied, the blocks and norms. A LoRA run's adapters are merged,
//   W + (alpha / r) B A, as PEFT's merge does and as LadderBench's LoRA scales its path; a backbone held in
//   frozen storage (backbone_dtype bf16/int8/int4, qlora) is written dequantised to fp32: the weights the run
//   computed with.
// - the tokenizer: spiece.model and the backbone's tokenizer files, else tokenizer_config.json and
//   special_tokens_map.json as HF's T5Tokenizer writes them (extra_ids 100, legacy true).
// - README.md: the run, and how to load the folder.
//
// BitFit biases (method bitfit, and lora with bitfit true, the paper's setting) have no place in HF's T5,
// which has no bias parameters: T5ForConditionalGeneration would drop them and give other logits. Such a
// folder also holds modeling_ladder_t5.py (LadderT5ForConditionalGeneration: T5 with a bias on every
// projection, layer norm and the LM head, zero where the run trained none), config.json names it in
// architectures and auto_map, and it loads with AutoModelForSeq2SeqLM.from_pretrained(DIR,
// trust_remote_code=True). A run without biases (full, lora with bitfit false) is a plain T5 folder.

// Throws Error when a run of `spec` has no HF form (ladder, adapter: architectures of their own; prompt
// tuning: an input, not a weight change), naming what to use instead. Reads no file.
void checkHfExportable(const RunSpec& spec);

// Whether an HF export of `run` needs the biased T5 (the run has BitFit biases).
bool hfExportHasBiases(const LoadedRun& run);

// Writes the folder into `dir` (an existing, empty folder).
ExportedFolder writeHfFolder(const LoadedRun& run, const std::string& dir);

} // namespace ladder
