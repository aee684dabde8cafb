#include "dist/DistributedGroup.h"

#include <csignal>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "dist/Backends.h"
#include "util/Error.h"

namespace ladder {

struct InProcessRendezvous::Impl {
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::HashStore>();
};

InProcessRendezvous::InProcessRendezvous()
    : m_impl(std::make_unique<Impl>())
{
}

InProcessRendezvous::~InProcessRendezvous() = default;

struct DistributedGroup::Impl {
    DistributedEnv env;
    std::string backendName;
    c10::Device device { at::kCPU };
    std::chrono::milliseconds timeout { DistributedGroup::kDefaultTimeout };
    std::string rendezvous;
    c10::intrusive_ptr<c10d::Store> store; // the gather's keys (the backend has its own prefix)
    c10::intrusive_ptr<c10d::Backend> backend;
    std::int64_t gathers = 0;
    bool down = false;
};

namespace {

std::string firstLine(const std::string& s)
{
    const auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

class WorkHandle : public CollectiveHandle {
public:
    WorkHandle(c10::intrusive_ptr<c10d::Work> work, std::string what)
        : m_work(std::move(work))
        , m_what(std::move(what))
    {
    }
    void wait() override
    {
        try {
            m_work->wait();
        } catch (const std::exception& e) {
            throw CollectiveError(m_what + ": " + firstLine(e.what()));
        }
    }

private:
    c10::intrusive_ptr<c10d::Work> m_work;
    std::string m_what;
};

bool isLoopback(const std::string& host)
{
    return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::string rankLabel(const DistributedEnv& env)
{
    return "rank " + std::to_string(env.rank) + " of " + std::to_string(env.worldSize);
}

} // namespace

DistributedGroup::DistributedGroup(std::unique_ptr<Impl> impl)
    : m_impl(std::move(impl))
{
}

DistributedGroup::~DistributedGroup()
{
    try {
        shutdown();
    } catch (...) { // a destructor never throws; shutdown() was the place to hear about it
    }
}

std::shared_ptr<DistributedGroup> DistributedGroup::join(const DistributedEnv& env, const Options& options)
{
    // A peer that dies closes its sockets; the next send to it must fail as an error the collective reports
    // (Gloo: "Connection closed by peer"), not raise SIGPIPE, whose default action would kill this rank
    // before it can agree on the failure and record it. Python, which torchrun usually runs, ignores SIGPIPE
    // too.
    std::signal(SIGPIPE, SIG_IGN);
    auto impl = std::make_unique<Impl>();
    impl->env = env;
    impl->timeout = options.timeout;
    impl->rendezvous = env.masterAddr + ":" + std::to_string(env.masterPort);
    const auto where = "joining the process group (" + rankLabel(env) + ", rendezvous " + impl->rendezvous
        + (env.agentStore ? ", torchrun's store" : "") + ")";
    c10::intrusive_ptr<c10d::Store> store;
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<std::uint16_t>(env.masterPort);
        so.isServer = env.rank == 0 && !env.agentStore;
        if (!env.agentStore)
            so.numWorkers = static_cast<std::size_t>(env.worldSize);
        so.waitWorkers = !env.agentStore;
        so.timeout = options.timeout;
        so.multiTenant = true;
        store = c10::make_intrusive<c10d::TCPStore>(env.masterAddr, so);
    } catch (const std::exception& e) {
        throw Error(where + ": the TCPStore: " + firstLine(e.what()));
    }
    try {
        auto backendStore = c10::make_intrusive<c10d::PrefixStore>("ladder/pg", store);
        if (options.deviceType == "cuda") {
            impl->backend = dist::makeNcclBackend(
                backendStore, env.rank, env.worldSize, env.localRank, options.timeout);
            impl->backendName = "nccl";
            impl->device = c10::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.localRank));
        } else if (options.deviceType == "cpu") {
            impl->backend = dist::makeGlooBackend(backendStore, env.rank, env.worldSize, options.timeout,
                isLoopback(env.masterAddr) ? "127.0.0.1" : "");
            impl->backendName = "gloo";
        } else {
            throw Error("device type " + options.deviceType + ": expected cpu (Gloo) or cuda (NCCL)");
        }
        impl->store = c10::make_intrusive<c10d::PrefixStore>("ladder/gather", store);
    } catch (const Error& e) {
        throw Error(where + ": " + e.what());
    } catch (const std::exception& e) {
        throw Error(where + ": " + firstLine(e.what()));
    }
    std::shared_ptr<DistributedGroup> group(new DistributedGroup(std::move(impl)));
    // Every rank is there: the first collective counts them.
    auto one = at::ones({ 1 }, at::TensorOptions().dtype(at::kFloat).device(group->device()));
    try {
        group->allreduceSum(one);
    } catch (const std::exception& e) {
        throw Error(where + ": the first all-reduce: " + firstLine(e.what()));
    }
    const auto count = one.item<float>();
    if (count != static_cast<float>(env.worldSize))
        throw Error(where + ": the first all-reduce counted " + std::to_string(count) + " ranks");
    return group;
}

