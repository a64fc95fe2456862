// emu::gemm: argument checks, quantization, kernel choice, threads, scale-back and
// output rounding around the kernels of emu_kernels_*.cc. Semantics: emu_gemm.h.
#include "duet/numerics/emu_gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "duet/core/error.h"
#include "duet/numerics/convert.h"
#include "numerics/emu_internal.h"
#include "numerics/emu_kernels.h"

namespace duet::numerics::emu {

namespace {

bool same_minifloat(const Minifloat& a, const Minifloat& b) {
  return a.exponent_bits == b.exponent_bits && a.mantissa_bits == b.mantissa_bits && a.bias == b.bias &&
         a.specials == b.specials;
}

bool is_fp32(const Format& f) { return f.is_float() && same_minifloat(f.fp, fp32()); }

// Largest magnitude and smallest non-zero magnitude an operand's quantized values can have.
double max_abs(const Format& f) { return f.is_float() ? f.fp.max_finite() : std::max(-f.lowest(), f.max_finite()); }
double min_step(const Format& f) { return f.is_float() ? f.fp.min_subnormal() : 1.0; }

int64_t blocks(int64_t K, int block) { return block > 0 ? (K + block - 1) / block : 0; }

void check_operand(const Operand& op, const char* name, int64_t rows, int64_t cols, int64_t K, bool is_a) {
  const Format& f = op.format;
  if (f.is_float()) {
    DUET_CHECK(f.fp.fits_fp32(), "emu gemm: operand ", name, " format ", f.name, " is not exact in FP32");
  } else {
    DUET_CHECK(f.int_bits <= 24, "emu gemm: operand ", name, " format ", f.name, " is wider than 24 bits");
  }
  size_t want = 0;
  switch (op.scaling) {
    case Scaling::None: want = 0; break;
    case Scaling::Tensor: want = 1; break;
    case Scaling::Channel: want = static_cast<size_t>(is_a ? rows : cols); break;
    case Scaling::Block:
      DUET_CHECK(op.block > 0, "emu gemm: operand ", name, " has block scaling with block ", op.block);
      want = static_cast<size_t>(blocks(K, op.block) * (is_a ? rows : cols));
      break;
  }
  DUET_CHECK(op.scales.size() == want, "emu gemm: operand ", name, " needs ", want, " scales, got ", op.scales.size());
}

int rounding_code(Rounding r) { return r == Rounding::NearestEven ? 0 : r == Rounding::TowardZero ? 1 : 2; }

kernels::Family to_kernel(KernelFamily f) {
  switch (f) {
    case KernelFamily::F32Fma: return kernels::Family::F32Fma;
    case KernelFamily::F64Exact: return kernels::Family::F64Exact;
    case KernelFamily::F64General: return kernels::Family::F64General;
    default: return kernels::Family::Int32;
  }
}

// kernels::Parallel over `*self` threads (the caller and threads - 1 helpers): tasks are taken
// from a shared counter, so a thread on a busy core simply takes fewer.
void run_tasks(void* self, int64_t tasks, void* ctx, void (*task)(void*, int64_t)) {
  const int threads = static_cast<int>(std::min<int64_t>(*static_cast<const int*>(self), tasks));
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i = next++; i < tasks; i = next++) task(ctx, i);
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
}

// Runs the kernel; rows are independent, so the result does not depend on the thread count.
void run_kernel(KernelFamily family, KernelPath path, const GemmSpec& spec, int64_t M, int64_t N, int64_t K,
                const float* qa, const float* qb, const std::vector<float>& sa, const std::vector<float>& sb,
                float* R) {
  kernels::Args base;
  base.N = N;
  base.K = K;
  base.lda = K;
  base.B = qb;
  base.chunk = spec.acc.chunk;
  base.mantissa_bits = spec.acc.fp.mantissa_bits;
  base.rounding = rounding_code(spec.acc.rounding);
  const Minifloat& af = spec.acc.fp;
  base.min_exponent = af.min_exponent();
  base.max_finite = af.max_finite();
  base.overflow_pos = af.decode_double(af.overflow_bits(0, spec.acc.overflow));
  base.overflow_neg = af.decode_double(af.overflow_bits(1u << (af.total_bits() - 1), spec.acc.overflow));
  base.nan_value = af.decode_double(af.encode(std::numeric_limits<float>::quiet_NaN(), spec.acc.rounding, spec.acc.overflow));
  base.unsigned_zero = af.specials == Specials::FNUZ;
  base.int_bits = spec.acc.int_bits;
  base.saturate = spec.acc.saturate;
  const int64_t nblk = spec.acc.chunk > 0 ? blocks(K, spec.acc.chunk) : 0;
  if (!sa.empty()) {
    base.sb = sb.data();
    base.sa_stride = nblk;
  }
  const int threads = static_cast<int>(std::clamp<int64_t>(spec.threads, 1, std::max<int64_t>(M, 1)));
  if (path == KernelPath::AVX2) {
    base.M = M;
    base.A = qa;
    base.R = R;
    if (!sa.empty()) base.sa = sa.data();
    kernels::Parallel par;
    par.self = const_cast<int*>(&threads);
    par.run = &run_tasks;
    kernels::run_avx2(to_kernel(family), base, par);
    return;
  }
  // Portable: contiguous row ranges, one per thread.
  auto run_rows = [&](int64_t m0, int64_t m1) {
    kernels::Args a = base;
    a.M = m1 - m0;
    a.A = qa + m0 * K;
    a.R = R + m0 * N;
    if (!sa.empty()) a.sa = sa.data() + m0 * nblk;
    kernels::run_portable(to_kernel(family), a);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run_rows, M * t / threads, M * (t + 1) / threads);
  run_rows(0, M / threads);
  for (auto& th : pool) th.join();
}

// Block scales in the kernels' layout: A as M×nblk, B as nblk×N; an operand without block
// scaling contributes ones (its tensor/channel scale is applied in step 4 instead, which the
// validation rules out when the other operand is block-scaled).
void block_scale_tables(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, std::vector<float>& sa,
                        std::vector<float>& sb) {
  const int64_t nblk = blocks(K, spec.acc.chunk);
  sa.assign(static_cast<size_t>(M * nblk), 1.0f);
  sb.assign(static_cast<size_t>(nblk * N), 1.0f);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t c = 0; c < nblk; ++c) sa[m * nblk + c] = block_scale(spec.a, m, c, K, true);
  }
  for (int64_t c = 0; c < nblk; ++c) {
    for (int64_t n = 0; n < N; ++n) sb[c * N + n] = block_scale(spec.b, n, c, K, false);
  }
}

