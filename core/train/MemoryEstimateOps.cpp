// The memory estimator's forward replay, op by op, in the order of T5Model.cpp, Baselines.cpp, Ladder.cpp and
// LadderSideNetwork.cpp, each op with what its autograd node saves. See MemoryEstimateReplay.h.
#include <algorithm>

#include "model/QuantizedWeight.h"
#include "train/MemoryEstimateReplay.h"
#include "util/Error.h"

namespace ladder::estimate_detail {

TraceTensor Estimator::product(
    const TraceTensor& x, const TraceTensor& w, const TraceTensor& b, std::int64_t in, std::int64_t out)
{
    if (w.param >= 0 && m_quant.count(w.param))
        return quantizedProduct(x, w, b, m_quant.at(w.param));
    // at::linear -> mm/addmm on the flattened input.
    const auto rows = x.numel() / in;
    const auto xc = lowp(x);
    const auto wc = lowpParam(w);
    const auto bc = lowpParam(b);
    const auto y = compute(rows * out, productElem(), { xc, wc, bc }, { ifGrad(wc, xc), ifGrad(xc, wc) });
    releaseCast(xc, x);
    releaseCast(wc, w);
    releaseCast(bc, b);
    return y;
}

TraceTensor Estimator::quantizedProduct(
    const TraceTensor& x, const TraceTensor& w, const TraceTensor& b, const QuantP& q)
{
    // QuantizedWeight::matmul (model/QuantizedWeight.h lists these allocations). D: the compute dtype.
    const std::int64_t d = productElem();
    const auto m = x.numel() / q.cols;
    const auto g = q.groups();
    const bool int4 = q.dtype == "int4", int8 = q.dtype == "int8";
    const std::int64_t chunkElements = QuantizedWeight::kDequantChunkElements;
    const bool oneChunk = q.rows * q.cols <= chunkElements;
    const auto r = oneChunk ? q.rows : std::max<std::int64_t>(1, chunkElements / q.cols);
    // The dequantised rows of a chunk, and the temporaries that exist beside them while they are made.
    const std::int64_t chunk = (q.dtype == "bf16" && d == 2) ? 0 : r * q.cols * d;
    std::int64_t beside = 0;
    if (int4)
        // one uint8 [R, cols/2] nibble plane, or the per-group scale and offset with their temporaries
        // (scale.to(D), zero.to(D), 8 * scale, offset: four [R, G] D; two when D is bf16)
        beside = std::max(r * q.cols / 2, (d == 2 ? 2 : 4) * r * g * d);
    else if (int8 && d != 2)
        beside = r * d;

    // Inside the autograd Function's forward: the cast of x records no node; the output carries the
    // Function's node, which saves nothing (x's gradient, and a BitFit bias's added in place, in backward).
    const bool gradMode = m_trace.gradMode();
    m_trace.setGradMode(false);
    const auto xd = x.elemBytes == d ? x : compute(x.numel(), d, { x });
    m_trace.setGradMode(gradMode);
    auto output = [&] { return compute(m * q.rows, d, { x, b }, {}, Grad::New); };
    // ATen's kernels: a bf16 compute dtype and few rows (generation sizes; CPU).
    const bool kernel = !m_cuda && d == 2 && (int8 || int4)
        && m <= (int8 ? QuantizedWeight::kInt8KernelMaxRows : QuantizedWeight::kInt4KernelMaxRows)
        && (!int4 || q.rows % 16 == 0);
    TraceTensor out;
    if (kernel) {
        if (int4 && !m_kernelPacked[w.param]) {
            // The kernel packing (uint8 [rows, cols/2]) and scaleAndZeros [G, rows, 2], made once and kept.
            m_kernelPacked[w.param] = true;
            const auto packing
                = m_trace.allocationBytes(q.rows * q.cols / 2) + m_trace.allocationBytes(g * q.rows * 2 * d);
            m_kernelPackedBytes[w.param] = packing;
            m_trace.addStatic(packing);
        }
        out = output();
    } else if (oneChunk) {
        const auto wc = chunk ? compute(chunk / d, d, {}) : TraceTensor {};
        m_trace.transient(beside);
        out = output();
        m_trace.release(wc);
    } else {
        out = output(); // mm_out writes each chunk's columns
        const auto wc = chunk ? compute(chunk / d, d, {}) : TraceTensor {};
        m_trace.transient(beside);
        m_trace.release(wc);
    }
    if (xd.value != x.value)
        m_trace.release(xd);
    if (out.requiresGrad) {
        const bool cast = x.elemBytes != d; // autocast: grad_x in D, then .to(x's dtype)
        const auto gradD = cast ? m * q.cols * d : 0;
        std::int64_t before = 0, during = 0;
        if (oneChunk) {
            before = chunk + std::max(beside, gradD);
            during = cast ? gradD : chunk;
        } else {
            before = cast ? gradD + chunk + beside : 0;
            during = cast ? gradD : chunk + beside;
        }
        m_trace.setBackwardTransient(out, before, during);
    }
    return out;
}

TraceTensor Estimator::embedLookup(std::int64_t n, const TraceTensor& ids)
{
    const auto it = m_quant.find(m_shared.param);
    if (it == m_quant.end())
        return compute(n * m_embedDim, m_e, { m_shared }, { ids });
    // QuantizedWeight::embedding: the gathered stored rows, then their dequantisation (one chunk of n rows).
    const auto& q = it->second;
    const auto g = q.groups();
    std::int64_t gathered = 0, beside = 0;
    if (q.dtype == "bf16") {
        gathered = n * q.cols * 2;
    } else if (q.dtype == "int8") {
        gathered = n * q.cols + n * 2;
        beside = n * m_e;
    } else {
        gathered = n * q.cols / 2 + 2 * n * g * 2;
        beside = std::max(n * q.cols / 2, (m_e == 2 ? 2 : 4) * n * g * m_e);
    }
    const auto rows = compute(gathered, 1, {});
    const auto out = compute(n * q.cols, m_e, {});
    m_trace.transient(beside);
    m_trace.release(rows);
    return out;
}

TraceTensor Estimator::linear(const TraceTensor& x, const LinearP& p)
{
    auto y = product(x, p.w, p.b, p.in, p.out);
    // torch::nn::Linear under autocast: the bf16 product += the fp32 bias. On the CPU, TensorIterator adds
    // in float32: an fp32 copy of the product and an fp32 result, written back into the product.
    if (p.module && p.b.defined() && !m_cuda && y.elemBytes < p.b.elemBytes)
        m_trace.transient(2 * y.numel() * p.b.elemBytes);
    if (!p.loraA.defined())
        return y;
    const auto rows = x.numel() / p.in;
    const double loraDropout = m_in.method.dropout;
    const auto in = dropout(x, loraDropout, true);
    const auto a = product(in, p.loraA, {}, p.in, p.rank);
    const auto b = product(a, p.loraB, {}, p.rank, p.out);
    const auto scaled = compute(rows * p.out, b.elemBytes, { b }); // * alpha / rank
    const auto sum = add(y, scaled);
    for (const auto& t : { y, in, a, b, scaled })
        if (t.value != x.value)
            m_trace.release(t);
    return sum;
}

TraceTensor Estimator::dropout(const TraceTensor& x, double p, bool training)
{
    if (!training || p <= 0.0)
        return x;
    if (m_cuda) {
        // native_dropout: a bool mask beside the output.
        const auto mask = compute(x.numel(), 1, {});
        const auto y = compute(x.numel(), x.elemBytes, { x }, { mask });
        m_trace.release(mask);
        return y;
    }
    // CPU: noise = empty_like(x).bernoulli_(1 - p).div_(1 - p); x * noise saves the noise.
    const auto noise = compute(x.numel(), x.elemBytes, {});
    const auto y = compute(x.numel(), x.elemBytes, { x }, { noise });
    m_trace.release(noise);
    return y;
}

TraceTensor Estimator::activation(const TraceTensor& x, const std::string& act)
{
    if (act == "relu" || act == "tanh") // threshold_backward / tanh_backward use the result
        return compute(x.numel(), x.elemBytes, { x }, {}, Grad::New, 0, true);
    if (act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "silu")
        return compute(x.numel(), x.elemBytes, { x }, { x });
    throw Error("memory estimate: unsupported activation '" + act + "'");
}

TraceTensor Estimator::norm(const TraceTensor& x, const NormP& p)
{
    // variance = x.to(float).pow(2).mean(-1); normed = x * rsqrt(variance + eps) (fp32 by promotion);
    // weight (fp32) * normed (+ bias)
    const auto n = x.numel();
    const auto rows = n / p.dim;
    const auto x32 = x.elemBytes == 4 ? x : compute(n, 4, { x });
    const auto sq = compute(n, 4, { x32 }, { x32 }, Grad::New, 2 * n * 4);
    const auto mean = compute(rows, 4, { sq });
    m_trace.release(sq);
    const auto plus = compute(rows, 4, { mean }, {}, Grad::Same);
    m_trace.release(mean);
    const auto r = compute(rows, 4, { plus }, {}, Grad::New, 0, true);
    m_trace.release(plus);
    const auto normed = compute(n, 4, { x, r }, { ifGrad(r, x), ifGrad(x, r) }, Grad::New, n * 4);
    m_trace.release(r);
    if (x32.value != x.value)
        m_trace.release(x32);
    const bool wGrad = p.w.requiresGrad;
    auto y = compute(n, 4, { p.w, normed }, { ifGrad(p.w, normed) }, Grad::New, wGrad ? n * 4 : 0);
    m_trace.release(normed);
    if (p.b.defined()) {
        const auto yb = compute(n, 4, { y, p.b }, {}, Grad::Same);
        m_trace.release(y);
        y = yb;
    }
    return y;
}

TraceTensor Estimator::adapter(const TraceTensor& x, const AdapterP& p)
{
    const auto down = linear(x, p.down);
    const auto act = activation(down, p.activation);
    m_trace.release(down);
    const auto up = linear(act, p.up);
    m_trace.release(act);
    const auto out = add(x, up);
    m_trace.release(up);
    return out;
}

TraceTensor Estimator::attention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch,
    std::int64_t q, std::int64_t k, const TraceTensor& bias, const AttentionP& p, const Dims& dm,
    bool training)
{
    const auto inner = dm.heads * dm.dKv;
    const auto& src = kv.defined() ? kv : x;
    std::vector<TraceTensor> temps;
    auto keepTemp = [&](const TraceTensor& t) {
        temps.push_back(t);
        return t;
    };
    const auto query = keepTemp(m_trace.view(keepTemp(linear(x, p.q))));
    const auto key = keepTemp(m_trace.view(keepTemp(linear(src, p.k))));
    const auto value = keepTemp(m_trace.view(keepTemp(linear(src, p.v))));
    TraceTensor context;
    if (dm.recomputeAttention && !m_trace.replaying()) { // inside a replay: the math path (Recompute.h)
        // side_attention sdpa: only q, k, v (and the shared bias) are kept; the weights are recomputed.
        const bool dropping = training && dm.dropout > 0.0;
        const auto fn
            = [this, dropping, batch, q, k, inner, dm, training](const std::vector<TraceTensor>& in) {
                  if (!m_trace.gradMode() && !dropping) {
                      // at::scaled_dot_product_attention (CPU flash kernel): the output (batch, heads, q,
                      // d_kv),
                      // contiguous as the math path's product; under autocast the fp32 bias is cast to bf16
                      // for it. Its logsumexp (batch, heads, q) and per-thread blocks are not counted (well
                      // under 0.1% of any peak).
                      TraceTensor biasCast;
                      if (m_amp && in[3].defined() && in[3].elemBytes == 4)
                          biasCast = compute(in[3].numel(), 2, { in[3] });
                      const auto out = compute(batch * q * inner, in[0].elemBytes, { in[0], in[1], in[2] });
                      m_trace.release(biasCast);
                      return out;
                  }
                  return attentionCore(in[0], in[1], in[2], in[3], batch, q, k, dm, training);
              };
        context = checkpointUnit({ query, key, value, bias }, fn);
    } else {
        context = attentionCore(query, key, value, bias, batch, q, k, dm, training);
    }
    const auto t = m_trace.view(context);
    const auto contiguous = compute(batch * q * inner, context.elemBytes, { t }, {}, Grad::Same);
    m_trace.release(context);
    m_trace.release(t);
    const auto flat = m_trace.view(contiguous);
    m_trace.release(contiguous);
    const auto out = linear(flat, p.o);
    m_trace.release(flat);
    for (const auto& tmp : temps) // query, key and value live until the layer returns
        m_trace.release(tmp);
    return out;
}

