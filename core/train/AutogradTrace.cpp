#include "train/AutogradTrace.h"

#include <algorithm>

#include "util/Error.h"

namespace ladder {

TraceTensor AutogradTrace::parameter(
    std::int64_t numel, std::int64_t elemBytes, bool trainable, const std::string& name)
{
    TraceTensor t;
    t.value = static_cast<int>(m_valueStorage.size());
    m_valueStorage.push_back(-1);
    m_codeHeld.push_back(0);
    t.param = static_cast<int>(m_params.size());
    m_params.push_back({ name, numel, elemBytes, trainable });
    m_paramHasGrad.push_back(0);
    t.bytes = numel * elemBytes;
    t.elemBytes = elemBytes;
    t.requiresGrad = trainable;
    return t;
}

void AutogradTrace::setTrainable(TraceTensor& t, bool on)
{
    if (t.param < 0)
        throw Error("memory trace: setTrainable on a tensor that is not a parameter");
    m_params.at(static_cast<std::size_t>(t.param)).trainable = on;
    t.requiresGrad = on;
}

void AutogradTrace::setStoredBytes(const TraceTensor& t, const std::vector<std::int64_t>& parts)
{
    if (t.param < 0)
        throw Error("memory trace: setStoredBytes on a tensor that is not a parameter");
    auto& p = m_params.at(static_cast<std::size_t>(t.param));
    p.storedBytes = 0;
    p.storedAllocation = 0;
    for (auto b : parts) {
        p.storedBytes += b;
        p.storedAllocation += allocationBytes(b);
    }
}

void AutogradTrace::setBackwardTransient(const TraceTensor& out, std::int64_t before, std::int64_t during)
{
    for (auto n = m_nodes.rbegin(); n != m_nodes.rend(); ++n)
        if (n->outValue == out.value) {
            n->before = before;
            n->during = during;
            return;
        }
}

TraceTensor AutogradTrace::data(std::int64_t bytes)
{
    TraceTensor t;
    t.storage = newStorage(bytes, true);
    t.value = static_cast<int>(m_valueStorage.size());
    m_valueStorage.push_back(t.storage);
    m_codeHeld.push_back(1);
    t.bytes = bytes;
    t.elemBytes = 8;
    return t;
}

void AutogradTrace::presetParamGrads()
{
    for (std::size_t i = 0; i < m_params.size(); ++i) {
        if (!m_params[i].trainable || m_paramHasGrad[i])
            continue;
        m_paramHasGrad[i] = 1;
        const auto bytes = allocationBytes(m_params[i].numel * m_params[i].elemBytes);
        m_paramGrads += bytes;
        add(bytes, "static");
    }
}

void AutogradTrace::addStatic(std::int64_t bytes)
{
    add(bytes, "static");
}

int AutogradTrace::newStorage(std::int64_t bytes, bool isData)
{
    Storage s;
    s.bytes = allocationBytes(bytes);
    s.codeRefs = 1;
    s.isData = isData;
    s.part = m_part;
    m_storages.push_back(s);
    if (isData)
        m_data += s.bytes;
    add(s.bytes, m_phase.c_str());
    return static_cast<int>(m_storages.size()) - 1;
}

void AutogradTrace::add(std::int64_t bytes, const char* phase)
{
    m_live += bytes;
    if (m_live > m_peak) {
        m_peak = m_live;
        m_peakWhere = std::string(phase) + (m_part.empty() ? "" : ": " + m_part);
        m_peakSaved = m_saved;
        m_peakParamGrads = m_paramGrads;
        m_peakData = m_data;
    }
}

void AutogradTrace::unref(int storage, bool saved)
{
    auto& s = m_storages.at(static_cast<std::size_t>(storage));
    if (saved) {
        if (--s.savedRefs == 0 && !s.isData)
            m_saved -= s.bytes;
    } else {
        --s.codeRefs;
    }
    if (s.alive && s.codeRefs == 0 && s.savedRefs == 0) {
        s.alive = false;
        if (s.isData)
            m_data -= s.bytes;
        sub(s.bytes);
    }
}

TraceTensor AutogradTrace::compute(std::int64_t numel, std::int64_t elemBytes,
    const std::vector<TraceTensor>& inputs, const std::vector<TraceTensor>& saved, Grad grad,
    std::int64_t scratch, bool saveOutput)
{
    TraceTensor t;
    t.bytes = numel * elemBytes;
    t.elemBytes = elemBytes;
    t.storage = newStorage(t.bytes, false);
    t.value = static_cast<int>(m_valueStorage.size());
    m_valueStorage.push_back(t.storage);
    m_codeHeld.push_back(1);
    bool record = false;
    if (m_gradMode)
        for (const auto& in : inputs)
            if (in.defined() && in.requiresGrad)
                record = true;
    if (!record)
        return t;
    t.requiresGrad = true;
    Node node;
    node.outValue = t.value;
    node.outBytes = t.bytes;
    node.scratch = scratch;
    node.part = m_part;
    for (const auto& in : inputs)
        if (in.defined() && in.requiresGrad)
            node.inputs.push_back({ in.value, in.param, in.bytes, grad });
    auto all = saved;
    if (saveOutput)
        all.push_back(t);
    for (const auto& s : all) {
        if (!s.defined() || s.storage < 0)
            continue; // parameters are static
        auto& st = m_storages.at(static_cast<std::size_t>(s.storage));
        if (std::find(node.saved.begin(), node.saved.end(), s.storage) != node.saved.end())
            continue;
        if (st.savedRefs++ == 0 && !st.isData)
            m_saved += st.bytes;
        node.saved.push_back(s.storage);
    }
    m_nodes.push_back(std::move(node));
    return t;
}

TraceTensor AutogradTrace::view(const TraceTensor& t)
{
    if (t.storage < 0)
        throw Error("memory trace: view of a parameter");
    TraceTensor v = t;
    v.value = static_cast<int>(m_valueStorage.size());
    m_valueStorage.push_back(t.storage);
    m_codeHeld.push_back(1);
    ++m_storages.at(static_cast<std::size_t>(t.storage)).codeRefs;
    v.requiresGrad = m_gradMode && t.requiresGrad;
    if (v.requiresGrad) {
        Node node;
        node.outValue = v.value;
        node.outBytes = v.bytes;
        node.scratch = 0;
        node.part = m_part;
        node.inputs.push_back({ t.value, t.param, t.bytes, Grad::Same });
        m_nodes.push_back(std::move(node));
    }
    return v;
}

TraceTensor AutogradTrace::narrow(const TraceTensor& t, std::int64_t numel)
{
    // A view node whose input is larger than its output: Grad::Same then allocates the input's size.
    auto v = view(t);
    v.bytes = numel * t.elemBytes;
    if (v.requiresGrad)
        m_nodes.back().outBytes = v.bytes;
    return v;
}

void AutogradTrace::release(const TraceTensor& t)
{
    if (!t.defined() || t.storage < 0)
        return;
    auto& held = m_codeHeld.at(static_cast<std::size_t>(t.value));
    if (!held)
        return;
    held = 0;
    unref(t.storage, false);
}

void AutogradTrace::releaseAllBut(const std::vector<TraceTensor>& keep)
{
    for (std::size_t v = 0; v < m_codeHeld.size(); ++v) {
        if (!m_codeHeld[v] || m_valueStorage[v] < 0)
            continue;
        const auto storage = m_valueStorage[v];
        bool kept = m_storages[static_cast<std::size_t>(storage)].isData;
        for (const auto& k : keep)
            kept = kept || k.value == static_cast<int>(v);
        if (kept)
            continue;
        m_codeHeld[v] = 0;
        unref(storage, false);
    }
}

std::int64_t AutogradTrace::savedBytes() const
{
    return m_saved;
}

std::vector<std::pair<std::string, std::int64_t>> AutogradTrace::savedByPart() const
{
    std::vector<std::pair<std::string, std::int64_t>> out;
    for (const auto& s : m_storages) {
        if (!s.alive || s.savedRefs == 0 || s.isData)
            continue;
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == s.part; });
        if (it == out.end())
            out.emplace_back(s.part, s.bytes);
        else
            it->second += s.bytes;
    }
    return out;
}

