// Every gradient rule checked against central finite differences in float64:
// for a one-op graph y = op(inputs), the loss sum(y * R) (R fixed random) is
// differentiated by train::add_gradients and by perturbing input elements.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>

#include "duet/onnx/onnx_io.h"
#include "duet/passes/optimize.h"
#include "duet/passes/shape_inference.h"
#include "duet/passes/upgrade_opset.h"
#include "duet/runtime/session.h"
#include "duet/train/autodiff.h"
#include "duet/train/graph_builder.h"
#include "test_util.h"

using namespace duet;
using train::attr_float;
using train::attr_int;
using train::attr_ints;
using train::GraphBuilder;

namespace {

Tensor random_double(const Dims& dims, uint32_t seed, double lo = -1, double hi = 1) {
  Tensor t(DType::Float64, dims);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = u(rng);
  return t;
}

struct Input {
  std::string name;
  Tensor value;
  bool differentiate = true;
};

// Builds the op under test from the graph inputs (in the order given) and returns its output.
using Build = std::function<ir::Value*(GraphBuilder&, const std::vector<ir::Value*>&)>;

std::unique_ptr<ir::Model> model_with_loss(const Build& build, const std::vector<Input>& inputs, const Tensor* r,
                                           int64_t opset) {
  GraphBuilder b(opset);
  std::vector<ir::Value*> values;
  for (auto& in : inputs) values.push_back(b.input(in.name, in.value.dtype(), in.value.dims()));
  ir::Value* y = build(b, values);
  if (r) {
    ir::Value* weighted = b.node("Mul", {y, b.initializer("R", *r)});
    y = b.node("ReduceSum", {weighted}, {attr_int("keepdims", 0)});
  }
  b.output(y, r ? "loss" : "y");
  return b.finish();
}

std::map<std::string, Tensor> feeds_of(const std::vector<Input>& inputs) {
  std::map<std::string, Tensor> f;
  for (auto& in : inputs) f[in.name] = in.value;
  return f;
}

double run_scalar(runtime::Session& s, const std::map<std::string, Tensor>& feeds) {
  return s.run(feeds).at(0).tensor.get_double(0);
}

void check_gradients(const Build& build, std::vector<Input> inputs, int64_t opset = 17, double tol = 1e-6) {
  // The op's output shape, then a fixed random R of that shape.
  std::shared_ptr<ir::Model> plain = model_with_loss(build, inputs, nullptr, opset);
  Tensor y = runtime::Session(plain).run(feeds_of(inputs)).at(0).tensor;
  const Tensor r = random_double(y.dims(), 99);

  std::shared_ptr<ir::Model> graded = model_with_loss(build, inputs, &r, opset);
  passes::infer_shapes(*graded);
  train::GradientRequest req;
  req.loss = "loss";
  for (auto& in : inputs)
    if (in.differentiate) req.wrt.push_back(in.name);
  const auto names = train::add_gradients(*graded, req);
  runtime::Session analytic(graded);
  const auto outs = analytic.run(feeds_of(inputs));
  std::map<std::string, Tensor> grads;
  for (auto& o : outs) grads[o.name] = o.tensor;

  std::shared_ptr<ir::Model> loss_model = model_with_loss(build, inputs, &r, opset);
  runtime::Session numeric(loss_model);
  for (auto& in : inputs) {
    if (!in.differentiate) continue;
    const Tensor& g = grads.at(names.at(in.name));
    ASSERT_EQ(g.dims(), in.value.dims()) << in.name;
    const int64_t n = in.value.numel();
    const int64_t step = std::max<int64_t>(1, n / 24);
    for (int64_t i = 0; i < n; i += step) {
      auto feeds = feeds_of(inputs);
      Tensor plus = in.value.clone(), minus = in.value.clone();
      const double h = 1e-6 * std::max(1.0, std::fabs(in.value.data<double>()[i]));
      plus.data<double>()[i] += h;
      minus.data<double>()[i] -= h;
      feeds[in.name] = plus;
      const double lp = run_scalar(numeric, feeds);
      feeds[in.name] = minus;
      const double lm = run_scalar(numeric, feeds);
      const double want = (lp - lm) / (2 * h);
      EXPECT_NEAR(g.data<double>()[i], want, tol * std::max(1.0, std::fabs(want)))
          << "d loss / d " << in.name << "[" << i << "]";
    }
  }
}

Build unary(const std::string& op, std::vector<ir::Attribute> attrs = {}) {
  return [=](GraphBuilder& b, const std::vector<ir::Value*>& v) { return b.node(op, {v[0]}, attrs); };
}
Build binary(const std::string& op) {
  return [=](GraphBuilder& b, const std::vector<ir::Value*>& v) { return b.node(op, {v[0], v[1]}); };
}

}  // namespace

