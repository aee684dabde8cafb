#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace ladder {

// Storage of a frozen weight (issue 18, docs/PERFORMANCE.md "Frozen backbone storage").
enum class QuantDtype {
    Bf16, // the weight rounded to bf16: 2 bytes a value
    Int8, // symmetric, per output row: q int8 in [-127, 127], w = q * scale[row]; scale bf16
    Int4, // asymmetric, per group of groupSize values along the input dimension: q in [0, 15],
          // w = (q - 8) * scale[row][group] + zero[row][group] (ATen's convention); scale, zero bf16
};

// "bf16", "int8", "int4" (the run spec's backbone_dtype; "fp32" is not a QuantDtype). Throws ladder::Error.
QuantDtype parseQuantDtype(const std::string& name);
std::string quantDtypeName(QuantDtype dtype);
// Whether the int4 kernels accept this group size (32, 64, 128, 256).
bool isSupportedInt4GroupSize(std::int64_t groupSize);

// How matmul() computes: Auto picks by the policy below; Kernel and Dequantize force a path (the tests and
// `ladder bench quant` compare them). Kernel throws ladder::Error where no ATen kernel applies.
enum class QuantMatmulPath { Auto, Kernel, Dequantize };

// A frozen weight matrix W (rows = out features, cols = in features) held as bf16, int8 or int4. It never
// takes a gradient; matmul() gives the input its gradient.
//
// Layout (the portable form, what saveQuantizedBackbone writes; all tensors contiguous, on one device):
//   bf16: data bf16 [rows, cols]                          (2 bytes a value)
//   int8: data int8 [rows, cols], scale bf16 [rows]       (1 byte a value + 2 bytes a row)
//   int4: data uint8 [rows, cols/2], two values a byte, value 2j in the low nibble and 2j+1 in the high
//         nibble of byte j; scale and zero bf16 [rows, cols/groupSize]   (0.5 byte a value + 4 bytes a group)
// The ATen-packed int4 form for the kernels is made lazily, per device, the first time a kernel runs.
//
// Matmul policy (measured, docs/PERFORMANCE.md): with a bf16 (or fp16) input ATen's kernels beat
// dequantise + mm only for few rows; with an fp32 input they are 35-75x slower than fp32 mm at training
// sizes. On the CPU, 768 -> 3072, 2 threads, torch 2.11 (kernel vs dequantise + mm, ms):
//   bf16 input:  M = 1: int8 0.07 vs 0.50, int4 0.07 vs 1.56;  M = 16: int8 0.50 vs 0.64, int4 0.45 vs 1.48;
//                M = 32: int8 0.99 vs 0.80, int4 0.88 vs 1.67; M = 64: int8 1.99 vs 1.13, int4 1.76 vs 2.04;
//                M = 128: int8 4.99 vs 1.87, int4 3.52 vs 2.99
//   fp32 input:  M = 16: int8 16.6 vs 1.17, int4 33.7 vs 2.10 (the kernel never wins)
// so Auto uses the kernel when the compute dtype is bf16 or fp16 and M <= kInt8KernelMaxRows (int8) or
// M <= kInt4KernelMaxRows (int4), and dequantises otherwise. On CUDA (not measured: no GPU in the session
// that wrote this) the kernels run for a bf16 compute dtype and M <= kCudaKernelMaxRows, decoding sizes,
// where dequantising a whole matrix per token costs most; `ladder bench quant` prints the crossover of the
// device it runs on. bf16 storage has no kernel: a bf16 compute dtype multiplies the stored tensor itself.
//
// Compute dtype D: x's dtype, or autocast's dtype when autocast is on for x's device type and x is fp32 (as
// at::linear would). The output has dtype D.
//
// Transient allocations: what exists at once beyond x, the stored tensors and the output (the memory
// estimator replays these). M = x.numel() / cols; G = cols / groupSize; D the compute dtype. A matrix with
// rows * cols <= chunkElements() (default kDequantChunkElements = 2^22 = 4,194,304: every T5 projection up to
// t5-large's 1024 x 4096) is handled as one chunk of R = rows rows; a larger one (the LM head / tied
// embedding: 32128 x 768) in chunks of R = floor(chunkElements() / cols) rows (the last one smaller), one
// chunk alive at a time. CPU and CUDA alike unless said.
//   Forward, dequantise path (every training step; `Auto` with an fp32 compute dtype):
//     - xD = x.to(D) [M, cols] D only when x's dtype is not D (bf16 autocast over an fp32 x); alive for the
//       whole forward, freed at its end (at::linear under autocast makes the same copy).
//     - Per chunk, the dequantised rows W_c [R, cols] D:
//         bf16 storage: nothing when D is bf16 (the stored tensor itself, never chunked); else data.to(D).
//         int8: data.to(D), scaled in place by scale.to(D) [R] D (no copy when D is bf16).
//         int4: W_c = empty [R, cols] D; (data & 15) then (data >> 4), each a uint8 [R, cols/2] made,
//               copied into W_c and freed; then in place * scale and + offset, where scale = scale.to(D)
//               [R, G] D (a view when D is bf16) and offset = zero.to(D) - 8 * scale [R, G] D (with its
//               temporaries zero.to(D) and 8 * scale, [R, G] D each, unless D is bf16 for the first).
//               Peak: W_c + one uint8 [R, cols/2] (the [R, G] tensors are cols/groupSize times smaller).
//       W_c is freed when its product is done.
//     - One chunk: y = at::linear(xD, W_c) is the output (x.reshape is a view for a contiguous x). Several:
//       y = empty [M, rows] D is the output and at::mm_out writes each chunk's columns into it in place
//       (measured: no further allocation, fp32 and bf16, CPU).
//   Forward, kernel path (bf16/fp16 compute and few rows: generation and evaluation, not training steps):
//     - xD as above, as a contiguous [M, cols] (a copy only for a non-contiguous x).
//     - int8: scale.to(D) [rows] D per call (none when D is bf16).
//     - int4, made at the first kernel call on a device and kept until to() or releaseKernelForms() (not
//       transient; kernelFormBytes() tells): CPU: ATen's
//       packing uint8 [rows, cols/2], built in chunks of Rk = max(64, floor(chunkElements() / cols / 64) *
//       64) rows, each from an int32 [Rk, cols] of unpacked values (filled from one uint8 [Rk, cols/2] at a
//       time) and ATen's uint8 [Rk, cols/2] result, copied into the kept tensor. CUDA: the nibble-swapped
//       uint8 [rows, cols/2] (from two uint8 [rows, cols/2] shifts, transient) and ATen's int32
//       [rows/8, cols/(16 k), 32, k/2] (k = innerKTiles 8, 4 or 2: rows * cols / 2 bytes, kept). Also
//       kept, per compute dtype: scaleAndZeros [G, rows, 2] D, made from a bf16 [rows, G, 2] stack and its
//       transposed contiguous copy (then .to(D) unless D is bf16).
//   Backward (grad_y of dtype Dg, the output's dtype): always dequantises; the node saved nothing but
//     references to the stored tensors and a few integers (no activation, no x).
//     - g = grad_y.reshape(M, rows) (a view for a contiguous grad_y).
//     - Per chunk, W_c [R, cols] Dg made as in the forward (same temporaries); grad_x = mm(g[:, chunk], W_c)
//       [M, cols] Dg at the first chunk, addmm_ into it for the others (measured: no further allocation).
//       bf16 storage with Dg bf16: grad_x = mm(g, data), no W_c.
//     - When x's dtype is not Dg (autocast), the returned gradient is grad_x.to(x's dtype) [M, cols]; the Dg
//       grad_x is freed once it is made (both exist for a moment).
//   embedding(ids, D), n = ids.numel(): the gathered stored rows (bf16: [n, cols] bf16; int8: [n, cols]
//     int8 and [n] bf16; int4: [n, cols/2] uint8 and two [n, G] bf16), alive until the result exists; then
//     their dequantisation as one chunk of n rows (above), which is the output [n, cols] D (bf16 storage read
//     as bf16: the gathered rows are the output). No autograd node (the stored matrix takes no gradient).
//   quantize() (before training: createMethod), per chunk of R rows: the rows as fp32 [R, cols] (a copy
//     unless already fp32), at most two more fp32 [R, cols] temporaries and a uint8/int8 [R, cols].
class QuantizedWeight {
public:
    static constexpr std::int64_t kDequantChunkElements = std::int64_t { 1 } << 22;
    static constexpr std::int64_t kInt8KernelMaxRows = 16;
    static constexpr std::int64_t kInt4KernelMaxRows = 64;
    static constexpr std::int64_t kCudaKernelMaxRows = 16;

