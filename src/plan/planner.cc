#include "duet/plan/planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>
#include <sstream>

#include "duet/core/error.h"
#include "duet/core/html.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/ir/edit.h"
#include "duet/ops/registry.h"
#include "duet/passes/emulate.h"
#include "duet/passes/optimize.h"
#include "duet/plan/solver.h"
#include "duet/quant/ptq.h"
#include "duet/runtime/session.h"
#include "duet/sim/simulate.h"
#include "duet/sim/sweep.h"
#include "duet/sim/workload.h"
#include "duet/train/distributed.h"

namespace duet::plan {

Objective parse_objective(const std::string& s) {
  if (s == "latency") return Objective::Latency;
  if (s == "cost") return Objective::Cost;
  if (s == "energy") return Objective::Energy;
  if (s == "throughput") return Objective::Throughput;
  if (s == "accuracy") return Objective::Accuracy;
  fail("unknown objective '", s, "': latency, cost, energy, throughput or accuracy");
}

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::Latency: return "latency";
    case Objective::Cost: return "cost";
    case Objective::Energy: return "energy";
    case Objective::Throughput: return "throughput";
    case Objective::Accuracy: return "accuracy";
  }
  return "?";
}

namespace {

using Assignment = std::map<std::string, std::string>;  // node -> precision text (fp32 entries omitted)

std::string key_of(const Assignment& a) {
  std::string k;
  for (const auto& [node, p] : a)
    if (p != "fp32") k += node + "=" + p + ";";
  return k;
}

std::string summarize(const Assignment& a, size_t layers) {
  std::map<std::string, int> count;
  size_t named = 0;
  for (const auto& [_, p] : a) ++count[p], ++named;
  if (layers > named) count["fp32"] += static_cast<int>(layers - named);
  if (count.size() == 1) return "uniform " + count.begin()->first;
  std::vector<std::pair<int, std::string>> by;
  for (const auto& [p, n] : count) by.push_back({-n, p});
  std::sort(by.begin(), by.end());
  std::string s;
  for (const auto& [n, p] : by) s += (s.empty() ? "" : ", ") + p + " x" + std::to_string(-n);
  return s;
}

// A cpu-backend session over a copy of `model` (its weights shared) at a default precision.
std::unique_ptr<runtime::Session> cpu_session(const ir::Model& model, const std::string& precision, int threads) {
  auto m = ir::clone_sharing_initializers(model);
  runtime::SessionOptions so;
  so.threads = threads;
  so.backend = "cpu";
  so.precision = precision;
  runtime::prepare_model(*m, so);
  return std::make_unique<runtime::Session>(std::shared_ptr<const ir::Model>(std::move(m)), so);
}

// The split's samples, their references and `fp32`'s outputs on them (measured
// on construction: every later figure is against them); measures models.
class Split {
 public:
  Split(const quant::SampleSource& data, const std::vector<size_t>& indices, const eval::TaskMetric& metric,
        const ir::Model& fp32, int threads)
      : metric_(metric) {
    for (size_t i : indices) {
      feeds_.push_back(data.load(i));
      texts_.push_back(metric.needs_references() ? eval::reference_text(data.name(i)) : "");
    }
    fp32_figures_ = measure(fp32, "fp32", threads).figures;
  }
  size_t size() const { return feeds_.size(); }
  const Figures& fp32() const { return fp32_figures_; }

  struct Measure {
    Figures figures;
    double noise = 0;  // mean over samples and outputs of squared relative L2 against FP32
  };

  Measure measure(const ir::Model& model, const std::string& precision, int threads) {
    const auto started = std::chrono::steady_clock::now();
    Measure m = run(model, precision, threads);
    measuring_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return m;
  }
  double measuring_s() const { return measuring_s_; }

 private:
  Measure run(const ir::Model& model, const std::string& precision, int threads) {
    const std::unique_ptr<runtime::Session> session = cpu_session(model, precision, threads);
    const bool first = fp32_.empty();
    eval::Accumulator acc(metric_);
    double noise = 0;
    for (size_t s = 0; s < feeds_.size(); ++s) {
      std::vector<Tensor> outs;
      for (auto& nt : session->run(feeds_[s])) outs.push_back(nt.tensor);
      if (first) fp32_.push_back(outs);
      acc.add(outs, fp32_[s], texts_[s]);
      double n = 0;
      for (size_t k = 0; k < outs.size(); ++k) {
        const Tensor& a = outs[k];
        const Tensor& r = fp32_[s][k];
        if (a.dtype() != DType::Float32 || a.numel() != r.numel()) continue;
        double d2 = 0, r2 = 0;
        for (int64_t i = 0; i < a.numel(); ++i) {
          const double d = static_cast<double>(a.data<float>()[i]) - r.data<float>()[i];
          d2 += d * d;
          r2 += static_cast<double>(r.data<float>()[i]) * r.data<float>()[i];
        }
        n += r2 > 0 ? d2 / r2 : d2;
      }
      noise += n / std::max<size_t>(1, outs.size());
    }
    Measure out;
    out.figures.samples = feeds_.size();
    out.figures.score = acc.score();
    out.figures.metric_value = acc.value();
    out.noise = noise / static_cast<double>(std::max<size_t>(1, feeds_.size()));
    if (first) fp32_score_ = out.figures.score;
    out.figures.drop_points = 100 * (fp32_score_ - out.figures.score);
    return out;
  }