TEST(Autodiff, ElementwiseBinaryOpsSumBroadcastGradients) {
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) {
    SCOPED_TRACE(op);
    check_gradients(binary(op), {{"a", random_double({2, 3, 4}, 1)}, {"b", random_double({3, 1}, 2, 0.5, 2)}});
  }
}

TEST(Autodiff, Activations) {
  const Tensor x = random_double({3, 5}, 3);
  for (const char* op : {"Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Identity", "Erf"}) {
    SCOPED_TRACE(op);
    check_gradients(unary(op), {{"x", x}});
  }
  check_gradients(unary("LeakyRelu", {attr_float("alpha", 0.2f)}), {{"x", x}});
  check_gradients(unary("Log"), {{"x", random_double({3, 5}, 4, 0.5, 3)}});
  check_gradients(unary("Sqrt"), {{"x", random_double({3, 5}, 4, 0.5, 3)}});
}

TEST(Autodiff, PiecewiseLinearActivationsOfMobileNetsAndPaddleOcr) {
  const Tensor x = random_double({3, 5}, 31, -4, 4);
  check_gradients(unary("HardSigmoid", {attr_float("alpha", 0.2f), attr_float("beta", 0.5f)}), {{"x", x}});
  check_gradients(unary("HardSwish"), {{"x", x}}, 17);
  // Clip with both bounds, and with the lower one only (gradients need opset 13: bounds are inputs).
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Clip", {v[0], b.initializer("lo", Tensor::scalar<double>(-1.5)), b.initializer("hi", Tensor::scalar<double>(2.0))});
      },
      {{"x", x}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Clip", {v[0], b.initializer("lo", Tensor::scalar<double>(0.0))});
      },
      {{"x", x}});
}

TEST(Autodiff, ConvTransposeWithStridesPadsGroupsAndOutputPadding) {
  // PP-OCR's detector upsamples by 2 with 2x2 kernels; here odd sizes, pads, dilation and groups too.
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("ConvTranspose", {v[0], v[1], v[2]},
                      {attr_ints("strides", {2, 2}), attr_ints("pads", {1, 0, 0, 1}), attr_ints("output_padding", {1, 0}),
                       attr_int("group", 2)});
      },
      {{"x", random_double({2, 4, 3, 4}, 33)}, {"w", random_double({4, 3, 3, 2}, 34)}, {"b", random_double({6}, 35)}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("ConvTranspose", {v[0], v[1]}, {attr_ints("strides", {2, 2}), attr_ints("kernel_shape", {2, 2})});
      },
      {{"x", random_double({1, 3, 4, 5}, 36)}, {"w", random_double({3, 2, 2, 2}, 37)}});
}

TEST(Autodiff, ResizeNearestAndLinearUpAndDown) {
  auto resize = [](std::vector<ir::Attribute> attrs, std::vector<float> scales, std::vector<int64_t> sizes = {}) {
    return [=](GraphBuilder& b, const std::vector<ir::Value*>& v) {
      ir::Value* roi = b.initializer("roi", Tensor(DType::Float32, {0}));
      ir::Value* sc = b.initializer("scales", scales.empty() ? Tensor(DType::Float32, {0})
                                                             : Tensor::from_vector<float>(scales, {static_cast<int64_t>(scales.size())}));
      std::vector<ir::Value*> in{v[0], roi, sc};
      if (!sizes.empty()) in.push_back(b.initializer("sizes", Tensor::from_vector<int64_t>(sizes, {static_cast<int64_t>(sizes.size())})));
      return b.node("Resize", in, attrs);
    };
  };
  const Tensor x = random_double({1, 2, 3, 4}, 38);
  // PP-OCR's detector: nearest, asymmetric coordinates, floor, x2.
  check_gradients(resize({train::attr_string("mode", "nearest"), train::attr_string("coordinate_transformation_mode", "asymmetric"),
                          train::attr_string("nearest_mode", "floor")},
                         {1, 1, 2, 2}),
                  {{"x", x}});
  check_gradients(resize({train::attr_string("mode", "linear")}, {1, 1, 1.5f, 2}), {{"x", x}});
  check_gradients(resize({train::attr_string("mode", "linear"), train::attr_string("coordinate_transformation_mode", "align_corners")},
                         {}, {1, 2, 2, 3}),
                  {{"x", x}});
}

