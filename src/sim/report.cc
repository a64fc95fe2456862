#include "duet/core/html.h"
#include "duet/sim/report.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>

namespace duet::sim {

nlohmann::json to_json(const SimResult& r, bool with_nodes) {
  auto energy = [](const EnergyBreakdown& e) {
    return nlohmann::json{{"compute_j", e.compute_j}, {"on_chip_j", e.on_chip_j}, {"dram_j", e.dram_j},
                          {"transfer_j", e.transfer_j}, {"total_j", e.total()}};
  };
  nlohmann::json j{{"device", r.device_id},
                   {"device_name", r.device_name},
                   {"batch", r.batch},
                   {"modelled", true},
                   {"latency_s", r.latency_s},
                   {"throughput_per_s", r.throughput_per_s},
                   {"energy_per_inference_j", r.energy_per_inference_j},
                   {"energy", energy(r.energy)},
                   {"static_energy_j", r.static_energy_j},
                   {"cost_per_million_usd", r.cost_per_million_usd ? nlohmann::json(*r.cost_per_million_usd) : nlohmann::json()},
                   {"host_fallback_nodes", r.host_nodes}};
  if (!with_nodes) return j;
  auto& nodes = j["nodes"] = nlohmann::json::array();
  for (auto& n : r.nodes) {
    nlohmann::json x{{"name", n.name}, {"op", n.op}, {"precision", n.precision}, {"placement", n.on_host ? "host" : r.device_id},
                     {"flops", n.flops}, {"dram_bytes", n.dram_bytes}, {"on_chip_bytes", n.on_chip_bytes},
                     {"transfer_bytes", n.transfer_bytes}, {"compute_s", n.compute_s}, {"memory_s", n.memory_s},
                     {"transfer_s", n.transfer_s}, {"time_s", n.time_s}, {"bound", n.bound}, {"intensity_flop_per_byte", n.intensity},
                     {"energy", energy(n.energy)},
                     {"compute_bound_from_batch", n.compute_bound_batch > 0 ? nlohmann::json(n.compute_bound_batch) : nlohmann::json()}};
    if (n.on_host) x["fallback_reason"] = n.fallback_reason;
    if (!n.cpu_class.empty())
      x["cpu_model"] = {{"class", n.cpu_class}, {"memory_level", n.cpu_level}, {"overhead_s", n.overhead_s}};
    if (n.systolic_cycles >= 0) {
      x["systolic"] = {{"dataflow", n.dataflow}, {"cycles", n.systolic_cycles}, {"mapping_efficiency", n.mapping_efficiency},
                       {"compute_utilization", n.compute_utilization}};
    }
    nodes.push_back(x);
  }
  return j;
}

nlohmann::json to_json(const HostValidation& v) {
  nlohmann::json nodes = nlohmann::json::array();
  for (auto& r : v.rows) {
    nlohmann::json x{{"name", r.name}, {"op", r.op}, {"class", r.cpu_class.empty() ? "folded" : r.cpu_class},
                     {"modelled_s", r.modelled ? nlohmann::json(r.predicted_s) : nlohmann::json()},
                     {"measured_s", r.measured ? nlohmann::json(r.measured_s) : nlohmann::json()}};
    x["error"] = r.modelled && r.measured ? nlohmann::json(r.error()) : nlohmann::json();
    nodes.push_back(x);
  }
  return {{"model", v.model}, {"device", v.device_id}, {"threads", v.threads}, {"runs", v.runs},
          {"measured_total_s", v.measured_total_s}, {"measured_nodes_s", v.measured_nodes_s},
          {"modelled_total_s", v.predicted_total_s}, {"total_error", v.total_error()},
          {"median_abs_node_error", v.median_abs_node_error()}, {"load_average", v.load_average},
          {"measured", "measured_* figures: timed on this machine (cpu backend, median of the runs)"},
          {"modelled", "modelled_* figures: host-CPU kernel model from devices/host.toml"}, {"nodes", nodes}};
}

namespace {

std::string esc(const std::string& s) { return html_escape(s); }

std::string fmt(double v, int digits = 3) {
  std::ostringstream o;
  o << std::setprecision(digits) << v;
  return o.str();
}

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct LogAxis {
  double lo, hi, px0, px1;
  double map(double v) const {
    v = std::clamp(v, lo, hi);
    return px0 + (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) * (px1 - px0);
  }
};

std::string axes(const LogAxis& x, const LogAxis& y, const std::string& xl, const std::string& yl) {
  std::ostringstream o;
  o << "<line x1='" << x.px0 << "' y1='" << y.px0 << "' x2='" << x.px1 << "' y2='" << y.px0 << "' stroke='#333'/>"
    << "<line x1='" << x.px0 << "' y1='" << y.px0 << "' x2='" << x.px0 << "' y2='" << y.px1 << "' stroke='#333'/>";
  for (double d = std::ceil(std::log10(x.lo)); d <= std::log10(x.hi); d += 1)
    o << "<text x='" << x.map(std::pow(10, d)) << "' y='" << y.px0 + 14 << "' font-size='10' text-anchor='middle'>1e" << int(d) << "</text>";
  for (double d = std::ceil(std::log10(y.lo)); d <= std::log10(y.hi); d += 1)
    o << "<text x='" << x.px0 - 4 << "' y='" << y.map(std::pow(10, d)) + 3 << "' font-size='10' text-anchor='end'>1e" << int(d) << "</text>";
  o << "<text x='" << (x.px0 + x.px1) / 2 << "' y='" << y.px0 + 30 << "' font-size='11' text-anchor='middle'>" << esc(xl) << "</text>"
    << "<text x='12' y='" << (y.px0 + y.px1) / 2 << "' font-size='11' transform='rotate(-90 12 " << (y.px0 + y.px1) / 2
    << ")' text-anchor='middle'>" << esc(yl) << "</text>";
  return o.str();
}

std::string roofline_svg(const SimResult& r) {
  LogAxis x{1e-2, 1e5, 70, 640}, y{1e8, 1e16, 360, 20};
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='660' height='400'>" << axes(x, y, "intensity (FLOP per DRAM byte)", "FLOP/s (modelled)");
  o << "<polyline fill='none' stroke='#000' stroke-width='2' points='";
  for (double e = -2; e <= 5; e += 0.05) {
    const double i = std::pow(10, e);
    o << x.map(i) << "," << y.map(std::min(r.peak_flops, r.dram_bandwidth * i)) << " ";
  }
  o << "'/>";
  for (auto& n : r.nodes) {
    if (n.time_s <= 0 || n.flops <= 0 || n.intensity <= 0) continue;
    o << "<circle cx='" << x.map(n.intensity) << "' cy='" << y.map(n.flops / n.time_s) << "' r='3' fill='"
      << (n.on_host ? "#d62728" : n.matrix ? "#1f77b4" : "#2ca02c") << "' fill-opacity='0.7'><title>" << esc(n.name) << " ("
      << esc(n.op) << "): " << fmt(n.flops / n.time_s / 1e12) << " TFLOP/s, " << n.bound << "-bound</title></circle>";
  }
  o << "<text x='400' y='40' font-size='11'>blue: matrix op, green: other, red: host fallback</text></svg>";
  return o.str();
}

std::string node_bars_svg(const SimResult& r) {
  std::vector<const NodeResult*> nodes;
  for (auto& n : r.nodes) nodes.push_back(&n);
  std::sort(nodes.begin(), nodes.end(), [](auto* a, auto* b) { return a->time_s > b->time_s; });
  if (nodes.size() > 30) nodes.resize(30);
  double tmax = 0, emax = 0;
  for (auto* n : nodes) tmax = std::max(tmax, n->time_s), emax = std::max(emax, n->energy.total());
  const int row = 16, h = int(nodes.size()) * row + 40;
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='900' height='" << h << "'>"
    << "<text x='200' y='12' font-size='11'>time (modelled)</text><text x='560' y='12' font-size='11'>energy: "
       "<tspan fill='#1f77b4'>compute</tspan> <tspan fill='#2ca02c'>on-chip</tspan> <tspan fill='#d62728'>DRAM</tspan> "
       "<tspan fill='#9467bd'>transfer</tspan> (modelled)</text>";
  int yy = 24;
  for (auto* n : nodes) {
    o << "<text x='0' y='" << yy + 11 << "' font-size='10'>" << esc(n->name.substr(0, 28)) << "</text>";
    const double w = tmax > 0 ? n->time_s / tmax * 300 : 0;
    o << "<rect x='200' y='" << yy << "' width='" << w << "' height='12' fill='" << (n->on_host ? "#d62728" : "#1f77b4")
      << "'><title>" << fmt(n->time_s * 1e6) << " us, " << n->bound << "-bound</title></rect>";
    double x = 560;
    const double parts[4] = {n->energy.compute_j, n->energy.on_chip_j, n->energy.dram_j, n->energy.transfer_j};
    const char* colors[4] = {"#1f77b4", "#2ca02c", "#d62728", "#9467bd"};
    for (int k = 0; k < 4; ++k) {
      const double pw = emax > 0 ? parts[k] / emax * 320 : 0;
      o << "<rect x='" << x << "' y='" << yy << "' width='" << pw << "' height='12' fill='" << colors[k] << "'><title>"
        << fmt(parts[k] * 1e6) << " uJ</title></rect>";
      x += pw;
    }
    yy += row;
  }
  o << "</svg>";
  return o.str();
}

std::string sweep_svg(const std::map<std::string, std::vector<const SimResult*>>& by_device, const std::string& what) {
  double lo = 1e300, hi = 0;
  int64_t bmax = 1;
  auto value = [&](const SimResult* r) {
    return what == "throughput" ? r->throughput_per_s : what == "latency" ? r->latency_s : r->energy_per_inference_j;
  };
  for (auto& [d, rs] : by_device)
    for (auto* r : rs) lo = std::min(lo, value(r)), hi = std::max(hi, value(r)), bmax = std::max(bmax, r->batch);
  if (hi <= 0) return "";
  LogAxis x{1, double(std::max<int64_t>(bmax, 2)), 70, 440}, y{std::pow(10, std::floor(std::log10(lo))), std::pow(10, std::ceil(std::log10(hi))), 260, 20};
  const std::string unit = what == "throughput" ? "inferences/s" : what == "latency" ? "latency s" : "J per inference";
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='620' height='300'>" << axes(x, y, "batch", unit + " (modelled)");
  int c = 0, ly = 30;
  for (auto& [d, rs] : by_device) {
    const char* color = kColors[c++ % 10];
    o << "<polyline fill='none' stroke='" << color << "' stroke-width='2' points='";
    for (auto* r : rs) o << x.map(double(r->batch)) << "," << y.map(value(r)) << " ";
    o << "'/><text x='450' y='" << ly << "' font-size='10' fill='" << color << "'>" << esc(d) << "</text>";
    ly += 13;
  }
  o << "</svg>";
  return o.str();
}

std::string validation_html(const HostValidation& v) {
  std::ostringstream o;
  auto pct = [](double e) { std::ostringstream s; s << std::showpos << std::fixed << std::setprecision(1) << 100 * e << "%"; return s.str(); };
  o << "<h2>Validation: measured vs modelled on this machine</h2><p class='note'>The <b>measured</b> column is timed here "
       "(cpu backend, " << v.threads << " thread" << (v.threads > 1 ? "s" : "") << ", median of " << v.runs
    << " runs, load average " << fmt(v.load_average) << "); the <b>modelled</b> column is the host-CPU model.</p>"
    << "<p>Total: modelled " << fmt(v.predicted_total_s * 1e3, 4) << " ms, measured " << fmt(v.measured_total_s * 1e3, 4)
    << " ms (median latency), error " << pct(v.total_error()) << "; median |per-node error| "
    << fmt(100 * v.median_abs_node_error()) << "%.</p>"
    << "<table><tr><th>node</th><th>op</th><th>class</th><th>modelled ms</th><th>measured ms</th><th>error</th></tr>";
  for (auto& r : v.rows)
    o << "<tr><td style='text-align:left'>" << esc(r.name) << "</td><td style='text-align:left'>" << esc(r.op)
      << "</td><td>" << (r.modelled ? esc(r.cpu_class) : "folded") << "</td><td>" << fmt(r.predicted_s * 1e3) << "</td><td>"
      << fmt(r.measured_s * 1e3) << "</td><td>" << (r.modelled && r.measured ? pct(r.error()) : "-") << "</td></tr>";
  o << "</table>";
  return o.str();
}

}  // namespace

std::string html_report(const std::string& title, const std::vector<SimResult>& results, const HostValidation* validation) {
  std::ostringstream o;
  o << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" << esc(title) << "</title><style>"
    << "body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
       "text-align:right}th{background:#eee}.note{color:#a00}</style></head><body>"
    << "<h1>" << esc(title) << "</h1><p class='note'>Every figure on this page is <b>modelled</b> by <code>duet simulate</code> "
       "from the device catalog (devices/*.toml) and the op registry's costs; none is a measurement"
    << (validation ? ", except the measured column of the validation section" : "") << ".</p>";
  if (validation) o << validation_html(*validation);
  o << "<h2>Device comparison (modelled)</h2><table><tr><th>device</th><th>batch</th><th>latency ms</th><th>inferences/s</th>"
       "<th>mJ/inference</th><th>DRAM share of energy</th><th>$ per 1M inferences</th><th>host-fallback nodes</th></tr>";
  std::map<std::string, std::vector<const SimResult*>> by_device;
  for (auto& r : results) {
    by_device[r.device_id].push_back(&r);
    const double total = r.energy.total();
    o << "<tr><td style='text-align:left'>" << esc(r.device_name) << "</td><td>" << r.batch << "</td><td>" << fmt(r.latency_s * 1e3)
      << "</td><td>" << fmt(r.throughput_per_s) << "</td><td>" << fmt(r.energy_per_inference_j * 1e3) << "</td><td>"
      << fmt(total > 0 ? 100 * r.energy.dram_j / total : 0) << "%</td><td>"
      << (r.cost_per_million_usd ? fmt(*r.cost_per_million_usd) : std::string("n/a")) << "</td><td>" << r.host_nodes << "</td></tr>";
  }
  o << "</table>";
  if (by_device.begin() != by_device.end() && by_device.begin()->second.size() > 1) {
    o << "<h2>Batch sweep (modelled)</h2>" << sweep_svg(by_device, "throughput") << sweep_svg(by_device, "latency")
      << sweep_svg(by_device, "energy");
  }
  for (auto& [d, rs] : by_device) {
    const SimResult& r = *rs.front();
    o << "<h2>" << esc(r.device_name) << ", batch " << r.batch << " (modelled)</h2><h3>Roofline</h3>" << roofline_svg(r)
      << "<h3>Per-node time and energy (30 slowest)</h3>" << node_bars_svg(r);
  }
  o << "</body></html>\n";
  return o.str();
}

}  // namespace duet::sim
