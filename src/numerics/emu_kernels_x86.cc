// AVX2+FMA emu kernels: a GotoBLAS-style blocked GEMM (B packed in KC×NR panels,
// A in MR×KC slivers, an MR×NR register tile) written once over a lane policy:
//   F32Fma    8 floats,   acc = fma(a, b, acc)
//   F64Exact  4 doubles,  acc = round_P(fma(a, b, acc))   (the FMA is exact by construction)
//   Int32     8 int32s,   acc = saturate_or_wrap(acc + a·b)
// Each output element sees its products in increasing k: K is split into KC blocks processed
// in order, and the accumulator is stored exactly between blocks (or, with chunked
// accumulation, KC is the chunk and each block ends with the FP32 promotion).
//
// The whole file compiles for AVX2+FMA (pragma below, after the includes, which are C headers
// only, so no inline library code built for AVX2 can be picked by the linker for other files).
// Callers check the CPU first.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "numerics/emu_kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace duet::numerics::emu::kernels {

#if defined(__x86_64__)

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// Everything below is compiled for AVX2+FMA (the dispatcher calls it only on
// such CPUs). GCC takes the pragma; clang needs the attribute on every
// function, helpers and lambdas included.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));

struct LaneF32 {
  using T = float;
  using V = v8f;
  static constexpr int W = 8, MR = 4, NR = 16, KC = 256, MC = 64;
  static T from_float(float x) { return x; }
  static float to_float(T x) { return x; }
  static V broadcast(T x) { return _mm256_set1_ps(x); }
  V step(V acc, V a, V b) const { return _mm256_fmadd_ps(a, b, acc); }
};

// Rounding of an FP64 value to P mantissa bits on its bit pattern (sign-magnitude, so the
// same integer operations round negative values symmetrically); a carry moves into the exponent.
// Valid because the dispatcher only sends sums that stay in the accumulator's normal range.
template <int Rounding>  // 0 nearest-even, 1 toward zero, 2 nearest-away
struct LaneF64 {
  using T = double;
  using V = v4d;
  static constexpr int W = 4, MR = 4, NR = 8, KC = 256, MC = 48;
  v4u keep, bias;
  int shift;
  explicit LaneF64(int mantissa_bits) : shift(52 - mantissa_bits) {
    keep = (v4u){} + ~((uint64_t{1} << shift) - 1);
    bias = (v4u){} + (Rounding == 0 ? (uint64_t{1} << (shift - 1)) - 1 : uint64_t{1} << (shift - 1));
  }
  static T from_float(float x) { return x; }
  static float to_float(T x) { return static_cast<float>(x); }
  static V broadcast(T x) { return _mm256_set1_pd(x); }
  V step(V acc, V a, V b) const {
    v4u u = (v4u)_mm256_fmadd_pd(a, b, acc);
    if constexpr (Rounding == 0) u += bias + ((u >> shift) & 1);
    if constexpr (Rounding == 2) u += bias;
    return (V)(u & keep);
  }
};

