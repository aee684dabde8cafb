#include "train/MemoryMeter.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include "device/Devices.h"
#include "util/Error.h"

namespace ladder {
namespace {

std::atomic<std::uint64_t> g_live { 0 };
std::atomic<std::uint64_t> g_peak { 0 };
std::atomic<bool> g_installed { false };

// Every block carries a 64-byte header holding its size, so the data pointer is its own context and the
// raw allocate/deallocate interface keeps working (some kernels use it). 64 keeps the data 64-byte aligned.
constexpr std::size_t kHeader = 64;

void raisePeak(std::uint64_t live)
{
    auto peak = g_peak.load(std::memory_order_relaxed);
    while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) { }
}

void trackedFree(void* data)
{
    if (!data)
        return;
    auto* base = static_cast<char*>(data) - kHeader;
    std::uint64_t size = 0;
    std::memcpy(&size, base, sizeof(size));
    g_live.fetch_sub(size, std::memory_order_relaxed);
    c10::free_cpu(base);
}

class TrackingCpuAllocator final : public c10::Allocator {
public:
    c10::DataPtr allocate(size_t n) override
    {
        char* base = nullptr;
        try {
            base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
        } catch (const c10::Error& e) {
            // LibTorch's CPU allocator throws a plain c10::Error ("DefaultCPUAllocator: can't allocate
            // memory"); CUDA's throws OutOfMemoryError. The trainer catches that one and ends the run with
            // "out of memory (... peak allocated N MiB)", on every device (an address-space limit, a
            // machine out of RAM).
            TORCH_CHECK_WITH(OutOfMemoryError, false, "CPU out of memory: tried to allocate ", n,
                " bytes with ", g_live.load(), " bytes live (", e.what_without_backtrace(), ")");
        }
        const std::uint64_t size = n;
        std::memcpy(base, &size, sizeof(size));
        raisePeak(g_live.fetch_add(size, std::memory_order_relaxed) + size);
        void* data = base + kHeader;
        return { data, data, &trackedFree, c10::Device(c10::DeviceType::CPU) };
    }
    c10::DeleterFnPtr raw_deleter() const override { return &trackedFree; }
    void copy_data(void* dest, const void* src, std::size_t count) const override
    {
        default_copy_data(dest, src, count);
    }
};

TrackingCpuAllocator& trackingAllocator()
{
    static TrackingCpuAllocator allocator; // lives until exit: tensors may be freed during static destruction
    return allocator;
}

std::mutex g_installMutex;

} // namespace

void installCpuMemoryTracker()
{
    std::lock_guard<std::mutex> lock(g_installMutex);
    if (g_installed.load())
        return;
    // Priority above the default (0) so that nothing later replaces it silently.
    c10::SetCPUAllocator(&trackingAllocator(), /*priority=*/10);
    g_installed.store(true);
}

bool cpuMemoryTrackerInstalled()
{
    return g_installed.load();
}

MemoryMeter::MemoryMeter(c10::Device device)
    : m_device(device)
{
    if (device.is_cpu() && !cpuMemoryTrackerInstalled())
        throw Error(
            "memory meter: the CPU tracking allocator is not installed (call installCpuMemoryTracker() "
            "at start-up)");
}

void MemoryMeter::resetPeak()
{
    if (m_device.is_cuda())
        cuda::resetPeakMemoryStats(m_device.index() < 0 ? 0 : m_device.index());
    else
        g_peak.store(g_live.load());
}

MemorySample MemoryMeter::sample() const
{
    MemorySample s;
    if (m_device.is_cuda()) {
        const auto c = cuda::memoryStats(m_device.index() < 0 ? 0 : m_device.index());
        s.allocated = c.allocated;
        s.peakAllocated = c.peakAllocated;
        s.reserved = c.reserved;
        s.peakReserved = c.peakReserved;
    } else {
        s.allocated = g_live.load();
        s.peakAllocated = g_peak.load();
        s.reserved = s.allocated;
        s.peakReserved = s.peakAllocated;
    }
    return s;
}

std::string MemoryMeter::label() const
{
    return m_device.is_cuda() ? "peak allocated (CUDA caching allocator)"
                              : "peak allocated (CPU tracking allocator)";
}

} // namespace ladder