int AutogradTrace::newBuffer(std::int64_t requested)
{
    const auto bytes = allocationBytes(requested);
    m_buffers.push_back({ bytes, 1 });
    add(bytes, m_phase.c_str());
    return static_cast<int>(m_buffers.size()) - 1;
}

void AutogradTrace::dropBuffer(int b)
{
    if (--m_buffers[static_cast<std::size_t>(b)].refs == 0)
        sub(m_buffers[static_cast<std::size_t>(b)].bytes);
}

void AutogradTrace::accumulate(int value, int g, std::int64_t bytes)
{
    if (m_valueGrad.size() < m_valueStorage.size())
        m_valueGrad.resize(m_valueStorage.size(), -1);
    auto& slot = m_valueGrad[static_cast<std::size_t>(value)];
    if (slot < 0) {
        slot = g;
    } else if (m_buffers[static_cast<std::size_t>(slot)].refs == 1) {
        dropBuffer(g); // summed in place
    } else {
        const int sum = newBuffer(bytes);
        dropBuffer(slot);
        dropBuffer(g);
        slot = sum;
    }
}

void AutogradTrace::backward(const TraceTensor& loss)
{
    m_phase = "backward";
    m_buffers.clear();
    m_valueGrad.assign(m_valueStorage.size(), -1);
    if (!loss.requiresGrad)
        throw Error("memory trace: the loss does not require grad (nothing trains)");
    m_valueGrad.at(static_cast<std::size_t>(loss.value)) = newBuffer(loss.bytes);
    runNodes(0, m_nodes.size());
    m_nodes.clear();
    m_part.clear();
}