// Any float accumulator: general_step of emu_kernels_portable.cc on four lanes (TwoSum, scale
// by the quantum, round to an integer, fix ties and toward-zero edges with the error term,
// then overflow, NaN and unsigned zero).
template <int Rounding>
struct LaneF64General {
  using T = double;
  using V = v4d;
  static constexpr int W = 4, MR = 4, NR = 8, KC = 256, MC = 48;
  __m256i emin, mbits, c2046, c7ff;
  __m256d maxv, ovf_pos, ovf_neg, nan_value, sign, half, one, pow_m, inf;
  bool unsigned_zero;
  explicit LaneF64General(const Args& a) : unsigned_zero(a.unsigned_zero) {
    emin = _mm256_set1_epi64x(a.min_exponent + 1023);
    mbits = _mm256_set1_epi64x(a.mantissa_bits);
    c2046 = _mm256_set1_epi64x(2046);
    c7ff = _mm256_set1_epi64x(0x7FF);
    maxv = _mm256_set1_pd(a.max_finite);
    ovf_pos = _mm256_set1_pd(a.overflow_pos);
    ovf_neg = _mm256_set1_pd(a.overflow_neg);
    nan_value = _mm256_set1_pd(a.nan_value);
    sign = _mm256_set1_pd(-0.0);
    half = _mm256_set1_pd(0.5);
    one = _mm256_set1_pd(1.0);
    pow_m = _mm256_set1_pd(static_cast<double>(uint64_t{1} << a.mantissa_bits));
    inf = _mm256_set1_pd(__builtin_inf());
  }
  static T from_float(float x) { return x; }
  static float to_float(T x) { return static_cast<float>(x); }
  static V broadcast(T x) { return _mm256_set1_pd(x); }
  V step(V acc_v, V a, V b) const {
    const __m256d acc = acc_v, p = _mm256_mul_pd(a, b);
    const __m256d s = _mm256_add_pd(acc, p);
    const __m256d bp = _mm256_sub_pd(s, acc), ap = _mm256_sub_pd(s, bp);
    const __m256d e = _mm256_add_pd(_mm256_sub_pd(acc, ap), _mm256_sub_pd(p, bp));
    const __m256i E = _mm256_and_si256(_mm256_srli_epi64(_mm256_castpd_si256(s), 52), c7ff);
    const __m256i above = _mm256_cmpgt_epi64(E, emin);
    const __m256i qe = _mm256_sub_epi64(_mm256_blendv_epi8(emin, E, above), mbits);
    const __m256d Q = _mm256_castsi256_pd(_mm256_slli_epi64(qe, 52));
    const __m256d inv_q = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_sub_epi64(c2046, qe), 52));
    const __m256d t = _mm256_mul_pd(s, inv_q), f = _mm256_mul_pd(e, inv_q);
    const __m256d tr = _mm256_round_pd(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256d frac = _mm256_andnot_pd(sign, _mm256_sub_pd(t, tr));
    const __m256d f_nonzero = _mm256_cmp_pd(f, _mm256_setzero_pd(), _CMP_NEQ_OQ);
    const __m256d f_sign = _mm256_and_pd(f, sign);
    __m256d r;
    if constexpr (Rounding == 1) {
      const __m256d opposite = _mm256_xor_pd(f, t);  // sign bit set where f pulls toward zero
      const __m256d fix = _mm256_and_pd(
          _mm256_and_pd(_mm256_cmp_pd(frac, _mm256_setzero_pd(), _CMP_EQ_OQ), f_nonzero), opposite);
      const __m256d edge = _mm256_and_pd(_mm256_cmp_pd(_mm256_andnot_pd(sign, t), pow_m, _CMP_EQ_OQ),
                                         _mm256_castsi256_pd(above));
      const __m256d delta = _mm256_or_pd(_mm256_blendv_pd(one, half, edge), f_sign);
      r = _mm256_blendv_pd(tr, _mm256_add_pd(t, delta), fix);
    } else {
      if constexpr (Rounding == 0) {
        r = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      } else {
        const __m256d away = _mm256_add_pd(tr, _mm256_or_pd(one, _mm256_and_pd(t, sign)));
        r = _mm256_blendv_pd(tr, away, _mm256_cmp_pd(frac, half, _CMP_GE_OQ));
      }
      const __m256d tie = _mm256_and_pd(_mm256_cmp_pd(frac, half, _CMP_EQ_OQ), f_nonzero);
      r = _mm256_blendv_pd(r, _mm256_add_pd(t, _mm256_or_pd(half, f_sign)), tie);
    }
    r = _mm256_or_pd(_mm256_andnot_pd(sign, r), _mm256_and_pd(t, sign));
    __m256d v = _mm256_mul_pd(r, Q);
    const __m256d abs_s = _mm256_andnot_pd(sign, s);
    const __m256d over = _mm256_or_pd(_mm256_cmp_pd(_mm256_andnot_pd(sign, v), maxv, _CMP_GT_OQ),
                                      _mm256_cmp_pd(abs_s, inf, _CMP_EQ_OQ));
    v = _mm256_blendv_pd(v, _mm256_blendv_pd(ovf_pos, ovf_neg, s), over);
    v = _mm256_blendv_pd(v, nan_value, _mm256_cmp_pd(s, s, _CMP_UNORD_Q));
    if (unsigned_zero) v = _mm256_add_pd(v, _mm256_setzero_pd());
    return v;
  }
};

