// Exhaustive sweeps: all 2^32 float32 bit patterns converted by the scalar
// encoder and by every fast path this CPU has, compared bit for bit. The test
// names start with "Exhaustive" so CI can label or filter them
// (--gtest_filter='Exhaustive*'); each runs on two threads.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "duet/numerics/convert.h"

using namespace duet::numerics;

namespace {

struct Mismatch {
  uint32_t input = 0;
  uint32_t got = 0;
  uint32_t want = 0;
  ConvertPath path = ConvertPath::Scalar;
};

// Sweeps all patterns for one format and rounding/overflow mode; returns the
// number of mismatching (path, input) pairs and records the first few.
template <typename OutT>
uint64_t sweep(const Minifloat& f, Rounding r, Overflow ov, std::vector<ConvertPath> paths, std::vector<Mismatch>& first) {
  constexpr uint64_t kChunk = 1u << 16;
  constexpr uint64_t kChunks = (uint64_t{1} << 32) / kChunk;
  std::atomic<uint64_t> next{0}, mismatches{0};
  std::mutex lock;
  auto worker = [&]() {
    std::vector<float> in(kChunk);
    std::vector<OutT> want(kChunk), got(kChunk);
    for (uint64_t c; (c = next.fetch_add(1)) < kChunks;) {
      for (uint64_t i = 0; i < kChunk; ++i) in[i] = std::bit_cast<float>(static_cast<uint32_t>(c * kChunk + i));
      ConvertOptions o;
      o.rounding = r;
      o.overflow = ov;
      o.path = ConvertPath::Scalar;
      encode_bulk(f, in.data(), kChunk, want.data(), o);
      for (ConvertPath p : paths) {
        o.path = p;
        encode_bulk(f, in.data(), kChunk, got.data(), o);
        if (std::memcmp(got.data(), want.data(), kChunk * sizeof(OutT)) == 0) continue;
        for (uint64_t i = 0; i < kChunk; ++i) {
          if (got[i] == want[i]) continue;
          mismatches.fetch_add(1);
          std::lock_guard<std::mutex> g(lock);
          if (first.size() < 5) first.push_back({static_cast<uint32_t>(c * kChunk + i), got[i], want[i], p});
        }
      }
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  return mismatches.load();
}

template <typename OutT>
void exhaustive(const Minifloat& f, Rounding r = Rounding::NearestEven, Overflow ov = Overflow::Infinity) {
  std::vector<ConvertPath> paths;
  for (ConvertPath p : usable_paths(f, r, ov)) {
    if (p != ConvertPath::Scalar) paths.push_back(p);
  }
  if (paths.empty()) GTEST_SKIP() << "no fast path for " << f.name << " on this CPU";
  std::string names;
  for (ConvertPath p : paths) names += std::string(" ") + path_name(p);
  const auto start = std::chrono::steady_clock::now();
  std::vector<Mismatch> first;
  const uint64_t bad = sweep<OutT>(f, r, ov, paths, first);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ sweep    ] %s %s/%s, scalar vs%s: %.1f s, %llu mismatches\n", f.name.c_str(), rounding_name(r),
              overflow_name(ov), names.c_str(), seconds, static_cast<unsigned long long>(bad));
  for (const auto& m : first) {
    ADD_FAILURE() << f.name << " " << path_name(m.path) << ": input 0x" << std::hex << m.input << " got 0x" << m.got
                  << " scalar 0x" << m.want;
  }
  EXPECT_EQ(bad, 0u);
}

}  // namespace

TEST(ExhaustiveConversion, Fp16NearestEven) { exhaustive<uint16_t>(fp16()); }
TEST(ExhaustiveConversion, Bf16NearestEven) { exhaustive<uint16_t>(bf16()); }
TEST(ExhaustiveConversion, Tf32NearestEven) { exhaustive<uint32_t>(tf32()); }
TEST(ExhaustiveConversion, E4m3fnNearestEven) { exhaustive<uint8_t>(e4m3fn(), Rounding::NearestEven, Overflow::Saturate); }
TEST(ExhaustiveConversion, E5m2NearestEven) { exhaustive<uint8_t>(e5m2()); }

// Toward-zero and nearest-away (CUTLASS's TF32 conversion): the AVX2/AVX-512
// generic paths handle them; F16C and AVX512-BF16 are nearest-even only.
TEST(ExhaustiveConversion, Fp16TowardZero) { exhaustive<uint16_t>(fp16(), Rounding::TowardZero); }
TEST(ExhaustiveConversion, Fp16NearestAway) { exhaustive<uint16_t>(fp16(), Rounding::NearestAway); }
TEST(ExhaustiveConversion, Bf16TowardZero) { exhaustive<uint16_t>(bf16(), Rounding::TowardZero); }
TEST(ExhaustiveConversion, Bf16NearestAway) { exhaustive<uint16_t>(bf16(), Rounding::NearestAway); }
TEST(ExhaustiveConversion, Tf32TowardZero) { exhaustive<uint32_t>(tf32(), Rounding::TowardZero); }
TEST(ExhaustiveConversion, Tf32NearestAway) { exhaustive<uint32_t>(tf32(), Rounding::NearestAway); }
TEST(ExhaustiveConversion, E4m3fnTowardZero) { exhaustive<uint8_t>(e4m3fn(), Rounding::TowardZero, Overflow::Saturate); }
TEST(ExhaustiveConversion, E4m3fnNearestAway) { exhaustive<uint8_t>(e4m3fn(), Rounding::NearestAway, Overflow::Saturate); }
TEST(ExhaustiveConversion, E5m2TowardZero) { exhaustive<uint8_t>(e5m2(), Rounding::TowardZero); }
TEST(ExhaustiveConversion, E5m2NearestAway) { exhaustive<uint8_t>(e5m2(), Rounding::NearestAway); }
// E5M2's F16C path takes any overflow rule: saturation checked on every input too.
TEST(ExhaustiveConversion, E5m2SaturatingNearestEven) { exhaustive<uint8_t>(e5m2(), Rounding::NearestEven, Overflow::Saturate); }