TraceTensor Estimator::attentionCore(const TraceTensor& query, const TraceTensor& key,
    const TraceTensor& value, const TraceTensor& bias, std::int64_t batch, std::int64_t q, std::int64_t k,
    const Dims& dm, bool training)
{
    // The lifetimes of T5AttentionImpl::forward's (and mathAttention's) locals: `scores` and `weights` are
    // reassigned (the previous tensor goes unless a node saved it) and live until the product is done.
    const auto inner = dm.heads * dm.dKv;
    auto reassign = [&](TraceTensor& var, const TraceTensor& next) {
        if (var.value != next.value)
            m_trace.release(var);
        var = next;
    };
    // matmul reshapes a transposed head view into (batch * heads, len, d_kv): a copy unless len == 1.
    // (Under autocast q, k and v are bf16 already, so matmul casts nothing for the scores.)
    const auto qc = q > 1 ? compute(batch * q * inner, query.elemBytes, { query }, {}, Grad::Same) : query;
    const auto kc = k > 1 ? compute(batch * k * inner, key.elemBytes, { key }, {}, Grad::Same) : key;
    const auto maps = batch * dm.heads * q * k;
    auto scores = compute(maps, productElem(), { qc, kc }, { ifGrad(kc, qc), ifGrad(qc, kc) });
    if (qc.value != query.value)
        m_trace.release(qc);
    if (kc.value != key.value)
        m_trace.release(kc);
    if (bias.defined()) // the bias is fp32: the sum is fp32 by promotion
        reassign(scores,
            compute(maps, promoted(scores, bias), { scores, bias }, {}, Grad::Same,
                bias.requiresGrad && bias.numel() < maps ? maps * promoted(scores, bias) : 0));
    // softmax(scores.float()).type_as(scores): softmax keeps its (fp32) result
    const auto s32 = scores.elemBytes == 4 ? scores : compute(maps, 4, { scores });
    auto weights = compute(maps, 4, { s32 }, {}, Grad::New, 0, true);
    if (s32.value != scores.value)
        m_trace.release(s32);
    if (scores.elemBytes != 4)
        reassign(weights, compute(maps, scores.elemBytes, { weights }));
    reassign(weights, dropout(weights, dm.dropout, training));
    const auto vc = k > 1 ? compute(batch * k * inner, value.elemBytes, { value }, {}, Grad::Same) : value;
    const auto wc = lowp(weights); // autocast's bf16 copy of the fp32 probabilities
    const auto context
        = compute(batch * q * inner, productElem(), { wc, vc }, { ifGrad(vc, wc), ifGrad(wc, vc) });
    releaseCast(wc, weights);
    if (vc.value != value.value)
        m_trace.release(vc);
    m_trace.release(scores);
    m_trace.release(weights);
    return context;
}

