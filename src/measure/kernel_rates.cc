// oneDNN microbenchmarks behind the host-CPU kernel model (sim/cpu_model.h):
// the rates the cpu backend's own primitives reach on this machine, timed the
// way `duet bench --profile` times a node (execute + wait), median of repeats
// (fastest of three interleaved rounds).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "backends/cpu/dnnl_common.h"
#include "duet/backends/cpu/winograd.h"
#include "duet/measure/host_calibration.h"
#include "duet/runtime/peaks.h"

extern "C" void omp_set_num_threads(int);

namespace duet::measure {

using namespace sim;

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Clock = std::chrono::steady_clock;

// Median seconds of one `run` over about `seconds` (at least `runs` runs)
// after two warm-ups; `before`, when given, runs untimed before each one.
double median_run_seconds(const std::function<void()>& run, double seconds, size_t runs = 5,
                          const std::function<void()>& before = {}) {
  for (int i = 0; i < 2; ++i) run();
  std::vector<double> t;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (t.size() < runs || (Clock::now() < end && t.size() < 100000)) {
    if (before) before();
    const auto t0 = Clock::now();
    run();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// The same for a oneDNN primitive: execute + wait, as `duet bench --profile` times a node.
double median_seconds(const dnnl::primitive& p, dnnl::stream& s, const std::unordered_map<int, memory>& args,
                      double seconds, size_t runs = 5, const std::function<void()>& before = {}) {
  return median_run_seconds(
      [&] {
        p.execute(s, args);
        s.wait();
      },
      seconds, runs, before);
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

// Seconds of a k x k convolution (pad k / 2) on 1 x c x hw x hw with the
// post-ops `post` fused as the cpu backend fuses them; groups == c: depthwise.
double conv_seconds(int64_t c, int64_t hw, int64_t groups, const dnnl::engine& e, dnnl::stream& s, double seconds,
                    int64_t k = 3, const std::vector<ops::PostOp>& post = {}) {
  const memory::dims x = {1, c, hw, hw};
  const memory::dims w = groups > 1 ? memory::dims{groups, c / groups, c / groups, k, k} : memory::dims{c, c, k, k};
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       memory::desc(x, dt::f32, tag::any), memory::desc(w, dt::f32, tag::any),
                                       memory::desc({c}, dt::f32, tag::a), memory::desc(x, dt::f32, tag::any), {1, 1},
                                       {0, 0}, {k / 2, k / 2}, {k / 2, k / 2});
  std::vector<runtime::dnnl_detail::EltwiseStep> rest;
  dnnl::convolution_forward::primitive_desc pd(desc, runtime::dnnl_detail::post_op_attr(post, false, rest), e);
  memory src = filled(pd.src_desc(), e), wei = filled(pd.weights_desc(), e), bias = filled(memory::desc({c}, dt::f32, tag::a), e);
  memory dst(pd.dst_desc(), e);
  return median_seconds(dnnl::convolution_forward(pd), s,
                        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}}, seconds);
}

// One post-op of each kind the cpu backend fuses, with typical parameters.
std::vector<ops::PostOp> post_op_kinds() {
  using K = ops::PostOpKind;
  return {{K::Relu, 0, 0},   {K::Clip, 0, 6},      {K::HardSigmoid, 0.2f, 0.5f}, {K::HardSwish}, {K::Sigmoid},
          {K::Tanh},         {K::Silu},            {K::GeluErf},                 {K::GeluTanh},  {K::Linear, 0.5f, 0.01f}};
}

// Median seconds of one primitive of each element family on `rows` x 120
// elements, L2-resident: eltwise (relu on [1, rows, 120]), binary (Mul of two
// such tensors), copy (a reorder into the same layout: what views, slices and
// concatenations do), transpose (of their last two axes), softmax and
// layernorm (over the last axis of [rows, 120]), pool (average of
// [1, 120, rows / 8, 8] to [1, 120, 1, 1]). Rows 40 (4800 elements: a small
// transformer's or an SE block's nodes) and 640 give each family a fixed cost
// and a rate per element.
std::map<std::string, double> family_seconds(int64_t rows, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  std::map<std::string, double> t;
  const memory::desc x({1, rows, 120}, dt::f32, tag::abc), xt({1, rows, 120}, dt::f32, tag::acb),
      x2({rows, 120}, dt::f32, tag::ab);
  {
    dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, x, 0.f, 0.f}, e);
    t["eltwise"] = median_seconds(dnnl::eltwise_forward(pd), s, {{DNNL_ARG_SRC, filled(x, e)}, {DNNL_ARG_DST, memory(x, e)}}, seconds);
  }
  {
    dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_mul, x, x, x}, e);
    t["binary"] = median_seconds(dnnl::binary(pd), s,
                                 {{DNNL_ARG_SRC_0, filled(x, e)}, {DNNL_ARG_SRC_1, filled(x, e)}, {DNNL_ARG_DST, memory(x, e)}}, seconds);
  }
  {
    memory from = filled(x, e), to(xt, e);
    t["transpose"] = median_seconds(dnnl::reorder(from, to), s, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}, seconds);
  }
  {
    memory from = filled(x, e), to(x, e);
    t["copy"] = median_seconds(dnnl::reorder(from, to), s, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}, seconds);
  }
  {
    dnnl::softmax_forward::primitive_desc pd(dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, x2, 1), e);
    t["softmax"] = median_seconds(dnnl::softmax_forward(pd), s, {{DNNL_ARG_SRC, filled(x2, e)}, {DNNL_ARG_DST, memory(x2, e)}}, seconds);
  }
  {
    const memory::desc stat({rows}, dt::f32, tag::a), affine({120}, dt::f32, tag::a);
    dnnl::layer_normalization_forward::primitive_desc pd(
        dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, x2, stat, 1e-5f,
                                                dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift),
        e);
    t["layernorm"] = median_seconds(dnnl::layer_normalization_forward(pd), s,
                                    {{DNNL_ARG_SRC, filled(x2, e)}, {DNNL_ARG_DST, memory(x2, e)},
                                     {DNNL_ARG_SCALE, filled(affine, e)}, {DNNL_ARG_SHIFT, filled(affine, e)}},
                                    seconds);
  }
  {
    const memory::desc in({1, 120, rows / 8, 8}, dt::f32, tag::abcd), out({1, 120, 1, 1}, dt::f32, tag::abcd);
    dnnl::pooling_forward::primitive_desc pd(
        dnnl::pooling_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_avg_exclude_padding, in,
                                    out, {1, 1}, {rows / 8, 8}, {0, 0}, {0, 0}),
        e);
    t["pool"] = median_seconds(dnnl::pooling_forward(pd), s, {{DNNL_ARG_SRC, filled(pd.src_desc(), e)}, {DNNL_ARG_DST, memory(pd.dst_desc(), e)}},
                               seconds);
  }
  return t;
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

