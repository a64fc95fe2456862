// Per-node emulation of a mixed plan, and the planner end to end on the bundled digits CNN (plan/planner.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "duet/core/error.h"
#include "duet/eval/metrics.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/emulate.h"
#include "duet/plan/planner.h"
#include "duet/runtime/session.h"
#include "test_util.h"

using namespace duet;

namespace {

std::string source(const std::string& rel) { return std::string(DUET_SOURCE_DIR) + "/" + rel; }

plan::PlanRequest digits_request() {
  plan::PlanRequest r;
  r.metric = eval::parse_metric("top1");
  r.devices = {"t4", "a100", "tpu-v4"};
  r.precisions = {"fp32", "bf16", "fp16", "int8"};
  r.max_accuracy_drop = 0;
  return r;
}

}  // namespace

TEST(EmulateNodes, RewritesOnlyTheNamedNodesAtTheirOwnPrecision) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  std::vector<std::string> matrix;
  for (auto& n : model->graph->nodes)
    if (n->op_type == "Conv" || n->op_type == "Gemm" || n->op_type == "MatMul") matrix.push_back(n->name);
  ASSERT_GE(matrix.size(), 2u);
  const auto report = passes::emulate_nodes(
      *model, {{matrix[0], numerics::parse_precision("int8")}, {matrix[1], numerics::parse_precision("fp32")}});
  EXPECT_EQ(report.emulated, 1);
  for (auto& n : model->graph->nodes) {
    if (n->name == matrix[0]) {
      EXPECT_EQ(n->op_type.rfind("Emulated", 0), 0u);
      EXPECT_EQ(n->annotations.at("precision"), "int8");
    } else if (n->name == matrix[1]) {
      EXPECT_EQ(n->domain, "");  // fp32: left as it is
    }
  }
  EXPECT_THROW(passes::emulate_nodes(*model, {{"no_such_node", numerics::parse_precision("int8")}}), Error);
}

TEST(Planner, PlansTheBundledDigitsCnnWithMeasuredAccuracy) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  const auto data = quant::sample_folder(source("data/samples/digits"), *model->graph);
  const plan::PlanResult r = plan::plan_model(*model, digits_request(), data);
  EXPECT_EQ(r.search_samples, 8u);
  EXPECT_EQ(r.held_out_samples, 8u);
  EXPECT_GE(r.layers.size(), 3u);
  ASSERT_GE(r.chosen, 0) << r.infeasible;
  const plan::Plan& c = r.plans[r.chosen];
  EXPECT_LE(c.search.drop_points, 0.0 + 1e-9);  // --max-accuracy-drop 0
  EXPECT_EQ(c.held_out.samples, 8u);
  EXPECT_FALSE(c.measured_latency);  // catalog devices: modelled
  // The chosen plan is the fastest feasible one, and every device had a plan.
  std::set<std::string> devices;
  for (const auto& p : r.plans) {
    devices.insert(p.device);
    if (p.feasible) EXPECT_GE(p.latency_ms, c.latency_ms);
    if (&p != &c) EXPECT_FALSE(p.rejected.empty());
  }
  EXPECT_EQ(devices, (std::set<std::string>{"t4", "a100", "tpu-v4"}));
  // The annotated model carries each matrix node's chosen precision.
  const auto annotated = plan::annotated_model(r, c);
  int annotated_nodes = 0;
  for (auto& n : annotated->graph->nodes) annotated_nodes += n->annotations.count("precision");
  EXPECT_EQ(annotated_nodes, static_cast<int>(r.layers.size()));

  // Deterministic: a second run gives the same plans.
  const plan::PlanResult again = plan::plan_model(*model, digits_request(), data);
  ASSERT_EQ(again.plans.size(), r.plans.size());
  for (size_t i = 0; i < r.plans.size(); ++i) {
    EXPECT_EQ(again.plans[i].precision, r.plans[i].precision);
    EXPECT_EQ(again.plans[i].latency_ms, r.plans[i].latency_ms);
    EXPECT_EQ(again.plans[i].held_out.score, r.plans[i].held_out.score);
  }
}