// The end of both T5 layer types: hidden + dropout(adapter(out)) (the adapter only where the method adds
// one).
TraceTensor Estimator::residual(
    const TraceTensor& x, TraceTensor out, const AdapterP& adapter, const Dims& dm, bool training)
{
    if (adapter.present) {
        const auto a = this->adapter(out, adapter);
        m_trace.release(out);
        out = a;
    }
    const auto dropped = dropout(out, dm.dropout, training);
    const auto res = add(x, dropped);
    m_trace.release(out);
    m_trace.release(dropped);
    return res;
}

TraceTensor Estimator::layerAttention(const TraceTensor& x, const TraceTensor& kv, std::int64_t batch,
    std::int64_t q, std::int64_t k, const TraceTensor& bias, const LayerAttentionP& p, const Dims& dm,
    bool training)
{
    const auto normed = norm(x, p.norm);
    const auto out = attention(normed, kv, batch, q, k, bias, p.attn, dm, training);
    m_trace.release(normed);
    return residual(x, out, p.adapter, dm, training);
}

TraceTensor Estimator::feedForward(const TraceTensor& x, const FeedForwardP& p, const Dims& dm, bool training)
{
    const auto normed = norm(x, p.norm);
    TraceTensor h;
    if (dm.gated) {
        const auto a0 = linear(normed, p.wi0);
        const auto g = activation(a0, dm.act);
        m_trace.release(a0);
        const auto a1 = linear(normed, p.wi1);
        h = compute(g.numel(), promoted(g, a1), { g, a1 }, { ifGrad(g, a1), ifGrad(a1, g) });
        m_trace.release(g);
        m_trace.release(a1);
    } else {
        const auto a = linear(normed, p.wi);
        h = activation(a, dm.act);
        m_trace.release(a);
    }
    m_trace.release(normed);
    const auto hd = dropout(h, dm.dropout, training);
    const auto out = linear(hd, p.wo);
    m_trace.release(h);
    m_trace.release(hd);
    return residual(x, out, p.adapter, dm, training);
}

