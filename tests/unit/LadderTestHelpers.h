#pragma once

// Helpers of the Ladder Side-Tuning tests test_ladder, test_ladder_counts and test_ladder_init: a tiny T5
// configuration, LST options, a random batch, and a method's trainable parameters by name.
// Header-only: each of those test executables includes it.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "model/T5Model.h"
#include "peft/Method.h"

namespace ladder::test::lst {

inline T5Config tinyConfig(
    std::int64_t encoderLayers = 2, std::int64_t decoderLayers = 2, double dropout = 0.0)
{
    T5Config c;
    c.vocabSize = 64;
    c.dModel = 32;
    c.dKv = 8;
    c.dFf = 64;
    c.numHeads = 4;
    c.numLayers = encoderLayers;
    c.numDecoderLayers = decoderLayers;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 20;
    c.dropoutRate = dropout;
    return c;
}

inline MethodOptions ladderOptions(
    std::int64_t r, std::vector<std::int64_t> keep = {}, std::string ablation = "none")
{
    auto o = MethodOptions::defaults("ladder");
    o.init = "random"; // these cases build without data; the init cases set fisher or magnitude themselves
    o.r = r;
    o.keep = std::move(keep);
    o.ablation = std::move(ablation);
    return o;
}

// Random source/target ids in [2, vocab); one padded source row; the last label of row 1 ignored (-100).
inline Seq2SeqBatch randomBatch(
    std::int64_t batch, std::int64_t sourceLength, std::int64_t targetLength, std::int64_t vocab)
{
    Seq2SeqBatch b;
    b.inputIds = at::randint(2, vocab, { batch, sourceLength }, at::kLong);
    b.attentionMask = at::ones({ batch, sourceLength }, at::kLong);
    b.labels = at::randint(2, vocab, { batch, targetLength }, at::kLong);
    if (batch > 1) {
        b.attentionMask[0].narrow(0, sourceLength - 2, 2).fill_(0);
        b.inputIds[0].narrow(0, sourceLength - 2, 2).fill_(0);
        b.labels[1][targetLength - 1] = -100;
    }
    return b;
}

inline std::map<std::string, at::Tensor> trainableByName(const Method& m)
{
    std::map<std::string, at::Tensor> out;
    for (const auto& [name, p] : m.namedTrainableParameters())
        out[name] = p;
    return out;
}

} // namespace ladder::test::lst
