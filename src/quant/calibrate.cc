#include "duet/quant/calibrate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>

#include "duet/core/error.h"
#include "duet/io/preprocess.h"
#include "duet/io/samples.h"
#include "duet/runtime/session.h"
#include "scheme.h"

namespace duet::quant {

namespace {

// A session over a copy of `model` whose graph outputs also include `extra`.
class Runner {
 public:
  Runner(const ir::Model& model, const std::vector<std::string>& extra, const RunOptions& run) {
    auto m = clone_model(model);
    std::set<std::string> outs;
    for (auto* v : m->graph->outputs) outs.insert(v->name);
    for (const auto& name : extra) {
      ir::Value* v = m->graph->find_value(name);
      DUET_CHECK(v, "tensor '", name, "' is not in the model");
      if (outs.insert(name).second) m->graph->outputs.push_back(v);
    }
    runtime::SessionOptions so;
    so.threads = run.threads;
    so.backend = run.backend;
    runtime::prepare_model(*m, so);
    session_ = std::make_unique<runtime::Session>(std::shared_ptr<const ir::Model>(std::move(m)), so);
  }
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds) {
    std::map<std::string, Tensor> out;
    for (auto& nt : session_->run(feeds)) out[nt.name] = std::move(nt.tensor);
    return out;
  }
  std::vector<runtime::NamedTensor> run_ordered(const std::map<std::string, Tensor>& feeds) { return session_->run(feeds); }

