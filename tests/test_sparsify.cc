// duet sparsify: 2:4 pruning along each matrix op's reduction axis, recorded per
// node as a relative precision (sparsity=2:4) that the simulator and the
// backends read over the run's own precision.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/sparsify.h"
#include "duet/runtime/session.h"
#include "test_util.h"

using namespace duet;

namespace {
const std::string kDigits = testutil::source_dir() + "/data/models/digits_cnn.onnx";

// In every group of four along `axis`, at most two non-zeros.
bool two_of_four(const Tensor& w, size_t axis) {
  const Dims& d = w.dims();
  int64_t before = 1, after = 1;
  for (size_t i = 0; i < axis; ++i) before *= d[i];
  for (size_t i = axis + 1; i < d.size(); ++i) after *= d[i];
  for (int64_t b = 0; b < before; ++b)
    for (int64_t a = 0; a < after; ++a)
      for (int64_t k0 = 0; k0 < d[axis]; k0 += 4) {
        int nonzero = 0;
        for (int64_t k = k0; k < k0 + 4; ++k) nonzero += w.data<float>()[(b * d[axis] + k) * after + a] != 0.0f;
        if (nonzero > 2) return false;
      }
  return true;
}
}  // namespace

TEST(Sparsify, PrunesEveryEligibleMatrixOpAlongKAndSaysWhyTheOthersStayDense) {
  auto model = onnx_io::load_model(kDigits);
  const passes::SparsifyReport r = passes::sparsify(*model);
  ASSERT_EQ(r.nodes.size(), 4u);
  EXPECT_EQ(r.pruned, 3);
  EXPECT_EQ(r.zeroed * 2, r.weights);  // half of every pruned tensor
  for (const auto& n : r.nodes)
    if (!n.pruned) EXPECT_EQ(n.reason, "K = 1 is not a multiple of 4") << n.node;  // the first conv: one input channel
  const ir::Graph& g = *model->graph;
  EXPECT_TRUE(two_of_four(g.initializers.at("conv_3.weight"), 1));  // Conv: input channels
  EXPECT_TRUE(two_of_four(g.initializers.at("fc_8.weight"), 1));    // Gemm transB: B's columns are K
  EXPECT_FALSE(two_of_four(g.initializers.at("conv_0.weight"), 0));
  for (auto& n : g.nodes) {
    auto a = n->annotations.find(numerics::kPrecisionAnnotation);
    EXPECT_EQ(a != n->annotations.end(), n->name == "Conv_4" || n->name == "Gemm_9" || n->name == "Gemm_12") << n->name;
    if (a != n->annotations.end()) EXPECT_EQ(a->second, "sparsity=2:4");
  }
  // The pruned model runs (zeros stored dense), and survives a save and load with its pattern.
  const std::string path = testing::TempDir() + "/digits_2of4.onnx";
  onnx_io::save_model(*model, path);
  std::shared_ptr<ir::Model> back = onnx_io::load_model(path);
  int annotated = 0;
  for (auto& n : back->graph->nodes) annotated += n->annotations.count(numerics::kPrecisionAnnotation);
  EXPECT_EQ(annotated, 3);
  runtime::SessionOptions cpu;
  cpu.backend = "cpu";
  runtime::prepare_model(*back, cpu);
  EXPECT_NO_THROW(runtime::Session(back, cpu).run(runtime::seeded_feeds(*back->graph, {{"input", {2, 1, 8, 8}}})));
}

TEST(Sparsify, ARelativeAnnotationIsReadOverTheRunsOwnPrecision) {
  const numerics::Precision fp16 = numerics::parse_precision("fp16");
  const numerics::Precision sparse = numerics::resolve_precision("sparsity=2:4", fp16);
  EXPECT_EQ(sparse.x.format.name, "fp16");
  EXPECT_EQ(sparse.sparsity, numerics::Sparsity::TwoOfFour);
  EXPECT_EQ(numerics::resolve_precision("int8", fp16).str(), "int8");  // a full text stands alone
  EXPECT_TRUE(numerics::is_relative_precision("sparsity=2:4"));
  EXPECT_FALSE(numerics::is_relative_precision("x=bf16,sparsity=2:4"));
  EXPECT_FALSE(numerics::is_relative_precision("int8,sparsity=2:4"));
  EXPECT_THROW(numerics::resolve_precision("sparsity=3:4", fp16), Error);
}

TEST(SparsifyCli, WritesTheModelAndRefusesWhatItCannotDoInOneLine) {
  const std::string out = testing::TempDir() + "/cli_2of4.onnx";
  auto r = testutil::run_command(testutil::cli() + " sparsify " + kDigits + " -o " + out + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("pruned"), 3);
  EXPECT_EQ(j.at("nodes").at(0).at("reason"), "K = 1 is not a multiple of 4");
  auto error = [&](const std::string& args, int code, const std::string& needle) {
    auto e = testutil::run_command(testutil::cli() + " sparsify " + args);
    EXPECT_EQ(e.exit_code, code) << e.output;
    EXPECT_EQ(e.output.rfind("duet: error:", 0), 0u) << e.output;
    EXPECT_EQ(std::count(e.output.begin(), e.output.end(), '\n'), 1) << e.output;
    EXPECT_NE(e.output.find(needle), std::string::npos) << e.output;
  };
  error(kDigits + " -o " + out + " --pattern 4", 1, "expected N:M");
  error(kDigits + " -o " + out + " --pattern 1:4", 3, "Duet prunes, emulates and models 2:4");
  error(kDigits + " -o " + out + " --op-types Conv --exclude Conv_4", 1, "nothing to prune 2:4");
  error(kDigits + " -o " + out + " --exclude nope", 1, "no node named 'nope'");
}
