#include "model/QuantizedWeight.h"

#include <algorithm>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "util/Error.h"

namespace ladder {

struct QuantizedWeight::KernelCache {
    std::mutex mutex;
    at::Tensor int4Packed; // ATen's packing for this device
    std::map<c10::ScalarType, at::Tensor> scaleAndZeros; // [G, rows, 2] per compute dtype
    bool cudaKernelFailed = false; // a CUDA kernel refused once (an old GPU): Auto dequantises from then on
};

namespace {

std::string shapeText(at::IntArrayRef sizes)
{
    std::string s = "[";
    for (std::size_t i = 0; i < sizes.size(); ++i)
        s += (i ? ", " : "") + std::to_string(sizes[i]);
    return s + "]";
}

// x's dtype, or autocast's lower-precision dtype where autocast would cast an fp32 x for at::linear.
c10::ScalarType computeDtype(const at::Tensor& x)
{
    const auto dtype = x.scalar_type();
    const auto type = x.device().type();
    if (dtype == at::kFloat && (type == c10::DeviceType::CPU || type == c10::DeviceType::CUDA)
        && at::autocast::is_autocast_enabled(type))
        return at::autocast::get_autocast_dtype(type);
    return dtype;
}

bool isHalfPrecision(c10::ScalarType dtype)
{
    return dtype == at::kBFloat16 || dtype == at::kHalf;
}

// ATen's CUDA int4 packing needs cols divisible by innerKTiles x 16; the largest of 8, 4, 2 that fits.
std::int64_t cudaInnerKTiles(std::int64_t cols)
{
    for (std::int64_t k : { 8, 4, 2 })
        if (cols % (k * 16) == 0)
            return k;
    return 0;
}

} // namespace

// The autograd node of QuantizedWeight::matmul: y = x W^T; dx = dy W, W dequantised again in the backward.
// Saved: references to the quantised tensors (no copy) and the sizes needed to rebuild the weight.
struct QuantizedMatmulFunction : public torch::autograd::Function<QuantizedMatmulFunction> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
        const QuantizedWeight* weight, std::int64_t path)
    {
        auto& saved = ctx->saved_data;
        saved["dtype"] = static_cast<std::int64_t>(weight->m_dtype);
        saved["group"] = weight->m_groupSize;
        saved["rows"] = weight->m_rows;
        saved["cols"] = weight->m_cols;
        saved["chunk"] = weight->m_chunkElements;
        saved["data"] = weight->m_data;
        saved["scale"] = weight->m_scale;
        saved["zero"] = weight->m_zero;
        saved["x_dtype"] = static_cast<std::int64_t>(x.scalar_type());
        return weight->forwardNoGrad(x, static_cast<QuantMatmulPath>(path));
    }

    static torch::autograd::variable_list backward(
        torch::autograd::AutogradContext* ctx, torch::autograd::variable_list gradOutputs)
    {
        auto& saved = ctx->saved_data;
        QuantizedWeight w;
        w.m_dtype = static_cast<QuantDtype>(saved["dtype"].toInt());
        w.m_groupSize = saved["group"].toInt();
        w.m_rows = saved["rows"].toInt();
        w.m_cols = saved["cols"].toInt();
        w.m_chunkElements = saved["chunk"].toInt();
        w.m_data = saved["data"].toTensor();
        w.m_scale = saved["scale"].toTensor();
        w.m_zero = saved["zero"].toTensor();
        const auto inputDtype = static_cast<c10::ScalarType>(saved["x_dtype"].toInt());
        at::Tensor grad;
        if (gradOutputs[0].defined()) {
            c10::NoGradGuard noGrad;
            grad = w.inputGradient(gradOutputs[0], inputDtype);
        }
        return { grad, at::Tensor(), at::Tensor() };
    }
};

// ---------------------------------------------------------------------------------------------------
QuantDtype parseQuantDtype(const std::string& name)
{
    if (name == "bf16")
        return QuantDtype::Bf16;
    if (name == "int8")
        return QuantDtype::Int8;
    if (name == "int4")
        return QuantDtype::Int4;
    throw Error("backbone dtype: expected bf16, int8 or int4, got '" + name + "'");
}

std::string quantDtypeName(QuantDtype dtype)
{
    switch (dtype) {
    case QuantDtype::Bf16:
        return "bf16";
    case QuantDtype::Int8:
        return "int8";
    case QuantDtype::Int4:
        return "int4";
    }
    return "?";
}

