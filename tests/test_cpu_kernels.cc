// Duet's own kernels in the cpu backend, against arithmetic done here in
// double. Winograd F(2x2, 3x3) convolution: odd output sizes (partial
// tiles), asymmetric and zero padding, batches, residual sum and ReLU, no
// bias. Packed GEMM: partial register tiles in both directions, several k
// slices, bias/residual/ReLU, the same bits on any thread count. Both end to
// end through a session, where the backend picks them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>

#include "duet/backends/cpu/sgemm.h"
#include "duet/backends/cpu/winograd.h"
#include "duet/numerics/convert.h"
#include "duet/runtime/session.h"
#include "duet/train/graph_builder.h"

extern "C" {
int omp_get_max_threads(void);
void omp_set_num_threads(int);
}

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

Tensor random_tensor(Dims dims, uint32_t seed, float scale = 1) {
  Tensor t(DType::Float32, dims);
  const auto v = random_values(static_cast<size_t>(t.numel()), seed, scale);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

const ir::Attribute kPads1{.name = "pads", .type = ir::AttrType::Ints, .ints = {1, 1, 1, 1}};

// The model's output for input x on the cpu backend (graph optimizer first:
// it fuses bias, residual sum and ReLU into the convs and MatMuls).
Tensor run_cpu(std::shared_ptr<ir::Model> model, const Tensor& x,
               const std::string& precision = "fp32") {
  runtime::SessionOptions options;
  options.backend = "cpu";
  options.threads = 2;
  options.precision = precision;
  runtime::prepare_model(*model, options);
  return runtime::Session(model, options).run({{"x", x}}).at(0).tensor;
}

Tensor run_reference(std::shared_ptr<ir::Model> model, const Tensor& x) {
  return runtime::Session(model).run({{"x", x}}).at(0).tensor;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dims(), b.dims());
  double worst = 0;
  for (int64_t i = 0; i < a.numel() && a.dims() == b.dims(); ++i)
    worst = std::max(worst, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
  return worst;
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
  expect_matches_direct({2, 16, 32, 13, 15, 0, 1, 1, 0, true, true, false});  // odd input sizes, 12x14 out
  expect_matches_direct({1, 24, 16, 17, 14, 2, 0, 0, 1, false, true, true});  // wider top pad, no bias
  expect_matches_direct({3, 32, 48, 9, 20, 1, 1, 1, 1, true, false, false});  // tiles of several images in a block
  expect_matches_direct({1, 96, 24, 16, 16, 1, 1, 1, 1, true, true, true});   // a last panel of 8 channels (PP-OCR det)
  expect_matches_direct({2, 16, 8, 13, 13, 1, 1, 1, 1, false, false, true});  // one panel of 8
}

TEST(Winograd, SplitsOutputChannelsAcrossItemsWhenTilesAreFew) {
  // Sized for 8 threads, a 12x12 output (36 tiles) is cut into output-channel
  // groups too: each item then transforms its tiles' input again.
  if (!WinogradConv3x3::available()) GTEST_SKIP() << "needs AVX2 and FMA";
  const int before = omp_get_max_threads();
  omp_set_num_threads(8);
  expect_matches_direct({1, 16, 64, 12, 12, 0, 0, 0, 0, true, true, true});
  omp_set_num_threads(before);
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

// The model's output on the cpu backend with one of Duet's kernels switched
// off by its variable (DUET_WINOGRAD, DUET_SGEMM), for comparison.
Tensor run_cpu_without(const char* variable, std::function<std::shared_ptr<ir::Model>()> build, const Tensor& x) {
  setenv(variable, "0", 1);
  const Tensor y = run_cpu(build(), x);
  unsetenv(variable);
  return y;
}

TEST(Winograd, ResidualBlockOnTheCpuBackendMatchesTheReference) {
  // conv3x3 -> ReLU -> conv3x3 + x -> ReLU, 16 channels at 24x24: both convs
  // take the Winograd path on an AVX2 machine (oneDNN elsewhere).
  auto build = [] {
    train::GraphBuilder b;
    ir::Value* x = b.input("x", DType::Float32, {2, 16, 24, 24});
    auto* r1 = b.node("Relu", {b.node("Conv", {x, b.initializer("w1", random_tensor({16, 16, 3, 3}, 5, 0.1f)),
                                               b.initializer("b1", random_tensor({16}, 6, 0.1f))},
                                      {kPads1})});
    auto* c2 = b.node("Conv", {r1, b.initializer("w2", random_tensor({16, 16, 3, 3}, 7, 0.1f)),
                               b.initializer("b2", random_tensor({16}, 8, 0.1f))},
                      {kPads1});
    b.output(b.node("Relu", {b.node("Add", {c2, x})}), "y");
    return b.finish();
  };
  const Tensor in = random_tensor({2, 16, 24, 24}, 9);
  const Tensor want = run_reference(build(), in), got = run_cpu(build(), in);
  EXPECT_LE(max_abs_diff(want, got), 1e-5);
  if (WinogradConv3x3::available())  // Winograd rounds differently from oneDNN's direct conv: it ran
    EXPECT_FALSE(got.same_bits(run_cpu_without("DUET_WINOGRAD", build, in)));
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
  std::vector<float> one = r;  // C holds the residual when there is one, else is overwritten
  gemm.run(g.m, a.data(), g.k, one.data(), g.n, 1);
  for (int threads : {2, 5}) {  // 5: more threads than row blocks splits B's panels into chunks
    std::vector<float> more = r;
    gemm.run(g.m, a.data(), g.k, more.data(), g.n, threads);
    EXPECT_EQ(one, more) << "the same bits on 1 and " << threads << " threads";
  }
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
  expect_gemm_matches({5, 100, 130, true, true, false});    // few rows, many panels: chunks of panels
  expect_gemm_matches({400, 64, 100, true, false, false});  // several row blocks
  expect_gemm_matches({7, 600, 40, true, false, true});     // bias and ReLU once, after the third slice
  expect_gemm_matches({3, 0, 20, true, true, true});        // an empty sum: bias + residual
}

TEST(PackedSgemm, MatMulOnTheCpuBackendMatchesTheReference) {
  // MatMul [2, 40, 64] x [64, 96] + bias -> Relu: 80 rows, the shape of a
  // transformer's projection, taken by the packed GEMM.
  auto build = [] {
    train::GraphBuilder b;
    auto* mm = b.node("MatMul", {b.input("x", DType::Float32, {2, 40, 64}), b.initializer("w", random_tensor({64, 96}, 21, 0.2f))});
    b.output(b.node("Relu", {b.node("Add", {mm, b.initializer("b", random_tensor({96}, 22, 0.2f))})}), "y");
    return b.finish();
  };
  const Tensor in = random_tensor({2, 40, 64}, 23);
  const Tensor want = run_reference(build(), in), got = run_cpu(build(), in);
  EXPECT_LE(max_abs_diff(want, got), 1e-5);
  // Not asserted: that the packed GEMM ran. With one k slice it sums in k
  // order with FMAs as oneDNN's AVX2 matmul does, so here the two agree bit
  // for bit (DUET_SGEMM=0 measured the same); the kernel's own test is above.
}

// --precision bf16: a Conv then a MatMul read inputs and weights rounded to
// BF16 and accumulate in FP32 — the reference executor on pre-rounded
// values gives the same numbers (up to summation order).
namespace {
// t with every value rounded to BF16 (nearest-even): what BF16 math reads.
Tensor round_bf16(Tensor t) {
  std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
  numerics::encode_bulk(numerics::bf16(), t.data<float>(), bits.size(), bits.data());
  numerics::decode_bulk(numerics::bf16(), bits.data(), bits.size(), t.data<float>());
  return t;
}
}  // namespace

TEST(Bf16Precision, ConvAndMatMulComputeOnBf16RoundedValues) {
  // Conv 16->16 3x3 + bias, reshaped to [16, 196], MatMul by [196, 40]. With
  // `rounded`, weights are pre-rounded (biases stay FP32) and the MatMul's
  // input goes through Cast to BF16 and back: the reference for BF16 precision.
  auto build = [&](bool rounded) {
    train::GraphBuilder b;
    auto weights = [&](const std::string& name, Dims dims, uint32_t seed) {
      const Tensor t = random_tensor(dims, seed, 0.3f);
      return b.initializer(name, rounded ? round_bf16(t.clone()) : t);
    };
    auto* c = b.node("Conv", {b.input("x", DType::Float32, {1, 16, 14, 14}), weights("w", {16, 16, 3, 3}, 31),
                              b.initializer("b", random_tensor({16}, 32, 0.3f))},
                     {kPads1});
    ir::Value* r = b.node("Reshape", {c, b.initializer("shape", Tensor::from_vector<int64_t>({16, 196}, {2}))});
    if (rounded) {
      r = b.node("Cast", {r}, {train::attr_int("to", 16)});
      r = b.node("Cast", {r}, {train::attr_int("to", 1)});
    }
    b.output(b.node("MatMul", {r, weights("m", {196, 40}, 33)}), "y");
    return b.finish();
  };
  const Tensor in = random_tensor({1, 16, 14, 14}, 34);
  const Tensor want = run_reference(build(true), round_bf16(in.clone()));
  const Tensor fp32 = run_reference(build(false), in);
  const Tensor got = run_cpu(build(false), in, "bf16");
  EXPECT_LE(max_abs_diff(want, got), 1e-4) << "the same products as the reference on BF16-rounded values";
  EXPECT_GT(max_abs_diff(fp32, got), 1e-3) << "and not the FP32 result";
}

// Per node: the precision annotation (numerics::Precision text) picks each
// matrix op's math whatever the session's default. Only the MatMul annotated
// bf16 under an fp32 default: its input and weights rounded, the Conv exact.
// And the converse: an fp32-annotated Conv stays exact under a bf16 default.
TEST(Bf16Precision, EachMatrixOpFollowsItsOwnAnnotation) {
  const Tensor w = random_tensor({16, 16, 3, 3}, 41, 0.3f), m = random_tensor({196, 40}, 42, 0.3f);
  // `mode`: 0 plain, 1 MatMul annotated bf16, 2 Conv annotated fp32, 3 the reference for 1 (Casts, rounded m).
  auto build = [&](int mode) {
    train::GraphBuilder b;
    auto* c = b.node("Conv", {b.input("x", DType::Float32, {1, 16, 14, 14}), b.initializer("w", w)}, {kPads1});
    ir::Value* r = b.node("Reshape", {c, b.initializer("shape", Tensor::from_vector<int64_t>({16, 196}, {2}))});
    if (mode == 3) r = b.node("Cast", {b.node("Cast", {r}, {train::attr_int("to", 16)})}, {train::attr_int("to", 1)});
    b.output(b.node("MatMul", {r, b.initializer("m", mode == 3 ? round_bf16(m.clone()) : m)}), "y");
    auto model = b.finish();
    for (auto& n : model->graph->nodes) {
      if (mode == 1 && n->op_type == "MatMul") n->annotations["precision"] = "bf16";
      if (mode == 2 && n->op_type == "Conv") n->annotations["precision"] = "fp32";
    }
    return std::shared_ptr<ir::Model>(std::move(model));
  };
  const Tensor in = random_tensor({1, 16, 14, 14}, 43);
  const Tensor exact = run_reference(build(0), in);
  const Tensor matmul_bf16 = run_cpu(build(1), in, "fp32");
  EXPECT_LE(max_abs_diff(run_reference(build(3), in), matmul_bf16), 1e-4);
  EXPECT_GT(max_abs_diff(exact, matmul_bf16), 1e-3);
  // Conv kept fp32 under a bf16 default: only the MatMul rounds (its input is the exact conv output).
  EXPECT_LE(max_abs_diff(run_reference(build(3), in), run_cpu(build(2), in, "bf16")), 1e-4);
  // A precision the cpu backend does not compute is one clear error, not an FP32 run.
  EXPECT_THROW(run_cpu(build(0), in, "fp8"), Error);
}
