#include "model/BackboneLoad.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "model/T5Checkpoint.h"
#include "model/llama/LlamaCheckpoint.h"
#include "util/Error.h"
#include "util/Json.h"
#include "util/Text.h"

namespace ladder {
namespace fs = std::filesystem;

namespace {
// config.json, read once, and its model_type.
std::pair<std::shared_ptr<const nlohmann::json>, std::string> readConfig(const std::string& directory)
{
    if (!fs::is_directory(directory))
        throw Error(
            directory + ": not a folder (expected a HuggingFace model folder with config.json and weights)");
    const auto path = (fs::path(directory) / "config.json").string();
    auto json = std::make_shared<const nlohmann::json>(readJsonFile(path, "a HuggingFace config.json"));
    if (!json->is_object() || !json->contains("model_type") || !json->at("model_type").is_string())
        throw Error(path + ": field model_type: expected a string (t5, llama, mistral or qwen2)");
    return { json, json->at("model_type").get<std::string>() };
}
} // namespace

std::string readModelType(const std::string& directory)
{
    return readConfig(directory).second;
}

LoadedBackbone loadBackbone(const std::string& directory, const BackboneLoadOptions& options)
{
    // One read of config.json for the dispatch and the loader (a folder may be slow or a pipe).
    const auto [config, type] = readConfig(directory);
    LoadedBackbone out;
    out.modelType = type;
    if (type == "t5") {
        auto t5 = loadT5(directory, { options.dtype, options.device, config });
        out.model = t5.model.ptr();
        out.shape = t5.config.shape();
        out.directory = t5.directory;
        out.weightsDescription = t5.weightsDescription;
        out.storedDtype = t5.storedDtype;
        return out;
    }
    if (LlamaConfig::supportsModelType(type)) {
        auto llama = loadLlama(directory, { options.dtype, options.device, config });
        out.model = llama.model.ptr();
        out.shape = llama.config.shape();
        out.directory = llama.directory;
        out.weightsDescription = llama.weightsDescription;
        out.storedDtype = llama.storedDtype;
        return out;
    }
    throw Error((fs::path(directory) / "config.json").string() + ": field model_type: unsupported '"
        + oneLine(type, 60) + "' (supported: t5, llama, mistral, qwen2)");
}

} // namespace ladder
