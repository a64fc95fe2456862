#include "duet/measure/host_calibration.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>
#include <vector>

#include "duet/backends/cpu/winograd.h"
#include "duet/core/process.h"
#include "duet/runtime/peaks.h"

namespace duet::measure {

using namespace sim;

namespace {

using Clock = std::chrono::steady_clock;

double elapsed(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

volatile double sink;

// Bytes/s of a = b + s * c over `elements` floats per thread (3 streams of 4 bytes).
double triad_rate(size_t elements, double seconds) {
  std::vector<float> a(elements, 0.f), b(elements, 1.f), c(elements, 2.f);
  double best = 0;
  auto t_end = Clock::now() + std::chrono::duration<double>(seconds);
  int reps = 1;
  while (Clock::now() < t_end) {
    auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) {
      for (size_t i = 0; i < elements; ++i) a[i] = b[i] + 0.5f * c[i];
      sink = a[elements / 2];
    }
    const double t = elapsed(t0);
    if (t < 0.01) { reps *= 2; continue; }
    best = std::max(best, 3.0 * 4.0 * double(elements) * reps / t);
  }
  return best;
}

template <typename F>
double on_all_threads(int threads, F f) {
  std::vector<double> rates(size_t(threads), 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { rates[size_t(t)] = f(); });
  for (auto& th : pool) th.join();
  double sum = 0;
  for (double r : rates) sum += r;
  return sum;
}

}  // namespace

HostCalibration calibrate_host(double seconds_per_test, const Progress& progress) {
  HostCalibration c;
  auto t0 = Clock::now();
  c.cpu_model = cpu_model_name();
  c.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> counts = {1};  // the thread counts whose kernel rates are measured
  if (c.threads != 1) counts.push_back(c.threads);
  const size_t steps = 4 + 2 * counts.size();  // peak, DRAM, cache, blocks; kernel rates per count, twice
  size_t step = 0;
  auto advance = [&] {
    if (progress) progress("measuring", step, steps);
    ++step;
  };
  advance();
  // The one FMA loop (runtime/peaks.h): this file's own 8-wide loop, rolled
  // at -O2, measured 68 GFLOP/s on two Zen 4 cores that do 2 x 118.
  const numerics::Format fp32 = numerics::parse_format("fp32");
  c.fp32_flops = std::max(runtime::measure_peak(fp32, 1, seconds_per_test).ops_per_s,
                          runtime::measure_peak(fp32, c.threads, seconds_per_test).ops_per_s);
  const size_t big = size_t(16) << 20;  // 3 x 64 MiB per thread
  advance();
  c.dram_bytes_per_s = std::max(triad_rate(big, seconds_per_test),
                                on_all_threads(c.threads, [&] { return triad_rate(big, seconds_per_test); }));
  advance();
  c.cache_bytes_per_s = on_all_threads(c.threads, [&] { return triad_rate(size_t(256 * 1024 / 12), seconds_per_test); });
  c.dram_capacity_bytes = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  c.simd_floats = runtime::cpu_features().avx512 ? 16 : 8;
  advance();
  c.channel_block = conv_channel_block();
  c.deconv_channel_block = deconv_channel_block();
  // Each thread count is measured twice, the counts alternating, and the
  // better of the two kept per figure: another tenant's burst of ten seconds
  // or more (the rounds inside one measurement are shorter) slowed a whole
  // one-thread measurement here (Winograd 155 against 190 GFLOP/s, L3 29
  // against 35-41 GB/s) and the model then read 20% slow.
  for (int repeat = 0; repeat < 2; ++repeat)
    for (size_t i = 0; i < counts.size(); ++i) {
      advance();
      CpuKernelRates r = measure_kernel_rates(counts[i], seconds_per_test);
      if (repeat == 0) c.kernel_rates.push_back(std::move(r));
      else keep_better(c.kernel_rates[i], r);
    }
  if (progress) progress("measuring", steps, steps);
  c.seconds = elapsed(t0);
  return c;
}

std::string host_toml(const HostCalibration& c) {
  std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::ostringstream o;
  o << std::setprecision(6);
  const std::string measured = std::string("measured by duet calibrate-host on ") + date + ", " + c.cpu_model + ", " +
                               std::to_string(c.threads) + " threads";
  o << "# Written by `duet calibrate-host`: every number below is measured on this machine.\n"
    << "name = \"host CPU (" << c.cpu_model << ")\"\n"
    << "kind = \"cpu\"\n"
    << "calibrated = true\n"
    << "source = \"" << measured << "\"\n\n"
    << "[matrix]\nmodel = \"roofline\"\ncount = " << c.threads << "\n"
    << "source = \"FMA loop (runtime::measure_peak: 12 independent chains of the widest FMA per thread), best of one and all threads\"\n"
    << "[matrix.peak_tflops]\nfp32 = " << c.fp32_flops / 1e12 << "\n\n"
    << "[vector]\nsource = \"same FMA loop as the matrix peak\"\n"
    << "[vector.peak_tflops]\nfp32 = " << c.fp32_flops / 1e12 << "\n\n"
    << "[[memory]]\nname = \"cache\"\non_chip = true\ncapacity_kib = 256\nbandwidth_gbs = " << c.cache_bytes_per_s / 1e9
    << "\nsource = \"triad over 256 KiB per thread, all threads\"\n\n"
    << "[[memory]]\nname = \"DRAM\"\ncapacity_bytes = " << std::fixed << std::setprecision(0) << c.dram_capacity_bytes
    << std::defaultfloat << std::setprecision(6) << "\nbandwidth_gbs = " << c.dram_bytes_per_s / 1e9
    << "\nsource = \"triad over 3 x 64 MiB per thread (best of one and all threads); capacity from sysconf\"\n\n"
    << "[power]\nsource = \"not measurable here; energy uses the technology table only\"\n\n"
    << "[ops]\nsupported = [\"*\"]\n";
  if (!c.kernel_rates.empty()) {
    o << "\n# Host-CPU kernel model (sim/cpu_model.h): rates of oneDNN's own primitives, median of repeated\n"
      << "# execute + wait, net of the per-primitive overhead; levels: a relu streaming half the level, and\n"
      << "# a tiny primitive's fixed cost when its code and data were pushed out to that level.\n"
      << "[cpu_kernels]\nsimd_floats = " << c.simd_floats << "\nchannel_block = " << c.channel_block
      << "\ndeconv_channel_block = " << c.deconv_channel_block << "\n"
      << "source = \"" << measured << "; oneDNN 3x3 conv 64->64 56x56, matmul 512^3, 3x3 and 5x5 depthwise 64ch 28x28 (per output and per tap) with and without each post-op, "
      << "logistic on 4096 floats (exp), relu on 64 floats (overhead), relu chains over rings of 4 tensors spanning L2 / L3 / 4x L3 (bandwidth), a Mul on 64 floats, a 1x1 conv 64->64 on 1x1 and a copy of 64 floats after streaming 2x L1 / 2x L2 / 2x L3 (per-level overheads)\"\n";
    if (backends::cpu::WinogradConv3x3::available())
      o << "\n# The cpu backend's Winograd F(2x2, 3x3) kernels take 3x3 stride-1 FP32 convolutions with these shapes.\n"
        << "[cpu_kernels.winograd]\nchannel_multiple = " << backends::cpu::WinogradConv3x3::kChannelMultiple
        << "\nmin_input_channels = " << backends::cpu::WinogradConv3x3::kMinInputChannels
        << "\nmin_output_size = " << backends::cpu::WinogradConv3x3::kMinOutputSize
        << "\npanel_channels = " << backends::cpu::WinogradConv3x3::kPanelChannels << "\n";
    for (auto& r : c.kernel_rates) {
      o << "\n[[cpu_kernels.rates]]\nthreads = " << r.threads << "\nfma_gflops = " << r.fma_flops / 1e9
        << "\nconv_gflops = " << r.conv_flops / 1e9 << "\nmatmul_gflops = " << r.matmul_flops / 1e9
        << "\nconv_small_gflops = " << r.conv_small_flops / 1e9 << "\nmatmul_small_gflops = " << r.matmul_small_flops / 1e9
        << "\nwinograd_narrow_gflops = " << r.winograd_narrow_flops / 1e9 << "\noverlap = " << r.overlap << "\ndepthwise_overlap = " << r.depthwise_overlap << "\nelement_us = {";
      for (auto it = r.element_s.begin(); it != r.element_s.end(); ++it)
        o << (it == r.element_s.begin() ? " " : ", ") << it->first << " = [" << it->second.first * 1e6 << ", "
          << it->second.second * 1e6 << "]";
      o << " }\npost_op_ns = {";
      for (auto it = r.post_op_s.begin(); it != r.post_op_s.end(); ++it)
        o << (it == r.post_op_s.begin() ? " " : ", ") << it->first << " = " << it->second * 1e9;
      o << " }" << "\nwinograd_gflops = " << r.winograd_flops / 1e9 << "\ndepthwise_gflops = " << r.depthwise_flops / 1e9
        << "\ndepthwise_output_ns = " << r.depthwise_output_s * 1e9 << "\ndeconv_gflops = " << r.deconv_flops / 1e9 << "\nexp_gelements_per_s = " << r.transcendental_per_s / 1e9 << "\noverhead_us = " << r.overhead_s * 1e6 << "\nlevels = [\n";
      for (auto& l : r.levels)
        o << "  { name = \"" << l.name << "\", capacity_bytes = " << std::fixed << std::setprecision(0) << l.capacity_bytes
          << std::defaultfloat << std::setprecision(6) << ", bandwidth_gbs = " << l.bytes_per_s / 1e9
          << ", overhead_us = " << l.overhead_s * 1e6 << ", matrix_overhead_us = " << l.matrix_overhead_s * 1e6
          << ", copy_overhead_us = " << l.copy_overhead_s * 1e6 << " },\n";
      o << "]\n";
    }
  }
  return o.str();
}

}  // namespace duet::measure
