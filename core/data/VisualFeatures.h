#pragma once

// Precomputed visual features of a vision-and-language task (issue 22: CLIP-T5 as in the LST paper): one
// safetensors file of per-image grid features, read one image at a time. The format is in
// docs/VL.md; tools/reference/visual_features.py writes a file of it with safetensors.torch.
// Only the tensor type: data/ compiles without torch/nn (docs/ARCHITECTURE.md, the floors).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ladder {

// The default name of the feature file in a VL task folder.
inline constexpr const char* kVisualFeaturesFileName = "features.safetensors";
// What "__metadata__"'s "format" holds in a file writeVisualFeatureFile writes (informational).
inline constexpr const char* kVisualFeaturesFormat = "ladder-visual-features-v1";
// The tensor "<image id>#boxes" holds that image's boxes; an image id cannot end with it.
inline constexpr const char* kVisualBoxesSuffix = "#boxes";

struct VisualFeatureInfo {
    std::string path;
    std::int64_t images = 0; // image tensors (the #boxes tensors are not counted)
    std::int64_t boxes = 0; // every image's rows
    std::int64_t dim = 0; // every image's width
    std::string dtype; // "F16", "BF16", "F32"; several joined by "+" ("F16+F32") when images differ
    std::string encoder; // "__metadata__"'s "encoder", empty when absent
    std::string format; // "__metadata__"'s "format", empty when absent
};

// One image: float32 features [boxes, dim] and float32 boxes [boxes, 4] (x1, x2, y1, y2 in [0, 1], VL-T5's
// order; zeros when the file has none for the image, as the LST reference's CLIP data loader makes them).
struct VisualFeatures {
    at::Tensor features;
    at::Tensor boxes;
};

// A feature file, opened: the constructor reads and checks the header only; read() reads one image's bytes.
// The object is immutable after construction and read() uses pread(2) on one descriptor held open, so
// read(), contains() and info() are safe from several threads at once; copies share the descriptor. There is
// no cache of images: the kernel's page cache keeps what was read recently.
class VisualFeatureFile {
public:
    // Throws ladder::Error naming the file for a missing, unreadable or corrupt file (every check of
    // readSafetensorsHeader), a file with no image tensors, a dtype other than F32/F16/BF16, a tensor that is
    // not 2-D or is empty, images of different [boxes, dim] (naming both tensors and both shapes), a #boxes
    // tensor without its image or of a shape other than [boxes, 4].
    explicit VisualFeatureFile(const std::string& path);

    const VisualFeatureInfo& info() const;
    bool contains(const std::string& imageId) const;
    // Every image id, sorted.
    std::vector<std::string> imageIds() const;

    // Reads one image's tensors (only their bytes), as float32. Throws ladder::Error naming the file and the
    // image: "PATH: no features for image 'X' (the file holds 5,000 images, e.g. 'a', 'b', 'c')"; NaN or
    // infinite features or boxes; boxes outside [0, 1]; a file that ends early (truncated after it was
    // opened).
    VisualFeatures read(const std::string& imageId) const;

    // Throws "PATH: features are 512 wide but the run's visual_dim is 2048" when dim differs from info().dim.
    void expectDim(std::int64_t dim) const;

    // `tokens` visual tokens from features [boxes, dim] or [batch, boxes, dim] (any float dtype; the result
    // has the input's rank and dtype): boxes == tokens returns the input as is; a square grid of boxes (49 =
    // 7x7, 196 = 14x14) and a smaller square number of tokens (36 = 6x6) are reduced as the LST reference's
    // --downsample does (VL-T5/src/modeling_bart.py, Downsample): adaptive MAX pooling over the grid, row
    // by row (box i is grid cell (i / s, i % s)). Anything else throws ladder::Error naming both counts.
    static at::Tensor reduceTokens(const at::Tensor& features, std::int64_t tokens);
    // The boxes that go with reduceTokens's result, as the reference makes them: the first `tokens` rows of
    // boxes [boxes, 4] or [batch, boxes, 4] (its CLIP boxes are zeros, where the choice is moot).
    static at::Tensor reduceBoxes(const at::Tensor& boxes, std::int64_t tokens);

private:
    struct Impl;
    std::shared_ptr<const Impl> m_impl;
};

// Writes images (id -> features [boxes, dim] of F32, F16 or BF16, kept in their dtype; boxes [boxes, 4] when
// defined, stored as F32) in the format above, with "__metadata__" {"encoder": encoder, "format":
// kVisualFeaturesFormat}; through writeSafetensors (a temporary file renamed into place). Throws
// ladder::Error naming the file and the image for no images, an empty, duplicate or reserved id (one ending
// in "#boxes", "__metadata__"), a shape other than the first image's, NaN or infinite values, or boxes of
// the wrong shape.
void writeVisualFeatureFile(const std::string& path,
    const std::vector<std::pair<std::string, VisualFeatures>>& images, const std::string& encoder);

} // namespace ladder
