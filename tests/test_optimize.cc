// Graph optimization passes on small graphs: each rewrite happens, graph
// output names survive, and the optimized graph computes what the original
// did — on the reference executor and on the oneDNN cpu backend.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "duet/ops/post_ops.h"
#include "duet/passes/optimize.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"

using namespace duet;

namespace {

// A small graph builder: float32 values, initializers from seeded random data.
struct Builder {
  std::shared_ptr<ir::Model> model = std::make_shared<ir::Model>();
  ir::Graph& g = *model->graph;
  std::mt19937 rng{7};

  Builder() { model->opset_imports.push_back({"", 17}); }
  ir::Value* input(const std::string& name, Dims dims) {
    ir::Value* v = g.value(name);
    v->type.dtype = DType::Float32;
    v->type.shape = Shape::from(dims);
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* constant(const std::string& name, Dims dims, float lo = -1, float hi = 1) {
    Tensor t(DType::Float32, dims);
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
    return constant(name, t);
  }
  ir::Value* constant(const std::string& name, Tensor t) {
    ir::Value* v = g.value(name);
    v->type.dtype = t.dtype();
    v->type.shape = Shape::from(t.dims());
    g.initializers[name] = t;
    g.initializer_order.push_back(name);
    return v;
  }
  ir::Value* scalar(const std::string& name, float x) { return constant(name, Tensor::from_vector<float>({x}, {})); }
  ir::Value* op(const std::string& type, std::vector<ir::Value*> ins, std::vector<ir::Attribute> attrs = {}) {
    ir::Value* out = g.value(type + "_" + std::to_string(g.nodes.size()));
    ir::Node* n = g.add_node(type, std::move(ins), {out}, out->name);
    n->attributes = std::move(attrs);
    return out;
  }
  ir::Value* conv(ir::Value* x, int64_t cin, int64_t cout, int64_t k = 3, int64_t group = 1) {
    const std::string id = std::to_string(g.nodes.size());
    return op("Conv", {x, constant("w" + id, {cout, cin / group, k, k}), constant("b" + id, {cout})},
              {ints("pads", {k / 2, k / 2, k / 2, k / 2}), integer("group", group)});
  }
  void output(ir::Value* v) { g.outputs.push_back(v); }

  static ir::Attribute ints(const std::string& name, std::vector<int64_t> v) {
    return {.name = name, .type = ir::AttrType::Ints, .ints = std::move(v)};
  }
  static ir::Attribute integer(const std::string& name, int64_t v) {
    return {.name = name, .type = ir::AttrType::Int, .i = v};
  }
  static ir::Attribute real(const std::string& name, float v) { return {.name = name, .type = ir::AttrType::Float, .f = v}; }
};

Tensor random_tensor(Dims dims, uint32_t seed) {
  Tensor t(DType::Float32, dims);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
  return t;
}

Tensor run(std::shared_ptr<ir::Model> model, const Tensor& x, const std::string& backend = "reference") {
  runtime::SessionOptions options;
  options.backend = backend;
  options.threads = 2;
  runtime::Session session(model, options);
  return session.run({{model->graph->inputs[0]->name, x}}).at(0).tensor;
}

double max_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dims(), b.dims());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.get_double(i) - b.get_double(i)));
  return m;
}

// A deep copy through the builder's own steps is not available, so each test
// builds its graph twice: once kept as the oracle, once optimized.
template <typename Build>
void expect_same_after_optimize(Build build, Dims input_dims, const std::function<void(const ir::Graph&)>& check,
                                double tol = 1e-4) {
  Builder original, optimized;
  build(original);
  build(optimized);
  passes::optimize(*optimized.model);
  check(*optimized.model->graph);
  EXPECT_EQ(optimized.g.outputs[0]->name, original.g.outputs[0]->name) << "graph output names are kept";
  const Tensor x = random_tensor(input_dims, 1);
  const Tensor want = run(original.model, x);
  EXPECT_LE(max_diff(want, run(optimized.model, x)), tol) << "optimized graph on the reference executor";
  EXPECT_LE(max_diff(want, run(optimized.model, x, "cpu")), tol) << "optimized graph on the cpu backend";
}

int count_ops(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes) n += node->op_type == op;
  return n;
}

