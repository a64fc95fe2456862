// The GEMM timing behind `duet bench gemm`: oneDNN's matmul primitive for
// C[M×N] = A[M×K]·B[K×N] on this machine, against the arithmetic peak measured
// in the same run (runtime/peaks.h); for fp32 also Duet's own packed GEMM (the
// cpu backend's for MatMuls of 2 to 512 rows), timed alternately with oneDNN's
// so both see the same moments of a shared machine. B is packed once, outside
// the timed loop, as the cpu backend does for a model's weights. Every figure
// is measured.
//
//   measure::GemmBenchOptions o;  // fp32 1024³ on one thread, 20 timed runs
//   o.precision = "int8";
//   const measure::GemmBenchResult r = measure::bench_gemm(o);
//   r.onednn.ops_per_s / r.peak.ops_per_s;  // == r.onednn.share_of_peak
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "duet/runtime/peaks.h"

namespace duet::measure {

struct GemmBenchOptions {
  // numerics::Precision text: fp32, bf16 (FP32 accumulation) or int8 (u8 × s8 -> s32).
  std::string precision = "fp32";
  int64_t m = 1024, n = 1024, k = 1024;
  int threads = 1;
  int runs = 20;  // timed runs, after 3 untimed ones
};

// One GEMM implementation's timing.
struct GemmRate {
  double median_s = 0, fastest_s = 0;
  double ops_per_s = 0;      // 2·M·N·K / median (multiply and add count as two)
  // Against GemmBenchResult::peak (0 where the CPU has no native instruction
  // for the precision). The peak is the fastest ~10 ms sample of its loop; on a
  // machine whose clock moves, the like-for-like figure beside it is the
  // fastest run, so both are kept (the median stays the headline).
  double share_of_peak = 0;
  double fastest_share_of_peak = 0;
};

struct GemmBenchResult {
  GemmBenchOptions options;
  std::string onednn_impl;            // the implementation oneDNN chose (impl_info_str)
  GemmRate onednn;
  std::optional<GemmRate> duet_sgemm;  // fp32 on a CPU with backends::cpu::PackedSgemm
  double duet_sgemm_max_rel_diff = 0;  // max |C_duet - C_onednn| / max |C_onednn|
  runtime::Peak peak;                  // of the precision's compute format
  runtime::Peak fp32_peak;             // the yardstick where `peak` has no native instruction
  std::string cpu;                     // runtime::cpu_features().describe()
};

// Throws duet::Error for a precision other than fp32, bf16 or int8, or where
// Duet's GEMM and oneDNN's disagree (a kernel bug); duet::Unsupported where
// oneDNN has no matmul for the precision on this CPU.
GemmBenchResult bench_gemm(const GemmBenchOptions& options);

}  // namespace duet::measure
