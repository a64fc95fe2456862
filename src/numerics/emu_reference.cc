// The slow exact reference for emu::gemm: every sum is formed exactly in a wide
// fixed-point integer and rounded once, at exactly the points the header states,
// by its own rounding code (not the encoder the fast paths rely on).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "duet/core/error.h"
#include "duet/numerics/emu_gemm.h"
#include "numerics/emu_internal.h"

namespace duet::numerics::emu {

namespace {

// A signed fixed-point number with 2^-kFrac as its unit, two's complement over kLimbs words.
// Products of two values exact in FP32 are multiples of 2^-298 below 2^256, and the sums here
// stay below 2^300, so 704 bits hold every value exactly.
class Wide {
 public:
  static constexpr int kLimbs = 11, kFrac = 400;

  static Wide from_double(double d) {  // d must be finite; exact
    Wide w;
    if (d == 0) return w;
    const uint64_t bits = std::bit_cast<uint64_t>(d);
    const int biased = static_cast<int>((bits >> 52) & 0x7FF);
    uint64_t sig = bits & ((uint64_t{1} << 52) - 1);
    if (biased != 0) sig |= uint64_t{1} << 52;
    const int lsb = (biased == 0 ? 1 : biased) - 1075 + kFrac;  // bit index of sig's bit 0
    DUET_CHECK(lsb >= 0 && lsb + 53 < 64 * kLimbs - 1, "internal: emu reference value out of range: ", d);
    const int limb = lsb / 64, off = lsb % 64;
    w.v_[limb] = sig << off;
    if (off > 11) w.v_[limb + 1] = sig >> (64 - off);
    if (bits >> 63) w.negate();
    return w;
  }

  void add(const Wide& o) {
    unsigned carry = 0;
    for (int i = 0; i < kLimbs; ++i) {
      const unsigned __int128 s = static_cast<unsigned __int128>(v_[i]) + o.v_[i] + carry;
      v_[i] = static_cast<uint64_t>(s);
      carry = static_cast<unsigned>(s >> 64);
    }
  }
  bool negative() const { return (v_[kLimbs - 1] >> 63) != 0; }
  bool zero() const {
    for (uint64_t x : v_) {
      if (x) return false;
    }
    return true;
  }
  void negate() {
    unsigned carry = 1;
    for (int i = 0; i < kLimbs; ++i) {
      const unsigned __int128 s = static_cast<unsigned __int128>(~v_[i]) + carry;
      v_[i] = static_cast<uint64_t>(s);
      carry = static_cast<unsigned>(s >> 64);
    }
  }
  int top_bit() const {  // of a non-negative, non-zero value
    for (int i = kLimbs - 1; i >= 0; --i) {
      if (v_[i]) return 64 * i + 63 - std::countl_zero(v_[i]);
    }
    return -1;
  }
  bool bit(int i) const { return i >= 0 && ((v_[i / 64] >> (i % 64)) & 1); }
  bool any_below(int i) const {  // any bit with index < i
    for (int l = 0; l < kLimbs && 64 * l < i; ++l) {
      const int n = i - 64 * l;
      const uint64_t mask = n >= 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1);
      if (v_[l] & mask) return true;
    }
    return false;
  }
  uint64_t bits_from(int i, int count) const {  // count <= 60 bits starting at bit i >= 0
    uint64_t r = 0;
    for (int b = count - 1; b >= 0; --b) r = (r << 1) | (bit(i + b) ? 1 : 0);
    return r;
  }