void AutogradTrace::runNodes(std::size_t begin, std::size_t end)
{
    for (std::size_t index = end; index-- > begin;) {
        if (m_valueGrad.size() < m_valueStorage.size())
            m_valueGrad.resize(m_valueStorage.size(), -1);
        const int b = m_valueGrad[static_cast<std::size_t>(m_nodes[index].outValue)];
        if (b >= 0) {
            m_part = m_nodes[index].part;
            if (m_nodes[index].replay) {
                replayNode(index, b);
            } else {
                const auto& n = m_nodes[index];
                if (n.before > 0)
                    transient(n.before);
                if (n.during > 0)
                    add(allocationBytes(n.during), m_phase.c_str());
                for (const auto& in : n.inputs) {
                    int g;
                    if ((in.grad == Grad::Same && in.bytes == n.outBytes) || in.grad == Grad::Part) {
                        g = b;
                        ++m_buffers[static_cast<std::size_t>(b)].refs;
                    } else {
                        g = newBuffer(in.bytes);
                    }
                    if (in.param >= 0) {
                        auto& has = m_paramHasGrad[static_cast<std::size_t>(in.param)];
                        if (!has) {
                            // AccumulateGrad steals a fresh buffer; a shared one is cloned.
                            has = 1;
                            if (m_buffers[static_cast<std::size_t>(g)].refs == 1) {
                                m_buffers[static_cast<std::size_t>(g)].refs = 0; // now .grad's, stays live
                            } else {
                                add(allocationBytes(in.bytes), m_phase.c_str());
                                dropBuffer(g);
                            }
                            m_paramGrads += allocationBytes(in.bytes);
                        } else {
                            // A later contribution to a parameter used by several nodes (the tied embedding:
                            // LM head, decoder and encoder embeddings) is summed out of place, old + new,
                            // before the old buffer goes: measured, one extra buffer of the parameter.
                            if (!m_inPlaceAccumulation) {
                                add(allocationBytes(in.bytes), m_phase.c_str());
                                sub(allocationBytes(in.bytes));
                            }
                            dropBuffer(g);
                        }
                        continue;
                    }
                    if (m_leafValues.count(in.value) && m_valueGrad[static_cast<std::size_t>(in.value)] < 0
                        && m_buffers[static_cast<std::size_t>(g)].refs > 1) {
                        // AccumulateGrad into a replay's leaf clones a gradient it shares.
                        const int copy = newBuffer(in.bytes);
                        dropBuffer(g);
                        g = copy;
                    }
                    accumulate(in.value, g, in.bytes);
                }
                if (n.during > 0)
                    sub(allocationBytes(n.during));
                if (n.scratch > 0) {
                    add(allocationBytes(n.scratch), m_phase.c_str());
                    sub(allocationBytes(n.scratch));
                }
            }
            dropBuffer(b);
            m_valueGrad[static_cast<std::size_t>(m_nodes[index].outValue)] = -1;
        }
        auto saved = std::move(m_nodes[index].saved);
        m_nodes[index].saved.clear();
        for (auto st : saved)
            unref(st, true);
    }
}

