// Post-training quantization: observers, the opset upgrade, the QDQ rewrite,
// and `duet quantize` end to end (on the bundled classifier).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "duet/onnx/onnx_io.h"
#include "duet/passes/shape_inference.h"
#include "duet/passes/upgrade_opset.h"
#include "duet/quant/calibrate.h"
#include "duet/quant/gptq.h"
#include "duet/quant/observer.h"
#include "duet/quant/ptq.h"
#include "duet/quant/quantize.h"
#include "duet/runtime/session.h"
#include "duet/train/graph_builder.h"
#include "test_util.h"

using namespace duet;
using namespace duet::testutil;
namespace fs = std::filesystem;

namespace {

std::vector<float> gaussian(size_t n, double sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, static_cast<float>(sigma));
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

quant::Range range_of(const quant::Observer& o, quant::Method m) {
  quant::RangeOptions ro;
  ro.method = m;
  return o.range(ro);
}

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("duet_quant_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::vector<float> run_once(const ir::Model& m, const std::map<std::string, Tensor>& feeds) {
  auto copy = quant::clone_model(m);
  runtime::Session s(std::shared_ptr<const ir::Model>(std::move(copy)));
  auto out = s.run(feeds);
  const Tensor& t = out.at(0).tensor;
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// A model of this opset with one float32 graph input "x".
ir::Model model_with_input(int64_t opset, Dims dims) {
  ir::Model m;
  m.opset_imports.push_back({"", opset});
  ir::Value* x = m.graph->value("x");
  x->type.dtype = DType::Float32;
  x->type.shape = Shape::from(dims);
  m.graph->inputs.push_back(x);
  return m;
}

}  // namespace

TEST(Observer, MinMaxIsExactAndHistogramsKeepEveryValueWhenTheyWiden) {
  quant::Observer o;
  // Each batch is wider than the last: the histogram doubles its range, merging bins.
  size_t total = 0;
  for (int b = 0; b < 6; ++b) {
    auto v = gaussian(1000, std::pow(3.0, b), b);
    o.observe(v.data(), static_cast<int64_t>(v.size()));
    total += v.size();
  }
  double mass = 0;
  for (double h : o.magnitude_histogram()) mass += h;
  EXPECT_EQ(mass, static_cast<double>(total));
  EXPECT_EQ(o.count(), static_cast<int64_t>(total));
  const auto r = range_of(o, quant::Method::MinMax);
  EXPECT_EQ(r.lo, o.min());
  EXPECT_EQ(r.hi, o.max());
  EXPECT_GE(o.histogram_range(), std::max(-o.min(), o.max()));
}

TEST(Observer, EntropyClipsRareOutliersButNotTheBulk) {
  // A Gaussian (sigma 1) with a few far outliers: KL keeps several sigmas and
  // drops the outliers; min-max keeps everything.
  auto v = gaussian(200000, 1.0, 7);
  for (int i = 0; i < 20; ++i) v[i] = 40.0f;
  quant::Observer o;
  o.observe(v.data(), static_cast<int64_t>(v.size()));
  const auto kl = range_of(o, quant::Method::Entropy);
  EXPECT_GT(kl.hi, 2.5f);
  EXPECT_LT(kl.hi, 15.0f);
  EXPECT_EQ(range_of(o, quant::Method::MinMax).hi, 40.0f);
  // Uniform data: nothing to gain by clipping.
  std::vector<float> u(100000);
  for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(i) / u.size();
  quant::Observer ou;
  ou.observe(u.data(), static_cast<int64_t>(u.size()));
  EXPECT_GT(range_of(ou, quant::Method::Entropy).hi, 0.9f);
  EXPECT_EQ(range_of(ou, quant::Method::Entropy).lo, 0.0f);
}

TEST(Observer, PercentileAndMseAndStreamingAgreeWithOneBatch) {
  std::vector<float> u(100000);
  for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(i) / u.size();
  quant::Observer one, many;
  one.observe(u.data(), static_cast<int64_t>(u.size()));
  for (size_t i = 0; i < u.size(); i += 5000) many.observe(u.data() + i, 5000);
  quant::RangeOptions p;
  p.method = quant::Method::Percentile;
  p.percentile = 99.0;
  EXPECT_NEAR(one.range(p).hi, 0.99f, 0.002f);
  EXPECT_NEAR(many.range(p).hi, 0.99f, 0.002f);
  // Uniform data: the MSE optimum keeps (nearly) the whole range.
  EXPECT_GT(range_of(one, quant::Method::Mse).hi, 0.95f);
  EXPECT_EQ(range_of(many, quant::Method::MinMax).hi, range_of(one, quant::Method::MinMax).hi);
  // Fewer values per batch than min_values_per_sample: separate features, min-max kept.
  quant::Observer small;
  for (size_t i = 0; i < u.size(); i += 100) small.observe(u.data() + i, 100);
  EXPECT_EQ(small.range(p).hi, small.max());
}

TEST(Observer, NanAndInfAreErrorsNamingTheTensor) {
  quant::Observer o;
  std::vector<float> v = {1.0f, NAN};
  try {
    o.observe(v.data(), 2, "tensor 'conv1' on sample 3");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN in tensor 'conv1' on sample 3"), std::string::npos) << e.what();
  }
  v[1] = INFINITY;
  EXPECT_THROW(o.observe(v.data(), 2), Error);
}

TEST(UpgradeOpset, OldClipSoftmaxSqueezeAndSliceComputeTheSameAtOpset13) {
  ir::Model m = model_with_input(9, {1, 2, 3, 4});
  auto& g = *m.graph;
  ir::Value* x = g.inputs[0];
  auto attr_f = [](const char* n, float v) { ir::Attribute a; a.name = n; a.type = ir::AttrType::Float; a.f = v; return a; };
  auto attr_i = [](const char* n, int64_t v) { ir::Attribute a; a.name = n; a.type = ir::AttrType::Int; a.i = v; return a; };
  auto attr_is = [](const char* n, std::vector<int64_t> v) { ir::Attribute a; a.name = n; a.type = ir::AttrType::Ints; a.ints = v; return a; };
  g.add_node("Clip", {x}, {g.value("c")}, "clip")->attributes = {attr_f("min", -0.5f), attr_f("max", 0.7f)};
  g.add_node("Softmax", {g.value("c")}, {g.value("s")}, "softmax")->attributes = {attr_i("axis", 1)};  // flattens 2x3x4
  g.add_node("Slice", {g.value("s")}, {g.value("sl")}, "slice")->attributes = {attr_is("starts", {1}), attr_is("ends", {3}), attr_is("axes", {3})};
  g.add_node("Squeeze", {g.value("sl")}, {g.value("y")}, "squeeze")->attributes = {attr_is("axes", {0})};
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  std::map<std::string, Tensor> feeds;
  Tensor t(DType::Float32, {1, 2, 3, 4});
  for (int i = 0; i < 24; ++i) t.data<float>()[i] = std::sin(i * 0.7f) * 2;
  feeds["x"] = t;
  const auto before = run_once(m, feeds);
  auto up = quant::clone_model(m);
  EXPECT_EQ(passes::upgrade_opset(*up, 13), 4);
  EXPECT_EQ(up->opset(""), 13);
  for (auto& n : up->graph->nodes) EXPECT_TRUE(n->attributes.empty() || n->op_type == "Softmax" || n->op_type == "Flatten") << n->op_type;
  const auto after = run_once(*up, feeds);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(before[i], after[i], 1e-7) << i;
}

TEST(UpgradeOpset, PaddleOcrModelsComputeTheSameAfterUpgrade) {
  DUET_REQUIRE_SHARED();
  for (const char* name : {"ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"}) {
    const std::string dir = shared_dir() + "/models/paddleocr/";
    auto m = onnx_io::load_model(dir + name);
    const std::string kind = std::string(name).find("cls") != std::string::npos ? "cls" : "rec";
    std::map<std::string, Tensor> feeds = {{m->graph->inputs[0]->name, onnx_io::load_tensor_pb(dir + "testdata/" + kind + "/test_data_set_0/input_0.pb")}};
    const auto before = run_once(*m, feeds);
    auto up = quant::clone_model(*m);
    passes::upgrade_opset(*up, 21);
    const auto after = run_once(*up, feeds);
    ASSERT_EQ(before.size(), after.size()) << name;
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i], after[i]) << name << " element " << i;
  }
}