// Steps 1-4 into y (M×N); shared by gemm and conv2d (which adds a bias before step 5).
GemmResult gemm_to_fp32(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, const float* A, const float* B,
                        float* Y) {
  validate(spec, M, N, K);
  GemmResult res;
  res.family = choose_family(spec, K);
  KernelPath path = spec.path;
  if (res.family == KernelFamily::Reference) path = KernelPath::Reference;
  if (path == KernelPath::Auto) path = kernels::cpu_has_avx2_fma() ? KernelPath::AVX2 : KernelPath::Portable;
  DUET_CHECK(path != KernelPath::AVX2 || kernels::cpu_has_avx2_fma(), "emu gemm: path avx2 needs AVX2 and FMA");
  res.path = path;
  if (path == KernelPath::Reference) {
    GemmSpec fp32_out = spec;
    fp32_out.out = *find_format("fp32");
    gemm_reference(fp32_out, M, N, K, A, B, Y);
    return res;
  }
  const std::vector<float> qa = quantize_fast(spec.a, A, M, K, spec.trans_a, true);
  const std::vector<float> qb = quantize_fast(spec.b, B, K, N, spec.trans_b, false);
  const bool block_scaled = spec.a.scaling == Scaling::Block || spec.b.scaling == Scaling::Block;
  std::vector<float> sa, sb;
  if (block_scaled) block_scale_tables(spec, M, N, K, sa, sb);
  run_kernel(res.family, path, spec, M, N, K, qa.data(), qb.data(), sa, sb, Y);
  if (!block_scaled && (spec.a.scaling != Scaling::None || spec.b.scaling != Scaling::None)) {
    for (int64_t m = 0; m < M; ++m) {
      const float s_m = channel_scale(spec.a, m);
      for (int64_t n = 0; n < N; ++n) Y[m * N + n] = Y[m * N + n] * (s_m * channel_scale(spec.b, n));
    }
  }
  return res;
}