bool isSupportedInt4GroupSize(std::int64_t groupSize)
{
    return groupSize == 32 || groupSize == 64 || groupSize == 128 || groupSize == 256;
}

std::int64_t QuantizedWeight::storageBytes(
    const std::string& dtype, std::int64_t rows, std::int64_t cols, std::int64_t groupSize)
{
    if (dtype == "fp32")
        return 4 * rows * cols;
    if (dtype == "bf16")
        return 2 * rows * cols;
    if (dtype == "int8")
        return rows * cols + 2 * rows;
    if (dtype == "int4") {
        if (groupSize <= 0 || cols % groupSize != 0)
            throw Error("int4: " + std::to_string(cols) + " columns are not divisible by the group size "
                + std::to_string(groupSize));
        return rows * cols / 2 + 2 * 2 * rows * (cols / groupSize);
    }
    throw Error("backbone dtype: expected fp32, bf16, int8 or int4, got '" + dtype + "'");
}

// ---------------------------------------------------------------------------------------------------
QuantizedWeight QuantizedWeight::quantize(const at::Tensor& weight, QuantDtype dtype, std::int64_t groupSize)
{
    if (!weight.defined() || weight.dim() != 2 || !at::isFloatingType(weight.scalar_type()))
        throw Error("quantize: expected a 2-D floating-point weight, got "
            + (weight.defined()
                    ? shapeText(weight.sizes()) + " " + std::string(c10::toString(weight.scalar_type()))
                    : std::string("an undefined tensor")));
    c10::NoGradGuard noGrad;
    QuantizedWeight q;
    q.m_dtype = dtype;
    q.m_rows = weight.size(0);
    q.m_cols = weight.size(1);
    q.m_kernel = std::make_shared<KernelCache>();
    const auto source = weight.detach();
    const auto bf16 = source.options().dtype(at::kBFloat16);
    if (dtype == QuantDtype::Bf16) {
        q.m_data = source.to(at::kBFloat16, /*non_blocking=*/false, /*copy=*/true).contiguous();
        return q;
    }
    if (dtype == QuantDtype::Int4) {
        if (!isSupportedInt4GroupSize(groupSize))
            throw Error("int4: group size must be 32, 64, 128 or 256, got " + std::to_string(groupSize));
        if (q.m_cols % groupSize != 0)
            throw Error("int4: " + std::to_string(q.m_cols) + " columns are not divisible by the group size "
                + std::to_string(groupSize));
        q.m_groupSize = groupSize;
    }
    const auto rows = q.m_rows;
    const auto cols = q.m_cols;
    if (dtype == QuantDtype::Int8) {
        q.m_data = at::empty({ rows, cols }, source.options().dtype(at::kChar));
        q.m_scale = at::empty({ rows }, bf16);
    } else {
        const auto groups = cols / groupSize;
        q.m_data = at::empty({ rows, cols / 2 }, source.options().dtype(at::kByte));
        q.m_scale = at::empty({ rows, groups }, bf16);
        q.m_zero = at::empty({ rows, groups }, bf16);
    }
    const auto chunk = q.chunkRows();
    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const auto n = std::min(chunk, rows - r0);
        const auto w = source.narrow(0, r0, n).to(at::kFloat);
        if (dtype == QuantDtype::Int8) {
            const auto scale = (w.abs().amax(1) / 127.0).to(at::kBFloat16);
            const auto s = scale.to(at::kFloat);
            const auto divisor = at::where(s > 0, s, at::ones_like(s)).unsqueeze(1);
            q.m_data.narrow(0, r0, n).copy_((w / divisor).round_().clamp_(-127, 127));
            q.m_scale.narrow(0, r0, n).copy_(scale);
        } else {
            const auto groups = cols / groupSize;
            const auto g = w.view({ n, groups, groupSize });
            const auto low = g.amin(2);
            const auto scale = ((g.amax(2) - low) / 15.0).to(at::kBFloat16);
            const auto s = scale.to(at::kFloat);
            const auto zero = (low + s * 8.0).to(at::kBFloat16);
            const auto divisor = at::where(s > 0, s, at::ones_like(s)).unsqueeze(2);
            const auto values = ((g - zero.to(at::kFloat).unsqueeze(2)) / divisor)
                                    .round_()
                                    .add_(8)
                                    .clamp_(0, 15)
                                    .to(at::kByte)
                                    .view({ n, cols / 2, 2 });
            q.m_data.narrow(0, r0, n).copy_(
                at::bitwise_or(values.select(2, 0), at::bitwise_left_shift(values.select(2, 1), 4)));
            q.m_scale.narrow(0, r0, n).copy_(scale);
            q.m_zero.narrow(0, r0, n).copy_(zero);
        }
    }
    return q;
}

