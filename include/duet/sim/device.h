// Device catalog: one TOML file per device in devices/ (schema: docs/devices.md).
// Every number carries its source; the host CPU's numbers are measured by
// `duet calibrate-host` and written to devices/host.toml.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "duet/numerics/precision.h"
#include "duet/sim/cpu_model.h"
#include "duet/sim/energy.h"
#include "duet/sim/memory.h"
#include "duet/sim/systolic.h"

namespace duet::sim {

// Formats a device can compute in, narrowest storage last.
// Devices state their peak rates per compute format: these keys.
const std::vector<std::string>& precisions();  // fp32 tf32 bf16 fp16 fp8 int8 int4
double precision_bytes(const std::string& precision);  // storage bytes per element of a key; throws on unknown
// The rate key a precision computes at: its compute format (numerics::Precision)
// by width and exponent; integers wider than 8 bits give "intN", which no
// device lists (the node falls back).
std::string rate_key(const numerics::Precision& p);

struct MatrixEngine {
  std::string model = "roofline";  // "systolic": fold-based cycles (sim/systolic.h); "roofline": peak rate
  int64_t rows = 0, cols = 0, count = 1;
  std::vector<std::string> dataflows;  // first is the default
  double clock_hz = 0;
  std::map<std::string, double> peak_flops;  // dense peak, FLOP/s (a MAC is two)
  double sparsity_2to4_speedup = 1;
  SramSizes sram;  // systolic: per-engine ifmap / filter / ofmap buffers
  std::string source;
};

struct VectorEngine {
  std::map<std::string, double> peak_flops;
  std::string source;
};

struct MemoryLevel {
  std::string name;
  bool on_chip = false;
  double capacity_bytes = 0;
  double bandwidth_bytes_per_s = 0;  // 0: not modelled as a bound
  double energy_pj_per_byte = -1;    // < 0: from the technology table
  std::string source;
};

// [efficiency]: what a device's runtime achieves of its peaks, beyond the
// roofline of compulsory traffic (docs/devices.md). Absent: the plain roofline.
struct Efficiency {
  double kernel_s = 0;            // fixed time per kernel: launch, synchronisation, pipeline fill and drain
  double matrix_fraction = 1;     // of the matrix (and vector) peak, on shapes that fill every unit
  double bandwidth_fraction = 1;  // of the DRAM bandwidth
  // Wave quantisation (roofline engines): a GEMM's M x N output is cut into
  // tile_m x tile_n tiles dealt to `units` compute units in waves; the last
  // wave and the partial tiles idle (0: not modelled).
  int64_t units = 0, tile_m = 0, tile_n = 0;
  // The device compiler fuses elementwise work into the kernel that produces
  // its input (TensorRT, XLA, the Neuron compiler): no kernel and no DRAM round
  // trip of its own; view ops (Reshape, Flatten, Squeeze, Unsqueeze) are free.
  bool fuse = false;
  std::string source;
};

struct Device {
  std::string id, name, kind, source, path;
  bool calibrated = true;  // false: the host entry before `duet calibrate-host` ran
  std::string note;
  MatrixEngine matrix;
  VectorEngine vector;
  std::vector<MemoryLevel> memory;  // nearest first; the last off-chip level is DRAM
  double host_link_bytes_per_s = 0, host_link_latency_s = 0;
  std::string host_link_source;
  double tdp_w = 0, idle_w = 0;
  std::string power_source, power_as_of;  // as_of: the date the figure was taken from its source
  std::optional<double> price_per_hour_usd;
  std::string cloud_instance, cloud_source, cloud_as_of;
  std::set<std::string> supported_ops;    // "*": every op
  std::set<std::string> unsupported_ops;  // exceptions to "*"
  TechnologyTable energy;
  std::optional<Efficiency> efficiency;
  // [cpu_kernels]: the host CPU's measured kernel rates (sim/cpu_model.h); when
  // present, nodes on this device are costed by the host-CPU kernel model.
  std::optional<CpuKernelModel> cpu;

  bool supports_op(const std::string& op) const;
  bool matrix_supports(const std::string& precision) const { return matrix.peak_flops.count(precision) > 0; }
  bool vector_supports(const std::string& precision) const { return vector.peak_flops.count(precision) > 0; }
  const MemoryLevel& dram() const;            // throws if the device lists none
  const MemoryLevel* largest_on_chip() const;  // null when none listed
  double dram_pj_per_byte() const;
};

// Overrides applied to a device file before it is read: "matrix.rows=128",
// "memory.0.bandwidth_gbs=900" (array index), "matrix.peak_tflops.int8=400".
struct Override {
  std::string key, value;
};
Override parse_override(const std::string& spec);  // KEY=VALUE

std::string default_devices_dir();  // $DUET_DEVICES, else the source tree's devices/
// Where `duet calibrate-host` writes this machine's host model by default:
// $XDG_CONFIG_HOME/duet/host.toml, else ~/.config/duet/host.toml ("" when
// neither is set). Where it exists, the default catalog's "host" is read from
// it instead of the shipped devices/host.toml (which stays as shipped).
std::string user_host_file();
Device load_device_file(const std::string& path, const std::vector<Override>& overrides = {});
Device parse_device_toml(const std::string& text, const std::string& origin,
                         const std::vector<Override>& overrides = {});
std::vector<Device> load_catalog(const std::string& dir);
// By id (file stem); throws listing the known ids when absent.
Device find_device(const std::string& dir, const std::string& id, const std::vector<Override>& overrides = {});

}  // namespace duet::sim
