#include <gtest/gtest.h>

#include <algorithm>

#include "duet/onnx/onnx_io.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"
#include "duet/train/graph_builder.h"
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

// Shape inference meets whatever a model file says; found by the model-loader fuzzer.
TEST(Session, ShapeInferenceRefusesRanksThatDisagreeAndAxesOfScalars) {
  auto error_of = [](const char* op, std::vector<Dims> shapes) -> std::string {
    auto model = std::make_shared<ir::Model>();
    model->opset_imports.push_back({"", 13});
    ir::Graph& g = *model->graph;
    std::vector<ir::Value*> ins;
    for (size_t i = 0; i < shapes.size(); ++i) {
      ir::Value* v = g.value("x" + std::to_string(i));
      v->type = {ir::ValueType::Kind::Tensor, i == 1 && std::string(op) == "Gather" ? DType::Int64 : DType::Float32,
                 Shape::from(shapes[i])};
      g.inputs.push_back(v);
      ins.push_back(v);
    }
    ir::Node* n = g.add_node(op, ins, {g.value("y")}, "n");
    n->attributes.push_back({.name = "axis", .type = ir::AttrType::Int, .i = 0});
    g.outputs.push_back(g.value("y"));
    try {
      passes::infer_shapes(*model);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("Concat", {{2, 3}, {2}}).find("inputs of rank 1 and 2"), std::string::npos);
  EXPECT_NE(error_of("Gather", {{}, {2}}).find("axis 0 is out of range for rank 0"), std::string::npos);
  EXPECT_EQ(error_of("Concat", {{2, 3}, {2, 3}}), "");
}

TEST(Session, SeededFeedsGiveTokenIdsWithinTheEmbeddingAndMasksInZeroOne) {
  // ids (int64) index a 5-row embedding; mask (int32) is used elsewhere.
  auto model = std::make_shared<ir::Model>();
  model->opset_imports.push_back({"", 13});
  ir::Graph& g = *model->graph;
  ir::Value* ids = g.value("ids");
  ids->type = {ir::ValueType::Kind::Tensor, DType::Int64, Shape::from({2, 64})};
  ir::Value* mask = g.value("mask");
  mask->type = {ir::ValueType::Kind::Tensor, DType::Int32, Shape::from({2, 64})};
  g.inputs = {ids, mask};
  g.initializers["table"] = Tensor::zeros(DType::Float32, {5, 4});
  g.add_node("Gather", {g.value("table"), ids}, {g.value("emb")}, "embed");
  g.add_node("Cast", {mask}, {g.value("m")}, "cast")->attributes.push_back({.name = "to", .type = ir::AttrType::Int, .i = 1});
  g.outputs = {g.value("emb"), g.value("m")};
  auto range_of = [](const Tensor& t) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < t.numel(); ++i)
      v.push_back(t.dtype() == DType::Int64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i]);
    return std::make_pair(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  };
  auto feeds = runtime::seeded_feeds(g, {});
  EXPECT_EQ(feeds.at("ids").dtype(), DType::Int64);
  EXPECT_EQ(range_of(feeds.at("ids")), std::make_pair(int64_t{0}, int64_t{4}));
  EXPECT_EQ(range_of(feeds.at("mask")), std::make_pair(int64_t{0}, int64_t{1}));
  runtime::Session session(model);
  EXPECT_NO_THROW(session.run(feeds));
  feeds = runtime::seeded_feeds(g, {}, {}, {{"mask", {3, 7}}});
  EXPECT_EQ(range_of(feeds.at("mask")), std::make_pair(int64_t{3}, int64_t{6}));
  EXPECT_THROW(runtime::seeded_feeds(g, {}, {}, {{"mask", {3, 3}}}), Error);
  EXPECT_THROW(runtime::seeded_feeds(g, {}, {}, {{"nope", {0, 1}}}), Error);
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

// --- Placement over registered backends --------------------------------------

namespace duet::runtime {
namespace {

// A device backend for the test: it claims Relu and Add of float32 values,
// "lives" in device memory 7 (host bytes tagged with the id), and counts the
// copies the session asks of it. Nothing in the session knows of it.
struct Transfers {
  int to_device = 0, to_host = 0;
};

class FakeDevice final : public Backend {
 public:
  explicit FakeDevice(Transfers* t) : transfers_(t) {}
  std::string name() const override { return "fake"; }
  Claim claim(const ir::Model&, const ir::Node& n) const override {
    if (n.op_type != "Relu" && n.op_type != "Add") return Claim::no("takes Relu and Add only");
    return Claim::yes();
  }
  int device_id() const override { return 7; }
  Tensor to_device(const Tensor& host) override {
    EXPECT_TRUE(host.on_host());
    ++transfers_->to_device;
    return host.clone();
  }
  Tensor to_host(const Tensor& on_device) override {
    EXPECT_EQ(on_device.device(), 7);
    ++transfers_->to_host;
    return on_device.clone();
  }
  std::unique_ptr<CompiledPartition> compile(const ir::Model&, const PartitionSpec& spec, const BackendOptions&) override {
    struct Partition final : CompiledPartition {
      PartitionSpec spec;
      std::vector<Tensor> run(const std::vector<const Tensor*>& inputs, Allocator&, NodeTimes*) override {
        std::map<const ir::Value*, Tensor> values;
        for (size_t i = 0; i < inputs.size(); ++i) {
          EXPECT_EQ(inputs[i]->device(), 7) << "partition input " << i << " not in device memory";
          values[spec.inputs[i]] = *inputs[i];
        }
        for (const ir::Node* n : spec.nodes) {
          const Tensor& a = values.at(n->inputs[0]);
          Tensor y(DType::Float32, a.dims());
          for (int64_t k = 0; k < a.numel(); ++k)
            y.data<float>()[k] = n->op_type == "Relu" ? std::max(0.0f, a.data<float>()[k])
                                                       : a.data<float>()[k] + values.at(n->inputs[1]).data<float>()[k];
          y.set_device(7);
          values[n->outputs[0]] = y;
        }
        std::vector<Tensor> out;
        for (auto* v : spec.outputs) out.push_back(values.at(v));
        return out;
      }
    };
    auto p = std::make_unique<Partition>();
    p->spec = spec;
    return p;
  }

