// Host-CPU kernel model (sim/cpu_model.h) and its validation against the
// machine (`duet simulate --validate`): model arithmetic on fixed rates, and
// PaddleOCR det/rec measured on the cpu backend, total error tracked (printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "duet/sim/cpu_model.h"
#include "duet/sim/device.h"
#include "duet/sim/simulate.h"
#include "test_util.h"

namespace duet::sim {
namespace {

CpuKernelModel fixed_model() {
  CpuKernelRates one;
  one.threads = 1;
  one.fma_flops = 100e9;
  one.conv_flops = 80e9;
  one.matmul_flops = 60e9;
  one.depthwise_flops = 60e9;
  one.transcendental_per_s = 1e9;
  one.overhead_s = 2e-6;
  one.levels = {{"L2", 1e6, 50e9}, {"L3", 32e6, 20e9}, {"DRAM", 0, 10e9}};
  CpuKernelRates two = one;
  two.threads = 2;
  two.conv_flops = 160e9;
  CpuKernelModel m;
  m.simd_floats = 8;
  m.by_threads = {one, two};
  return m;
}

WorkItem conv_item(int64_t cin, int64_t cout, int64_t hw, int64_t groups) {
  WorkItem w;
  w.op = "FusedConv";
  w.matrix = w.conv = true;
  w.gemm = {hw * hw, cout / groups, cin / groups * 9, groups};
  w.flops = 2 * w.gemm.macs();
  w.weight_elements = double(cout * cin / groups * 9);
  w.producer_elements = {double(cin * hw * hw)};
  w.input_channels = {cin};
  w.input_elements = double(cin * hw * hw);
  w.output_parts = {double(cout * hw * hw)};
  w.output_channels = {cout};
  w.output_elements = double(cout * hw * hw);
  return w;
}

TEST(SimCpuModel, GemmShapedConvRunsAtTheConvRateWithOutputChannelsPaddedToTheSimdWidth) {
  const auto m = fixed_model();
  const WorkItem w = conv_item(64, 12, 56, 1);  // 12 output channels compute as 16
  const CpuNodeCost c = cpu_node_cost(m, w, 4, 4, 1);
  EXPECT_EQ(c.op_class, CpuOpClass::Conv);
  EXPECT_DOUBLE_EQ(c.flops, w.flops * 16 / 12);
  EXPECT_DOUBLE_EQ(c.compute_s, w.flops * 16 / 12 / 80e9);
  EXPECT_GT(c.compute_s, c.memory_s);
  EXPECT_DOUBLE_EQ(c.time_s(), 2e-6 + c.compute_s);
  // Two threads: the rates measured at two threads.
  EXPECT_DOUBLE_EQ(cpu_node_cost(m, w, 4, 4, 2).compute_s, w.flops * 16 / 12 / 160e9);
  EXPECT_DOUBLE_EQ(cpu_node_cost(m, w, 4, 4, 8).compute_s, w.flops * 16 / 12 / 160e9);  // largest measured <= 8
}

TEST(SimCpuModel, DepthwiseConvIsBandwidthBoundAtTheLevelHoldingItsWorkingSet) {
  const auto m = fixed_model();
  const WorkItem w = conv_item(16, 16, 320, 16);  // 6.5 MB in, 6.5 MB out: L3
  const CpuNodeCost c = cpu_node_cost(m, w, 4, 4, 1);
  EXPECT_EQ(c.op_class, CpuOpClass::Depthwise);
  EXPECT_EQ(c.level, "L3");
  EXPECT_DOUBLE_EQ(c.bytes, (16.0 * 9 + 2.0 * 16 * 320 * 320) * 4);
  EXPECT_DOUBLE_EQ(c.memory_s, c.bytes / 20e9);
  EXPECT_GT(c.memory_s, c.compute_s);
  const WorkItem big = conv_item(64, 64, 320, 64);  // 52 MB: DRAM
  EXPECT_EQ(cpu_node_cost(m, big, 4, 4, 1).level, "DRAM");
}

TEST(SimCpuModel, BlockedLayoutsPadChannelsInMemoryAndViewsCostOnlyTheOverhead) {
  const auto m = fixed_model();
  WorkItem add;
  add.op = "Add";
  add.producer_elements = {640.0 * 640, 1};
  add.input_channels = {1, 1};
  add.output_parts = {640.0 * 640};
  add.output_channels = {1};
  add.output_elements = 640.0 * 640;
  const CpuNodeCost c = cpu_node_cost(m, add, 4, 4, 1);
  EXPECT_DOUBLE_EQ(c.bytes, (8.0 * 640 * 640 * 2 + 8) * 4);  // one channel stored as eight
  WorkItem sigmoid = add;
  sigmoid.op = "Sigmoid";
  EXPECT_EQ(classify_cpu_op(sigmoid), CpuOpClass::Transcendental);
  EXPECT_GE(cpu_node_cost(m, sigmoid, 4, 4, 1).compute_s, 8.0 * 640 * 640 / 1e9);
  WorkItem view;
  view.op = "Reshape";
  view.output_elements = 1e6;
  EXPECT_DOUBLE_EQ(cpu_node_cost(m, view, 4, 4, 1).time_s(), 2e-6);
}

TEST(SimCpuModel, HostFileKernelRatesParseAndDriveTheSimulation) {
  const char* toml = R"(
name = "test host"
kind = "cpu"
source = "test fixture"
[matrix.peak_tflops]
fp32 = 0.1
[[memory]]
name = "DRAM"
bandwidth_gbs = 10
[cpu_kernels]
simd_floats = 8
source = "fixture"
[[cpu_kernels.rates]]
threads = 1
fma_gflops = 100
conv_gflops = 80
matmul_gflops = 60
depthwise_gflops = 20
exp_gelements_per_s = 1
overhead_us = 2
levels = [ { name = "L2", capacity_bytes = 1000000, bandwidth_gbs = 50 }, { name = "DRAM", capacity_bytes = 0, bandwidth_gbs = 10 } ]
)";
  const Device d = parse_device_toml(toml, "host.toml");
  ASSERT_TRUE(d.cpu);
  ASSERT_EQ(d.cpu->by_threads.size(), 1u);
  EXPECT_DOUBLE_EQ(d.cpu->rates(4).conv_flops, 80e9);
  EXPECT_EQ(d.cpu->rates(1).levels.back().name, "DRAM");
  Workload w;
  w.items = {conv_item(64, 64, 56, 1), conv_item(64, 64, 56, 64)};
  const SimResult r = simulate(w, d, &d, {});
  ASSERT_EQ(r.nodes.size(), 2u);
  EXPECT_EQ(r.nodes[0].cpu_class, "conv");
  EXPECT_EQ(r.nodes[1].cpu_class, "depthwise");
  EXPECT_DOUBLE_EQ(r.latency_s, cpu_node_cost(*d.cpu, w.items[0], 4, 4, 1).time_s() + cpu_node_cost(*d.cpu, w.items[1], 4, 4, 1).time_s());
  EXPECT_THROW(parse_device_toml(std::string(toml) + "\n[[cpu_kernels.rates]]\nthreads = 2\n", "bad.toml"), Error);
}

// Calibrates this machine into a scratch catalog, then validates `model`
// there and prints the median of three validations' total errors (the machine
// is shared). The acceptance figure (within 25%) is measured with the command
// `duet simulate MODEL --device host --validate` and written in the issue; a
// timed unit test would only be flaky, so this one tracks the error and fails
// only when the model is broken (off by more than 60%).
void track_host_model_error(const std::string& model, const std::string& shape) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "timings of an instrumented build say nothing about the host model";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "timings of an instrumented build say nothing about the host model";
#endif
#endif
  const auto dir = std::filesystem::temp_directory_path() / ("duet_validate_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto cal = testutil::run_command(testutil::cli() + " calibrate-host --seconds 0.2 --out " + (dir / "host.toml").string());
  ASSERT_EQ(cal.exit_code, 0) << cal.output;
  std::vector<double> errors;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = testutil::run_command(testutil::cli() + " simulate " + model + " --shape " + shape + " --device host --devices " +
                                   dir.string() + " --validate --runs 7 --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    const auto& v = j.at("validation");
    int both = 0;
    for (auto& n : v.at("nodes")) both += !n.at("modelled_s").is_null() && !n.at("measured_s").is_null();
    EXPECT_GT(both, 50) << "modelled and measured nodes must correspond";
    errors.push_back(v.at("total_error").get<double>());
    std::cout << model << ": modelled " << v.at("modelled_total_s").get<double>() * 1e3 << " ms, measured "
              << v.at("measured_total_s").get<double>() * 1e3 << " ms, error " << errors.back() * 100
              << "%, median |node error| " << v.at("median_abs_node_error").get<double>() * 100 << "%, load "
              << v.at("load_average").get<double>() << "\n";
  }
  std::filesystem::remove_all(dir);
  std::sort(errors.begin(), errors.end());
  std::cout << "median total error of three validations: " << errors[1] * 100 << "%\n";
  EXPECT_LE(std::fabs(errors[1]), 0.6) << "the host model is off by more than 60%: broken, not noise";
}

TEST(SimCpuModel, PaddleOcrDetTotalErrorIsTracked) {
  DUET_REQUIRE_SHARED();
  track_host_model_error(testutil::shared_dir() + "/models/paddleocr/ch_PP-OCRv4_det_infer.onnx", "x=1x3x640x640");
}

TEST(SimCpuModel, PaddleOcrRecTotalErrorIsTracked) {
  DUET_REQUIRE_SHARED();
  track_host_model_error(testutil::shared_dir() + "/models/paddleocr/ch_PP-OCRv4_rec_infer.onnx", "x=1x3x48x320");
}

}  // namespace
}  // namespace duet::sim
