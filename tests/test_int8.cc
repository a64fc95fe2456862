// The INT8 path for QDQ graphs: fuse_qdq turns DequantizeLinear -> Conv /
// MatMul -> [activation] -> QuantizeLinear into com.duet QuantizedConv /
// QuantizedMatMul, the reference executor gives the QDQ graph's values for
// them, and the cpu backend (integer oneDNN primitives with the requantization
// fused, QuantizeLinear/DequantizeLinear as reorders) stays within 1 LSB of
// the reference on the 8-bit outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "duet/ops/post_ops.h"
#include "duet/passes/optimize.h"
#include "duet/runtime/session.h"

using namespace duet;

namespace {

// Builds QDQ graphs the way ONNX Runtime's quantize_static writes them: a
// float input quantized once, DequantizeLinear before every quantized op,
// weights as int8 initializers with per-channel scales, int32 biases.
struct QdqBuilder {
  std::shared_ptr<ir::Model> model = std::make_shared<ir::Model>();
  ir::Graph& g = *model->graph;
  std::mt19937 rng{11};

  QdqBuilder() { model->opset_imports.push_back({"", 14}); }  // 14: HardSwish

  ir::Value* constant(const std::string& base, Tensor t) {
    const std::string name = base + "_" + std::to_string(g.initializers.size());
    ir::Value* v = g.value(name);
    v->type.dtype = t.dtype();
    v->type.shape = Shape::from(t.dims());
    g.initializers[name] = t;
    g.initializer_order.push_back(name);
    return v;
  }
  ir::Value* op(const std::string& type, std::vector<ir::Value*> ins, std::vector<ir::Attribute> attrs = {}) {
    ir::Value* out = g.value(type + "_" + std::to_string(g.nodes.size()));
    ir::Node* n = g.add_node(type, std::move(ins), {out}, out->name);
    n->attributes = std::move(attrs);
    return out;
  }
  ir::Value* input(Dims dims) {
    ir::Value* v = g.value("x");
    v->type.dtype = DType::Float32;
    v->type.shape = Shape::from(dims);
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* quantize(ir::Value* x, float scale, int zero, DType type = DType::UInt8) {
    Tensor z(type, {});
    if (type == DType::UInt8) z.data<uint8_t>()[0] = static_cast<uint8_t>(zero);
    else z.data<int8_t>()[0] = static_cast<int8_t>(zero);
    return op("QuantizeLinear", {x, constant("scale", Tensor::scalar<float>(scale)), constant("zero", z)});
  }
  // DequantizeLinear reading the scale and zero point of the QuantizeLinear that made q.
  ir::Value* dequantize(ir::Value* q) {
    return op("DequantizeLinear", {q, q->producer->inputs[1], q->producer->inputs[2]});
  }
  // int8 weights in [-limit, limit], per-channel scales along `axis`, zero points 0.
  ir::Value* weights(Dims dims, int limit, int64_t axis, std::vector<float>& scales) {
    Tensor w(DType::Int8, dims);
    std::uniform_int_distribution<int> code(-limit, limit);
    for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>(code(rng));
    std::uniform_real_distribution<float> s(0.5f / limit, 1.5f / limit);
    scales.assign(dims[axis], 0);
    for (auto& v : scales) v = s(rng);
    Tensor scale = Tensor::from_vector<float>(scales, {dims[axis]});
    Tensor zero = Tensor::zeros(DType::Int8, {dims[axis]});
    return op("DequantizeLinear", {constant("w", w), constant("w_scale", scale), constant("w_zero", zero)},
              {{.name = "axis", .type = ir::AttrType::Int, .i = axis}});
  }
  // Conv on a dequantized input, with an int32 bias at scale x_scale * w_scale.
  ir::Value* conv(ir::Value* q, int64_t cin, int64_t cout, int64_t k, int64_t group, int limit, int64_t stride = 1) {
    std::vector<float> ws;
    ir::Value* w = weights({cout, cin / group, k, k}, limit, 0, ws);
    const float xs = g.initializers.at(q->producer->inputs[1]->name).data<float>()[0];
    Tensor bias(DType::Int32, {cout}), bias_scale(DType::Float32, {cout});
    std::uniform_int_distribution<int> b(-2000, 2000);
    for (int64_t c = 0; c < cout; ++c) {
      bias.data<int32_t>()[c] = b(rng);
      bias_scale.data<float>()[c] = xs * ws[c];
    }
    ir::Value* bq = op("DequantizeLinear", {constant("b", bias), constant("b_scale", bias_scale),
                                            constant("b_zero", Tensor::zeros(DType::Int32, {cout}))},
                       {{.name = "axis", .type = ir::AttrType::Int, .i = 0}});
    return op("Conv", {dequantize(q), w, bq},
              {{.name = "pads", .type = ir::AttrType::Ints, .ints = {k / 2, k / 2, k / 2, k / 2}},
               {.name = "strides", .type = ir::AttrType::Ints, .ints = {stride, stride}},
               {.name = "group", .type = ir::AttrType::Int, .i = group}});
  }
  void output(ir::Value* v) { g.outputs.push_back(v); }
};

Tensor random_input(Dims dims, uint32_t seed) {
  Tensor t(DType::Float32, dims);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
  return t;
}

Tensor run(std::shared_ptr<ir::Model> model, const Tensor& x, const std::string& backend) {
  runtime::SessionOptions options;
  options.backend = backend;
  options.threads = 2;
  runtime::Session session(model, options);
  return session.run({{"x", x}}).at(0).tensor;
}

struct Lsb {
  int64_t max = 0, off_by_more = 0, saturated = 0;  // saturated: codes at the top of the range
};

Lsb compare_codes(const Tensor& want, const Tensor& got) {
  EXPECT_EQ(want.dtype(), got.dtype());
  EXPECT_EQ(want.dims(), got.dims());
  Lsb d;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const int64_t e = std::llabs(want.get_int(i) - got.get_int(i));
    d.max = std::max(d.max, e);
    d.off_by_more += e > 1;
    const int64_t v = want.get_int(i);
    d.saturated += v == (want.dtype() == DType::UInt8 ? 255 : 127);  // the low end is also Relu's zero
  }
  return d;
}

int count_ops(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes) n += node->op_type == op;
  return n;
}