QuantizedWeight QuantizedWeight::fromParts(QuantDtype dtype, std::int64_t groupSize, std::int64_t rows,
    std::int64_t cols, const std::map<std::string, at::Tensor>& parts, const std::string& source)
{
    auto get
        = [&](const std::string& name, c10::ScalarType type, std::vector<std::int64_t> shape) -> at::Tensor {
        const auto it = parts.find(name);
        if (it == parts.end() || !it->second.defined())
            throw Error(source + ": missing " + name + " (" + quantDtypeName(dtype) + " storage)");
        const auto& t = it->second;
        if (t.scalar_type() != type || t.sizes().vec() != shape)
            throw Error(source + ": " + name + " is " + std::string(c10::toString(t.scalar_type())) + " "
                + shapeText(t.sizes()) + ", expected " + std::string(c10::toString(type)) + " "
                + shapeText(shape));
        return t.contiguous();
    };
    QuantizedWeight q;
    q.m_dtype = dtype;
    q.m_rows = rows;
    q.m_cols = cols;
    q.m_kernel = std::make_shared<KernelCache>();
    std::size_t expected = 1;
    switch (dtype) {
    case QuantDtype::Bf16:
        q.m_data = get("qdata", at::kBFloat16, { rows, cols });
        break;
    case QuantDtype::Int8:
        q.m_data = get("qdata", at::kChar, { rows, cols });
        q.m_scale = get("qscale", at::kBFloat16, { rows });
        expected = 2;
        break;
    case QuantDtype::Int4:
        if (!isSupportedInt4GroupSize(groupSize) || cols % groupSize != 0)
            throw Error(source + ": int4 group size " + std::to_string(groupSize) + " does not divide "
                + std::to_string(cols) + " columns (32, 64, 128 or 256)");
        q.m_groupSize = groupSize;
        q.m_data = get("qdata", at::kByte, { rows, cols / 2 });
        q.m_scale = get("qscale", at::kBFloat16, { rows, cols / groupSize });
        q.m_zero = get("qzero", at::kBFloat16, { rows, cols / groupSize });
        expected = 3;
        break;
    }
    if (parts.size() != expected)
        throw Error(source + ": " + std::to_string(parts.size()) + " parts for " + quantDtypeName(dtype)
            + " storage, expected " + std::to_string(expected));
    for (const auto* t : { &q.m_scale, &q.m_zero })
        if (t->defined() && t->device() != q.m_data.device())
            throw Error(source + ": parts on different devices");
    return q;
}

std::vector<std::pair<std::string, at::Tensor>> QuantizedWeight::parts() const
{
    std::vector<std::pair<std::string, at::Tensor>> out { { "qdata", m_data } };
    if (m_scale.defined())
        out.emplace_back("qscale", m_scale);
    if (m_zero.defined())
        out.emplace_back("qzero", m_zero);
    return out;
}

std::int64_t QuantizedWeight::bytes() const
{
    std::int64_t n = 0;
    for (const auto* t : { &m_data, &m_scale, &m_zero })
        if (t->defined())
            n += static_cast<std::int64_t>(t->nbytes());
    return n;
}

c10::Device QuantizedWeight::device() const
{
    return m_data.defined() ? m_data.device() : c10::Device(c10::kCPU);
}

void QuantizedWeight::to(c10::Device device)
{
    if (!m_data.defined() || m_data.device() == device)
        return;
    for (auto* t : { &m_data, &m_scale, &m_zero })
        if (t->defined())
            *t = t->to(device);
    m_kernel = std::make_shared<KernelCache>();
}

void QuantizedWeight::releaseKernelForms() const
{
    if (!m_kernel)
        return;
    std::lock_guard<std::mutex> lock(m_kernel->mutex);
    m_kernel->int4Packed = at::Tensor();
    m_kernel->scaleAndZeros.clear();
}

