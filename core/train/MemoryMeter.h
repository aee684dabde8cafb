#pragma once

#include <cstdint>
#include <string>

#include <c10/core/Device.h>

namespace ladder {

// Installs, once per process, a CPU allocator that counts live and peak bytes of every CPU tensor
// allocation (thread-safe, lock-free). Call it at start-up, before any tensor exists, so that weights are
// counted too; later calls are no-ops. Tensors allocated before installation are freed normally but
// are not counted.
void installCpuMemoryTracker();
bool cpuMemoryTrackerInstalled();

// One reading of a device's allocator.
struct MemorySample {
    std::uint64_t allocated = 0; // live tensor bytes now
    std::uint64_t peakAllocated = 0; // highest live bytes since the last reset
    std::uint64_t reserved = 0; // CUDA caching allocator: bytes held from the driver (CPU: = allocated)
    std::uint64_t peakReserved = 0;
};

// Reads and resets the allocator statistics of one device: the tracking allocator on the CPU, the
// caching allocator's device statistics on CUDA (real implementation in CUDA builds only).
class MemoryMeter {
public:
    explicit MemoryMeter(c10::Device device);
    // Starts a new peak window at the current live bytes.
    void resetPeak();
    MemorySample sample() const;
    const c10::Device& device() const { return m_device; }
    // "peak allocated (CPU tracking allocator)" or "peak allocated (CUDA caching allocator)"
    std::string label() const;

private:
    c10::Device m_device;
};

} // namespace ladder
