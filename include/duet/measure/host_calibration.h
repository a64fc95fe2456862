// Host calibration: microbenchmarks that measure this CPU's FP32 peak and
// memory bandwidths, written as devices/host.toml so the host's catalog entry
// is measured, never typed in.
#pragma once
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/sim/cpu_model.h"

namespace duet::measure {

using sim::CpuKernelRates;

struct HostCalibration {
  std::string cpu_model;
  int threads = 1;
  double fp32_flops = 0;            // all threads, FMA loop
  double dram_bytes_per_s = 0;      // triad over arrays far larger than the caches
  double cache_bytes_per_s = 0;     // triad over a 256 KiB working set per thread
  double dram_capacity_bytes = 0;   // physical memory
  int simd_floats = 8;              // FP32 lanes oneDNN's kernels use (AVX-512: 16)
  int channel_block = 8;            // channels per block of oneDNN's convolution layout here (1: channels-last)
  int deconv_channel_block = 8;     // the same for its deconvolution
  std::vector<CpuKernelRates> kernel_rates;  // oneDNN kernel rates at 1 and at all threads
  double seconds = 0;               // time the benchmarks took
};

// oneDNN microbenchmarks at `threads` threads (measure/kernel_rates.cc): FMA
// peak, conv / matmul / depthwise rates, per-primitive overhead, streaming
// bandwidth and a tiny primitive's fixed cost per cache level.
CpuKernelRates measure_kernel_rates(int threads, double seconds_per_test);
// Figure by figure, the better of two measurements at the same thread count
// into `into`: the higher rate or bandwidth, the lower time or overhead, the
// lower overlap (the estimate noise pushes up).
void keep_better(CpuKernelRates& into, const CpuKernelRates& other);
// The channel block of the layout oneDNN's convolution chooses for 24-channel
// activations here (nChw8c: 8; channels-last or plain: 1).
int conv_channel_block();
int deconv_channel_block();  // the same for a 2x2 stride-2 deconvolution

// progress: stages "measuring" (the peak, bandwidths, blocks, then each thread count's kernel rates, twice).
HostCalibration calibrate_host(double seconds_per_test = 0.3, const Progress& progress = {});
std::string host_toml(const HostCalibration& c);  // devices/host.toml contents

}  // namespace duet::measure