void output_bulk(const Format& out, float* y, int64_t n) {
  if (is_fp32(out)) return;
  if (!out.is_float()) {
    for (int64_t i = 0; i < n; ++i) y[i] = output_value(out, y[i]);
    return;
  }
  std::vector<uint32_t> bits(static_cast<size_t>(n));
  ConvertOptions o;
  o.overflow = out.default_overflow;
  encode_bulk(out.fp, y, static_cast<size_t>(n), bits.data(), o);
  decode_bulk(out.fp, bits.data(), static_cast<size_t>(n), y);
}

}  // namespace

std::string Accumulator::describe() const {
  std::string s;
  if (kind == AccumulatorKind::Integer) {
    s = "int" + std::to_string(int_bits) + (saturate ? " saturating" : " wrapping");
  } else {
    s = fp.name + " " + rounding_name(rounding);
  }
  if (chunk > 0) s += ", promoted to fp32 every " + std::to_string(chunk) + " products";
  return s;
}

Accumulator accumulator_fp32() { return Accumulator{}; }

Accumulator accumulator_float(const Minifloat& f, Rounding r) {
  Accumulator a;
  a.fp = f;
  a.rounding = r;
  return a;
}

Accumulator accumulator_int(int bits, bool saturate) {
  Accumulator a;
  a.kind = AccumulatorKind::Integer;
  a.int_bits = bits;
  a.saturate = saturate;
  return a;
}

Accumulator accumulator_hopper_fp8(int mantissa_bits, int chunk, Rounding r) {
  Accumulator a;
  a.fp = Minifloat{"e8m" + std::to_string(mantissa_bits), 8, mantissa_bits, 127, Specials::IEEE};
  a.rounding = r;
  a.chunk = chunk;
  return a;
}

Accumulator parse_accumulator(const std::string& spec) {
  if (spec == "fp32") return accumulator_fp32();
  if (spec == "fp16") return accumulator_float(fp16());
  if (spec == "bf16") return accumulator_float(bf16());
  if (spec == "int32") return accumulator_int(32, false);
  if (spec == "int32sat") return accumulator_int(32, true);
  if (spec == "int24sat") return accumulator_int(24, true);
  if (spec == "int16sat") return accumulator_int(16, true);
  if (spec == "hopper") return accumulator_hopper_fp8();
  if (spec.rfind("hopper:", 0) == 0) {
    // hopper:M:N[:rne|rtz|rna]
    std::vector<std::string> parts;
    size_t start = 7;
    while (true) {
      const size_t colon = spec.find(':', start);
      parts.push_back(spec.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    DUET_CHECK(parts.size() == 2 || parts.size() == 3, "accumulator '", spec, "': expected hopper:MANTISSA:CHUNK[:rounding]");
    int m = 0, n = 0;
    try {
      m = std::stoi(parts[0]);
      n = std::stoi(parts[1]);
    } catch (const std::exception&) {
      fail("accumulator '", spec, "': expected integers in hopper:MANTISSA:CHUNK");
    }
    DUET_CHECK(m >= 1 && m <= 23 && n >= 1, "accumulator '", spec, "': mantissa bits 1..23 and chunk >= 1");
    return accumulator_hopper_fp8(m, n, parts.size() == 3 ? parse_rounding(parts[2]) : Rounding::TowardZero);
  }
  const Format f = parse_format(spec);
  DUET_CHECK(f.is_float(), "accumulator '", spec, "': integer accumulators are int32, int32sat, int24sat, int16sat");
  return accumulator_float(f.fp);
}

const char* path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Auto: return "auto";
    case KernelPath::Reference: return "reference";
    case KernelPath::Portable: return "portable";
    case KernelPath::AVX2: return "avx2";
  }
  return "?";
}

const char* family_name(KernelFamily f) {
  switch (f) {
    case KernelFamily::Reference: return "reference";
    case KernelFamily::F32Fma: return "f32-fma";
    case KernelFamily::F64Exact: return "f64-exact";
    case KernelFamily::F64General: return "f64-general";
    case KernelFamily::Int32: return "int32";
  }
  return "?";
}

