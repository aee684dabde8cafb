// GPU checks (label gpu), Qt-free so that they build and run on a GPU machine that has no Qt
// (tools/gpu/check.sh ships this executable there). GoogleTest; CTest runs each suite in its own process
// (tests/CMakeLists.txt), so allocator statistics start clean.
//
//   Backbone.*  the backbone on CUDA matches HF's fixture outputs (t5-synthetic-hf, HF transformers).
//   Methods.*   every method's loss and trainable gradients on CUDA equal the CPU's (fp32, dropout 0).
//   CudaPeak.*  LadderBench's peak statistic equals torch.cuda.max_memory_allocated() for the same ops
//               (python3 with torch runs the same op list in a child process).
//   Lst.*       LST trains on CUDA without touching the backbone's gradients; the meter sees it.
//   Estimate.*  `ladder estimate` within 2% of the measured CUDA peak (t5-base, batch 32), per method, each
//               in its own process (CUDA's library workspaces are allocated once per process).
//   WorldOne/DataParallel.*  `ladder train` as rank 0 of a world of 1 (torchrun's variables) goes through
//               ProcessGroupNCCL on cuda:0 and trains the demo task exactly as the same spec in one process
//               (stored losses to 1e-6 relative); time per step with and without the process group.
//
// Without a CUDA device the executable exits 77 (CTest: skipped) with a message, unless
// LADDER_GPU_TEST_DEVICE=cpu asks for the kit's dry run, which runs the same code with "cuda" replaced by
// the CPU (the comparisons are then CPU against CPU: it proves the plumbing, not the GPU).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/DemoTasks.h"
#include "device/Devices.h"
#include "model/ModelInputs.h"
#include "model/Safetensors.h"
#include "model/T5Checkpoint.h"
#include "peft/Method.h"
#include "store/ResultsStore.h"
#include "train/MemoryBench.h"
#include "train/MemoryMeter.h"

using namespace ladder;