 private:
  uint64_t v_[kLimbs] = {};
};

// Round the exact value w to the float format f: the textbook procedure (find the leading bit,
// take the format's quantum at that exponent, look at the half bit and the sticky bits).
double round_to_format(Wide w, const Minifloat& f, Rounding r, Overflow o) {
  const bool neg = w.negative();
  if (neg) w.negate();
  const uint32_t sign = neg ? 1u << (f.total_bits() - 1) : 0u;
  const int top = w.top_bit();
  const int emin = f.min_exponent();
  const int e = top - Wide::kFrac;
  const int te = e < emin ? emin : e;
  const int qpos = te - f.mantissa_bits + Wide::kFrac;  // bit index of the quantum
  DUET_CHECK(qpos >= 1, "internal: emu reference quantum out of range");
  uint64_t q = w.bits_from(qpos, top - qpos + 1 > 0 ? top - qpos + 1 : 0);
  const bool half = w.bit(qpos - 1), sticky = w.any_below(qpos - 1);
  if (r == Rounding::NearestEven) q += half && (sticky || (q & 1));
  if (r == Rounding::NearestAway) q += half;
  const uint64_t magnitude = (static_cast<uint64_t>(te - emin) << f.mantissa_bits) + q;
  uint32_t out;
  if (magnitude > f.max_finite_bits()) out = f.overflow_bits(sign, o);
  else if (magnitude == 0 && f.specials == Specials::FNUZ) out = 0;
  else out = sign | static_cast<uint32_t>(magnitude);
  return f.decode_double(out);
}

// acc + p rounded to the accumulator's format (IEEE rules for zeros and specials).
double float_step(double acc, double p, const Accumulator& a) {
  if (!std::isfinite(acc) || !std::isfinite(p)) {
    const double s = acc + p;  // inf, -inf or NaN, as IEEE addition gives
    return a.fp.decode_double(a.fp.encode(static_cast<float>(s), a.rounding, a.overflow));
  }
  Wide sum = Wide::from_double(acc);
  sum.add(Wide::from_double(p));
  if (sum.zero()) {
    const bool both_negative_zero = std::signbit(acc) && std::signbit(p);
    return both_negative_zero && a.fp.has_negative_zero() ? -0.0 : 0.0;
  }
  return round_to_format(sum, a.fp, a.rounding, a.overflow);
}

int64_t int_step(int64_t acc, int64_t p, const Accumulator& a) {
  const int64_t v = acc + p;
  const int64_t hi = (int64_t{1} << (a.int_bits - 1)) - 1, lo = -hi - 1;
  if (a.saturate) return v > hi ? hi : v < lo ? lo : v;
  const uint64_t mod = uint64_t{1} << a.int_bits;
  uint64_t u = static_cast<uint64_t>(v) & (mod - 1);
  return u > static_cast<uint64_t>(hi) ? static_cast<int64_t>(u) - static_cast<int64_t>(mod) : static_cast<int64_t>(u);
}

}  // namespace

void gemm_reference(const GemmSpec& spec, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  validate(spec, M, N, K);
  // Step 1, element by element with the scalar encoder.
  const std::vector<float> qa = quantize_reference(spec.a, A, M, K, spec.trans_a, true);
  const std::vector<float> qb = quantize_reference(spec.b, B, K, N, spec.trans_b, false);
  const Accumulator& acc = spec.acc;
  const bool block_scaled = spec.a.scaling == Scaling::Block || spec.b.scaling == Scaling::Block;
  const int64_t chunk = acc.chunk > 0 ? acc.chunk : K;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      float outer = 0.0f, r = 0.0f;
      for (int64_t k0 = 0, c = 0; k0 < K; k0 += chunk, ++c) {
        double facc = 0.0;
        int64_t iacc = 0;
        for (int64_t k = k0; k < std::min(K, k0 + chunk); ++k) {
          const double p = static_cast<double>(qa[m * K + k]) * qb[k * N + n];  // exact: 24×24 bits
          if (acc.kind == AccumulatorKind::Float) facc = float_step(facc, p, acc);
          else iacc = int_step(iacc, static_cast<int64_t>(p), acc);
        }
        const float chunk_value = acc.kind == AccumulatorKind::Float ? static_cast<float>(facc) : static_cast<float>(iacc);
        if (acc.chunk == 0) {
          r = chunk_value;
        } else {
          const float s = block_scaled ? block_scale(spec.a, m, c, K, true) * block_scale(spec.b, n, c, K, false) : 1.0f;
          outer = std::fmaf(chunk_value, s, outer);
          r = outer;
        }
      }
      // Steps 4 and 5.
      const float y = block_scaled ? r : r * (channel_scale(spec.a, m) * channel_scale(spec.b, n));
      C[m * N + n] = output_value(spec.out, y);
    }
  }
}

}  // namespace duet::numerics::emu
