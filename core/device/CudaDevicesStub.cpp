// CPU-only build: no CUDA devices, zero statistics.
#include "device/Devices.h"

namespace ladder::cuda {

bool available()
{
    return false;
}

std::vector<ComputeDevice> devices()
{
    return {};
}

MemoryStats memoryStats(int)
{
    return {};
}

void resetPeakMemoryStats(int) { }

std::uint64_t cublasWorkspaceBytes()
{
    return 0;
}

} // namespace ladder::cuda