TEST(Autodiff, ConstantPadSlicesThePaddingOff) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Pad", {v[0], b.initializer("pads", Tensor::from_vector<int64_t>({0, 1, 2, 0, 0, 3}, {6}))});
      },
      {{"x", random_double({2, 3, 4}, 39)}});
}

// CTC by brute force: the probability of a target is the sum over every path of T symbols that collapses to it
// (repeats merged, then blanks dropped).
double ctc_brute_force_nll(const Tensor& scores, int64_t n, const std::vector<int64_t>& target) {
  const int64_t T = scores.dim(1), C = scores.dim(2);
  std::vector<double> p(T * C);
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(scores.data<double>()[(n * T + t) * C + c]);
    for (int64_t c = 0; c < C; ++c) p[t * C + c] = std::exp(scores.data<double>()[(n * T + t) * C + c]) / sum;
  }
  double total = 0;
  std::vector<int64_t> path(T, 0);
  for (int64_t code = 0; code < static_cast<int64_t>(std::pow(C, T)); ++code) {
    int64_t v = code;
    double prob = 1;
    for (int64_t t = 0; t < T; ++t) path[t] = v % C, v /= C, prob *= p[t * C + path[t]];
    std::vector<int64_t> collapsed;
    for (int64_t t = 0; t < T; ++t)
      if (path[t] != 0 && (t == 0 || path[t] != path[t - 1])) collapsed.push_back(path[t]);
    if (collapsed == target) total += prob;
  }
  return -std::log(total);
}

TEST(Autodiff, CtcLossIsPyTorchsDefinitionAndItsGradientChecks) {
  const Tensor scores = random_double({3, 5, 3}, 40, -2, 2);
  // Targets padded with -1: "1 2", "1 1" (a repeat needs a blank between), "" (all blank).
  const Tensor targets = Tensor::from_vector<int64_t>({1, 2, 1, 1, -1, -1}, {3, 2});
  const std::vector<std::vector<int64_t>> seqs = {{1, 2}, {1, 1}, {}};
  auto ctc = [](const std::string& reduction) {
    return [=](GraphBuilder& b, const std::vector<ir::Value*>& v) {
      return b.node("CtcLoss", {v[0], v[1]}, {train::attr_string("reduction", reduction)}, "com.duet");
    };
  };
  // Values: "none" per sample; "mean" averages nll / target length (length 0 counts as 1), as PyTorch does.
  std::shared_ptr<ir::Model> none = [&] {
    GraphBuilder b(17);
    ir::Value* y = ctc("none")(b, {b.input("s", DType::Float64, {3, 5, 3}), b.input("t", DType::Int64, {3, 2})});
    b.output(y, "y");
    return std::shared_ptr<ir::Model>(b.finish());
  }();
  const Tensor nll = runtime::Session(none).run({{"s", scores}, {"t", targets}}).at(0).tensor;
  double mean = 0;
  for (int64_t n = 0; n < 3; ++n) {
    const double want = ctc_brute_force_nll(scores, n, seqs[n]);
    EXPECT_NEAR(nll.data<double>()[n], want, 1e-12 * std::max(1.0, want)) << "sample " << n;
    mean += want / std::max<size_t>(1, seqs[n].size()) / 3;
  }
  std::shared_ptr<ir::Model> mean_model = [&] {
    GraphBuilder b(17);
    ir::Value* y = ctc("mean")(b, {b.input("s", DType::Float64, {3, 5, 3}), b.input("t", DType::Int64, {3, 2})});
    b.output(y, "y");
    return std::shared_ptr<ir::Model>(b.finish());
  }();
  EXPECT_NEAR(runtime::Session(mean_model).run({{"s", scores}, {"t", targets}}).at(0).tensor.data<double>()[0], mean, 1e-12);
  for (const char* reduction : {"mean", "sum", "none"}) {
    SCOPED_TRACE(reduction);
    check_gradients(ctc(reduction), {{"s", scores}, {"t", targets, false}});
  }
}

