#pragma once

#include <cstdint>
#include <string>

namespace ladder {

// The sizes of a backbone that code outside model/ reads (Backbone::shape(), model/Backbone.h). Plain values
// and no LibTorch, so that torch-free code (a config reader, the estimator, the window) can hold one.
// T5Config::shape() makes T5's, LlamaConfig::shape() a decoder-only one's.
struct BackboneShape {
    std::string architecture; // "t5", "llama", "mistral", "qwen2"
    std::int64_t hiddenSize = 0; // the width of every block output and embedding (T5: d_model)
    std::int64_t feedForwardSize = 0; // T5: d_ff
    std::int64_t heads = 0; // attention heads per layer
    std::int64_t keyValueHeads = 0; // key/value heads (grouped-query attention); 0 means `heads` (T5)
    std::int64_t headSize = 0; // T5: d_kv (heads * headSize need not equal hiddenSize)
    std::int64_t vocabSize = 0; // rows of the input embedding and of the LM head
    std::int64_t encoderBlocks = 0; // 0 for a decoder-only model (no encoder stack)
    std::int64_t decoderBlocks = 0; // the stack that produces the LM head's input
    bool tiedEmbeddings = false; // the LM head is the input embedding
};

} // namespace ladder