    QuantizedWeight() = default;

    // Quantises a [rows, cols] floating-point weight of any dtype (fp32, bf16, fp16, fp64) on its device.
    // int4: cols must be divisible by groupSize, one of 32, 64, 128, 256. Throws ladder::Error.
    static QuantizedWeight quantize(const at::Tensor& weight, QuantDtype dtype, std::int64_t groupSize = 64);

    // From stored parts (the layout above): "qdata", "qscale" (int8, int4), "qzero" (int4). Shapes and
    // dtypes are checked against (rows, cols, groupSize); an error names `source` and the part.
    static QuantizedWeight fromParts(QuantDtype dtype, std::int64_t groupSize, std::int64_t rows,
        std::int64_t cols, const std::map<std::string, at::Tensor>& parts, const std::string& source);
    // The parts by name, as fromParts reads them (the tensors themselves, not copies).
    std::vector<std::pair<std::string, at::Tensor>> parts() const;

    bool defined() const { return m_data.defined(); }
    QuantDtype dtype() const { return m_dtype; }
    std::int64_t groupSize() const { return m_groupSize; } // int4 only; 0 otherwise
    std::int64_t rows() const { return m_rows; }
    std::int64_t cols() const { return m_cols; }
    std::int64_t numel() const { return m_rows * m_cols; }
    // Bytes held: data + scale + zero (not the lazily made kernel form).
    std::int64_t bytes() const;
    c10::Device device() const;
    // Moves the stored tensors; drops the kernel forms.
    void to(c10::Device device);
    // Frees the kernel forms made so far (int4's ATen packing and scaleAndZeros): they are made again at the
    // next kernel call. For a caller that evaluates with kernels (bf16, few rows) and then trains, where
    // they would otherwise stay allocated through the training steps.
    void releaseKernelForms() const;
    // Bytes of the kernel forms held now.
    std::int64_t kernelFormBytes() const;

