// Emulated GEMM/Conv (numerics/emu_gemm.h): every fast kernel, on every path and thread
// count, equals the slow exact reference bit for bit; the reference itself gives the values a
// datapath with that accumulator gives (hand-computed cases); conv2d equals its im2col GEMM.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "duet/core/error.h"
#include "duet/numerics/emu_gemm.h"
#include "test_util.h"

using namespace duet::numerics;
using namespace duet::numerics::emu;

namespace {

Format fmt(const std::string& name) { return parse_format(name); }

Operand operand(const std::string& format, Overflow overflow = Overflow::Saturate) {
  Operand o;
  o.format = fmt(format);
  o.overflow = overflow;
  return o;
}

// Values spread over many binades (so sums cancel, swamp and round), with exact zeros of both
// signs; integer formats get integers slightly beyond their range (quantization saturates).
std::vector<float> random_values(const Format& f, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  if (!f.is_float()) {
    std::uniform_int_distribution<int> d(static_cast<int>(f.lowest()) - 2, static_cast<int>(f.max_finite()) + 2);
    for (auto& x : v) x = static_cast<float>(d(rng));
    return v;
  }
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> binade(-8, 8), pick(0, 40);
  for (auto& x : v) {
    const int p = pick(rng);
    x = p == 0 ? 0.0f : p == 1 ? -0.0f : std::ldexp(normal(rng), binade(rng));
  }
  return v;
}

bool same_bits(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

::testing::AssertionResult bit_exact(const std::vector<float>& got, const std::vector<float>& want, int64_t N) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (!same_bits(got[i], want[i])) {
      return ::testing::AssertionFailure() << "C[" << i / N << "," << i % N << "] = " << got[i] << " (0x" << std::hex
                                           << std::bit_cast<uint32_t>(got[i]) << "), reference " << want[i] << " (0x"
                                           << std::bit_cast<uint32_t>(want[i]) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<KernelPath> fast_paths() {
  std::vector<KernelPath> p = {KernelPath::Portable};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) p.push_back(KernelPath::AVX2);
  return p;
}

struct Case {
  std::string name;
  GemmSpec spec;
  KernelFamily family;
};

// Every path and thread count against the reference, on edge-heavy sizes: M and N not multiples
// of any tile, K longer than one cache block (256) and not a multiple of the chunk.
void check_against_reference(const Case& c, int64_t M = 13, int64_t N = 37, int64_t K = 300) {
  SCOPED_TRACE(c.name);
  const auto A = random_values(c.spec.a.format, static_cast<size_t>(M * K), 1);
  const auto B = random_values(c.spec.b.format, static_cast<size_t>(K * N), 2);
  std::vector<float> want(static_cast<size_t>(M * N));
  gemm_reference(c.spec, M, N, K, A.data(), B.data(), want.data());
  EXPECT_EQ(choose_family(c.spec, K), c.family) << family_name(choose_family(c.spec, K));
  for (KernelPath path : fast_paths()) {
    for (int threads : {1, 2}) {
      GemmSpec s = c.spec;
      s.path = path;
      s.threads = threads;
      std::vector<float> got(want.size(), -1.0f);
      const GemmResult r = gemm(s, M, N, K, A.data(), B.data(), got.data());
      EXPECT_EQ(r.family, c.family);
      EXPECT_TRUE(bit_exact(got, want, N)) << path_name(path) << ", " << threads << " threads";
    }
  }
}

GemmSpec spec(const std::string& a, const std::string& b, Accumulator acc) {
  GemmSpec s;
  s.a = operand(a);
  s.b = operand(b);
  s.acc = acc;
  return s;
}

}  // namespace

TEST(EmuGemm, FP32AccumulationOfAnyInputFormatIsTheFmaKernel) {
  for (const char* f : {"bf16", "fp16", "tf32", "fp32", "e4m3fn", "e5m2", "e2m1"}) {
    check_against_reference({std::string(f) + " -> fp32", spec(f, f, accumulator_fp32()), KernelFamily::F32Fma});
  }
}

TEST(EmuGemm, InfinitiesAndNaNsPropagateAsIEEE) {
  GemmSpec s = spec("bf16", "bf16", accumulator_fp32());
  s.a.overflow = Overflow::Infinity;
  const int64_t M = 3, N = 9, K = 5;
  std::vector<float> A(M * K, 1.0f), B(K * N, 2.0f);
  A[0] = INFINITY;
  B[0] = 0.0f;                // inf·0 = NaN in C[0,0]
  A[K + 1] = -INFINITY;       // row 1: -inf
  A[2 * K + 2] = NAN;         // row 2: NaN
  std::vector<float> want(M * N), got(M * N);
  gemm_reference(s, M, N, K, A.data(), B.data(), want.data());
  EXPECT_TRUE(std::isnan(want[0]));
  EXPECT_EQ(want[1], INFINITY);
  EXPECT_EQ(want[N], -INFINITY);
  EXPECT_TRUE(std::isnan(want[2 * N + 3]));
  for (KernelPath p : fast_paths()) {
    s.path = p;
    gemm(s, M, N, K, A.data(), B.data(), got.data());
    EXPECT_TRUE(bit_exact(got, want, N)) << path_name(p);
  }
}

TEST(EmuGemm, ReducedPrecisionFloatAccumulatorsAreTheF64Kernel) {
  check_against_reference({"e4m3fn hopper e8m13 rtz /128", spec("e4m3fn", "e4m3fn", accumulator_hopper_fp8()),
                           KernelFamily::F64Exact});
  check_against_reference({"e4m3fn hopper e8m22 rne /32",
                           spec("e4m3fn", "e4m3fn", accumulator_hopper_fp8(22, 32, Rounding::NearestEven)),
                           KernelFamily::F64Exact});
  check_against_reference({"e4m3fn x e5m2 hopper e8m10 rna /8",
                           spec("e4m3fn", "e5m2", accumulator_hopper_fp8(10, 8, Rounding::NearestAway)),
                           KernelFamily::F64Exact});
  check_against_reference({"e4m3fn bf16 accumulation", spec("e4m3fn", "e4m3fn", accumulator_float(bf16())),
                           KernelFamily::F64Exact});
  check_against_reference({"e4m3fn fp32 rtz accumulation",
                           spec("e4m3fn", "e4m3fn", accumulator_float(fp32(), Rounding::TowardZero)),
                           KernelFamily::F64Exact});
  check_against_reference({"int8 into e8m13", spec("int8", "int8", accumulator_hopper_fp8(13, 16)), KernelFamily::F64Exact});
}

TEST(EmuGemm, IntegerAccumulatorsAreTheInt32Kernel) {
  check_against_reference({"int8 int32 wrap", spec("int8", "int8", accumulator_int(32, false)), KernelFamily::Int32});
  check_against_reference({"int8 int24 sat", spec("int8", "int8", accumulator_int(24, true)), KernelFamily::Int32});
  check_against_reference({"int8 int16 sat", spec("int8", "int8", accumulator_int(16, true)), KernelFamily::Int32});
  check_against_reference({"int8 int16 wrap", spec("int8", "int8", accumulator_int(16, false)), KernelFamily::Int32});
  check_against_reference({"uint8 x int8 int32", spec("uint8", "int8", accumulator_int(32, false)), KernelFamily::Int32});
  check_against_reference({"int4 int16 sat", spec("int4", "int4", accumulator_int(16, true)), KernelFamily::Int32});
  GemmSpec chunked = spec("int8", "int8", accumulator_int(16, true));
  chunked.acc.chunk = 64;  // 16-bit partial sums promoted to FP32 every 64 products
  check_against_reference({"int8 int16 sat /64", chunked, KernelFamily::Int32});
}

TEST(EmuGemm, OtherFloatAccumulatorsAreTheGeneralF64Kernel) {
  check_against_reference({"fp16 fp16 accumulation", spec("fp16", "fp16", accumulator_float(fp16())),
                           KernelFamily::F64General});
  check_against_reference({"fp16 fp16 rtz accumulation", spec("fp16", "fp16", accumulator_float(fp16(), Rounding::TowardZero)),
                           KernelFamily::F64General});
  check_against_reference({"fp16 fp16 rna accumulation", spec("fp16", "fp16", accumulator_float(fp16(), Rounding::NearestAway)),
                           KernelFamily::F64General});
  check_against_reference({"fp32 into bf16", spec("fp32", "fp32", accumulator_float(bf16())), KernelFamily::F64General});
  check_against_reference({"fp32 into bf16 rtz", spec("fp32", "fp32", accumulator_float(bf16(), Rounding::TowardZero)),
                           KernelFamily::F64General});
  check_against_reference({"e5m2 hopper", spec("e5m2", "e5m2", accumulator_hopper_fp8()), KernelFamily::F64General});
  Accumulator sat = accumulator_float(fp16());
  sat.overflow = Overflow::Saturate;
  check_against_reference({"bf16 saturating fp16", spec("bf16", "bf16", sat), KernelFamily::F64General});
  check_against_reference({"bf16 into e5m2fnuz", spec("bf16", "bf16", accumulator_float(e5m2fnuz())), KernelFamily::F64General});
  check_against_reference({"fp16 into e4m3fn rtz", spec("fp16", "fp16", accumulator_float(e4m3fn(), Rounding::TowardZero)),
                           KernelFamily::F64General});
}

// Sums that FP64 cannot hold exactly, where only the TwoSum error decides the rounding.
TEST(EmuGemm, GeneralKernelUsesTheErrorTermForTiesAndTowardZeroEdges) {
  struct Edge {
    const char* name;
    Accumulator acc;
    std::vector<float> a, b;
    float want;
  };
  const Edge edges[] = {
      // 2^-30, then 2^30 + 2^22: a BF16 tie (quantum 2^23 at 2^30) broken upward by 2^-30.
      {"bf16 tie", accumulator_float(bf16()), {0x1p-15f, 257.0f}, {0x1p-15f, 0x1p22f}, 0x1p30f + 0x1p23f},
      {"bf16 tie, negative", accumulator_float(bf16()), {-0x1p-15f, 257.0f}, {0x1p-15f, 0x1p22f}, 0x1p30f},
      {"bf16 tie rna", accumulator_float(bf16(), Rounding::NearestAway), {-0x1p-15f, 257.0f}, {0x1p-15f, 0x1p22f}, 0x1p30f},
      // 2^20 - 2^-40 truncates to the FP32 value below 2^20 (half the quantum above it).
      {"fp32 rtz edge", accumulator_float(fp32(), Rounding::TowardZero), {0x1p10f, -0x1p-20f}, {0x1p10f, 0x1p-20f},
       0x1p20f - 0x1p-4f},
      {"fp32 rtz inside", accumulator_float(fp32(), Rounding::TowardZero), {0x1p10f, -0x1p-20f}, {0x1.8p10f, 0x1p-20f},
       0x1.8p20f - 0x1p-3f},
      // FP16: 1024 - 2^-40 truncates to 1023.5.
      {"fp16 rtz edge", accumulator_float(fp16(), Rounding::TowardZero), {32.0f, -0x1p-20f}, {32.0f, 0x1p-20f}, 1023.5f},
  };
  for (const Edge& e : edges) {
    SCOPED_TRACE(e.name);
    GemmSpec s = spec("fp32", "fp32", e.acc);
    const int64_t K = static_cast<int64_t>(e.a.size());
    float want = 0;
    gemm_reference(s, 1, 1, K, e.a.data(), e.b.data(), &want);
    EXPECT_EQ(want, e.want);
    for (KernelPath p : fast_paths()) {
      s.path = p;
      float got = 0;
      gemm(s, 1, 1, K, e.a.data(), e.b.data(), &got);
      EXPECT_EQ(got, e.want) << path_name(p);
    }
  }
}

TEST(EmuGemm, WhatNoFastKernelCoversGoesToTheReference) {
  GemmSpec int16_inputs = spec("int16", "int16", accumulator_int(32, true));  // 2^30 products near 2^31
  check_against_reference({"int16 int32 saturating", int16_inputs, KernelFamily::Reference}, 5, 7, 40);
  check_against_reference({"int16 int32 wrapping", spec("int16", "int16", accumulator_int(32, false)),
                           KernelFamily::Int32}, 5, 7, 40);
}

TEST(EmuGemm, ScalesPerTensorChannelAndBlock) {
  const int64_t M = 13, N = 37, K = 300;
  GemmSpec t = spec("int8", "int8", accumulator_int(32, false));
  t.a.scaling = Scaling::Tensor;
  t.a.scales = {0.03f};
  t.b.scaling = Scaling::Channel;
  for (int64_t n = 0; n < N; ++n) t.b.scales.push_back(0.01f * static_cast<float>(n + 1));
  check_against_reference({"int8 tensor x channel", t, KernelFamily::Int32}, M, N, K);

  for (Accumulator acc : {accumulator_fp32(), accumulator_hopper_fp8(13, 32)}) {
    GemmSpec b = spec("e4m3fn", "e4m3fn", acc);
    b.acc.chunk = 32;
    const int64_t nblk = (K + 31) / 32;
    for (Operand* op : {&b.a, &b.b}) {
      op->scaling = Scaling::Block;
      op->block = 32;
    }
    for (int64_t i = 0; i < M * nblk; ++i) b.a.scales.push_back(std::ldexp(1.0f, static_cast<int>(i % 7) - 3));
    for (int64_t i = 0; i < nblk * N; ++i) b.b.scales.push_back(0.5f + 0.125f * static_cast<float>(i % 5));
    check_against_reference({"e4m3fn block 32 " + acc.describe(), b,
                             acc.chunk == 0 ? KernelFamily::F32Fma : KernelFamily::F64Exact},
                            M, N, K);
  }
}

TEST(EmuGemm, TransposesStochasticInputsAndOutputFormats) {
  GemmSpec s = spec("bf16", "fp16", accumulator_fp32());
  s.trans_a = true;
  s.trans_b = true;
  s.out = fmt("bf16");
  check_against_reference({"trans bf16 x fp16 -> bf16 out", s, KernelFamily::F32Fma});
  GemmSpec sr = spec("e4m3fn", "e4m3fn", accumulator_hopper_fp8());
  sr.a.rounding = Rounding::Stochastic;
  sr.a.seed = 7;
  sr.out = fmt("int8");
  check_against_reference({"stochastic e4m3fn -> int8 out", sr, KernelFamily::F64Exact});
}

// The reference computes what the datapath computes: hand-checked sums.
TEST(EmuGemm, Fp16AccumulationStallsAt2048WhenAddingOnes) {
  const int64_t K = 3000;
  std::vector<float> A(K, 1.0f), B(K, 1.0f);
  float c = 0;
  gemm(spec("fp16", "fp16", accumulator_float(fp16())), 1, 1, K, A.data(), B.data(), &c);
  EXPECT_EQ(c, 2048.0f);  // 2048 + 1 is a tie in FP16, nearest-even keeps 2048
  gemm(spec("fp16", "fp16", accumulator_fp32()), 1, 1, K, A.data(), B.data(), &c);
  EXPECT_EQ(c, 3000.0f);
}

TEST(EmuGemm, IntegerAccumulatorsSaturateOrWrap) {
  std::vector<float> A(3, 127.0f), B(3, 127.0f);  // 3 · 16129 = 48387
  float c = 0;
  gemm(spec("int8", "int8", accumulator_int(16, true)), 1, 1, 3, A.data(), B.data(), &c);
  EXPECT_EQ(c, 32767.0f);
  gemm(spec("int8", "int8", accumulator_int(16, false)), 1, 1, 3, A.data(), B.data(), &c);
  EXPECT_EQ(c, 48387.0f - 65536.0f);
  gemm(spec("int8", "int8", accumulator_int(32, false)), 1, 1, 3, A.data(), B.data(), &c);
  EXPECT_EQ(c, 48387.0f);
}

TEST(EmuGemm, HopperAccumulatorTruncatesSmallProductsUntilPromotion) {
  // 1·1 then 99 products of 2^-7·2^-7 = 2^-14, half an E8M13 ulp at 1: truncation drops each.
  const int64_t K = 100;
  std::vector<float> A(K, 0x1p-7f), B(K, 0x1p-7f);
  A[0] = B[0] = 1.0f;
  float c = 0;
  gemm(spec("e4m3fn", "e4m3fn", accumulator_hopper_fp8(13, 128)), 1, 1, K, A.data(), B.data(), &c);
  EXPECT_EQ(c, 1.0f);
  // Promotion every 16: the first chunk loses its 15 small products, the other 84 survive
  // (each later chunk starts from zero, where 2^-14 steps are exact).
  gemm(spec("e4m3fn", "e4m3fn", accumulator_hopper_fp8(13, 16)), 1, 1, K, A.data(), B.data(), &c);
  EXPECT_EQ(c, 1.0f + 84 * 0x1p-14f);
  gemm(spec("e4m3fn", "e4m3fn", accumulator_fp32()), 1, 1, K, A.data(), B.data(), &c);
  EXPECT_EQ(c, 1.0f + 99 * 0x1p-14f);
}

TEST(EmuGemm, BatchedBroadcastsAStrideOfZero) {
  const int64_t batch = 3, M = 4, N = 5, K = 6;
  GemmSpec s = spec("bf16", "bf16", accumulator_fp32());
  const auto A = random_values(s.a.format, batch * M * K, 3);
  const auto B = random_values(s.b.format, K * N, 4);
  std::vector<float> got(batch * M * N), one(M * N);
  gemm_batched(s, batch, M, N, K, A.data(), M * K, B.data(), 0, got.data());
  for (int64_t i = 0; i < batch; ++i) {
    gemm_reference(s, M, N, K, A.data() + i * M * K, B.data(), one.data());
    EXPECT_TRUE(bit_exact(std::vector<float>(got.begin() + i * M * N, got.begin() + (i + 1) * M * N), one, N));
  }
}

TEST(EmuConv2d, EqualsADirectConvolutionWithTheStatedOrder) {
  Conv2dShape s;
  s.n = 2, s.c = 4, s.h = 7, s.w = 6, s.o = 6, s.kh = 3, s.kw = 2;
  s.stride_h = 2, s.pad_top = 1, s.pad_bottom = 1, s.pad_left = 1, s.dilation_w = 2, s.groups = 2;
  GemmSpec g = spec("bf16", "bf16", accumulator_fp32());
  const int64_t cg = s.c / s.groups, og = s.o / s.groups, oh = s.out_h(), ow = s.out_w();
  const auto x = random_values(g.b.format, s.n * s.c * s.h * s.w, 5);
  const auto w = random_values(g.a.format, s.o * cg * s.kh * s.kw, 6);
  const std::vector<float> bias = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f, 3.0f};
  std::vector<float> y(s.n * s.o * oh * ow);
  conv2d(g, s, x.data(), w.data(), bias.data(), y.data());
  auto bf = [](float v) { return static_cast<float>(bf16().decode(bf16().encode(v, Rounding::NearestEven, Overflow::Saturate))); };
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.o; ++o) {
      const int64_t grp = o / og;
      for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
          float acc = 0.0f;
          for (int64_t c = 0; c < cg; ++c) {
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = oy * s.stride_h - s.pad_top + ky, ix = ox * s.stride_w - s.pad_left + kx * s.dilation_w;
                const float xv = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w
                                     ? bf(x[((n * s.c + grp * cg + c) * s.h + iy) * s.w + ix]) : 0.0f;
                acc = std::fmaf(bf(w[((o * cg + c) * s.kh + ky) * s.kw + kx]), xv, acc);
              }
            }
          }
          const float want = acc + bias[o];
          EXPECT_TRUE(same_bits(y[((n * s.o + o) * oh + oy) * ow + ox], want)) << n << " " << o << " " << oy << " " << ox;
        }
      }
    }
  }
}