TraceTensor Estimator::block(const TraceTensor& x, std::int64_t batch, std::int64_t len,
    const TraceTensor& selfBias, const TraceTensor& encoder, std::int64_t encLen,
    const TraceTensor& crossBias, const BlockP& p, const Dims& dm, bool training)
{
    auto h = layerAttention(x, {}, batch, len, len, selfBias, p.self, dm, training);
    if (p.decoder) {
        const auto c = layerAttention(h, encoder, batch, len, encLen, crossBias, p.cross, dm, training);
        m_trace.release(h);
        h = c;
    }
    const auto out = feedForward(h, p.ff, dm, training);
    m_trace.release(h);
    return out;
}

TraceTensor Estimator::positionBias(
    std::int64_t batch, std::int64_t len, const TraceTensor& relBias, std::int64_t heads, bool decoder)
{
    // Mask (batch, 1, 1 or len, len) in the activation dtype, bucket ids (len, len) int64, the bias
    // embedding (len, len, heads), their broadcast sum (batch, heads, len, len).
    const auto mask = compute(batch * (decoder ? len : 1) * len, m_e, {});
    const auto buckets = compute(len * len, 8, {});
    const auto emb = compute(len * len * heads, m_e, { relBias }, { buckets });
    m_trace.release(buckets);
    const auto bias = compute(batch * heads * len * len, m_e, { emb, mask }, {}, Grad::Same,
        relBias.requiresGrad ? batch * heads * len * len * m_e : 0);
    m_trace.release(emb);
    m_trace.release(mask);
    return bias;
}

