#pragma once

#include <stdexcept>
#include <string>

namespace ladder {

// The one exception type of ladder_core. Messages carry their context upward, for example
// "loading model.safetensors: tensor encoder.block.3.layer.0.SelfAttention.q.weight: offsets outside the
// file".
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message)
        : std::runtime_error(message)
    {
    }
};

// Prefixes `context` to the message of `e`; used when an error crosses a layer boundary.
[[noreturn]] inline void rethrowWithContext(const std::string& context, const std::exception& e)
{
    throw Error(context + ": " + e.what());
}

} // namespace ladder
