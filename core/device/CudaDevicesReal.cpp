// CUDA build: devices and caching-allocator statistics through c10::cuda.
// Compiled and linked on every CUDA build; it only runs where a GPU is present.
#include "device/Devices.h"

#include <ATen/cuda/CUDAContextLight.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

namespace ladder::cuda {

bool available()
{
    return c10::cuda::device_count() > 0;
}

// cudaMemGetInfo creates a context on each device it asks (seconds on a many-GPU machine): callers with a
// window call this on a worker thread (widgets/ComputeDeviceModel).
std::vector<ComputeDevice> devices()
{
    std::vector<ComputeDevice> out;
    const int count = c10::cuda::device_count();
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp prop {};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess)
            continue;
        ComputeDevice d;
        d.id = "cuda:" + std::to_string(i);
        d.name = prop.name;
        c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(i));
        size_t freeBytes = 0, totalBytes = 0;
        if (cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess) {
            d.freeBytes = freeBytes;
            d.totalBytes = totalBytes;
        } else {
            d.totalBytes = prop.totalGlobalMem;
        }
        out.push_back(d);
    }
    return out;
}

MemoryStats memoryStats(int device)
{
    using c10::CachingDeviceAllocator::StatType;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto aggregate = static_cast<size_t>(StatType::AGGREGATE);
    MemoryStats m;
    m.allocated = static_cast<std::uint64_t>(stats.allocated_bytes[aggregate].current);
    m.peakAllocated = static_cast<std::uint64_t>(stats.allocated_bytes[aggregate].peak);
    m.reserved = static_cast<std::uint64_t>(stats.reserved_bytes[aggregate].current);
    m.peakReserved = static_cast<std::uint64_t>(stats.reserved_bytes[aggregate].peak);
    return m;
}

void resetPeakMemoryStats(int device)
{
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
}

std::uint64_t cublasWorkspaceBytes()
{
    return available() ? static_cast<std::uint64_t>(at::cuda::getChosenWorkspaceSize()) : 0;
}

} // namespace ladder::cuda
