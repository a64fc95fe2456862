#include "duet/sim/device.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <sstream>
#include <unordered_set>

#include "duet/core/error.h"

namespace duet::sim {

const std::vector<std::string>& precisions() {
  static const std::vector<std::string> all{"fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"};
  return all;
}

double precision_bytes(const std::string& p) {
  if (p == "fp32" || p == "tf32") return 4;  // tf32 is stored as fp32
  if (p == "bf16" || p == "fp16") return 2;
  if (p == "fp8" || p == "int8") return 1;
  if (p == "int4") return 0.5;
  fail("unknown rate format '", p, "' (expected fp32, tf32, bf16, fp16, fp8, int8 or int4)");
}

std::string rate_key(const numerics::Precision& p) {
  const numerics::Format& f = p.compute_format();
  if (!f.is_float()) return f.int_bits <= 4 ? "int4" : f.int_bits <= 8 ? "int8" : "int" + std::to_string(f.int_bits);
  const int e = f.fp.exponent_bits, m = f.fp.mantissa_bits;
  if (f.bits() <= 8) return "fp8";
  if (f.bits() <= 16) return e >= 8 ? "bf16" : "fp16";
  if (m <= 10) return "tf32";
  return "fp32";
}

bool Device::supports_op(const std::string& op) const {
  if (unsupported_ops.count(op)) return false;
  return supported_ops.count("*") || supported_ops.count(op);
}

const MemoryLevel& Device::dram() const {
  for (auto it = memory.rbegin(); it != memory.rend(); ++it)
    if (!it->on_chip) return *it;
  fail("device '", id, "' lists no off-chip memory level");
}

const MemoryLevel* Device::largest_on_chip() const {
  const MemoryLevel* best = nullptr;
  for (auto& m : memory)
    if (m.on_chip && (!best || m.capacity_bytes > best->capacity_bytes)) best = &m;
  return best;
}

double Device::dram_pj_per_byte() const {
  const auto& d = dram();
  return d.energy_pj_per_byte >= 0 ? d.energy_pj_per_byte : energy.dram_pj_per_byte;
}

Override parse_override(const std::string& spec) {
  const auto eq = spec.find('=');
  DUET_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(),
             "--set expects KEY=VALUE (e.g. matrix.rows=128), got '", spec, "'");
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

std::string default_devices_dir() {
  if (const char* env = std::getenv("DUET_DEVICES")) return env;
  return DUET_DEVICES_DIR;
}

namespace {

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  std::string p;
  while (std::getline(ss, p, '.')) parts.push_back(p);
  return parts;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// A command-line value as TOML would read it: integer, float, boolean, or string.
void assign(toml::table& t, const std::string& k, const std::string& v) {
  char* end = nullptr;
  const long long i = std::strtoll(v.c_str(), &end, 10);
  if (end && *end == '\0') { t.insert_or_assign(k, int64_t(i)); return; }
  const double d = std::strtod(v.c_str(), &end);
  if (end && *end == '\0') { t.insert_or_assign(k, d); return; }
  if (v == "true" || v == "false") { t.insert_or_assign(k, v == "true"); return; }
  t.insert_or_assign(k, v);
}

void apply_override(toml::table& root, const Override& o, const std::string& origin) {
  auto parts = split_key(o.key);
  DUET_CHECK(!parts.empty(), "--set: empty key");
  toml::table* t = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* next = t->get(parts[i]);
    if (next && next->is_array() && i + 2 < parts.size() + 1 && all_digits(parts[i + 1])) {
      auto& arr = *next->as_array();
      const size_t index = std::stoul(parts[i + 1]);
      DUET_CHECK(index < arr.size() && arr[index].is_table(), "--set ", o.key, ": ", origin, " has no ", parts[i],
                 " entry ", index);
      t = arr[index].as_table();
      ++i;
      if (i + 1 >= parts.size()) fail("--set ", o.key, ": names a table, not a value");
      continue;
    }
    if (!next) {
      t->insert(parts[i], toml::table{});
      next = t->get(parts[i]);
    }
    DUET_CHECK(next->is_table(), "--set ", o.key, ": '", parts[i], "' in ", origin, " is not a table");
    t = next->as_table();
  }
  assign(*t, parts.back(), o.value);
}

// The values decode() read (parse_device_toml checks each --set key names one).
thread_local std::unordered_set<const toml::node*>* g_read = nullptr;

const toml::node* read(const toml::table& t, const std::string& key) {
  const toml::node* n = t.get(key);
  if (g_read && n) g_read->insert(n);
  return n;
}

// Every value of a table decode() reads as a whole (per-format energies, ...).
void read_all(const toml::table* t) {
  if (g_read && t)
    for (auto& [k, v] : *t) g_read->insert(&v);
}

double num(const toml::table& t, const std::string& key, double def, const std::string& where) {
  const toml::node* n = read(t, key);
  if (!n) return def;
  if (auto v = n->value<double>()) {
    DUET_CHECK(std::isfinite(*v), where, ": '", key, "' must be a finite number, got ", *v);
    return *v;
  }
  fail(where, ": '", key, "' must be a number");
}

// A number that must be a whole number (a count, a size in elements).
int64_t whole(const toml::table& t, const std::string& key, double def, const std::string& where) {
  const double v = num(t, key, def, where);
  DUET_CHECK(v == std::floor(v) && std::fabs(v) < 9e15, where, ": '", key, "' must be a whole number, got ", v);
  return int64_t(v);
}

// A number that must not be negative.
double nonneg(const toml::table& t, const std::string& key, double def, const std::string& where) {
  const double v = num(t, key, def, where);
  DUET_CHECK(v >= 0, where, ": '", key, "' must not be negative, got ", v);
  return v;
}

bool flag(const toml::table& t, const std::string& key, bool def) {
  const toml::node* n = read(t, key);
  return n ? n->value_or(def) : def;
}

std::string str(const toml::table& t, const std::string& key, const std::string& def = "") {
  if (const toml::node* n = read(t, key))
    if (auto v = n->value<std::string>()) return *v;
  return def;
}

std::vector<std::string> strings(const toml::table& t, const std::string& key) {
  std::vector<std::string> out;
  read(t, key);
  if (auto* a = t[key].as_array())
    for (auto& e : *a)
      if (auto s = e.value<std::string>()) out.push_back(*s);
  return out;
}

std::map<std::string, double> peaks(const toml::table* t, const std::string& where) {
  std::map<std::string, double> out;
  if (!t) return out;
  read_all(t);
  for (auto& [k, v] : *t) {
    const std::string key(k.str());
    if (key == "source") continue;
    precision_bytes(key);  // rejects unknown formats
    auto d = v.value<double>();
    DUET_CHECK(d && *d > 0, where, ": peak for '", key, "' must be a positive number of TFLOP/s");
    out[key] = *d * 1e12;
  }
  return out;
}

double capacity(const toml::table& t, const std::string& where) {
  if (t.contains("capacity_bytes")) return num(t, "capacity_bytes", 0, where);
  if (t.contains("capacity_kib")) return num(t, "capacity_kib", 0, where) * 1024;
  if (t.contains("capacity_mib")) return num(t, "capacity_mib", 0, where) * 1024 * 1024;
  if (t.contains("capacity_gib")) return num(t, "capacity_gib", 0, where) * 1024.0 * 1024 * 1024;
  return 0;
}

Device decode(const toml::table& root, const std::string& origin) {
  Device d;
  d.path = origin;
  std::string stem = std::filesystem::path(origin).stem().string();
  d.id = str(root, "id", stem);
  d.name = str(root, "name", d.id);
  d.kind = str(root, "kind", "accelerator");
  d.source = str(root, "source");
  d.note = str(root, "note");
  d.calibrated = flag(root, "calibrated", true);

  if (auto* m = root["matrix"].as_table()) {
    const std::string w = origin + " [matrix]";
    d.matrix.model = str(*m, "model", "roofline");
    DUET_CHECK(d.matrix.model == "roofline" || d.matrix.model == "systolic", w, ": model must be roofline or systolic, got '",
               d.matrix.model, "'");
    d.matrix.rows = whole(*m, "rows", 0, w);
    d.matrix.cols = whole(*m, "cols", 0, w);
    d.matrix.count = whole(*m, "count", 1, w);
    d.matrix.clock_hz = nonneg(*m, "clock_ghz", 0, w) * 1e9;
    DUET_CHECK(d.matrix.rows >= 0 && d.matrix.cols >= 0 && d.matrix.count >= 1, w, ": rows and cols must not be negative, count at least 1");
    d.matrix.dataflows = strings(*m, "dataflows");
    for (auto& f : d.matrix.dataflows) parse_dataflow(f);
    if (auto df = read(*m, "dataflow") ? (*m)["dataflow"].value<std::string>() : std::nullopt) {  // --set matrix.dataflow=os picks the default
      parse_dataflow(*df);
      d.matrix.dataflows.insert(d.matrix.dataflows.begin(), *df);
    }
    d.matrix.sparsity_2to4_speedup = num(*m, "sparsity_2to4_speedup", 1, w);
    DUET_CHECK(d.matrix.sparsity_2to4_speedup >= 1, w, ": sparsity_2to4_speedup is a speedup, at least 1");
    d.matrix.sram.ifmap_bytes = nonneg(*m, "ifmap_sram_kib", 64, w) * 1024;
    d.matrix.sram.filter_bytes = nonneg(*m, "filter_sram_kib", 64, w) * 1024;
    d.matrix.sram.ofmap_bytes = nonneg(*m, "ofmap_sram_kib", 64, w) * 1024;
    d.matrix.peak_flops = peaks((*m)["peak_tflops"].as_table(), w);
    d.matrix.source = str(*m, "source");
    if (d.matrix.model == "systolic") {
      DUET_CHECK(d.matrix.rows > 0 && d.matrix.cols > 0 && d.matrix.count > 0 && d.matrix.clock_hz > 0, w,
                 ": a systolic engine needs rows, cols, count and clock_ghz > 0");
      if (d.matrix.dataflows.empty()) d.matrix.dataflows.push_back("ws");
      if (d.matrix.peak_flops.empty())  // one MAC per PE per cycle at the array's format
        d.matrix.peak_flops["int8"] = 2.0 * d.matrix.rows * d.matrix.cols * d.matrix.count * d.matrix.clock_hz;
    }
  }
  if (auto* v = root["vector"].as_table()) {
    d.vector.peak_flops = peaks((*v)["peak_tflops"].as_table(), origin + " [vector]");
    d.vector.source = str(*v, "source");
  }
  if (auto* arr = root["memory"].as_array()) {
    for (auto& e : *arr) {
      auto* t = e.as_table();
      DUET_CHECK(t, origin, ": [[memory]] entries must be tables");
      MemoryLevel level;
      level.name = str(*t, "name", "memory");
      const std::string w = origin + " [[memory]] " + level.name;
      level.on_chip = flag(*t, "on_chip", false);
      level.capacity_bytes = capacity(*t, w);
      DUET_CHECK(level.capacity_bytes >= 0, w, ": a capacity must not be negative");
      level.bandwidth_bytes_per_s = nonneg(*t, "bandwidth_gbs", 0, w) * 1e9;  // on chip, 0: not modelled
      DUET_CHECK(level.on_chip || level.bandwidth_bytes_per_s > 0, w, ": an off-chip level needs a positive bandwidth_gbs");
      level.energy_pj_per_byte = num(*t, "energy_pj_per_byte", -1, w);
      DUET_CHECK(level.energy_pj_per_byte >= 0 || !t->contains("energy_pj_per_byte"), w, ": energy_pj_per_byte must not be negative");
      level.source = str(*t, "source");
      d.memory.push_back(level);
    }
  }
  if (auto* h = root["host_link"].as_table()) {
    d.host_link_bytes_per_s = nonneg(*h, "bandwidth_gbs", 0, origin + " [host_link]") * 1e9;
    d.host_link_latency_s = nonneg(*h, "latency_us", 0, origin + " [host_link]") * 1e-6;
    d.host_link_source = str(*h, "source");
  }
  if (auto* p = root["power"].as_table()) {
    d.tdp_w = nonneg(*p, "tdp_w", 0, origin + " [power]");
    d.idle_w = nonneg(*p, "idle_w", 0, origin + " [power]");
    d.power_source = str(*p, "source");
    d.power_as_of = str(*p, "as_of");
  }
  if (auto* c = root["cloud"].as_table()) {
    if (c->contains("price_per_hour_usd")) d.price_per_hour_usd = nonneg(*c, "price_per_hour_usd", 0, origin + " [cloud]");
    d.cloud_instance = str(*c, "instance");
    d.cloud_source = str(*c, "source");
    d.cloud_as_of = str(*c, "as_of");
  }
  if (auto* o = root["ops"].as_table()) {
    for (auto& s : strings(*o, "supported")) d.supported_ops.insert(s);
    for (auto& s : strings(*o, "unsupported")) d.unsupported_ops.insert(s);
  } else {
    d.supported_ops.insert("*");
  }
  if (auto* e = root["energy"].as_table()) {
    const std::string w = origin + " [energy]";
    auto& tt = d.energy;
    tt.source = str(*e, "source", tt.source);
    tt.dram_pj_per_byte = num(*e, "dram_pj_per_byte", tt.dram_pj_per_byte, w);
    tt.link_pj_per_byte = num(*e, "link_pj_per_byte", tt.link_pj_per_byte, w);
    tt.sram_8k_pj_per_byte = num(*e, "sram_8k_pj_per_byte", tt.sram_8k_pj_per_byte, w);
    tt.sram_32k_pj_per_byte = num(*e, "sram_32k_pj_per_byte", tt.sram_32k_pj_per_byte, w);
    tt.sram_1m_pj_per_byte = num(*e, "sram_1m_pj_per_byte", tt.sram_1m_pj_per_byte, w);
    for (const char* table : {"mul_pj", "add_pj"})
      if (auto* pj = (*e)[table].as_table()) {
        read_all(pj);
        for (auto& [k, v] : *pj) {
          const auto x = v.value<double>();
          DUET_CHECK(x && *x >= 0 && std::isfinite(*x), w, ": ", table, ".", k.str(), " must be a number, not negative");
          (table == std::string("mul_pj") ? tt.mul_pj : tt.add_pj)[std::string(k.str())] = *x;
        }
      }
  }
  if (auto* e = root["efficiency"].as_table()) {
    const std::string w = origin + " [efficiency]";
    Efficiency f;
    f.kernel_s = num(*e, "kernel_us", 0, w) * 1e-6;
    f.matrix_fraction = num(*e, "matrix_fraction", 1, w);
    f.bandwidth_fraction = num(*e, "bandwidth_fraction", 1, w);
    f.units = whole(*e, "units", 0, w);
    f.tile_m = whole(*e, "tile_m", 0, w);
    f.tile_n = whole(*e, "tile_n", 0, w);
    f.fuse = flag(*e, "fuse", false);
    f.source = str(*e, "source");
    DUET_CHECK(f.kernel_s >= 0, w, ": kernel_us must not be negative");
    DUET_CHECK(f.matrix_fraction > 0 && f.matrix_fraction <= 1 && f.bandwidth_fraction > 0 && f.bandwidth_fraction <= 1, w,
               ": matrix_fraction and bandwidth_fraction are fractions in (0, 1]");
    DUET_CHECK(f.units >= 0 && f.tile_m >= 0 && f.tile_n >= 0 && ((f.units > 0) == (f.tile_m > 0 && f.tile_n > 0)), w,
               ": units, tile_m and tile_n are given together (all positive) or not at all");
    d.efficiency = f;
  }
  if (auto* k = root["cpu_kernels"].as_table()) {
    const std::string w = origin + " [cpu_kernels]";
    CpuKernelModel m;
    m.simd_floats = int(whole(*k, "simd_floats", 8, w));
    m.channel_block = int(whole(*k, "channel_block", 0, w));  // optional (older calibrations: simd_floats)
    m.deconv_channel_block = int(whole(*k, "deconv_channel_block", 0, w));
    DUET_CHECK(m.simd_floats > 0 && m.channel_block >= 0, w, ": simd_floats must be positive and channel_block not negative");
    m.source = str(*k, "source");
    if (auto* wt = (*k)["winograd"].as_table()) {
      CpuWinogradRule rule;
      rule.channel_multiple = int64_t(num(*wt, "channel_multiple", 8, w));
      rule.min_input_channels = int64_t(num(*wt, "min_input_channels", 16, w));
      rule.min_output_size = int64_t(num(*wt, "min_output_size", 12, w));
      rule.panel_channels = int64_t(num(*wt, "panel_channels", 16, w));
      DUET_CHECK(rule.channel_multiple > 0 && rule.panel_channels > 0 && rule.min_input_channels >= 0 && rule.min_output_size >= 0, w,
                 ".winograd: channel_multiple must be positive, the minimums not negative");
      m.winograd = rule;
    }
    if (auto* arr = (*k)["rates"].as_array()) {
      for (auto& e : *arr) {
        auto* t = e.as_table();
        DUET_CHECK(t, w, ": rates entries must be tables");
        CpuKernelRates r;
        r.threads = int(whole(*t, "threads", 1, w));
        r.fma_flops = num(*t, "fma_gflops", 0, w) * 1e9;
        r.conv_flops = num(*t, "conv_gflops", 0, w) * 1e9;
        r.matmul_flops = num(*t, "matmul_gflops", 0, w) * 1e9;
        r.depthwise_flops = num(*t, "depthwise_gflops", 0, w) * 1e9;
        r.depthwise_output_s = num(*t, "depthwise_output_ns", 0, w) * 1e-9;  // optional (older calibrations)
        DUET_CHECK(r.depthwise_output_s >= 0, w, ": depthwise_output_ns must not be negative");
        r.deconv_flops = num(*t, "deconv_gflops", 0, w) * 1e9;  // optional (older calibrations)
        r.winograd_flops = num(*t, "winograd_gflops", 0, w) * 1e9;  // optional: no Winograd kernels
        r.conv_small_flops = num(*t, "conv_small_gflops", 0, w) * 1e9;      // optional (older calibrations)
        r.winograd_narrow_flops = num(*t, "winograd_narrow_gflops", 0, w) * 1e9;  // optional
        r.matmul_small_flops = num(*t, "matmul_small_gflops", 0, w) * 1e9;  // optional
        r.overlap = num(*t, "overlap", 1, w);                        // optional (older calibrations: roofline)
        r.depthwise_overlap = num(*t, "depthwise_overlap", 1, w);    // optional (older calibrations: roofline)
        read_all((*t)["element_us"].as_table());
        read_all((*t)["post_op_ns"].as_table());
        if (auto* es = (*t)["element_us"].as_table())  // optional: per family, [small, large]
          for (auto& [family, v] : *es) {
            auto* pair = v.as_array();
            DUET_CHECK(pair && pair->size() == 2 && (*pair)[0].value<double>() && (*pair)[1].value<double>(), w,
                       ": element_us.", family.str(), " must be two numbers (microseconds at 4800 and 76800 elements)");
            const double small = *(*pair)[0].value<double>(), large = *(*pair)[1].value<double>();
            DUET_CHECK(small >= 0 && large >= 0, w, ": element_us.", family.str(), " must not be negative");
            r.element_s[std::string(family.str())] = {small * 1e-6, large * 1e-6};
          }
        if (auto* ps = (*t)["post_op_ns"].as_table())  // optional: per post-op kind, ns per output element
          for (auto& [kind, v] : *ps) {
            auto ns = v.value<double>();
            DUET_CHECK(ns && *ns >= 0, w, ": post_op_ns.", kind.str(), " must be a number, not negative");
            r.post_op_s[std::string(kind.str())] = *ns * 1e-9;
          }
        DUET_CHECK(r.overlap >= 0 && r.overlap <= 1 && r.depthwise_overlap >= 0 && r.depthwise_overlap <= 1, w,
                   ": overlap and depthwise_overlap are fractions in [0, 1]");
        r.overhead_s = num(*t, "overhead_us", 0, w) * 1e-6;
        r.transcendental_per_s = num(*t, "exp_gelements_per_s", 0, w) * 1e9;
        DUET_CHECK(r.threads > 0 && r.fma_flops > 0 && r.conv_flops > 0 && r.matmul_flops > 0 && r.depthwise_flops > 0,
                   w, ": every rates entry needs threads and positive fma/conv/matmul/depthwise_gflops");
        if (auto* levels = (*t)["levels"].as_array())
          for (auto& le : *levels) {
            auto* lt = le.as_table();
            DUET_CHECK(lt, w, ": levels entries must be tables");
            CpuLevel l{str(*lt, "name", "memory"), capacity(*lt, w), num(*lt, "bandwidth_gbs", 0, w) * 1e9};
            // optional (older calibrations: the rates' overhead_us)
            l.overhead_s = num(*lt, "overhead_us", 0, w) * 1e-6;
            l.matrix_overhead_s = num(*lt, "matrix_overhead_us", 0, w) * 1e-6;
            l.copy_overhead_s = num(*lt, "copy_overhead_us", 0, w) * 1e-6;
            DUET_CHECK(l.bytes_per_s > 0, w, ": level '", l.name, "' needs a positive bandwidth_gbs");
            DUET_CHECK(l.overhead_s >= 0 && l.matrix_overhead_s >= 0 && l.copy_overhead_s >= 0, w, ": level '", l.name, "' has a negative overhead");
            r.levels.push_back(l);
          }
        DUET_CHECK(!r.levels.empty(), w, ": a rates entry lists no memory levels");
        m.by_threads.push_back(r);
      }
    }
    std::sort(m.by_threads.begin(), m.by_threads.end(), [](auto& a, auto& b) { return a.threads < b.threads; });
    DUET_CHECK(!m.by_threads.empty(), w, ": no [[cpu_kernels.rates]] entry");
    d.cpu = m;
  }
  if (d.calibrated) {
    DUET_CHECK(!d.matrix.peak_flops.empty() || !d.vector.peak_flops.empty(), origin,
               ": no peak rate in [matrix.peak_tflops] or [vector.peak_tflops]");
    d.dram();
  }
  return d;
}

}  // namespace