// Seconds of the cpu backend's own Winograd 3x3 convolution (pad 1) on
// 1 x c x hw x hw, nChw8c in and out, as the backend runs it; 0 where the
// kernels do not run on this CPU.
double winograd_seconds(int64_t in, int64_t c, int64_t hw, double seconds) {
  using backends::cpu::WinogradConv3x3;
  using backends::cpu::WinogradShape;
  if (!WinogradConv3x3::available()) return 0;
  WinogradShape shape;
  shape.in_channels = in;
  shape.out_channels = c;
  shape.height = shape.width = shape.out_height = shape.out_width = hw;
  shape.pad_top = shape.pad_left = 1;
  std::vector<float> weights(static_cast<size_t>(c * in * 9)), bias(static_cast<size_t>(c)),
      src(static_cast<size_t>(in * hw * hw)), dst(static_cast<size_t>(c * hw * hw));
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = 0.01f * float(i % 97) - 0.3f;
  for (size_t i = 0; i < src.size(); ++i) src[i] = 0.01f * float(i % 89) - 0.4f;
  const WinogradConv3x3 conv(shape, weights.data(), bias.data(), false, false);
  return median_run_seconds([&] { conv.run(src.data(), dst.data()); }, seconds);
}

double matmul_seconds(int64_t m, int64_t k, int64_t n, const dnnl::engine& e, dnnl::stream& s, double seconds) {
  memory::desc a({m, k}, dt::f32, tag::ab), c({m, n}, dt::f32, tag::ab);
  dnnl::matmul::desc desc(a, memory::desc({k, n}, dt::f32, tag::any), c);
  dnnl::matmul::primitive_desc pd(desc, e);
  memory src = filled(a, e), wei = filled(pd.weights_desc(), e), dst(c, e);
  return median_seconds(dnnl::matmul(pd), s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}}, seconds);
}