namespace {

std::string g_ladder; // the CLI under test: --ladder PATH, else the `ladder` beside this executable

// The device under test: cuda:0, or the CPU in the kit's dry run.
c10::Device testDevice()
{
    const char* v = std::getenv("LADDER_GPU_TEST_DEVICE");
    return c10::Device(v && *v ? v : "cuda:0");
}

bool dryRun()
{
    return !testDevice().is_cuda();
}

// The shared fixtures: LADDER_FIXTURES_DIR in the environment (the kit carries them), else the folder
// compiled in (../shared/fixtures beside the clone). Empty when neither exists.
std::string fixturesDir()
{
    const char* fromEnvironment = std::getenv("LADDER_FIXTURES_DIR");
    for (const char* candidate : { fromEnvironment, static_cast<const char*>(LADDER_FIXTURES_DIR) })
        if (candidate && *candidate && std::filesystem::is_directory(candidate))
            return candidate;
    return {};
}

double relativeError(const at::Tensor& actual, const at::Tensor& reference)
{
    const auto a = actual.detach().cpu().to(at::kDouble);
    const auto b = reference.detach().cpu().to(at::kDouble);
    const double denom = b.norm().item<double>();
    const double diff = (a - b).norm().item<double>();
    return denom > 0 ? diff / denom : diff;
}

// A small T5 v1.0 (ReLU) or v1.1 (gated-GELU, untied) shape: big enough that the CUDA kernels differ from
// the CPU's in summation order, small enough for a test.
T5Config smallConfig(bool gated)
{
    T5Config c;
    c.vocabSize = 256;
    c.dModel = 64;
    c.dKv = 16;
    c.numHeads = 4;
    c.dFf = 128;
    c.numLayers = 3;
    c.numDecoderLayers = 3;
    c.relativeAttentionNumBuckets = 16;
    c.relativeAttentionMaxDistance = 32;
    c.dropoutRate = 0.0;
    if (gated) {
        c.feedForwardProj = "gated-gelu";
        c.tieWordEmbeddings = false;
    }
    return c;
}

Seq2SeqBatch smallBatch(const c10::Device& device)
{
    at::manual_seed(5);
    Seq2SeqBatch b;
    b.inputIds = at::randint(3, 256, { 6, 20 }, at::kLong);
    b.attentionMask = at::ones_like(b.inputIds);
    b.attentionMask.narrow(1, 15, 5).narrow(0, 0, 3).zero_(); // padding in half the rows
    b.labels = at::randint(3, 256, { 6, 5 }, at::kLong);
    b.labels.narrow(1, 4, 1).narrow(0, 0, 2).fill_(-100);
    return { b.inputIds.to(device), b.attentionMask.to(device), b.labels.to(device) };
}

// "lstmem": LST with every memory option of issue 18 (side_checkpoint, side_attention sdpa, ladder_dtype
// bf16, an int4 backbone); "qlora": LoRA over an int4 backbone. Both run CUDA's own paths (the SDPA
// kernel, the recomputation's generator state, dequantisation on the device).
MethodOptions optionsFor(const std::string& name)
{
    const std::string method = name == "lstmem" ? "ladder" : name;
    auto o = MethodOptions::defaults(method);
    if (name == "lstmem") {
        o.sideCheckpoint = true;
        o.sideAttention = "sdpa";
        o.ladderDtype = "bf16";
        o.backboneDtype = "int4";
    }
    if (o.backboneDtype == "int4")
        o.quantGroupSize = 32; // divides the small shape's widths (64, 128)
    if (method == "adapter")
        o.hidden = 8;
    if (o.isLora()) {
        o.rank = 4;
        o.alpha = 8;
        o.targets = { "q", "k", "v", "o", "wi", "wo" };
    }
    if (method == "prompt")
        o.prompts = 4;
    if (method == "ladder") {
        o.r = 4;
        o.init = "random"; // no task data here; the gradients do not depend on the init
    }
    return o;
}

struct StepResult {
    double loss = 0;
    std::vector<std::pair<std::string, at::Tensor>> grads; // on the CPU
};

// One forward and backward of `method` built at a fixed seed on the CPU and then moved to `device`.
StepResult oneStep(const std::string& methodName, bool gated, const c10::Device& device)
{
    at::manual_seed(17);
    T5ForConditionalGeneration backbone(smallConfig(gated));
    {
        c10::NoGradGuard g; // give the norms some spread, as trained weights have
        for (auto& item : backbone->named_parameters(true))
            if (item.key().find("layer_norm") != std::string::npos)
                item.value().normal_(1.0, 0.1);
    }
    at::manual_seed(23);
    auto method = createMethod(backbone, optionsFor(methodName));
    method->to(device, at::kFloat);
    method->train(true);
    const auto out = method->forward(smallBatch(device));
    out.loss.backward();
    StepResult r;
    r.loss = out.loss.item<double>();
    for (const auto& [name, p] : method->namedTrainableParameters()) {
        EXPECT_TRUE(p.grad().defined()) << methodName << ": " << name << " has no gradient";
        if (p.grad().defined())
            r.grads.emplace_back(name, p.grad().detach().cpu().clone());
    }
    return r;
}

class Methods : public ::testing::TestWithParam<std::tuple<std::string, bool>> { };

TEST_P(Methods, LossAndGradientsOnCudaEqualCpu)
{
    const auto& [method, gated] = GetParam();
    const auto cpu = oneStep(method, gated, c10::Device("cpu"));
    const auto gpu = oneStep(method, gated, testDevice());
    const double lossError = std::abs(gpu.loss - cpu.loss) / std::max(1e-12, std::abs(cpu.loss));
    ASSERT_EQ(cpu.grads.size(), gpu.grads.size());
    double worst = 0;
    std::string worstName;
    for (std::size_t i = 0; i < cpu.grads.size(); ++i) {
        ASSERT_EQ(cpu.grads[i].first, gpu.grads[i].first);
        const double e = relativeError(gpu.grads[i].second, cpu.grads[i].second);
        if (e > worst) {
            worst = e;
            worstName = cpu.grads[i].first;
        }
    }
    std::printf(
        "GPU-RESULT {\"test\": \"methods\", \"method\": \"%s\", \"gated\": %s, \"loss_cpu\": %.9g, "
        "\"loss_device\": %.9g, \"loss_rel_error\": %.3e, \"tensors\": %zu, \"worst_grad_rel_error\": %.3e, "
        "\"worst_grad\": \"%s\"}\n",
        method.c_str(), gated ? "true" : "false", cpu.loss, gpu.loss, lossError, cpu.grads.size(), worst,
        worstName.c_str());
    EXPECT_LT(lossError, 1e-4);
    EXPECT_LT(worst, 1e-4) << "largest at " << worstName;
}

INSTANTIATE_TEST_SUITE_P(AllSix, Methods,
    ::testing::Combine(
        ::testing::Values("full", "bitfit", "adapter", "lora", "prompt", "ladder", "qlora", "lstmem"),
        ::testing::Bool()),
    [](const auto& info) {
        return std::get<0>(info.param) + (std::get<1>(info.param) ? "_gated" : "_relu");
    });

TEST(Backbone, LogitsEqualHfOnDevice)
{
    const auto fixtures = fixturesDir();
    if (fixtures.empty())
        GTEST_SKIP() << "shared fixtures not found (LADDER_FIXTURES_DIR)";
    for (const char* name : { "t5-v1_1-gated-gelu-synth", "t5-v1_0-relu-synth" }) {
        const auto root = fixtures + "/t5-synthetic-hf/" + name;
        if (!std::filesystem::exists(root + "/config.json"))
            continue;
        T5LoadOptions o;
        o.device = testDevice();
        auto loaded = loadT5(root, o);
        const auto expected = readSafetensors(root + "/expected/expected_outputs.safetensors");
        const auto inputs
            = ModelInputs::fromJsonFile(root + "/expected/inputs.json", loaded.config.vocabSize);
        c10::NoGradGuard noGrad;
        const auto out = loaded.model->forward(
            inputs.inputIds.to(o.device), inputs.attentionMask.to(o.device), inputs.labels.to(o.device));
        const double err = relativeError(out.logits, expected.at("logits"));
        std::printf(
            "GPU-RESULT {\"test\": \"backbone\", \"checkpoint\": \"%s\", \"logits_rel_error\": %.3e}\n", name,
            err);
        EXPECT_LT(err, 1e-5) << name;
    }
}

// The op list both sides run: ("alloc", id, float32 elements), ("free", id), ("matmul", id, n: an n x n
// product into a new tensor id, which makes cuBLAS allocate its workspace), ("reset": a new peak window).
struct Op {
    std::string kind;
    int id = 0;
    std::int64_t n = 0;
};

std::vector<Op> peakOps()
{
    return { { "alloc", 0, 1 }, { "alloc", 1, 127 }, { "alloc", 2, 129 }, { "alloc", 3, 262144 },
        { "alloc", 4, 262145 }, { "alloc", 5, 5000000 }, { "free", 3 }, { "alloc", 6, 20000000 },
        { "free", 5 }, { "alloc", 7, 3000000 }, { "matmul", 8, 1024 }, { "free", 6 }, { "reset" },
        { "alloc", 9, 1000 }, { "matmul", 10, 2048 }, { "free", 8 }, { "alloc", 11, 40000000 },
        { "free", 11 }, { "alloc", 12, 7 }, { "free", 0 } };
}

std::string opsJson()
{
    nlohmann::json j = nlohmann::json::array();
    for (const auto& op : peakOps())
        j.push_back({ op.kind, op.id, op.n });
    return j.dump();
}

// Allocated bytes now and at peak after every "reset" window, above the bytes live before the first op.
std::vector<std::array<std::int64_t, 2>> runOpsHere(int device)
{
    std::vector<std::array<std::int64_t, 2>> windows;
    std::map<int, at::Tensor> live;
    const auto opts
        = at::TensorOptions().device(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device)));
    (void)at::empty({ 0 }, opts);
    const auto base = static_cast<std::int64_t>(cuda::memoryStats(device).allocated);
    cuda::resetPeakMemoryStats(device);
    auto close = [&] {
        const auto s = cuda::memoryStats(device);
        windows.push_back({ static_cast<std::int64_t>(s.allocated) - base,
            static_cast<std::int64_t>(s.peakAllocated) - base });
    };
    for (const auto& op : peakOps()) {
        if (op.kind == "alloc")
            live[op.id] = at::empty({ op.n }, opts.dtype(at::kFloat));
        else if (op.kind == "free")
            live.erase(op.id);
        else if (op.kind == "matmul") {
            const auto a = at::ones({ op.n, op.n }, opts.dtype(at::kFloat));
            live[op.id] = at::mm(a, a);
        } else if (op.kind == "reset") {
            close();
            cuda::resetPeakMemoryStats(device);
        }
    }
    close();
    return windows;
}

