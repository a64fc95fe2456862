// Duet's own kernels in the cpu backend, against arithmetic done here in
// double. Winograd F(2x2, 3x3) convolution: odd output sizes (partial
// tiles), asymmetric and zero padding, batches, residual sum and ReLU, no
// bias. Packed GEMM: partial register tiles in both directions, several k
// slices, bias/residual/ReLU, the same bits on any thread count. Both end to
// end through a session, where the backend picks them.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../src/backends/cpu/sgemm.h"
#include "../src/backends/cpu/winograd.h"
#include "duet/numerics/convert.h"
#include "duet/runtime/session.h"

using namespace duet;
using backends::cpu::PackedSgemm;
using backends::cpu::WinogradConv3x3;
using backends::cpu::WinogradShape;

namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// nChw8c index of (n, c, y, x) for a tensor of `channels` x h x w.
size_t blocked(int64_t n, int64_t c, int64_t y, int64_t x, int64_t channels, int64_t h, int64_t w) {
  return static_cast<size_t>((((n * (channels / 8) + c / 8) * h + y) * w + x) * 8 + c % 8);
}

struct Case {
  int64_t batch, in, out, h, w, pad_top, pad_left, pad_bottom, pad_right;
  bool bias, residual, relu;
};

void expect_matches_direct(const Case& k) {
  WinogradShape s;
  s.batch = k.batch;
  s.in_channels = k.in;
  s.out_channels = k.out;
  s.height = k.h;
  s.width = k.w;
  s.out_height = k.h + k.pad_top + k.pad_bottom - 2;
  s.out_width = k.w + k.pad_left + k.pad_right - 2;
  s.pad_top = k.pad_top;
  s.pad_left = k.pad_left;
  const auto x = random_values(static_cast<size_t>(k.batch * k.in * k.h * k.w), 1);
  const auto w = random_values(static_cast<size_t>(k.out * k.in * 9), 2, 0.1f);
  const auto b = random_values(static_cast<size_t>(k.out), 3);
  const auto r = random_values(static_cast<size_t>(k.batch * k.out * s.out_height * s.out_width), 4);
  std::vector<float> y = k.residual ? r : std::vector<float>(r.size(), 0.0f);  // nChw8c, same order as r

  WinogradConv3x3 conv(s, w.data(), k.bias ? b.data() : nullptr, k.residual, k.relu);
  conv.run(x.data(), y.data());  // x read as nChw8c: any values do

  double worst = 0;
  for (int64_t n = 0; n < k.batch; ++n)
    for (int64_t o = 0; o < k.out; ++o)
      for (int64_t oy = 0; oy < s.out_height; ++oy)
        for (int64_t ox = 0; ox < s.out_width; ++ox) {
          double want = k.bias ? b[o] : 0.0;
          for (int64_t c = 0; c < k.in; ++c)
            for (int64_t i = 0; i < 3; ++i)
              for (int64_t j = 0; j < 3; ++j) {
                const int64_t iy = oy + i - k.pad_top, ix = ox + j - k.pad_left;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                want += double(x[blocked(n, c, iy, ix, k.in, k.h, k.w)]) * w[((o * k.in + c) * 3 + i) * 3 + j];
              }
          const size_t at = blocked(n, o, oy, ox, k.out, s.out_height, s.out_width);
          if (k.residual) want += r[at];
          if (k.relu) want = std::max(want, 0.0);
          worst = std::max(worst, std::fabs(want - y[at]));
        }
  EXPECT_LE(worst, 2e-5) << "batch " << k.batch << ", " << k.in << "->" << k.out << " channels, " << k.h << "x" << k.w;
}

}  // namespace

TEST(Winograd, MatchesDirectConvolution) {
  if (!WinogradConv3x3::available()) GTEST_SKIP() << "needs AVX2 and FMA";
  expect_matches_direct({1, 16, 16, 12, 12, 1, 1, 1, 1, true, false, true});
  expect_matches_direct({2, 16, 32, 13, 15, 0, 1, 1, 0, true, true, false});  // odd sizes: partial tiles
  expect_matches_direct({1, 24, 16, 17, 14, 2, 0, 0, 1, false, true, true});  // wider top pad, no bias
  expect_matches_direct({3, 32, 48, 9, 20, 1, 1, 1, 1, true, false, false});  // tiles of several images in a block
}

