// Emulated GEMM / MatMul / Conv: what a reduced-precision datapath computes,
// bit for bit, on this CPU. Issue 3 item 4 (the "emu" kernels).
//
// Exact semantics of C = A·B (A is M×K, B is K×N, row-major, optional transposes):
//
//  1. Quantize. Each input element x with scale s (per tensor, per channel, per block; see
//     Scaling) becomes the value q = decode_F(encode_F(x / s, rounding, overflow)) of its
//     operand's format F (x / s is one FP32 division; skipped when there is no scale).
//     Stochastic rounding uses stochastic_bits(seed, i) with i the element's row-major index
//     in the operand as passed (before any transpose). Formats must hold every value exactly
//     in FP32: floats with fits_fp32(), integers of at most 24 bits.
//  2. Multiply exactly: p_k = qa[m,k] · qb[k,n] with no rounding.
//  3. Accumulate in increasing k, in chunks (the "block size") of `chunk` products
//     (chunk 0: one chunk of all K). Within a chunk the accumulator starts at +0 and
//        Float accumulator F_acc: acc = round_{F_acc}(acc + p_k)   (exact sum, one rounding with
//                                    the accumulator's rounding and overflow modes; IEEE zero signs:
//                                    an exact zero sum is +0 unless both addends are -0)
//        Integer accumulator of b bits: acc = saturate_b(acc + p_k)   or   wrap_b(acc + p_k)
//     At the end of chunk c the chunk's value is added into an FP32 partial sum:
//        outer = fmaf(float(acc), s_c, outer)     (one FP32 rounding; outer starts at +0)
//     where s_c = fl32(sa_block[m][c] · sb_block[c][n]) with per-block scales, else 1.
//     With chunk 0 the single chunk's float(acc) is the result (no extra rounding for float
//     accumulators, which fit FP32; integer accumulators are converted to FP32 with RNE).
//     Hopper FP8 (accumulator_hopper_fp8): a 22-bit E8M13 accumulator that truncates, promoted
//     into FP32 every 128 products — the reported H100/H800 behaviour (SageAttention2: "FP22",
//     1-8-13; DeepSeek-V3: "about 14 bits", promotion interval 128). Both are parameters.
//  4. Scale back (per-tensor and per-channel scales): y = fl32(r · fl32(sa[m] · sb[n])).
//  5. Output: C[m,n] = decode_C(encode_C(y, nearest-even, C's default overflow)), as float.
//
// Scaling: Tensor (one scale), Channel (A: one per row m of the M×K operand; B: one per column n),
// Block (blocks of `block` consecutive k: A has M×ceil(K/block) scales, B has ceil(K/block)×N;
// a block-scaled GEMM needs chunk == block, so each block's dot product is scaled once, as in
// OCP MX and DeepSeek's FP8 recipe).
//
// Kernels: every configuration has a slow exact reference (gemm_reference: exact sums of
// arbitrary width, rounded at exactly the stated points) and a fast path chosen at run time:
//  - F32Fma: FP32 accumulation with nearest-even, any input format. fmaf(a, b, acc) rounds
//    the exact a·b + acc once, which is precisely step 3, so a blocked FMA GEMM that keeps the
//    k order of each output element is bit-exact (BF16×BF16→FP32 is this kernel).
//  - F64Exact: float accumulators (any precision, rne/rtz/rna) when every partial sum of a chunk
//    is exact in FP64 and inside the accumulator's normal range (FP8 E4M3 inputs, for example):
//    acc + p is one FP64 FMA, the rounding is integer arithmetic on the FP64 bit pattern.
//  - F64General: every other float accumulator (FP16 accumulation of FP16 inputs, E5M2 with
//    a narrow accumulator, subnormal sums, saturating or FNUZ accumulators): TwoSum in FP64 gives
//    acc + p exactly as s + e; s is rounded in units of the quantum and e breaks ties and
//    decides toward-zero steps. About 15x the work of F64Exact per product.
//  - Int32: integer accumulators when products and saturation fit 32-bit lanes (INT8/INT4
//    inputs with INT32, saturating INT16 or INT24 accumulators).
//  - Reference: the rest (integer accumulators whose sums need more than 32-bit lanes).
// AVX2+FMA versions are used when the CPU has them; portable C++ otherwise. Results never
// depend on the path or the thread count (tests compare every path with the reference).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "duet/numerics/format.h"

