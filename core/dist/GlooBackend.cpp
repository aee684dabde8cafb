// ProcessGroupGloo, built from LibTorch's own ProcessGroupGloo.hpp. The wheel compiles gloo into
// libtorch_cpu but ships none of gloo's headers; Debian's libgloo-dev provides them. This file uses
// nothing of gloo but the opaque device pointer and the Options struct (a vector of shared_ptr and an int),
// whose layout no gloo version changes. USE_C10D_GLOO is what TorchConfig defines for a CUDA build; a
// CPU-only build defines it here.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif

#include "dist/Backends.h"

#include <cstdlib>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

namespace ladder::dist {

c10::intrusive_ptr<c10d::Backend> makeGlooBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
    int world, std::chrono::milliseconds timeout, const std::string& hostOrEmpty)
{
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname)
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (!hostOrEmpty.empty())
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostOrEmpty));
    else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
}

} // namespace ladder::dist
