#include "device/Devices.h"

#include <fstream>
#include <sstream>
#include <thread>

#include <torch/version.h>

#include "ladder/Version.h"

namespace ladder {
namespace {

// MemTotal / MemAvailable from /proc/meminfo, in bytes (0 when unreadable).
std::uint64_t meminfoField(const std::string& field)
{
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            std::istringstream fields(line.substr(field.size() + 1));
            std::uint64_t kib = 0;
            fields >> kib;
            return kib * 1024;
        }
    }
    return 0;
}

} // namespace

ComputeDevice cpuDevice()
{
    ComputeDevice cpu;
    cpu.id = "cpu";
    cpu.name = "CPU (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
    cpu.totalBytes = meminfoField("MemTotal");
    cpu.freeBytes = meminfoField("MemAvailable");
    return cpu;
}

std::vector<ComputeDevice> listComputeDevices()
{
    std::vector<ComputeDevice> devices;
    devices.push_back(cpuDevice());
    for (auto& d : cuda::devices())
        devices.push_back(d);
    return devices;
}

std::string torchVersion()
{
    return TORCH_VERSION;
}

std::string cudaRuntimeVersion()
{
    return kBuiltWithCuda ? std::string(kTorchCudaVersion) : std::string("none");
}

} // namespace ladder