TEST(Autodiff, PowWithConstantExponent) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Pow", {v[0], b.initializer("p", Tensor::scalar<double>(3.0))});
      },
      {{"x", random_double({4, 3}, 5)}});
}

TEST(Autodiff, MatMulWithBatchBroadcast) {
  check_gradients(binary("MatMul"), {{"a", random_double({2, 3, 4}, 6)}, {"b", random_double({4, 5}, 7)}});
  check_gradients(binary("MatMul"), {{"a", random_double({3, 4}, 6)}, {"b", random_double({2, 4, 5}, 7)}});
}

TEST(Autodiff, GemmEveryTransposeAlphaBetaAndBroadcastBias) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      SCOPED_TRACE("transA " + std::to_string(ta) + " transB " + std::to_string(tb));
      Dims a = ta ? Dims{4, 3} : Dims{3, 4}, bd = tb ? Dims{5, 4} : Dims{4, 5};
      check_gradients(
          [=](GraphBuilder& b, const std::vector<ir::Value*>& v) {
            return b.node("Gemm", {v[0], v[1], v[2]},
                          {attr_int("transA", ta), attr_int("transB", tb), attr_float("alpha", 0.5f),
                           attr_float("beta", 2.0f)});
          },
          {{"a", random_double(a, 8)}, {"b", random_double(bd, 9)}, {"c", random_double({5}, 10)}});
    }
}

TEST(Autodiff, ConvWithPadsStridesDilationsAndGroups) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Conv", {v[0], v[1], v[2]},
                      {attr_ints("pads", {1, 0, 2, 1}), attr_ints("strides", {2, 1}), attr_ints("dilations", {1, 2}),
                       attr_int("group", 2)});
      },
      {{"x", random_double({2, 4, 7, 6}, 11)}, {"w", random_double({6, 2, 3, 2}, 12)}, {"b", random_double({6}, 13)}});
  // 1-D, no bias
  check_gradients(binary("Conv"), {{"x", random_double({2, 3, 9}, 14)}, {"w", random_double({4, 3, 3}, 15)}});
}

TEST(Autodiff, Pooling) {
  const Tensor x = random_double({2, 3, 7, 6}, 16);
  check_gradients(unary("MaxPool", {attr_ints("kernel_shape", {3, 2}), attr_ints("strides", {2, 2}),
                                    attr_ints("pads", {1, 0, 1, 1})}),
                  {{"x", x}});
  check_gradients(unary("AveragePool", {attr_ints("kernel_shape", {3, 3}), attr_ints("strides", {2, 1}),
                                        attr_ints("pads", {1, 1, 1, 1}), attr_int("count_include_pad", 1)}),
                  {{"x", x}});
  check_gradients(unary("AveragePool", {attr_ints("kernel_shape", {2, 2}), attr_ints("pads", {1, 1, 0, 0})}),
                  {{"x", x}});
  check_gradients(unary("GlobalAveragePool"), {{"x", x}});
}

TEST(Autodiff, Reductions) {
  const Tensor x = random_double({2, 3, 4}, 17);
  for (const char* op : {"ReduceSum", "ReduceMean"}) {
    SCOPED_TRACE(op);
    for (int keep = 0; keep < 2; ++keep)
      check_gradients(
          [=](GraphBuilder& b, const std::vector<ir::Value*>& v) {
            return b.node(op, {v[0], b.initializer("axes", Tensor::from_vector<int64_t>({-1, 0}, {2}))},
                          {attr_int("keepdims", keep)});
          },
          {{"x", x}}, 18);
    check_gradients(unary(op, {attr_int("keepdims", 0)}), {{"x", x}}, 18);  // all axes
  }
}

