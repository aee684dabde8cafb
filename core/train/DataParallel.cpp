#include "train/DataParallel.h"

#include <ATen/ATen.h>

#include "dist/DistributedGroup.h"
#include "util/Error.h"

namespace ladder {

DataParallel::DataParallel(std::shared_ptr<DistributedGroup> group)
    : m_group(std::move(group))
    , m_rank(m_group->rank())
    , m_world(m_group->worldSize())
{
}

void DataParallel::broadcastFromRankZero(const std::vector<at::Tensor>& tensors)
{
    at::NoGradGuard noGrad;
    for (auto t : tensors)
        m_group->broadcast(t, 0);
}

DataParallel::Agreement DataParallel::agree(
    double lossSum, std::int64_t labelTokens, std::int64_t tokens, bool cancel, const std::string& failure)
{
    constexpr std::int64_t kFixed = 4;
    auto v = at::zeros({ kFixed + m_world }, at::TensorOptions().dtype(at::kDouble));
    auto* d = v.data_ptr<double>();
    d[0] = lossSum;
    d[1] = static_cast<double>(labelTokens);
    d[2] = static_cast<double>(tokens);
    d[3] = cancel ? 1.0 : 0.0;
    d[kFixed + m_rank] = failure.empty() ? 0.0 : 1.0;
    m_group->allreduceSum(v);
    Agreement a;
    d = v.data_ptr<double>();
    a.lossSum = d[0];
    a.labelTokens = d[1];
    a.tokens = d[2];
    a.cancel = d[3] > 0;
    for (int r = 0; r < m_world; ++r)
        if (d[kFixed + r] > 0)
            a.failedRanks.push_back(r);
    if (!a.failedRanks.empty()) {
        const auto messages = m_group->allgatherText(failure);
        for (const auto r : a.failedRanks)
            a.failure += (a.failure.empty() ? "" : "; ") + ("rank " + std::to_string(r) + ": ")
                + messages[static_cast<std::size_t>(r)];
    }
    return a;
}

std::vector<std::string> DataParallel::gatherShares(const std::vector<std::string>& mine, std::size_t total)
{
    // Length-prefixed ("5:hello3:abc"): predictions are bytes, not always valid UTF-8.
    std::string packed;
    for (const auto& s : mine)
        packed += std::to_string(s.size()) + ":" + s;
    const auto texts = m_group->allgatherText(packed);
    std::vector<std::string> all(total);
    for (int r = 0; r < m_world; ++r) {
        const auto& text = texts[static_cast<std::size_t>(r)];
        std::size_t pos = 0;
        for (auto i = static_cast<std::size_t>(r); i < total; i += static_cast<std::size_t>(m_world)) {
            const auto colon = text.find(':', pos);
            std::size_t length = 0;
            if (colon == std::string::npos
                || (length = std::stoul(text.substr(pos, colon - pos))) > text.size() - colon - 1)
                throw Error("gathering predictions: rank " + std::to_string(r)
                    + " sent fewer than its share of " + std::to_string(total));
            all[i] = text.substr(colon + 1, length);
            pos = colon + 1 + length;
        }
    }
    return all;
}

} // namespace ladder