// Median seconds of `p` run right after a relu has streamed `evict_bytes`
// (source and destination), which pushes p's code and data out to the level
// beyond: in a network, the rest of the inference runs between two runs of a
// node, and a tiny node's time is mostly fetching them back.
double cold_seconds(const dnnl::primitive& p, const std::unordered_map<int, memory>& args, double evict_bytes,
                    const dnnl::engine& e, dnnl::stream& s, double seconds) {
  const int64_t elements = std::max<int64_t>(16, int64_t(evict_bytes / 2 / sizeof(float)));
  memory::desc md({elements}, dt::f32, tag::a);
  dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, md, 0.f, 0.f}, e);
  dnnl::eltwise_forward relu(pd);
  memory src = filled(md, e), dst(md, e);
  return median_seconds(p, s, args, seconds, 15, [&] {
    relu.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    s.wait();
  });
}

// A tiny elementwise primitive (Mul of two [1,64,1,1]) and a tiny matrix one
// (1x1 convolution 64 -> 64 on 1x1) with their arguments.
struct TinyPrimitives {
  dnnl::primitive binary, conv, copy;
  std::unordered_map<int, memory> binary_args, conv_args, copy_args;
};

TinyPrimitives tiny_primitives(const dnnl::engine& e) {
  TinyPrimitives t;
  memory::desc x({1, 64, 1, 1}, dt::f32, tag::abcd);
  dnnl::binary::primitive_desc bpd({dnnl::algorithm::binary_mul, x, x, x}, e);
  t.binary = dnnl::binary(bpd);
  t.binary_args = {{DNNL_ARG_SRC_0, filled(x, e)}, {DNNL_ARG_SRC_1, filled(x, e)}, {DNNL_ARG_DST, memory(x, e)}};
  memory from = filled(x, e), to(x, e);
  t.copy = dnnl::reorder(from, to);
  t.copy_args = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       memory::desc({1, 64, 1, 1}, dt::f32, tag::any),
                                       memory::desc({64, 64, 1, 1}, dt::f32, tag::any), memory::desc({64}, dt::f32, tag::a),
                                       memory::desc({1, 64, 1, 1}, dt::f32, tag::any), {1, 1}, {0, 0}, {0, 0});
  dnnl::convolution_forward::primitive_desc cpd(desc, e);
  t.conv = dnnl::convolution_forward(cpd);
  t.conv_args = {{DNNL_ARG_SRC, filled(cpd.src_desc(), e)}, {DNNL_ARG_WEIGHTS, filled(cpd.weights_desc(), e)},
                 {DNNL_ARG_BIAS, filled(memory::desc({64}, dt::f32, tag::a), e)}, {DNNL_ARG_DST, memory(cpd.dst_desc(), e)}};
  return t;
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

namespace {

int channel_block_of(const dnnl_memory_desc_t& md) {
  if (md.format_kind != dnnl_blocked) return 1;
  const auto& b = md.format_desc.blocking;
  for (int i = 0; i < b.inner_nblks; ++i)
    if (b.inner_idxs[i] == 1) return int(b.inner_blks[i]);
  return 1;
}

}  // namespace