const ir::Node& only(const ir::Graph& g, const std::string& op) {
  for (auto& node : g.nodes) if (node->op_type == op) return *node;
  throw std::runtime_error("no " + op);
}

}  // namespace

TEST(Optimize, FoldsBatchNormIntoConv) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* y = b.conv(b.input("x", {1, 8, 10, 10}), 8, 16);
        y = b.op("BatchNormalization", {y, b.constant("s", {16}), b.constant("t", {16}), b.constant("m", {16}),
                                        b.constant("v", {16}, 0.5f, 2.0f)});
        b.output(y);
      },
      {1, 8, 10, 10}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "BatchNormalization"), 0);
        EXPECT_EQ(g.nodes.size(), 1u);
      });
}

TEST(Optimize, FoldsPerChannelAffineIntoConvAndFusesHardSwishPattern) {
  // The PaddleOCR PP-LCNetV3 block: conv, learnable affine, x*clip(x+3,0,6)/6, scalar affine.
  expect_same_after_optimize(
      [](Builder& b) {
        auto* c = b.conv(b.input("x", {1, 8, 12, 12}), 8, 8, 3, 8);
        c = b.op("Mul", {b.scalar("a", 0.7f), c});
        c = b.op("Add", {c, b.constant("shift", {1, 8, 1, 1})});
        auto* gate = b.op("Clip", {b.op("Add", {c, b.scalar("three", 3)}), b.scalar("lo", 0), b.scalar("hi", 6)});
        auto* h = b.op("Div", {b.op("Mul", {c, gate}), b.scalar("six", 6)});
        b.output(b.op("Add", {b.op("Mul", {b.scalar("s2", 0.5f), h}), b.scalar("t2", 0.25f)}));
      },
      {1, 8, 12, 12}, [](const ir::Graph& g) {
        ASSERT_EQ(g.nodes.size(), 1u);
        const auto chain = ops::read_post_ops(only(g, "FusedConv"));
        ASSERT_EQ(chain.size(), 2u);
        EXPECT_EQ(chain[0].kind, ops::PostOpKind::HardSwish);
        EXPECT_EQ(chain[1].kind, ops::PostOpKind::Linear) << "the two scalar steps compose into one";
      });
}

TEST(Optimize, FusesResidualSumThenRelu) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* x = b.input("x", {1, 16, 9, 9});
        auto* y = b.op("Relu", {b.conv(x, 16, 16)});
        b.output(b.op("Relu", {b.op("Add", {x, b.conv(y, 16, 16)})}));
      },
      {1, 16, 9, 9}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "FusedConv"), 2);
        EXPECT_EQ(count_ops(g, "Add"), 0);
        EXPECT_EQ(count_ops(g, "Relu"), 0);
      });
}

TEST(Optimize, FusesMatMulBiasAndGelu) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* y = b.op("MatMul", {b.input("x", {2, 5, 32}), b.constant("w", {32, 24})});
        y = b.op("Add", {y, b.constant("bias", {24})});
        // x * sigmoid(x): SiLU
        b.output(b.op("Mul", {y, b.op("Sigmoid", {y})}));
      },
      {2, 5, 32}, [](const ir::Graph& g) {
        ASSERT_EQ(g.nodes.size(), 1u);
        EXPECT_EQ(ops::read_post_ops(only(g, "FusedMatMul"))[0].kind, ops::PostOpKind::Silu);
      });
}