TEST(EmuGemm, RejectsSpecsItCannotHonour) {
  std::vector<float> A(4, 1.0f), B(4, 1.0f), C(4);
  EXPECT_THROW(gemm(spec("bf16", "bf16", accumulator_int(32, false)), 2, 2, 2, A.data(), B.data(), C.data()), duet::Error);
  GemmSpec blk = spec("e4m3fn", "e4m3fn", accumulator_fp32());
  blk.a.scaling = Scaling::Block;
  blk.a.block = 2;
  blk.a.scales = {1, 1};
  EXPECT_THROW(gemm(blk, 2, 2, 2, A.data(), B.data(), C.data()), duet::Error);  // chunk must equal block
  GemmSpec ch = spec("int8", "int8", accumulator_int(32, false));
  ch.b.scaling = Scaling::Channel;
  ch.b.scales = {1.0f};
  EXPECT_THROW(gemm(ch, 2, 2, 2, A.data(), B.data(), C.data()), duet::Error);  // needs 2 scales
  EXPECT_THROW(parse_accumulator("int12"), duet::Error);
  EXPECT_EQ(parse_accumulator("hopper:22:32:rne").fp.mantissa_bits, 22);
  EXPECT_EQ(parse_accumulator("hopper").chunk, 128);
}

TEST(EmuGemmCli, ReportsKernelTimeAndErrorAsJson) {
  auto r = duet::testutil::run_command(duet::testutil::cli() +
                                       " emu-gemm --a e4m3fn --acc hopper --m 16 --n 24 --k 300 --runs 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["kernel"], "f64-exact");
  EXPECT_GT(j["measured_median_ms"].get<double>(), 0.0);
  // E4M3 inputs (3 mantissa bits): a few percent of error against FP32, not zero, not garbage.
  EXPECT_GT(j["rel_frobenius_error_vs_fp32"].get<double>(), 1e-3);
  EXPECT_LT(j["rel_frobenius_error_vs_fp32"].get<double>(), 0.2);
  auto bad = duet::testutil::run_command(duet::testutil::cli() + " emu-gemm --a bf16 --acc int32");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("integer accumulator needs integer input formats"), std::string::npos) << bad.output;
}

