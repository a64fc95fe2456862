// Systolic-array model against SCALE-Sim v2: cycle counts, mapping efficiency
// and compute utilization for every layer in tests/data/scalesim/expected_cycles.csv
// (produced by running SCALE-Sim itself: tools/python/scalesim_expected.py).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "duet/core/error.h"
#include "duet/sim/memory.h"
#include "duet/sim/systolic.h"
#include "duet/sim/topology.h"

namespace duet::sim {
namespace {

const std::string kData = std::string(DUET_SOURCE_DIR) + "/tests/data/scalesim/";

TEST(SimSystolic, GoldenAlexNetConv1WeightStationary32x32) {
  // SCALE-Sim v2's published example: 224x224x3, 11x11, 96 filters, stride 4.
  auto topo = read_topology_csv(kData + "alexnet_conv1.csv");
  ASSERT_EQ(topo.layers.size(), 1u);
  auto r = simulate_gemm(topo.layers[0].gemm(), {32, 32, Dataflow::WeightStationary});
  EXPECT_EQ(r.cycles, 112283);
  EXPECT_NEAR(r.mapping_efficiency * 100, 94.53, 0.005);
  EXPECT_NEAR(r.compute_utilization * 100, 90.78, 0.005);
}

TEST(SimSystolic, MatchesScaleSimOnEveryLayerArrayAndDataflow) {
  std::ifstream f(kData + "expected_cycles.csv");
  ASSERT_TRUE(f.good()) << "missing " << kData << "expected_cycles.csv";
  std::map<std::string, Topology> topologies;
  std::string line;
  bool header = true;
  int checked = 0;
  std::map<std::string, int> per_dataflow;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (header) { header = false; continue; }
    std::stringstream ss(line);
    std::string topo_name, layer_name, rows, cols, df, cycles, mapping, util, method;
    std::getline(ss, topo_name, ','); std::getline(ss, layer_name, ',');
    std::getline(ss, rows, ','); std::getline(ss, cols, ','); std::getline(ss, df, ',');
    std::getline(ss, cycles, ','); std::getline(ss, mapping, ','); std::getline(ss, util, ',');
    if (!topologies.count(topo_name)) topologies[topo_name] = read_topology_csv(kData + topo_name + ".csv");
    const TopologyLayer* layer = nullptr;
    for (auto& l : topologies[topo_name].layers) if (l.name == layer_name) layer = &l;
    ASSERT_NE(layer, nullptr) << topo_name << " has no layer " << layer_name;
    const ArrayShape array{std::stoll(rows), std::stoll(cols), parse_dataflow(df)};
    auto r = simulate_gemm(layer->gemm(), array);
    const std::string where = topo_name + "/" + layer_name + " " + rows + "x" + cols + " " + df;
    EXPECT_EQ(r.cycles, std::stoll(cycles)) << where;
    EXPECT_NEAR(r.mapping_efficiency * 100, std::stod(mapping), 1e-5) << where;
    EXPECT_NEAR(r.compute_utilization * 100, std::stod(util), 1e-5) << where;
    ++checked;
    ++per_dataflow[df];
  }
  // alexnet conv1 + ResNet-18 (21 layers) + MobileNet (28 layers), 3 arrays x 3 dataflows.
  EXPECT_EQ(checked, (1 + 21 + 28) * 9);
  EXPECT_EQ(per_dataflow["os"], checked / 3);
  EXPECT_EQ(per_dataflow["ws"], checked / 3);
  EXPECT_EQ(per_dataflow["is"], checked / 3);
}

TEST(SimSystolic, DataflowsMapTheGemmDifferently) {
  const Gemm g{3025, 96, 363, 1};
  auto os = map_gemm(g, Dataflow::OutputStationary);
  auto ws = map_gemm(g, Dataflow::WeightStationary);
  auto is = map_gemm(g, Dataflow::InputStationary);
  EXPECT_EQ(os.temporal, 363);  // k streams through output-stationary PEs
  EXPECT_EQ(ws.temporal, 3025);  // pixels stream past stationary weights
  EXPECT_EQ(is.temporal, 96);    // filters stream past stationary inputs
}

TEST(SimSystolic, PerfectFitHasFullMappingAndRepeatsAddUp) {
  const ArrayShape a{32, 32, Dataflow::WeightStationary};
  auto one = simulate_gemm({1000, 64, 64, 1}, a);
  EXPECT_DOUBLE_EQ(one.mapping_efficiency, 1.0);
  EXPECT_EQ(one.row_folds * one.col_folds, 4);
  auto four = simulate_gemm({1000, 64, 64, 4}, a);
  EXPECT_EQ(four.cycles + 1, 4 * (one.cycles + 1));
  EXPECT_DOUBLE_EQ(four.macs, 4 * one.macs);
}

TEST(SimSystolic, RejectsBadInput) {
  EXPECT_THROW(parse_dataflow("rs"), Error);
  EXPECT_THROW(simulate_gemm({0, 1, 1, 1}, {}), Error);
  EXPECT_THROW(simulate_gemm({1, 1, 1, 1}, {0, 4, Dataflow::OutputStationary}), Error);
}

TEST(SimTopology, ReadsScaleSimConvAndGemmFiles) {
  auto mobilenet = read_topology_csv(kData + "mobilenet.csv");
  ASSERT_EQ(mobilenet.layers.size(), 28u);  // tabs, "#dw" notes and blank rows skipped
  EXPECT_EQ(mobilenet.layers[1].name, "Conv2_dw");
  EXPECT_EQ(mobilenet.layers[1].channels, 1);
  EXPECT_EQ(mobilenet.layers[0].ofmap_h(), 112);  // ceil((224 - 3 + 2) / 2)
  auto gemm = parse_topology_csv("Layer, M, N, K,\nqkv, 128, 2304, 768,\n", "gemm");
  ASSERT_EQ(gemm.layers.size(), 1u);
  EXPECT_FALSE(gemm.layers[0].is_conv);
  auto g = gemm.layers[0].gemm(8);
  EXPECT_EQ(g.m, 1024);
  EXPECT_EQ(g.n, 2304);
  EXPECT_EQ(g.k, 768);
  // Stride without a trailing comma, separate column stride.
  auto conv = parse_topology_csv("h\nc,10,12,3,3,4,8,1,2\n");
  EXPECT_EQ(conv.layers[0].ofmap_h(), 8);
  EXPECT_EQ(conv.layers[0].ofmap_w(), 6);  // SCALE-Sim counts the partial window at the edge: ceil(11 / 2)
}

TEST(SimTopology, BadRowsNameTheLine) {
  try {
    parse_topology_csv("header\nconv1,224,224,11\n", "net");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("net line 2 (conv1)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_topology_csv("header\nc,3,3,5,5,1,1,1,\n"), Error);  // filter larger than ifmap
  EXPECT_THROW(parse_topology_csv("header only\n"), Error);
  EXPECT_THROW(read_topology_csv("/nonexistent.csv"), Error);
}

TEST(SimMemory, SmallSramsRefetchAndSpill) {
  const Gemm g{3025, 96, 363, 1};
  const ArrayShape ws{32, 32, Dataflow::WeightStationary};
  auto c = simulate_gemm(g, ws);
  auto big = gemm_traffic(g, ws, c, {1e9, 1e9, 1e9}, 1);
  EXPECT_DOUBLE_EQ(big.ifmap_dram_read_bytes, 3025.0 * 363);  // everything fetched once
  EXPECT_DOUBLE_EQ(big.filter_dram_read_bytes, 363.0 * 96);
  EXPECT_DOUBLE_EQ(big.ofmap_dram_write_bytes, 3025.0 * 96);
  EXPECT_DOUBLE_EQ(big.ofmap_dram_read_bytes, 0);
  auto small = gemm_traffic(g, ws, c, {64 * 1024, 64 * 1024, 64 * 1024}, 1);
  EXPECT_DOUBLE_EQ(small.ifmap_dram_read_bytes, 3.0 * 3025 * 363);  // A (1.1 MB) streamed per column fold
  EXPECT_DOUBLE_EQ(small.ofmap_dram_write_bytes, 12.0 * 3025 * 96);  // partial sums spill per row fold
  EXPECT_DOUBLE_EQ(small.ofmap_dram_read_bytes, 11.0 * 3025 * 96);
  // With ample bandwidth the layer is compute-bound; starved, memory-bound.
  EXPECT_NEAR(overlapped_cycles(c, big, ws, 1, 1e6), double(c.cycles + 1), 1.0);
  EXPECT_GT(overlapped_cycles(c, small, ws, 1, 1), small.dram_bytes());
}

}  // namespace
}  // namespace duet::sim
