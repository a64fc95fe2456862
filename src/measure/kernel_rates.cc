// oneDNN microbenchmarks behind the host-CPU kernel model (sim/cpu_model.h):
// the rates the cpu backend's own primitives reach on this machine, timed the
// way `duet bench --profile` times a node (execute + wait), median of repeats
// (fastest of three interleaved rounds).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "duet/runtime/peaks.h"
#include "duet/measure/host_calibration.h"

extern "C" void omp_set_num_threads(int);

namespace duet::measure {

using namespace sim;

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Clock = std::chrono::steady_clock;

// Median seconds of one execution over about `seconds` (at least 5 runs) after two warm-ups.
double median_seconds(const dnnl::primitive& p, dnnl::stream& s, const std::unordered_map<int, memory>& args,
                      double seconds) {
  for (int i = 0; i < 2; ++i) p.execute(s, args);
  s.wait();
  std::vector<double> t;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (t.size() < 5 || (Clock::now() < end && t.size() < 100000)) {
    const auto t0 = Clock::now();
    p.execute(s, args);
    s.wait();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

memory filled(const memory::desc& md, const dnnl::engine& e) {
  memory m(md, e);
  auto* p = static_cast<float*>(m.get_data_handle());
  for (size_t i = 0; i < md.get_size() / sizeof(float); ++i) p[i] = 0.01f * float(i % 97) - 0.3f;
  return m;
}

// Seconds of an eltwise over `elements` floats (source and destination distinct).
double eltwise_seconds(int64_t elements, const dnnl::engine& e, dnnl::stream& s, double seconds,
                       dnnl::algorithm alg = dnnl::algorithm::eltwise_relu) {
  memory::desc md({elements}, dt::f32, tag::a);
  dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, md, 0.f, 0.f}, e);
  memory src = filled(md, e), dst(md, e);
  return median_seconds(dnnl::eltwise_forward(pd), s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}, seconds);
}

// Median seconds per relu in a chain as a network runs one: each reads the
// tensor the previous one wrote and writes the next buffer of a ring of
// `buffers` tensors of `elements` floats, so everything the chain touches
// spans the ring (a cache level's capacity), shared with whatever else runs.
double chain_seconds(int64_t elements, int buffers, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  memory::desc md({elements}, dt::f32, tag::a);
  dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, md, 0.f, 0.f}, e);
  dnnl::eltwise_forward relu(pd);
  std::vector<memory> ring;
  for (int i = 0; i < buffers; ++i) ring.push_back(filled(md, e));
  std::vector<double> t;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  for (size_t i = 0; t.size() < size_t(3 * buffers) || (Clock::now() < end && t.size() < 100000); ++i) {
    const auto t0 = Clock::now();
    relu.execute(s, {{DNNL_ARG_SRC, ring[i % buffers]}, {DNNL_ARG_DST, ring[(i + 1) % buffers]}});
    s.wait();
    if (i >= size_t(buffers)) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());  // after one lap
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// Seconds of a 3x3 convolution (pad 1) on 1 x c x hw x hw; groups == c: depthwise.
double conv_seconds(int64_t c, int64_t hw, int64_t groups, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  const memory::dims x = {1, c, hw, hw};
  const memory::dims w = groups > 1 ? memory::dims{groups, c / groups, c / groups, 3, 3} : memory::dims{c, c, 3, 3};
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       memory::desc(x, dt::f32, tag::any), memory::desc(w, dt::f32, tag::any),
                                       memory::desc({c}, dt::f32, tag::a), memory::desc(x, dt::f32, tag::any), {1, 1},
                                       {0, 0}, {1, 1}, {1, 1});
  dnnl::convolution_forward::primitive_desc pd(desc, e);
  memory src = filled(pd.src_desc(), e), wei = filled(pd.weights_desc(), e), bias = filled(memory::desc({c}, dt::f32, tag::a), e);
  memory dst(pd.dst_desc(), e);
  return median_seconds(dnnl::convolution_forward(pd), s,
                        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}}, seconds);
}

