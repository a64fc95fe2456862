#include "duet/runtime/peaks.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "duet/core/error.h"

namespace duet::runtime {

namespace {

using Clock = std::chrono::steady_clock;

bool os_saves_zmm() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return false;
  uint32_t lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6) == 0xE6;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM
}

volatile float sink_f;
volatile int sink_i;

// Each kernel runs `iterations` rounds of 12 independent accumulator chains
// and returns the operation count (multiply + add = 2). The inner loops are
// unrolled by pragma: at -O2 (RelWithDebInfo) GCC leaves them rolled and keeps
// the accumulators in memory, and the "peak" measured 2.5x low.
__attribute__((target("avx2,fma"))) double fp32_avx2(int64_t iterations) {
  __m256 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1e-3f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  sink_f = _mm256_cvtss_f32(s);
  return 12.0 * 8 * 2 * iterations;
}

// Every accumulator must reach the sink: a chain whose result is unused is
// dead code, and with only two of twelve chains kept the loop ran latency-bound
// at a sixth of the work it claimed — the "peak" came out 6x high on AVX-512
// (353 GFLOP/s per Zen 4 core, whose FMA units give at most ~118).
__attribute__((target("avx512f"))) float sum_lanes(const __m512 (&acc)[12]) {
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it (-Wuninitialized)
  _mm512_storeu_ps(lanes, s);
  float sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

__attribute__((target("avx512f"))) double fp32_avx512(int64_t iterations) {
  __m512 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(1e-3f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  sink_f = sum_lanes(acc);
  return 12.0 * 16 * 2 * iterations;
}

// u8 x s8 -> s16 pairs (vpmaddubsw), -> s32 (vpmaddwd with ones), accumulate:
// the AVX2 INT8 path oneDNN uses where VNNI is missing. 32 MACs per round.
__attribute__((target("avx2"))) double int8_avx2(int64_t iterations) {
  __m256i acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i)
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  __m256i s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_epi32(s, acc[i]);
  sink_i = _mm256_extract_epi32(s, 0);
  return 12.0 * 32 * 2 * iterations;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) double int8_vnni(int64_t iterations) {
  __m512i acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  // The accumulators wrap (that is the point of the loop): add them as unsigned, where wrapping is defined.
  __m512i s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, acc[i]);  // wraps, as the loop does
  int lanes[16];
  _mm512_storeu_si512(lanes, s);
  unsigned sum = 0;
  for (int v : lanes) sum += static_cast<unsigned>(v);
  sink_i = static_cast<int>(sum);
  return 12.0 * 64 * 2 * iterations;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_avx512(int64_t iterations) {
  __m512 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(1e-3f * i);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  sink_f = sum_lanes(acc);
  return 12.0 * 32 * 2 * iterations;
}

double fp32_scalar(int64_t iterations) {
  float acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = 1e-3f * i;
  for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float sum = 0;
  for (float v : acc) sum += v;
  sink_f = sum;
  return 12.0 * 2 * iterations;
}

// Ops/s of one thread: the best of ~10 ms samples over `seconds`.
double rate(double (*kernel)(int64_t), double seconds) {
  int64_t n = 1 << 12;
  double best = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    const double ops = kernel(n);
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (t < 0.01) { n *= 2; continue; }
    best = std::max(best, ops / t);
  }
  return best;
}

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    const bool fma = c & bit_FMA;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      f.avx2_fma = fma && (b & bit_AVX2);
      const bool zmm = os_saves_zmm();
      f.avx512 = zmm && (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL);
      f.avx512_vnni = f.avx512 && (c & bit_AVX512VNNI);
      if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = f.avx512 && (a & bit_AVX512BF16);
    }
  }
  return f;
}

std::string CpuFeatures::describe() const {
  std::string s;
  auto add = [&](bool on, const char* name) { if (on) s += (s.empty() ? "" : " ") + std::string(name); };
  add(avx2_fma, "avx2+fma");
  add(avx512, "avx512");
  add(avx512_vnni, "avx512-vnni");
  add(avx512_bf16, "avx512-bf16");
  return s.empty() ? "no vector extensions used" : s;
}

Peak measure_peak(const numerics::Format& compute, int threads, double seconds) {
  const CpuFeatures f = cpu_features();
  Peak p;
  double (*kernel)(int64_t) = nullptr;
  if (compute.name == "fp32") {
    kernel = f.avx512 ? fp32_avx512 : f.avx2_fma ? fp32_avx2 : fp32_scalar;
    p.instructions = f.avx512 ? "vfmadd231ps zmm" : f.avx2_fma ? "vfmadd231ps ymm" : "scalar multiply-add";
  } else if (compute.name == "int8") {
    if (f.avx512_vnni) { kernel = int8_vnni; p.instructions = "vpdpbusd zmm (u8 x s8 -> s32)"; }
    else if (f.avx2_fma) { kernel = int8_avx2; p.instructions = "vpmaddubsw + vpmaddwd + vpaddd ymm (u8 x s8 -> s32)"; }
  } else if (compute.name == "bf16") {
    if (f.avx512_bf16) { kernel = bf16_avx512; p.instructions = "vdpbf16ps zmm"; }
  } else {
    unsupported("no peak loop for ", compute.name, " products on this host (fp32, bf16 or int8)");
  }
  if (!kernel) {
    p.instructions = "none: this CPU has no native instruction for it";
    return p;
  }
  std::vector<double> rates(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { rates[t] = rate(kernel, seconds); });
  for (auto& w : workers) w.join();
  for (double r : rates) p.ops_per_s += r;
  return p;
}

}  // namespace duet::runtime
