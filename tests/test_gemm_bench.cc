// measure::bench_gemm, the library entry point of `duet bench gemm`: tiny
// sizes, sanity of what it reports (rates are measured, so no timing bounds
// beyond "positive and not beyond the peak measured beside it").
#include <gtest/gtest.h>

#include "duet/core/error.h"
#include "duet/measure/gemm_bench.h"
#include "duet/numerics/format.h"

using namespace duet;

TEST(GemmBench, TimesOneDnnAgainstThePeakOfTheSameRun) {
  measure::GemmBenchOptions o;
  o.m = o.n = o.k = 64;
  o.runs = 3;
  for (const char* precision : {"fp32", "int8", "bf16"}) {
    SCOPED_TRACE(precision);
    o.precision = precision;
    measure::GemmBenchResult r;
    try {
      r = measure::bench_gemm(o);
    } catch (const Unsupported&) {  // oneDNN has no matmul for it on this CPU; every x86 CPU has fp32's
      if (std::string(precision) == "fp32") throw;
      continue;
    }
    EXPECT_FALSE(r.onednn_impl.empty());
    EXPECT_GT(r.onednn.ops_per_s, 0);
    EXPECT_LE(r.onednn.fastest_s, r.onednn.median_s);
    EXPECT_GT(r.fp32_peak.ops_per_s, 0);
    if (r.peak.ops_per_s > 0) {
      EXPECT_GT(r.onednn.share_of_peak, 0);
      EXPECT_LE(r.onednn.share_of_peak, 1.5);  // a GEMM cannot beat the arithmetic loop by much
    } else {
      EXPECT_NE(r.peak.instructions.find("none"), std::string::npos) << r.peak.instructions;
    }
    if (r.duet_sgemm) {
      EXPECT_GT(r.duet_sgemm->ops_per_s, 0);
      EXPECT_LT(r.duet_sgemm_max_rel_diff, 1e-4);
    }
  }
  o.precision = "fp16";
  EXPECT_THROW(measure::bench_gemm(o), Error);
}

TEST(Peaks, MeasureTheComputeFormatsThisHostHasLoopsFor) {
  const runtime::Peak fp32 = runtime::measure_peak(numerics::parse_format("fp32"), 1, 0.05);
  EXPECT_GT(fp32.ops_per_s, 0);
  EXPECT_FALSE(fp32.instructions.empty());
  EXPECT_THROW(runtime::measure_peak(numerics::parse_format("e4m3fn"), 1, 0.05), Unsupported);
}