// Seconds of a 2x2 stride-2 deconvolution (upsampling head) on 1 x c x hw x hw.
double deconv_seconds(int64_t c, int64_t hw, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  const memory::dims x = {1, c, hw, hw}, y = {1, c, 2 * hw, 2 * hw}, w = {c, c, 2, 2};
  // No bias: oneDNN 2.6 adds a deconvolution's bias in a separate loop that took
  // 10x the deconvolution itself here (30-56 ms vs 3.9 ms, DNNL_VERBOSE).
  dnnl::deconvolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct,
                                         memory::desc(x, dt::f32, tag::any), memory::desc(w, dt::f32, tag::any),
                                         memory::desc(y, dt::f32, tag::any), {2, 2}, {0, 0}, {0, 0});
  dnnl::deconvolution_forward::primitive_desc pd(desc, e);
  memory src = filled(pd.src_desc(), e), wei = filled(pd.weights_desc(), e);
  memory dst(pd.dst_desc(), e);
  return median_seconds(dnnl::deconvolution_forward(pd), s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}},
                        seconds);
}

double matmul_seconds(int64_t n, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  memory::desc a({n, n}, dt::f32, tag::ab), c({n, n}, dt::f32, tag::ab);
  dnnl::matmul::desc desc(a, memory::desc({n, n}, dt::f32, tag::any), c);
  dnnl::matmul::primitive_desc pd(desc, e);
  memory src = filled(a, e), wei = filled(pd.weights_desc(), e), dst(c, e);
  return median_seconds(dnnl::matmul(pd), s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}}, seconds);
}

double cache_bytes(int index, double fallback) {
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
  std::string s;
  if (!(f >> s) || s.empty()) return fallback;
  double v = std::atof(s.c_str());
  if (s.back() == 'K') v *= 1024;
  if (s.back() == 'M') v *= 1024 * 1024;
  return v > 0 ? v : fallback;
}

}  // namespace

CpuKernelRates measure_kernel_rates(int threads, double seconds) {
  omp_set_num_threads(threads);
  dnnl::engine e(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(e);
  CpuKernelRates r;
  r.threads = threads;
  r.fma_flops = runtime::measure_peak(numerics::parse_format("fp32"), threads, seconds).ops_per_s;
  // The kernels are timed in three interleaved rounds of a third of the time
  // each and the fastest round's median kept: on a shared machine another
  // tenant's burst of a few seconds then slows one round, not the calibration
  // (measured here: single-round conv rates ranged 37-64 GFLOP/s between runs).
  constexpr int kRounds = 3;
  const double slice = seconds / kRounds;
  double overhead = 1e30, conv = 1e30, mm = 1e30, dw = 1e30, exp = 1e30, deconv = 1e30;
  for (int round = 0; round < kRounds; ++round) {
    overhead = std::min(overhead, eltwise_seconds(64, e, s, slice));
    conv = std::min(conv, conv_seconds(64, 56, 1, e, s, slice));
    mm = std::min(mm, matmul_seconds(512, e, s, slice));
    dw = std::min(dw, conv_seconds(64, 56, 64, e, s, slice));
    deconv = std::min(deconv, deconv_seconds(24, 160, e, s, slice));
    exp = std::min(exp, eltwise_seconds(4096, e, s, slice, dnnl::algorithm::eltwise_logistic));
  }
  r.overhead_s = overhead;
  // Rates net of the fixed overhead, as the model adds it back once per node.
  auto rate = [&](double work, double t) { return work / std::max(t - r.overhead_s, 0.25 * t); };
  r.conv_flops = rate(2.0 * 64 * 64 * 9 * 56 * 56, conv);
  r.matmul_flops = rate(2.0 * 512 * 512 * 512, mm);
  r.depthwise_flops = rate(2.0 * 64 * 9 * 56 * 56, dw);
  r.deconv_flops = rate(2.0 * 24 * 24 * 4 * 160 * 160, deconv);
  r.transcendental_per_s = rate(4096, exp);
  // Streaming bandwidth per level: a chain of relus over a ring of 4 tensors
  // spanning the level's capacity (DRAM: 4x L3); L2 is per core, so the
  // threads' shares add up. A node whose reads and writes fit a level's
  // capacity gets its rate.
  const double l2 = cache_bytes(2, 512 * 1024) * threads, l3 = cache_bytes(3, 8 << 20);
  const std::vector<std::pair<std::string, double>> levels = {{"L2", l2}, {"L3", l3}, {"DRAM", 0}};
  for (auto& [name, capacity] : levels) {
    const double ring = capacity > 0 ? capacity : 4 * l3;
    const int64_t elements = int64_t(ring / 4 / sizeof(float));
    r.levels.push_back({name, capacity, rate(2.0 * sizeof(float) * double(elements), chain_seconds(elements, 4, e, s, seconds))});
  }
  return r;
}

}  // namespace duet::measure