// ConvNeXt's MLP on a channels-last 4-D input, GELU in PyTorch's erf form
// (both orders of its 0.5): two FusedMatMul with a GeluErf post-op, and the cpu
// backend runs all of it — a fusion never turns a claimed node into a refused
// one (the 4-D FusedMatMul once went to the reference kernels: 10x slower).
TEST(Optimize, FusesErfGeluIntoFourDimensionalMatMulsTheCpuBackendRuns) {
  auto gelu = [](Builder& b, ir::Value* a, bool half_first) {
    ir::Value* e1 = b.op("Add", {b.op("Erf", {b.op("Div", {a, b.scalar("sqrt2", 1.41421356f)})}), b.scalar("one", 1.0f)});
    if (half_first) return b.op("Mul", {b.op("Mul", {a, b.scalar("half", 0.5f)}), e1});
    return b.op("Mul", {b.op("Mul", {a, e1}), b.scalar("half2", 0.5f)});
  };
  for (bool half_first : {false, true}) {
    auto build = [&](Builder& b) {
      ir::Value* y = b.op("Add", {b.op("MatMul", {b.input("x", {1, 7, 7, 32}), b.constant("w1", {32, 64})}),
                                  b.constant("b1", {64})});
      y = gelu(b, y, half_first);
      b.output(b.op("Add", {b.op("MatMul", {y, b.constant("w2", {64, 32})}), b.constant("b2", {32})}));
    };
    expect_same_after_optimize(build, {1, 7, 7, 32}, [](const ir::Graph& g) {
      ASSERT_EQ(g.nodes.size(), 2u);
      EXPECT_EQ(ops::read_post_ops(*g.nodes[0])[0].kind, ops::PostOpKind::GeluErf);
    });
    Builder b;
    build(b);
    runtime::SessionOptions options;
    options.backend = "cpu";
    runtime::prepare_model(*b.model, options);
    runtime::Session session(b.model, options);
    EXPECT_TRUE(session.refusals().empty()) << "a node runs on the reference kernels";
  }
}

// Reductions run on the cpu backend (ShuffleNet's global mean, transformers' norms):
// mean over H and W, a sum over a constant axes input, with and without the
// reduced axes kept; each matches the reference kernels. (Max and min stay on
// the reference kernels: see claims.cc.)
TEST(CpuBackend, ReductionsRunOnOneDnnAndMatchTheReference) {
  for (const char* op : {"ReduceMean", "ReduceSum"}) {
    for (bool keep : {false, true}) {
      Builder b;
      ir::Value* x = b.input("x", {2, 8, 5, 6});
      std::vector<ir::Attribute> attrs = {Builder::integer("keepdims", keep)};
      ir::Value* y;
      if (std::string(op) == "ReduceSum") {
        y = b.op(op, {x, b.constant("axes", Tensor::from_vector<int64_t>({-1, 2}, {2}))}, attrs);
      } else {
        attrs.push_back(Builder::ints("axes", {2, 3}));
        y = b.op(op, {x}, attrs);
      }
      b.output(b.op("Relu", {y}));
      b.model->opset_imports[0].version = 13;
      runtime::SessionOptions options;
      options.backend = "cpu";
      runtime::prepare_model(*b.model, options);
      runtime::Session session(b.model, options);
      EXPECT_TRUE(session.refusals().empty()) << op << " keepdims " << keep;
      const Tensor input = random_tensor({2, 8, 5, 6}, 3);
      EXPECT_LE(max_diff(run(b.model, input), session.run({{"x", input}}).at(0).tensor), 1e-5) << op << " keepdims " << keep;
    }
  }
}

// A classifier head: Gemm(transB, bias) -> Relu -> Gemm becomes two
// FusedMatMul (bias and Relu fused), which the cpu backend claims.
TEST(Optimize, GemmHeadsBecomeFusedMatMul) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* y = b.op("Gemm", {b.input("x", {3, 40}), b.constant("w1", {16, 40}), b.constant("b1", {16})},
                       {Builder::integer("transB", 1)});
        y = b.op("Relu", {y});
        b.output(b.op("Gemm", {y, b.constant("w2", {16, 10}), b.constant("b2", {1, 10})}));
      },
      {3, 40}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "Gemm"), 0);
        ASSERT_EQ(count_ops(g, "FusedMatMul"), 2);
        EXPECT_EQ(ops::read_post_ops(*g.nodes.front())[0].kind, ops::PostOpKind::Relu);
      });
}

TEST(Optimize, RemovesIdentityDropoutAndFoldsConstants) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* x = b.op("Identity", {b.input("x", {1, 4, 6, 6})});
        auto* k = b.op("Add", {b.scalar("one", 1), b.scalar("two", 2)});  // constant: folded
        auto* y = b.op("Dropout", {b.op("Mul", {x, k})});
        b.output(b.op("Relu", {y}));
      },
      {1, 4, 6, 6}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "Identity"), 0);
        EXPECT_EQ(count_ops(g, "Dropout"), 0);
        EXPECT_EQ(count_ops(g, "Add"), 0);
        EXPECT_EQ(g.nodes.size(), 2u);
      });
}

