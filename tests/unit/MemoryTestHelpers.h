#pragma once

// The tiny T5 and method options of the memory tests (test_memory_estimate, test_plan): dropout on, so the
// masks count too; LST with init random (memory does not depend on the init; Fisher would need data).
// Header-only: each of those test executables includes it.

#include <string>

#include "model/T5Config.h"
#include "peft/MethodOptions.h"

namespace ladder::test::memory {

inline T5Config tinyConfig()
{
    T5Config c;
    c.vocabSize = 512;
    c.dModel = 64;
    c.dKv = 16;
    c.numHeads = 4;
    c.dFf = 256;
    c.numLayers = 2;
    c.numDecoderLayers = 2;
    c.relativeAttentionNumBuckets = 8;
    c.relativeAttentionMaxDistance = 32;
    c.dropoutRate = 0.1;
    return c;
}

inline MethodOptions optionsFor(const std::string& method)
{
    auto o = MethodOptions::defaults(method);
    o.r = 4;
    o.hidden = 16;
    o.rank = 8;
    o.prompts = 10;
    if (method == "ladder")
        o.init = "random";
    return o;
}

} // namespace ladder::test::memory