 private:
  std::unique_ptr<runtime::Session> session_;
};

std::string sample_label(const SampleSource& data, size_t i) {
  return data.name ? data.name(i) : "sample " + std::to_string(i);
}

double to_db(double signal, double noise) {
  if (noise <= 0) return std::numeric_limits<double>::infinity();
  if (signal <= 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace

std::map<std::string, Observer> calibrate(const ir::Model& prepared, const std::vector<std::string>& tensors,
                                          const SampleSource& data, const RunOptions& run) {
  DUET_CHECK(data.count > 0, "calibration needs at least one sample");
  Runner runner(prepared, tensors, run);
  std::map<std::string, Observer> observers;
  for (const auto& t : tensors) observers[t];
  for (const auto& n : prepared.graph->nodes) {
    if (n->op_type != "Softmax" || !n->domain.empty() || n->outputs.empty() || !n->outputs[0]) continue;
    auto it = observers.find(n->outputs[0]->name);
    if (it != observers.end()) it->second.set_known_range({0.0f, 1.0f});
  }
  for (size_t i = 0; i < data.count; ++i) {
    const std::string label = sample_label(data, i);
    std::map<std::string, Tensor> outputs;
    try {
      outputs = runner.run(data.load(i));
    } catch (const Error& e) {
      fail(label, ": ", e.what());
    }
    for (auto& [name, obs] : observers) {
      const Tensor& t = outputs.at(name);
      if (t.dtype() != DType::Float32) continue;
      obs.observe(t, "tensor '" + name + "' on " + label);
    }
    if (run.progress) run.progress(i + 1, data.count);
  }
  return observers;
}

std::map<std::string, std::vector<float>> channel_statistics(const ir::Model& prepared, const std::map<std::string, int>& tensors,
                                                             const SampleSource& data, const RunOptions& run, ChannelStat stat) {
  std::vector<std::string> names;
  for (auto& [name, _] : tensors) names.push_back(name);
  Runner runner(prepared, names, run);
  std::map<std::string, std::vector<float>> amax;
  std::map<std::string, std::vector<double>> sums;
  std::map<std::string, double> per_channel_count;
  for (size_t i = 0; i < data.count; ++i) {
    const auto outputs = runner.run(data.load(i));
    for (auto& [name, axis] : tensors) {
      const Tensor& t = outputs.at(name);
      if (t.dtype() != DType::Float32 || axis >= static_cast<int>(t.rank())) continue;
      const int64_t channels = t.dim(axis);
      int64_t inner = 1;
      for (size_t k = axis + 1; k < t.rank(); ++k) inner *= t.dim(static_cast<int>(k));
      auto& m = amax[name];
      m.resize(channels, 0.0f);
      auto& sum = sums[name];
      sum.resize(channels, 0.0);
      per_channel_count[name] += static_cast<double>(t.numel() / channels);
      const float* x = t.data<float>();
      for (int64_t e = 0; e < t.numel(); ++e) {
        const int64_t c = (e / inner) % channels;
        m[c] = std::max(m[c], std::fabs(x[e]));
        sum[c] += stat == ChannelStat::Mean ? x[e] : std::fabs(x[e]);
      }
    }
    if (run.progress) run.progress(i + 1, data.count);
  }
  if (stat != ChannelStat::Max)
    for (auto& [name, m] : amax)
      for (size_t c = 0; c < m.size(); ++c) m[c] = static_cast<float>(sums[name][c] / per_channel_count[name]);
  return amax;
}

std::map<std::string, std::vector<double>> input_gram(const ir::Model& prepared, const std::map<std::string, int64_t>& tensors,
                                                      const SampleSource& data, const RunOptions& run) {
  std::vector<std::string> names;
  for (auto& [name, _] : tensors) names.push_back(name);
  Runner runner(prepared, names, run);
  std::map<std::string, std::vector<double>> grams;
  for (auto& [name, k] : tensors) grams[name].assign(static_cast<size_t>(k * k), 0.0);
  for (size_t s = 0; s < data.count; ++s) {
    const auto outputs = runner.run(data.load(s));
    for (auto& [name, k] : tensors) {
      const Tensor& t = outputs.at(name);
      DUET_CHECK(t.dtype() == DType::Float32 && t.rank() >= 1 && t.dim(-1) == k, "GPTQ: tensor '", name, "' is ",
                 t.describe(), ", expected float rows of ", k);
      std::vector<double>& g = grams[name];
      const float* x = t.data<float>();
      for (int64_t row = 0; row < t.numel() / k; ++row) {
        const float* v = x + row * k;
        for (int64_t i = 0; i < k; ++i) {
          const double vi = v[i];
          if (vi == 0) continue;
          double* gi = g.data() + i * k;
          for (int64_t j = 0; j <= i; ++j) gi[j] += vi * v[j];
        }
      }
    }
    if (run.progress) run.progress(s + 1, data.count);
  }
  for (auto& [name, k] : tensors) {  // the upper triangle from the lower
    std::vector<double>& g = grams[name];
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i + 1; j < k; ++j) g[i * k + j] = g[j * k + i];
  }
  return grams;
}

std::map<std::string, Range> choose_ranges(const std::map<std::string, Observer>& observers, const QuantizeOptions& o) {
  RangeOptions ro = o.calibration;
  // FP8 and symmetric INT8 ranges are symmetric about 0: signed level counts.
  if (o.symmetric_activations || scheme::fp8_activations(o.precision)) ro.levels_unsigned = ro.levels_signed;
  std::map<std::string, Range> ranges;
  for (const auto& [name, obs] : observers) ranges[name] = obs.range(ro);
  return ranges;
}

std::map<std::string, Range> choose_ranges_by_error(const ir::Model& prepared, const Plan& plan,
                                                    const std::map<std::string, Observer>& observers,
                                                    const QuantizeOptions& options, const Evaluator& eval,
                                                    std::map<std::string, std::string>* chosen,
                                                    const std::function<void(size_t, size_t)>& progress) {
  // The walk starts from the default (percentile) ranges and keeps a tensor's start unless another measures better.
  const std::vector<Method> methods = {Method::Percentile, Method::Mse, Method::Entropy, Method::MinMax};
  std::map<Method, std::map<std::string, Range>> candidates;
  for (Method m : methods) {
    QuantizeOptions o = options;
    o.calibration.method = m;
    candidates[m] = choose_ranges(observers, o);
  }
  // Readers of each tensor among the planned nodes.
  std::map<std::string, std::set<std::string>> readers;
  const std::set<std::string> planned(plan.nodes.begin(), plan.nodes.end());
  for (auto& n : prepared.graph->nodes)
    if (planned.count(n->name))
      for (auto* in : n->inputs)
        if (in) readers[in->name].insert(n->name);
  std::map<std::string, Range> best = candidates[methods[0]];
  size_t done = 0;
  for (const auto& tensor : plan.activations) {
    double best_error = std::numeric_limits<double>::infinity();
    std::vector<Range> tried;
    for (Method m : methods) {
      const Range r = candidates[m].at(tensor);
      bool seen = false;
      for (auto& t : tried) seen |= t.lo == r.lo && t.hi == r.hi;
      if (seen) continue;
      tried.push_back(r);
      std::map<std::string, Range> ranges = best;
      ranges[tensor] = r;
      const double e = eval.compare(*quantize_model(prepared, plan, ranges, options, readers[tensor]).model).error;
      if (e < best_error) {
        best_error = e;
        best[tensor] = r;
        if (chosen) (*chosen)[tensor] = method_name(m);
      }
    }
    if (progress) progress(++done, plan.activations.size());
  }
  return best;
}

Evaluator::Evaluator(const ir::Model& fp32, const SampleSource& data, size_t max_samples, RunOptions run, Metric metric,
                     eval::TaskMetric task)
    : run_(std::move(run)), metric_(metric), task_(std::move(task)) {
  const size_t n = std::min(max_samples, data.count);
  DUET_CHECK(n > 0, "evaluation needs at least one sample");
  Runner runner(fp32, {}, run_);
  for (auto* v : fp32.graph->outputs) output_names_.push_back(v->name);
  eval::Accumulator acc(task_);
  for (size_t i = 0; i < n; ++i) {
    feeds_.push_back(data.load(i));
    texts_.push_back(task_.needs_references() ? eval::reference_text(data.name(i)) : "");
    std::vector<Tensor> outs;
    for (auto& nt : runner.run_ordered(feeds_.back())) outs.push_back(nt.tensor);
    acc.add(outs, outs, texts_.back());
    reference_.push_back(std::move(outs));
  }
  fp32_value_ = acc.value();
  fp32_score_ = acc.score();
}

Comparison Evaluator::compare(const ir::Model& candidate) const {
  Runner runner(candidate, {}, run_);
  const size_t nout = output_names_.size();
  Comparison c;
  c.outputs.resize(nout);
  std::vector<double> signal(nout, 0), noise(nout, 0);
  std::vector<int64_t> agree(nout, 0);
  eval::Accumulator task(task_);
  for (size_t s = 0; s < feeds_.size(); ++s) {
    std::vector<Tensor> outs;
    for (auto& nt : runner.run_ordered(feeds_[s])) outs.push_back(nt.tensor);
    task.add(outs, reference_[s], texts_[s]);
    for (size_t k = 0; k < nout; ++k) {
      const Tensor& ref = reference_[s][k];
      const Tensor& got = outs.at(k);
      OutputComparison& oc = c.outputs[k];
      oc.name = output_names_[k];
      if (ref.dtype() != DType::Float32 || got.dtype() != DType::Float32 || ref.numel() != got.numel()) continue;
      const float *y = ref.data<float>(), *q = got.data<float>();
      double ss = 0, nn = 0;
      for (int64_t i = 0; i < ref.numel(); ++i) {
        const double d = static_cast<double>(q[i]) - y[i];
        ss += static_cast<double>(y[i]) * y[i];
        nn += d * d;
        oc.max_abs = std::max(oc.max_abs, std::fabs(d));
      }
      signal[k] += ss;
      noise[k] += nn;
      oc.rel_l2 += (ss > 0 ? std::sqrt(nn / ss) : std::sqrt(nn)) / static_cast<double>(feeds_.size());
      if (ref.rank() >= 1 && ref.dim(-1) > 1) {
        const int64_t w = ref.dim(-1), rows = ref.numel() / w;
        for (int64_t r = 0; r < rows; ++r) {
          const float* a = y + r * w;
          const float* b = q + r * w;
          agree[k] += std::max_element(a, a + w) - a == std::max_element(b, b + w) - b;
        }
        oc.rows += rows;
      }
    }
  }
  for (size_t k = 0; k < nout; ++k) {
    OutputComparison& oc = c.outputs[k];
    oc.sqnr_db = to_db(signal[k], noise[k]);
    oc.argmax_agree = oc.rows ? static_cast<double>(agree[k]) / static_cast<double>(oc.rows) : 1.0;
    c.rel_l2 += oc.rel_l2 / static_cast<double>(nout);
  }
  int64_t rows = 0, changed = 0;
  for (auto& oc : c.outputs) rows += oc.rows, changed += oc.rows - std::llround(oc.argmax_agree * oc.rows);
  c.argmax_changed = rows ? static_cast<double>(changed) / static_cast<double>(rows) : 0.0;
  c.task_value = task.value();
  c.task_drop_points = 100 * (fp32_score_ - task.score());
  c.error = metric_ == Metric::Argmax ? c.argmax_changed + 1e-3 * c.rel_l2
            : metric_ == Metric::Task ? c.task_drop_points + 1e-3 * c.rel_l2
                                      : c.rel_l2;
  return c;
}

std::vector<Evaluator::TensorSqnr> Evaluator::tensor_sqnr(const ir::Model& prepared, const QuantizedModel& quantized,
                                                          const std::map<std::string, Range>& ranges,
                                                          const QuantizeOptions& options) const {
  std::vector<std::string> names, qnames;
  for (const auto& [tensor, dq] : quantized.dequantized) {
    if (!ranges.count(tensor)) continue;
    names.push_back(tensor);
    qnames.push_back(dq);
  }
  Runner fp32(prepared, names, run_), quant(*quantized.model, qnames, run_);
  std::vector<double> sig(names.size()), iso(names.size()), acc(names.size());
  for (const auto& feeds : feeds_) {
    auto a = fp32.run(feeds);
    auto b = quant.run(feeds);
    for (size_t k = 0; k < names.size(); ++k) {
      const Tensor& x = a.at(names[k]);
      const Tensor& y = b.at(qnames[k]);
      if (x.dtype() != DType::Float32 || y.numel() != x.numel()) continue;
      const Range r = ranges.at(names[k]);
      // The tensor's own fake quantization with its range (UINT8/INT8 grid;
      // FP8 tensors are measured by the accumulated figure only).
      const ActivationGrid q = activation_grid(r, options.symmetric_activations);
      const float* xv = x.data<float>();
      const float* yv = y.data<float>();
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float fq = (std::clamp(std::nearbyint(xv[i] / q.scale) + q.zero_point, q.qmin, q.qmax) - q.zero_point) * q.scale;
        sig[k] += static_cast<double>(xv[i]) * xv[i];
        iso[k] += (static_cast<double>(fq) - xv[i]) * (static_cast<double>(fq) - xv[i]);
        acc[k] += (static_cast<double>(yv[i]) - xv[i]) * (static_cast<double>(yv[i]) - xv[i]);
      }
    }
  }
  std::vector<TensorSqnr> out;
  for (size_t k = 0; k < names.size(); ++k) out.push_back({names[k], to_db(sig[k], iso[k]), to_db(sig[k], acc[k])});
  return out;
}

std::vector<std::pair<std::string, double>> sensitivity(const ir::Model& prepared, const Plan& plan,
                                                        const std::map<std::string, Range>& ranges,
                                                        const QuantizeOptions& options, const Evaluator& eval,
                                                        const std::function<void(size_t, size_t)>& progress) {
  std::vector<std::pair<std::string, double>> ranking;
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const auto q = quantize_model(prepared, plan, ranges, options, {plan.nodes[i]});
    ranking.emplace_back(plan.nodes[i], eval.compare(*q.model).error);
    if (progress) progress(i + 1, plan.nodes.size());
  }
  std::stable_sort(ranking.begin(), ranking.end(), [](auto& a, auto& b) { return a.second > b.second; });
  return ranking;
}