TEST(CudaPeak, EqualsTorchMaxMemoryAllocated)
{
    if (dryRun())
        GTEST_SKIP() << "needs CUDA: the peak statistic is the CUDA caching allocator's";
    const auto here = runOpsHere(0);
    // The same ops in a fresh python3 with PyTorch (the kit's machine has it; so has the set-up's venv).
    const std::string script = R"PY(
import json, sys, torch
ops = json.loads(sys.argv[1])
live, windows = {}, []
torch.empty(0, device="cuda")
base = torch.cuda.memory_allocated()
torch.cuda.reset_peak_memory_stats()
def close():
    windows.append([torch.cuda.memory_allocated() - base, torch.cuda.max_memory_allocated() - base])
for kind, i, n in ops:
    if kind == "alloc": live[i] = torch.empty(n, device="cuda")
    elif kind == "free": del live[i]
    elif kind == "matmul":
        a = torch.ones(n, n, device="cuda"); live[i] = a @ a; del a
    elif kind == "reset":
        close(); torch.cuda.reset_peak_memory_stats()
close()
print(json.dumps({"windows": windows, "torch": torch.__version__}))
)PY";
    const char* python = std::getenv("LADDER_PYTHON");
    std::string cmd
        = std::string(python && *python ? python : "python3") + " -c '" + script + "' '" + opsJson() + "'";
    FILE* pipe = popen(cmd.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string output;
    std::array<char, 4096> buffer {};
    while (std::fgets(buffer.data(), buffer.size(), pipe))
        output += buffer.data();
    const int rc = pclose(pipe);
    if (rc != 0 || output.find("windows") == std::string::npos)
        GTEST_SKIP() << "python3 with a CUDA PyTorch is needed for the reference (exit " << rc << ")";
    const auto torch = nlohmann::json::parse(output.substr(output.find('{')));
    const auto& windows = torch.at("windows");
    ASSERT_EQ(windows.size(), here.size());
    for (std::size_t w = 0; w < here.size(); ++w) {
        std::printf("GPU-RESULT {\"test\": \"peak\", \"window\": %zu, \"ladder_allocated\": %lld, "
                    "\"torch_allocated\": %lld, \"ladder_peak\": %lld, \"torch_peak\": %lld}\n",
            w, static_cast<long long>(here[w][0]), windows[w][0].get<long long>(),
            static_cast<long long>(here[w][1]), windows[w][1].get<long long>());
        EXPECT_EQ(here[w][0], windows[w][0].get<std::int64_t>()) << "allocated, window " << w;
        EXPECT_EQ(here[w][1], windows[w][1].get<std::int64_t>()) << "peak, window " << w;
    }
}

