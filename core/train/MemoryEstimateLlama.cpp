// The memory estimator on a decoder-only backbone (Llama, Mistral, Qwen2): the parameters of
// model/llama/LlamaModel.h and of each method of peft/DecoderMethods.cpp and peft/DecoderLadder.cpp, and the
// forward replayed op by op in their order, each op with what its autograd node saves (see
// MemoryEstimateReplay.h for the rules). Layouts matter here, because they decide which reshapes copy:
// - q and k after the rotary embedding keep the transposed layout of the projection's output (TensorIterator
//   lays an elementwise result out as its first operand), so matmul copies q, and k when no key/value head is
//   repeated; repeat_kv's reshape of an expanded tensor is a contiguous copy, which matmul then reads as is.
// - The target logits are a narrow of the joined sequence's (CausalJoin): crossEntropy's reshape to rows
//   copies them (batch > 1), and the narrow's backward allocates a zero gradient of the whole logits.
// - RMSNorm is computed in float32, the rotary tables are float32, so under bf16 autocast q and k are float32
//   after the rotary embedding (promotion) and the attention probabilities stay float32.
#include <algorithm>

#include "peft/DecoderLadder.h"
#include "train/MemoryEstimateReplay.h"
#include "util/Error.h"

namespace ladder::estimate_detail {

namespace {

LlamaDims llamaDims(const LlamaConfig& c)
{
    return { c.hiddenSize, c.numAttentionHeads, c.numKeyValueHeads, c.headDim, c.intermediateSize };
}

} // namespace

// ---- parameters ------------------------------------------------------------------------------------
LlamaLayerP Estimator::llamaLayerP(const LlamaConfig& c, bool trainable, const std::string& name)
{
    LlamaLayerP p;
    const auto h = c.hiddenSize, q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
    const auto attn = name + ".self_attn.", mlp = name + ".mlp.";
    p.q = linearP(h, q, trainable, c.qkvBias(), attn + "q_proj");
    p.k = linearP(h, kv, trainable, c.qkvBias(), attn + "k_proj");
    p.v = linearP(h, kv, trainable, c.qkvBias(), attn + "v_proj");
    p.o = linearP(q, h, trainable, c.oBias(), attn + "o_proj");
    p.gate = linearP(h, c.intermediateSize, trainable, c.mlpHasBias(), mlp + "gate_proj");
    p.up = linearP(h, c.intermediateSize, trainable, c.mlpHasBias(), mlp + "up_proj");
    p.down = linearP(c.intermediateSize, h, trainable, c.mlpHasBias(), mlp + "down_proj");
    p.inputNorm = normP(h, trainable, name + ".input_layernorm");
    p.postNorm = normP(h, trainable, name + ".post_attention_layernorm");
    return p;
}

void Estimator::buildLlama()
{
    const auto& c = *m_in.llama;
    m_ld = llamaDims(c);
    m_embedDim = c.hiddenSize;
    const bool full = m_in.method.method == "full";
    const auto freeze = m_in.method.freeze;
    // Full fine-tuning with freeze N: the embedding (and a tied head) and layers 0..N-1 stay frozen.
    m_shared = param(c.vocabSize * c.hiddenSize, full && freeze == 0, "model.embed_tokens.weight");
    for (std::int64_t i = 0; i < c.numHiddenLayers; ++i)
        m_llamaLayers.push_back(llamaLayerP(c, full && i >= freeze, "model.layers." + std::to_string(i)));
    m_llamaNorm = normP(c.hiddenSize, full, "model.norm");
    if (!c.tieWordEmbeddings)
        m_lmHead = param(c.vocabSize * c.hiddenSize, full, "lm_head.weight");
}

void Estimator::applyLlamaMethod()
{
    const auto& o = m_in.method;
    const auto& c = *m_in.llama;
    const auto freeze = std::max<std::int64_t>(0, o.freeze);
    auto unfrozen = [&](auto fn) {
        for (std::size_t i = static_cast<std::size_t>(std::min(freeze, c.numHiddenLayers));
             i < m_llamaLayers.size(); ++i)
            fn(m_llamaLayers[i], "model.layers." + std::to_string(i));
    };
    auto projections = [](LlamaLayerP& l) {
        return std::vector<std::pair<LinearP*, std::string>> { { &l.q, "q" }, { &l.k, "k" }, { &l.v, "v" },
            { &l.o, "o" }, { &l.gate, "gate" }, { &l.up, "up" }, { &l.down, "down" } };
    };
    auto bitfit = [&]() {
        // Every projection's bias: a pretrained one (Qwen2's q/k/v) trains, a zero one is added elsewhere.
        unfrozen([&](LlamaLayerP& l, const std::string& n) {
            for (auto& [p, name] : projections(l)) {
                if (p->b.defined())
                    m_trace.setTrainable(p->b, true);
                else
                    p->b = param(p->out, true, n + "." + name + ".bias");
            }
        });
    };
    if (o.method == "full") {
        // Trainable from the start (buildLlama).
    } else if (o.method == "bitfit") {
        bitfit();
    } else if (o.method == "adapter") {
        unfrozen([&](LlamaLayerP& l, const std::string& n) {
            for (auto* a : { &l.attnAdapter, &l.mlpAdapter }) {
                a->present = true;
                a->activation = o.activation;
                a->down = linearP(c.hiddenSize, o.hidden, true, true, n + ".adapter.down");
                a->up = linearP(o.hidden, c.hiddenSize, true, true, n + ".adapter.up");
            }
            m_trace.setTrainable(l.inputNorm.w, true);
            m_trace.setTrainable(l.postNorm.w, true);
        });
        m_trace.setTrainable(m_llamaNorm.w, true);
    } else if (o.isLora()) {
        unfrozen([&](LlamaLayerP& l, const std::string& n) {
            for (auto& [p, name] : projections(l)) {
                if (std::find(o.targets.begin(), o.targets.end(), name) == o.targets.end())
                    continue;
                p->rank = o.rank;
                p->loraA = param(o.rank * p->in, true, n + "." + name + ".lora_A");
                p->loraB = param(p->out * o.rank, true, n + "." + name + ".lora_B");
            }
        });
        if (o.bitfit)
            bitfit();
    } else if (o.method == "prompt") {
        if (o.freeze > 0)
            throw Error(
                "method options: field freeze: prompt tuning trains the input of every layer, it cannot "
                "freeze layers");
        m_prompt = param(o.prompts * c.hiddenSize, true, "prompt");
        m_promptLen = o.prompts;
    } else if (o.method == "ladder") {
        const auto side = decoderSideOptions(c, o); // validates what the decoder's LST supports
        const auto sc = side.sideConfig();
        m_sideLd = llamaDims(sc);
        m_sideKeep = side.keep;
        m_ladderBf16 = o.ladderDtype == "bf16";
        const auto d = c.hiddenSize, ds = sc.hiddenSize;
        m_sideDownEmbed = linearP(d, ds, true, true, "side_decoder.downsample.embed");
        m_sideDownEmbed.module = true;
        for (auto i : m_sideKeep) {
            const auto n = std::to_string(i);
            m_sideDown[i] = linearP(d, ds, true, true, "side_decoder.downsample." + n);
            m_sideDown[i].module = true;
            m_sideGate[i] = param(1, true, "side_decoder.gate." + n);
            m_sideLayers[i] = llamaLayerP(sc, true, "side_decoder.block." + n);
        }
        m_sideNorm = normP(ds, true, "side_decoder.norm");
        m_upsample = linearP(ds, d, true, true, "side_final_upsample");
        m_upsample.module = true;
    } else {
        throw Error("memory estimate: field method: unknown method '" + o.method + "'");
    }
}

// ---- operations --------------------------------------------------------------------------------------
std::pair<TraceTensor, TraceTensor> Estimator::causalJoin()
{
    const auto b = m_in.batch, s = m_in.srcLen, t = m_in.tgtLen;
    const auto len = s + t - 1;
    // leftPad: the mask as int64 (from a bool), the stable sort's values and order, the gathered mask and ids
    // (the gathered ids masked_fill'ed through a bool).
    const auto ne = compute(b * s, 1, {});
    const auto mask = compute(b * s, 8, {});
    m_trace.release(ne);
    const auto sorted = compute(b * s, 8, {});
    const auto order = compute(b * s, 8, {});
    m_trace.release(sorted);
    const auto leftMask = compute(b * s, 8, {});
    const auto gathered = compute(b * s, 8, {});
    const auto eq = compute(b * s, 1, {});
    const auto leftIds = compute(b * s, 8, {});
    for (const auto& x : { gathered, eq, mask, order })
        m_trace.release(x);
    // The shifted labels' mask and ids, then the two concatenations.
    const auto shiftedNe = compute(b * (t - 1), 1, {});
    const auto shiftedMask = compute(b * (t - 1), 8, {});
    m_trace.release(shiftedNe);
    const auto labelEq = compute(b * (t - 1), 1, {});
    const auto labelIds = compute(b * (t - 1), 8, {});
    const auto ids = compute(b * len, 8, {});
    m_trace.release(labelEq);
    m_trace.release(labelIds);
    const auto joinedMask = compute(b * len, 8, {});
    for (const auto& x : { leftMask, leftIds, shiftedMask })
        m_trace.release(x);
    return { ids, joinedMask };
}

LlamaInputsT Estimator::llamaInputs(std::int64_t b, std::int64_t len, std::int64_t headDim)
{
    // llamaAttentionInputs: positions (column minus the row's leading padding), the float32 tables, the mask.
    const auto cumsum = compute(b * len, 8, {});
    const auto eq = compute(b * len, 1, {});
    m_trace.release(cumsum);
    const auto leading = compute(b, 8, {});
    m_trace.release(eq);
    const auto columns = compute(len, 8, {});
    const auto diff = compute(b * len, 8, {});
    const auto positions = compute(b * len, 8, {});
    m_trace.release(diff);
    const auto pf = compute(b * len, 4, {});
    const auto freqs = compute(b * len * headDim / 2, 4, {});
    m_trace.release(pf);
    const auto emb = compute(b * len * headDim, 4, {});
    LlamaInputsT in;
    in.cos = compute(b * len * headDim, 4, {});
    in.sin = compute(b * len * headDim, 4, {});
    const auto keyColumns = compute(len, 8, {});
    const auto causal = compute(len * len, 1, {});
    const auto real = compute(b * len, 1, {});
    in.allowed = compute(b * len * len, 1, {});
    for (const auto& x : { causal, real, leading, columns, positions, freqs, emb, keyColumns })
        m_trace.release(x);
    return in;
}

TraceTensor Estimator::rotary(const TraceTensor& x, const LlamaInputsT& in)
{
    // x * cos + rotateHalf(x) * sin; rotateHalf = cat(-x[..., h:], x[..., :h]).
    const auto n = x.numel();
    const auto a = compute(n, promoted(x, in.cos), { x, in.cos }, { ifGrad(x, in.cos) });
    const auto second = m_trace.narrow(x, n / 2);
    const auto neg = compute(n / 2, x.elemBytes, { second }, {}, Grad::New);
    const auto first = m_trace.narrow(x, n / 2);
    const auto cat = compute(n, x.elemBytes, { neg, first }, {}, Grad::Part);
    for (const auto& t : { second, neg, first })
        m_trace.release(t);
    const auto b = compute(n, promoted(cat, in.sin), { cat, in.sin }, { ifGrad(cat, in.sin) });
    m_trace.release(cat);
    const auto sum = add(a, b);
    m_trace.release(a);
    m_trace.release(b);
    return sum;
}

TraceTensor Estimator::llamaAttention(const TraceTensor& x, const LlamaLayerP& p, const LlamaDims& dm,
    const LlamaInputsT& in, std::int64_t b, std::int64_t len)
{
    const auto groups = dm.heads / dm.kvHeads;
    const auto qLin = linear(x, p.q);
    const auto kLin = linear(x, p.k);
    const auto vLin = linear(x, p.v);
    // q, k, v: the transposed head views; q and k are replaced by their rotary embeddings.
    const auto qView = m_trace.view(qLin), kView = m_trace.view(kLin), v = m_trace.view(vLin);
    const auto q = rotary(qView, in);
    m_trace.release(qView);
    m_trace.release(qLin);
    const auto k = rotary(kView, in);
    m_trace.release(kView);
    m_trace.release(kLin);
    // repeat_kv: expand + reshape, a contiguous copy (its backward sums the groups into a new gradient).
    const auto keys = groups == 1 ? k : compute(k.numel() * groups, k.elemBytes, { k }, {}, Grad::New);
    const auto values = groups == 1 ? v : compute(v.numel() * groups, v.elemBytes, { v }, {}, Grad::New);
    const auto maps = b * dm.heads * len * len;
    const auto rows = b * dm.heads * len * dm.headDim;
    auto copy = [&](const TraceTensor& t) { return compute(t.numel(), t.elemBytes, { t }, {}, Grad::Same); };
    // scores = matmul(q, keys^T) * scale: autocast's bf16 casts keep the layouts, matmul copies q (transposed
    // layout) and keys when they are k itself; bmm saves what it multiplies.
    const auto qCast = lowp(q);
    const auto qc = copy(qCast);
    releaseCast(qCast, q);
    const auto kCast = lowp(keys);
    const auto kc = groups == 1 ? copy(kCast) : kCast;
    const auto raw = compute(maps, productElem(), { qc, kc }, { ifGrad(kc, qc), ifGrad(qc, kc) });
    m_trace.release(qc);
    if (kc.value != kCast.value)
        m_trace.release(kc);
    releaseCast(kCast, keys);
    auto scores = compute(maps, raw.elemBytes, { raw }, {}, Grad::New);
    m_trace.release(raw);
    // masked_fill(allowed.logical_not(), lowest) saves its mask (a new bool tensor per layer).
    const auto notAllowed = compute(b * len * len, 1, {});
    const auto masked = compute(maps, scores.elemBytes, { scores }, { ifGrad(scores, notAllowed) });
    m_trace.release(notAllowed);
    m_trace.release(scores);
    scores = masked;
    // softmax(scores, -1, float32) keeps its float32 result; .to(q's dtype) is a no-op (q is float32).
    const auto s32 = scores.elemBytes == 4 ? scores : compute(maps, 4, { scores });
    const auto probs = compute(maps, 4, { s32 }, {}, Grad::New, 0, true);
    if (s32.value != scores.value)
        m_trace.release(s32);
    // matmul(probs, values): values copied when they are v's transposed view.
    const auto pCast = lowp(probs);
    const auto vCast = lowp(values);
    const auto vc = groups == 1 ? copy(vCast) : vCast;
    const auto ctx = compute(rows, productElem(), { pCast, vc }, { ifGrad(vc, pCast), ifGrad(pCast, vc) });
    releaseCast(pCast, probs);
    if (vc.value != vCast.value)
        m_trace.release(vc);
    releaseCast(vCast, values);
    // .transpose(1, 2).reshape(batch, len, heads * head_dim): a copy.
    const auto flat = copy(ctx);
    m_trace.release(ctx);
    const auto out = linear(flat, p.o);
    m_trace.release(flat);
    for (const auto& t : { q, k, v, vLin, scores, probs })
        m_trace.release(t);
    if (groups != 1) {
        m_trace.release(keys);
        m_trace.release(values);
    }
    return out;
}

TraceTensor Estimator::llamaLayer(const TraceTensor& x, const LlamaLayerP& p, const LlamaDims& dm,
    const LlamaInputsT& in, std::int64_t b, std::int64_t len)
{
    // h = attn(input_layernorm(x)) [adapter]; after = x + h; h = mlp(post_attention_layernorm(after))
    // [adapter]; after + h. The normed input is a temporary of its statement; h lives until reassigned.
    const auto n1 = norm(x, p.inputNorm);
    auto h = llamaAttention(n1, p, dm, in, b, len);
    m_trace.release(n1);
    if (p.attnAdapter.present) {
        const auto a = adapter(h, p.attnAdapter);
        m_trace.release(h);
        h = a;
    }
    const auto after = add(x, h);
    const auto n2 = norm(after, p.postNorm);
    // down(silu(gate(x)) * up(x)): every operand a temporary of the statement.
    const auto up = linear(n2, p.up);
    const auto gate = linear(n2, p.gate);
    const auto act = activation(gate, "silu");
    const auto prod
        = compute(act.numel(), promoted(act, up), { act, up }, { ifGrad(up, act), ifGrad(act, up) });
    auto mlp = linear(prod, p.down);
    for (const auto& t : { up, gate, act, prod, n2, h })
        m_trace.release(t);
    if (p.mlpAdapter.present) {
        const auto a = adapter(mlp, p.mlpAdapter);
        m_trace.release(mlp);
        mlp = a;
    }
    const auto out = add(after, mlp);
    m_trace.release(after);
    m_trace.release(mlp);
    return out;
}

TraceTensor Estimator::llamaStack(const TraceTensor& embeds, std::int64_t b, std::int64_t len,
    const std::vector<std::int64_t>* keep, std::map<std::int64_t, TraceTensor>* ladders,
    const std::string& name)
{
    m_trace.setPart(name + " embeddings");
    const auto in = llamaInputs(b, len, m_ld.headDim);
    // StackOutput holds the embeddings and the kept layer outputs; the others go when the next layer has run.
    auto hidden = embeds;
    bool held = true;
    for (std::size_t i = 0; i < m_llamaLayers.size(); ++i) {
        m_trace.setPart(name + " block " + std::to_string(i));
        const auto next = llamaLayer(hidden, m_llamaLayers[i], m_ld, in, b, len);
        bool kept
            = !keep || std::find(keep->begin(), keep->end(), static_cast<std::int64_t>(i)) != keep->end();
        if (kept && ladders && m_ladderBf16 && next.elemBytes != 2) {
            (*ladders)[static_cast<std::int64_t>(i)] = compute(next.numel(), 2, { next });
            kept = false;
        } else if (kept && ladders) {
            (*ladders)[static_cast<std::int64_t>(i)] = next;
        }
        if (!held)
            m_trace.release(hidden);
        hidden = next;
        held = kept;
    }
    m_trace.setPart(name + " final norm");
    const auto normed = norm(hidden, m_llamaNorm);
    if (!held)
        m_trace.release(hidden);
    for (const auto& t : { in.cos, in.sin, in.allowed })
        m_trace.release(t);
    return normed;
}

TraceTensor Estimator::llamaSideStack(const TraceTensor& embeds, std::int64_t b, std::int64_t len,
    const std::map<std::int64_t, TraceTensor>& ladders)
{
    m_trace.setPart("side decoder embeddings");
    const auto in = llamaInputs(b, len, m_sideLd.headDim);
    auto side = linear(embeds, m_sideDownEmbed);
    for (auto i : m_sideKeep) {
        m_trace.setPart("side decoder block " + std::to_string(i));
        // side = mu * side + (1 - mu) * Down_i(ladder.to(fp32)), mu = sigmoid(alpha / T) (one fp32 element)
        const auto mu = compute(1, m_e, { m_sideGate.at(i) }, {}, Grad::New, 0, true);
        const auto& ladder = ladders.at(i);
        const auto x = ladder.elemBytes == m_e ? ladder : compute(ladder.numel(), m_e, { ladder });
        const auto d = linear(x, m_sideDown.at(i));
        if (x.value != ladder.value)
            m_trace.release(x);
        const auto n = side.numel();
        const auto ea = promoted(mu, side);
        const auto a
            = compute(n, ea, { mu, side }, { ifGrad(side, mu), ifGrad(mu, side) }, Grad::New, n * ea);
        const auto oneMinus = compute(1, m_e, { mu });
        const auto eb = promoted(oneMinus, d);
        const auto bb = compute(
            n, eb, { oneMinus, d }, { ifGrad(d, oneMinus), ifGrad(oneMinus, d) }, Grad::New, n * eb);
        const auto mixed = add(a, bb);
        for (const auto& t : { mu, d, a, oneMinus, bb, side })
            m_trace.release(t);
        side = llamaLayer(mixed, m_sideLayers.at(i), m_sideLd, in, b, len);
        m_trace.release(mixed);
    }
    m_trace.setPart("side decoder final norm");
    const auto normed = norm(side, m_sideNorm);
    m_trace.release(side);
    for (const auto& t : { in.cos, in.sin, in.allowed })
        m_trace.release(t);
    return normed;
}

TraceTensor Estimator::causalLoss(const TraceTensor& target, bool viewable)
{
    m_trace.setPart("lm head and loss");
    const auto n = target.numel();
    const auto flat = viewable ? target : compute(n, target.elemBytes, { target }, {}, Grad::Same);
    // cross_entropy on logits.float(): log_softmax keeps its result, nll_loss its input and the labels.
    const auto l32 = flat.elemBytes == 4 ? flat : compute(n, 4, { flat });
    const auto logProbs = compute(n, 4, { l32 }, {}, Grad::New, 0, true);
    const auto loss = compute(1, 4, { logProbs }, { logProbs, m_labels });
    m_trace.release(logProbs);
    if (l32.value != flat.value)
        m_trace.release(l32);
    if (flat.value != target.value)
        m_trace.release(flat);
    return loss;
}

TraceTensor Estimator::forwardDecoder()
{
    if (m_in.method.method == "ladder")
        return forwardDecoderLadder();
    if (m_in.method.method == "prompt")
        return forwardDecoderPrompt();
    return forwardDecoderInPlace();
}

// LlamaForCausalLMImpl::forwardTargets: the backbone over the joined sequence, keeping every layer's output
// (StackOutput), the LM head on every column, the target columns narrowed.
TraceTensor Estimator::forwardDecoderInPlace()
{
    const auto b = m_in.batch, t = m_in.tgtLen, len = m_in.srcLen + m_in.tgtLen - 1;
    const auto& c = *m_in.llama;
    m_trace.setPart("decoder embeddings");
    const auto joined = causalJoin();
    const auto embeds = embedLookup(b * len, joined.first);
    const auto hidden = llamaStack(embeds, b, len, nullptr, nullptr, "decoder");
    m_trace.setPart("lm head and loss");
    const auto& w = c.tieWordEmbeddings ? m_shared : m_lmHead;
    const auto logits = product(hidden, w, {}, c.hiddenSize, c.vocabSize);
    const auto target = t == len ? logits : m_trace.narrow(logits, b * t * c.vocabSize);
    return causalLoss(target, t == len || b == 1 || t == 1);
}

// DecoderPromptMethod::forward: the prompt inserted before each row's first real column (insertPrompt), no
// layer output kept, the LM head on every column, narrowed to the joined columns, then to the targets.
TraceTensor Estimator::forwardDecoderPrompt()
{
    const auto b = m_in.batch, t = m_in.tgtLen, len = m_in.srcLen + m_in.tgtLen - 1;
    const auto p = m_promptLen;
    const auto& c = *m_in.llama;
    const auto d = c.hiddenSize;
    m_trace.setPart("decoder embeddings");
    const auto joined = causalJoin();
    const auto embeds = embedLookup(b * len, joined.first);
    // insertPrompt's index and mask arithmetic, int64 and bool over (batch, len + P).
    const auto cols = len + p, n = b * cols;
    const auto cumsum = compute(b * len, 8, {});
    const auto eq = compute(b * len, 1, {});
    m_trace.release(cumsum);
    const auto leading = compute(b, 8, {});
    m_trace.release(eq);
    const auto column = compute(cols, 8, {});
    const auto ge = compute(n, 1, {}), end = compute(b, 8, {}), lt = compute(n, 1, {});
    const auto inPrompt = compute(n, 1, {});
    for (const auto& x : { ge, end, lt })
        m_trace.release(x);
    const auto minus = compute(n, 8, {}), before = compute(n, 1, {}), plus = compute(cols, 8, {});
    const auto inner = compute(n, 8, {});
    const auto index = compute(n, 8, {});
    for (const auto& x : { minus, before, plus, inner })
        m_trace.release(x);
    // table = cat(prompt expanded, embeds); gather saves its index (the expanded view of `index`).
    const auto table = compute(n * d, m_e, { m_prompt, embeds }, {}, Grad::New);
    const auto rows
        = compute(n * d, m_e, { table }, { index, table }, Grad::New); // gather_backward(grad, self, ...)
    const auto zeros = compute(b * p, 8, {});
    const auto shifted = compute(n, 8, {});
    m_trace.release(zeros);
    const auto lead = compute(n, 1, {}), zl = compute(n, 8, {}), ol = compute(n, 8, {});
    const auto w1 = compute(n, 8, {});
    const auto mask = compute(n, 8, {});
    for (const auto& x : { lead, zl, ol, w1, table, leading, column, inPrompt, shifted, index, embeds })
        m_trace.release(x);
    static const std::vector<std::int64_t> none;
    const auto hidden = llamaStack(rows, b, cols, &none, nullptr, "decoder");
    m_trace.setPart("lm head and loss");
    const auto& w = c.tieWordEmbeddings ? m_shared : m_lmHead;
    const auto logits = product(hidden, w, {}, d, c.vocabSize);
    const auto joinedLogits = m_trace.narrow(logits, b * len * c.vocabSize);
    const auto target = t == len ? joinedLogits : m_trace.narrow(joinedLogits, b * t * c.vocabSize);
    (void)mask;
    return causalLoss(target, b == 1 || t == 1);
}

// DecoderLadderMethod::forward: the backbone under no_grad keeping the kept layers' outputs, the side decoder
// with grad, the upsample on every column, then the LM head on the target columns only.
TraceTensor Estimator::forwardDecoderLadder()
{
    const auto b = m_in.batch, t = m_in.tgtLen, len = m_in.srcLen + m_in.tgtLen - 1;
    const auto& c = *m_in.llama;
    const auto d = c.hiddenSize;
    m_trace.setPart("backbone decoder");
    const auto joined = causalJoin();
    m_trace.setGradMode(false);
    const auto embeds = embedLookup(b * len, joined.first);
    std::map<std::int64_t, TraceTensor> ladders;
    const auto last = llamaStack(embeds, b, len, &m_sideKeep, &ladders, "backbone decoder");
    m_trace.setGradMode(true);
    const auto side = llamaSideStack(embeds, b, len, ladders);
    m_trace.setPart("side head");
    const auto up = linear(side, m_upsample);
    m_trace.release(side);
    // hidden() returns: the backbone's StackOutput and the embeddings go (unless a downsample saved them).
    m_trace.release(last);
    for (const auto& [i, x] : ladders)
        m_trace.release(x);
    m_trace.release(embeds);
    const auto hidden = t == len ? up : m_trace.narrow(up, b * t * d);
    if (hidden.value != up.value)
        m_trace.release(up);
    m_trace.setPart("lm head and loss");
    const auto& w = c.tieWordEmbeddings ? m_shared : m_lmHead;
    // lmLogits makes the narrowed rows contiguous (a copy in the upsample's dtype, the compute dtype), so
    // that at::linear folds them into one mm and QuantizedWeight::matmul reshapes them as a view.
    const bool strided = hidden.value != up.value && b > 1 && t > 1;
    const auto x = strided ? compute(hidden.numel(), hidden.elemBytes, { hidden }, {}, Grad::Same) : hidden;
    const auto logits = product(x, w, {}, d, c.vocabSize);
    if (x.value != hidden.value)
        m_trace.release(x);
    return causalLoss(logits, true);
}

} // namespace ladder::estimate_detail
