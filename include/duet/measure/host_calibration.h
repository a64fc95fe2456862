// Host calibration: microbenchmarks that measure this CPU's FP32 peak and
// memory bandwidths, written as devices/host.toml so the host's catalog entry
// is measured, never typed in.
#pragma once
#include <string>
#include <vector>

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
  std::vector<CpuKernelRates> kernel_rates;  // oneDNN kernel rates at 1 and at all threads
  double seconds = 0;               // time the benchmarks took
};

// oneDNN microbenchmarks at `threads` threads (sim/calibrate_kernels.cc): FMA
// peak, conv / matmul / depthwise rates, per-primitive overhead, streaming
// bandwidth per cache level.
CpuKernelRates measure_kernel_rates(int threads, double seconds_per_test);

HostCalibration calibrate_host(double seconds_per_test = 0.3);
std::string host_toml(const HostCalibration& c);  // devices/host.toml contents

}  // namespace duet::measure
