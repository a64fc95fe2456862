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