TEST(Lst, StepOnDeviceLeavesBackboneWithoutGradients)
{
    const auto device = testDevice();
    MemoryMeter meter(device);
    meter.resetPeak();
    at::manual_seed(0);
    T5ForConditionalGeneration backbone(smallConfig(false));
    backbone->to(device);
    auto method = createMethod(backbone, optionsFor("ladder"));
    method->to(device, at::kFloat);
    method->train(true);
    method->forward(smallBatch(device)).loss.backward();
    const auto s = meter.sample();
    std::printf("GPU-RESULT {\"test\": \"lst\", \"peak_allocated\": %llu, \"peak_reserved\": %llu}\n",
        static_cast<unsigned long long>(s.peakAllocated), static_cast<unsigned long long>(s.peakReserved));
    EXPECT_GT(s.peakAllocated, static_cast<std::uint64_t>(method->totalParameterCount()) * 4);
    EXPECT_GE(s.peakReserved, s.peakAllocated);
    for (const auto& p : backbone->parameters())
        EXPECT_FALSE(p.grad().defined());
    for (const auto& p : method->trainableParameters())
        EXPECT_TRUE(p.grad().defined());
}

// The estimate against the meter: PyTorch's caching allocator on CUDA (the CPU's tracking allocator in the
// dry run), on a real shape, in fp32 and in bf16 mixed precision (CUDA autocast).
class Estimate : public ::testing::TestWithParam<std::tuple<std::string, std::string>> { };