KernelFamily choose_family(const GemmSpec& spec, int64_t K) {
  if (spec.path == KernelPath::Reference) return KernelFamily::Reference;
  const Accumulator& acc = spec.acc;
  const Format &fa = spec.a.format, &fb = spec.b.format;
  if (acc.kind == AccumulatorKind::Integer) {
    // Products and the running value must fit int32 lanes without overflow (saturating) or
    // wrap exactly (wrapping, where int32 arithmetic modulo 2^32 then sign extension is exact).
    if (fa.is_float() || fb.is_float()) return KernelFamily::Reference;
    const double pmax = max_abs(fa) * max_abs(fb);
    if (pmax >= 0x1p31) return KernelFamily::Reference;
    if (acc.saturate && pmax + std::ldexp(1.0, acc.int_bits - 1) >= 0x1p31) return KernelFamily::Reference;
    return KernelFamily::Int32;
  }
  if (acc.rounding == Rounding::Stochastic) return KernelFamily::Reference;
  if (same_minifloat(acc.fp, fp32()) && acc.rounding == Rounding::NearestEven && acc.overflow == Overflow::Infinity) {
    return KernelFamily::F32Fma;  // fmaf is exactly "exact product, one FP32 rounding"
  }
  // F64Exact: within one chunk every partial sum is a multiple of the smallest product step q
  // and at most L·max|a|·max|b|; if that span fits FP64's 53 bits, acc + p is exact in FP64,
  // and if it lies in the accumulator's normal range no subnormal or overflow rule applies.
  if (acc.fp.specials != Specials::IEEE || acc.overflow != Overflow::Infinity) return KernelFamily::F64General;
  const int64_t L = acc.chunk > 0 ? std::min<int64_t>(acc.chunk, K) : K;
  const double q = min_step(fa) * min_step(fb);
  const double bound = static_cast<double>(std::max<int64_t>(L, 1)) * max_abs(fa) * max_abs(fb);
  if (bound / q > 0x1p53 || q < acc.fp.min_normal() || bound > acc.fp.max_finite()) return KernelFamily::F64General;
  return KernelFamily::F64Exact;
}

void validate(const GemmSpec& spec, int64_t M, int64_t N, int64_t K) {
  DUET_CHECK(K >= 0 && (M < 0 || (M >= 0 && N >= 0)), "emu gemm: negative size");
  check_operand(spec.a, "A", M, N, K, true);
  check_operand(spec.b, "B", M, N, K, false);
  const Accumulator& acc = spec.acc;
  DUET_CHECK(acc.chunk >= 0, "emu gemm: chunk must be >= 0, got ", acc.chunk);
  if (acc.kind == AccumulatorKind::Integer) {
    DUET_CHECK(acc.int_bits >= 2 && acc.int_bits <= 32, "emu gemm: integer accumulator of ", acc.int_bits, " bits");
    DUET_CHECK(!spec.a.format.is_float() && !spec.b.format.is_float(),
               "emu gemm: an integer accumulator needs integer input formats, got ", spec.a.format.name, " and ",
               spec.b.format.name);
  } else {
    DUET_CHECK(acc.fp.fits_fp32(), "emu gemm: accumulator ", acc.fp.name, " is not exact in FP32");
    DUET_CHECK(acc.rounding != Rounding::Stochastic, "emu gemm: stochastic accumulation is not supported");
  }
  const bool ba = spec.a.scaling == Scaling::Block, bb = spec.b.scaling == Scaling::Block;
  if (ba || bb) {
    const int block = ba ? spec.a.block : spec.b.block;
    DUET_CHECK(!(ba && bb) || spec.a.block == spec.b.block, "emu gemm: A and B scale blocks differ (", spec.a.block,
               " vs ", spec.b.block, ")");
    DUET_CHECK(acc.chunk == block, "emu gemm: block scales of ", block, " need accumulator chunk ", block, ", got ",
               acc.chunk);
    DUET_CHECK((ba || spec.a.scaling == Scaling::None) && (bb || spec.b.scaling == Scaling::None),
               "emu gemm: block scaling on one operand cannot be combined with tensor or channel scales on the other");
  }
}