TEST(Autodiff, ShapeOps) {
  const Tensor x = random_double({2, 3, 4}, 19);
  check_gradients(unary("Flatten", {attr_int("axis", 2)}), {{"x", x}});
  check_gradients(unary("Transpose", {attr_ints("perm", {2, 0, 1})}), {{"x", x}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Reshape", {v[0], b.initializer("shape", Tensor::from_vector<int64_t>({4, -1}, {2}))});
      },
      {{"x", x}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Concat", {v[0], v[1]}, {attr_int("axis", 1)});
      },
      {{"a", x}, {"b", random_double({2, 5, 4}, 20)}});
  check_gradients(  // only the second part reaches the loss: the first gets zeros
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        auto parts = b.nodes("Split", {v[0], b.initializer("split", Tensor::from_vector<int64_t>({1, 3}, {2}))}, 2,
                             {attr_int("axis", 2)});
        return b.node("Mul", {parts[1], parts[1]});
      },
      {{"x", x}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Expand", {v[0], b.initializer("shape", Tensor::from_vector<int64_t>({2, 3, 4}, {3}))});
      },
      {{"x", random_double({3, 1}, 21)}});
}

TEST(Autodiff, SliceWithNegativeAndClampedBounds) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Slice", {v[0], b.initializer("starts", Tensor::from_vector<int64_t>({1, -3}, {2})),
                                b.initializer("ends", Tensor::from_vector<int64_t>({100, -1}, {2})),
                                b.initializer("axes", Tensor::from_vector<int64_t>({0, 2}, {2}))});
      },
      {{"x", random_double({3, 2, 5}, 44)}});
}

TEST(Autodiff, GatherAddsUpRepeatedIndices) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Gather", {v[0], b.initializer("idx", Tensor::from_vector<int64_t>({2, 0, 2, -1}, {2, 2}))},
                      {attr_int("axis", 1)});
      },
      {{"x", random_double({3, 4, 2}, 43)}});
}

TEST(Autodiff, SoftmaxFamilyAndWhere) {
  const Tensor x = random_double({3, 4, 5}, 22);
  check_gradients(unary("Softmax", {attr_int("axis", 1)}), {{"x", x}});
  check_gradients(unary("LogSoftmax"), {{"x", x}});
  Tensor cond(DType::Bool, {3, 4, 5});
  for (int64_t i = 0; i < cond.numel(); ++i) cond.data<bool>()[i] = i % 3 == 0;
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) { return b.node("Where", {v[0], v[1], v[2]}); },
      {{"c", cond, false}, {"a", x}, {"b", random_double({5}, 23)}});
}

TEST(Autodiff, SoftmaxCrossEntropyLossWithWeightsAndIgnoredLabels) {
  const Tensor labels = Tensor::from_vector<int64_t>({0, 2, 1, 2, 3, 1}, {6});
  for (const char* reduction : {"mean", "sum", "none"}) {
    SCOPED_TRACE(reduction);
    check_gradients(
        [=](GraphBuilder& b, const std::vector<ir::Value*>& v) {
          return b.node("SoftmaxCrossEntropyLoss", {v[0], v[1], v[2]},
                        {train::attr_string("reduction", reduction), attr_int("ignore_index", 3)});
        },
        {{"scores", random_double({6, 4}, 24, -3, 3)}, {"labels", labels, false},
         {"weights", random_double({4}, 25, 0.5, 2), false}});
  }
  // Spatial scores (N, C, D)
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) { return b.node("SoftmaxCrossEntropyLoss", {v[0], v[1]}); },
      {{"scores", random_double({2, 3, 4}, 26)}, {"labels", Tensor::from_vector<int64_t>({0, 1, 2, 1, 2, 0, 0, 1}, {2, 4}), false}});
}

TEST(Autodiff, NormalizationInTrainingMode) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.nodes("BatchNormalization", {v[0], v[1], v[2], v[3], v[4]}, 3,
                       {attr_int("training_mode", 1), attr_float("epsilon", 1e-3f)})[0];
      },
      {{"x", random_double({3, 4, 2, 3}, 27)},
       {"scale", random_double({4}, 28)},
       {"bias", random_double({4}, 29)},
       {"mean", random_double({4}, 30), false},
       {"var", random_double({4}, 31, 0.5, 1), false}});
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("LayerNormalization", {v[0], v[1], v[2]}, {attr_int("axis", -2)});
      },
      {{"x", random_double({3, 4, 5}, 32)}, {"scale", random_double({4, 5}, 33)}, {"bias", random_double({4, 5}, 34)}});
}

