#pragma once

#include <string>

#include "model/Safetensors.h"

namespace ladder {

// Reads a PyTorch `torch.save` zip archive holding a state dict (HF pytorch_model.bin), with every
// storage mapped to the CPU. Tensors come out detached and each owns exactly its bytes: tensors that
// shared a storage in the file (tied weights such as shared.weight / lm_head.weight) are separate
// copies. The legacy non-zip format (torch.save before PyTorch 1.6) is not supported.
// Throws ladder::Error naming the file on anything that is not a dict of str -> tensor.
TensorMap readTorchBin(const std::string& path);

} // namespace ladder
