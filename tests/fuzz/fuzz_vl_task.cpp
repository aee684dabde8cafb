// A vision-and-language task folder (data/VlTask.h, docs/VL.md): the input is every split's JSONL (the same
// bytes as train, validation and test) over a fixed, valid feature file of images "a" and "b". Loaded, then
// scored with the targets as predictions (VQA accuracy, GQA, NLVR2, BLEU-4, CIDEr-D). Every malformed line
// must be a ladder::Error; anything else escaping is a finding.
#include <sys/stat.h>

#include <ATen/ATen.h>

#include "FuzzSupport.h"
#include "data/Metrics.h"
#include "data/VisualFeatures.h"
#include "data/VlTask.h"
#include "util/Error.h"

namespace {

std::string folder()
{
    static const std::string dir = [] {
        const auto d = ladder::fuzz::scratchPath("vl-task");
        mkdir(d.c_str(), 0700);
        std::vector<std::pair<std::string, ladder::VisualFeatures>> images;
        for (const char* id : { "a", "b" })
            images.push_back({ id, ladder::VisualFeatures { at::ones({ 4, 3 }), at::Tensor() } });
        ladder::writeVisualFeatureFile(d + "/features.safetensors", images, "fuzz");
        return d;
    }();
    return dir;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto dir = folder();
    for (const char* split : { "train", "validation", "test" })
        ladder::fuzz::writeBytes(dir + "/" + split + ".jsonl", data, size);
    try {
        ladder::VlTaskOptions options;
        options.folder = dir;
        const auto task = ladder::loadVlTask(options);
        std::vector<std::string> predictions;
        for (const auto& e : task.validation)
            predictions.push_back(e.target);
        ladder::evaluate(task.info, predictions, task.validation);
    } catch (const ladder::Error&) {
    }
    return 0;
}