void AutogradTrace::replayNode(std::size_t index, int gradBuffer)
{
    // m_nodes grows during the replay: copy what the node holds first.
    const auto replay = m_nodes[index].replay;
    const auto part = m_nodes[index].part;
    const auto inputs = m_nodes[index].replayInputs;
    // Detached leaves of the inputs: no allocation, no node.
    const auto firstValue = m_valueStorage.size();
    std::vector<TraceTensor> leaves;
    for (const auto& in : inputs) {
        if (!in.defined()) {
            leaves.emplace_back();
            continue;
        }
        TraceTensor leaf = in;
        leaf.value = static_cast<int>(m_valueStorage.size());
        m_leafValues.insert(leaf.value);
        m_valueStorage.push_back(in.storage);
        m_codeHeld.push_back(in.storage >= 0 ? 1 : 0);
        if (in.storage >= 0)
            ++m_storages.at(static_cast<std::size_t>(in.storage)).codeRefs;
        leaves.push_back(leaf);
    }
    const auto firstNode = m_nodes.size();
    const bool gradMode = m_gradMode;
    m_gradMode = true;
    ++m_replayDepth;
    const auto out = (*replay)(leaves);
    --m_replayDepth;
    m_gradMode = gradMode;
    m_part = part;
    const auto lastNode = m_nodes.size();
    if (m_valueGrad.size() < m_valueStorage.size())
        m_valueGrad.resize(m_valueStorage.size(), -1);
    if (out.requiresGrad) {
        // The reentrant backward from the recomputed output with the node's incoming gradient (still the
        // outer engine's: one more reference).
        ++m_buffers[static_cast<std::size_t>(gradBuffer)].refs;
        m_valueGrad[static_cast<std::size_t>(out.value)] = gradBuffer;
        runNodes(firstNode, lastNode);
        m_part = part;
    }
    m_nodes.resize(firstNode);
    // The leaves' gradients go to the inputs, as the node's outputs.
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (!inputs[i].defined())
            continue;
        auto& g = m_valueGrad[static_cast<std::size_t>(leaves[i].value)];
        if (g < 0)
            continue;
        const int buffer = g;
        g = -1;
        if (inputs[i].requiresGrad && inputs[i].param < 0)
            accumulate(inputs[i].value, buffer, inputs[i].bytes);
        else
            dropBuffer(buffer);
    }
    // Everything the replay made and still holds (its output, the leaves) goes.
    for (auto v = firstValue; v < m_codeHeld.size(); ++v) {
        if (!m_codeHeld[v] || m_valueStorage[v] < 0)
            continue;
        m_codeHeld[v] = 0;
        unref(m_valueStorage[v], false);
    }
}

TraceTensor AutogradTrace::checkpoint(const std::vector<TraceTensor>& inputs, const Replay& fn)
{
    if (!m_gradMode)
        return fn(inputs);
    m_gradMode = false;
    auto out = fn(inputs);
    m_gradMode = true;
    if (!out.defined() || out.storage < 0)
        throw Error("memory trace: a checkpointed unit must return a new tensor");
    out.requiresGrad = true;
    Node node;
    node.outValue = out.value;
    node.outBytes = out.bytes;
    node.scratch = 0;
    node.part = m_part;
    for (const auto& in : inputs) {
        if (!in.defined())
            continue;
        if (in.requiresGrad)
            node.inputs.push_back({ in.value, in.param, in.bytes, Grad::New });
        if (in.storage < 0)
            continue;
        if (std::find(node.saved.begin(), node.saved.end(), in.storage) != node.saved.end())
            continue;
        auto& st = m_storages.at(static_cast<std::size_t>(in.storage));
        if (st.savedRefs++ == 0 && !st.isData)
            m_saved += st.bytes;
        node.saved.push_back(in.storage);
    }
    node.replay = std::make_shared<Replay>(fn);
    node.replayInputs = inputs;
    m_nodes.push_back(std::move(node));
    return out;
}

void AutogradTrace::optimizerStep(bool adamw)
{
    m_phase = "optimizer step";
    m_part.clear();
    if (!adamw)
        return;
    std::int64_t largest = 0;
    for (const auto& p : m_params)
        if (p.trainable)
            largest = std::max(largest, p.numel * p.elemBytes);
    // denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps): two temporaries of the parameter.
    add(2 * allocationBytes(largest), m_phase.c_str());
    sub(2 * allocationBytes(largest));
}

} // namespace ladder