TraceTensor Estimator::stack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len, const StackP& p,
    bool decoder, const TraceTensor& encoder, std::int64_t encLen, bool training,
    const std::vector<std::int64_t>* keep, std::map<std::int64_t, TraceTensor>* ladders,
    const std::string& name)
{
    m_trace.setPart(name + " embeddings");
    const auto selfBias = positionBias(batch, len, p.blocks.front().self.attn.relBias, m_dims.heads, decoder);
    TraceTensor crossBias;
    if (decoder)
        crossBias = compute(batch * encLen, m_e, {});
    // StackOutput holds the (dropped-out) embeddings and the kept block outputs; the local `hidden`
    // releases the others as soon as the next block has run.
    auto hidden = dropout(embeds, m_dims.dropout, training);
    bool hiddenHeld = true;
    for (std::size_t i = 0; i < p.blocks.size(); ++i) {
        m_trace.setPart(name + " block " + std::to_string(i));
        auto next
            = block(hidden, batch, len, selfBias, encoder, encLen, crossBias, p.blocks[i], m_dims, training);
        bool kept
            = !keep || std::find(keep->begin(), keep->end(), static_cast<std::int64_t>(i)) != keep->end();
        if (kept && ladders && m_ladderBf16 && next.elemBytes != 2) {
            // ladder_dtype bf16 (KeptBlockOutputDtype): the kept output is a bf16 copy; the block's own
            // output goes once the next block has run, as an output that is not kept.
            (*ladders)[static_cast<std::int64_t>(i)] = compute(next.numel(), 2, { next });
            kept = false;
        } else if (kept && ladders) {
            (*ladders)[static_cast<std::int64_t>(i)] = next;
        }
        if (!hiddenHeld)
            m_trace.release(hidden);
        hidden = next;
        hiddenHeld = kept;
    }
    m_trace.setPart(name + " final norm");
    const auto normed = norm(hidden, p.finalNorm);
    if (!hiddenHeld)
        m_trace.release(hidden);
    const auto out = dropout(normed, m_dims.dropout, training);
    if (out.value != normed.value)
        m_trace.release(normed);
    m_trace.release(selfBias);
    m_trace.release(crossBias);
    return out;
}

