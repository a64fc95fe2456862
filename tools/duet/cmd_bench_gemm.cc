// duet bench gemm --m M --n N --k K --dtype fp32|bf16|int8: prints what
// measure::bench_gemm (measure/gemm_bench.h) measured — oneDNN's matmul, and
// for fp32 Duet's packed GEMM, against the arithmetic peak of the same run.
#include <nlohmann/json.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "duet/measure/gemm_bench.h"

namespace duet::cli {

int run_gemm_bench(int64_t m, int64_t n, int64_t k, const std::string& dtype, int threads, int runs, bool json) {
  measure::GemmBenchOptions options;
  options.precision = dtype;
  options.m = m, options.n = n, options.k = k;
  options.threads = threads;
  options.runs = runs;
  const measure::GemmBenchResult r = measure::bench_gemm(options);
  const measure::GemmRate& onednn = r.onednn;
  const double peak = r.peak.ops_per_s;
  auto percent = [](double x) { return std::to_string(static_cast<int>(std::lround(100 * x))) + "%"; };
  if (json) {
    nlohmann::json j = {{"m", m}, {"n", n}, {"k", k}, {"dtype", dtype}, {"threads", threads}, {"runs", runs},
                        {"median_ms", onednn.median_s * 1e3}, {"gops_per_s", onednn.ops_per_s / 1e9},
                        {"onednn_impl", r.onednn_impl}, {"peak_gops_per_s", peak / 1e9},
                        {"peak_instructions", r.peak.instructions}, {"share_of_peak", onednn.share_of_peak},
                        {"fastest_run_share_of_peak", onednn.fastest_share_of_peak},
                        {"fp32_peak_gflops", r.fp32_peak.ops_per_s / 1e9}, {"cpu", r.cpu}, {"measured", true}};
    if (r.duet_sgemm) {
      j["duet_sgemm_median_ms"] = r.duet_sgemm->median_s * 1e3;
      j["duet_sgemm_gops_per_s"] = r.duet_sgemm->ops_per_s / 1e9;
      j["duet_sgemm_share_of_peak"] = r.duet_sgemm->share_of_peak;
      j["duet_sgemm_fastest_run_share_of_peak"] = r.duet_sgemm->fastest_share_of_peak;
      j["duet_sgemm_max_rel_diff_vs_onednn"] = r.duet_sgemm_max_rel_diff;
    }
    print_json(j, 2);
    return 0;
  }
  std::cout << std::fixed << std::setprecision(1) << "GEMM " << m << "x" << n << "x" << k << " " << dtype << ", "
            << threads << " thread" << (threads > 1 ? "s" : "") << " (measured; CPU: " << r.cpu << ")\n  oneDNN "
            << r.onednn_impl << ": median " << std::setprecision(3) << onednn.median_s * 1e3 << " ms = "
            << std::setprecision(1) << onednn.ops_per_s / 1e9 << " GOP/s\n";
  if (r.duet_sgemm)
    std::cout << "  Duet packed sgemm (AVX2): median " << std::setprecision(3) << r.duet_sgemm->median_s * 1e3 << " ms = "
              << std::setprecision(1) << r.duet_sgemm->ops_per_s / 1e9 << " GOP/s"
              << (peak > 0 ? " = " + percent(r.duet_sgemm->share_of_peak) + " of peak (fastest run " +
                                 percent(r.duet_sgemm->fastest_share_of_peak) + ")"
                           : "")
              << "\n";
  if (peak > 0)
    std::cout << "  measured " << dtype << " peak " << peak / 1e9 << " GOP/s (" << r.peak.instructions
              << ", fastest 10 ms sample): oneDNN median " << 100 * onednn.share_of_peak << "% of peak (fastest run "
              << percent(onednn.fastest_share_of_peak) << ")\n";
  else
    std::cout << "  " << dtype << " peak: " << r.peak.instructions << "; FP32 peak " << r.fp32_peak.ops_per_s / 1e9
              << " GFLOP/s, so this runs at " << 100 * onednn.ops_per_s / r.fp32_peak.ops_per_s << "% of the FP32 peak\n";
  return 0;
}

}  // namespace duet::cli