// Builds the graph twice (oracle and optimized), checks the rewrite with
// `check`, and compares the 8-bit output codes: the optimized graph on the
// reference executor equals the original; on the cpu backend each
// requantization is within 1 LSB of the reference (float rounding differs, so
// ties may round the other way). Through a chain of requantizations whose
// gain exceeds 1 such a difference grows: `lsb` allows for it, and codes off
// by more than 1 must stay rare.
template <typename Build>
void expect_int8_matches(Build build, Dims input, const std::function<void(const ir::Graph&)>& check, int64_t lsb = 1) {
  QdqBuilder original, optimized;
  build(original);
  build(optimized);
  passes::optimize(*optimized.model);
  check(*optimized.model->graph);
  EXPECT_EQ(optimized.g.outputs[0]->name, original.g.outputs[0]->name) << "graph output names are kept";
  const Tensor x = random_input(input, 3);
  const Tensor want = run(original.model, x, "reference");
  const Lsb ref = compare_codes(want, run(optimized.model, x, "reference"));
  EXPECT_EQ(ref.max, 0) << "the fused reference kernels compose the QDQ graph's own kernels";
  runtime::SessionOptions options;
  options.backend = "cpu";
  runtime::Session fast(optimized.model, options);
  EXPECT_EQ(fast.partitions().size(), 1u) << "one oneDNN partition";
  EXPECT_EQ(fast.partitions().at(0).size(), optimized.g.nodes.size()) << "every node runs in it";
  const Lsb cpu = compare_codes(want, fast.run({{"x", x}}).at(0).tensor);
  EXPECT_LE(cpu.max, lsb) << cpu.off_by_more << " codes differ by more than 1 LSB";
  EXPECT_LE(cpu.off_by_more * 200, want.numel()) << "at most 0.5% of the codes off by more than 1 LSB";
  EXPECT_LT(cpu.saturated, want.numel() / 4) << "the test's scales leave most codes unsaturated";
}

}  // namespace