TraceTensor Estimator::sideStack(const TraceTensor& embeds, std::int64_t batch, std::int64_t len,
    const SideStackP& p, const std::map<std::int64_t, TraceTensor>& ladders, const TraceTensor& sideEncoder,
    std::int64_t encLen, const std::string& name)
{
    const auto& dm = m_sideDims;
    m_trace.setPart(name + " embeddings");
    TraceTensor selfBias;
    if (!p.blocks.empty())
        selfBias
            = positionBias(batch, len, p.blocks.at(p.keep.front()).self.attn.relBias, dm.heads, p.decoder);
    else
        selfBias = compute(batch * (p.decoder ? len : 1) * len, m_e, {});
    TraceTensor crossBias;
    if (p.decoder && sideEncoder.defined())
        crossBias = compute(batch * encLen, m_e, {});
    const auto x = dropout(embeds, dm.dropout, true);
    auto side = linear(x, p.downEmbed);
    if (x.value != embeds.value)
        m_trace.release(x);
    auto replace = [&](const TraceTensor& next) {
        m_trace.release(side);
        side = next;
    };
    for (auto i : p.keep) {
        m_trace.setPart(name + " block " + std::to_string(i));
        const TraceTensor ladder = m_side.usesLadders() ? ladders.at(i) : TraceTensor {};
        TraceTensor next;
        if (m_side.sideCheckpoint) {
            // side_checkpoint: the layer's inputs are kept, the layer is replayed in backward.
            next = checkpointUnit({ side, ladder, selfBias, sideEncoder, crossBias },
                [this, i, &p, batch, len, encLen](const std::vector<TraceTensor>& in) {
                    return sideLayer(i, p, in[0], in[1], in[2], in[3], in[4], batch, len, encLen);
                });
        } else {
            next = sideLayer(i, p, side, ladder, selfBias, sideEncoder, crossBias, batch, len, encLen);
        }
        replace(next);
    }
    m_trace.setPart(name + " final norm");
    const auto normed = norm(side, p.finalNorm);
    m_trace.release(side);
    const auto out = dropout(normed, dm.dropout, true);
    if (out.value != normed.value)
        m_trace.release(normed);
    m_trace.release(selfBias);
    m_trace.release(crossBias);
    return out;
}

TraceTensor Estimator::checkpointUnit(const std::vector<TraceTensor>& inputs, const AutogradTrace::Replay& fn)
{
    return m_trace.checkpoint(inputs, [this, fn](const std::vector<TraceTensor>& in) {
        if (!m_trace.gradMode())
            return fn(in); // the forward: casts join the forward's autocast cache
        const auto cached = m_castCache;
        const auto out = fn(in);
        // The recomputation's autocast region ends before its backward: its casts lose the cache's reference.
        for (auto it = m_castCache.begin(); it != m_castCache.end();) {
            if (cached.count(it->first)) {
                ++it;
                continue;
            }
            m_trace.release(it->second);
            it = m_castCache.erase(it);
        }
        return out;
    });
}

TraceTensor Estimator::downsampleLadder(const TraceTensor& ladder, const LinearP& p)
{
    if (ladder.elemBytes == m_e || m_amp)
        return linear(ladder, p);
    // ladder_dtype bf16 without autocast: cast + linear recomputed, so the fp32 copy is not kept.
    return checkpointUnit({ ladder }, [this, p](const std::vector<TraceTensor>& in) {
        const auto x = compute(in[0].numel(), m_e, { in[0] }, {}, Grad::New);
        const auto y = linear(x, p);
        m_trace.release(x);
        return y;
    });
}

