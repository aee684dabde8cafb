#pragma once

// The c10d backends, each built in a file of its own: GlooBackend.cpp needs gloo's headers (Debian's
// libgloo-dev: the wheel ships ProcessGroupGloo.hpp without them), NcclBackendReal.cpp CUDA's and NCCL's
// (a CUDA build; NcclBackendStub.cpp otherwise). Only core/dist includes this header.
#include <chrono>
#include <string>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace ladder::dist {

// ProcessGroupGloo over the store; its device binds `hostOrEmpty` (an address), the interface named by
// GLOO_SOCKET_IFNAME, or c10d's default (this machine's hostname, falling back to loopback).
c10::intrusive_ptr<c10d::Backend> makeGlooBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
    int world, std::chrono::milliseconds timeout, const std::string& hostOrEmpty);

// Whether this build has NCCL (a CUDA build).
bool ncclCompiled();
// Binds cuda:localRank (c10::cuda::set_device), then ProcessGroupNCCL over the store. Throws Error in a
// build without CUDA.
c10::intrusive_ptr<c10d::Backend> makeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
    int world, int localRank, std::chrono::milliseconds timeout);

} // namespace ladder::dist