Device parse_device_toml(const std::string& text, const std::string& origin, const std::vector<Override>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail(origin, ":", e.source().begin.line, ": ", e.description());
  }
  for (auto& o : overrides) apply_override(root, o, origin);
  std::unordered_set<const toml::node*> read_nodes;
  g_read = &read_nodes;
  Device d;
  try {
    d = decode(root, origin);
  } catch (...) {
    g_read = nullptr;
    throw;
  }
  g_read = nullptr;
  // A --set key the device model does not read would change nothing: refused
  // (matrix.row=128 for matrix.rows was silently ignored).
  for (auto& o : overrides) {
    const toml::node* n = &root;
    for (const std::string& part : split_key(o.key)) {
      if (auto* t = n ? n->as_table() : nullptr) n = t->get(part);
      else if (auto* a = n ? n->as_array() : nullptr) n = all_digits(part) && std::stoul(part) < a->size() ? a->get(std::stoul(part)) : nullptr;
      else n = nullptr;
    }
    DUET_CHECK(n && read_nodes.count(n), "--set ", o.key, ": ", origin, " has no parameter '", o.key,
               "' that the device model reads (see docs/devices.md for the keys)");
  }
  return d;
}

Device load_device_file(const std::string& path, const std::vector<Override>& overrides) {
  std::ifstream f(path);
  DUET_CHECK(f.good(), "cannot open device file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_device_toml(ss.str(), path, overrides);
}

std::string user_host_file() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg) return std::string(xdg) + "/duet/host.toml";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.config/duet/host.toml";
  return "";
}

