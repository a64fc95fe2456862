// duet emu-gemm [--a FMT] [--b FMT] [--acc ACC] [--out FMT] [--m M --n N --k K] [--threads T]
//               [--runs R] [--path auto|avx2|portable|reference] [--seed S] [--json]
// Runs an emulated GEMM on random normal inputs (seeded) and reports which kernel ran, the
// measured time (median of R runs on this machine) and the error against an FP32 GEMM of the
// unrounded inputs (FP32 accumulation in k order).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/numerics/emu_gemm.h"

namespace duet::cli {

namespace {

struct Options {
  std::string a = "bf16", b, acc = "fp32", out = "fp32", path = "auto";
  int64_t m = 256, n = 256, k = 256;
  int threads = 1, runs = 5;
  uint64_t seed = 1;
  bool json = false;
};

numerics::emu::KernelPath parse_path(const std::string& s) {
  using numerics::emu::KernelPath;
  if (s == "auto") return KernelPath::Auto;
  if (s == "avx2") return KernelPath::AVX2;
  if (s == "portable") return KernelPath::Portable;
  if (s == "reference") return KernelPath::Reference;
  fail("unknown --path '", s, "' (expected auto, avx2, portable or reference)");
}

int run(const Options& o) {
  namespace emu = numerics::emu;
  DUET_CHECK(o.m > 0 && o.n > 0 && o.k > 0, "emu-gemm: sizes must be positive");
  DUET_CHECK(o.runs >= 1, "emu-gemm: --runs must be >= 1");
  emu::GemmSpec spec;
  spec.a.format = numerics::parse_format(o.a);
  spec.b.format = numerics::parse_format(o.b.empty() ? o.a : o.b);
  spec.acc = emu::parse_accumulator(o.acc);
  spec.out = numerics::parse_format(o.out);
  spec.path = parse_path(o.path);
  spec.threads = o.threads;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> A(o.m * o.k), B(o.k * o.n), C(o.m * o.n), C32(o.m * o.n);
  for (auto& x : A) x = normal(rng);
  for (auto& x : B) x = normal(rng);
  if (!spec.a.format.is_float()) {  // integer inputs: use the range, not ±3
    for (auto& x : A) x *= static_cast<float>(spec.a.format.max_finite() / 3);
  }
  if (!spec.b.format.is_float()) {
    for (auto& x : B) x *= static_cast<float>(spec.b.format.max_finite() / 3);
  }
  emu::GemmResult res;
  std::vector<double> ms;
  for (int r = 0; r < o.runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    res = emu::gemm(spec, o.m, o.n, o.k, A.data(), B.data(), C.data());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  emu::GemmSpec f32;
  f32.a.format = f32.b.format = *numerics::find_format("fp32");
  f32.threads = o.threads;
  emu::gemm(f32, o.m, o.n, o.k, A.data(), B.data(), C32.data());
  double max_abs = 0, num = 0, den = 0;
  for (size_t i = 0; i < C.size(); ++i) {
    const double d = static_cast<double>(C[i]) - C32[i];
    max_abs = std::max(max_abs, std::fabs(d));
    num += d * d;
    den += static_cast<double>(C32[i]) * C32[i];
  }
  const double rel = den > 0 ? std::sqrt(num / den) : 0.0;
  const double median = ms[ms.size() / 2];
  const double gflops = 2.0 * o.m * o.n * o.k / (median * 1e6);
  if (o.json) {
    nlohmann::json j = {{"a", spec.a.format.name},
                        {"b", spec.b.format.name},
                        {"accumulator", spec.acc.describe()},
                        {"out", spec.out.name},
                        {"m", o.m}, {"n", o.n}, {"k", o.k},
                        {"threads", o.threads},
                        {"kernel", emu::family_name(res.family)},
                        {"path", emu::path_name(res.path)},
                        {"measured_median_ms", median},
                        {"measured_gflops", gflops},
                        {"runs", o.runs},
                        {"max_abs_error_vs_fp32", max_abs},
                        {"rel_frobenius_error_vs_fp32", rel}};
    print_json(j, 2);
    return 0;
  }
  std::printf("emulated GEMM %lldx%lldx%lld: A %s, B %s, accumulator %s, out %s\n", (long long)o.m, (long long)o.n,
              (long long)o.k, spec.a.format.name.c_str(), spec.b.format.name.c_str(), spec.acc.describe().c_str(),
              spec.out.name.c_str());
  std::printf("kernel %s (%s), %d thread(s)\n", emu::family_name(res.family), emu::path_name(res.path), o.threads);
  std::printf("measured: median %.3f ms of %d runs, %.2f GFLOP/s\n", median, o.runs, gflops);
  std::printf("error vs FP32 GEMM of the unrounded inputs: max abs %.4g, relative (Frobenius) %.4g\n", max_abs, rel);
  return 0;
}

}  // namespace

Runner add_emu_gemm(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("emu-gemm", "Emulated reduced-precision GEMM: kernel, measured time, error vs FP32");
  sub->add_option("--a", o->a, "format of A (any format spec)")->capture_default_str();
  sub->add_option("--b", o->b, "format of B (default: as A)");
  sub->add_option("--acc", o->acc,
                  "accumulator: fp32 fp16 bf16 int32 int32sat int24sat int16sat hopper hopper:M:N[:rne|rtz|rna] or a float spec")
      ->capture_default_str();
  sub->add_option("--out", o->out, "output format")->capture_default_str();
  sub->add_option("--m", o->m)->capture_default_str();
  sub->add_option("--n", o->n)->capture_default_str();
  sub->add_option("--k", o->k)->capture_default_str();
  sub->add_option("--threads", o->threads)->capture_default_str();
  sub->add_option("--runs", o->runs, "timed runs (median reported)")->capture_default_str();
  sub->add_option("--path", o->path, "auto, avx2, portable or reference")->capture_default_str();
  sub->add_option("--seed", o->seed, "input seed")->capture_default_str();
  sub->add_flag("--json", o->json);
  return [o] { return run(*o); };
}

}  // namespace duet::cli