  double measuring_s_ = 0;
  eval::TaskMetric metric_;
  std::vector<std::map<std::string, Tensor>> feeds_;
  std::vector<std::string> texts_;
  std::vector<std::vector<Tensor>> fp32_;
  double fp32_score_ = 0;
  Figures fp32_figures_;
};

// `folded` with each assigned node emulated at its precision (its weights shared).
std::unique_ptr<ir::Model> emulate_assignment(const ir::Model& folded, const std::map<std::string, std::string>& a) {
  auto m = ir::clone_sharing_initializers(folded);
  std::map<std::string, numerics::Precision> precisions;
  for (const auto& [node, text] : a) precisions[node] = numerics::parse_precision(text);
  passes::emulate_nodes(*m, precisions);
  return m;
}

// Whole-model measurements of assignments, each measured once.
class Measurer {
 public:
  Measurer(const ir::Model& folded, Split& search, Split& held_out, int threads)
      : folded_(folded), search_(search), held_out_(held_out), threads_(threads) {}

  Split::Measure search(const Assignment& a) { return measure(a, search_, search_cache_); }
  Split::Measure held_out(const Assignment& a) { return measure(a, held_out_, held_cache_); }
  size_t count() const { return count_; }

 private:
  Split::Measure measure(const Assignment& a, Split& split, std::map<std::string, Split::Measure>& cache) {
    const std::string key = key_of(a);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    ++count_;
    return cache[key] = split.measure(*emulate_assignment(folded_, a), "fp32", threads_);
  }