TEST(Winograd, ChosenOnlyWhereItPays) {
  WinogradShape s;
  s.in_channels = 64, s.out_channels = 64, s.out_height = 56, s.out_width = 56;
  EXPECT_TRUE(WinogradConv3x3::suits(s));
  s.out_height = s.out_width = 7;  // ResNet's last stage: tile padding and weight traffic outweigh the saving
  EXPECT_FALSE(WinogradConv3x3::suits(s));
  s.out_height = s.out_width = 56, s.in_channels = 12;  // channels not in blocks of 8
  EXPECT_FALSE(WinogradConv3x3::suits(s));
}

TEST(Winograd, ResidualBlockOnTheCpuBackendMatchesTheReference) {
  // conv3x3 -> ReLU -> conv3x3 + x -> ReLU, 16 channels at 24x24: both convs
  // take the Winograd path on an AVX2 machine (oneDNN elsewhere).
  auto model = std::make_shared<ir::Model>();
  model->opset_imports.push_back({"", 17});
  ir::Graph& g = *model->graph;
  auto value = [&](const std::string& name, Dims dims) {
    ir::Value* v = g.value(name);
    v->type.dtype = DType::Float32;
    v->type.shape = Shape::from(dims);
    return v;
  };
  auto constant = [&](const std::string& name, Dims dims, uint32_t seed) {
    Tensor t(DType::Float32, dims);
    const auto v = random_values(static_cast<size_t>(t.numel()), seed, 0.1f);
    std::copy(v.begin(), v.end(), t.data<float>());
    g.initializers[name] = t;
    g.initializer_order.push_back(name);
    return value(name, dims);
  };
  ir::Attribute pads{.name = "pads", .type = ir::AttrType::Ints, .ints = {1, 1, 1, 1}};
  ir::Value* x = value("x", {2, 16, 24, 24});
  g.inputs.push_back(x);
  g.add_node("Conv", {x, constant("w1", {16, 16, 3, 3}, 5), constant("b1", {16}, 6)}, {g.value("c1")}, "c1")
      ->attributes = {pads};
  g.add_node("Relu", {g.value("c1")}, {g.value("r1")}, "r1");
  g.add_node("Conv", {g.value("r1"), constant("w2", {16, 16, 3, 3}, 7), constant("b2", {16}, 8)}, {g.value("c2")},
             "c2")
      ->attributes = {pads};
  g.add_node("Add", {g.value("c2"), x}, {g.value("sum")}, "sum");
  g.add_node("Relu", {g.value("sum")}, {g.value("y")}, "y");
  g.outputs.push_back(g.value("y"));

  Tensor in(DType::Float32, {2, 16, 24, 24});
  const auto v = random_values(static_cast<size_t>(in.numel()), 9);
  std::copy(v.begin(), v.end(), in.data<float>());
  runtime::Session reference(model);
  const Tensor want = reference.run({{"x", in}}).at(0).tensor;
  runtime::SessionOptions options;
  options.backend = "cpu";
  options.threads = 2;
  runtime::prepare_model(*model, options);  // fuses bias, residual sum and ReLU into the convs
  runtime::Session fast(model, options);
  const Tensor got = fast.run({{"x", in}}).at(0).tensor;
  ASSERT_EQ(got.dims(), want.dims());
  double worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::fabs(double(want.data<float>()[i]) - got.data<float>()[i]));
  EXPECT_LE(worst, 1e-5);
}