TEST_P(Estimate, WithinTwoPercentOfMeasuredPeak)
{
    const auto& [method, dtype] = GetParam();
    const auto device = testDevice();
    MemoryBenchSpec spec;
    spec.config = T5Config::preset(device.is_cuda() ? "t5-base" : "t5-small");
    spec.config.dropoutRate = 0.1;
    spec.batch = device.is_cuda() ? 32 : 4;
    spec.sourceLength = device.is_cuda() ? 128 : 64;
    spec.targetLength = 4;
    spec.steps = 3;
    spec.device = device;
    spec.dtype = dtype;
    // Training memory does not depend on LST's init; fisher (the default) would need task data.
    auto options = withoutFisherInit(MethodOptions::defaults(method == "lstmem" ? "ladder" : method));
    if (options.method == "ladder")
        options.keep = { 1, 2, 3, 5 }; // a dropped-layer list that fits both shapes
    if (method == "lstmem") { // every memory option of issue 18
        options.sideCheckpoint = true;
        options.sideAttention = "sdpa";
        options.ladderDtype = "bf16";
        options.backboneDtype = "int4";
    }
    const auto r = measureTrainingMemory(spec, options);
    std::printf(
        "GPU-RESULT {\"test\": \"estimate\", \"method\": \"%s\", \"dtype\": \"%s\", \"device\": \"%s\", "
        "\"peak\": %llu, \"estimate\": %llu, \"error\": %.4f, \"workspaces\": %llu}\n",
        method.c_str(), dtype.c_str(), device.str().c_str(), static_cast<unsigned long long>(r.peakBytes),
        static_cast<unsigned long long>(r.estimate.total), r.estimateError(),
        static_cast<unsigned long long>(r.estimate.cudaWorkspaces));
    EXPECT_LT(std::abs(r.estimateError()), 0.02) << "estimate " << r.estimate.total << " B, measured "
                                                 << r.peakBytes << " B (" << r.estimate.peakWhere << ")";
}

