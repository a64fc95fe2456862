// Bulk float32 -> format conversion throughput on one core: each fast path
// against a plain scalar loop over Minifloat::encode. Items/s = elements/s.
//   bench_formats --benchmark_filter=BF16
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "duet/numerics/convert.h"

using namespace duet::numerics;

namespace {

constexpr size_t kElements = 1 << 16;  // 256 KiB of float32: stays in L2

const std::vector<float>& inputs() {
  static const std::vector<float> v = [] {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    std::vector<float> out(kElements);
    for (auto& x : out) x = normal(rng);
    return out;
  }();
  return v;
}

template <typename OutT>
void plain_scalar_loop(benchmark::State& state, const Minifloat& f, Overflow overflow) {
  const auto& in = inputs();
  std::vector<OutT> out(kElements);
  for (auto _ : state) {
    for (size_t i = 0; i < kElements; ++i) out[i] = static_cast<OutT>(f.encode(in[i], Rounding::NearestEven, overflow));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kElements));
}

template <typename OutT>
void bulk(benchmark::State& state, const Minifloat& f, Overflow overflow, ConvertPath path) {
  if (!cpu_supports(path) || !path_handles(path, f, Rounding::NearestEven, overflow)) {
    state.SkipWithError("path not available on this CPU");
    return;
  }
  const auto& in = inputs();
  std::vector<OutT> out(kElements);
  ConvertOptions o;
  o.overflow = overflow;
  o.path = path;
  for (auto _ : state) {
    encode_bulk(f, in.data(), kElements, out.data(), o);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kElements));
}

void register_all() {
  struct Case {
    const char* name;
    const Minifloat* f;
    Overflow overflow;
    int out_bytes;
  };
  const Case cases[] = {{"FP32toBF16", &bf16(), Overflow::Infinity, 2},
                        {"FP32toFP16", &fp16(), Overflow::Infinity, 2},
                        {"FP32toE4M3FN", &e4m3fn(), Overflow::Saturate, 1},
                        {"FP32toE5M2", &e5m2(), Overflow::Infinity, 1},
                        {"FP32toTF32", &tf32(), Overflow::Infinity, 4}};
  for (const auto& c : cases) {
    const std::string base = c.name;
    auto reg = [&](const std::string& label, auto fn) { benchmark::RegisterBenchmark((base + "/" + label).c_str(), fn); };
    const Minifloat* f = c.f;
    const Overflow ov = c.overflow;
    if (c.out_bytes == 1) reg("plain_scalar_loop", [f, ov](benchmark::State& s) { plain_scalar_loop<uint8_t>(s, *f, ov); });
    if (c.out_bytes == 2) reg("plain_scalar_loop", [f, ov](benchmark::State& s) { plain_scalar_loop<uint16_t>(s, *f, ov); });
    if (c.out_bytes == 4) reg("plain_scalar_loop", [f, ov](benchmark::State& s) { plain_scalar_loop<uint32_t>(s, *f, ov); });
    for (ConvertPath p : {ConvertPath::AVX2, ConvertPath::AVX512, ConvertPath::F16C, ConvertPath::AVX512FP16C,
                          ConvertPath::AVX512BF16, ConvertPath::Auto}) {
      if (p != ConvertPath::Auto && !path_handles(p, *f, Rounding::NearestEven, ov)) continue;
      const std::string label = std::string("bulk_") + path_name(p);
      if (c.out_bytes == 1) reg(label, [f, ov, p](benchmark::State& s) { bulk<uint8_t>(s, *f, ov, p); });
      if (c.out_bytes == 2) reg(label, [f, ov, p](benchmark::State& s) { bulk<uint16_t>(s, *f, ov, p); });
      if (c.out_bytes == 4) reg(label, [f, ov, p](benchmark::State& s) { bulk<uint32_t>(s, *f, ov, p); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
