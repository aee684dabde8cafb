#include "model/ModelInputs.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "util/Error.h"
#include "util/Json.h"

namespace ladder {
namespace {

using nlohmann::json;

at::Tensor matrixField(const json& j, const std::string& path, const char* field, std::int64_t lo,
    std::int64_t hi, std::int64_t allowed)
{
    const auto& m = j.at(field);
    const std::string where = path + ": field " + field;
    if (!m.is_array() || m.empty())
        throw Error(where + ": expected a non-empty array of rows of integers");
    const auto rows = static_cast<std::int64_t>(m.size());
    if (!m[0].is_array() || m[0].empty())
        throw Error(where + "[0]: expected a non-empty array of integers");
    const auto cols = static_cast<std::int64_t>(m[0].size());
    auto t = at::empty({ rows, cols }, at::kLong);
    auto* data = t.data_ptr<std::int64_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto& row = m[static_cast<std::size_t>(r)];
        if (!row.is_array() || static_cast<std::int64_t>(row.size()) != cols)
            throw Error(where + "[" + std::to_string(r) + "]: expected an array of " + std::to_string(cols)
                + " integers (all rows the same length)");
        for (std::int64_t c = 0; c < cols; ++c) {
            const auto& v = row[static_cast<std::size_t>(c)];
            const std::string cell = where + "[" + std::to_string(r) + "][" + std::to_string(c) + "]";
            if (!v.is_number_integer())
                throw Error(cell + ": expected an integer, got " + brief(v));
            const auto x = v.get<std::int64_t>();
            if ((x < lo || x >= hi) && x != allowed)
                throw Error(cell + " = " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", "
                    + std::to_string(hi) + ")" + (allowed == -100 ? " and is not -100" : ""));
            data[r * cols + c] = x;
        }
    }
    return t;
}

} // namespace

ModelInputs ModelInputs::fromJsonFile(const std::string& path, std::int64_t vocabSize)
{
    const json j = readJsonFile(path, "a JSON object with input_ids, attention_mask and labels");
    if (!j.is_object())
        throw Error(path + ": expected a JSON object with input_ids, attention_mask and labels");
    if (!j.contains("input_ids"))
        throw Error(path + ": missing field input_ids");
    ModelInputs inputs;
    inputs.inputIds = matrixField(j, path, "input_ids", 0, vocabSize, 0);
    if (j.contains("attention_mask")) {
        inputs.attentionMask = matrixField(j, path, "attention_mask", 0, 2, 0);
        if (inputs.attentionMask.sizes() != inputs.inputIds.sizes())
            throw Error(path + ": field attention_mask: shape differs from input_ids");
    } else {
        inputs.attentionMask = at::ones_like(inputs.inputIds);
    }
    if (j.contains("labels") && !j.at("labels").is_null()) {
        inputs.labels = matrixField(j, path, "labels", 0, vocabSize, -100);
        if (inputs.labels.size(0) != inputs.inputIds.size(0))
            throw Error(path + ": field labels: " + std::to_string(inputs.labels.size(0))
                + " rows, input_ids has " + std::to_string(inputs.inputIds.size(0)));
    }
    if (j.contains("max_new_tokens")) {
        const auto& m = j.at("max_new_tokens");
        if (!m.is_number_integer() || m.get<std::int64_t>() < 1)
            throw Error(path + ": field max_new_tokens: expected a positive integer");
        inputs.maxNewTokens = m.get<std::int64_t>();
    }
    return inputs;
}

} // namespace ladder