std::int64_t QuantizedWeight::kernelFormBytes() const
{
    if (!m_kernel)
        return 0;
    std::lock_guard<std::mutex> lock(m_kernel->mutex);
    std::int64_t n
        = m_kernel->int4Packed.defined() ? static_cast<std::int64_t>(m_kernel->int4Packed.nbytes()) : 0;
    for (const auto& [_, t] : m_kernel->scaleAndZeros)
        n += static_cast<std::int64_t>(t.nbytes());
    return n;
}

void QuantizedWeight::setChunkElements(std::int64_t elements)
{
    if (elements <= 0)
        throw Error("QuantizedWeight: chunk elements must be positive");
    m_chunkElements = elements;
}

std::int64_t QuantizedWeight::chunkRows() const
{
    if (m_cols <= 0 || m_rows * m_cols <= m_chunkElements)
        return std::max<std::int64_t>(m_rows, 1);
    return std::max<std::int64_t>(1, m_chunkElements / m_cols);
}

// ---------------------------------------------------------------------------------------------------
at::Tensor QuantizedWeight::dequantizeRows(
    c10::ScalarType dtype, std::int64_t rowBegin, std::int64_t rowEnd) const
{
    const auto n = rowEnd - rowBegin;
    const auto data = m_data.narrow(0, rowBegin, n);
    switch (m_dtype) {
    case QuantDtype::Bf16:
        return dtype == at::kBFloat16 ? data : data.to(dtype);
    case QuantDtype::Int8: {
        auto w = data.to(dtype);
        w.mul_(m_scale.narrow(0, rowBegin, n).to(dtype).unsqueeze(1));
        return w;
    }
    case QuantDtype::Int4: {
        auto w = at::empty({ n, m_cols }, data.options().dtype(dtype));
        const auto pairs = w.view({ n, m_cols / 2, 2 });
        pairs.select(2, 0).copy_(at::bitwise_and(data, 15));
        pairs.select(2, 1).copy_(at::bitwise_right_shift(data, 4));
        // (q - 8) * scale + zero as q * scale + (zero - 8 * scale): one pass fewer over W_c, and in fp32 the
        // same value (8 * scale is exact, zero - 8 * scale exact for bf16 operands within 2^15 of each
        // other).
        const auto scale = m_scale.narrow(0, rowBegin, n).to(dtype);
        const auto offset = m_zero.narrow(0, rowBegin, n).to(dtype) - scale * 8;
        w.view({ n, m_cols / m_groupSize, m_groupSize }).mul_(scale.unsqueeze(2)).add_(offset.unsqueeze(2));
        return w;
    }
    }
    throw Error("QuantizedWeight: unknown storage");
}

at::Tensor QuantizedWeight::dequantize(c10::ScalarType dtype) const
{
    return dequantize(dtype, 0, m_rows);
}

at::Tensor QuantizedWeight::dequantize(
    c10::ScalarType dtype, std::int64_t rowBegin, std::int64_t rowEnd) const
{
    if (!defined())
        throw Error("QuantizedWeight: dequantize of an empty weight");
    if (rowBegin < 0 || rowEnd > m_rows || rowBegin > rowEnd)
        throw Error("QuantizedWeight: rows [" + std::to_string(rowBegin) + ", " + std::to_string(rowEnd)
            + ") outside [0, " + std::to_string(m_rows) + ")");
    c10::NoGradGuard noGrad;
    auto w = dequantizeRows(dtype, rowBegin, rowEnd);
    // bf16 storage read as bf16 is the stored tensor itself: the caller gets its own copy.
    return (m_dtype == QuantDtype::Bf16 && dtype == at::kBFloat16) ? w.clone() : w;
}

at::Tensor QuantizedWeight::embedding(const at::Tensor& ids, c10::ScalarType dtype) const
{
    if (!defined())
        throw Error("QuantizedWeight: embedding of an empty weight");
    c10::NoGradGuard noGrad;
    const auto flat = ids.reshape({ -1 });
    QuantizedWeight rows;
    rows.m_dtype = m_dtype;
    rows.m_groupSize = m_groupSize;
    rows.m_rows = flat.size(0);
    rows.m_cols = m_cols;
    rows.m_data = m_data.index_select(0, flat);
    if (m_scale.defined())
        rows.m_scale = m_scale.index_select(0, flat);
    if (m_zero.defined())
        rows.m_zero = m_zero.index_select(0, flat);
    auto sizes = ids.sizes().vec();
    sizes.push_back(m_cols);
    return rows.dequantizeRows(dtype, 0, rows.m_rows).view(sizes);
}