void keep_better(CpuKernelRates& into, const CpuKernelRates& other) {
  auto high = [](double& a, double b) { a = std::max(a, b); };
  auto low = [](double& a, double b) { a = a > 0 && b > 0 ? std::min(a, b) : std::max(a, b); };
  high(into.fma_flops, other.fma_flops);
  high(into.conv_flops, other.conv_flops);
  high(into.matmul_flops, other.matmul_flops);
  high(into.conv_small_flops, other.conv_small_flops);
  high(into.matmul_small_flops, other.matmul_small_flops);
  high(into.depthwise_flops, other.depthwise_flops);
  low(into.depthwise_output_s, other.depthwise_output_s);
  for (auto& [kind, s] : other.post_op_s)
    if (auto it = into.post_op_s.find(kind); it != into.post_op_s.end()) it->second = std::min(it->second, s);
  high(into.deconv_flops, other.deconv_flops);
  high(into.winograd_flops, other.winograd_flops);
  high(into.winograd_narrow_flops, other.winograd_narrow_flops);
  high(into.transcendental_per_s, other.transcendental_per_s);
  low(into.overhead_s, other.overhead_s);
  into.overlap = std::min(into.overlap, other.overlap);
  into.depthwise_overlap = std::min(into.depthwise_overlap, other.depthwise_overlap);
  for (auto& [family, s] : other.element_s)
    if (auto it = into.element_s.find(family); it != into.element_s.end()) {
      low(it->second.first, s.first);
      low(it->second.second, s.second);
    }
  for (size_t i = 0; i < into.levels.size() && i < other.levels.size(); ++i) {
    high(into.levels[i].bytes_per_s, other.levels[i].bytes_per_s);
    low(into.levels[i].overhead_s, other.levels[i].overhead_s);
    low(into.levels[i].matrix_overhead_s, other.levels[i].matrix_overhead_s);
    low(into.levels[i].copy_overhead_s, other.levels[i].copy_overhead_s);
  }
}

int conv_channel_block() {
  dnnl::engine e(dnnl::engine::kind::cpu, 0);
  const memory::dims x = {1, 24, 56, 56};
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                       memory::desc(x, dt::f32, tag::any), memory::desc({24, 24, 3, 3}, dt::f32, tag::any),
                                       memory::desc(x, dt::f32, tag::any), {1, 1}, {1, 1}, {1, 1});
  return channel_block_of(dnnl::convolution_forward::primitive_desc(desc, e).dst_desc().data);
}

