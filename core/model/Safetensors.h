#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace ladder {

// Tensors by name, ordered by name (the safetensors format stores no order that matters).
using TensorMap = std::map<std::string, at::Tensor>;

// Limits a reader applies to untrusted files.
struct SafetensorsLimits {
    // The JSON header may not be larger than this (the reference implementation uses 100 MB).
    std::uint64_t maxHeaderBytes = 100ull * 1024 * 1024;
};

// Reads every tensor of a .safetensors file into CPU tensors of the stored dtype (F32, F16, BF16,
// F64, I64, I32, I16, I8, U8, BOOL). The file is treated as hostile: bounded header length, valid JSON,
// known dtypes, offsets inside the data section, no overlapping spans, shape x element size equal to
// the byte span. Any failure throws ladder::Error naming the file, the tensor and the reason.
TensorMap readSafetensors(const std::string& path, const SafetensorsLimits& limits = {});

// Reads only the header and returns name -> (dtype string, shape). Same validation as readSafetensors.
struct SafetensorsEntry {
    std::string dtype;
    std::vector<std::int64_t> shape;
};
std::map<std::string, SafetensorsEntry> readSafetensorsHeader(
    const std::string& path, const SafetensorsLimits& limits = {});

// Reads only the header and returns its "__metadata__" map (empty when absent; HF writes {"format": "pt"}).
// Same validation as readSafetensors.
std::map<std::string, std::string> readSafetensorsMetadata(
    const std::string& path, const SafetensorsLimits& limits = {});

// Writes tensors (any device; contiguous copies are made on the CPU) with optional string metadata
// (stored under "__metadata__"). Writes to a temporary file and renames it, so a crash never leaves
// a half-written file under `path`.
void writeSafetensors(const std::string& path, const TensorMap& tensors,
    const std::map<std::string, std::string>& metadata = {});

} // namespace ladder