    // The weight (or rows [rowBegin, rowEnd)) as a dense tensor of `dtype`, on the stored device.
    at::Tensor dequantize(c10::ScalarType dtype) const;
    at::Tensor dequantize(c10::ScalarType dtype, std::int64_t rowBegin, std::int64_t rowEnd) const;

    // x [..., cols] -> x W^T [..., rows], differentiable with respect to x (a torch::autograd::Function: the
    // backward dequantises again, chunk by chunk).
    at::Tensor matmul(const at::Tensor& x, QuantMatmulPath path = QuantMatmulPath::Auto) const;
    // The path Auto takes for x (after autocast).
    QuantMatmulPath autoPath(const at::Tensor& x) const;
    // Whether an ATen kernel exists for this storage, x's device and the compute dtype D (shape conditions
    // included: int4 on the CPU needs rows divisible by 16; on CUDA rows divisible by 8 and a bf16 D).
    bool kernelApplies(const at::Tensor& x) const;

    // Rows `ids` (any shape, int64) dequantised to `dtype`: ids.sizes() + [cols]. Equal to
    // dequantize(dtype).index_select(0, ids.flatten()) without dequantising the other rows.
    at::Tensor embedding(const at::Tensor& ids, c10::ScalarType dtype) const;

    // Rows per dequantisation chunk: chunkElements() / cols (at least 1). Tests shrink chunkElements().
    std::int64_t chunkElements() const { return m_chunkElements; }
    void setChunkElements(std::int64_t elements);
    std::int64_t chunkRows() const;

    // Bytes a [rows, cols] weight takes in each storage (fp32 for comparison): `ladder info`.
    static std::int64_t storageBytes(
        const std::string& dtype, std::int64_t rows, std::int64_t cols, std::int64_t groupSize);

private:
    friend struct QuantizedMatmulFunction;
    struct KernelCache;
    at::Tensor forwardNoGrad(const at::Tensor& x, QuantMatmulPath path) const;
    at::Tensor inputGradient(const at::Tensor& gradOutput, c10::ScalarType inputDtype) const;
    at::Tensor kernelForward(const at::Tensor& x2d) const;
    const at::Tensor& int4KernelPacking() const;
    const at::Tensor& int4ScaleAndZeros(c10::ScalarType dtype) const;
    // Rows [rowBegin, rowEnd) in `dtype`; for bf16 storage read as bf16, the stored rows themselves (a view).
    at::Tensor dequantizeRows(c10::ScalarType dtype, std::int64_t rowBegin, std::int64_t rowEnd) const;

    QuantDtype m_dtype = QuantDtype::Bf16;
    std::int64_t m_groupSize = 0;
    std::int64_t m_rows = 0;
    std::int64_t m_cols = 0;
    std::int64_t m_chunkElements = kDequantChunkElements;
    at::Tensor m_data;
    at::Tensor m_scale;
    at::Tensor m_zero;
    std::shared_ptr<KernelCache> m_kernel; // shared by copies; reset by to()
};

} // namespace ladder