TEST(FuseQdq, ConvReluBecomesOneQuantizedConv) {
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 16, 12, 12}), 6.0f / 255, 128);
        auto* y = b.op("Relu", {b.conv(q, 16, 32, 3, 1, 64)});
        b.output(b.quantize(y, 6.0f / 255, 0));
      },
      {1, 16, 12, 12}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "QuantizedConv"), 1);
        EXPECT_EQ(count_ops(g, "DequantizeLinear"), 0) << "weights and bias are read by the fused node";
        EXPECT_EQ(count_ops(g, "Relu"), 0);
        EXPECT_EQ(g.nodes.size(), 2u) << "QuantizeLinear of the input, QuantizedConv";
      });
}

TEST(FuseQdq, LeavesUnquantizedOutputsToFloat) {
  // Conv whose output is not quantized: no fusion; the weights' DequantizeLinear is folded to float.
  QdqBuilder b;
  auto* q = b.quantize(b.input({1, 8, 6, 6}), 4.0f / 255, 128);
  b.output(b.conv(q, 8, 8, 3, 1, 127));
  passes::optimize(*b.model);
  EXPECT_EQ(count_ops(b.g, "QuantizedConv"), 0);
  EXPECT_EQ(count_ops(b.g, "Conv"), 1);
  EXPECT_EQ(count_ops(b.g, "DequantizeLinear"), 1) << "only the activation's";
}

TEST(Int8Backend, ConvChainWithDepthwiseAndStride) {
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 3, 33, 31}), 6.0f / 255, 128);
        q = b.quantize(b.op("Relu", {b.conv(q, 3, 16, 3, 1, 64, 2)}), 5.0f / 255, 0);
        q = b.quantize(b.conv(q, 16, 16, 3, 16, 127), 8.0f / 255, 120);  // depthwise, full-range weights
        q = b.quantize(b.op("Clip", {b.conv(q, 16, 24, 1, 1, 60), b.constant("lo", Tensor::scalar<float>(0)),
                                     b.constant("hi", Tensor::scalar<float>(6))}),
                       6.0f / 255, 0);
        b.output(q);
      },
      {1, 3, 33, 31}, [](const ir::Graph& g) { EXPECT_EQ(count_ops(g, "QuantizedConv"), 3); });
}

TEST(Int8Backend, FullRangeWeightsRunFloatBetweenReordersWhereU8xS8WouldSaturate) {
  // |w| up to 127: exact on VNNI; elsewhere the conv runs in float32 between a
  // DequantizeLinear and a QuantizeLinear reorder. Either way within 1 LSB.
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 32, 10, 10}), 6.0f / 255, 128);
        b.output(b.quantize(b.conv(q, 32, 32, 3, 1, 127), 25.0f / 255, 128));
      },
      {1, 32, 10, 10}, [](const ir::Graph& g) { EXPECT_EQ(count_ops(g, "QuantizedConv"), 1); });
}

TEST(Int8Backend, SignedActivations) {
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 8, 9, 9}), 6.0f / 255, 3, DType::Int8);
        b.output(b.quantize(b.conv(q, 8, 16, 3, 1, 64), 12.0f / 255, -5, DType::Int8));
      },
      {1, 8, 9, 9}, [](const ir::Graph& g) { EXPECT_EQ(count_ops(g, "QuantizedConv"), 1); });
}