TEST(Autodiff, BatchNormalizationInInferenceModeUsesRunningStatistics) {
  // A frozen BatchNormalization (fine-tuning): its scale and shift learn, its statistics stay.
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("BatchNormalization", {v[0], v[1], v[2], v[3], v[4]});
      },
      {{"x", random_double({2, 3, 4}, 35)},
       {"scale", random_double({3}, 36)},
       {"bias", random_double({3}, 37)},
       {"mean", random_double({3}, 38), false},
       {"var", random_double({3}, 39, 0.5, 1), false}});
}

TEST(Autodiff, DropoutInTrainingModeUsesItsSeededMask) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        return b.node("Dropout", {v[0], b.initializer("ratio", Tensor::scalar<double>(0.3)),
                                  b.initializer("training", Tensor::scalar<bool>(true))},
                      {attr_int("seed", 5)});
      },
      {{"x", random_double({4, 6}, 40)}});
}

TEST(Autodiff, ValuesReadTwiceSumTheirGradients) {
  check_gradients(
      [](GraphBuilder& b, const std::vector<ir::Value*>& v) {
        ir::Value* t = b.node("Tanh", {v[0]});
        return b.node("Mul", {b.node("MatMul", {t, v[1]}), b.node("MatMul", {t, v[1]})});
      },
      {{"x", random_double({3, 4}, 41)}, {"w", random_double({4, 4}, 42)}});
}

TEST(Autodiff, ClearErrors) {
  GraphBuilder b(17);
  ir::Value* x = b.input("x", DType::Float32, {2, 3});
  ir::Value* y = b.node("Hardmax", {x});
  ir::Value* loss = b.node("ReduceSum", {y}, {attr_int("keepdims", 0)});
  b.output(loss, "loss");
  auto model = b.finish();
  passes::infer_shapes(*model);
  train::GradientRequest req{.loss = "loss", .wrt = {"x"}};
  try {
    train::add_gradients(*model, req);
    FAIL() << "expected an error";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("no gradient rule for Hardmax"), std::string::npos) << e.what();
  }
  req.loss = "nope";
  EXPECT_THROW(train::add_gradients(*model, req), Error);
  req.loss = x->name;  // not a scalar
  EXPECT_THROW(train::add_gradients(*model, req), Error);
}

// The oneDNN backend runs training graphs' convolutions (runtime weights) and
// their gradients; its results must match the reference kernels.
TEST(AutodiffCpuBackend, ConvAndConvGradMatchTheReferenceKernels) {
  auto build = [] {
    GraphBuilder b(17, 3);
    ir::Value* x = b.input("x", DType::Float32, {4, 3, 9, 7});
    ir::Value* w = b.input("w", DType::Float32, {8, 3, 3, 3});
    ir::Value* bias = b.input("b", DType::Float32, {8});
    ir::Value* y = b.node("Relu", {b.node("Conv", {x, w, bias}, {attr_ints("pads", {1, 0, 1, 2}), attr_ints("strides", {2, 1})})});
    ir::Value* r = b.weight("r", {4, 8, 5, 7}, 1);
    b.output(b.node("ReduceSum", {b.node("Mul", {y, r})}, {attr_int("keepdims", 0)}), "loss");
    auto m = b.finish();
    passes::infer_shapes(*m);
    train::add_gradients(*m, {.loss = "loss", .wrt = {"x", "w", "b"}});
    return std::shared_ptr<ir::Model>(std::move(m));
  };
  std::map<std::string, Tensor> feeds;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 1);
  for (auto [name, dims] : std::vector<std::pair<std::string, Dims>>{{"x", {4, 3, 9, 7}}, {"w", {8, 3, 3, 3}}, {"b", {8}}}) {
    Tensor t(DType::Float32, dims);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
    feeds[name] = t;
  }
  auto reference = runtime::Session(build()).run(feeds);
  runtime::SessionOptions cpu;
  cpu.backend = "cpu";
  auto model = build();
  runtime::prepare_model(*model, cpu);
  runtime::Session session(model, cpu);
  auto got = session.run(feeds);
  bool conv_grad_claimed = false;
  for (auto& part : session.partitions())
    for (auto* n : part) conv_grad_claimed = conv_grad_claimed || n->op_type == "ConvGrad";
  EXPECT_TRUE(conv_grad_claimed) << "ConvGrad runs on oneDNN";
  ASSERT_EQ(got.size(), reference.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const Tensor &a = got[i].tensor, &e = reference[i].tensor;
    ASSERT_EQ(a.dims(), e.dims()) << got[i].name;
    double scale = 0, err = 0;
    for (int64_t k = 0; k < e.numel(); ++k) {
      scale = std::max(scale, std::fabs(e.get_double(k)));
      err = std::max(err, std::fabs(a.get_double(k) - e.get_double(k)));
    }
    std::printf("%s max abs difference %.3g (scale %.3g)\n", got[i].name.c_str(), err, scale);
    EXPECT_LE(err, 1e-5 * std::max(1.0, scale)) << got[i].name << " first values " << a.get_double(0) << " "
                                                << a.get_double(1) << " vs " << e.get_double(0) << " " << e.get_double(1);
  }
}

