#include "duet/measure/gemm_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "duet/backends/cpu/sgemm.h"
#include "duet/core/error.h"
#include "duet/numerics/precision.h"

extern "C" void omp_set_num_threads(int);

namespace duet::measure {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using Clock = std::chrono::steady_clock;

// Small values: integers stay far from saturation, floats stay normal (bytes
// like 0x01 read as float32 are ~1e-38: every product would underflow, and
// subnormal arithmetic is slow on x86 — an early version of this bench
// measured that instead of the GEMM).
void fill(dnnl::memory& mem) {
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
}

template <class F>
double seconds_of(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median, fastest and their rates against `peak` from the timed runs.
GemmRate rate_of(std::vector<double> s, double ops, const runtime::Peak& peak) {
  std::sort(s.begin(), s.end());
  GemmRate r;
  r.median_s = s[s.size() / 2];
  r.fastest_s = s.front();
  r.ops_per_s = ops / r.median_s;
  if (peak.ops_per_s > 0) {
    r.share_of_peak = r.ops_per_s / peak.ops_per_s;
    r.fastest_share_of_peak = ops / r.fastest_s / peak.ops_per_s;
  }
  return r;
}

}  // namespace

GemmBenchResult bench_gemm(const GemmBenchOptions& options) {
  GemmBenchResult result;
  result.options = options;
  const std::string& text = options.precision;
  DUET_CHECK(text == "fp32" || text == "bf16" || text == "int8", "bench gemm: precision must be fp32, bf16 or int8, got '",
             text, "'");
  DUET_CHECK(options.runs >= 1 && options.threads >= 1, "bench gemm: runs and threads must be at least 1");
  const numerics::Format compute = numerics::parse_precision(text).compute_format();  // a copy: the Precision is a temporary
  const int64_t m = options.m, n = options.n, k = options.k;
  const int threads = options.threads;

  omp_set_num_threads(threads);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  dt a_type = dt::f32, b_type = dt::f32, c_type = dt::f32;
  if (text == "bf16") a_type = b_type = dt::bf16;
  if (text == "int8") a_type = dt::u8, b_type = dt::s8, c_type = dt::s32;
  dnnl::memory::desc a_md({m, k}, a_type, tag::ab), b_any({k, n}, b_type, tag::any), c_md({m, n}, c_type, tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc({a_md, b_any, c_md}, engine);
  } catch (const dnnl::error& e) {
    unsupported("oneDNN has no ", text, " matmul on this CPU (", e.what(), ")");
  }
  result.onednn_impl = pd.impl_info_str();
  dnnl::memory a(a_md, engine), b(pd.weights_desc(), engine), c(c_md, engine);
  fill(a);
  // B filled in plain k x n order, then packed into the primitive's layout
  // (the fp32 values are also what Duet's GEMM packs, so the results compare).
  dnnl::memory b_user({{k, n}, b_type, tag::ab}, engine);
  fill(b_user);
  dnnl::reorder(b_user, b).execute(stream, b_user, b);
  stream.wait();
  dnnl::matmul mm(pd);
  auto onednn_once = [&] {
    return seconds_of([&] {
      mm.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
      stream.wait();
    });
  };
  // Duet's packed GEMM on the same A and B (fp32 only).
  const bool own = text == "fp32" && backends::cpu::PackedSgemm::available();
  std::vector<float> c_own;
  std::unique_ptr<backends::cpu::PackedSgemm> sgemm;
  if (own) {
    sgemm = std::make_unique<backends::cpu::PackedSgemm>(k, n, static_cast<const float*>(b_user.get_data_handle()), n);
    c_own.resize(static_cast<size_t>(m * n));
  }
  auto own_once = [&] {
    return seconds_of([&] { sgemm->run(m, static_cast<const float*>(a.get_data_handle()), k, c_own.data(), n, threads); });
  };
  for (int i = 0; i < 3; ++i) {
    onednn_once();
    if (own) own_once();
  }
  std::vector<double> s, s_own;
  for (int i = 0; i < options.runs; ++i) {  // alternating: both see the same moments of a shared machine
    s.push_back(onednn_once());
    if (own) s_own.push_back(own_once());
  }
  if (own) {
    const float* ref = static_cast<const float*>(c.get_data_handle());
    double scale = 0, diff = 0;
    for (size_t i = 0; i < c_own.size(); ++i) {
      scale = std::max(scale, std::fabs(double(ref[i])));
      diff = std::max(diff, std::fabs(double(ref[i]) - c_own[i]));
    }
    result.duet_sgemm_max_rel_diff = scale > 0 ? diff / scale : diff;
    if (!(result.duet_sgemm_max_rel_diff < 1e-4))
      fail("Duet's GEMM differs from oneDNN's by ", result.duet_sgemm_max_rel_diff, " (relative): a kernel bug");
  }
  result.peak = runtime::measure_peak(compute, threads);
  result.fp32_peak = compute.name == "fp32" ? result.peak : runtime::measure_peak(numerics::parse_format("fp32"), threads);
  result.cpu = runtime::cpu_features().describe();
  const double ops = 2.0 * m * n * k;
  result.onednn = rate_of(s, ops, result.peak);
  if (own) result.duet_sgemm = rate_of(s_own, ops, result.peak);
  return result;
}

}  // namespace duet::measure