TEST(Int8Backend, FloatRegionsBetweenQuantizedConvs) {
  // ONNX Runtime leaves HardSwish and residual sums as DequantizeLinear ->
  // float op -> QuantizeLinear: reorders around float primitives.
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 16, 14, 14}), 6.0f / 255, 128);
        auto* a = b.quantize(b.conv(q, 16, 16, 3, 1, 40), 10.0f / 255, 128);
        auto* h = b.quantize(b.op("HardSwish", {b.dequantize(a)}), 6.0f / 255, 20);
        auto* c = b.quantize(b.conv(h, 16, 16, 1, 1, 60), 10.0f / 255, 128);
        b.output(b.quantize(b.op("Add", {b.dequantize(c), b.dequantize(q)}), 12.0f / 255, 128));
      },
      {1, 16, 14, 14}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "QuantizedConv"), 2);
        EXPECT_EQ(count_ops(g, "HardSwish"), 1);
      });
}

TEST(Int8Backend, QuantizedMatMul) {
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({2, 7, 48}), 6.0f / 255, 128);
        std::vector<float> ws;
        auto* y = b.op("MatMul", {b.dequantize(q), b.weights({48, 40}, 64, 1, ws)});
        b.output(b.quantize(b.op("Relu", {y}), 10.0f / 255, 0));
      },
      {2, 7, 48}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "QuantizedMatMul"), 1);
        EXPECT_EQ(count_ops(g, "Relu"), 0);
      });
}

TEST(Int8Backend, QuantizedBinaryOnCodes) {
  // The PP-LCNetV3 pieces ONNX Runtime quantizes one op at a time: scalar
  // affine steps, x * Q(Clip(x + 3, 0, 6)) / 6, a squeeze-excitation product
  // with a [1, C, 1, 1] operand, and a residual sum. The gate's 1-LSB tie
  // differences reach the product with a gain above 1: 2 LSB allowed.
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto scalar = [&](float v) { return b.constant("c", Tensor::scalar<float>(v)); };
        auto* q = b.quantize(b.input({1, 8, 10, 12}), 6.0f / 255, 128);
        auto* a = b.quantize(b.op("Mul", {scalar(0.8f), b.dequantize(q)}), 5.0f / 255, 125);
        a = b.quantize(b.op("Add", {b.dequantize(a), scalar(0.3f)}), 5.0f / 255, 110);
        auto* gate = b.quantize(b.op("Add", {b.dequantize(a), scalar(3.0f)}), 6.0f / 255, 0);
        auto* h = b.quantize(b.op("Mul", {b.dequantize(a), b.dequantize(gate)}), 12.0f / 255, 80);
        h = b.quantize(b.op("Div", {b.dequantize(h), scalar(6.0f)}), 2.0f / 255, 80);
        auto* pooled = b.quantize(b.op("GlobalAveragePool", {b.dequantize(h)}), 1.0f / 255, 0);
        auto* se = b.quantize(b.op("Mul", {b.dequantize(h), b.dequantize(pooled)}), 1.0f / 255, 100);
        auto* d = b.quantize(b.op("Sub", {scalar(1.0f), b.dequantize(se)}), 2.0f / 255, 20);
        b.output(b.quantize(b.op("Add", {b.dequantize(d), b.dequantize(q)}), 8.0f / 255, 128));
      },
      {1, 8, 10, 12},
      [](const ir::Graph& g) {
        // Mul(0.8) takes Add(0.3) over, x * gate takes / 6, the SE product takes 1 - x.
        EXPECT_EQ(count_ops(g, "QuantizedBinary"), 5);
        EXPECT_EQ(count_ops(g, "Mul") + count_ops(g, "Add") + count_ops(g, "Div") + count_ops(g, "Sub"), 0);
      },
      2);
}

