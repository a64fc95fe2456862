// Host calibration: microbenchmarks that measure this CPU's FP32 peak and
// memory bandwidths, written as devices/host.toml so the host's catalog entry
// is measured, never typed in.
#pragma once
#include <string>

namespace duet::sim {

struct HostCalibration {
  std::string cpu_model;
  int threads = 1;
  double fp32_flops = 0;            // all threads, FMA loop
  double dram_bytes_per_s = 0;      // triad over arrays far larger than the caches
  double cache_bytes_per_s = 0;     // triad over a 256 KiB working set per thread
  double dram_capacity_bytes = 0;   // physical memory
  double seconds = 0;               // time the benchmarks took
};

HostCalibration calibrate_host(double seconds_per_test = 0.3);
std::string host_toml(const HostCalibration& c);  // devices/host.toml contents

}  // namespace duet::sim