TraceTensor Estimator::sideLayer(std::int64_t i, const SideStackP& p, const TraceTensor& sideIn,
    const TraceTensor& ladder, const TraceTensor& selfBias, const TraceTensor& sideEncoder,
    const TraceTensor& crossBias, std::int64_t batch, std::int64_t len, std::int64_t encLen)
{
    const auto& dm = m_sideDims;
    TraceTensor side = sideIn;
    auto replace = [&](const TraceTensor& next) {
        if (side.value != sideIn.value)
            m_trace.release(side);
        side = next;
    };
    if (m_side.usesGates()) {
        // side = mu * side + (1 - mu) * Down_i(ladder), mu = sigmoid(alpha / T)
        // (mu is a one-element fp32 tensor: under autocast both products are fp32 by promotion)
        const auto mu = compute(1, m_e, { p.gate.at(i) }, {}, Grad::New, 0, true);
        const auto d = downsampleLadder(ladder, p.down.at(i));
        const auto n = side.numel();
        const auto ea = promoted(mu, side);
        const auto a
            = compute(n, ea, { mu, side }, { ifGrad(side, mu), ifGrad(mu, side) }, Grad::New, n * ea);
        const auto oneMinus = compute(1, m_e, { mu });
        const auto eb = promoted(oneMinus, d);
        const auto b = compute(
            n, eb, { oneMinus, d }, { ifGrad(d, oneMinus), ifGrad(oneMinus, d) }, Grad::New, n * eb);
        const auto sum = add(a, b);
        for (const auto& t : { mu, d, a, oneMinus, b })
            m_trace.release(t);
        replace(sum);
    }
    if (p.adapterNorm.count(i)) {
        const auto n = norm(side, p.adapterNorm.at(i));
        const auto dn = linear(n, p.adapterDown.at(i));
        const auto act = activation(dn, dm.act);
        const auto up = linear(act, p.adapterUp.at(i));
        const auto dr = dropout(up, dm.dropout, true);
        const auto res = add(side, dr);
        for (const auto& t : { n, dn, act, up, dr })
            m_trace.release(t);
        replace(res);
        return side;
    }
    const auto& blk = p.blocks.at(i);
    replace(layerAttention(side, {}, batch, len, len, selfBias, blk.self, dm, true));
    if (p.ladderAttention.count(i)) {
        const auto keys = downsampleLadder(ladder, p.down.at(i));
        replace(layerAttention(side, keys, batch, len, len, selfBias, p.ladderAttention.at(i), dm, true));
        m_trace.release(keys);
    }
    if (p.decoder && sideEncoder.defined())
        replace(layerAttention(side, sideEncoder, batch, len, encLen, crossBias, blk.cross, dm, true));
    replace(feedForward(side, blk.ff, dm, true));
    return side;
}

TraceTensor Estimator::lossOf(const TraceTensor& hidden, std::int64_t rows)
{
    m_trace.setPart("lm head and loss");
    const auto& c = m_in.config;
    const bool tied = c.tieWordEmbeddings;
    const auto scaled
        = tied ? compute(hidden.numel(), hidden.elemBytes, { hidden }) : hidden; // * d_model^-0.5
    const auto& w = tied ? m_shared : m_lmHead;
    const auto logits = product(scaled, w, m_lmHeadBias, c.dModel, c.vocabSize);
    if (scaled.value != hidden.value)
        m_trace.release(scaled);
    // cross_entropy on logits.float(): log_softmax (keeps its float result) and nll_loss (keeps its input
    // and the labels).
    const auto l32 = logits.elemBytes == 4 ? logits : compute(logits.numel(), 4, { logits });
    const auto logProbs = compute(logits.numel(), 4, { l32 }, {}, Grad::New, 0, true);
    const auto loss = compute(1, 4, { logProbs }, { logProbs, m_labels });
    m_trace.release(logProbs);
    if (l32.value != logits.value)
        m_trace.release(l32);
    return loss; // logits stay alive in MethodOutput until the forward returns
}