 private:
  Transfers* transfers_;
};

TEST(Placement, ADeviceBackendRegisteredByNameRunsItsNodesWithTransfersAtTheBoundaries) {
  train::GraphBuilder b;
  ir::Value* x = b.input("x", DType::Float32, {2, 3});
  ir::Value* y = b.input("y", DType::Float32, {2, 3});
  ir::Value* h = b.node("Add", {b.node("Relu", {x}), y});  // fake
  h = b.node("Sigmoid", {h});                              // reference
  b.output(b.node("Relu", {h}));                           // fake
  std::shared_ptr<ir::Model> model = b.finish();
  const std::map<std::string, Tensor> feeds = {
      {"x", Tensor::from_vector<float>({-1, 2, -3, 4, -5, 6}, {2, 3})},
      {"y", Tensor::from_vector<float>({1, 1, 1, -9, 1, 1}, {2, 3})}};

  Transfers transfers;
  BackendRegistry registry;
  registry.add("fake", [&] { return std::make_unique<FakeDevice>(&transfers); });
  SessionOptions options;
  options.backend = "fake";
  options.registry = &registry;
  Session on_device(model, options);
  EXPECT_EQ(on_device.partitions().size(), 2u);
  EXPECT_EQ(on_device.partition_backends(), (std::vector<std::string>{"fake", "fake"}));
  ASSERT_EQ(on_device.refusals().size(), 1u);  // the Sigmoid, with the reason
  EXPECT_EQ(on_device.refusals().begin()->first->op_type, "Sigmoid");
  EXPECT_EQ(on_device.refusals().begin()->second.front(), (std::pair<std::string, std::string>{"fake", "takes Relu and Add only"}));

  const auto got = on_device.run(feeds);
  const auto want = Session(model).run(feeds);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].tensor.on_host());
  for (int64_t k = 0; k < 6; ++k) EXPECT_FLOAT_EQ(got[0].tensor.data<float>()[k], want[0].tensor.data<float>()[k]);
  // x and y up, the Add's output down for the Sigmoid, the Sigmoid's up, the result down.
  EXPECT_EQ(transfers.to_device, 3);
  EXPECT_EQ(transfers.to_host, 2);
}

TEST(Placement, BackendListsAndRegistryErrorsAreOneClearLine) {
  EXPECT_EQ(backend_preference("cuda,cpu"), (std::vector<std::string>{"cuda", "cpu"}));
  EXPECT_TRUE(backend_preference("reference").empty());
  EXPECT_EQ(backend_preference("cpu,reference"), (std::vector<std::string>{"cpu"}));
  EXPECT_THROW(backend_preference("reference,cpu"), Error);
  EXPECT_THROW(backend_preference("cpu,,x"), Error);
  EXPECT_TRUE(BackendRegistry::builtin().contains("cpu"));
  try {
    BackendRegistry::builtin().make("tpu");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'tpu' (choose from reference, cpu)"), std::string::npos);
  }
  BackendRegistry r;
  EXPECT_THROW(r.add("reference", [] { return make_cpu_backend(); }), Error);
  r.add("mine", [] { return make_cpu_backend(); });
  EXPECT_THROW(r.add("mine", [] { return make_cpu_backend(); }), Error);
  // The cpu backend says why it leaves a node to the reference kernels.
  train::GraphBuilder b;
  ir::Value* x = b.input("x", DType::Float32, {4});
  b.output(b.node("Cos", {x}));
  std::shared_ptr<ir::Model> model = b.finish();
  SessionOptions cpu;
  cpu.backend = "cpu";
  prepare_model(*std::const_pointer_cast<ir::Model>(model), cpu);
  Session s(model, cpu);
  ASSERT_EQ(s.refusals().size(), 1u);
  EXPECT_EQ(s.refusals().begin()->second.front().second, "no oneDNN lowering for Cos");
}

}  // namespace
}  // namespace duet::runtime

TEST(Session, AnEmptyBatchRunsOnTheCpuBackendToEmptyOutputs) {
  // oneDNN divided by the batch (SIGFPE); partitions whose inputs are empty run on the reference kernels.
  auto model = bundled();
  runtime::SessionOptions o;
  o.backend = "cpu";
  runtime::prepare_model(*model, o);
  runtime::Session s(model, o);
  const Tensor empty = Tensor::zeros(DType::Float32, {0, 3, 48, 192});
  auto out = s.run({{"x", empty}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tensor.dims(), (Dims{0, 2}));
  // The same session still runs a real sample on oneDNN afterwards.
  auto real = s.run({{"x", sample()}});
  EXPECT_EQ(real[0].tensor.dims(), (Dims{1, 2}));
}