INSTANTIATE_TEST_SUITE_P(AllSix, Estimate,
    ::testing::Combine(
        ::testing::Values("full", "bitfit", "adapter", "lora", "prompt", "ladder", "qlora", "lstmem"),
        ::testing::Values("fp32", "bf16")),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

// ---- Data parallel: `ladder train` as rank 0 of a world of 1 ----------------------------------------------
// With RANK=0 WORLD_SIZE=1 (torchrun's variables) `ladder train` joins a process group: ProcessGroupNCCL on
// cuda:LOCAL_RANK (Gloo in the dry run on the CPU), its gradients all-reduced in buckets by GradientSync.
// Over one rank every collective is an identity, so the stored trajectory must be the single process's.

struct Ran {
    int exitCode = -1;
    std::string out;
    std::string err;
    double seconds = 0;
};

std::string shellQuote(const std::string& s)
{
    std::string q = "'";
    for (char c : s)
        q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string readText(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string tail(const std::string& s, std::size_t n = 1500)
{
    return s.size() > n ? "..." + s.substr(s.size() - n) : s;
}

// A TCP port nobody listens on now (the kernel's pick), for the rendezvous.
int freePort()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    sockaddr_in a {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t length = sizeof a;
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0
        && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// `ladder train --config SPEC --store STORE` under env(1) (`variables`: "NAME=value" or "-u NAME") and
// timeout(1), so that a hung rendezvous ends the test rather than CTest's timeout.
Ran runLadderTrain(const std::vector<std::string>& variables, const std::string& spec,
    const std::string& store, const std::string& logs)
{
    std::string cmd = "timeout -k 10 240 env";
    for (const auto& v : variables)
        cmd += " " + shellQuote(v);
    cmd += " " + shellQuote(g_ladder) + " train --config " + shellQuote(spec) + " --store "
        + shellQuote(store) + " >" + shellQuote(logs + ".out") + " 2>" + shellQuote(logs + ".err")
        + " </dev/null";
    const auto t0 = std::chrono::steady_clock::now();
    const int status = std::system(cmd.c_str());
    Ran r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.exitCode = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = readText(logs + ".out");
    r.err = readText(logs + ".err");
    return r;
}

struct StoredRun {
    std::string error; // empty when read
    RunRecord run;
    std::vector<MetricPoint> points;
    std::vector<LogLine> logs;
};

StoredRun readRun(const std::string& path)
{
    StoredRun r;
    ResultsStore store;
    std::vector<RunRecord> runs;
    if (!store.open(path, ResultsStore::OpenMode::ReadOnly, &r.error) || !store.listRuns({}, &runs, &r.error))
        return r;
    if (runs.size() != 1) {
        r.error = path + " holds " + std::to_string(runs.size()) + " runs, not 1";
        return r;
    }
    r.run = runs.front();
    if (!store.getMetrics(r.run.id, ResultsStore::kAllSteps, &r.points, &r.error)
        || !store.getLogs(r.run.id, 0, &r.logs, &r.error))
        return r;
    return r;
}

// Seconds per optimizer step from the stored elapsed times, from the third logged step on: the first steps
// pay for CUDA's lazy initialisation, cuBLAS's handles and the caching allocator's growth.
double secondsPerStep(const std::vector<MetricPoint>& points)
{
    const std::size_t from = points.size() > 4 ? 2 : 0;
    if (points.size() < from + 2 || !points[from].elapsedSeconds || !points.back().elapsedSeconds)
        return -1;
    return (*points.back().elapsedSeconds - *points[from].elapsedSeconds)
        / static_cast<double>(points.back().step - points[from].step);
}

// The largest relative difference between two runs' stored losses, step by step (infinite when the steps
// differ or a loss is missing).
double maxRelativeLossDifference(const std::vector<MetricPoint>& a, const std::vector<MetricPoint>& b)
{
    if (a.size() != b.size() || a.empty())
        return INFINITY;
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].step != b[i].step || !a[i].loss || !b[i].loss)
            return INFINITY;
        worst = std::max(worst, std::abs(*a[i].loss - *b[i].loss) / std::max(1e-12, std::abs(*a[i].loss)));
    }
    return worst;
}

std::string lineWith(const std::string& text, const std::string& prefix)
{
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind(prefix, 0) == 0)
            return line;
    return {};
}

class DataParallel : public ::testing::TestWithParam<std::string> { };