TraceTensor Estimator::forwardBaseline()
{
    const auto& c = m_in.config;
    const auto b = m_in.batch;
    const auto ls = m_in.srcLen;
    const auto lt = m_in.tgtLen;
    m_trace.setPart("encoder embeddings");
    auto embeds = embedLookup(b * ls, m_ids);
    std::int64_t encLen = ls;
    if (m_prompt.defined()) {
        // cat(prompt expanded over the batch, embeddings) and the extended 0/1 mask.
        const auto cat = compute(b * (m_promptLen + ls) * c.dModel, m_e, { m_prompt, embeds });
        m_trace.release(embeds);
        embeds = cat;
        encLen = m_promptLen + ls;
        compute(b * encLen, 8, {});
    }
    const auto encoder = stack(embeds, b, encLen, m_encoder, false, {}, 0, true, nullptr, nullptr, "encoder");
    // encode() passes the embeddings as a temporary: they go when the stack returns, unless the stack's
    // output holds them (no dropout: StackOutput::embeddings is the same tensor).
    if (m_dims.dropout > 0.0)
        m_trace.release(embeds);
    m_trace.setPart("decoder embeddings");
    const auto decoderIds = compute(b * lt, 8, {}); // shiftRight(labels)
    const auto decEmbeds = embedLookup(b * lt, decoderIds);
    const auto decoder
        = stack(decEmbeds, b, lt, m_decoder, true, encoder, encLen, true, nullptr, nullptr, "decoder");
    if (m_dims.dropout > 0.0)
        m_trace.release(decEmbeds);
    return lossOf(decoder, b * lt);
}

TraceTensor Estimator::forwardLadder()
{
    const auto& c = m_in.config;
    const auto b = m_in.batch;
    const auto ls = m_in.srcLen;
    const auto lt = m_in.tgtLen;
    const bool backboneTrain = m_in.method.backboneTrainMode;
    static const std::vector<std::int64_t> none;

    // Encoder: the backbone under NoGradGuard keeps only its ladder outputs.
    m_trace.setPart("backbone encoder");
    m_trace.setGradMode(false);
    const auto embeds = embedLookup(b * ls, m_ids);
    std::map<std::int64_t, TraceTensor> encLadders, decLadders;
    TraceTensor backboneHidden;
    if (m_side.needsBackbone()) {
        const bool ladder = m_side.usesLadders() && m_side.hasSideEncoder();
        backboneHidden = stack(embeds, b, ls, m_encoder, false, {}, 0, backboneTrain,
            ladder ? &m_side.encoderKeep : &none, &encLadders, "backbone encoder");
    }
    m_trace.setGradMode(true);
    TraceTensor sideHidden;
    if (m_sideEncoder.present)
        sideHidden = sideStack(embeds, b, ls, m_sideEncoder, encLadders, {}, 0, "side encoder");
    for (const auto& [i, t] : encLadders)
        m_trace.release(t);
    m_trace.release(embeds);

    // Decoder.
    m_trace.setPart("backbone decoder");
    m_trace.setGradMode(false);
    const auto decoderIds = compute(b * lt, 8, {});
    const auto decEmbeds = embedLookup(b * lt, decoderIds);
    TraceTensor backboneFinal;
    if (m_side.needsBackbone()) {
        const auto out = stack(decEmbeds, b, lt, m_decoder, true, backboneHidden, ls, backboneTrain,
            m_side.usesLadders() ? &m_side.decoderKeep : &none, &decLadders, "backbone decoder");
        if (m_side.usesMerge())
            backboneFinal = out;
        else
            m_trace.release(out);
    }
    m_trace.setGradMode(true);
    const auto sideOut
        = sideStack(decEmbeds, b, lt, m_sideDecoder, decLadders, sideHidden, ls, "side decoder");
    for (const auto& [i, t] : decLadders)
        m_trace.release(t);

    m_trace.setPart("side head");
    auto out = linear(sideOut, m_upsample);
    if (m_mergeGate.defined()) {
        const auto n = out.numel();
        const auto g = compute(1, m_e, { m_mergeGate }, {}, Grad::New, 0, true);
        const auto ea = promoted(g, out);
        const auto a = compute(n, ea, { g, out }, { ifGrad(out, g), ifGrad(g, out) }, Grad::New, n * ea);
        const auto oneMinus = compute(1, m_e, { g });
        const auto eb = promoted(oneMinus, backboneFinal);
        const auto bb = compute(n, eb, { oneMinus, backboneFinal },
            { ifGrad(backboneFinal, oneMinus), ifGrad(oneMinus, backboneFinal) }, Grad::New, n * eb);
        out = add(a, bb);
    }
    return lossOf(out, b * lt);
}

} // namespace ladder::estimate_detail
