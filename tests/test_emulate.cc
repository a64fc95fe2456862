// Precision emulation of whole models: numerics::Precision specs, the com.duet
// Emulated* kernels (checked against independent arithmetic and the FP32
// reference kernels), passes::emulate_datapath and `duet emulate`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "duet/numerics/precision.h"
#include "duet/quant/emulation.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/emulate.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"
#include "duet/train/graph_builder.h"
#include "test_util.h"

namespace duet {
namespace {

using numerics::Precision;
using numerics::parse_precision;
using numerics::emu::Scaling;
using testutil::cli;
using testutil::run_command;
using testutil::source_dir;
using train::GraphBuilder;

Tensor random_tensor(const Dims& dims, uint32_t seed, float scale = 1.0f) {
  Tensor t = Tensor::zeros(DType::Float32, dims);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

std::vector<Tensor> run_model(std::shared_ptr<ir::Model> model, const std::map<std::string, Tensor>& feeds) {
  runtime::Session s(std::move(model));
  std::vector<Tensor> out;
  for (auto& nt : s.run(feeds)) out.push_back(nt.tensor);
  return out;
}

// The model as written, and its copy through `datapath`.
std::pair<std::vector<Tensor>, std::vector<Tensor>> run_both(GraphBuilder& b, const std::string& datapath,
                                                             const std::map<std::string, Tensor>& feeds,
                                                             int expect_emulated) {
  std::shared_ptr<ir::Model> model = b.finish();
  passes::infer_shapes(*model);
  std::shared_ptr<ir::Model> emulated = onnx_io::clone_model(*model);
  const auto report = passes::emulate_datapath(*emulated, parse_precision(datapath));
  EXPECT_EQ(report.emulated, expect_emulated);
  return {run_model(model, feeds), run_model(emulated, feeds)};
}

float bf16_round(float x) {
  const auto& f = *numerics::find_format("bf16");
  return static_cast<float>(f.decode(f.encode(x)));
}

TEST(Precision, PresetsRoundTripThroughTheirSpecs) {
  for (const Precision& d : numerics::precision_presets()) {
    const Precision again = parse_precision(d.spec());
    EXPECT_EQ(again.spec(), d.spec()) << d.name;
    EXPECT_FALSE(d.devices.empty()) << d.name;
  }
  const Precision fp8 = parse_precision("fp8");
  EXPECT_EQ(fp8.x.format.name, "e4m3fn");
  EXPECT_EQ(fp8.acc.chunk, 128);  // Hopper: promoted to FP32 every 128 products
}

TEST(Precision, DefaultsFollowTheFormats) {
  const Precision i8 = parse_precision("x=int8");
  EXPECT_EQ(i8.w.format.name, "int8");
  EXPECT_EQ(i8.x.scaling, Scaling::Tensor);
  EXPECT_EQ(i8.w.scaling, Scaling::Channel);
  EXPECT_EQ(i8.acc.kind, numerics::emu::AccumulatorKind::Integer);
  const Precision bf = parse_precision("x=bf16");
  EXPECT_EQ(bf.x.scaling, Scaling::None);
  EXPECT_EQ(bf.acc_spec, "fp32");
  const Precision custom = parse_precision("x=fp(1,5,10)/tensor,w=e4m3fn/none,acc=hopper:10:64,out=bf16");
  EXPECT_EQ(custom.x.format.bits(), 16);
  EXPECT_EQ(custom.x.scaling, Scaling::Tensor);
  EXPECT_EQ(custom.acc.chunk, 64);
  EXPECT_EQ(custom.out.name, "bf16");
  const Precision mx = parse_precision("x=e4m3fn/block,w=e4m3fn/block,block=32");
  EXPECT_EQ(mx.acc.chunk, 32);  // each block's dot product is scaled once
}

TEST(Precision, BadSpecsNameTheProblem) {
  auto message = [](const std::string& spec) {
    try {
      parse_precision(spec);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("tpu9").find("unknown precision 'tpu9'"), std::string::npos);
  EXPECT_NE(message("int8,sparsity=3:8").find("sparsity must be dense or 2:4"), std::string::npos);
  EXPECT_NE(message("x=fp16,w=int4/none").find("weight-only"), std::string::npos);
  EXPECT_NE(message("int8,acc=fp32").find("precision 'int8,acc=fp32'"), std::string::npos);
  EXPECT_NE(message("x=bf16,speed=fast").find("unknown key 'speed'"), std::string::npos);
  EXPECT_NE(message("x=uint8").find("unsigned"), std::string::npos);
  EXPECT_NE(message("x=int8,w=bf16").find("integer activations need integer weights"), std::string::npos);
  EXPECT_NE(message("x=e4m3fn/block,w=e4m3fn/block,block=32,acc=hopper").find("promotes every 128"),
            std::string::npos);
  EXPECT_NE(message("x=e4m3fn/block").find("block=N"), std::string::npos);
  EXPECT_NE(message("x=bf16,acc=int32").find("integer accumulator"), std::string::npos);
  EXPECT_NE(message("x=e4m3fn/block,block=32x").find("non-negative integer"), std::string::npos);
  EXPECT_NE(message("x=bf16,x=fp16").find("given twice"), std::string::npos);
  EXPECT_NE(message("x=bf16,seed=3").find("round=sr"), std::string::npos);
}

TEST(Precision, PresetsTakeOverridesAndPrintTheirShortestForm) {
  const Precision sparse = parse_precision("int8,sparsity=2:4");
  EXPECT_EQ(sparse.sparsity, numerics::Sparsity::TwoOfFour);
  EXPECT_EQ(sparse.w.scaling, numerics::emu::Scaling::Channel);  // the rest is int8's
  EXPECT_EQ(sparse.str(), "int8,sparsity=2:4");
  EXPECT_EQ(parse_precision(sparse.spec()), sparse);
  EXPECT_EQ(parse_precision(sparse.spec()).str(), sparse.spec());  // no preset name to give it back
  // A spec that happens to be a preset prints as the preset.
  EXPECT_EQ(parse_precision("x=bf16/none,w=bf16/none,acc=fp32,out=fp32").str(), "bf16");
  // Overriding x drops the preset's block: block goes with the scaling.
  EXPECT_EQ(parse_precision("mxfp8,x=bf16,w=bf16").spec(), parse_precision("x=bf16,w=bf16").spec());
  for (const Precision& p : numerics::precision_presets()) {
    EXPECT_EQ(parse_precision(p.str()), p) << p.name;
    EXPECT_EQ(parse_precision(p.name + ",sparsity=2:4").sparsity, numerics::Sparsity::TwoOfFour) << p.name;
  }
}

TEST(Precision, WeightOnlyComputesInTheActivationFormat) {
  const Precision w4 = parse_precision("w4a16");
  EXPECT_TRUE(w4.weight_only());
  EXPECT_EQ(w4.compute_format().name, "fp16");
  EXPECT_EQ(w4.acc.chunk, 0);  // scales apply to the weights, not to partial sums
  EXPECT_DOUBLE_EQ(w4.weight_bytes(), 0.5 + 2.0 / 128);  // INT4 + one FP16 scale per 128
  EXPECT_DOUBLE_EQ(w4.activation_bytes(), 2);
  EXPECT_EQ(parse_precision("int8").compute_format().name, "int8");
  EXPECT_DOUBLE_EQ(parse_precision("int8,sparsity=2:4").weight_bytes(), 0.5 * (1 + 0.25));
  EXPECT_EQ(parse_precision("fp8-e5m2").compute_format().name, "e5m2");
}

TEST(Precision, TwoOfFourKeepsTheTwoLargestOfEveryFourAlongK) {
  // 2 rows x K=7 (a group of 4 then a group of 3), row-major.
  const std::vector<float> w = {1, -5, 3, 2, 9, -1, 0.5f, /**/ 4, 4, 4, 4, 0, 0, -2};
  const std::vector<float> p = numerics::prune_2of4(w.data(), 2, 7, 7, 1);
  EXPECT_EQ(p, (std::vector<float>{0, -5, 3, 0, 9, -1, 0, /**/ 4, 4, 0, 0, 0, 0, -2}));
  // The same matrix stored transposed (K x 2): k stride 2, outer stride 1.
  std::vector<float> t(14);
  for (int o = 0; o < 2; ++o)
    for (int k = 0; k < 7; ++k) t[k * 2 + o] = w[o * 7 + k];
  const std::vector<float> pt = numerics::prune_2of4(t.data(), 2, 7, 1, 2);
  for (int o = 0; o < 2; ++o)
    for (int k = 0; k < 7; ++k) EXPECT_EQ(pt[k * 2 + o], p[o * 7 + k]);
}

TEST(Precision, IntegerFormatsOfAnyWidthAreScaledAndBlocksCarryToW) {
  const Precision i16 = parse_precision("x=int16");
  EXPECT_EQ(i16.x.scaling, Scaling::Tensor);  // unscaled, |x| < 0.5 would all round to 0
  EXPECT_EQ(i16.w.scaling, Scaling::Channel);
  const Precision mx = parse_precision("x=e4m3fn/block,block=32");
  EXPECT_EQ(mx.w.scaling, Scaling::Block);
}

// INT8 with dynamic scales, computed here from first principles: per-tensor
// scale of A, per-column scales of B, exact integer sums, one FP32 rescale.
TEST(EmulatedOps, Int8MatMulEqualsExactIntegerArithmeticWithBroadcastBatches) {
  const int64_t B = 2, M = 3, K = 40, N = 5;
  const Tensor a = random_tensor({B, M, K}, 1), w = random_tensor({K, N}, 2, 0.1f);
  GraphBuilder g;
  ir::Value* x = g.input("x", DType::Float32, {B, M, K});
  g.output(g.node("MatMul", {x, g.initializer("w", w)}));
  auto [fp32, emulated] = run_both(g, "int8", {{"x", a}}, 1);
  ASSERT_EQ(emulated[0].dims(), (Dims{B, M, N}));
  auto quantize = [](float v, float s) {
    const float q = std::nearbyint(v / s);  // round half to even (default FP environment)
    return static_cast<int64_t>(std::clamp(q, -128.0f, 127.0f));
  };
  float amax = 0;
  for (int64_t i = 0; i < a.numel(); ++i) amax = std::max(amax, std::fabs(a.data<float>()[i]));
  const float sa = static_cast<float>(amax / 127.0);
  for (int64_t n = 0; n < N; ++n) {
    float wmax = 0;
    for (int64_t k = 0; k < K; ++k) wmax = std::max(wmax, std::fabs(w.data<float>()[k * N + n]));
    const float sw = static_cast<float>(wmax / 127.0);
    for (int64_t bm = 0; bm < B * M; ++bm) {
      int64_t r = 0;
      for (int64_t k = 0; k < K; ++k) r += quantize(a.data<float>()[bm * K + k], sa) * quantize(w.data<float>()[k * N + n], sw);
      const float expect = static_cast<float>(r) * (sa * sw);
      EXPECT_EQ(emulated[0].data<float>()[bm * N + n], expect) << "row " << bm << " col " << n;
      EXPECT_NEAR(emulated[0].data<float>()[bm * N + n], fp32[0].data<float>()[bm * N + n], 0.05);
    }
  }
}

// BF16 datapath = FP32 convolution of BF16-rounded inputs (up to summation
// order); FP32 datapath = the reference Conv. Strides, pads, groups, bias.
TEST(EmulatedOps, ConvThroughBf16EqualsTheReferenceOnRoundedInputs) {
  const Tensor xin = random_tensor({2, 4, 9, 7}, 3), w = random_tensor({6, 2, 3, 3}, 4, 0.3f), bias = random_tensor({6}, 5);
  auto build = [&](GraphBuilder& g, const Tensor& xv, const Tensor& wv) {
    ir::Value* x = g.input("x", DType::Float32, xv.dims());
    g.output(g.node("Conv", {x, g.initializer("w", wv), g.initializer("b", bias)},
                    {train::attr_ints("pads", {1, 0, 1, 2}), train::attr_ints("strides", {2, 1}),
                     train::attr_int("group", 2)}));
  };
  GraphBuilder g1;
  build(g1, xin, w);
  auto [fp32, bf16] = run_both(g1, "bf16", {{"x", xin}}, 1);
  Tensor xr = xin.clone(), wr = w.clone();
  for (int64_t i = 0; i < xr.numel(); ++i) xr.data<float>()[i] = bf16_round(xr.data<float>()[i]);
  for (int64_t i = 0; i < wr.numel(); ++i) wr.data<float>()[i] = bf16_round(wr.data<float>()[i]);
  GraphBuilder g2;
  build(g2, xr, wr);
  auto [rounded_ref, fp32_emulated] = run_both(g2, "fp32", {{"x", xr}}, 1);
  ASSERT_EQ(bf16[0].dims(), fp32[0].dims());
  double worst = 0, moved = 0;
  for (int64_t i = 0; i < bf16[0].numel(); ++i) {
    const float r = rounded_ref[0].data<float>()[i];
    EXPECT_NEAR(bf16[0].data<float>()[i], r, 1e-5 * (1 + std::fabs(r))) << i;
    EXPECT_NEAR(fp32_emulated[0].data<float>()[i], r, 1e-5 * (1 + std::fabs(r))) << i;
    worst = std::max(worst, static_cast<double>(std::fabs(bf16[0].data<float>()[i] - fp32[0].data<float>()[i])));
    moved += bf16[0].data<float>()[i] != fp32[0].data<float>()[i];
  }
  EXPECT_GT(moved, 0);     // BF16 inputs do change the result...
  EXPECT_LT(worst, 0.05);  // ...by a BF16-sized amount
}

// A 2:4-sparse FP32 datapath computes the model with its weights pruned by
// magnitude along K: Conv (K = Cin/group x kh x kw per output channel) and a
// transposed Gemm weight; an activation x activation MatMul stays dense.
TEST(EmulatedOps, TwoOfFourSparsityPrunesTheWeightsAlongK) {
  const Tensor xin = random_tensor({1, 4, 6, 6}, 11), w = random_tensor({3, 4, 3, 3}, 12, 0.3f),
               fc = random_tensor({5, 12}, 13, 0.3f);
  auto build = [&](GraphBuilder& g, const Tensor& wv, const Tensor& fcv) {
    ir::Value* x = g.input("x", DType::Float32, xin.dims());
    ir::Value* y = g.node("Conv", {x, g.initializer("w", wv)}, {train::attr_ints("strides", {2, 2})});  // 1x3x2x2
    ir::Value* flat = g.node("Reshape", {y, g.initializer("shape", Tensor::from_vector<int64_t>({1, 12}, {2}))});
    ir::Value* z = g.node("Gemm", {flat, g.initializer("fc", fcv)}, {train::attr_int("transB", 1)});
    g.output(g.node("MatMul", {g.node("Transpose", {z}), z}));  // 5x5 from two computed tensors
  };
  GraphBuilder g1;
  build(g1, w, fc);
  auto [dense, sparse] = run_both(g1, "fp32,sparsity=2:4", {{"x", xin}}, 3);
  Tensor wp = w.clone(), fcp = fc.clone();
  const auto pw = numerics::prune_2of4(w.data<float>(), 3, 36, 36, 1), pf = numerics::prune_2of4(fc.data<float>(), 5, 12, 12, 1);
  std::copy(pw.begin(), pw.end(), wp.data<float>());
  std::copy(pf.begin(), pf.end(), fcp.data<float>());
  GraphBuilder g2;
  build(g2, wp, fcp);
  auto [pruned_ref, unused] = run_both(g2, "fp32", {{"x", xin}}, 3);
  double moved = 0;
  for (int64_t i = 0; i < sparse[0].numel(); ++i) {
    const float r = pruned_ref[0].data<float>()[i];
    EXPECT_NEAR(sparse[0].data<float>()[i], r, 1e-4 * (1 + std::fabs(r))) << i;
    moved += std::fabs(sparse[0].data<float>()[i] - dense[0].data<float>()[i]) > 1e-3;
  }
  EXPECT_GT(moved, 0);  // pruning half the weights does change the result
}

// The emulation pipeline from C++, no CLI: the bundled digits CNN on its
// sample digits through BF16, INT8 and 2:4-sparse INT8. BF16 stays closest to
// FP32, pruning half the weights without retraining moves it most, and a
// weight-only precision is listed as kept FP32 with its reason.
TEST(EmulationPipeline, DigitsCnnThroughThreePrecisionsFromCpp) {
  auto model = onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/digits_cnn.onnx");
  quant::EmulationRequest r;
  r.precisions = {"bf16", "int8", "int8,sparsity=2:4", "w4a16"};
  r.max_samples = 16;
  r.keep_models = true;
  const auto data = quant::sample_folder(std::string(DUET_SOURCE_DIR) + "/data/samples/digits", *model->graph);
  const quant::EmulationResult e = quant::emulate_precisions(*model, r, data);
  EXPECT_EQ(e.samples, std::min<size_t>(16, data.count));
  ASSERT_EQ(e.precisions.size(), 4u);
  const auto& bf16 = e.precisions[0].comparison, &int8 = e.precisions[1].comparison, &sparse = e.precisions[2].comparison;
  EXPECT_EQ(e.precisions[0].rewrite.emulated, 4);
  EXPECT_LT(bf16.rel_l2, 0.01);
  EXPECT_LT(bf16.rel_l2, int8.rel_l2);
  EXPECT_LT(int8.rel_l2, sparse.rel_l2);
  EXPECT_EQ(e.precisions[2].precision.str(), "int8,sparsity=2:4");
  EXPECT_EQ(e.precisions[3].rewrite.emulated, 0);
  EXPECT_EQ(e.precisions[3].rewrite.kept_fp32.size(), 4u);
  EXPECT_DOUBLE_EQ(e.precisions[3].comparison.rel_l2, 0);
  int annotated = 0;
  for (auto& n : e.precisions[1].model->graph->nodes) annotated += n->annotations.count("precision") && n->annotations.at("precision") == "int8";
  EXPECT_EQ(annotated, 4);
  quant::EmulationRequest bad = r;
  bad.rewrite.exclude_op_types = {"Relu"};
  EXPECT_THROW(quant::emulate_precisions(*model, bad, data), Error);
}

TEST(EmulatedOps, GemmKeepsAlphaBetaAndBroadcastBias) {
  const Tensor a = random_tensor({4, 6}, 6), w = random_tensor({3, 6}, 7), c = random_tensor({3}, 8);
  GraphBuilder g;
  ir::Value* x = g.input("x", DType::Float32, {4, 6});
  g.output(g.node("Gemm", {x, g.initializer("w", w), g.initializer("c", c)},
                  {train::attr_int("transB", 1), train::attr_float("alpha", 0.5f), train::attr_float("beta", 2.0f)}));
  auto [ref, emu] = run_both(g, "x=fp32,acc=fp32", {{"x", a}}, 1);
  ASSERT_EQ(emu[0].dims(), (Dims{4, 3}));
  for (int64_t i = 0; i < 12; ++i) EXPECT_NEAR(emu[0].data<float>()[i], ref[0].data<float>()[i], 1e-5) << i;
}

TEST(EmulatedOps, MatMulWithAnEmptyBatchGivesAnEmptyOutput) {
  GraphBuilder g;
  ir::Value* x = g.input("x", DType::Float32, {0, 4, 8});
  g.output(g.node("MatMul", {x, g.initializer("w", random_tensor({1, 8, 5}, 10))}));
  auto [fp32, emulated] = run_both(g, "int8", {{"x", Tensor::zeros(DType::Float32, {0, 4, 8})}}, 1);
  EXPECT_EQ(emulated[0].dims(), (Dims{0, 4, 5}));
  EXPECT_EQ(fp32[0].dims(), emulated[0].dims());
}

TEST(EmulatePass, KeepsWhatItCannotEmulateAndSaysWhy) {
  GraphBuilder g;
  ir::Value* x = g.input("x", DType::Int32, {2, 3});
  Tensor w = Tensor::zeros(DType::Int32, {3, 2});
  g.output(g.node("MatMul", {x, g.initializer("w", w)}));
  ir::Value* f = g.input("f", DType::Float32, {2, 3});
  g.output(g.node("MatMul", {f, g.initializer("v", random_tensor({3, 2}, 9))}));
  auto model = g.finish();
  passes::infer_shapes(*model);
  passes::EmulateOptions options;
  const auto r = passes::emulate_datapath(*model, parse_precision("bf16"), options);
  EXPECT_EQ(r.emulated, 1);
  ASSERT_EQ(r.kept_fp32.size(), 1u);
  EXPECT_NE(r.kept_fp32[0].second.find("int32, not float32"), std::string::npos) << r.kept_fp32[0].second;
  EXPECT_EQ(model->opset("com.duet"), 1);
}

TEST(EmulateCli, BundledClassifierThroughDevicePresets) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  auto r = run_command(cli() + " emulate " + model + " --data " + source_dir() +
                       "/data/samples/cls -d fp32 -d bf16 -d int8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["datapaths"].size(), 3u);
  for (const auto& d : j["datapaths"]) {
    EXPECT_EQ(d["emulated_nodes"], 54) << d.dump();  // every Conv and the Gemm
    EXPECT_EQ(d["outputs"][0]["argmax_agree"], 1.0) << d.dump();
  }
  EXPECT_LT(j["datapaths"][0]["rel_l2"].get<double>(), 1e-6);  // fp32: summation order only
  EXPECT_GT(j["datapaths"][2]["rel_l2"].get<double>(), j["datapaths"][0]["rel_l2"].get<double>());
  auto list = run_command(cli() + " emulate --list --json");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_GE(nlohmann::json::parse(list.output)["items"].size(), 10u);
}

TEST(EmulateCli, BadDatapathIsOneClearError) {
  const std::string model = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
  auto r = run_command(cli() + " emulate " + model + " -d x=bf16,acc=int32");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128);
  EXPECT_EQ(r.output.rfind("duet: error:", 0), 0u) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace
}  // namespace duet