// Fine-tuning a real model needs a rule on every path from its weights to its output: each PaddleOCR model
// (opset raised as the trainer does) gets the gradient of every float initializer of every Conv, MatMul and
// ConvTranspose, and one training step's gradients are finite. (Each rule is checked by finite differences above.)
TEST(Autodiff, EveryWeightOfThePaddleOcrModelsGetsAGradient) {
  DUET_REQUIRE_SHARED();
  const std::filesystem::path root = std::filesystem::path(testutil::shared_dir()) / "models/paddleocr";
  const std::vector<std::pair<const char*, Dims>> models = {{"ch_ppocr_mobile_v2.0_cls_infer.onnx", {2, 3, 48, 192}},
                                                            {"ch_PP-OCRv4_rec_infer.onnx", {2, 3, 48, 320}},
                                                            {"ch_PP-OCRv4_det_infer.onnx", {1, 3, 64, 96}}};
  for (const auto& [file, dims] : models) {
    SCOPED_TRACE(file);
    std::shared_ptr<ir::Model> m = onnx_io::load_model((root / file).string());
    m->graph->inputs[0]->type.shape = Shape::from(dims);  // a training batch has its shape, as the trainer binds it
    passes::upgrade_opset(*m, 13);
    passes::fold_constants(*m);  // PaddleOCR's weights are Constant nodes
    passes::infer_shapes(*m);
    // loss = sum of the squared first output (a stand-in for the task loss; a plain sum of softmax rows is constant)
    auto& g = *m->graph;
    ir::Value* y = g.outputs[0];
    ir::Value* y2 = g.value("test_square");
    y2->producer = g.add_node("Mul", {y, y}, {y2}, "test_square_node");
    ir::Value* loss = g.value("test_loss");
    ir::Node* sum = g.add_node("ReduceSum", {y2}, {loss}, "test_loss_node");
    sum->attributes.push_back(attr_int("keepdims", 0));
    loss->producer = sum;
    g.outputs = {loss};
    passes::infer_shapes(*m);
    train::GradientRequest req;
    req.loss = "test_loss";
    for (auto& n : g.nodes)
      if ((n->op_type == "Conv" || n->op_type == "MatMul" || n->op_type == "ConvTranspose") && n->inputs.size() > 1 &&
          g.initializers.count(n->inputs[1]->name))
        req.wrt.push_back(n->inputs[1]->name);
    ASSERT_FALSE(req.wrt.empty());
    const auto names = train::add_gradients(*m, req);
    EXPECT_EQ(names.size(), req.wrt.size());
    // One backward pass on an input in the models' range: every weight gradient is finite and some are not zero.
    Tensor x(DType::Float32, dims);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(0.37f * static_cast<float>(i));
    std::shared_ptr<const ir::Model> graded = m;
    runtime::Session session(graded);
    size_t nonzero = 0;
    for (const auto& out : session.run({{g.inputs[0]->name, x}})) {
      if (out.name == "test_loss") continue;
      bool any = false;
      for (int64_t i = 0; i < out.tensor.numel(); ++i) {
        ASSERT_TRUE(std::isfinite(out.tensor.data<float>()[i])) << out.name;
        any = any || out.tensor.data<float>()[i] != 0;
      }
      nonzero += any;
    }
    EXPECT_GT(nonzero, req.wrt.size() / 2);
  }
}
