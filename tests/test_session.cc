#include <gtest/gtest.h>

#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"
#include "test_util.h"

using namespace duet;

namespace {
std::shared_ptr<ir::Model> bundled() {
  return onnx_io::load_model(testutil::source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx");
}
Tensor sample() { return onnx_io::load_tensor_pb(testutil::source_dir() + "/data/samples/cls/sample_0.pb"); }
}  // namespace

TEST(Session, SameInputSameBitsAcrossRunsAndThreadCounts) {
  auto model = bundled();
  runtime::Session one(model, {1});
  runtime::Session two(model, {2});
  const Tensor x = sample();
  auto a = one.run({{"x", x}});
  auto b = one.run({{"x", x}});
  auto c = two.run({{"x", x}});
  EXPECT_TRUE(a[0].tensor.same_bits(b[0].tensor));
  EXPECT_TRUE(a[0].tensor.same_bits(c[0].tensor));
}

TEST(Session, BuffersAreReusedSoSteadyStateRunsAllocateNothing) {
  runtime::Session s(bundled(), {1});
  const Tensor x = sample();
  s.run({{"x", x}});
  const size_t after_first = s.allocation_count();
  EXPECT_GT(after_first, 0u);
  for (int i = 0; i < 3; ++i) s.run({{"x", x}});
  EXPECT_EQ(s.allocation_count(), after_first);
}

TEST(Session, ClassifierPutsUprightAndRotatedSamplesInTheRightClass) {
  runtime::Session s(bundled(), {2});
  auto prob_upright = [&](int i) {
    auto out = s.run({{"x", onnx_io::load_tensor_pb(testutil::source_dir() + "/data/samples/cls/sample_" + std::to_string(i) + ".pb")}});
    return out[0].tensor.data<float>()[0];
  };
  EXPECT_GT(prob_upright(0), 0.5f);
  EXPECT_LT(prob_upright(1), 0.5f);
  EXPECT_LT(prob_upright(2), 0.5f);
}

TEST(Session, RejectsANodeWithMoreInputsThanItsOpReads) {
  // MatMul(x, x, x): ONNX's MatMul takes two; running it with the third ignored would be a silent wrong answer.
  auto model = std::make_shared<ir::Model>();
  model->opset_imports.push_back({"", 13});
  ir::Graph& g = *model->graph;
  g.inputs.push_back(g.value("x"));
  g.add_node("MatMul", {g.value("x"), g.value("x"), g.value("x")}, {g.value("y")}, "mm");
  g.outputs.push_back(g.value("y"));
  try {
    runtime::Session s(model);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 3 inputs, but MatMul-13 takes 2 inputs"), std::string::npos) << e.what();
  }
}

TEST(Session, RejectsUnknownOpAtCreationNamingIt) {
  auto model = std::make_shared<ir::Model>();
  ir::Graph& g = *model->graph;
  g.inputs.push_back(g.value("x"));
  g.add_node("FrobnicateV2", {g.value("x")}, {g.value("y")}, "frob");
  g.outputs.push_back(g.value("y"));
  try {
    runtime::Session s(model);
    FAIL();
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("FrobnicateV2"), std::string::npos);
  }
}