TEST(Planner, AnInfeasibleRequestNamesTheBindingLimitAndTheNearestPlan) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  const auto data = quant::sample_folder(source("data/samples/digits"), *model->graph);
  plan::PlanRequest r = digits_request();
  r.max_latency_ms = 1e-6;
  const plan::PlanResult p = plan::plan_model(*model, r, data);
  EXPECT_EQ(p.chosen, -1);
  EXPECT_NE(p.infeasible.find("--max-latency-ms"), std::string::npos) << p.infeasible;
  EXPECT_NE(p.infeasible.find("the nearest"), std::string::npos) << p.infeasible;
  EXPECT_NE(p.infeasible.find("raise --max-latency-ms to"), std::string::npos) << p.infeasible;
}

TEST(Planner, TheEmulatedPlanRunByASessionReproducesTheHeldOutAccuracy) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  const auto data = quant::sample_folder(source("data/samples/digits"), *model->graph);
  plan::PlanRequest r = digits_request();
  r.precisions = {"fp8", "int8"};  // lossy formats, so that the figure is not trivially FP32's
  r.max_accuracy_drop = 100;
  const plan::PlanResult p = plan::plan_model(*model, r, data);
  ASSERT_GE(p.chosen, 0) << p.infeasible;
  const plan::Plan& c = p.plans[p.chosen];
  ASSERT_FALSE(c.precision.empty());
  // What duet run does with plan.emulated.onnx: a session over the held-out (odd) samples.
  std::shared_ptr<ir::Model> emulated = plan::emulated_model(p, c);
  runtime::SessionOptions so;
  so.backend = "cpu";
  auto m = onnx_io::clone_model(*emulated);
  runtime::prepare_model(*m, so);
  runtime::Session session(std::shared_ptr<const ir::Model>(std::move(m)), so);
  eval::Accumulator acc(r.metric);
  for (size_t i = 1; i < data.count; i += 2) {
    std::vector<Tensor> outs;
    for (auto& nt : session.run(data.load(i))) outs.push_back(nt.tensor);
    acc.add(outs, {}, eval::reference_text(data.name(i)));
  }
  EXPECT_EQ(acc.samples(), c.held_out.samples);
  EXPECT_EQ(acc.value(), c.held_out.metric_value);
}

TEST(Planner, TheAccuracyObjectiveRefinesTheSolversPlanByMeasurementWithinTheLimit) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  const auto data = quant::sample_folder(source("data/samples/digits"), *model->graph);
  plan::PlanRequest r = digits_request();
  r.devices = {"t4"};
  r.precisions = {"fp16", "fp8", "int8"};
  r.objective = plan::Objective::Accuracy;
  r.max_accuracy_drop = 100;
  // A latency budget halfway between uniform INT8 and uniform FP16.
  const plan::PlanResult free = plan::plan_model(*model, r, data);
  double fp16_ms = 0, int8_ms = 0;
  for (const auto& p : free.plans) {
    if (p.summary == "uniform fp16") fp16_ms = p.latency_ms;
    if (p.summary == "uniform int8") int8_ms = p.latency_ms;
  }
  ASSERT_GT(fp16_ms, int8_ms);
  r.max_latency_ms = (fp16_ms + int8_ms) / 2;
  r.refine = 0;
  const plan::PlanResult solver_only = plan::plan_model(*model, r, data);
  r.refine = 16;
  const plan::PlanResult refined = plan::plan_model(*model, r, data);
  ASSERT_GE(solver_only.chosen, 0) << solver_only.infeasible;
  ASSERT_GE(refined.chosen, 0) << refined.infeasible;
  const plan::Plan& before = solver_only.plans[solver_only.chosen];
  const plan::Plan& after = refined.plans[refined.chosen];
  EXPECT_LE(after.latency_ms, *r.max_latency_ms);
  EXPECT_GE(after.search.score, before.search.score);  // measured: never worse on the samples it searched
  EXPECT_GT(refined.emulated_models, solver_only.emulated_models);

  // Any assignment is costed and measured as the planner does: uniform INT8 again.
  std::map<std::string, std::string> int8;
  for (const auto& l : refined.layers) int8[l.node] = "int8";
  std::vector<plan::Plan> again = {plan::cost_assignment(refined, r, data, "t4", 1, int8)};
  plan::measure_plans(refined, r, data, again);
  EXPECT_DOUBLE_EQ(again[0].latency_ms, int8_ms);
  for (const auto& p : free.plans)
    if (p.summary == "uniform int8") {
      EXPECT_EQ(again[0].search.score, p.search.score);
      EXPECT_EQ(again[0].held_out.score, p.held_out.score);
    }
}

