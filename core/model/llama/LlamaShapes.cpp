#include "model/llama/LlamaShapes.h"

#include "model/BackboneLoad.h"

namespace ladder {

std::optional<LlamaConfig> llamaShapePreset(const std::string& name)
{
    LlamaConfig c;
    c.modelType = "llama";
    c.vocabSize = 32000;
    c.rmsNormEps = 1e-5;
    c.rope.theta = 10000.0;
    c.tieWordEmbeddings = false;
    c.bosTokenId = 1;
    c.eosTokenIds = { 2 };
    if (name == "llama-1b") {
        c.hiddenSize = 2048;
        c.intermediateSize = 5632;
        c.numHiddenLayers = 22;
        c.numAttentionHeads = 32;
        c.numKeyValueHeads = 4;
        c.headDim = 64;
        c.maxPositionEmbeddings = 2048;
        return c;
    }
    if (name == "llama2-7b") {
        c.hiddenSize = 4096;
        c.intermediateSize = 11008;
        c.numHiddenLayers = 32;
        c.numAttentionHeads = 32;
        c.numKeyValueHeads = 32;
        c.headDim = 128;
        c.maxPositionEmbeddings = 4096;
        return c;
    }
    return std::nullopt;
}

std::optional<LlamaConfig> decoderConfigFor(const std::string& shape, const std::string& modelDirectory)
{
    if (modelDirectory.empty())
        return llamaShapePreset(shape);
    std::string type;
    try {
        type = readModelType(modelDirectory);
    } catch (const std::exception&) {
        return std::nullopt; // the T5 path reports the folder's problem
    }
    if (!LlamaConfig::supportsModelType(type))
        return std::nullopt;
    return LlamaConfig::fromJsonFile(modelDirectory + "/config.json");
}

std::string llamaShapeNames()
{
    return "llama-1b, llama2-7b";
}

} // namespace ladder