namespace {

struct GemmCase {
  int64_t m, k, n;
  bool bias, residual, relu;
};

void expect_gemm_matches(const GemmCase& g) {
  const auto a = random_values(static_cast<size_t>(g.m * g.k), 11);
  const auto b = random_values(static_cast<size_t>(g.k * g.n), 12, 0.1f);
  const auto bias = random_values(static_cast<size_t>(g.n), 13);
  const auto r = random_values(static_cast<size_t>(g.m * g.n), 14);
  PackedSgemm gemm(g.k, g.n, b.data(), g.n, g.bias ? bias.data() : nullptr, g.residual, g.relu);
  std::vector<float> one = r, two = r;  // C holds the residual when there is one, else is overwritten
  gemm.run(g.m, a.data(), g.k, one.data(), g.n, 1);
  gemm.run(g.m, a.data(), g.k, two.data(), g.n, 2);
  EXPECT_EQ(one, two) << "the same bits on 1 and 2 threads";
  double worst = 0;
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double want = (g.bias ? bias[j] : 0.0) + (g.residual ? r[i * g.n + j] : 0.0);
      for (int64_t q = 0; q < g.k; ++q) want += double(a[i * g.k + q]) * b[q * g.n + j];
      if (g.relu) want = std::max(want, 0.0);
      worst = std::max(worst, std::fabs(want - one[i * g.n + j]));
    }
  EXPECT_LE(worst, 1e-4) << g.m << "x" << g.k << "x" << g.n;
}

}  // namespace

TEST(PackedSgemm, MatchesDoubleReference) {
  if (!PackedSgemm::available()) GTEST_SKIP() << "needs AVX2 and FMA";
  expect_gemm_matches({7, 33, 19, true, false, true});     // partial tiles both ways
  expect_gemm_matches({200, 513, 40, false, true, false});  // three k slices, residual
  expect_gemm_matches({1, 256, 16, true, true, true});      // one row
  expect_gemm_matches({400, 64, 100, true, false, false});  // several row blocks
  expect_gemm_matches({3, 0, 20, true, true, true});        // an empty sum: bias + residual
}

TEST(PackedSgemm, MatMulOnTheCpuBackendMatchesTheReference) {
  // MatMul [2, 40, 64] x [64, 96] + bias -> Relu: 80 rows, the shape of a
  // transformer's projection, taken by the packed GEMM.
  auto model = std::make_shared<ir::Model>();
  model->opset_imports.push_back({"", 17});
  ir::Graph& g = *model->graph;
  ir::Value* x = g.value("x");
  x->type.dtype = DType::Float32;
  x->type.shape = Shape::from(Dims{2, 40, 64});
  g.inputs.push_back(x);
  auto constant = [&](const std::string& name, Dims dims, uint32_t seed) {
    Tensor t(DType::Float32, dims);
    const auto v = random_values(static_cast<size_t>(t.numel()), seed, 0.2f);
    std::copy(v.begin(), v.end(), t.data<float>());
    g.initializers[name] = t;
    g.initializer_order.push_back(name);
    ir::Value* c = g.value(name);
    c->type.dtype = DType::Float32;
    c->type.shape = Shape::from(dims);
    return c;
  };
  g.add_node("MatMul", {x, constant("w", {64, 96}, 21)}, {g.value("mm")}, "mm");
  g.add_node("Add", {g.value("mm"), constant("b", {96}, 22)}, {g.value("biased")}, "biased");
  g.add_node("Relu", {g.value("biased")}, {g.value("y")}, "y");
  g.outputs.push_back(g.value("y"));
  Tensor in(DType::Float32, {2, 40, 64});
  const auto v = random_values(static_cast<size_t>(in.numel()), 23);
  std::copy(v.begin(), v.end(), in.data<float>());
  runtime::Session reference(model);
  const Tensor want = reference.run({{"x", in}}).at(0).tensor;
  runtime::SessionOptions options;
  options.backend = "cpu";
  options.threads = 2;
  runtime::prepare_model(*model, options);
  runtime::Session fast(model, options);
  const Tensor got = fast.run({{"x", in}}).at(0).tensor;
  ASSERT_EQ(got.dims(), want.dims());
  double worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    worst = std::max(worst, std::fabs(double(want.data<float>()[i]) - got.data<float>()[i]));
  EXPECT_LE(worst, 1e-5);
}