// ---------------------------------------------------------------------------------------------------
bool QuantizedWeight::kernelApplies(const at::Tensor& x) const
{
    if (!defined() || m_dtype == QuantDtype::Bf16 || !m_kernel)
        return false;
    const auto dtype = computeDtype(x);
    if (x.device().is_cpu()) {
        if (!isHalfPrecision(dtype) && dtype != at::kFloat)
            return false;
        return m_dtype == QuantDtype::Int8 || m_rows % 16 == 0;
    }
    if (x.device().is_cuda()) {
        if (dtype != at::kBFloat16 || m_kernel->cudaKernelFailed)
            return false;
        return m_dtype == QuantDtype::Int8 || (m_rows % 8 == 0 && cudaInnerKTiles(m_cols) > 0);
    }
    return false;
}

QuantMatmulPath QuantizedWeight::autoPath(const at::Tensor& x) const
{
    if (!kernelApplies(x) || m_cols <= 0)
        return QuantMatmulPath::Dequantize;
    const auto rows = x.numel() / m_cols;
    const auto dtype = computeDtype(x);
    if (x.device().is_cuda())
        return rows <= kCudaKernelMaxRows ? QuantMatmulPath::Kernel : QuantMatmulPath::Dequantize;
    if (!isHalfPrecision(dtype))
        return QuantMatmulPath::Dequantize;
    const auto limit = m_dtype == QuantDtype::Int8 ? kInt8KernelMaxRows : kInt4KernelMaxRows;
    return rows <= limit ? QuantMatmulPath::Kernel : QuantMatmulPath::Dequantize;
}

const at::Tensor& QuantizedWeight::int4KernelPacking() const
{
    auto& cache = *m_kernel;
    if (cache.int4Packed.defined())
        return cache.int4Packed;
    if (m_data.is_cuda()) {
        // ATen's CUDA packing reads value 2j from the high nibble: swap the portable layout's nibbles.
        const auto swapped
            = at::bitwise_or(at::bitwise_left_shift(m_data, 4), at::bitwise_right_shift(m_data, 4));
        cache.int4Packed = at::_convert_weight_to_int4pack(swapped, cudaInnerKTiles(m_cols));
        return cache.int4Packed;
    }
    // The CPU packing works on blocks of 64 rows: chunks of a multiple of 64 rows pack independently.
    const auto chunk
        = std::max<std::int64_t>(64, std::max<std::int64_t>(1, m_chunkElements / m_cols) / 64 * 64);
    auto packed = at::empty({ m_rows, m_cols / 2 }, m_data.options());
    for (std::int64_t r0 = 0; r0 < m_rows; r0 += chunk) {
        const auto n = std::min(chunk, m_rows - r0);
        const auto data = m_data.narrow(0, r0, n);
        auto values = at::empty({ n, m_cols / 2, 2 }, m_data.options().dtype(at::kInt));
        values.select(2, 0).copy_(at::bitwise_and(data, 15));
        values.select(2, 1).copy_(at::bitwise_right_shift(data, 4));
        packed.narrow(0, r0, n).copy_(at::_convert_weight_to_int4pack_for_cpu(values.view({ n, m_cols }), 1));
    }
    cache.int4Packed = packed;
    return cache.int4Packed;
}

const at::Tensor& QuantizedWeight::int4ScaleAndZeros(c10::ScalarType dtype) const
{
    auto& cache = *m_kernel;
    auto it = cache.scaleAndZeros.find(dtype);
    if (it == cache.scaleAndZeros.end()) {
        auto sz = at::stack({ m_scale, m_zero }, 2).transpose(0, 1).contiguous(); // [G, rows, 2]
        it = cache.scaleAndZeros.emplace(dtype, sz.to(dtype)).first;
    }
    return it->second;
}

