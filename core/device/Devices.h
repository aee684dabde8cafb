#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ladder {

// One compute device LadderBench can train on.
struct ComputeDevice {
    std::string id; // "cpu", "cuda:0", ...
    std::string name; // "CPU (2 threads)", "NVIDIA H200"
    std::uint64_t totalBytes = 0;
    std::uint64_t freeBytes = 0;
};

// The CPU first, then every CUDA device LibTorch sees (none in a CPU-only build or without a GPU).
// It calls cuda::devices(): see there before calling it from a GUI thread.
std::vector<ComputeDevice> listComputeDevices();
// The CPU alone: its hardware threads, MemTotal and MemAvailable of /proc/meminfo. Cheap (one small file
// read, no CUDA call), so a window can show it at once.
ComputeDevice cpuDevice();

// Version strings for About boxes and `ladder --version`.
std::string torchVersion();
std::string cudaRuntimeVersion(); // "13.0" in a CUDA build, "none" otherwise

namespace cuda {
// Implemented in CudaDevicesReal.cpp (CUDA builds) or CudaDevicesStub.cpp.
bool available();
// Every CUDA device with its name, total and free memory. cudaMemGetInfo needs a context, so the first call
// creates one on every GPU and can take seconds: the workbench calls it on a worker thread
// (ComputeDeviceModel), never on the GUI thread.
std::vector<ComputeDevice> devices();
// Caching-allocator statistics of one device: bytes allocated now and at peak, reserved at peak.
struct MemoryStats {
    std::uint64_t allocated = 0;
    std::uint64_t peakAllocated = 0;
    std::uint64_t reserved = 0;
    std::uint64_t peakReserved = 0;
};
MemoryStats memoryStats(int device);
void resetPeakMemoryStats(int device);
// Bytes of the workspace PyTorch gives each cuBLAS handle (through the caching allocator, so they count as
// allocated; cuBLASLt shares it): CUBLAS_WORKSPACE_CONFIG, else its default for the current device's
// architecture. 0 when no CUDA device is present.
std::uint64_t cublasWorkspaceBytes();
} // namespace cuda

} // namespace ladder