float channel_scale(const Operand& op, int64_t index) {
  if (op.scaling == Scaling::Tensor) return op.scales[0];
  if (op.scaling == Scaling::Channel) return op.scales[static_cast<size_t>(index)];
  return 1.0f;
}

float block_scale(const Operand& op, int64_t index, int64_t c, int64_t K, bool is_a) {
  if (op.scaling != Scaling::Block) return 1.0f;
  const int64_t nblk = blocks(K, op.block);
  if (is_a) return op.scales[static_cast<size_t>(index * nblk + c)];
  const int64_t N = static_cast<int64_t>(op.scales.size()) / nblk;
  return op.scales[static_cast<size_t>(c * N + index)];
}

namespace {

// Scale of logical element (r, c) of an operand (A: r = m, c = k; B: r = k, c = n).
float element_scale(const Operand& op, int64_t r, int64_t c, int64_t rows, int64_t cols, bool is_a) {
  switch (op.scaling) {
    case Scaling::None: return 1.0f;
    case Scaling::Tensor: return op.scales[0];
    case Scaling::Channel: return op.scales[static_cast<size_t>(is_a ? r : c)];
    case Scaling::Block: {
      const int64_t K = is_a ? cols : rows;
      return block_scale(op, is_a ? r : c, (is_a ? c : r) / op.block, K, is_a);
    }
  }
  return 1.0f;
}

}  // namespace

std::vector<float> quantize_reference(const Operand& op, const float* x, int64_t rows, int64_t cols, bool trans,
                                      bool is_a) {
  std::vector<float> q(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t index = trans ? c * rows + r : r * cols + c;  // position as passed
      float v = x[index];
      if (op.scaling != Scaling::None) v = v / element_scale(op, r, c, rows, cols, is_a);
      const uint64_t random = op.rounding == Rounding::Stochastic ? stochastic_bits(op.seed, static_cast<uint64_t>(index)) : 0;
      q[r * cols + c] = static_cast<float>(op.format.decode(op.format.encode(v, op.rounding, op.overflow, random)));
    }
  }
  return q;
}

// Integer formats without stochastic rounding: what Format::encode does (NaN
// gives 0, out-of-range values saturate, the rounding mode on the quotient).
// Values are clamped to the format's range first (|v| <= 2^23 for the 24-bit
// formats allowed), so adding 1.5 * 2^52 in double rounds to an integer in the
// current (nearest-even) mode.
std::vector<float> quantize_integer(const Operand& op, const float* x, int64_t rows, int64_t cols, bool trans,
                                    bool is_a) {
  const float lo = static_cast<float>(op.format.lowest()), hi = static_cast<float>(op.format.max_finite());
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  std::vector<float> q(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float v = x[trans ? c * rows + r : r * cols + c];
      if (op.scaling != Scaling::None) v = v / element_scale(op, r, c, rows, cols, is_a);
      if (v != v) {
        v = 0.0f;
      } else {
        v = std::min(std::max(v, lo), hi);
        switch (op.rounding) {
          case Rounding::TowardZero: v = std::trunc(v); break;
          case Rounding::NearestAway: v = std::round(v); break;
          default: v = static_cast<float>((static_cast<double>(v) + kMagic) - kMagic); break;  // not folded without -ffast-math
        }
      }
      q[r * cols + c] = v + 0.0f;  // -0 -> +0, as the integer encoding has no negative zero
    }
  }
  return q;
}

std::vector<float> quantize_fast(const Operand& op, const float* x, int64_t rows, int64_t cols, bool trans, bool is_a) {
  const bool stochastic = op.rounding == Rounding::Stochastic;
  if (!op.format.is_float() && !stochastic) return quantize_integer(op, x, rows, cols, trans, is_a);
  if (!op.format.is_float() || (stochastic && trans)) return quantize_reference(op, x, rows, cols, trans, is_a);
  const size_t n = static_cast<size_t>(rows * cols);
  std::vector<float> v(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) v[r * cols + c] = trans ? x[c * rows + r] : x[r * cols + c];
  }
  if (op.scaling != Scaling::None) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) v[r * cols + c] = v[r * cols + c] / element_scale(op, r, c, rows, cols, is_a);
    }
  }
  if (same_minifloat(op.format.fp, fp32())) {
    // FP32 to FP32 changes only non-finite values (overflow mode, NaN canonicalization).
    for (float& e : v) {
      if (!std::isfinite(e)) e = op.format.fp.decode(op.format.fp.encode(e, op.rounding, op.overflow));
    }
    return v;
  }
  std::vector<uint32_t> bits(n);
  ConvertOptions o;
  o.rounding = op.rounding;
  o.overflow = op.overflow;
  o.seed = op.seed;
  encode_bulk(op.format.fp, v.data(), n, bits.data(), o);
  decode_bulk(op.format.fp, bits.data(), n, v.data());
  return v;
}

