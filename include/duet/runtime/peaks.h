// Measured arithmetic peaks of this CPU: tight register-only loops of the
// instructions a matrix kernel would use, run on every thread at once. The
// yardstick for `duet bench gemm` (a GEMM's rate is reported as a share of
// the peak measured in the same run, never of a datasheet figure).
#pragma once
#include <string>

#include "duet/numerics/format.h"

namespace duet::runtime {

struct CpuFeatures {
  bool avx2_fma = false;
  bool avx512 = false;       // AVX-512 F/BW/VL, with the OS saving zmm state
  bool avx512_vnni = false;  // vpdpbusd
  bool avx512_bf16 = false;  // vdpbf16ps
  std::string describe() const;  // "avx2+fma avx512 ..."
};
CpuFeatures cpu_features();

struct Peak {
  double ops_per_s = 0;      // multiply and add count as two; 0 when no native path exists
  std::string instructions;  // what the loop ran, e.g. "vfmadd231ps ymm"
};

// Peak of products in `compute` (numerics::Precision::compute_format(): fp32,
// bf16 or int8) on `threads` threads, best of repeated ~`seconds` runs. A CPU
// without the instruction for bf16 or int8 gets ops_per_s 0 and says so in
// `instructions`; any other format is one duet::Unsupported error (no loop
// measures it on this host).
Peak measure_peak(const numerics::Format& compute, int threads, double seconds = 0.3);

}  // namespace duet::runtime