TEST(UpgradeOpset, RefusesLegacyBroadcastOpsets) {
  ir::Model m;
  m.opset_imports.push_back({"", 6});
  EXPECT_THROW(passes::upgrade_opset(m, 13), Unsupported);
}

namespace {

// x[1,3,8,8] -> Conv(4 out, 3x3, bias) -> Relu -> y
ir::Model conv_model() {
  ir::Model m = model_with_input(13, {1, 3, 8, 8});
  auto& g = *m.graph;
  ir::Value* x = g.inputs[0];
  Tensor w(DType::Float32, {4, 3, 3, 3});
  for (int i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::cos(i * 1.3f) * (1 + i / 27);  // channel c scaled by ~c+1
  Tensor b = Tensor::from_vector<float>({0.1f, -0.2f, 0.3f, 0.0f}, {4});
  g.initializers["w"] = w;
  g.initializers["b"] = b;
  g.value("w")->type.dtype = DType::Float32;
  g.value("b")->type.dtype = DType::Float32;
  ir::Attribute pads;
  pads.name = "pads";
  pads.type = ir::AttrType::Ints;
  pads.ints = {1, 1, 1, 1};
  g.add_node("Conv", {x, g.value("w"), g.value("b")}, {g.value("c")}, "conv")->attributes = {pads};
  g.add_node("Relu", {g.value("c")}, {g.value("y")}, "relu");
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  return m;
}

quant::SampleSource random_samples(size_t n) {
  quant::SampleSource s;
  s.count = n;
  s.load = [](size_t i) {
    Tensor t(DType::Float32, {1, 3, 8, 8});
    std::mt19937 rng(static_cast<uint32_t>(i));
    std::uniform_real_distribution<float> d(-1, 1);
    for (int k = 0; k < t.numel(); ++k) t.data<float>()[k] = d(rng);
    return std::map<std::string, Tensor>{{"x", t}};
  };
  return s;
}

quant::RunOptions reference_run() {
  quant::RunOptions run;
  run.backend = "reference";
  return run;
}

std::map<std::string, quant::Range> calibrated_ranges(const ir::Model& prepared, const quant::Plan& plan,
                                                      const quant::SampleSource& data, const quant::QuantizeOptions& o) {
  return quant::choose_ranges(quant::calibrate(prepared, plan.activations, data, reference_run()), o);
}

}  // namespace

TEST(Quantize, ConvGetsQdqPairsPerChannelInt8WeightsAndInt32Bias) {
  const ir::Model m = conv_model();
  quant::QuantizeOptions o;
  o.calibration.method = quant::Method::MinMax;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  ASSERT_EQ(plan.nodes, std::vector<std::string>{"conv"});
  EXPECT_EQ(plan.activations, std::vector<std::string>{"x"});  // the output feeds a float Relu: not quantized
  const auto ranges = calibrated_ranges(*prepared, plan, random_samples(8), o);
  EXPECT_LT(ranges.at("x").lo, -0.9f);
  EXPECT_GT(ranges.at("x").hi, 0.9f);
  const auto q = quant::quantize_model(*prepared, plan, ranges, o);
  const ir::Graph& g = *q.model->graph;
  int quantize = 0, dequantize = 0;
  const ir::Node* conv = nullptr;
  for (auto& n : g.nodes) {
    quantize += n->op_type == "QuantizeLinear";
    dequantize += n->op_type == "DequantizeLinear";
    if (n->op_type == "Conv") conv = n.get();
  }
  EXPECT_EQ(quantize, 1);    // x
  EXPECT_EQ(dequantize, 3);  // x, the weight, the bias
  ASSERT_TRUE(conv);
  const ir::Node* wdq = conv->inputs[1]->producer;
  ASSERT_EQ(wdq->op_type, "DequantizeLinear");
  const Tensor& wq = g.initializers.at(wdq->inputs[0]->name);
  const Tensor& ws = g.initializers.at(wdq->inputs[1]->name);
  EXPECT_EQ(wq.dtype(), DType::Int8);
  EXPECT_EQ(ws.numel(), 4);  // one scale per output channel
  EXPECT_EQ(wdq->attr_int("axis", -1), 0);
  int max_q = 0;
  for (int i = 0; i < wq.numel(); ++i) max_q = std::max(max_q, std::abs(static_cast<int>(wq.data<int8_t>()[i])));
  EXPECT_EQ(max_q, 127);
  const ir::Node* bdq = conv->inputs[2]->producer;
  ASSERT_EQ(bdq->op_type, "DequantizeLinear");
  const Tensor& bq = g.initializers.at(bdq->inputs[0]->name);
  const Tensor& bs = g.initializers.at(bdq->inputs[1]->name);
  EXPECT_EQ(bq.dtype(), DType::Int32);
  const float sx = g.initializers.at(conv->inputs[0]->producer->inputs[1]->name).data<float>()[0];
  for (int c = 0; c < 4; ++c) EXPECT_FLOAT_EQ(bs.data<float>()[c], sx * ws.data<float>()[c]);
  EXPECT_EQ(q.model->opset(""), 13);
  // Within a few quantization steps of FP32.
  const auto feeds = random_samples(1).load(0);
  const auto ref = run_once(m, feeds), got = run_once(*q.model, feeds);
  double err = 0, sig = 0;
  for (size_t i = 0; i < ref.size(); ++i) err += (ref[i] - got[i]) * (ref[i] - got[i]), sig += ref[i] * ref[i];
  EXPECT_LT(std::sqrt(err / sig), 0.02);
}

TEST(Quantize, Int4WeightOnlyBlocksMatMulWeights) {
  ir::Model m = model_with_input(13, {2, 64});
  auto& g = *m.graph;
  ir::Value* x = g.inputs[0];
  Tensor w(DType::Float32, {64, 16});
  for (int i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::sin(i * 0.37f);
  g.initializers["w"] = w;
  g.value("w")->type.dtype = DType::Float32;
  g.add_node("MatMul", {x, g.value("w")}, {g.value("y")}, "mm");
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  quant::QuantizeOptions o;
  o.precision = numerics::parse_precision("w4a16,block=32");
  auto prepared = quant::prepare_for_quantization(m, o);
  EXPECT_EQ(prepared->opset(""), 21);
  const auto plan = quant::plan_quantization(*prepared, o);
  EXPECT_TRUE(plan.activations.empty());
  const auto q = quant::quantize_model(*prepared, plan, {}, o);
  const ir::Node* dq = nullptr;
  for (auto& n : q.model->graph->nodes) if (n->op_type == "DequantizeLinear") dq = n.get();
  ASSERT_TRUE(dq);
  EXPECT_EQ(dq->attr_int("block_size", 0), 32);
  EXPECT_EQ(q.model->graph->initializers.at(dq->inputs[0]->name).dtype(), DType::Int4);
  EXPECT_EQ(q.model->graph->initializers.at(dq->inputs[1]->name).dims(), (Dims{2, 16}));
  std::map<std::string, Tensor> feeds;
  Tensor t(DType::Float32, {2, 64});
  for (int i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::cos(i * 0.11f);
  feeds["x"] = t;
  const auto ref = run_once(m, feeds), got = run_once(*q.model, feeds);
  double err = 0, sig = 0;
  for (size_t i = 0; i < ref.size(); ++i) err += (ref[i] - got[i]) * (ref[i] - got[i]), sig += ref[i] * ref[i];
  EXPECT_LT(std::sqrt(err / sig), 0.15);  // 4-bit weights: 7 levels per side (measured 0.107)
}

TEST(Quantize, AccuracyBudgetKeepsTheMostSensitiveNodesInFloat) {
  const ir::Model m = conv_model();
  quant::QuantizeOptions o;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  const auto ranges = calibrated_ranges(*prepared, plan, random_samples(4), o);
  quant::Evaluator eval(*prepared, random_samples(4), 4, reference_run());
  const auto ranking = quant::sensitivity(*prepared, plan, ranges, o, eval);
  ASSERT_EQ(ranking.size(), 1u);
  EXPECT_GT(ranking[0].second, 0.0);
  double err = -1;
  // A budget below the quantized error leaves the conv in float (error 0).
  auto keep = quant::choose_float_nodes(*prepared, plan, ranges, o, eval, ranking, ranking[0].second / 2, &err, nullptr);
  EXPECT_EQ(keep, std::set<std::string>{"conv"});
  EXPECT_EQ(err, 0.0);
  keep = quant::choose_float_nodes(*prepared, plan, ranges, o, eval, ranking, 1.0, &err, nullptr);
  EXPECT_TRUE(keep.empty());
}

// The post-training pipeline from C++, no CLI: the bundled classifier with an
// accuracy budget on its own three samples. Every planned node is INT8 or kept
// float by the budget, the measured error meets it, and the QDQ model says
// its precision per node (what the simulator reads).
TEST(Ptq, QuantizesTheBundledClassifierFromCpp) {
  auto model = onnx_io::load_model(source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx");
  quant::Recipe recipe;
  recipe.accuracy_budget = 0.02;
  recipe.max_eval = 3;
  recipe.run.threads = 2;
  std::vector<std::string> stages;
  recipe.progress = [&](const std::string& stage, size_t done, size_t total) {
    if (stages.empty() || stages.back() != stage) stages.push_back(stage);
    EXPECT_LE(done, total);
  };
  const quant::SampleSource calib = quant::sample_folder(source_dir() + "/data/samples/cls", *model->graph);
  ASSERT_EQ(calib.count, 3u);
  const quant::PtqResult r = quant::quantize_post_training(*model, recipe, calib);
  EXPECT_EQ(r.report.calibration_samples, 3u);
  EXPECT_EQ(r.report.evaluation_samples, 3u);
  ASSERT_TRUE(r.report.comparison.has_value());
  EXPECT_LE(r.report.budget_error, 0.02);
  EXPECT_LE(r.report.comparison->error, 0.02);
  EXPECT_EQ(r.report.plan.nodes.size(), r.quantized.precision.size());
  int int8 = 0, fp32 = 0;
  for (auto& [node, p] : r.quantized.precision) (p == "int8" ? int8 : fp32) += 1;
  EXPECT_EQ(size_t(fp32), r.kept_float.size());
  EXPECT_GT(int8, 40);  // most of the 54 convolutions
  EXPECT_FALSE(r.observers.empty());
  int annotated = 0;
  for (auto& n : r.quantized.model->graph->nodes) annotated += n->annotations.count("precision") > 0;
  EXPECT_EQ(annotated, int8);
  EXPECT_EQ(stages, (std::vector<std::string>{"calibrating", "sensitivity"}));
  // A recipe that cannot apply is one clear error.
  quant::Recipe bad;
  bad.awq = true;
  EXPECT_THROW(quant::quantize_post_training(*model, bad, calib), Error);
}

// The quantizer speaks the one precision vocabulary: QuantizeOptions holds a
// numerics::Precision, and what the QDQ model states (its nodes' precision
// annotations) is what was asked for: the weights' format and scaling, and
// weight-only or not. Precisions a QDQ model cannot state are one error.
TEST(Ptq, FormatsComeFromOnePrecisionText) {
  // x[2,64] -> MatMul with a constant [64,16] weight: every accepted precision applies to it.
  ir::Model m = model_with_input(13, {2, 64});
  auto& g = *m.graph;
  Tensor w(DType::Float32, {64, 16});
  for (int i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::sin(i * 0.37f);
  g.initializers["w"] = w;
  g.value("w")->type.dtype = DType::Float32;
  g.add_node("MatMul", {g.inputs[0], g.value("w")}, {g.value("y")}, "mm");
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  const std::map<std::string, quant::Range> ranges = {{"x", {-1.0f, 1.0f}}};
  for (const char* text : {"int8", "x=int8/tensor,w=int8/tensor", "w8a16", "w8a16,w=int8/tensor", "w4a16",
                           "w4a16,block=32", "fp8", "fp8,w=e4m3fn/channel"}) {
    SCOPED_TRACE(text);
    quant::QuantizeOptions o;
    o.precision = numerics::parse_precision(text);
    EXPECT_NO_THROW(quant::check_quantizable(o.precision));
    auto prepared = quant::prepare_for_quantization(m, o);
    const auto plan = quant::plan_quantization(*prepared, o);
    ASSERT_EQ(plan.nodes, std::vector<std::string>{"mm"});
    EXPECT_EQ(plan.activations.empty(), o.precision.weight_only());
    const auto q = quant::quantize_model(*prepared, plan, ranges, o);
    const numerics::Precision stated = numerics::parse_precision(q.precision.at("mm"));
    EXPECT_EQ(stated.weight_only(), o.precision.weight_only());
    EXPECT_EQ(stated.w.format.name, o.precision.w.format.name);
    EXPECT_EQ(stated.w.scaling, o.precision.w.scaling);
    EXPECT_EQ(stated.block, o.precision.block);
    if (!o.precision.weight_only()) EXPECT_EQ(stated.x.format.name, o.precision.x.format.name);
  }
  for (const char* bad : {"bf16", "int8,sparsity=2:4", "int4", "x=fp16,w=int4/block,block=16", "x=fp16,w=int8/block,block=32",
                          "fp8-e5m2", "fp8-block"}) {
    try {
      quant::check_quantizable(numerics::parse_precision(bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("precision"), std::string::npos) << e.what();
    }
  }
  quant::QuantizeOptions bf16;
  bf16.precision = numerics::parse_precision("bf16");
  EXPECT_THROW(quant::prepare_for_quantization(m, bf16), Error);  // every pipeline checks first
}

// The flags from before --precision name one precision, which the JSON states;
// pairs that name none are one error line.
TEST(QuantizeCli, WeightAndActivationFlagsNameOnePrecision) {
  const std::string model = source_dir() + "/data/models/digits_cnn.onnx";
  const std::string base = cli() + " quantize " + model + " --calib " + source_dir() + "/data/samples/digits -o " +
                           (scratch("cli_flags") / "q.onnx").string() + " --max-calib 2 --max-eval 2";
  const std::vector<std::pair<std::string, std::string>> named = {
      {"", "int8"},
      {"--per-tensor", "int8,w=int8/tensor"},
      {"--weights int8 --activations none", "w8a16"},
      {"--weights int4 --activations none", "w4a16,block=32"},
      {"--weights int4 --activations none --block-size 128", "w4a16"},
      {"--weights fp8 --activations fp8", "fp8,w=e4m3fn/channel"},
      {"--weights fp8 --activations fp8 --per-tensor", "fp8"}};
  for (const auto& [flags, precision] : named) {
    auto r = run_command(base + " " + flags + " --json");
    ASSERT_EQ(r.exit_code, 0) << flags << ": " << r.output;
    EXPECT_EQ(nlohmann::json::parse(r.output)["scheme"]["precision"], precision) << flags;
  }
  for (const auto& [flags, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--weights int8 --activations fp8", "names no precision"},
           {"--weights fp8 --activations none", "names no precision"},
           {"--weights int4", "names no precision"},
           {"--weights int4 --activations none --per-tensor", "INT4 weights are scaled per block"},
           {"--block-size 64", "--block-size applies to --weights int4"}}) {
    auto r = run_command(base + " " + flags);
    EXPECT_NE(r.exit_code, 0) << flags;
    EXPECT_EQ(r.output.rfind("duet: error:", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  }
}

TEST(QuantizeCli, TakesAPrecisionTextAndSaysWhatRanInItsJson) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  const fs::path dir = scratch("cli_precision");
  const std::string out = (dir / "w8.onnx").string();
  auto r = run_command(cli() + " quantize " + model + " --calib " + source_dir() + "/data/samples/cls -o " + out +
                       " --precision w8a16 --max-eval 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["duet"]["command"], "quantize");
  EXPECT_EQ(j["duet"]["options"]["--precision"], "w8a16");
  EXPECT_EQ(j["duet"]["options"]["--method"], "percentile");  // defaults are reported too
  r = run_command(cli() + " quantize " + model + " --calib " + source_dir() + "/data/samples/cls -o " + out +
                  " --precision bf16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("duet: error: precision bf16: duet quantize writes"), std::string::npos) << r.output;
}

TEST(QuantizeCli, QuantizesTheBundledClassifierAndOnnxRuntimeCanLoadIt) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  const fs::path dir = scratch("cli");
  const fs::path calib = dir / "calib";
  fs::create_directories(calib);
  for (const auto& e : fs::directory_iterator(source_dir() + "/data/samples/cls"))
    if (e.path().extension() == ".pb") fs::copy(e.path(), calib / e.path().filename());
  const std::string out = (dir / "q.onnx").string(), report = (dir / "q.html").string();
  auto r = run_command(cli() + " quantize " + model + " --calib " + calib.string() + " -o " + out + " --report " + report + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"nodes_quantized\": 54"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"argmax_agreement\": 1.0"), std::string::npos) << r.output;
  ASSERT_TRUE(fs::exists(report));
  std::ifstream html(report);
  const std::string page((std::istreambuf_iterator<char>(html)), {});
  EXPECT_NE(page.find("<svg"), std::string::npos);  // the per-tensor SQNR plot
  EXPECT_NE(page.find("FP32 vs quantized outputs (measured)"), std::string::npos);
  EXPECT_NE(page.find("Precision per node"), std::string::npos);
  auto q = onnx_io::load_model(out);
  EXPECT_EQ(q->opset(""), 13);
  // The text summary names the tensors whose own range costs the most, beside what calibration observed.
  r = run_command(cli() + " quantize " + model + " --calib " + calib.string() + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("weakest activation ranges"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("of observed ["), std::string::npos) << r.output;
  if (run_command("python3 -c 'import onnxruntime'").exit_code == 0) {
    auto ort = run_command("python3 -c \"import onnxruntime as o; o.InferenceSession('" + out + "', providers=['CPUExecutionProvider'])\"");
    EXPECT_EQ(ort.exit_code, 0) << ort.output;
  }
}

TEST(QuantizeCli, JudgesTheQuantizedModelByItsTaskOnHeldOutSamples) {
  // The bundled classifier's samples carry their labels (sample_N.txt: 0 or 180): top-1 of FP32 and of the
  // quantized model on the evaluation samples, and again on held-out samples no choice saw.
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  const std::string samples = source_dir() + "/data/samples/cls";
  const fs::path dir = scratch("task");
  const std::string out = (dir / "q.onnx").string();
  auto r = run_command(cli() + " quantize " + model + " --calib " + samples + " --held-out " + samples +
                       " --metric top1,labels=0,180 --max-accuracy-drop 0 -o " + out + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("task_metric").at("metric"), "top1");
  EXPECT_DOUBLE_EQ(j.at("task_metric").at("fp32").get<double>(), 1.0);  // FP32 reads all three right
  EXPECT_LE(j.at("task_metric").at("drop_points").get<double>(), 0.0);  // the budget: no point lost
  EXPECT_EQ(j.at("task_metric").at("held_out").at("samples"), 3);
  EXPECT_LE(j.at("task_metric").at("held_out").at("drop_points").get<double>(), 0.0);
  EXPECT_EQ(j.at("accuracy_budget").at("budget"), 0.0);
  // A metric that reads references the samples lack is one clear error, before a model is written.
  const fs::path bare = dir / "bare";
  fs::create_directories(bare);
  fs::copy(samples + "/sample_0.pb", bare / "sample_0.pb");
  r = run_command(cli() + " quantize " + model + " --calib " + bare.string() + " --metric top1 -o " + (dir / "q2.onnx").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("has no reference"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "q2.onnx"));
}

TEST(EvaluateCli, MeasuresAModelsTaskBesideItsReference) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  const std::string samples = source_dir() + "/data/samples/cls";
  auto r = run_command(cli() + " evaluate " + model + " --data " + samples + " --metric top1,labels=0,180 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("samples"), 3);
  EXPECT_DOUBLE_EQ(j.at("value").get<double>(), 1.0);
  // Against itself as the reference: the same figure, no drop, no output error.
  r = run_command(cli() + " evaluate " + model + " --data " + samples + " --metric top1,labels=0,180 --reference " + model + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = nlohmann::json::parse(r.output);
  EXPECT_DOUBLE_EQ(j.at("reference").at("drop_points").get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j.at("reference").at("rel_l2").get<double>(), 0.0);
  // Agreement needs something to agree with: one clear error.
  r = run_command(cli() + " evaluate " + model + " --data " + samples);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--metric agreement compares with a --reference model"), std::string::npos) << r.output;
}

TEST(QuantizeCli, BadCalibrationInputIsOneClearError) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  const fs::path dir = scratch("bad");
  auto expect_error = [&](const std::string& calib, const std::string& needle) {
    auto r = run_command(cli() + " quantize " + model + " --calib " + calib + " -o " + (dir / "q.onnx").string());
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_LT(r.exit_code, 128) << r.output;
    EXPECT_EQ(r.output.rfind("duet: error:", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  };
  fs::create_directories(dir / "empty");
  expect_error((dir / "empty").string(), "no calibration samples");
  expect_error((dir / "missing").string(), "missing");
  // Wrong shape and NaN values.
  fs::create_directories(dir / "shape");
  onnx_io::save_tensor_pb(Tensor::zeros(DType::Float32, {1, 3, 4}), "x", (dir / "shape" / "a.pb").string());
  expect_error((dir / "shape").string(), "a.pb");
  fs::create_directories(dir / "nan");
  Tensor t = Tensor::zeros(DType::Float32, {1, 3, 48, 192});
  t.data<float>()[5] = NAN;
  onnx_io::save_tensor_pb(t, "x", (dir / "nan" / "a.pb").string());
  expect_error((dir / "nan").string(), "NaN in");
  // A range override must name a quantized activation and contain zero.
  const std::string good = source_dir() + "/data/samples/cls";
  auto r = run_command(cli() + " quantize " + model + " --calib " + good + " -o " + (dir / "q.onnx").string() + " --override nope=-1:1");
  EXPECT_NE(r.output.find("'nope' is not an activation tensor"), std::string::npos) << r.output;
  EXPECT_NE(r.exit_code, 0);
  r = run_command(cli() + " quantize " + model + " --calib " + good + " -o " + (dir / "q.onnx").string() + " --awq");
  EXPECT_NE(r.output.find("--awq searches INT4 weight scales"), std::string::npos) << r.output;
}

TEST(Quantize, SoftmaxOutputsKeepTheirWholeRangeUnderEveryMethod) {
  // Softmax over 8 uniform values peaks near 0.3 here; a histogram method
  // would clip the rare large probabilities, which decide an attention. The
  // range is the op's own: [0, 1].
  train::GraphBuilder b;
  ir::Value* p = b.node("Softmax", {b.input("x", DType::Float32, {1, 3, 8, 8})}, {train::attr_int("axis", -1)});
  b.output(b.node("MatMul", {p, b.weight("w", {8, 4}, 8)}), "y");
  const auto m = b.finish();
  for (const char* method : {"entropy", "mse", "minmax"}) {
    quant::QuantizeOptions o;
    o.calibration.method = quant::parse_method(method);
    auto prepared = quant::prepare_for_quantization(*m, o);
    const auto plan = quant::plan_quantization(*prepared, o);
    ASSERT_EQ(plan.activations.size(), 1u);
    const auto observers = quant::calibrate(*prepared, plan.activations, random_samples(4), reference_run());
    EXPECT_LT(observers.begin()->second.max(), 0.9f);
    const quant::Range r = quant::choose_ranges(observers, o).at(plan.activations[0]);
    EXPECT_EQ(r.lo, 0.0f) << method;
    EXPECT_EQ(r.hi, 1.0f) << method;
  }
}

TEST(Quantize, QuantizeOutputsAddsOnnxRuntimesOutputPairs) {
  const ir::Model m = conv_model();
  quant::QuantizeOptions o;
  o.quantize_outputs = true;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  EXPECT_EQ(plan.activations, (std::vector<std::string>{"x", "c"}));
  const auto ranges = calibrated_ranges(*prepared, plan, random_samples(4), o);
  const auto q = quant::quantize_model(*prepared, plan, ranges, o);
  int quantize = 0;
  for (auto& n : q.model->graph->nodes) quantize += n->op_type == "QuantizeLinear";
  EXPECT_EQ(quantize, 2);
  // The Relu still reads the name 'c', now the dequantized conv output.
  const ir::Value* c = q.model->graph->find_value("c");
  ASSERT_TRUE(c && c->producer);
  EXPECT_EQ(c->producer->op_type, "DequantizeLinear");
}

TEST(Quantize, SmoothingMovesChannelOutliersIntoWeightsWithoutChangingTheOutput) {
  // x has one channel 50x larger than the others; after smoothing the Conv
  // reads x * (1/s) with balanced channels and its weights carry s.
  const ir::Model m = conv_model();
  quant::QuantizeOptions o;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  quant::SampleSource data = random_samples(4);
  auto base = data.load;
  data.load = [base](size_t i) {
    auto feeds = base(i);
    Tensor& x = feeds.at("x");
    for (int k = 0; k < 64; ++k) x.data<float>()[k] *= 50;  // channel 0
    return feeds;
  };
  const auto axes = quant::smoothable_tensors(*prepared, plan);
  ASSERT_EQ(axes.count("x"), 1u);
  EXPECT_EQ(axes.at("x"), 1);
  const quant::RunOptions run = reference_run();
  const auto amax = quant::channel_statistics(*prepared, axes, data, run);
  ASSERT_EQ(amax.at("x").size(), 3u);
  EXPECT_GT(amax.at("x")[0], 20 * amax.at("x")[1]);
  auto smoothed = quant::clone_model(*prepared);
  EXPECT_EQ(quant::smooth_activations(*smoothed, plan, amax, 0.5), 1);
  const auto feeds = data.load(0);
  const auto ref = run_once(*prepared, feeds), got = run_once(*smoothed, feeds);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(ref[i], got[i], 1e-4 * (1 + std::fabs(ref[i]))) << i;
  // The conv now reads the smoothed tensor, whose channels are closer in range.
  const auto plan2 = quant::plan_quantization(*smoothed, o);
  ASSERT_EQ(plan2.activations.size(), 1u);
  const auto amax2 = quant::channel_statistics(*smoothed, {{plan2.activations[0], 1}}, data, run);
  const auto& a2 = amax2.at(plan2.activations[0]);
  EXPECT_LT(a2[0] / a2[1], 0.5 * amax.at("x")[0] / amax.at("x")[1]);
}

TEST(Quantize, AutoPicksForEachTensorTheRangeWithTheSmallestMeasuredError) {
  const ir::Model m = conv_model();
  quant::QuantizeOptions o;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  const quant::RunOptions run = reference_run();
  const auto observers = quant::calibrate(*prepared, plan.activations, random_samples(4), run);
  quant::Evaluator eval(*prepared, random_samples(4), 4, run);
  std::map<std::string, std::string> chosen;
  const auto best = quant::choose_ranges_by_error(*prepared, plan, observers, o, eval, &chosen);
  ASSERT_EQ(chosen.count("x"), 1u);
  const double best_error = eval.compare(*quant::quantize_model(*prepared, plan, best, o).model).error;
  for (auto method : {quant::Method::MinMax, quant::Method::Entropy, quant::Method::Mse, quant::Method::Percentile}) {
    quant::QuantizeOptions om = o;
    om.calibration.method = method;
    const double e = eval.compare(*quant::quantize_model(*prepared, plan, quant::choose_ranges(observers, om), o).model).error;
    EXPECT_LE(best_error, e + 1e-12) << quant::method_name(method);
  }
}

TEST(Quantize, BiasCorrectionRemovesTheMeanShiftOfWeightRounding) {
  // Inputs with a large mean: weight rounding shifts each output channel's
  // mean by sum_c (W_q - W) mu_c; the corrected bias takes it back out.
  ir::Model m = conv_model();
  m.graph->nodes.pop_back();  // drop the Relu: look at the conv output itself
  m.graph->outputs = {m.graph->find_value("c")};
  quant::QuantizeOptions o;
  o.precision = numerics::parse_precision("int8,w=int8/tensor");  // coarse weights: a visible shift
  o.calibration.method = quant::Method::MinMax;
  auto prepared = quant::prepare_for_quantization(m, o);
  const auto plan = quant::plan_quantization(*prepared, o);
  quant::SampleSource data = random_samples(4);
  auto base = data.load;
  data.load = [base](size_t i) {
    auto feeds = base(i);
    for (int k = 0; k < feeds.at("x").numel(); ++k) feeds.at("x").data<float>()[k] += 3.0f;
    return feeds;
  };
  const auto ranges = calibrated_ranges(*prepared, plan, data, o);
  auto mean_error = [&](const quant::QuantizeOptions& qo) {
    const auto q = quant::quantize_model(*prepared, plan, ranges, qo);
    double sum = 0;
    int64_t n = 0;
    for (size_t s = 0; s < 4; ++s) {
      const auto feeds = data.load(s);
      const auto ref = run_once(*prepared, feeds), got = run_once(*q.model, feeds);
      for (size_t i = 0; i < ref.size(); ++i) sum += got[i] - ref[i], ++n;
    }
    return std::fabs(sum / static_cast<double>(n));
  };
  quant::QuantizeOptions corrected = o;
  corrected.input_means = quant::channel_statistics(*prepared, {{"x", 1}}, data, reference_run(), quant::ChannelStat::Mean);
  EXPECT_NEAR(corrected.input_means.at("x")[0], 3.0, 0.1);
  EXPECT_LT(mean_error(corrected), 0.5 * mean_error(o));
}

TEST(QuantizeCli, CalibratesFromImagesWithAPreprocessingSpec) {
  DUET_REQUIRE_SHARED();
  const std::string png = shared_dir() + "/models/paddleocr/testdata/rec/line_0.png";
  if (!fs::exists(png)) GTEST_SKIP() << png << " is not present";
  const fs::path dir = scratch("images");
  fs::create_directories(dir / "calib");
  fs::copy(png, dir / "calib" / "a.png");
  fs::copy(png, dir / "calib" / "b.png");
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  auto r = run_command(cli() + " quantize " + model + " --calib " + (dir / "calib").string() +
                       " --preprocess resize=48x192,keep_ratio,pad=right,scale=1/255,mean=0.5,std=0.5,order=bgr -o " +
                       (dir / "q.onnx").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"samples\": 2"), std::string::npos) << r.output;
  // A spec that names a bad key is one clear error.
  r = run_command(cli() + " quantize " + model + " --calib " + (dir / "calib").string() + " --preprocess size=48x192 -o " +
                  (dir / "q.onnx").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("duet: error:", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("size"), std::string::npos) << r.output;
}

namespace {

// Rows of inputs whose K features are mixtures of a few sources: strongly correlated, as real activations are.
// `mix_seed` fixes how features mix the sources (the layer's input statistics); `seed` draws the rows.
std::vector<float> correlated_rows(int64_t rows, int64_t k, uint32_t mix_seed, uint32_t seed) {
  std::mt19937 mixing(mix_seed), rng(seed);
  std::normal_distribution<float> z(0, 1);
  const int64_t sources = 4;
  std::vector<float> mix(sources * k);
  for (auto& v : mix) v = z(mixing);
  std::vector<float> x(rows * k);
  for (int64_t r = 0; r < rows; ++r) {
    float s[sources];
    for (auto& v : s) v = z(rng);
    for (int64_t i = 0; i < k; ++i) {
      float v = 0.05f * z(rng);
      for (int64_t j = 0; j < sources; ++j) v += s[j] * mix[j * k + i];
      x[r * k + i] = v;
    }
  }
  return x;
}

// ||(W_q - W) X|| / ||W X|| with W as N rows of K and X as rows of K.
double layer_error(const std::vector<float>& w, const std::vector<float>& wq, const std::vector<float>& x, int64_t n, int64_t k) {
  double err = 0, sig = 0;
  for (size_t r = 0; r < x.size() / k; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double y = 0, yq = 0;
      for (int64_t i = 0; i < k; ++i) y += w[c * k + i] * x[r * k + i], yq += wq[c * k + i] * x[r * k + i];
      err += (yq - y) * (yq - y), sig += y * y;
    }
  return std::sqrt(err / sig);
}

}  // namespace

TEST(Gptq, UncorrelatedInputsRoundToNearest) {
  // With H a multiple of the identity no rounding error has anywhere to go: GPTQ is round-to-nearest.
  const int64_t n = 3, k = 16;
  std::vector<float> w(n * k);
  for (int64_t i = 0; i < n * k; ++i) w[i] = std::sin(0.7f * static_cast<float>(i));
  std::vector<double> h(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = 5;
  const quant::GptqResult r = quant::gptq_round(w.data(), n, k, h, {});
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i)
      EXPECT_EQ(r.q[c * k + i], static_cast<int8_t>(std::nearbyint(w[c * k + i] / r.scales[c])));
  EXPECT_DOUBLE_EQ(r.relative_error, r.nearest_relative_error);
}

TEST(Gptq, CorrelatedInputsLowerTheLayersOutputErrorAsMeasured) {
  const int64_t n = 8, k = 64, rows = 512;
  const std::vector<float> x = correlated_rows(rows, k, 1, 10);
  std::mt19937 rng(2);
  std::normal_distribution<float> z(0, 1);
  std::vector<float> w(n * k);
  for (auto& v : w) v = z(rng);
  std::vector<double> h(k * k, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) h[i * k + j] += static_cast<double>(x[r * k + i]) * x[r * k + j];
  for (int block : {0, 32}) {
    quant::GptqOptions o;
    if (block) o.qmin = -8, o.qmax = 7, o.block = block;
    const quant::GptqResult r = quant::gptq_round(w.data(), n, k, h, o);
    std::vector<float> wq(n * k);
    const int64_t per_row = block ? k / block : 1;
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < k; ++i) wq[c * k + i] = r.q[c * k + i] * r.scales[c * per_row + (block ? i / block : 0)];
    // The reported figure is the error measured on the inputs, and it is well under round-to-nearest's.
    EXPECT_NEAR(layer_error(w, wq, x, n, k), r.relative_error, 1e-4) << "block " << block;
    EXPECT_LT(r.relative_error, 0.7 * r.nearest_relative_error) << "block " << block;
    // Held-out inputs from the same sources gain as well.
    const std::vector<float> other = correlated_rows(rows, k, 1, 11);
    EXPECT_LT(layer_error(w, wq, other, n, k), r.nearest_relative_error) << "block " << block;
  }
}

TEST(Ptq, GptqRoundingOfInt4MatMulWeightsLowersTheModelsMeasuredError) {
  const int64_t k = 64;
  ir::Model m = model_with_input(13, {4, k});
  auto& g = *m.graph;
  Tensor w(DType::Float32, {k, 16});
  for (int i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::sin(i * 0.37f) + 0.3f * std::cos(i * 1.9f);
  g.initializers["w"] = w;
  g.value("w")->type.dtype = DType::Float32;
  g.add_node("MatMul", {g.inputs[0], g.value("w")}, {g.value("y")}, "mm");
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  auto samples = [k](uint32_t seed) {
    quant::SampleSource s;
    s.count = 16;
    s.load = [k, seed](size_t i) {
      const std::vector<float> rows = correlated_rows(4, k, 1, seed * 1000 + static_cast<uint32_t>(i));
      return std::map<std::string, Tensor>{{"x", Tensor::from_vector<float>(rows, {4, k})}};
    };
    return s;
  };
  const quant::SampleSource calib = samples(1), held_out = samples(2);
  double error[2];
  for (int gptq = 0; gptq < 2; ++gptq) {
    quant::Recipe r;
    r.options.precision = numerics::parse_precision("w4a16,block=32");
    r.gptq = gptq;
    r.run = reference_run();
    const quant::PtqResult result = quant::quantize_post_training(m, r, calib, nullptr, &held_out);
    error[gptq] = result.report.held_out->rel_l2;
    EXPECT_EQ(result.report.rounding, gptq ? "gptq" : "nearest");
    EXPECT_EQ(result.report.rounding_error.size(), gptq ? 1u : 0u);
  }
  EXPECT_LT(error[1], 0.8 * error[0]);
}