float output_value(const Format& out, float y) {
  if (is_fp32(out)) return y;
  return static_cast<float>(out.decode(out.encode(y, Rounding::NearestEven, out.default_overflow)));
}

GemmResult gemm(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  const GemmResult res = gemm_to_fp32(spec, M, N, K, A, B, C);
  output_bulk(spec.out, C, M * N);
  return res;
}

void gemm_batched(const GemmSpec& spec, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t stride_a, const float* B, int64_t stride_b, float* C) {
  for (int64_t i = 0; i < batch; ++i) gemm(spec, M, N, K, A + i * stride_a, B + i * stride_b, C + i * M * N);
}

int64_t Conv2dShape::out_h() const { return (h + pad_top + pad_bottom - dilation_h * (kh - 1) - 1) / stride_h + 1; }
int64_t Conv2dShape::out_w() const { return (w + pad_left + pad_right - dilation_w * (kw - 1) - 1) / stride_w + 1; }

void conv2d(const GemmSpec& spec, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  DUET_CHECK(s.groups >= 1 && s.c % s.groups == 0 && s.o % s.groups == 0, "emu conv2d: channels ", s.c, " and ", s.o,
             " are not divisible by groups ", s.groups);
  DUET_CHECK(!spec.trans_a && !spec.trans_b, "emu conv2d: transposes do not apply");
  const int64_t oh = s.out_h(), ow = s.out_w();
  DUET_CHECK(oh > 0 && ow > 0, "emu conv2d: empty output ", oh, "x", ow);
  const int64_t cg = s.c / s.groups, og = s.o / s.groups, K = cg * s.kh * s.kw, P = oh * ow;
  GemmSpec g = spec;
  std::vector<float> cols(static_cast<size_t>(K * P));
  for (int64_t img = 0; img < s.n; ++img) {
    for (int64_t grp = 0; grp < s.groups; ++grp) {
      // im2col: row k = (c, ky, kx), column p = (oy, ox); padding reads as +0.
      for (int64_t c = 0; c < cg; ++c) {
        const float* plane = x + ((img * s.c) + grp * cg + c) * s.h * s.w;
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            float* row = cols.data() + ((c * s.kh + ky) * s.kw + kx) * P;
            for (int64_t oy = 0; oy < oh; ++oy) {
              const int64_t iy = oy * s.stride_h - s.pad_top + ky * s.dilation_h;
              for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t ix = ox * s.stride_w - s.pad_left + kx * s.dilation_w;
                row[oy * ow + ox] = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w ? plane[iy * s.w + ix] : 0.0f;
              }
            }
          }
        }
      }
      // Channel scales of the weights belong to this group's output channels.
      if (spec.a.scaling == Scaling::Channel) {
        g.a.scales.assign(spec.a.scales.begin() + grp * og, spec.a.scales.begin() + (grp + 1) * og);
      }
      DUET_CHECK(spec.a.scaling != Scaling::Block && spec.b.scaling != Scaling::Block,
                 "emu conv2d: block scales are not supported");
      DUET_CHECK(spec.b.scaling == Scaling::None || spec.b.scaling == Scaling::Tensor,
                 "emu conv2d: the input takes a tensor scale only");
      float* out = y + (img * s.o + grp * og) * P;
      gemm_to_fp32(g, og, P, K, w + grp * og * K, cols.data(), out);
      for (int64_t o = 0; o < og; ++o) {
        const float b = bias ? bias[grp * og + o] : 0.0f;
        for (int64_t p = 0; p < P; ++p) {
          float& v = out[o * P + p];
          if (bias) v = v + b;
          v = output_value(spec.out, v);
        }
      }
    }
  }
}

}  // namespace duet::numerics::emu