template <bool Saturate>
struct LaneI32 {
  using T = int32_t;
  using V = v8i;
  static constexpr int W = 8, MR = 4, NR = 16, KC = 256, MC = 64;
  __m256i lo, hi;
  int wrap_shift;
  explicit LaneI32(int bits) : wrap_shift(32 - bits) {
    const int64_t h = (int64_t{1} << (bits - 1)) - 1;
    lo = _mm256_set1_epi32(static_cast<int32_t>(-h - 1));
    hi = _mm256_set1_epi32(static_cast<int32_t>(h));
  }
  static T from_float(float x) { return static_cast<int32_t>(x); }
  static float to_float(T x) { return static_cast<float>(x); }
  static V broadcast(T x) { return (V)_mm256_set1_epi32(x); }
  V step(V acc, V a, V b) const {
    const v8u sum = (v8u)acc + (v8u)a * (v8u)b;  // unsigned: wraps by definition
    if constexpr (Saturate) {
      return (V)_mm256_min_epi32(_mm256_max_epi32((__m256i)sum, lo), hi);
    } else {
      return ((V)(sum << wrap_shift)) >> wrap_shift;
    }
  }
};

template <typename T>
struct Buffer {
  T* p = nullptr;
  explicit Buffer(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    p = static_cast<T*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (p == nullptr) std::abort();
  }
  ~Buffer() { std::free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// One MR×NR tile over kc products; `tile` (row-major MR×NR) holds the accumulator in and out.
template <typename L>
[[gnu::always_inline]] inline void micro_kernel(const L& lane, const typename L::T* ap, const typename L::T* bp,
                                                int64_t kc, typename L::T* tile) {
  using V = typename L::V;
  constexpr int MR = L::MR, NV = L::NR / L::W;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&acc[i][j], tile + i * L::NR + j * L::W, sizeof(V));
  }
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&b[j], bp + k * L::NR + j * L::W, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V a = L::broadcast(ap[k * MR + i]);  // not (V){} + x: 0.0 + -0.0 is +0.0
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = lane.step(acc[i][j], a, b[j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(tile + i * L::NR + j * L::W, &acc[i][j], sizeof(V));
  }
}

template <typename L>
struct Job {
  using T = typename L::T;
  const L* lane;
  const Args* a;
  int64_t KC, panels, kblocks;
  T* bpack;  // kblocks × panels × (kc × NR)
};

// Packs K block kb of B into NR-column panels (zero columns past N).
template <typename L>
void pack_b_task(void* ctx, int64_t kb) {
  using T = typename L::T;
  constexpr int64_t NR = L::NR;
  const Job<L>& job = *static_cast<const Job<L>*>(ctx);
  const Args& a = *job.a;
  const int64_t k0 = kb * job.KC, kc = a.K - k0 < job.KC ? a.K - k0 : job.KC;
  T* base = job.bpack + kb * job.KC * job.panels * NR;
  for (int64_t q = 0; q < job.panels; ++q) {
    T* dst = base + q * kc * NR;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = a.B + (k0 + k) * a.N + q * NR;
      for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = q * NR + j < a.N ? L::from_float(src[j]) : T{};
    }
  }
}