at::Tensor QuantizedWeight::kernelForward(const at::Tensor& x2d) const
{
    std::lock_guard<std::mutex> lock(m_kernel->mutex);
    if (m_dtype == QuantDtype::Int8)
        return at::_weight_int8pack_mm(x2d, m_data, m_scale.to(x2d.scalar_type()));
    const auto& packed = int4KernelPacking();
    const auto& sz = int4ScaleAndZeros(x2d.scalar_type());
    if (x2d.is_cuda())
        return at::_weight_int4pack_mm(x2d, packed, m_groupSize, sz);
    return at::_weight_int4pack_mm_for_cpu(x2d, packed, m_groupSize, sz);
}

at::Tensor QuantizedWeight::forwardNoGrad(const at::Tensor& x, QuantMatmulPath path) const
{
    const auto dtype = computeDtype(x);
    const bool forced = path == QuantMatmulPath::Kernel;
    if (path == QuantMatmulPath::Auto)
        path = autoPath(x);
    const auto xD = x.scalar_type() == dtype ? x : x.to(dtype);
    auto outSizes = x.sizes().vec();
    outSizes.back() = m_rows;
    if (path == QuantMatmulPath::Kernel) {
        if (!kernelApplies(x))
            throw Error("QuantizedWeight: no ATen kernel for " + quantDtypeName(m_dtype) + " storage of "
                + shapeText({ m_rows, m_cols }) + " with a " + std::string(c10::toString(dtype))
                + " input on " + x.device().str());
        try {
            return at::_unsafe_view(kernelForward(xD.reshape({ -1, m_cols }).contiguous()), outSizes);
        } catch (const c10::Error& e) {
            if (forced || !x.is_cuda())
                throw Error(
                    std::string("QuantizedWeight: ATen kernel failed: ") + e.what_without_backtrace());
            m_kernel->cudaKernelFailed
                = true; // e.g. a GPU older than the kernel needs: dequantise from now on
        }
    }
    if (m_dtype == QuantDtype::Bf16 && dtype == at::kBFloat16)
        return at::linear(xD, m_data);
    const auto chunk = chunkRows();
    if (chunk >= m_rows)
        return at::linear(xD, dequantizeRows(dtype, 0, m_rows));
    const auto x2d = xD.reshape({ -1, m_cols });
    auto y = at::empty({ x2d.size(0), m_rows }, x2d.options());
    for (std::int64_t r0 = 0; r0 < m_rows; r0 += chunk) {
        const auto n = std::min(chunk, m_rows - r0);
        auto out = y.narrow(1, r0, n);
        at::mm_out(out, x2d, dequantizeRows(dtype, r0, r0 + n).t());
    }
    // Not a view for autograd (as at::matmul's own folding): callers add biases in place into the output.
    return at::_unsafe_view(y, outSizes);
}

at::Tensor QuantizedWeight::inputGradient(const at::Tensor& gradOutput, c10::ScalarType inputDtype) const
{
    const auto dtype = gradOutput.scalar_type();
    const auto g = gradOutput.reshape({ -1, m_rows });
    at::Tensor grad;
    if (m_dtype == QuantDtype::Bf16 && dtype == at::kBFloat16) {
        grad = at::mm(g, m_data);
    } else {
        const auto chunk = chunkRows();
        for (std::int64_t r0 = 0; r0 < m_rows; r0 += chunk) {
            const auto n = std::min(chunk, m_rows - r0);
            const auto w = dequantizeRows(dtype, r0, r0 + n);
            const auto gc = g.narrow(1, r0, n);
            if (grad.defined())
                grad.addmm_(gc, w);
            else
                grad = at::mm(gc, w);
        }
    }
    auto sizes = gradOutput.sizes().vec();
    sizes.back() = m_cols;
    grad = at::_unsafe_view(grad, sizes);
    return grad.scalar_type() == inputDtype ? grad : grad.to(inputDtype);
}

at::Tensor QuantizedWeight::matmul(const at::Tensor& x, QuantMatmulPath path) const
{
    if (!defined())
        throw Error("QuantizedWeight: matmul with an empty weight");
    if (x.dim() < 1 || x.size(-1) != m_cols)
        throw Error("QuantizedWeight: input " + shapeText(x.sizes()) + " does not end in "
            + std::to_string(m_cols) + " features");
    if (x.device() != m_data.device())
        throw Error("QuantizedWeight: input on " + x.device().str() + ", weight on " + m_data.device().str());
    return QuantizedMatmulFunction::apply(x, this, static_cast<std::int64_t>(path));
}

} // namespace ladder