TEST_P(DataParallel, WorldOfOneTrainsAsOneProcess)
{
    const auto device = testDevice();
    if (device.is_cuda() && !cuda::available())
        GTEST_SKIP() << "needs CUDA: the NCCL path runs one rank on cuda:0 (tools/gpu/check.sh)";
    if (g_ladder.empty() || !std::filesystem::exists(g_ladder))
        GTEST_SKIP() << "no ladder CLI (--ladder PATH, or `ladder` beside test_gpu): '" << g_ladder << "'";
    const auto demo = demoCacheDir();
    if (!std::filesystem::exists(demo + "/backbone/config.json"))
        GTEST_SKIP() << "no built-in demo at " << demo
                     << " (`ladder demo`, or LADDER_DEMO_DIR; the kit carries one)";
    const std::string backend = device.is_cuda() ? "nccl" : "gloo";
    const auto& method = GetParam();
    const int steps = device.is_cuda() ? 40 : 12;

    std::string tmp = (std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    tmp += "/ladder-gpu-dp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmp.data()), nullptr) << tmp;
    nlohmann::json spec { { "name", "gpu-dp-" + method }, { "backbone", "demo" },
        { "task", { { "type", "demo" }, { "name", "supersense" } } },
        { "method",
            method == "ladder"
                ? nlohmann::json { { "method", "ladder" }, { "r", 8 }, { "init", "magnitude" } }
                : nlohmann::json { { "method", method } } },
        { "training",
            { { "max_steps", steps }, { "batch_size", 32 }, { "warmup_steps", 5 }, { "eval_every_steps", 0 },
                { "max_source_length", 64 }, { "max_eval_examples", 64 },
                { "learning_rate", method == "ladder" ? 3e-3 : 1e-3 }, { "log_every_steps", 1 } } },
        { "device", device.str() }, { "seed", 0 } };
    const auto specPath = tmp + "/spec.json";
    std::ofstream(specPath) << spec.dump(1);

    // Neither run may inherit a launcher's variables from the caller.
    const std::vector<std::string> clean { "-u", "RANK", "-u", "WORLD_SIZE", "-u", "LOCAL_RANK", "-u",
        "MASTER_ADDR", "-u", "MASTER_PORT", "-u", "TORCHELASTIC_USE_AGENT_STORE", "-u", "SLURM_PROCID", "-u",
        "SLURM_NTASKS", "-u", "SLURM_LOCALID" };
    const auto single = runLadderTrain(clean, specPath, tmp + "/single.sqlite", tmp + "/single");
    const int port = freePort();
    ASSERT_GT(port, 0) << "no free TCP port on 127.0.0.1";
    auto ranked = clean;
    for (const auto& v : { std::string("RANK=0"), std::string("WORLD_SIZE=1"), std::string("LOCAL_RANK=0"),
             std::string("MASTER_ADDR=127.0.0.1"), "MASTER_PORT=" + std::to_string(port),
             std::string("LADDER_DIST_TIMEOUT=120") })
        ranked.push_back(v);
    if (!std::getenv("NCCL_DEBUG"))
        ranked.push_back("NCCL_DEBUG=WARN"); // NCCL's own reason in the log, should it refuse
    const auto dp = runLadderTrain(ranked, specPath, tmp + "/dp.sqlite", tmp + "/dp");

    ASSERT_EQ(single.exitCode, 0) << "one process: " << tail(single.err);
    ASSERT_EQ(dp.exitCode, 0) << "rank 0 of 1: " << tail(dp.err);
    EXPECT_NE(dp.err.find(backend + ", rank 0 of 1"), std::string::npos)
        << "stderr does not name the process group '" << backend << ", rank 0 of 1': " << tail(dp.err);
    EXPECT_EQ(single.err.find("process group"), std::string::npos)
        << "the single-process run joined a group: " << tail(single.err);
    const auto one = readRun(tmp + "/single.sqlite"), ranks = readRun(tmp + "/dp.sqlite");
    ASSERT_TRUE(one.error.empty()) << one.error;
    ASSERT_TRUE(ranks.error.empty()) << ranks.error;
    EXPECT_EQ(one.run.status, RunState::Finished) << one.run.errorMessage;
    EXPECT_EQ(ranks.run.status, RunState::Finished) << ranks.run.errorMessage;
    EXPECT_EQ(ranks.points.size(), static_cast<std::size_t>(steps));
    std::string dpLine;
    for (const auto& l : ranks.logs)
        if (l.message.rfind("data parallel: ", 0) == 0)
            dpLine = l.message;
    EXPECT_NE(dpLine.find("data parallel: " + backend + ", rank 0 of 1"), std::string::npos)
        << "the run's log has no 'data parallel: " << backend << ", rank 0 of 1 ...' line";
    for (const auto& l : one.logs)
        EXPECT_NE(l.message.rfind("data parallel: ", 0), 0u) << "one process logged: " << l.message;
    double megabytes = -1;
    long long buckets = -1;
    std::smatch m;
    if (std::regex_search(dpLine, m, std::regex(R"(all-reduced: ([0-9.]+) MB a step in ([0-9]+) buckets)"))) {
        megabytes = std::stod(m[1]);
        buckets = std::stoll(m[2]);
    }
    EXPECT_GT(megabytes, 0) << dpLine;

    double worst = maxRelativeLossDifference(one.points, ranks.points);
    // Should they differ, is the single process even repeatable here? A second single-process run says
    // whether the difference is the process group's or the device's run-to-run noise (then reported).
    double noise = -1;
    if (!(worst <= 1e-6)) {
        const auto again = runLadderTrain(clean, specPath, tmp + "/again.sqlite", tmp + "/again");
        const auto repeat = readRun(tmp + "/again.sqlite");
        if (again.exitCode == 0 && repeat.error.empty())
            noise = maxRelativeLossDifference(one.points, repeat.points);
    }
    const auto testOne = one.run.figures.testMetric, testRanks = ranks.run.figures.testMetric;
    nlohmann::json r { { "test", "dataparallel" }, { "method", method }, { "device", device.str() },
        { "backend", backend }, { "steps", ranks.points.size() }, { "max_loss_rel_diff", worst },
        { "single_repeat_rel_diff", noise < 0 ? nlohmann::json() : nlohmann::json(noise) },
        { "first_loss",
            one.points.empty() || !one.points.front().loss ? nlohmann::json()
                                                           : nlohmann::json(*one.points.front().loss) },
        { "last_loss",
            one.points.empty() || !one.points.back().loss ? nlohmann::json()
                                                          : nlohmann::json(*one.points.back().loss) },
        { "seconds_per_step_single", secondsPerStep(one.points) },
        { "seconds_per_step_world1", secondsPerStep(ranks.points) },
        { "wall_seconds_single", single.seconds }, { "wall_seconds_world1", dp.seconds },
        { "allreduce_mb_per_step", megabytes }, { "buckets", buckets },
        { "peak_allocated_single",
            one.run.figures.peakAllocatedBytes ? nlohmann::json(*one.run.figures.peakAllocatedBytes)
                                               : nlohmann::json() },
        { "peak_allocated_world1",
            ranks.run.figures.peakAllocatedBytes ? nlohmann::json(*ranks.run.figures.peakAllocatedBytes)
                                                 : nlohmann::json() },
        { "test_metric_single", testOne ? nlohmann::json(*testOne) : nlohmann::json() },
        { "test_metric_world1", testRanks ? nlohmann::json(*testRanks) : nlohmann::json() },
        { "process_group", lineWith(dp.err, "ladder: process group: ") } };
    std::printf("GPU-RESULT %s\n", r.dump().c_str());
    EXPECT_LE(worst, 1e-6) << "stored losses of rank 0 of 1 against one process (a second single-process run "
                           << "differs from the first by " << noise << ")";
    EXPECT_EQ(testOne.has_value(), testRanks.has_value());
    if (testOne && testRanks) {
        EXPECT_EQ(*testOne, *testRanks) << "test metric";
    }
    if (HasFailure())
        std::printf("kept for a look: %s\n", tmp.c_str());
    else
        demofs::removeTree(tmp); // not std::filesystem::remove_all (core/data/DemoTasks.h says why)
}

INSTANTIATE_TEST_SUITE_P(
    WorldOne, DataParallel, ::testing::Values("full", "ladder"), [](const auto& info) { return info.param; });

} // namespace

int main(int argc, char** argv)
{
    installCpuMemoryTracker(); // before any tensor, as the CLI does, so the CPU meter counts everything
    ::testing::InitGoogleTest(&argc, argv);
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--ladder")
            g_ladder = argv[i + 1];
    if (g_ladder.empty()) { // the kit puts both programs in one folder; a build puts ladder in ../bin
        std::array<char, 4096> self {};
        const auto n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
        const std::string here = n > 0 ? std::string(self.data(), static_cast<std::size_t>(n)) : "";
        const auto folder = here.substr(0, here.rfind('/'));
        for (const auto& candidate : { folder + "/ladder", folder + "/../bin/ladder" })
            if (!here.empty() && std::filesystem::exists(candidate)) {
                g_ladder = candidate;
                break;
            }
    }
    at::globalContext().setAllowTF32CuBLAS(false); // fp32 means fp32 here (LibTorch's default, made explicit)
    if (!dryRun() && !cuda::available()) {
        std::printf("SKIP: no CUDA device: the gpu tests run on a machine with one (tools/gpu/check.sh); "
                    "LADDER_GPU_TEST_DEVICE=cpu runs them on the CPU as the kit's dry run does\n");
        return 77;
    }
    return RUN_ALL_TESTS();
}
