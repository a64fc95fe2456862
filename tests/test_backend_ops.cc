// The cpu backend's breadth, checked in one place: every op it lowers, over
// generated shapes (ranks 1-5, odd sizes, broadcasting, strides, groups), is
// claimed — so a lowering cannot silently fall back to the reference kernels —
// and computes what the reference kernels compute.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>

#include "duet/runtime/session.h"
#include "duet/train/graph_builder.h"

using namespace duet;
using train::attr_float;
using train::attr_int;
using train::attr_ints;
using train::attr_string;
using train::GraphBuilder;

namespace {

struct Case {
  std::string name;
  std::vector<Dims> inputs;  // float32 graph inputs x0, x1, ...
  std::function<ir::Value*(GraphBuilder&, const std::vector<ir::Value*>&)> build;
  int64_t opset = 17;
  bool positive = false;  // inputs in [0.5, 1.5] (divisors), else in [-1, 1]
};

Tensor uniform(const Dims& dims, uint32_t seed, bool positive) {
  Tensor t(DType::Float32, dims);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(positive ? 0.5f : -1.0f, positive ? 1.5f : 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

std::shared_ptr<ir::Model> model_of(const Case& c) {
  GraphBuilder b(c.opset, 11);
  std::vector<ir::Value*> xs;
  for (size_t i = 0; i < c.inputs.size(); ++i) xs.push_back(b.input("x" + std::to_string(i), DType::Float32, c.inputs[i]));
  b.output(c.build(b, xs));  // named by the builder: a rename would add an Identity node
  return b.finish();
}

void check(const Case& c) {
  SCOPED_TRACE(c.name);
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < c.inputs.size(); ++i)
    feeds["x" + std::to_string(i)] = uniform(c.inputs[i], 17 + uint32_t(i), c.positive);
  const Tensor want = runtime::Session(model_of(c)).run(feeds).at(0).tensor;
  std::shared_ptr<ir::Model> model = model_of(c);
  runtime::SessionOptions options;
  options.backend = "cpu";
  runtime::prepare_model(*model, options);
  runtime::Session session(model, options);
  std::ostringstream refused;
  for (auto& [node, reasons] : session.refusals())
    for (auto& [backend, why] : reasons) refused << node->label() << ": " << why << "; ";
  EXPECT_TRUE(session.refusals().empty()) << refused.str();
  const Tensor got = session.run(feeds).at(0).tensor;
  ASSERT_EQ(got.dims(), want.dims());
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(want.get_double(i)));
  for (int64_t i = 0; i < want.numel(); ++i) worst = std::max(worst, std::fabs(got.get_double(i) - want.get_double(i)));
  EXPECT_LE(worst, 2e-5 * scale) << "largest difference to the reference kernels";
}

ir::Value* constant(GraphBuilder& b, const std::string& name, const Dims& dims, uint32_t seed) {
  return b.initializer(name, uniform(dims, seed, false));
}

std::vector<Case> cases() {
  std::vector<Case> all;
  const std::vector<Dims> shapes = {{7}, {3, 5}, {2, 3, 4, 5}, {1, 16, 7, 9}, {2, 3, 2, 5, 3}};
  // Activations (eltwise primitives).
  for (const auto& activation : std::vector<std::pair<std::string, std::vector<ir::Attribute>>>{
           {"Relu", {}}, {"Sigmoid", {}}, {"Tanh", {}}, {"LeakyRelu", {attr_float("alpha", 0.1f)}},
           {"HardSigmoid", {attr_float("alpha", 0.25f), attr_float("beta", 0.4f)}}, {"HardSwish", {}}})
    for (const Dims& d : shapes)
      all.push_back({activation.first + " " + dims_str(d), {d}, [activation](GraphBuilder& b, auto xs) {
                       return b.node(activation.first, {xs[0]}, activation.second);
                     }});
  for (const Dims& d : shapes)
    all.push_back({"Clip " + dims_str(d), {d}, [](GraphBuilder& b, auto xs) {
                     return b.node("Clip", {xs[0], b.initializer("lo", Tensor::from_vector<float>({-0.3f}, {})),
                                            b.initializer("hi", Tensor::from_vector<float>({0.6f}, {}))});
                   }});
  // Binary ops: the second operand computed or constant, of the same shape or broadcasting.
  for (const char* op : {"Add", "Sub", "Mul", "Div"})
    for (const Dims& second : std::vector<Dims>{{2, 8, 5, 6}, {6}, {1, 8, 1, 1}, {5, 6}}) {
      const std::string o = op;
      all.push_back({o + " computed " + dims_str(second), {{2, 8, 5, 6}, second},
                     [o](GraphBuilder& b, auto xs) { return b.node(o, {xs[0], xs[1]}); }, 17, o == "Div"});
      all.push_back({o + " constant " + dims_str(second), {{2, 8, 5, 6}},
                     [o, second](GraphBuilder& b, auto xs) {
                       return b.node(o, {xs[0], b.initializer("c", uniform(second, 5, true))});
                     }});
    }
  // MatMul with constant weights at ranks 2-4, and of two computed operands.
  for (const Dims& a : std::vector<Dims>{{5, 24}, {3, 5, 24}, {2, 3, 7, 24}})
    all.push_back({"MatMul constant " + dims_str(a), {a}, [](GraphBuilder& b, auto xs) {
                     return b.node("Add", {b.node("MatMul", {xs[0], constant(b, "w", {24, 10}, 3)}), constant(b, "bias", {10}, 4)});
                   }});
  all.push_back({"MatMul computed 3-D", {{2, 5, 8}, {2, 8, 6}}, [](GraphBuilder& b, auto xs) { return b.node("MatMul", {xs[0], xs[1]}); }});
  all.push_back({"MatMul computed 4-D", {{2, 3, 5, 8}, {2, 3, 8, 6}}, [](GraphBuilder& b, auto xs) { return b.node("MatMul", {xs[0], xs[1]}); }});
  // Convolutions: kernel, stride, padding, groups (depthwise), bias; transposed.
  struct ConvShape { int64_t k, stride, pad, group; };
  for (ConvShape s : {ConvShape{1, 1, 0, 1}, ConvShape{3, 1, 1, 1}, ConvShape{3, 2, 1, 1}, ConvShape{5, 1, 2, 2},
                      ConvShape{3, 1, 1, 8}, ConvShape{3, 2, 0, 8}})
    all.push_back({"Conv k" + std::to_string(s.k) + " s" + std::to_string(s.stride) + " p" + std::to_string(s.pad) + " g" +
                       std::to_string(s.group),
                   {{1, 8, 9, 11}}, [s](GraphBuilder& b, auto xs) {
                     return b.node("Conv", {xs[0], constant(b, "w", {16, 8 / s.group, s.k, s.k}, 6), constant(b, "b", {16}, 7)},
                                   {attr_ints("kernel_shape", {s.k, s.k}), attr_ints("strides", {s.stride, s.stride}),
                                    attr_ints("pads", {s.pad, s.pad, s.pad, s.pad}), attr_int("group", s.group)});
                   }});
  all.push_back({"ConvTranspose k2 s2", {{1, 8, 5, 7}}, [](GraphBuilder& b, auto xs) {
                   return b.node("ConvTranspose", {xs[0], constant(b, "w", {8, 4, 2, 2}, 8), constant(b, "b", {4}, 9)},
                                 {attr_ints("kernel_shape", {2, 2}), attr_ints("strides", {2, 2})});
                 }});
  // Pooling, normalization, softmax.
  for (const char* op : {"MaxPool", "AveragePool"})
    all.push_back({std::string(op) + " k3 s2 p1", {{2, 4, 9, 10}}, [op](GraphBuilder& b, auto xs) {
                     return b.node(op, {xs[0]}, {attr_ints("kernel_shape", {3, 3}), attr_ints("strides", {2, 2}),
                                                 attr_ints("pads", {1, 1, 1, 1})});
                   }});
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool"})
    all.push_back({op, {{2, 4, 9, 10}}, [op](GraphBuilder& b, auto xs) { return b.node(op, {xs[0]}); }});
  all.push_back({"BatchNormalization", {{2, 6, 5, 7}}, [](GraphBuilder& b, auto xs) {
                   Tensor var = uniform({6}, 10, true);
                   return b.node("BatchNormalization", {xs[0], constant(b, "s", {6}, 11), constant(b, "o", {6}, 12),
                                                        constant(b, "m", {6}, 13), b.initializer("v", var)});
                 }});
  for (const Dims& d : std::vector<Dims>{{3, 10}, {2, 3, 10}, {2, 2, 3, 10}})
    all.push_back({"Softmax " + dims_str(d), {d}, [](GraphBuilder& b, auto xs) { return b.node("Softmax", {xs[0]}, {attr_int("axis", -1)}); }});
  all.push_back({"LayerNormalization", {{2, 5, 16}}, [](GraphBuilder& b, auto xs) {
                   return b.node("LayerNormalization", {xs[0], constant(b, "g", {16}, 14), constant(b, "beta", {16}, 15)},
                                 {attr_int("axis", -1)});
                 }});
  // Data movement.
  all.push_back({"Concat channels", {{1, 3, 4, 5}, {1, 5, 4, 5}}, [](GraphBuilder& b, auto xs) { return b.node("Concat", {xs[0], xs[1]}, {attr_int("axis", 1)}); }});
  all.push_back({"Concat rows", {{3, 5}, {2, 5}}, [](GraphBuilder& b, auto xs) { return b.node("Concat", {xs[0], xs[1]}, {attr_int("axis", 0)}); }});
  all.push_back({"Transpose", {{2, 3, 4, 5}}, [](GraphBuilder& b, auto xs) { return b.node("Transpose", {xs[0]}, {attr_ints("perm", {0, 2, 3, 1})}); }});
  all.push_back({"Reshape", {{2, 3, 4, 5}}, [](GraphBuilder& b, auto xs) {
                   return b.node("Reshape", {xs[0], b.initializer("shape", Tensor::from_vector<int64_t>({2, -1, 5}, {3}))});
                 }});
  all.push_back({"Flatten", {{2, 3, 4, 5}}, [](GraphBuilder& b, auto xs) { return b.node("Flatten", {xs[0]}, {attr_int("axis", 2)}); }});
  all.push_back({"Slice", {{2, 6, 5, 7}}, [](GraphBuilder& b, auto xs) {
                   return b.node("Slice", {xs[0], b.initializer("st", Tensor::from_vector<int64_t>({1, 2}, {2})),
                                           b.initializer("en", Tensor::from_vector<int64_t>({5, 6}, {2})),
                                           b.initializer("ax", Tensor::from_vector<int64_t>({1, 3}, {2}))});
                 }});
  all.push_back({"Resize nearest x2", {{1, 3, 4, 5}}, [](GraphBuilder& b, auto xs) {
                   return b.node("Resize", {xs[0], b.initializer("roi", Tensor::from_vector<float>({}, {0})),
                                            b.initializer("scales", Tensor::from_vector<float>({1, 1, 2, 2}, {4}))},
                                 {attr_string("mode", "nearest"), attr_string("coordinate_transformation_mode", "asymmetric"),
                                  attr_string("nearest_mode", "floor")});
                 }});
  // Reductions.
  for (const char* op : {"ReduceMean", "ReduceSum"})
    for (int64_t keep : {0, 1})
      all.push_back({std::string(op) + " keepdims " + std::to_string(keep), {{2, 8, 5, 6}}, [op, keep](GraphBuilder& b, auto xs) {
                       return b.node(op, {xs[0], b.initializer("axes", Tensor::from_vector<int64_t>({-1, 2}, {2}))},
                                     {attr_int("keepdims", keep)});
                     }, 18});
  return all;
}

}  // namespace

TEST(CpuBackendOps, EveryLoweredOpIsClaimedAndMatchesTheReferenceKernels) {
  const std::vector<Case> all = cases();
  EXPECT_GE(all.size(), 80u);
  for (const Case& c : all) check(c);
}