// --precision bf16: a Conv then a MatMul read inputs and weights rounded to
// BF16 and accumulate in FP32 — the reference executor on pre-rounded
// values gives the same numbers (up to summation order).
TEST(Bf16Precision, ConvAndMatMulComputeOnBf16RoundedValues) {
  auto round_bf16 = [](Tensor t) {
    std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
    numerics::encode_bulk(numerics::bf16(), t.data<float>(), bits.size(), bits.data());
    numerics::decode_bulk(numerics::bf16(), bits.data(), bits.size(), t.data<float>());
    return t;
  };
  auto build = [&](bool rounded) {
    auto model = std::make_shared<ir::Model>();
    model->opset_imports.push_back({"", 17});
    ir::Graph& g = *model->graph;
    ir::Value* x = g.value("x");
    x->type.dtype = DType::Float32;
    x->type.shape = Shape::from(Dims{1, 16, 14, 14});
    g.inputs.push_back(x);
    auto constant = [&](const std::string& name, Dims dims, uint32_t seed, bool weights = true) {
      Tensor t(DType::Float32, dims);
      const auto v = random_values(static_cast<size_t>(t.numel()), seed, 0.3f);
      std::copy(v.begin(), v.end(), t.data<float>());
      g.initializers[name] = rounded && weights ? round_bf16(t) : t;  // biases stay FP32
      g.initializer_order.push_back(name);
      ir::Value* c = g.value(name);
      c->type.dtype = DType::Float32;
      c->type.shape = Shape::from(dims);
      return c;
    };
    ir::Attribute pads{.name = "pads", .type = ir::AttrType::Ints, .ints = {1, 1, 1, 1}};
    g.add_node("Conv", {x, constant("w", {16, 16, 3, 3}, 31), constant("b", {16}, 32, false)}, {g.value("c")}, "c")->attributes = {pads};
    g.add_node("Reshape", {g.value("c"), [&] {
                 Tensor shape = Tensor::from_vector<int64_t>({16, 196}, {2});
                 g.initializers["shape"] = shape;
                 g.initializer_order.push_back("shape");
                 return g.value("shape");
               }()},
               {g.value("r")}, "r");
    ir::Value* r = g.value("r");
    if (rounded) {  // the reference rounds the MatMul's input itself, as the backend does
      g.add_node("Cast", {r}, {g.value("r16")}, "r16")->attributes = {{.name = "to", .type = ir::AttrType::Int, .i = 16}};
      g.add_node("Cast", {g.value("r16")}, {g.value("r32")}, "r32")->attributes = {{.name = "to", .type = ir::AttrType::Int, .i = 1}};
      r = g.value("r32");
    }
    g.add_node("MatMul", {r, constant("m", {196, 40}, 33)}, {g.value("y")}, "y");
    g.outputs.push_back(g.value("y"));
    return model;
  };
  Tensor in(DType::Float32, {1, 16, 14, 14});
  const auto v = random_values(static_cast<size_t>(in.numel()), 34);
  std::copy(v.begin(), v.end(), in.data<float>());
  auto reference_model = build(true);
  runtime::Session reference(reference_model);
  const Tensor want = reference.run({{"x", round_bf16(in.clone())}}).at(0).tensor;
  auto fp32_want = runtime::Session(build(false)).run({{"x", in}}).at(0).tensor;
  auto model = build(false);
  runtime::SessionOptions options;
  options.backend = "cpu";
  options.threads = 2;
  options.precision = runtime::Precision::BF16;
  runtime::prepare_model(*model, options);
  runtime::Session bf16(model, options);
  const Tensor got = bf16.run({{"x", in}}).at(0).tensor;
  ASSERT_EQ(got.dims(), want.dims());
  double worst = 0, from_fp32 = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    worst = std::max(worst, std::fabs(double(want.data<float>()[i]) - got.data<float>()[i]));
    from_fp32 = std::max(from_fp32, std::fabs(double(fp32_want.data<float>()[i]) - got.data<float>()[i]));
  }
  EXPECT_LE(worst, 1e-4) << "the same products as the reference on BF16-rounded values";
  EXPECT_GT(from_fp32, 1e-3) << "and not the FP32 result";
}