namespace duet::numerics::emu {

enum class Scaling { None, Tensor, Channel, Block };

struct Operand {
  Format format;                          // values are rounded to this format
  Rounding rounding = Rounding::NearestEven;
  Overflow overflow = Overflow::Saturate; // what an out-of-range x / s becomes
  Scaling scaling = Scaling::None;
  std::vector<float> scales;              // see Scaling; empty for None
  int block = 0;                          // Scaling::Block: scale block length along K
  uint64_t seed = 0;                      // Rounding::Stochastic
};

enum class AccumulatorKind { Float, Integer };

struct Accumulator {
  AccumulatorKind kind = AccumulatorKind::Float;
  Minifloat fp = fp32();                  // Float: the accumulator's format (fits_fp32())
  Rounding rounding = Rounding::NearestEven;  // Float: rne, rtz or rna
  Overflow overflow = Overflow::Infinity;
  int int_bits = 32;                      // Integer: 2..32
  bool saturate = false;                  // Integer: saturate (true) or wrap (false)
  int chunk = 0;                          // products per chunk before promotion to FP32; 0 = all K

  std::string describe() const;
};

// Presets.
Accumulator accumulator_fp32();
Accumulator accumulator_float(const Minifloat& f, Rounding r = Rounding::NearestEven);  // e.g. fp16()
Accumulator accumulator_int(int bits, bool saturate);  // int(32, false): INT32 as VNNI (wraps)
Accumulator accumulator_hopper_fp8(int mantissa_bits = 13, int chunk = 128,
                                   Rounding r = Rounding::TowardZero);
// "fp32", "fp16", "bf16", "int32", "int32sat", "int24sat", "int16sat", "hopper" (e8m13 rtz /128),
// "hopper:M:N[:rne|rtz]", or any float format spec ("e8m13"). Throws duet::Error when unknown.
Accumulator parse_accumulator(const std::string& spec);

enum class KernelPath { Auto, Reference, Portable, AVX2 };
const char* path_name(KernelPath p);

struct GemmSpec {
  Operand a, b;
  Accumulator acc;
  Format out = *find_format("fp32");
  bool trans_a = false;  // A given as K×M
  bool trans_b = false;  // B given as N×K
  KernelPath path = KernelPath::Auto;
  int threads = 1;
};

// Which kernel family serves this spec on this CPU (Reference when no fast one applies).
enum class KernelFamily { Reference, F32Fma, F64Exact, F64General, Int32 };
const char* family_name(KernelFamily f);
KernelFamily choose_family(const GemmSpec& spec, int64_t K);

struct GemmResult {
  KernelFamily family = KernelFamily::Reference;
  KernelPath path = KernelPath::Reference;
};

// C (M×N, row-major, contiguous) = emulated A·B. A is M×K (K×M with trans_a), B is K×N
// (N×K with trans_b), both row-major and contiguous.
GemmResult gemm(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C);
// The same through the slow exact reference, whatever spec.path says.
void gemm_reference(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C);

// Batched: batch·M×K times batch·K×N; a stride of 0 broadcasts (ONNX MatMul with a shared B).
// Scales and stochastic-rounding indices are per matrix (the same for every batch entry).
void gemm_batched(const GemmSpec& spec, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t stride_a, const float* B, int64_t stride_b, float* C);

// 2-D convolution, NCHW input, OIHW weights, lowered to GEMM via im2col per image and group:
// A = weights (O/g × C/g·kh·kw, so Channel scaling of A is per output channel), B = im2col
// columns (C/g·kh·kw × OH·OW). Accumulation order is k = (c, ky, kx), lexicographic; padding
// contributes exact zeros. Bias, if given, is added afterwards in FP32 before the output
// rounding: C = round_out(fl32(y + bias[o])).
struct Conv2dShape {
  int64_t n, c, h, w;   // input
  int64_t o, kh, kw;    // weights O × C/g × kh × kw
  int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1, groups = 1;
  int64_t out_h() const;
  int64_t out_w() const;
};
void conv2d(const GemmSpec& spec, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);

// Step 5 for one value: y rounded to the output format (nearest-even, the format's default overflow).
float output_value(const Format& out, float y);

}  // namespace duet::numerics::emu