namespace {

// The file a device of the catalog `dir` is read from: this machine's own
// calibration for "host" in the default catalog, where there is one.
std::filesystem::path device_file(const std::string& dir, const std::string& id) {
  if (id == "host" && dir == default_devices_dir()) {
    const std::string own = user_host_file();
    std::error_code ec;
    if (!own.empty() && std::filesystem::is_regular_file(own, ec)) return own;
  }
  return std::filesystem::path(dir) / (id + ".toml");
}

}  // namespace

std::vector<Device> load_catalog(const std::string& dir) {
  DUET_CHECK(std::filesystem::is_directory(dir), "device catalog '", dir, "' is not a folder");
  std::vector<std::string> files;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".toml") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::vector<Device> out;
  for (auto& f : files) out.push_back(load_device_file(device_file(dir, std::filesystem::path(f).stem().string()).string()));
  return out;
}

Device find_device(const std::string& dir, const std::string& id, const std::vector<Override>& overrides) {
  const auto path = device_file(dir, id);
  if (!std::filesystem::exists(path)) {
    std::string known;
    if (std::filesystem::is_directory(dir))
      for (auto& d : load_catalog(dir)) known += (known.empty() ? "" : ", ") + d.id;
    fail("unknown device '", id, "' (known: ", known, ")");
  }
  return load_device_file(path.string(), overrides);
}

}  // namespace duet::sim