std::set<std::string> choose_float_nodes(const ir::Model& prepared, const Plan& plan, const std::map<std::string, Range>& ranges,
                                         const QuantizeOptions& options, const Evaluator& eval,
                                         const std::vector<std::pair<std::string, double>>& ranking, double budget,
                                         double* error_out, std::vector<std::pair<size_t, double>>* trace) {
  std::map<size_t, double> measured;
  auto keep = [&](size_t k) {
    std::set<std::string> s;
    for (size_t i = 0; i < k && i < ranking.size(); ++i) s.insert(ranking[i].first);
    return s;
  };
  auto error_with = [&](size_t k) {
    auto it = measured.find(k);
    if (it != measured.end()) return it->second;
    const double e = eval.compare(*quantize_model(prepared, plan, ranges, options, {}, keep(k)).model).error;
    measured[k] = e;
    if (trace) trace->emplace_back(k, e);
    return e;
  };
  // Smallest prefix length k with error(k) <= budget: exponential then binary search.
  size_t lo = 0, hi = 1;
  if (error_with(0) <= budget) {
    hi = 0;
  } else {
    while (hi < ranking.size() && error_with(hi) > budget) lo = hi, hi = std::min(ranking.size(), hi * 2);
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      (error_with(mid) <= budget ? hi : lo) = mid;
    }
  }
  if (error_out) *error_out = error_with(hi);
  return keep(hi);
}

SampleSource sample_folder(const std::string& dir, const ir::Graph& graph, const std::string& preprocess) {
  std::optional<io::Preprocess> pre;
  if (!preprocess.empty()) pre = io::Preprocess::parse(preprocess);
  auto folder = std::make_shared<io::SampleFolder>(dir, graph, pre);
  SampleSource s;
  s.count = folder->size();
  s.name = [folder](size_t i) { return folder->sample_path(i); };
  s.load = [folder](size_t i) { return folder->load(i); };
  return s;
}

}  // namespace duet::quant