// oneDNN 2.6 computes wrong values for a convolution with three eltwise
// post-ops on x86; the backend splits the chain, and this graph must match.
TEST(CpuBackend, LongPostOpChainsMatchReference) {
  expect_same_after_optimize(
      [](Builder& b) {
        auto* y = b.op("Relu", {b.conv(b.input("x", {1, 16, 20, 20}), 16, 16)});
        y = b.op("Relu", {b.op("Mul", {y, b.scalar("s", 0.5f)})});
        b.output(b.op("HardSigmoid", {y}, {Builder::real("alpha", 0.2f), Builder::real("beta", 0.5f)}));
      },
      {1, 16, 20, 20}, [](const ir::Graph& g) {
        ASSERT_EQ(g.nodes.size(), 1u);
        EXPECT_EQ(ops::read_post_ops(only(g, "FusedConv")).size(), 4u);
      });
}

TEST(CpuBackend, ClaimsConvChainsAndAllocatesNothingInSteadyState) {
  Builder b;
  auto* x = b.input("x", {1, 3, 32, 32});
  auto* y = b.op("Relu", {b.conv(x, 3, 16)});
  y = b.op("MaxPool", {b.conv(y, 16, 16, 3, 16)}, {Builder::ints("kernel_shape", {2, 2}), Builder::ints("strides", {2, 2})});
  auto* se = b.op("HardSigmoid", {b.conv(b.op("GlobalAveragePool", {y}), 16, 16, 1)});
  b.output(b.op("Mul", {y, se}));
  runtime::SessionOptions options;
  options.backend = "cpu";
  runtime::prepare_model(*b.model, options);
  runtime::Session session(b.model, options);
  ASSERT_EQ(session.partitions().size(), 1u);
  EXPECT_EQ(session.partitions()[0].size(), b.g.nodes.size()) << "every node runs in the oneDNN partition";
  const Tensor in = random_tensor({1, 3, 32, 32}, 3);
  const Tensor first = session.run({{"x", in}}).at(0).tensor.clone();
  session.run({{"x", in}});
  const size_t allocations = session.allocation_count();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(session.run({{"x", in}}).at(0).tensor.same_bits(first));
  EXPECT_EQ(session.allocation_count(), allocations) << "steady-state runs allocate nothing new";
}

TEST(CpuBackend, ReplansForANewInputShape) {
  Builder b;
  b.output(b.op("Relu", {b.conv(b.input("x", {1, 8, -1, -1}), 8, 8)}));
  Builder ref;
  ref.output(ref.op("Relu", {ref.conv(ref.input("x", {1, 8, -1, -1}), 8, 8)}));
  runtime::SessionOptions options;
  options.backend = "cpu";
  runtime::prepare_model(*b.model, options);
  runtime::Session fast(b.model, options);
  runtime::Session slow(ref.model);
  ASSERT_EQ(fast.partitions().size(), 1u) << "the conv with unknown spatial size is still claimed";
  for (Dims dims : {Dims{1, 8, 10, 10}, Dims{1, 8, 7, 13}, Dims{1, 8, 10, 10}}) {
    const Tensor x = random_tensor(dims, 5);
    EXPECT_LE(max_diff(slow.run({{"x", x}}).at(0).tensor, fast.run({{"x", x}}).at(0).tensor), 1e-4);
  }
}

// A model may declare a shape whose bytes overflow a 64-bit count (the fuzzer's 427832823819238141 float32
// values): its cost is still an estimate in double, with no undefined arithmetic.
TEST(NodeCosts, AShapeBeyondSixtyFourBitsOfBytesIsCostedInDouble) {
  ir::Model m;
  m.opset_imports = {{"", 17}};
  auto& g = *m.graph;
  ir::Value* x = g.value("x");
  x->type.dtype = DType::Float32;
  x->type.shape = Shape::from({427832823819238141});
  g.inputs.push_back(x);
  g.add_node("Add", {x, x}, {g.value("y")}, "add");
  g.outputs.push_back(g.value("y"));
  passes::infer_shapes(m);
  const auto costs = passes::node_costs(m);
  ASSERT_EQ(costs.size(), 1u);
  ASSERT_TRUE(costs[0].known);
  EXPECT_NEAR(costs[0].cost.input_bytes.at(0), 427832823819238141.0 * 4, 1e3);
}
