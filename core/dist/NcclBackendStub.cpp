// CPU-only build: no NCCL. A CUDA run cannot start here anyway (the device check comes first).
#include "dist/Backends.h"

#include "util/Error.h"

namespace ladder::dist {

bool ncclCompiled()
{
    return false;
}

c10::intrusive_ptr<c10d::Backend> makeNcclBackend(
    const c10::intrusive_ptr<c10d::Store>&, int, int, int, std::chrono::milliseconds)
{
    throw Error("NCCL: this build of LadderBench has no CUDA (configure with -DLADDER_WITH_CUDA=ON)");
}

} // namespace ladder::dist
