#include "duet/sim/simulate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "duet/core/error.h"

namespace duet::sim {

EnergyBreakdown& EnergyBreakdown::operator+=(const EnergyBreakdown& o) {
  compute_j += o.compute_j;
  on_chip_j += o.on_chip_j;
  dram_j += o.dram_j;
  transfer_j += o.transfer_j;
  return *this;
}

void validate(const SimOptions& o) {
  numerics::parse_precision(o.precision);
  DUET_CHECK(o.threads >= 1, "--threads must be at least 1, got ", o.threads);
  DUET_CHECK(o.auto_cast == "none" || o.auto_cast == "matmul" || o.auto_cast == "all",
             "--auto-cast must be none, matmul or all, got '", o.auto_cast, "'");
  numerics::parse_precision(o.auto_cast_type);
}

namespace {

// How one node is costed: the rate key its compute format selects, storage
// per weight and per activation element, and whether its weights are 2:4 sparse.
struct NodeFormat {
  std::string text;  // the precision as reported (numerics::Precision::str())
  std::string key;   // device rate key (rate_key)
  double weight_bytes = 4, activation_bytes = 4;
  bool sparse = false;
};

NodeFormat node_format(const numerics::Precision& p, bool matrix) {
  NodeFormat f;
  f.text = p.str();
  f.key = rate_key(p);
  f.activation_bytes = p.activation_bytes();
  f.sparse = matrix && p.sparsity == numerics::Sparsity::TwoOfFour;
  numerics::Precision dense = p;
  dense.sparsity = numerics::Sparsity::Dense;
  f.weight_bytes = dense.weight_bytes();  // the sparse layout is the device's to apply (cost_on)
  return f;
}

// A plain rate key (a host widening to fp32): its format everywhere, dense.
NodeFormat plain_format(const std::string& key) {
  NodeFormat f;
  f.text = f.key = key;
  f.weight_bytes = f.activation_bytes = precision_bytes(key);
  return f;
}

// The node's own annotation, else the auto-cast rule, else the default;
// --sparse-2-4 makes every matrix op with weights 2:4.
numerics::Precision node_precision(const WorkItem& item, const SimOptions& o) {
  const numerics::Precision fallback = numerics::parse_precision(
      (o.auto_cast == "all" || (o.auto_cast == "matmul" && item.matrix)) ? o.auto_cast_type : o.precision);
  numerics::Precision p = item.precision.empty() ? fallback : numerics::resolve_precision(item.precision, fallback);
  if (o.sparse_2to4 && p.sparsity == numerics::Sparsity::Dense) {
    p.sparsity = numerics::Sparsity::TwoOfFour;
    p.name = "custom";
  }
  if (p.sparsity != numerics::Sparsity::Dense && !(item.matrix && item.weight_elements > 0)) {
    p.sparsity = numerics::Sparsity::Dense;  // 2:4 prunes weights: nothing to prune here
    p.name = "custom";
  }
  return p;
}

// The format a device computes the node in, or "" when it cannot run it.
std::string runnable_precision(const Device& d, const WorkItem& item, const std::string& p, std::string& why) {
  if (!d.calibrated) { why = d.id + " is not calibrated"; return ""; }
  if (!d.supports_op(item.op)) { why = item.op + " not supported"; return ""; }
  if (item.matrix) {
    if (d.matrix_supports(p)) return p;
    why = "no " + p + " matrix rate";
    return "";
  }
  if (d.vector_supports(p)) return p;
  if (d.vector_supports("fp32")) return "fp32";  // elementwise work widens to fp32
  if (d.matrix.peak_flops.count(p) && d.vector.peak_flops.empty()) return p;
  why = "no " + p + " vector rate";
  return "";
}

double ceil_div(double a, double b) { return std::ceil(a / b); }

// The share of a GEMM's output tiles that do useful work: M x N (x repeats)
// cut into tile_m x tile_n tiles, dealt to the units in whole waves.
double wave_efficiency(const Gemm& g, const Efficiency& e) {
  if (e.units <= 0) return 1;
  const double tiles = ceil_div(double(g.m), double(e.tile_m)) * ceil_div(double(g.n), double(e.tile_n)) * double(g.repeats);
  const double waves = ceil_div(tiles, double(e.units));
  const double useful = double(g.m) * double(g.n) * double(g.repeats);
  return waves > 0 ? std::min(1.0, useful / (waves * double(e.units) * double(e.tile_m) * double(e.tile_n))) : 1;
}

// Elementwise ops a device compiler fuses into the kernel producing their input.
bool fusable(const std::string& op) {
  static const std::set<std::string> ops = {
      "Relu", "Clip", "Add", "Sub", "Mul", "Div", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "PRelu",
      "Gelu", "Erf", "BatchNormalization", "Cast", "QuantizeLinear", "DequantizeLinear", "Softplus", "Elu", "Selu",
      "Sqrt", "Pow", "Neg", "Abs", "Exp", "Mish"};
  return ops.count(op) > 0;
}

// Ops that only re-describe a tensor's shape: no kernel once compiled.
bool view_op(const std::string& op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity";
}

// A node on a CPU with measured kernel rates (sim/cpu_model.h).
// What the host-CPU model carries from node to node: the inference's
// footprint and the layout (channel block) each node wrote.
struct CpuContext {
  double footprint_bytes = 0;
  std::vector<int> blocks;  // per work item
};

void cost_on_cpu(const Device& d, const WorkItem& item, size_t index, const NodeFormat& f, const SimOptions& o,
                 int64_t batch, CpuContext& cpu, NodeResult& r) {
  const std::string& p = f.key;
  std::vector<int> input_blocks;
  for (int j : item.producers)
    input_blocks.push_back(j >= 0 && size_t(j) < cpu.blocks.size() ? cpu.blocks[size_t(j)] : kCpuPlainLayout);
  const CpuNodeCost c = cpu_node_cost(*d.cpu, item, f.weight_bytes, f.activation_bytes, o.threads, cpu.footprint_bytes,
                                      input_blocks);
  if (index < cpu.blocks.size()) cpu.blocks[index] = c.output_block;
  const TechnologyTable& tech = d.energy;
  r.precision = f.text;
  r.flops = item.flops;
  r.cpu_class = cpu_op_class_name(c.op_class);
  r.cpu_level = c.level;
  r.compute_s = c.compute_s;
  r.memory_s = c.memory_s;
  r.overhead_s = c.overhead_s;
  r.time_s = c.time_s();
  r.bound = c.overhead_s >= std::max(c.compute_s, c.memory_s) ? "overhead" : c.compute_s >= c.memory_s ? "compute" : "memory";
  const bool in_dram = c.level == d.cpu->rates(o.threads).levels.back().name;
  r.dram_bytes = in_dram ? c.bytes : 0;
  r.on_chip_bytes = in_dram ? 0 : c.bytes;
  r.intensity = c.bytes > 0 ? item.flops / c.bytes : 0;
  const double macs = item.matrix ? item.gemm.macs() : 0;
  r.energy.compute_j = 1e-12 * (item.matrix ? macs * tech.mac_pj(p) : item.flops * tech.op_pj(p));
  const double on_chip_capacity = d.largest_on_chip() ? d.largest_on_chip()->capacity_bytes : 32 * 1024;
  r.energy.on_chip_j = 1e-12 * r.on_chip_bytes * tech.sram_pj_per_byte(on_chip_capacity);
  r.energy.dram_j = 1e-12 * r.dram_bytes * d.dram_pj_per_byte();
  // Crossover on this model: compute and activations grow with the batch, weights do not.
  if (c.memory_s > 0 && c.bytes > 0) {
    const double weight_s = c.memory_s * std::min(1.0, item.weight_elements * f.weight_bytes / c.bytes);
    const double slope = (c.compute_s - (c.memory_s - weight_s)) / double(batch);
    if (slope > 0) {
      const double b = std::max(1.0, std::ceil(weight_s / slope));
      r.compute_bound_batch = b <= double(1 << 20) ? int64_t(b) : -1;
    }
  }
}

// Node on one device at its format `f` (rate key, storage bytes, sparsity).
void cost_on(const Device& d, const WorkItem& item, size_t index, const NodeFormat& f, const SimOptions& o,
             int64_t batch, CpuContext& cpu, NodeResult& r) {
  if (d.cpu) return cost_on_cpu(d, item, index, f, o, batch, cpu, r);
  const std::string& p = f.key;
  const double bytes_per = f.activation_bytes;
  const bool sparse = f.sparse && d.matrix.sparsity_2to4_speedup > 1;
  // 2:4 keeps half the weights plus a 2-bit index per kept value.
  const double wb = f.weight_bytes;
  const double weight_bytes = item.weight_elements * (sparse ? 0.5 * (wb + 0.25) : wb);
  const double act_bytes = (item.input_elements + item.output_elements) * bytes_per;
  const MemoryLevel& dram = d.dram();
  const TechnologyTable& tech = d.energy;
  double compute_s = 0, dram_bytes = weight_bytes + act_bytes, on_chip_bytes = 0, fill_s = 0;
  double on_chip_capacity = d.largest_on_chip() ? d.largest_on_chip()->capacity_bytes : 32 * 1024;

  if (item.matrix && d.matrix.model == "systolic") {
    const auto& m = d.matrix;
    Dataflow df = parse_dataflow(m.dataflows.front());
    if (o.dataflow && std::count(m.dataflows.begin(), m.dataflows.end(), dataflow_name(*o.dataflow))) df = *o.dataflow;
    r.dataflow = dataflow_name(df);
    const ArrayShape array{m.rows, m.cols, df};
    Gemm g = item.gemm;  // engines split the output columns
    g.n = std::max<int64_t>(1, (g.n + m.count - 1) / m.count);
    const SystolicResult s = simulate_gemm(g, array);
    r.systolic_cycles = s.cycles + 1;
    r.mapping_efficiency = s.mapping_efficiency;
    r.compute_utilization = s.compute_utilization;
    const double native_peak = 2.0 * m.rows * m.cols * m.count * m.clock_hz;
    compute_s = double(s.cycles + 1) / m.clock_hz * native_peak / m.peak_flops.at(p);
    const MemoryTraffic t = gemm_traffic(g, array, s, m.sram, bytes_per);
    // The ifmap is broadcast to every engine; filters and outputs are per engine.
    dram_bytes = t.ifmap_dram_read_bytes + m.count * (t.filter_dram_read_bytes + t.ofmap_dram_write_bytes + t.ofmap_dram_read_bytes);
    // gemm_traffic counts filters at the activation width: rescale to the weights' own storage.
    dram_bytes -= m.count * t.filter_dram_read_bytes * (1 - (sparse ? 0.5 * (wb + 0.25) : wb) / bytes_per);
    on_chip_bytes = m.count * (t.sram_read_bytes + t.sram_write_bytes);
    on_chip_capacity = m.sram.ifmap_bytes;
    if (dram.bandwidth_bytes_per_s > 0) fill_s = double(m.rows) * m.cols * bytes_per / dram.bandwidth_bytes_per_s;
  } else if (item.matrix) {
    compute_s = item.flops / d.matrix.peak_flops.at(p);
    // Tiled GEMM: each 128-wide tile of one operand re-reads the other from on-chip memory.
    const double t = 128, M = double(item.gemm.m), N = double(item.gemm.n), K = double(item.gemm.k);
    on_chip_bytes = (M * K * ceil_div(N, t) + K * N * ceil_div(M, t) + M * N) * bytes_per * double(item.gemm.repeats);
  } else {
    const double peak = d.vector.peak_flops.count(p) ? d.vector.peak_flops.at(p) : d.matrix.peak_flops.at(p);
    compute_s = item.flops / peak;
    on_chip_bytes = weight_bytes + act_bytes;
  }
  const Efficiency* eff = d.efficiency ? &*d.efficiency : nullptr;
  if (eff && !(item.matrix && d.matrix.model == "systolic")) {  // the systolic model counts its own cycles
    compute_s /= eff->matrix_fraction;
    if (item.matrix) {
      compute_s /= wave_efficiency(item.gemm, *eff);
      // A kernel library takes the vector units where they are faster (depthwise, skinny GEMMs).
      const auto v = d.vector.peak_flops.find(p);
      if (v != d.vector.peak_flops.end()) compute_s = std::min(compute_s, item.flops / (v->second * eff->matrix_fraction));
    }
  }
  if (sparse) compute_s /= d.matrix.sparsity_2to4_speedup;

  const double achieved_bw = dram.bandwidth_bytes_per_s * (eff ? eff->bandwidth_fraction : 1);
  double memory_s = achieved_bw > 0 ? dram_bytes / achieved_bw : 0;
  for (auto& level : d.memory)
    if (level.on_chip && level.bandwidth_bytes_per_s > 0) memory_s = std::max(memory_s, on_chip_bytes / level.bandwidth_bytes_per_s);

  r.precision = f.text;
  r.flops = item.flops;
  r.dram_bytes = dram_bytes;
  r.on_chip_bytes = on_chip_bytes;
  r.compute_s = compute_s;
  r.memory_s = memory_s;
  r.overhead_s = eff ? eff->kernel_s : 0;
  r.time_s = std::max(compute_s, memory_s) + fill_s + r.overhead_s;
  r.bound = r.overhead_s >= std::max(compute_s, memory_s) ? "overhead" : compute_s >= memory_s ? "compute" : "memory";
  r.intensity = dram_bytes > 0 ? item.flops / dram_bytes : 0;
  const double macs = item.matrix ? item.gemm.macs() : 0;
  r.energy.compute_j = 1e-12 * (item.matrix ? macs * tech.mac_pj(p) : item.flops * tech.op_pj(p));
  r.energy.on_chip_j = 1e-12 * on_chip_bytes * tech.sram_pj_per_byte(on_chip_capacity);
  r.energy.dram_j = 1e-12 * dram_bytes * d.dram_pj_per_byte();

  // Roofline crossover: FLOPs and activations grow with the batch, weights do not.
  const double peak = item.matrix ? d.matrix.peak_flops.at(p)
                                  : (d.vector.peak_flops.count(p) ? d.vector.peak_flops.at(p) : d.matrix.peak_flops.at(p));
  const double bw = dram.bandwidth_bytes_per_s;
  if (bw > 0) {
    const double f1 = item.flops / double(batch), a1 = act_bytes / double(batch);
    const double slope = f1 / peak - a1 / bw;
    if (slope > 0) {
      const double b = std::max(1.0, std::ceil(weight_bytes / bw / slope));
      r.compute_bound_batch = b <= double(1 << 20) ? int64_t(b) : -1;
    }
  }
}

// Under [efficiency] fuse: a view op costs nothing; an elementwise node whose
// input comes from a matrix node's kernel (or one fused into it) on the device
// joins that kernel: no kernel time of its own, and DRAM traffic only for its
// other inputs (a residual's skip tensor, constants).
void fuse_into_producer(const Device& d, const Workload& w, size_t i, const std::vector<bool>& on_host, double bytes_per,
                        std::vector<bool>& fused, NodeResult& r) {
  const WorkItem& item = w.items[i];
  int chain = -1;
  for (size_t k = 0; k < item.producers.size() && chain < 0; ++k) {
    const int j = item.producers[k];
    if (j >= 0 && !on_host[size_t(j)] && (w.items[size_t(j)].matrix || fused[size_t(j)])) chain = int(k);
  }
  const bool view = view_op(item.op);
  if (!view && (!fusable(item.op) || chain < 0)) return;
  fused[i] = chain >= 0;
  double extra = 0;
  if (!view) {
    for (size_t k = 0; k < item.producers.size(); ++k)
      if (int(k) != chain) extra += item.producer_elements[k] * bytes_per;
    extra += item.weight_elements * bytes_per;
  }
  const double bw = d.dram().bandwidth_bytes_per_s * d.efficiency->bandwidth_fraction;
  r.dram_bytes = extra;
  r.memory_s = bw > 0 ? extra / bw : 0;
  if (view) r.compute_s = 0, r.on_chip_bytes = 0, r.energy = {};
  r.overhead_s = 0;
  r.time_s = std::max(r.compute_s, r.memory_s);
  r.bound = view ? "view" : "fused";
  r.energy.dram_j = 1e-12 * r.dram_bytes * d.dram_pj_per_byte();
}

}  // namespace

SimResult simulate(const Workload& w, const Device& device, const Device* host, const SimOptions& options) {
  validate(options);
  DUET_CHECK(device.calibrated, "device '", device.id, "': ", device.note.empty() ? "not calibrated" : device.note);
  SimResult out;
  out.device_id = device.id;
  out.device_name = device.name;
  out.batch = w.batch;
  const std::string base = rate_key(numerics::parse_precision(options.precision));
  out.peak_flops = device.matrix.peak_flops.count(base) ? device.matrix.peak_flops.at(base)
                   : device.vector.peak_flops.count(base) ? device.vector.peak_flops.at(base) : 0;
  if (out.peak_flops == 0)
    for (auto& [k, v] : device.matrix.peak_flops) out.peak_flops = std::max(out.peak_flops, v);
  out.dram_bandwidth = device.dram().bandwidth_bytes_per_s;
  const bool device_is_host = host && host->id == device.id;
  const double link_bw = device.host_link_bytes_per_s > 0 ? device.host_link_bytes_per_s : 0;

  // Only a host-CPU model (the device's, or the host's for fallbacks) reads it.
  CpuContext cpu;
  if (device.cpu || (host && host->cpu)) {
    const NodeFormat base = node_format(numerics::parse_precision(options.precision), true);
    cpu = {cpu_footprint_bytes(w, base.weight_bytes, base.activation_bytes), std::vector<int>(w.items.size(), 0)};
  }
  std::vector<bool> placed_on_host(w.items.size(), false);
  const bool fusing = device.efficiency && device.efficiency->fuse && !device.cpu;
  std::vector<bool> fused(w.items.size(), false);  // joined the kernel of a matrix node upstream
  for (size_t i = 0; i < w.items.size(); ++i) {
    const WorkItem& item = w.items[i];
    NodeResult r;
    r.name = item.name;
    r.op = item.op;
    r.matrix = item.matrix;
    r.node_index = item.node_index;
    const NodeFormat wanted_format = node_format(node_precision(item, options), item.matrix);
    const std::string& wanted = wanted_format.key;
    std::string why;
    std::string p = runnable_precision(device, item, wanted, why);
    // Elementwise work a device widens to fp32 computes at that rate; its
    // tensors stay in the node's own storage format.
    NodeFormat format = wanted_format;
    if (!p.empty() && p != wanted) format.key = format.text = p;
    const double bytes_per = format.activation_bytes;
    if (!p.empty()) {
      cost_on(device, item, i, format, options, w.batch, cpu, r);
      if (fusing) fuse_into_producer(device, w, i, placed_on_host, bytes_per, fused, r);
    } else {
      DUET_CHECK(host && host->calibrated, "node '", item.name, "' (", item.op, ") cannot run on ", device.id, " (", why,
                 ") and the host CPU is not calibrated: run `duet calibrate-host`");
      std::string host_why;
      std::string hp = runnable_precision(*host, item, wanted, host_why);
      if (hp.empty()) hp = runnable_precision(*host, item, "fp32", host_why);
      DUET_CHECK(!hp.empty(), "node '", item.name, "' (", item.op, ") runs neither on ", device.id, " (", why,
                 ") nor on the host (", host_why, ")");
      cost_on(*host, item, i, hp == wanted ? wanted_format : plain_format(hp), options, w.batch, cpu, r);
      r.on_host = true;
      r.fallback_reason = why;
      placed_on_host[i] = true;
      ++out.host_nodes;
    }
    // Transfers where a producer ran on the other side (model inputs start on the host).
    if (!device_is_host && link_bw > 0) {
      for (size_t k = 0; k < item.producers.size(); ++k) {
        const int j = item.producers[k];
        const bool producer_on_host = j < 0 || placed_on_host[size_t(j)];
        if (producer_on_host != r.on_host) {
          const double bytes = item.producer_elements[k] * bytes_per;
          r.transfer_bytes += bytes;
          r.transfer_s += bytes / link_bw + device.host_link_latency_s;
        }
      }
      if (item.model_output && !r.on_host) {
        const double bytes = item.output_elements * bytes_per;
        r.transfer_bytes += bytes;
        r.transfer_s += bytes / link_bw + device.host_link_latency_s;
      }
      r.energy.transfer_j = 1e-12 * r.transfer_bytes * device.energy.link_pj_per_byte;
      r.time_s += r.transfer_s;
    }
    out.latency_s += r.time_s;
    out.energy += r.energy;
    out.nodes.push_back(std::move(r));
  }
  out.throughput_per_s = out.latency_s > 0 ? double(w.batch) / out.latency_s : 0;
  out.static_energy_j = device.idle_w * out.latency_s;
  out.energy_per_inference_j = (out.energy.total() + out.static_energy_j) / double(w.batch);
  if (device.price_per_hour_usd)
    out.cost_per_million_usd = *device.price_per_hour_usd / 3600.0 * out.latency_s / double(w.batch) * 1e6;
  return out;
}

}  // namespace duet::sim
