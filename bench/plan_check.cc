// The planner's acceptance check (issue 16): at a modelled latency budget
// halfway between uniform low precision (INT8) and uniform 16-bit on one
// catalog device, is the planned mixed model at least as accurate (measured,
// held-out samples) as uniform INT8 and as the best of N random per-layer
// assignments that meet the same budget?
//
//   plan_check MODEL DATA METRIC DEVICE [--high fp16] [--low int8] [--samples 16] [--held-out N] [--random 20] [--seed 1] [--threads 1] [--refine 16]
//
// Latency is modelled (the simulator, catalog device); accuracy is measured by
// bit-exact emulation on this CPU. Prints one line per contender and a verdict.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/plan/planner.h"

using namespace duet;

int main(int argc, char** argv) try {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL DATA METRIC DEVICE [--high P] [--low P] [--samples N] [--held-out N] [--random N] [--seed S] [--threads N] [--refine N]\n", argv[0]);
    return 2;
  }
  std::string high = "fp16", low = "int8";
  size_t samples = 16, held_out = 0, randoms = 20, refine = 16;
  int threads = 1;
  unsigned seed = 1;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--high")) high = argv[i + 1];
    else if (!std::strcmp(argv[i], "--low")) low = argv[i + 1];
    else if (!std::strcmp(argv[i], "--samples")) samples = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--held-out")) held_out = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--random")) randoms = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--refine")) refine = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = static_cast<unsigned>(std::stoul(argv[i + 1]));
    else fail("unknown option ", argv[i]);
  }
  auto model = onnx_io::load_model(argv[1]);
  const quant::SampleSource data = quant::sample_folder(argv[2], *model->graph);
  plan::PlanRequest r;
  r.metric = eval::parse_metric(argv[3]);
  r.devices = {argv[4]};
  r.precisions = {high, low};
  r.max_samples = samples;
  r.max_held_out = held_out;
  r.threads = threads;
  r.refine = refine;
  r.objective = plan::Objective::Accuracy;
  r.max_accuracy_drop = 100;
  r.progress = [](const std::string& stage, size_t done, size_t total) {
    if (done == total) std::fprintf(stderr, "plan_check: %s done (%zu)\n", stage.c_str(), total);
  };

  // Uniform figures first (a plan without a latency limit lists them), then the budget halfway.
  r.refine = 0;  // the unlimited plan is only read for the uniform figures
  const plan::PlanResult free = plan::plan_model(*model, r, data);
  r.refine = refine;
  const plan::Plan *uniform_high = nullptr, *uniform_low = nullptr;
  for (const auto& p : free.plans) {
    if (p.summary == "uniform " + numerics::parse_precision(high).str()) uniform_high = &p;
    if (p.summary == "uniform " + numerics::parse_precision(low).str()) uniform_low = &p;
  }
  DUET_CHECK(uniform_high && uniform_low, "the device does not take both ", high, " and ", low, " on every layer");
  const double budget = (uniform_high->latency_ms + uniform_low->latency_ms) / 2;
  r.max_latency_ms = budget;
  r.measured_layers = free.layers;  // the same samples: the sensitivity measured once
  const plan::PlanResult planned = plan::plan_model(*model, r, data);
  DUET_CHECK(planned.chosen >= 0, planned.infeasible);
  const plan::Plan& chosen = planned.plans[planned.chosen];

  const bool lower_better = r.metric.lower_is_better();
  auto better_or_equal = [&](double a, double b) { return lower_better ? a <= b + 1e-12 : a >= b - 1e-12; };
  std::printf("model %s, device %s, metric %s (%s), %zu held-out samples; latency modelled, accuracy measured\n", argv[1],
              argv[4], r.metric.name().c_str(), lower_better ? "lower is better" : "higher is better",
              planned.held_out_samples);
  std::printf("FP32                       %s %.5f\n", r.metric.name().c_str(), planned.fp32_held_out.metric_value);
  std::printf("uniform %-6s  %9.5f ms  %s %.5f\n", high.c_str(), uniform_high->latency_ms, r.metric.name().c_str(),
              uniform_high->held_out.metric_value);
  std::printf("uniform %-6s  %9.5f ms  %s %.5f\n", low.c_str(), uniform_low->latency_ms, r.metric.name().c_str(),
              uniform_low->held_out.metric_value);
  std::printf("budget          %9.5f ms (halfway)\n", budget);
  std::printf("planned         %9.5f ms  %s %.5f  (%s)\n", chosen.latency_ms, r.metric.name().c_str(),
              chosen.held_out.metric_value, chosen.summary.c_str());

  // Random assignments within the budget: each layer low with a probability drawn
  // per assignment. The best of them is chosen as the plan is — on the search
  // samples — and compared on the held-out ones; the best held-out figure among
  // them (an oracle: chosen on the data it is scored on) is printed beside it.
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<plan::Plan> random;
  size_t drawn = 0;
  while (random.size() < randoms && drawn < 200 * randoms) {
    ++drawn;
    const double q = u(rng);
    std::map<std::string, std::string> a;
    for (const auto& l : planned.layers) a[l.node] = u(rng) < q ? low : high;
    plan::Plan p = plan::cost_assignment(planned, r, data, argv[4], 1, a);
    if (p.latency_ms <= budget) random.push_back(std::move(p));
  }
  std::fprintf(stderr, "plan_check: measuring %zu random assignments\n", random.size());
  plan::measure_plans(planned, r, data, random);
  const plan::Plan* picked = nullptr;
  double oracle = lower_better ? 1e300 : -1e300;
  for (size_t i = 0; i < random.size(); ++i) {
    const plan::Plan& p = random[i];
    std::printf("random %2zu       %9.5f ms  %s search %.5f held-out %.5f  (%s)\n", i + 1, p.latency_ms,
                r.metric.name().c_str(), p.search.metric_value, p.held_out.metric_value, p.summary.c_str());
    if (!picked || p.search.score > picked->search.score) picked = &p;
    if (better_or_equal(p.held_out.metric_value, oracle)) oracle = p.held_out.metric_value;
  }
  const bool beats_low = better_or_equal(chosen.held_out.metric_value, uniform_low->held_out.metric_value);
  const bool beats_random = !picked || better_or_equal(chosen.held_out.metric_value, picked->held_out.metric_value);
  const bool beats_oracle = !picked || better_or_equal(chosen.held_out.metric_value, oracle);
  std::printf("planned on search samples: %s %.5f\n", r.metric.name().c_str(), chosen.search.metric_value);
  if (picked)
    std::printf("best of %zu random (of %zu drawn), chosen on the search samples: search %.5f, held-out %.5f\n",
                random.size(), drawn, picked->search.metric_value, picked->held_out.metric_value);
  std::printf("best held-out figure among the random ones (oracle, chosen on the held-out samples): %.5f\n", oracle);
  std::printf("verdict: planned %s uniform %s (%s), %s the best random (%s); %s the oracle\n",
              beats_low ? ">=" : "WORSE THAN", low.c_str(), beats_low ? "ok" : "fail",
              beats_random ? ">=" : "WORSE THAN", beats_random ? "ok" : "fail", beats_oracle ? ">=" : "below");
  return beats_low && beats_random ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "plan_check: error: %s\n", e.what());
  return 1;
}
