#include "duet/sim/report.h"

#include "duet/core/html.h"
#include "duet/report/chart.h"

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

std::string fmt(double v, int digits = 3) { return format_number(v, digits); }

// Values spanning more than this ratio are plotted on a log axis.
constexpr double kLogSpan = 30;

bool spans_decades(const std::vector<double>& v) {
  double lo = INFINITY, hi = 0;
  for (double x : v)
    if (x > 0) lo = std::min(lo, x), hi = std::max(hi, x);
  return hi > kLogSpan * lo;
}

// A result's device and batch: point labels and the per-device chart titles (the data file has no headings).
std::string configuration(const SimResult& r) { return r.device_name + ", batch " + std::to_string(r.batch); }

using ByDevice = std::map<std::string, std::vector<const SimResult*>>;  // device id -> its results, one series each

// Latency against energy (or cost) per inference, one point per device and
// batch; the Pareto front marks the configurations nothing beats on both.
report::Chart tradeoff_chart(const ByDevice& by_device, bool cost) {
  report::Chart c{.title = cost ? "Latency vs cost (modelled)" : "Latency vs energy per inference (modelled)", .pareto = true};
  c.x.label = "latency ms (modelled)";
  c.y.label = cost ? "$ per 1M inferences (modelled)" : "mJ per inference (modelled)";
  std::vector<double> xs, ys;
  for (auto& [device, rs] : by_device) {
    report::Series s{.name = rs.front()->device_name};
    for (auto* r : rs) {
      if (cost && !r->cost_per_million_usd) continue;
      s.x.push_back(r->latency_s * 1e3);
      s.y.push_back(cost ? *r->cost_per_million_usd : r->energy_per_inference_j * 1e3);
      s.labels.push_back(configuration(*r));
      xs.push_back(s.x.back()), ys.push_back(s.y.back());
    }
    c.series.push_back(s);  // even when empty, so each device keeps its colour across the charts
  }
  c.x.log = spans_decades(xs);
  c.y.log = spans_decades(ys);
  return c;
}

report::Chart sweep_chart(const ByDevice& by_device, const std::string& what) {
  auto value = [&](const SimResult* r) {
    return what == "throughput" ? r->throughput_per_s : what == "latency" ? r->latency_s : r->energy_per_inference_j;
  };
  const std::string unit = what == "throughput" ? "inferences/s" : what == "latency" ? "latency s" : "J per inference";
  report::Chart c{.title = unit + " by batch (modelled)", .kind = report::Kind::Line};
  c.x = {"batch", true};
  c.y = {unit + " (modelled)", true};
  for (auto& [device, rs] : by_device) {
    report::Series s{.name = rs.front()->device_name};
    for (auto* r : rs) {
      s.x.push_back(static_cast<double>(r->batch));
      s.y.push_back(value(r));
      s.labels.push_back(configuration(*r));
    }
    c.series.push_back(s);
  }
  c.width = 620;
  c.height = 300;
  return c;
}

report::Chart roofline_chart(const SimResult& r) {
  report::Chart c{.title = "Roofline: " + configuration(r) + " (modelled)"};
  c.x = {"intensity (FLOP per DRAM byte)", true};
  c.y = {"FLOP/s (modelled)", true};
  report::Series roof{.name = "roof (peak, DRAM bandwidth)", .color = "#000", .line = true};
  for (double e = -2; e <= 5.001; e += 0.05) {
    const double i = std::pow(10, e);
    roof.x.push_back(i);
    roof.y.push_back(std::min(r.peak_flops, r.dram_bandwidth * i));
  }
  report::Series matrix{.name = "matrix op", .color = "#1f77b4"}, other{.name = "other op", .color = "#2ca02c"},
      host{.name = "host fallback", .color = "#d62728"};
  for (auto& n : r.nodes) {
    if (n.time_s <= 0 || n.flops <= 0 || n.intensity <= 0) continue;
    report::Series& s = n.on_host ? host : n.matrix ? matrix : other;
    s.x.push_back(n.intensity);
    s.y.push_back(n.flops / n.time_s);
    s.labels.push_back(n.name + " (" + n.op + "): " + fmt(n.flops / n.time_s / 1e12) + " TFLOP/s, " + n.bound + "-bound");
  }
  c.series = {roof};
  for (auto* s : {&matrix, &other, &host})
    if (!s->x.empty()) c.series.push_back(*s);
  c.width = 660;
  c.height = 400;
  return c;
}

