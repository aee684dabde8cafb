#pragma once

// Where a process of a data-parallel run learns its place: from the variables torchrun sets (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE), or from those srun sets
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST, SLURM_JOB_ID). `ladder train --nproc N`
// sets torchrun's for its children. docs/SCALING.md.
#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace ladder {

struct DistributedEnv {
    int rank = 0;
    int worldSize = 1;
    int localRank = 0; // the GPU a CUDA rank binds (cuda:LOCAL_RANK)
    std::string masterAddr = "127.0.0.1";
    int masterPort = 29500;
    // Who set the variables: "torchrun", "slurm" or "ladder --nproc".
    std::string launcher;
    // torchrun's agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT: every rank connects as a
    // client (TORCHELASTIC_USE_AGENT_STORE=True), as torch.distributed's env:// rendezvous does.
    bool agentStore = false;
};

using EnvLookup = std::function<const char*(const char*)>;

// The process's place in a data-parallel run, or nothing when it was not launched as a rank:
// - torchrun (or `--nproc`): RANK and WORLD_SIZE are set; LOCAL_RANK defaults to RANK, MASTER_ADDR to
//   127.0.0.1, MASTER_PORT to 29500. Any world size joins a group, 1 included.
// - srun: SLURM_PROCID and SLURM_NTASKS with SLURM_NTASKS > 1 (a one-task step, such as a job array's
//   sweep task, is a plain run); the master is the first host of SLURM_JOB_NODELIST and the port
//   MASTER_PORT, else 20000 + SLURM_JOB_ID % 20000 (one port per job on shared nodes).
// A variable that is present but malformed (RANK=x, RANK >= WORLD_SIZE, a port out of range) is an Error
// naming it.
std::optional<DistributedEnv> distributedEnvFrom(const EnvLookup& lookup);
std::optional<DistributedEnv> distributedEnvFromProcess(); // std::getenv

// The first host of a Slurm node list: "gpu[03-05,07],cpu1" -> "gpu03", "node1,node2" -> "node1".
std::string firstSlurmHost(const std::string& nodelist);

// The collective timeout: LADDER_DIST_TIMEOUT (seconds), else `fallback`. A value that is not a positive
// number is an Error naming the variable.
std::chrono::milliseconds collectiveTimeoutFrom(const EnvLookup& lookup, std::chrono::milliseconds fallback);

} // namespace ladder