std::shared_ptr<DistributedGroup> DistributedGroup::joinInProcess(
    InProcessRendezvous& rendezvous, int rank, int world, std::chrono::milliseconds timeout)
{
    auto impl = std::make_unique<Impl>();
    impl->env.rank = rank;
    impl->env.worldSize = world;
    impl->env.localRank = rank;
    impl->env.launcher = "in-process";
    impl->timeout = timeout;
    impl->rendezvous = "in-process HashStore";
    auto& store = rendezvous.impl().store;
    store->setTimeout(timeout);
    impl->backend = dist::makeGlooBackend(
        c10::make_intrusive<c10d::PrefixStore>("ladder/pg", store), rank, world, timeout, "127.0.0.1");
    impl->backendName = "gloo";
    impl->store = c10::make_intrusive<c10d::PrefixStore>("ladder/gather", store);
    return std::shared_ptr<DistributedGroup>(new DistributedGroup(std::move(impl)));
}

int DistributedGroup::rank() const
{
    return m_impl->env.rank;
}

int DistributedGroup::worldSize() const
{
    return m_impl->env.worldSize;
}

int DistributedGroup::localRank() const
{
    return m_impl->env.localRank;
}

const std::string& DistributedGroup::backendName() const
{
    return m_impl->backendName;
}

c10::Device DistributedGroup::device() const
{
    return m_impl->device;
}

std::chrono::milliseconds DistributedGroup::timeout() const
{
    return m_impl->timeout;
}

std::string DistributedGroup::describe() const
{
    const auto& e = m_impl->env;
    return m_impl->backendName + ", " + rankLabel(e) + (e.launcher.empty() ? "" : " (" + e.launcher + ")")
        + ", rendezvous " + m_impl->rendezvous + ", collective timeout "
        + std::to_string(m_impl->timeout.count() / 1000) + " s";
}

void DistributedGroup::allreduceSum(at::Tensor& tensor)
{
    if (m_impl->device.is_cuda() && !tensor.is_cuda()) {
        auto onDevice = tensor.to(m_impl->device);
        allreduceSum(onDevice);
        tensor.copy_(onDevice);
        return;
    }
    const bool contiguous = tensor.is_contiguous();
    auto t = contiguous ? tensor : tensor.contiguous();
    allreduceSumAsync(t)->wait();
    if (!contiguous)
        tensor.copy_(t);
}

std::unique_ptr<CollectiveHandle> DistributedGroup::allreduceSumAsync(at::Tensor tensor)
{
    if (m_impl->down)
        throw Error("all-reduce: the process group is shut down");
    std::vector<at::Tensor> tensors { std::move(tensor) };
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = m_impl->timeout;
    try {
        return std::make_unique<WorkHandle>(m_impl->backend->allreduce(tensors, options),
            "all-reduce (" + m_impl->backendName + ", " + rankLabel(m_impl->env) + ")");
    } catch (const std::exception& e) {
        throw CollectiveError("all-reduce (" + m_impl->backendName + ", " + rankLabel(m_impl->env)
            + "): " + firstLine(e.what()));
    }
}

void DistributedGroup::broadcast(at::Tensor& tensor, int root)
{
    if (m_impl->device.is_cuda() && !tensor.is_cuda()) {
        auto onDevice = tensor.to(m_impl->device);
        broadcast(onDevice, root);
        tensor.copy_(onDevice);
        return;
    }
    const bool contiguous = tensor.is_contiguous();
    std::vector<at::Tensor> tensors { contiguous ? tensor : tensor.contiguous() };
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = m_impl->timeout;
    WorkHandle(m_impl->backend->broadcast(tensors, options), "broadcast from rank " + std::to_string(root))
        .wait();
    if (!contiguous)
        tensor.copy_(tensors[0]);
}

std::vector<std::string> DistributedGroup::allgatherText(const std::string& mine)
{
    auto& store = *m_impl->store;
    const auto seq = m_impl->gathers++;
    const auto key = [](std::int64_t s, int r) { return std::to_string(s) + "/" + std::to_string(r); };
    const auto rank = m_impl->env.rank;
    try {
        store.set(key(seq, rank), std::vector<std::uint8_t>(mine.begin(), mine.end()));
        std::vector<std::string> all;
        for (int r = 0; r < m_impl->env.worldSize; ++r) {
            const auto v = store.get(key(seq, r)); // waits up to the store's timeout
            all.emplace_back(v.begin(), v.end());
        }
        // The gather before the last is read by everyone (each rank reached this one after finishing it).
        if (seq >= 2)
            store.deleteKey(key(seq - 2, rank));
        return all;
    } catch (const std::exception& e) {
        throw CollectiveError("gathering from every rank (" + rankLabel(m_impl->env)
            + ", through the store): " + firstLine(e.what()));
    }
}

void DistributedGroup::barrier()
{
    c10d::BarrierOptions options;
    options.timeout = m_impl->timeout;
    if (m_impl->device.is_cuda())
        options.device_ids = { static_cast<std::int64_t>(m_impl->env.localRank) };
    WorkHandle(m_impl->backend->barrier(options), "barrier (" + rankLabel(m_impl->env) + ")").wait();
}

void DistributedGroup::shutdown()
{
    if (m_impl->down)
        return;
    m_impl->down = true;
    if (m_impl->backend)
        m_impl->backend->shutdown();
    m_impl->backend.reset();
    m_impl->store.reset();
}

} // namespace ladder