// The 30 slowest nodes: time, by placement, and energy, by where it is spent.
std::vector<report::Chart> node_charts(const SimResult& r) {
  std::vector<const NodeResult*> nodes;
  for (auto& n : r.nodes) nodes.push_back(&n);
  std::sort(nodes.begin(), nodes.end(), [](auto* a, auto* b) { return a->time_s > b->time_s; });
  if (nodes.size() > 30) nodes.resize(30);
  report::Chart time{.title = "Time per node, 30 slowest: " + configuration(r) + " (modelled)", .kind = report::Kind::Bar,
                     .stacked = true, .width = 900};
  time.x.label = "node";
  time.y.label = "time us (modelled)";
  report::Chart energy = time;
  energy.title = "Energy per node, 30 slowest: " + configuration(r) + " (modelled)";
  energy.y.label = "energy uJ (modelled)";
  report::Series device{.name = "on " + r.device_id, .color = "#1f77b4"}, host{.name = "host fallback", .color = "#d62728"};
  report::Series parts[4] = {{.name = "compute", .color = "#1f77b4"}, {.name = "on-chip", .color = "#2ca02c"},
                             {.name = "DRAM", .color = "#d62728"}, {.name = "transfer", .color = "#9467bd"}};
  bool any_host = false;
  for (auto* n : nodes) {
    time.categories.push_back(n->name);
    (n->on_host ? host : device).y.push_back(n->time_s * 1e6);
    (n->on_host ? device : host).y.push_back(NAN);
    for (auto* s : {&device, &host}) s->labels.push_back(fmt(n->time_s * 1e6) + " us, " + n->bound + "-bound");
    any_host |= n->on_host;
    const double j[4] = {n->energy.compute_j, n->energy.on_chip_j, n->energy.dram_j, n->energy.transfer_j};
    for (int k = 0; k < 4; ++k) parts[k].y.push_back(j[k] * 1e6);
  }
  energy.categories = time.categories;
  time.series = {device};
  if (any_host) time.series.push_back(host);
  energy.series.assign(parts, parts + 4);
  return {time, energy};
}

struct Section {
  std::string heading;
  std::vector<report::Chart> charts;
};

// Every chart of the page, in page order, under its heading.
std::vector<Section> chart_sections(const std::vector<SimResult>& results) {
  ByDevice by_device;
  for (auto& r : results) by_device[r.device_id].push_back(&r);
  std::vector<Section> sections;
  if (results.size() > 1) {
    Section tradeoff{"Latency vs energy and cost: the Pareto front (modelled)", {tradeoff_chart(by_device, false)}};
    if (std::count_if(results.begin(), results.end(), [](auto& r) { return r.cost_per_million_usd.has_value(); }) > 1)
      tradeoff.charts.push_back(tradeoff_chart(by_device, true));
    sections.push_back(tradeoff);
  }
  if (!by_device.empty() && by_device.begin()->second.size() > 1)
    sections.push_back({"Batch sweep (modelled)", {sweep_chart(by_device, "throughput"), sweep_chart(by_device, "latency"),
                                                   sweep_chart(by_device, "energy")}});
  for (auto& [d, rs] : by_device) {
    const SimResult& r = *rs.front();
    Section s{configuration(r) + " (modelled)", {roofline_chart(r)}};
    for (auto& c : node_charts(r)) s.charts.push_back(c);
    sections.push_back(s);
  }
  return sections;
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
    << "<table class='num'><tr><th>node</th><th>op</th><th>class</th><th>modelled ms</th><th>measured ms</th><th>error</th></tr>";
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
  o << "<h1>" << esc(title) << "</h1><p class='note'>Every figure on this page is <b>modelled</b> by <code>duet simulate</code> "
       "from the device catalog (devices/*.toml) and the op registry's costs; none is a measurement"
    << (validation ? ", except the measured column of the validation section" : "") << ".</p>";
  if (validation) o << validation_html(*validation);
  o << "<h2>Device comparison (modelled)</h2><table class='num'><tr><th>device</th><th>batch</th><th>latency ms</th><th>inferences/s</th>"
       "<th>mJ/inference</th><th>DRAM share of energy</th><th>$ per 1M inferences</th><th>host-fallback nodes</th></tr>";
  for (auto& r : results) {
    const double total = r.energy.total();
    o << "<tr><td style='text-align:left'>" << esc(r.device_name) << "</td><td>" << r.batch << "</td><td>" << fmt(r.latency_s * 1e3)
      << "</td><td>" << fmt(r.throughput_per_s) << "</td><td>" << fmt(r.energy_per_inference_j * 1e3) << "</td><td>"
      << fmt(total > 0 ? 100 * r.energy.dram_j / total : 0) << "%</td><td>"
      << (r.cost_per_million_usd ? fmt(*r.cost_per_million_usd) : std::string("n/a")) << "</td><td>" << r.host_nodes << "</td></tr>";
  }
  o << "</table>";
  for (auto& section : chart_sections(results)) {
    o << "<h2>" << esc(section.heading) << "</h2>";
    for (auto& c : section.charts) o << report::svg(c);
  }
  return report::page(title, o.str());
}

nlohmann::json report_data(const std::vector<SimResult>& results) {
  std::vector<report::Chart> charts;
  for (auto& section : chart_sections(results)) charts.insert(charts.end(), section.charts.begin(), section.charts.end());
  nlohmann::json j = report::data(charts);
  j["modelled"] = true;
  return j;
}

}  // namespace duet::sim