  const ir::Model& folded_;
  Split &search_, &held_out_;
  int threads_;
  std::map<std::string, Split::Measure> search_cache_, held_cache_;
  size_t count_ = 0;
};

// The 16-bit (else FP32) format a device's vector units compute the non-matrix work in.
std::string vector_default(const sim::Device& d) {
  for (const char* p : {"fp16", "bf16", "fp32"})
    if (d.vector_supports(p) || d.matrix_supports(p)) return p;
  return "fp32";
}

struct Modelled {
  double latency_s = 0, throughput = 0;
  std::optional<double> energy_j, cost;
  int host_nodes = 0;
  std::map<std::string, int> fallback;  // "op: reason" -> nodes
};

Modelled model_plan(const sim::Workload& base, const Assignment& a, const sim::Device& d, const sim::Device* host,
                    const std::string& default_precision) {
  sim::Workload w = base;
  for (auto& item : w.items)
    if (auto it = a.find(item.name); it != a.end()) item.precision = it->second;
    else if (item.matrix) item.precision = "fp32";
  sim::SimOptions o;
  o.precision = default_precision;
  const sim::SimResult r = sim::simulate(w, d, host, o);
  Modelled m;
  m.latency_s = r.latency_s;
  m.throughput = r.throughput_per_s;
  m.energy_j = r.energy_per_inference_j;
  m.cost = r.cost_per_million_usd;
  m.host_nodes = r.host_nodes;
  for (const sim::NodeResult& n : r.nodes)
    if (n.on_host) ++m.fallback[n.op + (n.fallback_reason.empty() ? "" : ": " + n.fallback_reason)];
  return m;
}

// A catalog device's plan for an assignment: every figure modelled.
Plan modelled_plan(const PlanRequest& r, const sim::Device& d, const sim::Device* host, const sim::Workload& w,
                   const Assignment& a, size_t layers);

// The latency a request sees: with an arrival rate its tail, else the batch's.
double request_latency_ms(const Plan& p) { return p.tail_latency_ms ? *p.tail_latency_ms : p.latency_ms; }

// Does the plan meet the modelled limits? Empty when it does, else the first it breaks.
std::string broken_limit(const PlanRequest& r, const Plan& p) {
  auto num = [](double v) { return format_number(v, 4); };
  if (p.tail_latency_ms && !std::isfinite(*p.tail_latency_ms))
    return "throughput " + num(p.throughput) + "/s is below the arrival rate " + num(*r.arrival_rate) + "/s";
  if (r.max_latency_ms && request_latency_ms(p) > *r.max_latency_ms)
    return std::string(p.tail_latency_ms ? "p" + num(r.percentile) + " request latency " : "latency ") +
           num(request_latency_ms(p)) + " ms > --max-latency-ms " + num(*r.max_latency_ms);
  if (r.min_throughput && p.throughput < *r.min_throughput)
    return "throughput " + num(p.throughput) + "/s < --min-throughput " + num(*r.min_throughput);
  if (r.max_power_w && !(p.power_w > 0 && p.power_w <= *r.max_power_w))
    return p.power_w > 0 ? "power " + num(p.power_w) + " W > --max-power " + num(*r.max_power_w)
                         : "no power figure for the device (--max-power needs one)";
  if (r.objective == Objective::Cost && !p.cost_per_million) return "no price for the device (--objective cost needs one)";
  if (r.objective == Objective::Energy && !p.energy_mj) return "no energy figure (--objective energy needs a modelled device)";
  if (r.max_cost_per_million && !(p.cost_per_million && *p.cost_per_million <= *r.max_cost_per_million))
    return p.cost_per_million ? "$" + num(*p.cost_per_million) + " per million > --max-cost " + num(*r.max_cost_per_million)
                              : "no price for the device (--max-cost needs one)";
  return {};
}

bool accurate_enough(const PlanRequest& r, const Plan& p) { return p.search.drop_points <= r.max_accuracy_drop + 1e-9; }

// Smaller is better for the objective.
double objective_value(const PlanRequest& r, const Plan& p) {
  switch (r.objective) {
    case Objective::Latency: return request_latency_ms(p);
    case Objective::Cost: return p.cost_per_million ? *p.cost_per_million : INFINITY;
    case Objective::Energy: return p.energy_mj ? *p.energy_mj : INFINITY;
    case Objective::Throughput: return -p.throughput;
    case Objective::Accuracy: return -p.search.score;
  }
  return 0;
}

double median_ms(runtime::Session& s, const std::map<std::string, Tensor>& feeds, int runs) {
  s.run(feeds);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto a = std::chrono::steady_clock::now();
    s.run(feeds);
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The planner's solves: within 0.1% of the optimum, at most 200k search nodes each.
constexpr SolveOptions kSolve{.max_nodes = 200'000, .tolerance = 1e-9, .gap = 1e-3};

// Even-numbered samples search (part 0), odd ones are held out (part 1).
std::vector<size_t> split_indices(const quant::SampleSource& data, const PlanRequest& r, int part) {
  std::vector<size_t> idx;
  const size_t most = part == 1 && r.max_held_out ? r.max_held_out : r.max_samples;
  for (size_t i = part; i < data.count && idx.size() < most; i += 2) idx.push_back(i);
  return idx;
}

// The input dimensions the simulator binds: the request's, else the first sample's.
std::map<std::string, Dims> input_shapes(const PlanRequest& r, const quant::SampleSource& data) {
  std::map<std::string, Dims> shapes = r.input_shapes;
  for (const auto& [name, t] : data.load(0))
    if (!shapes.count(name)) shapes[name] = t.dims();
  return shapes;
}

sim::Workload workload(const ir::Model& folded, const std::map<std::string, Dims>& shapes, int64_t batch) {
  auto m = ir::clone_sharing_initializers(folded);
  return sim::workload_from_model(*m, batch, shapes);
}

std::optional<sim::Device> calibrated_host(const std::string& catalog_dir) {
  if (!std::filesystem::exists(std::filesystem::path(catalog_dir) / "host.toml")) return std::nullopt;
  sim::Device host = sim::find_device(catalog_dir, "host");
  return host.calibrated ? std::optional<sim::Device>(host) : std::nullopt;
}

Plan modelled_plan(const PlanRequest& r, const sim::Device& d, const sim::Device* host, const sim::Workload& w,
                   const Assignment& a, size_t layers) {
  Plan p;
  p.device = d.id;
  p.device_name = d.name;
  p.batch = w.batch;
  p.precision = a;
  p.summary = summarize(a, layers);
  const Modelled m = model_plan(w, a, d, host, vector_default(d));
  p.latency_ms = m.latency_s * 1e3;
  p.throughput = m.throughput;
  if (m.energy_j) p.energy_mj = *m.energy_j * 1e3;
  p.cost_per_million = m.cost;
  if (d.price_per_hour_usd)
    p.cost_source = d.cloud_instance + " at $" + std::to_string(*d.price_per_hour_usd).substr(0, 6) + "/h, as of " +
                    (d.cloud_as_of.empty() ? "an unknown date" : d.cloud_as_of) + " (" + d.cloud_source + ")";
  p.power_w = d.tdp_w;
  p.host_fallback_nodes = m.host_nodes;
  p.host_fallback = m.fallback;
  if (r.arrival_rate) p.tail_latency_ms = 1e3 * tail_latency_s(*r.arrival_rate, p.batch, m.latency_s, r.percentile);
  return p;
}

}  // namespace

double tail_latency_s(double rate, int64_t batch, double batch_latency_s, double percentile) {
  DUET_CHECK(rate > 0 && percentile > 0 && percentile < 100, "arrival rate must be positive and the percentile in (0, 100)");
  const double rho = rate * batch_latency_s / static_cast<double>(batch);
  if (rho >= 1) return INFINITY;
  // Fill: the time for b-1 more Poisson arrivals, Erlang(b-1, rate), at the percentile (bisection on its CDF).
  double fill = 0;
  const int64_t k = batch - 1;
  if (k > 0) {
    const double q = percentile / 100;
    auto cdf = [&](double x) {
      double term = std::exp(-rate * x), sum = term;
      for (int64_t n = 1; n < k; ++n) sum += term *= rate * x / static_cast<double>(n);
      return 1 - sum;
    };
    double lo = 0, hi = static_cast<double>(k) / rate;
    while (cdf(hi) < q) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
      const double mid = (lo + hi) / 2;
      (cdf(mid) < q ? lo : hi) = mid;
    }
    fill = hi;
  }
  // Waiting for the device: the mean M/D/1 wait of batches (deterministic service).
  const double wait = rho * batch_latency_s / (2 * (1 - rho));
  return fill + wait + batch_latency_s;
}

Plan cost_assignment(const PlanResult& result, const PlanRequest& r, const quant::SampleSource& data,
                     const std::string& device, int64_t batch, const std::map<std::string, std::string>& precision) {
  DUET_CHECK(result.folded, "plan: the result holds no model");
  const sim::Device d = sim::find_device(r.catalog_dir, device);
  DUET_CHECK(!d.cpu, "cost_assignment costs catalog accelerators; the host is measured by plan_model");
  const std::optional<sim::Device> host = calibrated_host(r.catalog_dir);
  Assignment a;
  for (const auto& [node, p] : precision)
    if (numerics::parse_precision(p).str() != "fp32") a[node] = numerics::parse_precision(p).str();
  return modelled_plan(r, d, host ? &*host : nullptr, workload(*result.folded, input_shapes(r, data), batch), a,
                       result.layers.size());
}

void measure_plans(const PlanResult& result, const PlanRequest& r, const quant::SampleSource& data, std::vector<Plan>& plans) {
  DUET_CHECK(result.folded, "plan: the result holds no model");
  Split search(data, split_indices(data, r, 0), r.metric, *result.folded, r.threads);
  Split held_out(data, split_indices(data, r, 1), r.metric, *result.folded, r.threads);
  for (Plan& p : plans) {
    const std::unique_ptr<ir::Model> emulated = emulate_assignment(*result.folded, p.precision);
    p.search = search.measure(*emulated, "fp32", r.threads).figures;
    p.held_out = held_out.measure(*emulated, "fp32", r.threads).figures;
  }
}

PlanResult plan_model(const ir::Model& model, const PlanRequest& r, const quant::SampleSource& data) {
  const auto started = std::chrono::steady_clock::now();
  DUET_CHECK(data.count >= 2, "plan: needs at least 2 samples (one to search with, one held out), got ", data.count);
  DUET_CHECK(!r.batches.empty() && !r.precisions.empty(), "plan: no batch size or no precision allowed");
  for (int64_t b : r.batches) DUET_CHECK(b > 0, "plan: batch sizes are positive, got ", b);
  DUET_CHECK(r.max_accuracy_drop >= 0, "--max-accuracy-drop is in points and not negative");
  DUET_CHECK(r.max_samples >= 1, "plan: --max-samples must be at least 1");
  DUET_CHECK(!r.arrival_rate || *r.arrival_rate > 0, "plan: --arrival-rate must be positive");
  auto progress = [&](const std::string& stage, size_t done, size_t total) {
    if (r.progress) r.progress(stage, done, total);
  };

  PlanResult out;
  out.objective = objective_name(r.objective);
  out.metric = r.metric.name();
  out.metric_description = r.metric.description();

  // The options every layer may take: the allowed precisions, each also 2:4 sparse when asked.
  std::vector<std::string> options;
  for (const std::string& text : r.precisions) {
    const numerics::Precision p = numerics::parse_precision(text);
    options.push_back(p.str());
    if (r.sparsity && p.str() != "fp32")
      options.push_back(numerics::parse_precision(p.str() + ",sparsity=2:4").str());
  }

  // The folded model every plan annotates (what a device compiler casts).
  out.folded = onnx_io::clone_model(model);
  runtime::check_supported(*out.folded);
  passes::OptimizeOptions fold;
  fold.fuse = false;
  passes::optimize(*out.folded, fold);
  {
    ir::edit::NodeNames names(*out.folded->graph);
    for (auto& n : out.folded->graph->nodes)
      if (n->name.empty()) n->name = names.fresh(n->op_type);
  }
  const ir::Model& folded = *out.folded;

  // 1. The split.
  const std::vector<size_t> search_idx = split_indices(data, r, 0), held_idx = split_indices(data, r, 1);
  progress("loading samples", 0, 1);
  Split search(data, search_idx, r.metric, folded, r.threads), held_out(data, held_idx, r.metric, folded, r.threads);
  out.search_samples = search.size();
  out.held_out_samples = held_out.size();
  out.fp32_search = search.fp32();
  out.fp32_held_out = held_out.fp32();
  Measurer measurer(folded, search, held_out, r.threads);

  // 2. Sensitivity: each layer alone at each option. Under mpirun the
  // measurements are dealt round-robin to the ranks and summed back in rank
  // order (each figure comes from exactly one rank, so every rank ends with the
  // same doubles a single process would have measured).
  train::Communicator* comm = train::mpi_world();
  const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  struct Task {
    size_t layer;
    std::string option;
  };
  std::vector<Task> tasks;
  for (auto& n : folded.graph->nodes) {
    if (!(n->domain.empty() || n->domain == "ai.onnx") || !ops::matrix_traits(*n)) continue;
    MatrixLayer layer;
    layer.node = n->name;
    layer.op = n->op_type;
    for (const std::string& option : options)
      if (option == "fp32" || passes::emulation_obstacle(*n, numerics::parse_precision(option)).empty()) {
        if (option != "fp32") tasks.push_back({out.layers.size(), option});
        layer.options.push_back({option, 0, 0});
      }
    if (layer.options.size() > 1 || (layer.options.size() == 1 && layer.options[0].precision != "fp32"))
      out.layers.push_back(std::move(layer));
    else
      for (size_t k = tasks.size(); k-- > 0 && tasks[k].layer == out.layers.size();) tasks.pop_back();
  }
  if (!r.measured_layers.empty()) {
    // Measured before: the same layers and options, or one clear error.
    DUET_CHECK(r.measured_layers.size() == out.layers.size(), "plan: the measured layers given (",
               r.measured_layers.size(), ") are not this model's ", out.layers.size(), " matrix layers");
    for (size_t i = 0; i < out.layers.size(); ++i) {
      const MatrixLayer& m = r.measured_layers[i];
      DUET_CHECK(m.node == out.layers[i].node && m.options.size() == out.layers[i].options.size(),
                 "plan: the measured layers given do not match this model and these precisions (layer ", i, ": '", m.node,
                 "' vs '", out.layers[i].node, "')");
      for (size_t k = 0; k < m.options.size(); ++k)
        DUET_CHECK(m.options[k].precision == out.layers[i].options[k].precision, "plan: layer '", m.node,
                   "' was measured at other precisions");
    }
    out.layers = r.measured_layers;
    tasks.clear();
  }
  std::vector<double> figures(2 * tasks.size(), 0);  // noise, task drop per task
  for (size_t k = 0; k < tasks.size(); ++k) {
    progress("sensitivity", k, tasks.size());
    if (static_cast<int>(k % ranks) != rank) continue;
    const Split::Measure m = measurer.search({{out.layers[tasks[k].layer].node, tasks[k].option}});
    figures[2 * k] = m.noise;
    figures[2 * k + 1] = m.figures.drop_points;
  }
  if (comm) figures = train::allreduce_values(*comm, figures);
  for (size_t k = 0; k < tasks.size(); ++k)
    for (Candidate& c : out.layers[tasks[k].layer].options)
      if (c.precision == tasks[k].option) c.noise = figures[2 * k], c.task_drop = figures[2 * k + 1];
  progress("sensitivity", tasks.size(), tasks.size());

  // 3-4. Catalog devices: modelled cost per layer, the exact trade-off, measured finalists.
  sim::SweepRequest devices_request;
  devices_request.catalog_dir = r.catalog_dir;
  bool want_host = false;
  for (const std::string& id : r.devices) {
    if (id == "host" || id == "all") want_host = true;
    if (id != "host") devices_request.devices.push_back(id);
  }
  std::vector<sim::Device> devices;
  if (!devices_request.devices.empty()) devices = sim::resolve_devices(devices_request);
  const std::optional<sim::Device> host = calibrated_host(r.catalog_dir);
  const std::map<std::string, Dims> shapes = input_shapes(r, data);
  std::vector<sim::Workload> workloads;
  for (int64_t b : r.batches) workloads.push_back(workload(folded, shapes, b));

  // Each (device, batch): every layer's modelled time and energy per option (one simulation per option).
  struct Target {
    const sim::Device* device;
    size_t batch;
    std::string base_precision;
    Problem problem;  // columns time_s, energy_j, noise
  };
  std::vector<Target> targets;
  size_t point = 0, accelerators = 0;
  for (const sim::Device& d : devices) accelerators += !d.cpu;
  for (const sim::Device& d : devices) {
    if (d.cpu) continue;  // CPUs in the catalog with kernel rates are the host: measured below
    for (size_t bi = 0; bi < r.batches.size(); ++bi) {
      progress("costing", point++, accelerators * r.batches.size());
      Target t{&d, bi, vector_default(d), {}};
      std::map<std::string, std::map<std::string, std::pair<double, double>>> cost;  // node -> option -> (s, J)
      for (const std::string& option : options) {
        sim::Workload ww = workloads[bi];
        for (auto& item : ww.items)
          if (item.matrix) item.precision = option;
        sim::SimOptions so;
        so.precision = t.base_precision;
        for (const sim::NodeResult& n : sim::simulate(ww, d, host ? &*host : nullptr, so).nodes)
          if (n.matrix && !n.on_host) cost[n.name][option] = {n.time_s, n.energy.total()};
      }
      t.problem.columns = {"time_s", "energy_j", "noise", "task_drop"};
      t.problem.objective = "noise";
      for (const MatrixLayer& l : out.layers) {
        plan::Layer pl{l.node, "", {}};
        for (const Candidate& o : l.options)
          if (cost[l.node].count(o.precision))
            pl.options.push_back({o.precision, {cost[l.node][o.precision].first, cost[l.node][o.precision].second, o.noise,
                                                o.task_drop}});
        if (!pl.options.empty()) t.problem.layers.push_back(std::move(pl));  // else: no option on this engine, stays FP32
      }
      if (!t.problem.layers.empty()) targets.push_back(std::move(t));
    }
  }
  progress("costing", point, point);

  auto plan_of = [&](const Target& t, const Assignment& a) {
    return modelled_plan(r, *t.device, host ? &*host : nullptr, workloads[t.batch], a, out.layers.size());
  };
  auto assignment_of = [](const Problem& problem, const Solution& s) {
    Assignment a;
    for (size_t i = 0; i < problem.layers.size(); ++i) {
      const std::string& p = problem.layers[i].options[s.choice[i]].name;
      if (p != "fp32") a[problem.layers[i].name] = p;
    }
    return a;
  };
  auto measure_plan = [&](Plan& p) { p.search = measurer.search(p.precision).figures; };
  out.solver_gap = kSolve.gap;
  auto count = [&](Solution s) {
    ++out.solves;
    out.solves_stopped += !s.exact;
    return s;
  };
  const std::string column = r.objective == Objective::Energy ? "energy_j" : "time_s";

  // The noise the accuracy budget allows, calibrated once by measurement: along the
  // first target's exact noise/time trade-off, the noisiest plan whose measured
  // drop keeps the budget (a binary search). Accuracy does not depend on the device,
  // so every target starts from it; each chosen plan is measured again below.
  double noise_budget = INFINITY;
  if (r.objective != Objective::Accuracy && !targets.empty()) {
    const std::vector<Solution> curve = trade_off(targets[0].problem, "time_s", 1000, kSolve);  // cheapest (noisiest) first
    for (const Solution& sol : curve) count(sol);
    const int noise_col = 2;
    auto ok = [&](size_t i) {
      Plan p = plan_of(targets[0], assignment_of(targets[0].problem, curve[i]));
      measure_plan(p);
      return accurate_enough(r, p);
    };
    if (!curve.empty()) {
      size_t lo = 0, hi = curve.size() - 1;
      if (ok(hi)) {
        while (lo < hi) {
          const size_t mid = (lo + hi) / 2;
          if (ok(mid)) hi = mid;
          else lo = mid + 1;
        }
        // Even the noisiest plan keeps the budget: no calibrated limit (other targets
        // may offer noisier options; their plans are measured below).
        noise_budget = hi == 0 ? INFINITY : curve[hi].totals[noise_col];
      } else {
        noise_budget = curve[hi].totals[noise_col];  // the least noise there is: the plan will say it falls short
      }
    }
  }

  // Measured refinement (the accuracy objective): both proxies add per-layer
  // figures, but layers interact and a per-layer task drop on a few samples is
  // coarse. From the better proxy plan, a local search measured on the search
  // samples: the changes the proxies rate nearly as good — one layer to another
  // option, or two layers trading time (one more accurate, one faster) — are
  // emulated whole, and the best kept when it measures better: the task score
  // first, then the whole model's output noise. Every move keeps the modelled
  // limits; at most r.refine whole models are measured per target.
  auto refine = [&](const Target& t, Plan current, double limit_s) {
    const Problem& q = t.problem;
    const size_t n = q.layers.size();
    auto choice_of = [&](const Assignment& a) {
      std::vector<size_t> c(n, 0);
      for (size_t i = 0; i < n; ++i) {
        const std::string want = a.count(q.layers[i].name) ? a.at(q.layers[i].name) : "fp32";
        for (size_t k = 0; k < q.layers[i].options.size(); ++k)
          if (q.layers[i].options[k].name == want) c[i] = k;
      }
      return c;
    };
    auto value = [&](size_t i, size_t k, int column) { return q.layers[i].options[k].values[column]; };
    auto better = [](const Split::Measure& a, const Split::Measure& b) {
      return a.figures.score > b.figures.score || (a.figures.score == b.figures.score && a.noise < b.noise);
    };
    Split::Measure best = measurer.search(current.precision);
    size_t spent = 0;
    while (spent < r.refine) {
      const std::vector<size_t> c = choice_of(current.precision);
      const double slack = std::isfinite(limit_s) ? limit_s - request_latency_ms(current) / 1e3 : INFINITY;
      struct Move {
        size_t i, k, j, m;  // layer i to option k; with j != n also layer j to option m
        double noise, drop; // predicted changes of the two proxies
      };
      std::vector<Move> moves;
      for (size_t i = 0; i < n; ++i)
        for (size_t k = 0; k < q.layers[i].options.size(); ++k) {
          if (k == c[i]) continue;
          const double dt = value(i, k, 0) - value(i, c[i], 0);
          const double dn = value(i, k, 2) - value(i, c[i], 2), dd = value(i, k, 3) - value(i, c[i], 3);
          if (dt <= slack) moves.push_back({i, k, n, 0, dn, dd});
          if (dt <= 0 || dn >= 0) continue;  // pairs: a more accurate, slower layer i, paid for by a faster one
          for (size_t j = 0; j < n; ++j)
            for (size_t m = 0; j != i && m < q.layers[j].options.size(); ++m) {
              const double dtj = value(j, m, 0) - value(j, c[j], 0);
              if (dtj < 0 && dt + dtj <= slack)
                moves.push_back({i, k, j, m, dn + value(j, m, 2) - value(j, c[j], 2), dd + value(j, m, 3) - value(j, c[j], 3)});
            }
        }
      // The most promising by each proxy, alternately (stable: ties keep the enumeration order).
      std::vector<size_t> by_noise(moves.size()), by_drop(moves.size());
      std::iota(by_noise.begin(), by_noise.end(), 0);
      by_drop = by_noise;
      std::stable_sort(by_noise.begin(), by_noise.end(), [&](size_t a, size_t b) { return moves[a].noise < moves[b].noise; });
      std::stable_sort(by_drop.begin(), by_drop.end(), [&](size_t a, size_t b) {
        return moves[a].drop < moves[b].drop || (moves[a].drop == moves[b].drop && moves[a].noise < moves[b].noise);
      });
      std::optional<Plan> step_best;
      Split::Measure step_measure;
      std::set<std::string> tried;
      const size_t per_step = std::min<size_t>(8, r.refine - spent);
      size_t taken = 0;
      for (size_t rank_i = 0; rank_i < moves.size() && taken < per_step; ++rank_i)
        for (const std::vector<size_t>* order : {&by_noise, &by_drop}) {
          if (taken >= per_step) break;
          const Move& mv = moves[(*order)[rank_i]];
          Assignment a = current.precision;
          auto set = [&](size_t layer, size_t option) {
            const std::string& name = q.layers[layer].options[option].name;
            if (name == "fp32") a.erase(q.layers[layer].name);
            else a[q.layers[layer].name] = name;
          };
          set(mv.i, mv.k);
          if (mv.j != n) set(mv.j, mv.m);
          if (!tried.insert(key_of(a)).second) continue;
          Plan p = plan_of(t, a);
          if (!broken_limit(r, p).empty() || request_latency_ms(p) / 1e3 > limit_s) continue;
          ++taken;
          const Split::Measure m = measurer.search(a);
          if (!step_best || better(m, step_measure)) step_best = std::move(p), step_measure = m;
        }
      spent += taken;
      if (!step_best || !better(step_measure, best)) break;  // a local optimum, as measured
      best = step_measure;
      current = std::move(*step_best);
    }
    current.search = best.figures;
    return current;
  };

  for (size_t ti = 0; ti < targets.size(); ++ti) {
    const Target& t = targets[ti];
    progress("planning", ti, targets.size());
    const int64_t batch = r.batches[t.batch];
    // The latency limit that the modelled limits imply for this target.
    double limit_s = INFINITY;
    if (r.max_latency_ms) limit_s = std::min(limit_s, *r.max_latency_ms / 1e3);
    if (r.min_throughput) limit_s = std::min(limit_s, static_cast<double>(batch) / *r.min_throughput);
    if (r.max_cost_per_million && t.device->price_per_hour_usd)
      limit_s = std::min(limit_s, *r.max_cost_per_million * 3600.0 * static_cast<double>(batch) / (*t.device->price_per_hour_usd * 1e6));
    // Solve; the simulator's whole-model latency adds the non-matrix work and
    // transfers to the layers' sum: tighten the layers' budget by what it adds.
    auto solve_target = [&](double noise_limit, const std::string& proxy) -> std::optional<Plan> {
      Problem q = t.problem;
      q.objective = r.objective == Objective::Accuracy ? proxy : column;
      if (std::isfinite(noise_limit)) q.limits["noise"] = noise_limit;
      double layer_budget = INFINITY;
      std::optional<Plan> last;
      for (int round = 0; round < 5; ++round) {
        if (std::isfinite(layer_budget)) q.limits["time_s"] = layer_budget;
        const Solution s = count(solve(q, kSolve));
        if (!s.feasible) return last;
        Plan p = plan_of(t, assignment_of(q, s));
        const double excess = std::isfinite(request_latency_ms(p)) ? request_latency_ms(p) / 1e3 - limit_s : INFINITY;
        last = p;
        if (excess <= 0) return p;
        const double layers_s = s.totals[0];
        // Too slow for the arrivals: halve the layers' time; else take off what the request latency exceeds.
        layer_budget = std::isfinite(excess) ? (std::isfinite(layer_budget) ? layer_budget : layers_s) - excess * (1 + 1e-6) - 1e-12
                                             : layers_s / 2;
        if (layer_budget <= 0) return last;
      }
      return last;
    };
    auto noise_of = [&](const Plan& p) {
      double noise = 0;
      for (const auto& pl : t.problem.layers)
        for (const auto& o : pl.options)
          if ((p.precision.count(pl.name) ? p.precision.at(pl.name) : "fp32") == o.name) noise += o.values[2];
      return noise;
    };
    std::optional<Plan> chosen;
    double noise_limit = noise_budget;
    if (r.objective == Objective::Accuracy) {
      // Two proxies of accuracy within the limits — the summed output noise and
      // the summed per-layer task-metric drops — and the better plan measured;
      // on a tie (a metric too coarse for the search samples) the less noisy.
      for (const char* proxy : {"noise", "task_drop"}) {
        std::optional<Plan> p = solve_target(INFINITY, proxy);
        if (!p) continue;
        measure_plan(*p);
        if (!chosen || p->search.score > chosen->search.score ||
            (p->search.score == chosen->search.score && noise_of(*p) < noise_of(*chosen)))
          chosen = p;
      }
    }
    if (r.objective == Objective::Accuracy && chosen && r.refine > 0) chosen = refine(t, *chosen, limit_s);
    for (int attempt = 0; attempt < 8 && !chosen; ++attempt) {
      std::optional<Plan> p = solve_target(noise_limit, "noise");
      if (!p) {
        // Nothing meets the limits at this noise: show the least noisy plan, which says why.
        Problem q = t.problem;
        const Solution s = count(solve(q, kSolve));
        if (s.feasible) p = plan_of(t, assignment_of(q, s));
        if (!p) break;
        measure_plan(*p);
        chosen = p;
        break;
      }
      measure_plan(*p);
      if (r.objective == Objective::Accuracy || accurate_enough(r, *p)) {
        chosen = p;
        break;
      }
      if (attempt == 7) chosen = p;  // the most accurate tried: it will say it falls short
      // Measured over budget: ask for less noise than this plan has.
      noise_limit = noise_of(*p) * 0.5;
    }
    std::string picked_key = "-";
    const size_t picked_index = out.plans.size();
    if (chosen) {
      picked_key = key_of(chosen->precision);
      out.plans.push_back(std::move(*chosen));
    }
    // The uniform plans beside it, for comparison.
    for (const std::string& option : options) {
      Assignment a;
      bool everywhere = true;
      for (const auto& pl : t.problem.layers) {
        bool has = false;
        for (const auto& o : pl.options) has = has || o.name == option;
        everywhere = everywhere && has;
        if (option != "fp32") a[pl.name] = option;
      }
      if (!everywhere) continue;
      Plan p = plan_of(t, a);
      p.summary = "uniform " + option;
      if (key_of(p.precision) == picked_key) {
        out.plans[picked_index].summary = p.summary;  // the pick is uniform
        continue;
      }
      measure_plan(p);
      out.plans.push_back(std::move(p));
    }
  }
  progress("planning", targets.size(), targets.size());

  // 5. The host CPU, measured.
  if (want_host) {
    progress("host", 0, 1);
    const auto feeds = data.load(search_idx[0]);
    for (const std::string& precision : {std::string("fp32"), std::string("bf16")}) {
      if (std::find(options.begin(), options.end(), precision) == options.end()) continue;
      Plan p;
      p.device = "host";
      p.device_name = host ? host->name : "this machine's CPU";
      p.measured_latency = true;
      p.batch = 1;
      p.summary = "uniform " + precision + " (cpu backend)";
      for (const MatrixLayer& l : out.layers)
        if (precision != "fp32") p.precision[l.node] = precision;
      try {
        const std::unique_ptr<runtime::Session> session = cpu_session(folded, precision, r.threads);
        // Under mpirun only rank 0 times (the others would share its cores), then tells the rest.
        float ms = rank == 0 ? static_cast<float>(median_ms(*session, feeds, 10)) : 0.0f;
        if (comm) comm->broadcast(&ms, 1, 0);
        p.latency_ms = ms;
      } catch (const Error& e) {
        continue;  // the cpu backend does not compute this precision here
      }
      p.throughput = 1e3 / p.latency_ms;
      if (r.arrival_rate) p.tail_latency_ms = 1e3 * tail_latency_s(*r.arrival_rate, 1, p.latency_ms / 1e3, r.percentile);
      p.search = search.measure(folded, precision, r.threads).figures;
      p.held_out = held_out.measure(folded, precision, r.threads).figures;
      out.plans.push_back(std::move(p));
    }
  }
  DUET_CHECK(!out.plans.empty(), "plan: no device could run the model (devices: ", r.devices.size(), ")");

  // 6. Choose; the front; why the others lost.
  std::optional<size_t> best;
  for (size_t i = 0; i < out.plans.size(); ++i) {
    Plan& p = out.plans[i];
    const std::string broken = broken_limit(r, p);
    p.feasible = broken.empty() && accurate_enough(r, p);
    if (!broken.empty()) p.rejected = broken;
    else if (!accurate_enough(r, p)) p.rejected = "accuracy drop " + std::to_string(p.search.drop_points) +
                                                  " points > --max-accuracy-drop " + std::to_string(r.max_accuracy_drop);
    if (!p.feasible) continue;
    if (!best || objective_value(r, p) < objective_value(r, out.plans[*best]) ||
        (objective_value(r, p) == objective_value(r, out.plans[*best]) && p.search.score > out.plans[*best].search.score))
      best = i;
  }
  std::vector<std::vector<double>> points;
  for (const Plan& p : out.plans)
    points.push_back({-p.search.score, p.latency_ms, -p.throughput, p.cost_per_million.value_or(INFINITY),
                      p.energy_mj.value_or(INFINITY)});
  for (size_t i : pareto_front(points)) out.plans[i].pareto = true;
  for (Plan& p : out.plans)
    if (p.held_out.samples == 0) p.held_out = measurer.held_out(p.precision).figures;
  if (best) {
    out.chosen = static_cast<int>(*best);
    const Plan& c = out.plans[*best];
    for (Plan& p : out.plans)
      if (&p != &c && p.rejected.empty()) {
        std::ostringstream s;
        s.precision(4);
        s << objective_name(r.objective) << " ";
        if (r.objective == Objective::Accuracy) s << p.search.score << " vs the chosen " << c.search.score;
        else if (r.objective == Objective::Throughput) s << p.throughput << "/s vs the chosen " << c.throughput << "/s";
        else s << objective_value(r, p) << " vs the chosen " << objective_value(r, c);
        p.rejected = s.str();
      }
  } else {
    // Infeasible: which limit binds, and the nearest plan. First, an objective no plan has a figure for.
    bool any_figure = false;
    for (const Plan& p : out.plans)
      any_figure = any_figure || (r.objective == Objective::Cost ? p.cost_per_million.has_value()
                                  : r.objective == Objective::Energy ? p.energy_mj.has_value() : true);
    if (!any_figure) {
      out.infeasible = std::string("--objective ") + objective_name(r.objective) + " needs a device with " +
                       (r.objective == Objective::Cost ? "a price ([cloud] price_per_hour_usd in its catalog entry)"
                                                       : "an energy model (a catalog accelerator; the host's energy is not measured)") +
                       ": none of the devices planned has one";
      out.emulated_models = measurer.count();
      out.measure_s = search.measuring_s() + held_out.measuring_s();
      out.search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      return out;
    }
    struct Limit { std::string name; std::function<double(const Plan&)> value; double limit; };
    std::vector<Limit> limits = {{"--max-accuracy-drop", [](const Plan& p) { return p.search.drop_points; }, r.max_accuracy_drop}};
    if (r.max_latency_ms) limits.push_back({"--max-latency-ms", request_latency_ms, *r.max_latency_ms});
    if (r.min_throughput) limits.push_back({"--min-throughput", [](const Plan& p) { return -p.throughput; }, -*r.min_throughput});
    if (r.max_power_w) limits.push_back({"--max-power", [](const Plan& p) { return p.power_w > 0 ? p.power_w : INFINITY; }, *r.max_power_w});
    if (r.max_cost_per_million)
      limits.push_back({"--max-cost", [](const Plan& p) { return p.cost_per_million.value_or(INFINITY); }, *r.max_cost_per_million});
    std::string message;
    double best_move = INFINITY;
    for (size_t k = 0; k < limits.size(); ++k) {
      // Plans that meet every limit but k: the one nearest to meeting k.
      for (const Plan& p : out.plans) {
        bool others = true;
        for (size_t j = 0; j < limits.size() && others; ++j)
          if (j != k) others = limits[j].value(p) <= limits[j].limit + 1e-9;
        if (!others) continue;
        const double v = limits[k].value(p);
        const double move = (v - limits[k].limit) / std::max(1e-9, std::fabs(limits[k].limit));
        if (move < best_move) {
          best_move = move;
          std::ostringstream s;
          s.precision(4);
          const bool negated = limits[k].name == "--min-throughput";
          s << "no plan meets " << limits[k].name << " " << (negated ? -limits[k].limit : limits[k].limit)
            << " (the binding limit); the nearest: " << p.device << " batch " << p.batch << " " << p.summary << " at "
            << (negated ? -v : v) << ": " << (negated ? "lower" : "raise") << " " << limits[k].name << " to "
            << (negated ? -v : v);
          message = s.str();
        }
      }
    }
    out.infeasible = message.empty() ? "no plan meets the limits, and none meets all but one of them" : message;
  }
  out.emulated_models = measurer.count();
  out.measure_s = search.measuring_s() + held_out.measuring_s();
  out.search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

std::unique_ptr<ir::Model> annotated_model(const PlanResult& result, const Plan& plan) {
  DUET_CHECK(result.folded, "plan: the result holds no model");
  auto m = onnx_io::clone_model(*result.folded);
  for (auto& n : m->graph->nodes) {
    const auto it = plan.precision.find(n->name);
    if (it != plan.precision.end()) n->annotations[numerics::kPrecisionAnnotation] = it->second;
    else if (ops::matrix_traits(*n)) n->annotations[numerics::kPrecisionAnnotation] = "fp32";
  }
  return m;
}

std::unique_ptr<ir::Model> emulated_model(const PlanResult& result, const Plan& plan) {
  DUET_CHECK(result.folded, "plan: the result holds no model");
  return emulate_assignment(*result.folded, plan.precision);
}

Deployable deployable_model(const PlanResult& result, const Plan& plan, const PlanRequest& r,
                            const quant::SampleSource& data) {
  DUET_CHECK(result.folded, "plan: the result holds no model");
  Deployable d;
  std::set<std::string> int8;
  for (const auto& [node, p] : plan.precision)
    if (p == "int8") int8.insert(node);
  d.int8_nodes = int8.size();
  if (int8.empty()) {
    d.model = annotated_model(result, plan);
  } else {
    quant::QuantizeOptions qo;
    qo.dynamic_activations = true;
    qo.symmetric_activations = true;
    const std::unique_ptr<ir::Model> prepared = quant::prepare_for_quantization(*result.folded, qo);
    const quant::Plan nodes = quant::plan_quantization(*prepared, qo);
    for (const std::string& node : int8)
      DUET_CHECK(std::find(nodes.nodes.begin(), nodes.nodes.end(), node) != nodes.nodes.end(),
                 "plan: the QDQ form cannot quantize node '", node, "'");
    d.model = std::move(quant::quantize_model(*prepared, nodes, {}, qo, int8).model);
    for (auto& n : d.model->graph->nodes)
      if (auto it = plan.precision.find(n->name); it != plan.precision.end() && it->second != "int8")
        n->annotations[numerics::kPrecisionAnnotation] = it->second;
  }
  Split held_out(data, split_indices(data, r, 1), r.metric, *result.folded, r.threads);
  d.held_out = held_out.measure(*d.model, "fp32", r.threads).figures;
  return d;
}

}  // namespace duet::plan