TEST(Int8Backend, RequantizeStepsFuseIntoTheConv) {
  // PP-LCNetV3's learnable affine block after a conv: Mul(scalar), Add(scalar),
  // each quantized, become post-ops of the conv's primitive (gains <= 1 keep 1 LSB).
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto scalar = [&](float v) { return b.constant("c", Tensor::scalar<float>(v)); };
        auto* q = b.quantize(b.input({1, 16, 12, 12}), 6.0f / 255, 128);
        q = b.quantize(b.conv(q, 16, 16, 3, 1, 50), 16.0f / 255, 128);
        q = b.quantize(b.op("Mul", {scalar(0.9f), b.dequantize(q)}), 16.0f / 255, 128);
        q = b.quantize(b.op("Add", {b.dequantize(q), scalar(-0.4f)}), 16.0f / 255, 130);
        b.output(b.quantize(b.op("Sub", {scalar(0.5f), b.dequantize(q)}), 16.0f / 255, 126));
      },
      {1, 16, 12, 12}, [](const ir::Graph& g) {
        ASSERT_EQ(g.nodes.size(), 2u) << "the input's QuantizeLinear and one QuantizedConv";
        const auto steps = ops::read_requantize_steps(g.nodes[1]->op_type == "QuantizedConv" ? *g.nodes[1] : *g.nodes[0]);
        ASSERT_EQ(steps.size(), 3u);
        EXPECT_EQ(steps[0].op, "Mul");
        EXPECT_EQ(steps[2].op, "RSub");
      });
}


TEST(Int8Backend, ResizeMaxPoolAndConcatMoveCodes) {
  // Between DequantizeLinear and QuantizeLinear of one scale and zero point
  // these ops give the same codes without leaving 8 bits (exact).
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 8, 10, 12}), 6.0f / 255, 128);
        auto* a = b.quantize(b.conv(q, 8, 8, 3, 1, 50), 12.0f / 255, 120);
        auto requantize_like = [&](ir::Value* x, ir::Value* like) {
          return b.op("QuantizeLinear", {x, like->producer->inputs[1], like->producer->inputs[2]});
        };
        auto* pooled = requantize_like(
            b.op("MaxPool", {b.dequantize(a)},
                 {{.name = "kernel_shape", .type = ir::AttrType::Ints, .ints = {2, 2}},
                  {.name = "strides", .type = ir::AttrType::Ints, .ints = {2, 2}}}),
            a);
        auto* up = requantize_like(
            b.op("Resize", {b.dequantize(pooled), nullptr, b.constant("scales", Tensor::from_vector<float>({1, 1, 2, 2}, {4}))},
                 {{.name = "mode", .type = ir::AttrType::String, .s = "nearest"},
                  {.name = "coordinate_transformation_mode", .type = ir::AttrType::String, .s = "asymmetric"},
                  {.name = "nearest_mode", .type = ir::AttrType::String, .s = "floor"}}),
            a);
        b.output(requantize_like(b.op("Concat", {b.dequantize(a), b.dequantize(up)},
                                      {{.name = "axis", .type = ir::AttrType::Int, .i = 1}}),
                                 a));
      },
      {1, 8, 10, 12}, [](const ir::Graph& g) {
        EXPECT_EQ(count_ops(g, "DequantizeLinear"), 0);
        EXPECT_EQ(count_ops(g, "QuantizeLinear"), 1) << "the input's";
      });
}

TEST(Int8Backend, QuantizedConvTranspose) {
  // det's upsampling head: a stride-2 ConvTranspose with per-channel weights (axis 1).
  expect_int8_matches(
      [](QdqBuilder& b) {
        auto* q = b.quantize(b.input({1, 16, 9, 11}), 6.0f / 255, 128);
        std::vector<float> ws;
        auto* w = b.weights({16, 8, 2, 2}, 60, 1, ws);
        auto* y = b.op("ConvTranspose", {b.dequantize(q), w, b.constant("bias", Tensor::from_vector<float>({0.1f, -0.2f, 0.3f, 0, 0.5f, -0.6f, 0.7f, 0.05f}, {8}))},
                       {{.name = "strides", .type = ir::AttrType::Ints, .ints = {2, 2}},
                        {.name = "kernel_shape", .type = ir::AttrType::Ints, .ints = {2, 2}}});
        b.output(b.quantize(y, 10.0f / 255, 128));
      },
      {1, 16, 9, 11}, [](const ir::Graph& g) { EXPECT_EQ(count_ops(g, "QuantizedConvTranspose"), 1); });
}
