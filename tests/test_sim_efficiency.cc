// The [efficiency] layer of the device model (kernel time, achieved fractions
// of the peaks, wave quantisation, fusion as a device compiler does it) and the
// published-measurement validation that fits it (sim/published.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/sim/published.h"
#include "duet/sim/simulate.h"
#include "duet/sim/workload.h"
#include "duet/train/graph_builder.h"
#include "test_util.h"

using namespace duet;
using namespace duet::sim;
namespace fs = std::filesystem;

namespace {

const std::string kDevices = std::string(DUET_SOURCE_DIR) + "/devices";

// conv 3x3 (256 -> 256 channels, 28 x 28) -> Relu -> Add(the block's input): a residual block's tail.
std::unique_ptr<ir::Model> residual_block() {
  train::GraphBuilder b;
  ir::Value* x = b.input("x", DType::Float32, {1, 256, 28, 28});
  ir::Value* y = b.node("Relu", {b.conv2d(x, 256, 256, 3, 1)});
  b.output(b.node("Add", {y, x}));
  return b.finish();
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(SimEfficiency, KernelTimeAchievedPeakWavesAndFusion) {
  auto model = residual_block();
  const Workload w = workload_from_model(*model, 1);
  ASSERT_EQ(w.items.size(), 3u);
  const Device a100 = find_device(kDevices, "a100");
  ASSERT_TRUE(a100.efficiency);
  const Efficiency& e = *a100.efficiency;
  Device roofline = a100;
  roofline.efficiency.reset();
  SimOptions o;
  o.precision = "int8";  // the A100 lists no INT8 vector rate: the matrix engine alone
  const SimResult plain = simulate(w, roofline, nullptr, o), real = simulate(w, a100, nullptr, o);

  // The conv: its own kernel; the matrix peak at the achieved fraction, over
  // whole waves of 128 x 128 output tiles: M = 784 rows, N = 256 -> 7 x 2 = 14
  // tiles, one wave over 108 SMs.
  const NodeResult& conv = real.nodes[0];
  EXPECT_DOUBLE_EQ(conv.overhead_s, e.kernel_s);
  const double waves = std::ceil(std::ceil(784.0 / e.tile_m) * std::ceil(256.0 / e.tile_n) / e.units);
  const double wave_efficiency = 784.0 * 256.0 / (waves * e.units * e.tile_m * e.tile_n);
  EXPECT_NEAR(conv.compute_s, plain.nodes[0].compute_s / (e.matrix_fraction * wave_efficiency), 1e-12 * conv.compute_s);
  EXPECT_NEAR(conv.memory_s, plain.nodes[0].memory_s / e.bandwidth_fraction, 1e-12 * conv.memory_s);

  // Relu joins the conv's kernel: no kernel time and no DRAM traffic of its own.
  const NodeResult& relu = real.nodes[1];
  EXPECT_EQ(relu.bound, "fused");
  EXPECT_EQ(relu.overhead_s, 0);
  EXPECT_EQ(relu.dram_bytes, 0);
  EXPECT_GT(plain.nodes[1].dram_bytes, 0);
  // Add joins too (through the fused Relu), reading only the skip tensor: x, 1 byte per INT8 element.
  const NodeResult& add = real.nodes[2];
  EXPECT_EQ(add.bound, "fused");
  EXPECT_DOUBLE_EQ(add.dram_bytes, 256.0 * 28 * 28);
  EXPECT_LT(add.time_s, plain.nodes[2].time_s);
}

TEST(SimEfficiency, ADeviceFileStatesItsParametersTogether) {
  const std::string base = R"(name = "x"
[matrix.peak_tflops]
fp32 = 1
[[memory]]
name = "DRAM"
bandwidth_gbs = 100
)";
  EXPECT_NO_THROW(parse_device_toml(base + "[efficiency]\nkernel_us = 3\nunits = 4\ntile_m = 8\ntile_n = 8\n", "x.toml"));
  EXPECT_THROW(parse_device_toml(base + "[efficiency]\nunits = 4\n", "x.toml"), Error);  // tiles missing
  EXPECT_THROW(parse_device_toml(base + "[efficiency]\nmatrix_fraction = 1.5\n", "x.toml"), Error);
  EXPECT_THROW(parse_device_toml(base + "[efficiency]\nkernel_us = -1\n", "x.toml"), Error);
}

// Points made by the simulator itself with known parameters: the published
// check reproduces them, and the fit finds those parameters again.
TEST(SimEfficiency, TheFitRecoversTheParametersThatMadeThePoints) {
  const fs::path dir = temp_dir("duet_published");
  const std::string model_path = (dir / "block.onnx").string();
  onnx_io::save_model(*residual_block(), model_path);
  ValidationRequest r;
  r.catalog_dir = kDevices;
  r.workloads["block"] = model_path;
  const std::vector<Override> truth = {{"efficiency.kernel_us", "4"}, {"efficiency.matrix_fraction", "0.6"},
                                       {"efficiency.bandwidth_fraction", "0.9"}, {"efficiency.tile_m", "64"},
                                       {"efficiency.tile_n", "64"}};
  std::ofstream csv(dir / "points.csv");
  csv << "# made by the simulator\n"
      << "device_id,workload,scenario,batch,precision,metric,value,split,source,notes\n";
  for (const char* device : {"t4", "a100", "h100"}) {
    ValidationRequest made = r;
    made.overrides = truth;
    for (int64_t batch : {1, 64}) {
      PublishedPoint p;
      p.device_id = device;
      p.workload = "block";
      p.precision = "int8";
      p.metric = batch == 1 ? "latency" : "throughput";
      p.batch = batch;
      p.value = 1;
      p.split = "fit";
      p.source = "test";
      const PointCheck c = check_published({p}, made)[0];
      ASSERT_TRUE(c.skipped.empty()) << c.skipped;
      csv.precision(17);
      csv << device << ",block," << (batch == 1 ? "singlestream" : "offline") << "," << batch << ",int8," << p.metric << ","
          << c.modelled << "," << (std::string(device) == "h100" ? "check" : "fit") << ",made by the test,\"a, quoted note\"\n";
    }
  }
  csv << ",block,offline,8,int8,throughput,100,check,a device without a catalog entry,\n";
  csv << "t4,other,offline,8,int8,throughput,100,check,a workload without a model,\n";
  csv.close();

  const std::vector<PublishedPoint> points = read_published((dir / "points.csv").string());
  ASSERT_EQ(points.size(), 8u);
  EXPECT_EQ(points[0].notes, "a, quoted note");
  const EfficiencyFit f = fit_efficiency(points, r, "gpu");
  EXPECT_EQ(f.parameters.size(), truth.size());
  for (size_t i = 0; i < truth.size(); ++i) {
    EXPECT_EQ(f.parameters[i].key, truth[i].key);
    EXPECT_DOUBLE_EQ(std::stod(f.parameters[i].value), std::stod(truth[i].value)) << truth[i].key;
  }
  EXPECT_LT(f.fit.max_abs, 1e-9);
  // With the fitted values, the held-out device (h100) is reproduced too; two points are listed, not checked.
  r.kind_overrides["gpu"] = f.parameters;
  const std::vector<PointCheck> checks = check_published(points, r);
  EXPECT_EQ(checks[6].skipped, "no catalog entry for this device");
  EXPECT_EQ(checks[7].skipped, "no model given for workload 'other'");
  EXPECT_LT(summarize(checks, "check").max_abs, 1e-9);
  EXPECT_EQ(summarize(checks).points, 6u);
  fs::remove_all(dir);
}

TEST(SimEfficiency, AMalformedPointNamesItsLine) {
  const fs::path dir = temp_dir("duet_published_bad");
  std::ofstream(dir / "bad.csv") << "device_id,workload,scenario,batch,precision,metric,value,split,source\n"
                                 << "t4,resnet50,offline,8,int8,speed,100,fit,somewhere\n";
  try {
    read_published((dir / "bad.csv").string());
    FAIL() << "a bad metric was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("throughput or latency"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// The committed validation set: >= 12 points over >= 4 catalog devices, both
// throughput and batch-1 latency, each with a source, split into fit and check.
TEST(SimEfficiency, TheCommittedValidationSetCoversTheAcceptance) {
  const std::vector<PublishedPoint> points = read_published(kDevices + "/validation/published.csv");
  std::set<std::string> devices;
  size_t resnet = 0, latency = 0, throughput = 0, fit = 0, check = 0;
  for (const PublishedPoint& p : points) {
    EXPECT_FALSE(p.source.empty());
    if (p.device_id.empty() || p.workload != "resnet50") continue;
    ++resnet;
    devices.insert(p.device_id);
    (p.metric == "latency" ? latency : throughput) += 1;
    (p.split == "fit" ? fit : check) += 1;
    EXPECT_NO_THROW(find_device(kDevices, p.device_id)) << p.device_id;
  }
  EXPECT_GE(resnet, 12u);
  EXPECT_GE(devices.size(), 4u);
  EXPECT_GE(latency, 4u);
  EXPECT_GE(throughput, 4u);
  EXPECT_EQ(fit, check);
}
