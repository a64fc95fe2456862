// duet bench gemm --m M --n N --k K --dtype fp32|bf16|int8: oneDNN's matmul
// on this machine against the arithmetic peak measured in the same run
// (runtime/peaks.h); for fp32 also Duet's own packed GEMM (the cpu
// backend's for MatMuls of 2 to 512 rows), timed alternately with oneDNN's.
// Weights are packed once, outside the timed loop, as the cpu backend does
// for a model's weights.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/runtime/peaks.h"
#include "duet/backends/cpu/sgemm.h"

extern "C" void omp_set_num_threads(int);

namespace duet::cli {

int run_gemm_bench(int64_t m, int64_t n, int64_t k, const std::string& dtype, int threads, int runs, bool json) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  omp_set_num_threads(threads);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  dt a_type = dt::f32, b_type = dt::f32, c_type = dt::f32;
  runtime::PeakKind kind = runtime::PeakKind::FP32;
  if (dtype == "bf16") { a_type = b_type = dt::bf16; kind = runtime::PeakKind::BF16; }
  else if (dtype == "int8") { a_type = dt::u8; b_type = dt::s8; c_type = dt::s32; kind = runtime::PeakKind::INT8; }
  else if (dtype != "fp32") fail("--dtype must be fp32, bf16 or int8, got '", dtype, "'");
  dnnl::memory::desc a_md({m, k}, a_type, tag::ab), b_any({k, n}, b_type, tag::any), c_md({m, n}, c_type, tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc({a_md, b_any, c_md}, engine);
  } catch (const dnnl::error& e) {
    unsupported("oneDNN has no ", dtype, " matmul on this CPU (", e.what(), ")");
  }
  const std::string impl = pd.impl_info_str();
  dnnl::memory a(a_md, engine), b(pd.weights_desc(), engine), c(c_md, engine);
  // Small values: integers stay far from saturation, floats stay normal
  // (bytes like 0x01 read as float32 are ~1e-38: every product would
  // underflow, and subnormal arithmetic is slow on x86 — an early version of
  // this bench measured that instead of the GEMM).
  auto fill = [](dnnl::memory& mem) {
    const auto type = mem.get_desc().data_type();
    const size_t bytes = mem.get_desc().get_size();
    auto* p = static_cast<uint8_t*>(mem.get_data_handle());
    if (type == dt::f32) {
      auto* f = reinterpret_cast<float*>(p);
      for (size_t i = 0; i < bytes / 4; ++i) f[i] = 0.01f * static_cast<float>(i % 7 + 1);
    } else if (type == dt::bf16) {
      auto* h = reinterpret_cast<uint16_t*>(p);
      for (size_t i = 0; i < bytes / 2; ++i) h[i] = i % 7 == 0 ? 0x3c24 : 0x3ba4;  // 0.01 and 0.005 in BF16
    } else {
      for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(i % 7 == 0 ? 0x3c : 0x01);
    }
  };
  fill(a);
  // B filled in plain k x n order, then packed into the primitive's layout
  // (the fp32 values are also what Duet's GEMM packs, so the results compare).
  dnnl::memory b_user({{k, n}, b_type, tag::ab}, engine);
  fill(b_user);
  dnnl::reorder(b_user, b).execute(stream, b_user, b);
  stream.wait();
  dnnl::matmul mm(pd);
  auto once = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    mm.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // Duet's packed GEMM on the same A and B (fp32 only).
  const bool own = dtype == "fp32" && backends::cpu::PackedSgemm::available();
  std::vector<float> c_own;
  std::unique_ptr<backends::cpu::PackedSgemm> sgemm;
  if (own) {
    sgemm = std::make_unique<backends::cpu::PackedSgemm>(k, n, static_cast<const float*>(b_user.get_data_handle()), n);
    c_own.resize(static_cast<size_t>(m * n));
  }
  auto once_own = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    sgemm->run(m, static_cast<const float*>(a.get_data_handle()), k, c_own.data(), n, threads);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < 3; ++i) {
    once();
    if (own) once_own();
  }
  std::vector<double> s, s_own;
  for (int i = 0; i < runs; ++i) {  // alternating: both see the same moments of a shared machine
    s.push_back(once());
    if (own) s_own.push_back(once_own());
  }
  std::sort(s.begin(), s.end());
  std::sort(s_own.begin(), s_own.end());
  const double median = s[s.size() / 2];
  const double median_own = own ? s_own[s_own.size() / 2] : 0;
  const double ops = 2.0 * m * n * k;
  const double rate = ops / median;
  const double rate_own = own ? ops / median_own : 0;
  double own_vs_onednn = 0;  // largest difference relative to the largest value of oneDNN's C
  if (own) {
    const float* ref = static_cast<const float*>(c.get_data_handle());
    double scale = 0, diff = 0;
    for (size_t i = 0; i < c_own.size(); ++i) {
      scale = std::max(scale, std::fabs(double(ref[i])));
      diff = std::max(diff, std::fabs(double(ref[i]) - c_own[i]));
    }
    own_vs_onednn = scale > 0 ? diff / scale : diff;
    if (!(own_vs_onednn < 1e-4)) fail("Duet's GEMM differs from oneDNN's by ", own_vs_onednn, " (relative): a kernel bug");
  }
  const runtime::Peak peak = runtime::measure_peak(kind, threads);
  const runtime::Peak fp32 = runtime::measure_peak(runtime::PeakKind::FP32, threads);
  const double share = peak.ops_per_s > 0 ? rate / peak.ops_per_s : 0;
  // The peak is the fastest ~10 ms sample of its loop; on a machine whose clock moves, the like-for-like
  // figure beside it is the fastest GEMM run. Both are printed; the median stays the headline.
  auto fastest_share = [&](const std::vector<double>& sorted) {
    return peak.ops_per_s > 0 && !sorted.empty() ? ops / sorted.front() / peak.ops_per_s : 0.0;
  };
  auto percent = [](double x) { return std::to_string(static_cast<int>(std::lround(100 * x))) + "%"; };
  if (json) {
    nlohmann::json j = {{"m", m}, {"n", n}, {"k", k}, {"dtype", dtype}, {"threads", threads}, {"runs", runs},
                        {"median_ms", median * 1e3}, {"gops_per_s", rate / 1e9}, {"onednn_impl", impl},
                        {"peak_gops_per_s", peak.ops_per_s / 1e9}, {"peak_instructions", peak.instructions},
                        {"share_of_peak", share}, {"fastest_run_share_of_peak", fastest_share(s)},
                        {"fp32_peak_gflops", fp32.ops_per_s / 1e9},
                        {"cpu", runtime::cpu_features().describe()}, {"measured", true}};
    if (own) {
      j["duet_sgemm_median_ms"] = median_own * 1e3;
      j["duet_sgemm_gops_per_s"] = rate_own / 1e9;
      j["duet_sgemm_share_of_peak"] = peak.ops_per_s > 0 ? rate_own / peak.ops_per_s : 0;
      j["duet_sgemm_fastest_run_share_of_peak"] = fastest_share(s_own);
      j["duet_sgemm_max_rel_diff_vs_onednn"] = own_vs_onednn;
    }
    print_json(j, 2);
    return 0;
  }
  std::cout << std::fixed << std::setprecision(1) << "GEMM " << m << "x" << n << "x" << k << " " << dtype << ", "
            << threads << " thread" << (threads > 1 ? "s" : "") << " (measured; CPU: " << runtime::cpu_features().describe()
            << ")\n  oneDNN " << impl << ": median " << std::setprecision(3) << median * 1e3 << " ms = "
            << std::setprecision(1) << rate / 1e9 << " GOP/s\n";
  if (own)
    std::cout << "  Duet packed sgemm (AVX2): median " << std::setprecision(3) << median_own * 1e3 << " ms = "
              << std::setprecision(1) << rate_own / 1e9 << " GOP/s"
              << (peak.ops_per_s > 0 ? " = " + percent(rate_own / peak.ops_per_s) + " of peak (fastest run " +
                                           percent(fastest_share(s_own)) + ")"
                                     : "")
              << "\n";
  if (peak.ops_per_s > 0)
    std::cout << "  measured " << dtype << " peak " << peak.ops_per_s / 1e9 << " GOP/s (" << peak.instructions
              << ", fastest 10 ms sample): oneDNN median " << 100 * share << "% of peak (fastest run "
              << percent(fastest_share(s)) << ")\n";
  else
    std::cout << "  " << dtype << " peak: " << peak.instructions << "; FP32 peak " << fp32.ops_per_s / 1e9
              << " GFLOP/s, so this runs at " << 100 * rate / fp32.ops_per_s << "% of the FP32 peak\n";
  return 0;
}

}  // namespace duet::cli