TEST(Planner, TailLatencyAddsBatchFillingAndQueueing) {
  // Batch 1: no filling; M/D/1 wait rho L / (2 (1 - rho)) with rho = 0.5: L/2.
  EXPECT_NEAR(plan::tail_latency_s(500, 1, 1e-3, 99), 1e-3 + 0.5e-3, 1e-12);
  // Batch 2: the wait for one more arrival is exponential: its 99th percentile is ln(100) / rate.
  EXPECT_NEAR(plan::tail_latency_s(1000, 2, 1e-4, 99), std::log(100.0) / 1000 + 0.05 * 1e-4 / (2 * 0.95) + 1e-4, 1e-9);
  // A device slower than the arrivals never catches up.
  EXPECT_TRUE(std::isinf(plan::tail_latency_s(1000, 8, 9e-3, 99)));
  // More arrivals fill a batch sooner.
  EXPECT_LT(plan::tail_latency_s(20000, 8, 1e-4, 99), plan::tail_latency_s(10000, 8, 1e-4, 99));
}

TEST(Planner, TheDeployableQdqModelComputesWhatThePlannerEmulated) {
  auto model = onnx_io::load_model(source("data/models/digits_cnn.onnx"));
  const auto data = quant::sample_folder(source("data/samples/digits"), *model->graph);
  plan::PlanRequest r = digits_request();
  r.precisions = {"int8"};  // every layer INT8: the QDQ form carries the whole plan
  r.devices = {"t4"};
  r.max_accuracy_drop = 100;
  const plan::PlanResult p = plan::plan_model(*model, r, data);
  ASSERT_GE(p.chosen, 0) << p.infeasible;
  const plan::Plan& c = p.plans[p.chosen];
  const plan::Deployable d = plan::deployable_model(p, c, r, data);
  size_t qdq = 0, dynamic_scales = 0;
  for (auto& n : d.model->graph->nodes) {
    qdq += n->op_type == "QuantizeLinear" || n->op_type == "DequantizeLinear";
    dynamic_scales += n->op_type == "ReduceMax";
  }
  EXPECT_EQ(d.int8_nodes, p.layers.size());
  EXPECT_GT(qdq, 0u);
  EXPECT_GT(dynamic_scales, 0u);  // activation scales computed at run time, as emulated
  // Sample by sample, the QDQ model (products summed in FP32) and the emulated
  // plan (INT32 sums) agree to FP32 rounding, so the measured figures match.
  auto run = [](const ir::Model& m, const std::map<std::string, Tensor>& feeds) {
    runtime::SessionOptions so;
    so.backend = "cpu";
    auto copy = onnx_io::clone_model(m);
    runtime::prepare_model(*copy, so);
    runtime::Session session(std::shared_ptr<const ir::Model>(std::move(copy)), so);
    return session.run(feeds)[0].tensor;
  };
  const auto emulated = plan::emulated_model(p, c);
  for (size_t i = 1; i < data.count; i += 2) {
    const Tensor a = run(*d.model, data.load(i)), b = run(*emulated, data.load(i));
    ASSERT_EQ(a.numel(), b.numel());
    double d2 = 0, r2 = 0;
    for (int64_t k = 0; k < a.numel(); ++k) {
      d2 += std::pow(a.data<float>()[k] - b.data<float>()[k], 2);
      r2 += std::pow(b.data<float>()[k], 2);
    }
    EXPECT_LT(std::sqrt(d2 / r2), 1e-5) << "sample " << i;
  }
  EXPECT_EQ(d.held_out.samples, c.held_out.samples);
  EXPECT_EQ(d.held_out.score, c.held_out.score);
}
