// Fast kernels behind emu::gemm (see duet/numerics/emu_gemm.h for the semantics they
// reproduce). Inputs are already quantized: every value is exact in its format.
#pragma once
#include <cstdint>

namespace duet::numerics::emu::kernels {

enum class Family { F32Fma, F64Exact, F64General, Int32 };

struct Args {
  int64_t M = 0, N = 0, K = 0;
  const float* A = nullptr;  // M×K, row stride lda
  int64_t lda = 0;
  const float* B = nullptr;  // K×N, row stride N
  int64_t chunk = 0;         // products per chunk before the FP32 promotion; 0: none, R = acc
  // Per-block scales (both null without): sa is M×nchunks (row stride sa_stride), sb nchunks×N.
  const float* sa = nullptr;
  int64_t sa_stride = 0;
  const float* sb = nullptr;
  float* R = nullptr;  // M×N, row stride N: the FP32 result r of step 3
  // F64Exact: accumulator mantissa bits and rounding (0 nearest-even, 1 toward zero, 2 nearest-away).
  int mantissa_bits = 23;
  int rounding = 0;
  // F64General (also uses mantissa_bits and rounding): the accumulator format's smallest normal
  // exponent, largest finite value, what overflow gives for each sign, what NaN gives, and
  // whether zero is unsigned (FNUZ).
  int min_exponent = -126;
  double max_finite = 0, overflow_pos = 0, overflow_neg = 0, nan_value = 0;
  bool unsigned_zero = false;
  // Int32: accumulator width and overflow behaviour.
  int int_bits = 32;
  bool saturate = false;
};

// Runs task(ctx, i) for i in [0, tasks), on as many threads as the caller has, in any order;
// returns when all are done. Plain function pointers keep the AVX2 file free of C++ library
// templates (see emu_kernels_x86.cc).
struct Parallel {
  void* self = nullptr;
  void (*run)(void* self, int64_t tasks, void* ctx, void (*task)(void* ctx, int64_t index)) = nullptr;
};

void run_portable(Family f, const Args& a);
// Callers check the CPU (avx2 and fma). Row blocks are spread over `par` dynamically (a busy
// core takes fewer); each output row is computed by one task, so results never depend on it.
void run_avx2(Family f, const Args& a, const Parallel& par);
bool cpu_has_avx2_fma();

}  // namespace duet::numerics::emu::kernels