// Native equality where the datapaths coincide: oneDNN's integer matmul (u8
// activations x s8 weights -> s32: AVX2 vpmaddubsw/vpmaddwd on this CPU, VNNI
// vpdpbusd where the CPU has it) against the emulated INT8 x INT8 -> INT32
// datapath, bit for bit. Weights stay within 7 bits: without VNNI, oneDNN's
// u8s8 kernels add pairs of u8*s8 products in saturating 16-bit lanes, which
// only 7-bit weights keep exact (oneDNN's documented int8 caveat); with them
// the native sums are exact, as the emulated INT32 accumulator is.
TEST(EmuGemmNative, Int8MatchesOneDnnIntegerMatmulBitForBit) {
  const int64_t M = 37, N = 29, K = 2100;  // sums reach ~2^24: FP32 conversion rounds
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> u8(0, 255), s7(-64, 63);
  std::vector<uint8_t> a8(M * K);
  std::vector<int8_t> b8(K * N);
  std::vector<float> A(M * K), B(K * N), C(M * N);
  for (int64_t i = 0; i < M * K; ++i) A[i] = a8[i] = static_cast<uint8_t>(u8(rng));
  for (int64_t i = 0; i < K * N; ++i) B[i] = b8[i] = static_cast<int8_t>(s7(rng));
  // Saturate the first row/column pairs to the extremes (255 * 63 products).
  for (int64_t k = 0; k < K; ++k) {
    A[k] = a8[k] = 255;
    B[k * N] = b8[k * N] = 63;
  }
  using namespace dnnl;
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  memory::desc ad({M, K}, memory::data_type::u8, memory::format_tag::ab);
  memory::desc bd({K, N}, memory::data_type::s8, memory::format_tag::ab);
  memory::desc cd({M, N}, memory::data_type::s32, memory::format_tag::ab);
  matmul prim(matmul::primitive_desc(matmul::desc(ad, bd, cd), eng));  // oneDNN 2.x API
  std::vector<int32_t> native(M * N);
  memory am(ad, eng, a8.data()), bm(bd, eng, b8.data()), cm(cd, eng, native.data());
  prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  strm.wait();

  GemmSpec spec;
  spec.a.format = *find_format("uint8");
  spec.b.format = *find_format("int8");
  spec.acc = accumulator_int(32, false);
  const GemmResult res = gemm(spec, M, N, K, A.data(), B.data(), C.data());
  EXPECT_EQ(res.family, KernelFamily::Int32);
  int64_t exact_sums = 0;
  for (int64_t i = 0; i < M * N; ++i) {
    int64_t r = 0;
    for (int64_t k = 0; k < K; ++k) r += static_cast<int64_t>(a8[i / N * K + k]) * b8[k * N + i % N];
    ASSERT_EQ(native[i], r) << "oneDNN's sum at " << i;
    EXPECT_EQ(std::bit_cast<uint32_t>(C[i]), std::bit_cast<uint32_t>(static_cast<float>(native[i]))) << i;
    exact_sums += std::fabs(static_cast<double>(r)) < 16777216.0;
  }
  EXPECT_LT(exact_sums, M * N);  // some sums needed rounding to FP32: the RNE conversion is compared too
}
