// Device catalog, per-node simulation (roofline, systolic, energy, fallback)
// and the `duet devices` / `duet simulate` commands.
#include <gtest/gtest.h>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

#include <filesystem>

#include "duet/core/error.h"
#include "duet/sim/device.h"
#include "duet/sim/report.h"
#include "duet/sim/simulate.h"
#include "duet/sim/sweep.h"
#include "duet/passes/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/sim/topology.h"
#include "duet/sim/workload.h"
#include "duet/train/graph_builder.h"
#include "test_util.h"

namespace duet::sim {
namespace {

const std::string kDevices = std::string(DUET_SOURCE_DIR) + "/devices";
const std::string kData = std::string(DUET_SOURCE_DIR) + "/tests/data/scalesim/";

const char* kHost = R"(
name = "test host"
calibrated = true
source = "test fixture"
[matrix.peak_tflops]
fp32 = 0.1
[vector.peak_tflops]
fp32 = 0.1
[[memory]]
name = "DRAM"
bandwidth_gbs = 20
)";

TEST(SimDevices, CatalogShipsTheListedDevicesWithSources) {
  auto catalog = load_catalog(kDevices);
  std::set<std::string> ids;
  for (auto& d : catalog) {
    ids.insert(d.id);
    EXPECT_FALSE(d.source.empty()) << d.id;
    if (!d.calibrated) continue;
    EXPECT_FALSE(d.matrix.source.empty()) << d.id;
    for (auto& m : d.memory) EXPECT_FALSE(m.source.empty()) << d.id << " " << m.name;
    EXPECT_GT(d.dram().bandwidth_bytes_per_s, 0) << d.id;
  }
  for (const char* id : {"host", "t4", "a10g", "a100", "h100", "tpu-v1", "tpu-v4", "inferentia1", "inferentia2", "gaudi2",
                         "generic-systolic"})
    EXPECT_TRUE(ids.count(id)) << id;
}

TEST(SimDevices, OverridesReachEveryParameter) {
  auto d = find_device(kDevices, "generic-systolic",
                       {parse_override("matrix.rows=128"), parse_override("matrix.dataflow=os"),
                        parse_override("memory.1.bandwidth_gbs=100"), parse_override("matrix.peak_tflops.int8=40")});
  EXPECT_EQ(d.matrix.rows, 128);
  EXPECT_EQ(d.matrix.dataflows.front(), "os");
  EXPECT_DOUBLE_EQ(d.dram().bandwidth_bytes_per_s, 100e9);
  EXPECT_DOUBLE_EQ(d.matrix.peak_flops.at("int8"), 40e12);
  EXPECT_THROW(parse_override("matrix.rows"), Error);
  EXPECT_THROW(find_device(kDevices, "no-such-device"), Error);
  EXPECT_THROW(parse_device_toml("[matrix]\nmodel = \"magic\"\n", "bad.toml"), Error);
}

TEST(SimDevices, OverridesThatChangeNothingOrCannotBeTrueAreOneClearError) {
  const std::string dir = std::string(DUET_SOURCE_DIR) + "/devices";
  auto error_of = [&](const std::string& set) {
    try {
      find_device(dir, "tpu-v1", {parse_override(set)});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("matrix.row=128").find("has no parameter 'matrix.row'"), std::string::npos);  // a typo of rows
  EXPECT_NE(error_of("memory.1.bandwidth_gbs=0").find("needs a positive bandwidth_gbs"), std::string::npos);
  EXPECT_NE(error_of("memory.1.bandwidth_gbs=-1").find("must not be negative"), std::string::npos);
  EXPECT_NE(error_of("memory.1.bandwidth_gbs=nan").find("finite"), std::string::npos);
  EXPECT_NE(error_of("matrix.rows=1.5").find("whole number"), std::string::npos);
  EXPECT_NE(error_of("power.tdp_w=-5").find("must not be negative"), std::string::npos);
  EXPECT_EQ(find_device(dir, "tpu-v1", {parse_override("matrix.rows=128")}).matrix.rows, 128);
  EXPECT_DOUBLE_EQ(find_device(dir, "tpu-v1", {parse_override("efficiency.kernel_us=2")}).efficiency->kernel_s, 2e-6);  // a new table
}

TEST(SimDevices, ThisMachinesOwnCalibrationIsReadInsteadOfTheShippedHostFile) {
  const std::filesystem::path config = std::filesystem::temp_directory_path() / ("duet_xdg_" + std::to_string(::getpid()));
  std::filesystem::remove_all(config);
  const char* saved = std::getenv("XDG_CONFIG_HOME");
  const std::string before = saved ? saved : "";
  ::setenv("XDG_CONFIG_HOME", config.c_str(), 1);
  EXPECT_EQ(user_host_file(), (config / "duet" / "host.toml").string());
  const std::string shipped = find_device(default_devices_dir(), "host").name;
  std::filesystem::create_directories(config / "duet");
  std::ifstream in(default_devices_dir() + "/host.toml");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  text.replace(text.find("name = \""), 8, "name = \"this machine, calibrated: ");
  std::ofstream(config / "duet" / "host.toml") << text;
  EXPECT_EQ(find_device(default_devices_dir(), "host").name.rfind("this machine, calibrated: ", 0), 0u);
  bool listed = false;
  for (const Device& d : load_catalog(default_devices_dir())) listed |= d.id == "host" && d.name.rfind("this machine", 0) == 0;
  EXPECT_TRUE(listed);
  std::filesystem::remove_all(config);
  EXPECT_EQ(find_device(default_devices_dir(), "host").name, shipped);
  if (saved) ::setenv("XDG_CONFIG_HOME", before.c_str(), 1);
  else ::unsetenv("XDG_CONFIG_HOME");
}

TEST(SimSimulate, SystolicDeviceReproducesTheGoldenCycles) {
  auto d = find_device(kDevices, "generic-systolic");
  auto w = workload_from_topology(read_topology_csv(kData + "alexnet_conv1.csv"), 1);
  SimOptions o;
  o.precision = "int8";
  auto r = simulate(w, d, nullptr, o);
  ASSERT_EQ(r.nodes.size(), 1u);
  EXPECT_EQ(r.nodes[0].systolic_cycles, 112284);  // cycle numbers 0..112283
  EXPECT_EQ(r.nodes[0].dataflow, "ws");
  o.dataflow = Dataflow::OutputStationary;
  EXPECT_EQ(simulate(w, d, nullptr, o).nodes[0].systolic_cycles, 121125);
}

TEST(SimSimulate, UnsupportedPrecisionFallsBackToTheHostWithTransfers) {
  auto tpu = find_device(kDevices, "tpu-v1");
  auto host = parse_device_toml(kHost, "host.toml");
  auto w = workload_from_topology(read_topology_csv(kData + "resnet18.csv"), 1);
  SimOptions fp32;
  auto on_host = simulate(w, tpu, &host, fp32);  // TPU v1 has no fp32 rate
  EXPECT_EQ(on_host.host_nodes, int(w.items.size()));
  EXPECT_DOUBLE_EQ(on_host.energy.transfer_j, 0);  // never leaves the host
  SimOptions mixed;
  mixed.auto_cast = "matmul";
  mixed.auto_cast_type = "fp8";  // TPU v1 has int8 only: still the host
  EXPECT_EQ(simulate(w, tpu, &host, mixed).host_nodes, int(w.items.size()));
  SimOptions int8;
  int8.precision = "int8";
  auto on_tpu = simulate(w, tpu, &host, int8);
  EXPECT_EQ(on_tpu.host_nodes, 0);
  EXPECT_GT(on_tpu.energy.transfer_j, 0);  // input up, output down
  EXPECT_LT(on_tpu.latency_s, on_host.latency_s);
  EXPECT_THROW(simulate(w, tpu, nullptr, fp32), Error);  // no host to fall back to
  SimOptions bad;
  bad.auto_cast = "sometimes";
  EXPECT_THROW(simulate(w, tpu, &host, bad), Error);
}

// Mixed precision, node by node: four identical 3x3 convolutions, each
// annotated with its own precision (numerics::Precision text, the node
// annotation "precision"), costed on an A100 at a compute-bound batch. Each
// node's time follows its own annotation: FP32 (the default), BF16 (16x the
// FP32 rate), INT8 (2x BF16) and INT8 with 2:4-sparse weights (2x again, with
// half the weight bytes); its DRAM traffic follows its own storage width.
TEST(SimSimulate, EachNodeIsCostedAtItsOwnAnnotatedPrecision) {
  train::GraphBuilder b;
  ir::Value* x = b.input("x", DType::Float32, {1, 256, 28, 28});
  for (int i = 0; i < 4; ++i) x = b.conv2d(x, 256, 256, 3, 1);
  b.output(x);
  std::unique_ptr<ir::Model> model = b.finish();
  const std::vector<std::string> annotation = {"", "bf16", "int8", "int8,sparsity=2:4"};
  int conv = 0;
  for (auto& n : model->graph->nodes)
    if (n->op_type == "Conv" && !annotation[conv++].empty()) n->annotations["precision"] = annotation[conv - 1];
  ASSERT_EQ(conv, 4);

  const Workload w = workload_from_model(*model, 32);
  ASSERT_EQ(w.items.size(), 4u);
  Device a100 = find_device(kDevices, "a100");
  a100.efficiency.reset();  // the roofline alone (TestEfficiency below adds what the runtime achieves)
  const SimResult r = simulate(w, a100, nullptr, {});  // default precision fp32
  ASSERT_EQ(r.nodes.size(), 4u);
  const std::vector<std::string> reported = {"fp32", "bf16", "int8", "int8,sparsity=2:4"};
  const std::vector<double> peak = {19.5e12, 312e12, 624e12, 2 * 624e12};  // sparse: the device's 2:4 speedup
  for (size_t i = 0; i < 4; ++i) {
    const NodeResult& n = r.nodes[i];
    EXPECT_EQ(n.precision, reported[i]);
    EXPECT_EQ(n.bound, "compute") << n.name;
    EXPECT_NEAR(n.compute_s, n.flops / peak[i], 1e-9 * n.compute_s) << n.name;
    EXPECT_GE(n.time_s, n.compute_s) << n.name;  // plus the host link for the first input and the last output
  }
  EXPECT_NEAR(r.nodes[0].compute_s / r.nodes[1].compute_s, 16, 1e-9);
  EXPECT_NEAR(r.nodes[1].compute_s / r.nodes[2].compute_s, 2, 1e-9);
  EXPECT_NEAR(r.nodes[2].compute_s / r.nodes[3].compute_s, 2, 1e-9);
  EXPECT_DOUBLE_EQ(r.nodes[1].time_s, r.nodes[1].compute_s);  // inner nodes: compute alone
  // Storage: activations 4, 2, 1, 1 bytes; weights 4, 2, 1 and 2:4's 0.625 bytes.
  const double acts = w.items[0].input_elements + w.items[0].output_elements, weights = w.items[0].weight_elements;
  const std::vector<double> bytes = {4 * (acts + weights), 2 * (acts + weights), acts + weights, acts + 0.625 * weights};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r.nodes[i].dram_bytes, bytes[i], 1e-9 * bytes[i]) << r.nodes[i].name;

  // The annotation wins over the run's default; unannotated nodes take the default.
  SimOptions bf16;
  bf16.precision = "bf16";
  const SimResult rb = simulate(w, a100, nullptr, bf16);
  EXPECT_EQ(rb.nodes[0].precision, "bf16");
  EXPECT_EQ(rb.nodes[2].precision, "int8");
  EXPECT_DOUBLE_EQ(rb.nodes[3].time_s, r.nodes[3].time_s);
  // A device without the annotated rate sends that node alone to the host.
  const Device t4 = find_device(kDevices, "t4");
  Workload wt = w;
  wt.items[1].precision = "x=int16,acc=int32";  // no device has an int16 rate
  auto host = parse_device_toml(kHost, "host.toml");
  SimOptions fp16;  // T4 (Turing) has no BF16 rate
  fp16.precision = "fp16";
  const SimResult rt = simulate(wt, t4, &host, fp16);
  EXPECT_EQ(rt.host_nodes, 1);
  EXPECT_TRUE(rt.nodes[1].on_host);
  EXPECT_EQ(rt.nodes[1].fallback_reason, "no int16 matrix rate");
}

// The sweep pipeline from C++: the bundled text-direction classifier on three
// devices x two default precisions x two batches, no CLI involved.
// The batches of one sweep do not leak into each other: batch 1 after batch 256
// costs what batch 1 alone does (shape inference once rewrote the shared graph).
TEST(SimSweep, BatchOrderDoesNotMatter) {
  auto model = onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/digits_cnn.onnx");
  SweepRequest r;
  r.catalog_dir = kDevices;
  r.devices = {"a100"};
  r.batches = {256, 1};
  const Sweep both = sweep_model(*model, r);
  r.batches = {1};
  const Sweep alone = sweep_model(*model, r);
  ASSERT_EQ(both.points.size(), 2u);
  EXPECT_EQ(both.points[1].result.batch, 1);
  EXPECT_DOUBLE_EQ(both.points[1].result.latency_s, alone.points[0].result.latency_s);
  EXPECT_GT(both.points[0].result.latency_s, both.points[1].result.latency_s);
}

TEST(SimSweep, BundledClassifierOverThreeDevicesPrecisionsAndBatches) {
  auto model = onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/ppocr_cls_mobile_v2.0.onnx");
  SweepRequest r;
  r.catalog_dir = kDevices;
  r.devices = {"t4", "a100", "tpu-v4"};
  r.precisions = {"fp16", "int8,sparsity=2:4"};
  r.batches = {1, 8};
  r.input_shapes = {{"x", {1, 3, 48, 192}}};
  ir::Node* first_conv = nullptr;
  for (auto& n : model->graph->nodes)
    if (!first_conv && n->op_type == "Conv") first_conv = n.get();
  first_conv->annotations["precision"] = "bf16";  // its own precision survives the sweep's copies
  const Sweep s = sweep_model(*model, r);
  for (const SweepPoint& p : s.points)
    for (const NodeResult& n : p.result.nodes)
      if (n.name == first_conv->name && p.result.device_id != "t4") EXPECT_EQ(n.precision, "bf16");  // T4: no bf16
  ASSERT_EQ(s.devices.size(), 3u);
  ASSERT_EQ(s.points.size(), 12u);
  for (size_t i = 0; i < s.points.size(); ++i) {
    const SweepPoint& p = s.points[i];
    EXPECT_EQ(p.device, i / 4);
    EXPECT_EQ(p.result.device_id, r.devices[i / 4]);
    EXPECT_EQ(p.precision, r.precisions[(i / 2) % 2]);
    EXPECT_EQ(p.batch, r.batches[i % 2]);
    EXPECT_EQ(p.result.batch, p.batch);
    EXPECT_GT(p.nodes, 100);
    EXPECT_GT(p.result.latency_s, 0);
    if (p.batch == 8) EXPECT_GT(p.result.throughput_per_s, s.points[i - 1].result.throughput_per_s) << i;
  }
  // TPU v4 has no FP16 rate (BF16 and INT8): FP16 nodes go to the host, INT8 ones stay.
  EXPECT_GT(s.points[8].result.host_nodes, 0);
  EXPECT_EQ(s.points[10].result.host_nodes, 0);
  // On the GPUs INT8 2:4 moves fewer bytes than FP16 at the same batch.
  for (size_t d = 0; d < 2; ++d) {
    double fp16 = 0, int8 = 0;
    for (auto& n : s.points[d * 4].result.nodes) fp16 += n.dram_bytes;
    for (auto& n : s.points[d * 4 + 2].result.nodes) int8 += n.dram_bytes;
    EXPECT_LT(int8, 0.7 * fp16) << r.devices[d];
  }
  // The model is not changed by the sweep, and a bad request is one clear error.
  EXPECT_EQ(model->graph->inputs.front()->type.shape.str(), onnx_io::load_model(std::string(DUET_SOURCE_DIR) +
                                                                                "/data/models/ppocr_cls_mobile_v2.0.onnx")
                                                                 ->graph->inputs.front()->type.shape.str());
  SweepRequest bad = r;
  bad.precisions = {"int9"};
  EXPECT_THROW(sweep_model(*model, bad), Error);
  bad = r;
  bad.devices = {"no-such-device"};
  EXPECT_THROW(sweep_model(*model, bad), Error);
}

// A QDQ model says its precisions through its DequantizeLinear nodes:
// annotate_qdq_precision writes them on the matrix ops, and the simulator
// costs each at its own (INT8 conv, INT4 weight-only MatMul, float conv).
TEST(SimSimulate, QdqModelsAreCostedAtTheirQuantizedPrecisions) {
  train::GraphBuilder b(21);
  auto initializer = [&](const std::string& name, DType t, const Dims& dims) {
    return b.initializer(name, Tensor::zeros(t, dims));
  };
  auto dq = [&](ir::Value* q, ir::Value* scale, std::vector<ir::Attribute> attrs = {}) {
    return b.node("DequantizeLinear", {q, scale}, attrs);
  };
  ir::Value* x = b.input("x", DType::Float32, {1, 64, 16, 16});
  // Conv 1: UINT8 activations (per tensor), INT8 weights per output channel.
  ir::Value* xq = b.node("QuantizeLinear", {x, b.initializer("xs", Tensor::scalar(0.1f)),
                                            b.initializer("xz", Tensor::scalar<uint8_t>(128))});
  ir::Value* xd = dq(xq, b.initializer("xs2", Tensor::scalar(0.1f)));
  ir::Value* w1 = dq(initializer("w1q", DType::Int8, {64, 64, 3, 3}), b.initializer("w1s", Tensor::zeros(DType::Float32, {64})),
                     {train::attr_int("axis", 0)});
  ir::Value* y = b.node("Conv", {xd, w1}, {train::attr_ints("pads", {1, 1, 1, 1})});
  // Conv 2: float.
  y = b.conv2d(y, 64, 64, 3, 1);
  // MatMul: INT4 weights in blocks of 32 along K, float activations.
  ir::Value* flat = b.node("Reshape", {y, b.initializer("shape", Tensor::from_vector<int64_t>({256, 64}, {2}))});
  ir::Value* w3 = dq(initializer("w3q", DType::Int4, {64, 128}), b.initializer("w3s", Tensor::zeros(DType::Float32, {2, 128})),
                     {train::attr_int("axis", 0), train::attr_int("block_size", 32)});
  b.output(b.node("MatMul", {flat, w3}));
  std::unique_ptr<ir::Model> model = b.finish();
  EXPECT_EQ(passes::annotate_qdq_precision(*model), 2);
  std::map<std::string, std::string> by_op;
  for (auto& n : model->graph->nodes)
    if (n->annotations.count("precision")) by_op[n->op_type] = n->annotations.at("precision");
  EXPECT_EQ(by_op["Conv"], "int8");  // the preset: UINT8 activations compute 8-bit products
  EXPECT_EQ(by_op["MatMul"], "x=fp32/none,w=int4/block,acc=fp32,out=fp32,block=32");

  const Workload w = workload_from_model(*model, 1);
  const SimResult r = simulate(w, find_device(kDevices, "a100"), nullptr, {});
  std::vector<std::string> matrix;
  for (auto& n : r.nodes)
    if (n.matrix) matrix.push_back(n.precision);
  EXPECT_EQ(matrix, (std::vector<std::string>{"int8", "fp32",
                                              "x=fp32/none,w=int4/block,acc=fp32,out=fp32,block=32"}));
}

TEST(SimSimulate, DramDominatesGemvEnergyAtBatchOneAndFallsWithBatch) {
  // A transformer layer's projections at one token per sequence: GEMV-shaped.
  auto topo = parse_topology_csv(
      "Layer, M, N, K,\nqkv, 1, 3072, 1024,\nattn_out, 1, 1024, 1024,\nffn_up, 1, 4096, 1024,\nffn_down, 1, 1024, 4096,\n",
      "encoder_layer");
  auto a100 = find_device(kDevices, "a100");
  SimOptions bf16;
  bf16.precision = "bf16";
  double previous = 1;
  for (int64_t batch : {1, 8, 64, 512}) {
    auto r = simulate(workload_from_topology(topo, batch), a100, nullptr, bf16);
    const double share = r.energy.dram_j / r.energy.total();
    if (batch == 1) EXPECT_GT(share, 0.5) << "DRAM share at batch 1: " << share;
    EXPECT_LT(share, previous) << "batch " << batch;
    previous = share;
    if (batch == 1) {
      for (auto& n : r.nodes) {
        EXPECT_EQ(n.bound, "memory") << n.name;
        EXPECT_GT(n.compute_bound_batch, 1) << n.name;
      }
    }
  }
}

TEST(SimSimulate, ReportIsSelfContainedAndLabelledModelled) {
  auto w = workload_from_topology(read_topology_csv(kData + "resnet18.csv"), 1);
  auto r = simulate(w, find_device(kDevices, "t4"), nullptr, {});
  auto html = html_report("t", {r});
  EXPECT_NE(html.find("modelled"), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org"));  // only the SVG namespace
  EXPECT_EQ(html.find("<script"), std::string::npos);
  auto j = to_json(r);
  EXPECT_EQ(j["modelled"], true);
  EXPECT_EQ(j["nodes"].size(), w.items.size());
}

TEST(SimCli, SimulateAndDevicesCommands) {
  using testutil::run_command;
  const std::string cli = DUET_CLI;
  auto ok = run_command(cli + " simulate " + kData + "alexnet_conv1.csv --device generic-systolic --precision int8 --batch 1,2 --json");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  auto j = nlohmann::json::parse(ok.output);
  EXPECT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["nodes"][0]["systolic"]["cycles"], 112284);
  auto help = run_command(cli + " simulate --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--auto-cast"), std::string::npos);
  for (const std::string& bad : std::vector<std::string>{" simulate " + kData + "resnet18.csv --device nope",
                                " simulate " + kData + "resnet18.csv --device t4 --batch 0",
                                " simulate " + kData + "resnet18.csv --device t4 --precision fp64",
                                " simulate " + kData + "resnet18.csv --device t4 --dataflow rs",
                                " simulate /nonexistent.csv --device t4"}) {
    auto r = run_command(cli + bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.output.find("duet: error: "), std::string::npos) << bad << ": " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << bad << ": " << r.output;
  }
  auto list = run_command(cli + " devices");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.output.find("tpu-v4"), std::string::npos);
}

}  // namespace
}  // namespace duet::sim
