// Portable versions of the emu kernels: plain loops over one output row at a time,
// k outermost, so every output element sees its products in increasing k.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "numerics/emu_kernels.h"

namespace duet::numerics::emu::kernels {

namespace {

double round_f64_bits(double s, int shift, int rounding) {
  uint64_t b = std::bit_cast<uint64_t>(s);
  if (rounding == 0) b += ((uint64_t{1} << (shift - 1)) - 1) + ((b >> shift) & 1);
  if (rounding == 2) b += uint64_t{1} << (shift - 1);
  return std::bit_cast<double>(b & ~((uint64_t{1} << shift) - 1));
}

// round_F(acc + p) for any float format F exact in FP64, in FP64 arithmetic:
// s + e = acc + p exactly (TwoSum), t = s / Q is s in units of F's quantum Q at s, so rounding
// t to an integer rounds s; e (|e / Q| < 2^-28) only matters where t is an integer (toward zero:
// e pulls the value below it, across a binade edge by half a quantum) or a half-integer (a tie
// that e breaks). The AVX2 kernel does the same steps on four lanes.
double general_step(double acc, double p, const Args& a) {
  const double s = acc + p;
  if (std::isnan(s)) return a.nan_value;
  if (std::isinf(s)) return s > 0 ? a.overflow_pos : a.overflow_neg;
  const double bp = s - acc, ap = s - bp;
  const double e = (acc - ap) + (p - bp);
  const int64_t E = static_cast<int64_t>((std::bit_cast<uint64_t>(s) >> 52) & 0x7FF);
  const int64_t emin = a.min_exponent + 1023;
  const int64_t qe = std::max(E, emin) - a.mantissa_bits;  // biased exponent of Q
  const double Q = std::bit_cast<double>(static_cast<uint64_t>(qe) << 52);
  const double inv_q = std::bit_cast<double>(static_cast<uint64_t>(2046 - qe) << 52);
  const double t = s * inv_q, f = e * inv_q;
  const double tr = std::trunc(t), frac = std::fabs(t - tr);
  double r;
  if (a.rounding == 1) {
    r = tr;
    if (f != 0 && frac == 0 && std::signbit(f) != std::signbit(t)) {
      const bool edge = std::fabs(t) == std::ldexp(1.0, a.mantissa_bits) && E > emin;
      r = t + std::copysign(edge ? 0.5 : 1.0, f);
    }
  } else {
    r = a.rounding == 0 ? std::nearbyint(t) : (frac >= 0.5 ? tr + std::copysign(1.0, t) : tr);
    if (f != 0 && frac == 0.5) r = t + std::copysign(0.5, f);
  }
  r = std::copysign(r, t);  // a non-zero value that rounds to zero keeps its sign
  double v = r * Q;
  if (std::fabs(v) > a.max_finite) v = s > 0 ? a.overflow_pos : a.overflow_neg;
  if (a.unsigned_zero && v == 0) v = 0.0;
  return v;
}

int32_t int_step(int32_t acc, int32_t p, int bits, bool saturate) {
  if (saturate) {
    const int64_t v = int64_t{acc} + p;
    const int64_t hi = (int64_t{1} << (bits - 1)) - 1;
    return static_cast<int32_t>(v > hi ? hi : v < -hi - 1 ? -hi - 1 : v);
  }
  const uint32_t v = static_cast<uint32_t>(acc) + static_cast<uint32_t>(p);
  return static_cast<int32_t>(v << (32 - bits)) >> (32 - bits);
}

template <typename T, typename Step>
void rows(const Args& a, Step step) {
  const int64_t chunk = a.chunk > 0 ? a.chunk : a.K;
  std::vector<T> acc(static_cast<size_t>(a.N));
  for (int64_t m = 0; m < a.M; ++m) {
    float* r = a.R + m * a.N;
    std::fill(r, r + a.N, 0.0f);
    for (int64_t k0 = 0, c = 0; k0 < a.K; k0 += chunk, ++c) {
      std::fill(acc.begin(), acc.end(), T{});
      const int64_t k1 = std::min(a.K, k0 + chunk);
      for (int64_t k = k0; k < k1; ++k) {
        const float x = a.A[m * a.lda + k];
        const float* b = a.B + k * a.N;
        for (int64_t n = 0; n < a.N; ++n) acc[n] = step(acc[n], x, b[n]);
      }
      if (a.chunk == 0) {
        for (int64_t n = 0; n < a.N; ++n) r[n] = static_cast<float>(acc[n]);
      } else {
        for (int64_t n = 0; n < a.N; ++n) {
          const float s = a.sa ? a.sa[m * a.sa_stride + c] * a.sb[c * a.N + n] : 1.0f;
          r[n] = std::fmaf(static_cast<float>(acc[n]), s, r[n]);
        }
      }
    }
  }
}

}  // namespace

void run_portable(Family f, const Args& a) {
  switch (f) {
    case Family::F32Fma:
      rows<float>(a, [](float acc, float x, float y) { return std::fmaf(x, y, acc); });
      break;
    case Family::F64Exact: {
      const int shift = 52 - a.mantissa_bits, rounding = a.rounding;
      rows<double>(a, [=](double acc, float x, float y) {
        return round_f64_bits(std::fma(double{x}, double{y}, acc), shift, rounding);
      });
      break;
    }
    case Family::F64General:
      rows<double>(a, [&a](double acc, float x, float y) { return general_step(acc, double{x} * double{y}, a); });
      break;
    case Family::Int32: {
      const int bits = a.int_bits;
      const bool sat = a.saturate;
      rows<int32_t>(a, [=](int32_t acc, float x, float y) {
        return int_step(acc, static_cast<int32_t>(x) * static_cast<int32_t>(y), bits, sat);
      });
      break;
    }
  }
}

}  // namespace duet::numerics::emu::kernels
