// CUDA build: ProcessGroupNCCL. Compiled and linked on every CUDA build; it only runs where a GPU is.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif

#include "dist/Backends.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "util/Error.h"

namespace ladder::dist {

bool ncclCompiled()
{
    return true;
}

c10::intrusive_ptr<c10d::Backend> makeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
    int world, int localRank, std::chrono::milliseconds timeout)
{
    const int count = c10::cuda::device_count();
    if (localRank >= count)
        throw Error("LOCAL_RANK " + std::to_string(localRank) + ": this machine has " + std::to_string(count)
            + " CUDA devices (one rank per GPU)");
    // The device first: NCCL's communicator is created on the current device.
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(localRank));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
    backend->eagerConnectSingleDevice(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(localRank)));
    return backend;
}

} // namespace ladder::dist
