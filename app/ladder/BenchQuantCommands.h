#pragma once

namespace CLI {
class App;
}

namespace ladder::cli {

// `ladder bench quant`: the quantisation error of frozen backbone storage (issue 18): logits' relative error
// against fp32 for bf16, int8 and int4 (groups 32, 64, 128) on the fixtures' T5 checkpoints, the demo
// backbone and any --model folder, the weight bytes per storage, and ATen's kernels against dequantise +
// mm at a few row counts (docs/PERFORMANCE.md, "Frozen backbone storage"). Added under `bench`.
void registerBenchQuantCommand(CLI::App* bench);

} // namespace ladder::cli
