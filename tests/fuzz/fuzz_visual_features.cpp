// A visual feature file (data/VisualFeatures.h, docs/VL.md): a stranger's safetensors of per-image features,
// opened header-only, each image read (features, boxes) and reduced to fewer visual tokens. Every malformed
// file must be a ladder::Error; anything else escaping is a finding.
#include <ATen/ATen.h>

#include "FuzzSupport.h"
#include "data/VisualFeatures.h"
#include "util/Error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const std::string path = ladder::fuzz::scratchPath("features.safetensors");
    ladder::fuzz::writeBytes(path, data, size);
    try {
        const ladder::VisualFeatureFile file(path);
        const auto& info = file.info();
        int read = 0;
        for (const auto& id : file.imageIds()) {
            if (++read > 8)
                break;
            const auto image = file.read(id);
            file.expectDim(info.dim);
            // The reference's --downsample: a square grid to the next smaller square, when there is one.
            for (std::int64_t side = 1; (side + 1) * (side + 1) <= info.boxes; ++side)
                if ((side + 1) * (side + 1) == info.boxes && side >= 1) {
                    ladder::VisualFeatureFile::reduceTokens(image.features, side * side);
                    ladder::VisualFeatureFile::reduceBoxes(image.boxes, side * side);
                }
        }
        file.contains("no such image");
    } catch (const ladder::Error&) {
    }
    return 0;
}