int deconv_channel_block() {
  dnnl::engine e(dnnl::engine::kind::cpu, 0);
  const memory::dims x = {1, 24, 56, 56}, y = {1, 24, 112, 112};
  dnnl::deconvolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct,
                                         memory::desc(x, dt::f32, tag::any), memory::desc({24, 24, 2, 2}, dt::f32, tag::any),
                                         memory::desc(y, dt::f32, tag::any), {2, 2}, {0, 0}, {0, 0});
  return channel_block_of(dnnl::deconvolution_forward::primitive_desc(desc, e).dst_desc().data);
}

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
  double overhead = 1e30, conv = 1e30, mm = 1e30, dw3 = 1e30, dw5 = 1e30, exp = 1e30, deconv = 1e30, winograd = 1e30;
  // Depthwise convolutions on 64 channels, 28x28 (L2-resident on any x86 of
  // the last decade): a 3x3 and a 5x5 give the cost per output and per tap;
  // the 3x3 with each post-op kind, what that kind adds per output.
  constexpr int64_t kDwChannels = 64, kDwSize = 28;
  const std::vector<ops::PostOp> kinds = post_op_kinds();
  std::vector<double> dw_post(kinds.size(), 1e30);
  constexpr int64_t kSmallRows = 40, kLargeRows = 640;
  std::map<std::pair<std::string, int64_t>, double> families;  // (family, rows) -> seconds
  double conv_small = 1e30, mm_small = 1e30, winograd_narrow = 1e30;
  for (int round = 0; round < kRounds; ++round) {
    overhead = std::min(overhead, eltwise_seconds(64, e, s, slice));
    conv = std::min(conv, conv_seconds(64, 56, 1, e, s, slice));
    winograd = std::min(winograd, winograd_seconds(sim::kCpuWinogradInputs, 64, 56, slice));
    winograd_narrow = std::min(winograd_narrow, winograd_seconds(sim::kCpuWinogradNarrowInputs, 64, 56, slice / 3));
    mm = std::min(mm, matmul_seconds(512, 512, 512, e, s, slice));
    conv_small = std::min(conv_small, conv_seconds(32, 16, 1, e, s, slice / 3));
    mm_small = std::min(mm_small, matmul_seconds(40, 120, 360, e, s, slice / 3));
    dw3 = std::min(dw3, conv_seconds(kDwChannels, kDwSize, kDwChannels, e, s, slice / 2, 3));
    dw5 = std::min(dw5, conv_seconds(kDwChannels, kDwSize, kDwChannels, e, s, slice / 2, 5));
    for (size_t i = 0; i < kinds.size(); ++i)
      dw_post[i] = std::min(dw_post[i], conv_seconds(kDwChannels, kDwSize, kDwChannels, e, s, slice / 8, 3, {kinds[i]}));
    deconv = std::min(deconv, deconv_seconds(24, 160, e, s, slice));
    exp = std::min(exp, eltwise_seconds(4096, e, s, slice, dnnl::algorithm::eltwise_logistic));
    for (int64_t rows : {kSmallRows, kLargeRows})
      for (auto& [family, seconds] : family_seconds(rows, e, s, slice / 6)) {
        auto& best = families[{family, rows}];
        best = best > 0 ? std::min(best, seconds) : seconds;
      }
  }
  r.overhead_s = overhead;
  // Rates net of the fixed overhead, as the model adds it back once per node.
  auto rate = [&](double work, double t) { return work / std::max(t - r.overhead_s, 0.25 * t); };
  r.conv_flops = rate(sim::kCpuConvFlops, conv);
  r.conv_small_flops = rate(sim::kCpuSmallConvFlops, conv_small);
  r.matmul_small_flops = rate(sim::kCpuSmallMatMulFlops, mm_small);
  static_assert(120 * kSmallRows == sim::kCpuFamilySmall && 120 * kLargeRows == sim::kCpuFamilyLarge);
  for (auto& [key, small] : families)
    if (key.second == kSmallRows)
      r.element_s[key.first] = {std::max(0.0, small - r.overhead_s),
                                std::max(0.0, families[{key.first, kLargeRows}] - r.overhead_s)};
  r.winograd_flops = winograd > 0 ? rate(sim::winograd_calibration_flops(sim::kCpuWinogradInputs), winograd) : 0;
  r.winograd_narrow_flops =
      winograd_narrow > 0 ? rate(sim::winograd_calibration_flops(sim::kCpuWinogradNarrowInputs), winograd_narrow) : 0;
  r.matmul_flops = rate(sim::kCpuMatMulFlops, mm);
  {
    const double outputs = double(kDwChannels * kDwSize * kDwSize);
    const double t3 = std::max(dw3 - r.overhead_s, 0.25 * dw3), t5 = std::max(dw5 - r.overhead_s, 0.25 * dw5);
    // Per tap: the 16 taps the 5x5 has more; floored at the FMA peak's pace.
    const double tap = std::max((t5 - t3) / (16 * outputs), 2.0 / r.fma_flops);
    r.depthwise_flops = 2.0 / tap;
    r.depthwise_output_s = std::max(0.0, t3 / outputs - 9 * tap);
    for (size_t i = 0; i < kinds.size(); ++i)
      r.post_op_s[ops::post_op_name(kinds[i].kind)] = std::max(0.0, (dw_post[i] - dw3) / outputs);
  }
  r.deconv_flops = rate(2.0 * 24 * 24 * 4 * 160 * 160, deconv);
  r.transcendental_per_s = rate(4096, exp);
  // Streaming bandwidth per level: a chain of relus over a ring of 4 tensors
  // spanning the level's capacity (DRAM: 4x L3); L2 is per core, so the
  // threads' shares add up. A node whose reads and writes fit a level's
  // capacity gets its rate. Each level's fixed costs: the tiny primitives
  // after streaming twice the level before it. Fastest of the rounds, as above.
  const double l1 = cache_bytes(0, 32 * 1024) * threads, l2 = cache_bytes(2, 512 * 1024) * threads,
               l3 = cache_bytes(3, 8 << 20);
  const TinyPrimitives tiny = tiny_primitives(e);
  struct Level { std::string name; double capacity, evict; };
  const std::vector<Level> levels = {{"L2", l2, 2 * l1}, {"L3", l3, 2 * l2}, {"DRAM", 0, 2 * l3}};
  for (auto& level : levels) {
    const double ring = level.capacity > 0 ? level.capacity : 4 * l3;
    const int64_t elements = int64_t(ring / 4 / sizeof(float));
    double chain = 1e30, binary = 1e30, conv = 1e30, copy = 1e30;
    for (int round = 0; round < kRounds; ++round) chain = std::min(chain, chain_seconds(elements, 4, e, s, slice));
    // The cold costs swing most with other tenants (a 1x1 conv after 64 MiB
    // streamed: medians of 4 to 11 us between runs of a few seconds here):
    // more, shorter rounds, the fastest kept.
    constexpr int kColdRounds = 7;
    for (int round = 0; round < kColdRounds; ++round) {
      binary = std::min(binary, cold_seconds(tiny.binary, tiny.binary_args, level.evict, e, s, slice / 4));
      conv = std::min(conv, cold_seconds(tiny.conv, tiny.conv_args, level.evict, e, s, slice / 4));
      copy = std::min(copy, cold_seconds(tiny.copy, tiny.copy_args, level.evict, e, s, slice / 4));
    }
    CpuLevel l{level.name, level.capacity, rate(2.0 * sizeof(float) * double(elements), chain)};
    l.overhead_s = binary;
    l.matrix_overhead_s = conv;
    l.copy_overhead_s = copy;
    r.levels.push_back(l);
  }
  // Overlap of compute and memory, for a GEMM-shaped and a depthwise kernel:
  // a 1x1 convolution 64 -> 64 (a 3x3 depthwise on 64 channels) whose
  // working set sits in L2 (16x16; 28x28) gives its compute rate; the same
  // at a size that streams from L3 (a working set of half the L3, at least
  // 4x L2) is timed against that compute time plus the time a relu takes to
  // stream the same bytes, timed right after it. The estimate is a
  // difference of times, so noise swings it (0 to 0.7 between calibrations
  // here, with the memory time taken from the L3 bandwidth measured earlier,
  // which itself swung 22 to 41 GB/s): all three are timed back to back in
  // each of seven rounds, and the median of the rounds' estimates kept.
  // (Measured on Zen 4: the 1x1 convolution hides nothing, the depthwise
  // all: at 28x28 and 56x56 it ran at the same rate.)
  const auto overlap = [&](int64_t groups, int64_t k, int64_t small) {
    const int64_t c = 64;
    const auto hw_for = [&](double bytes) { return std::max<int64_t>(small, int64_t(std::sqrt(bytes / (2.0 * c * sizeof(float))))); };
    const int64_t large = hw_for(std::max(0.5 * l3, 4 * l2));
    const double scale = double(large * large) / double(small * small);
    std::vector<double> estimates;
    for (int round = 0; round < 7; ++round) {
      const double hot = conv_seconds(c, small, groups, e, s, slice / 6, k);
      const double streamed = conv_seconds(c, large, groups, e, s, slice / 6, k);
      const double stream = eltwise_seconds(c * large * large, e, s, slice / 6);
      const double compute = std::max(hot - r.overhead_s, 0.25 * hot) * scale;
      const double memory = std::max(stream - r.overhead_s, 0.25 * stream);
      const double t = std::max(streamed - r.overhead_s, 0.25 * streamed);
      estimates.push_back(std::clamp((compute + memory - t) / std::min(compute, memory), 0.0, 1.0));
    }
    std::nth_element(estimates.begin(), estimates.begin() + 3, estimates.end());
    return estimates[3];
  };
  r.overlap = overlap(1, 1, 16);
  r.depthwise_overlap = overlap(kDwChannels, 3, kDwSize);
  return r;
}

}  // namespace duet::measure