// All of output rows [mb·MC, mb·MC + MC): K blocks in order, each through every panel.
template <typename L>
void rows_task(void* ctx, int64_t mb) {
  using T = typename L::T;
  constexpr int64_t MR = L::MR, NR = L::NR, MC = L::MC;
  const Job<L>& job = *static_cast<const Job<L>*>(ctx);
  const Args& a = *job.a;
  const int64_t N = a.N, K = a.K, m0 = mb * MC, mc = a.M - m0 < MC ? a.M - m0 : MC;
  const int64_t slivers = (mc + MR - 1) / MR;
  const bool chunked = a.chunk > 0;
  Buffer<T> apack(MC * job.KC), accbuf(chunked ? 1 : MC * N);
  float* R = a.R + m0 * N;
  if (chunked || K == 0) {
    for (int64_t i = 0; i < mc * N; ++i) R[i] = 0.0f;
    if (K == 0) return;
  }
  alignas(64) T tile[MR * NR];
  for (int64_t k0 = 0, c = 0; k0 < K; k0 += job.KC, ++c) {
    const int64_t kc = K - k0 < job.KC ? K - k0 : job.KC;
    for (int64_t s = 0; s < slivers; ++s) {
      T* dst = apack.p + s * kc * MR;
      for (int64_t i = 0; i < MR; ++i) {
        const int64_t m = m0 + s * MR + i;
        const float* src = a.A + m * a.lda + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = m < a.M ? L::from_float(src[k]) : T{};
      }
    }
    const T* bblock = job.bpack + c * job.KC * job.panels * NR;
    for (int64_t q = 0; q < job.panels; ++q) {
      const int64_t n0 = q * NR, nv = N - n0 < NR ? N - n0 : NR;
      for (int64_t s = 0; s < slivers; ++s) {
        const int64_t ib = s * MR, mv = mc - ib < MR ? mc - ib : MR;  // rows relative to m0
        std::memset(tile, 0, sizeof tile);
        if (!chunked && k0 > 0) {
          for (int64_t i = 0; i < mv; ++i) std::memcpy(tile + i * NR, accbuf.p + (ib + i) * N + n0, nv * sizeof(T));
        }
        micro_kernel(*job.lane, apack.p + s * kc * MR, bblock + q * kc * NR, kc, tile);
        if (!chunked) {
          for (int64_t i = 0; i < mv; ++i) std::memcpy(accbuf.p + (ib + i) * N + n0, tile + i * NR, nv * sizeof(T));
          continue;
        }
        for (int64_t i = 0; i < mv; ++i) {
          float* r = R + (ib + i) * N + n0;
          for (int64_t j = 0; j < nv; ++j) {
            const float scale = a.sa ? a.sa[(m0 + ib + i) * a.sa_stride + c] * a.sb[c * N + n0 + j] : 1.0f;
            r[j] = __builtin_fmaf(L::to_float(tile[i * NR + j]), scale, r[j]);
          }
        }
      }
    }
  }
  if (!chunked) {
    for (int64_t i = 0; i < mc * N; ++i) R[i] = L::to_float(accbuf.p[i]);
  }
}

template <typename L>
void drive(const L& lane, const Args& a, const Parallel& par) {
  using T = typename L::T;
  const bool chunked = a.chunk > 0;
  Job<L> job{};
  job.lane = &lane;
  job.a = &a;
  job.KC = a.K == 0 ? 1 : chunked ? (a.chunk < a.K ? a.chunk : a.K) : (L::KC < a.K ? L::KC : a.K);
  job.panels = (a.N + L::NR - 1) / L::NR;
  job.kblocks = (a.K + job.KC - 1) / job.KC;
  Buffer<T> bpack(job.kblocks * job.KC * job.panels * L::NR);
  job.bpack = bpack.p;
  par.run(par.self, job.kblocks, &job, pack_b_task<L>);
  par.run(par.self, (a.M + L::MC - 1) / L::MC, &job, rows_task<L>);
}

}  // namespace

void run_avx2(Family f, const Args& a, const Parallel& par) {
  switch (f) {
    case Family::F32Fma: drive(LaneF32{}, a, par); break;
    case Family::F64Exact:
      if (a.rounding == 0) drive(LaneF64<0>(a.mantissa_bits), a, par);
      else if (a.rounding == 1) drive(LaneF64<1>(a.mantissa_bits), a, par);
      else drive(LaneF64<2>(a.mantissa_bits), a, par);
      break;
    case Family::F64General:
      if (a.rounding == 0) drive(LaneF64General<0>(a), a, par);
      else if (a.rounding == 1) drive(LaneF64General<1>(a), a, par);
      else drive(LaneF64General<2>(a), a, par);
      break;
    case Family::Int32:
      if (a.saturate) drive(LaneI32<true>(a.int_bits), a, par);
      else drive(LaneI32<false>(a.int_bits), a, par);
      break;
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64: the dispatcher never calls run_avx2.

bool cpu_has_avx2_fma() { return false; }
void run_avx2(Family f, const Args& a, const Parallel& par) { run_portable(f, a); }

#endif

}  // namespace duet::numerics::emu::kernels
