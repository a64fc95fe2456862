#include "duet/train/models.h"

#include <charconv>
#include <cmath>

#include "duet/core/error.h"
#include "duet/train/graph_builder.h"
#include "duet/ir/edit.h"

namespace duet::train {

namespace {

std::pair<std::string, std::vector<int64_t>> parse_spec(const std::string& spec) {
  const size_t colon = spec.find(':');
  std::string kind = spec.substr(0, colon);
  std::vector<int64_t> sizes;
  if (colon != std::string::npos) {
    std::string rest = spec.substr(colon + 1);
    size_t p = 0;
    while (p <= rest.size()) {
      size_t q = rest.find(',', p);
      if (q == std::string::npos) q = rest.size();
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(rest.data() + p, rest.data() + q, v);
      if (ec != std::errc() || ptr != rest.data() + q || v <= 0)
        fail("model spec '", spec, "': '", rest.substr(p, q - p), "' is not a positive size");
      sizes.push_back(v);
      p = q + 1;
    }
  }
  return {kind, sizes};
}

}  // namespace

bool is_builder_spec(const std::string& s) {
  const std::string kind = s.substr(0, s.find(':'));
  return kind == "mlp" || kind == "cnn" || kind == "transformer";
}

namespace {

// x [N, T, D] times a [D, out] weight plus bias (PyTorch Linear on the last axis).
ir::Value* dense(GraphBuilder& b, ir::Value* x, int64_t in, int64_t out, const std::string& name) {
  ir::Value* w = b.weight(name + ".weight", {in, out}, in);
  ir::Value* bias = b.weight(name + ".bias", {out}, in);
  return b.node("Add", {b.node("MatMul", {x, w}), bias});
}

ir::Value* layer_norm(GraphBuilder& b, ir::Value* x, int64_t d, const std::string& name) {
  auto filled = [&](float v) { return Tensor::from_vector<float>(std::vector<float>(static_cast<size_t>(d), v), {d}); };
  return b.node("LayerNormalization", {x, b.initializer(name + ".weight", filled(1)), b.initializer(name + ".bias", filled(0))},
                {attr_int("axis", -1), attr_float("epsilon", 1e-5f)});
}

// One pre-norm encoder layer: x + MHA(LN(x)), then + MLP(LN(.)) with GELU (erf form).
ir::Value* encoder_layer(GraphBuilder& b, ir::Value* x, int64_t t, int64_t d, int64_t heads, int index) {
  const std::string id = "layer" + std::to_string(index);
  const int64_t dh = d / heads;
  ir::Value* h = layer_norm(b, x, d, id + ".ln1");
  auto split_heads = [&](ir::Value* v, const std::string& name) {  // [N, T, D] -> [N, H, T, Dh]
    ir::Value* shape = b.initializer(id + "." + name + ".shape", Tensor::from_vector<int64_t>({0, t, heads, dh}, {4}));
    return b.node("Transpose", {b.node("Reshape", {v, shape})}, {attr_ints("perm", {0, 2, 1, 3})});
  };
  ir::Value* q = split_heads(dense(b, h, d, d, id + ".q"), "q");
  ir::Value* k = split_heads(dense(b, h, d, d, id + ".k"), "k");
  ir::Value* v = split_heads(dense(b, h, d, d, id + ".v"), "v");
  ir::Value* kt = b.node("Transpose", {k}, {attr_ints("perm", {0, 1, 3, 2})});
  ir::Value* scale = b.initializer(id + ".scale", Tensor::scalar<float>(1.0f / std::sqrt(static_cast<float>(dh))));
  ir::Value* att = b.node("Softmax", {b.node("Mul", {b.node("MatMul", {q, kt}), scale})}, {attr_int("axis", -1)});
  ir::Value* ctx = b.node("Transpose", {b.node("MatMul", {att, v})}, {attr_ints("perm", {0, 2, 1, 3})});
  ctx = b.node("Reshape", {ctx, b.initializer(id + ".merge", Tensor::from_vector<int64_t>({0, t, d}, {3}))});
  x = b.node("Add", {x, dense(b, ctx, d, d, id + ".out")});
  h = dense(b, layer_norm(b, x, d, id + ".ln2"), d, 4 * d, id + ".fc1");
  ir::Value* half = b.initializer(id + ".half", Tensor::scalar<float>(0.5f));
  ir::Value* one = b.initializer(id + ".one", Tensor::scalar<float>(1.0f));
  ir::Value* rsqrt2 = b.initializer(id + ".rsqrt2", Tensor::scalar<float>(0.70710678f));
  ir::Value* erf = b.node("Erf", {b.node("Mul", {h, rsqrt2})});
  h = b.node("Mul", {b.node("Mul", {h, half}), b.node("Add", {erf, one})});
  return b.node("Add", {x, dense(b, h, 4 * d, d, id + ".fc2")});
}

}  // namespace

std::unique_ptr<ir::Model> build_model(const std::string& spec, const Dims& sample_shape, int64_t classes,
                                       uint32_t seed) {
  auto [kind, sizes] = parse_spec(spec);
  if (classes < 2) fail("model spec '", spec, "': need at least 2 classes, got ", classes);
  GraphBuilder b(17, seed);
  Dims in{-1};
  in.insert(in.end(), sample_shape.begin(), sample_shape.end());
  ir::Value* x = b.input("input", DType::Float32, in);
  ir::Value* logits = nullptr;
  if (kind == "mlp") {
    if (sizes.empty()) sizes = {128};
    int64_t width = numel(sample_shape);
    ir::Value* h = b.node("Flatten", {x}, {attr_int("axis", 1)});
    for (int64_t s : sizes) {
      h = b.node("Relu", {b.linear(h, width, s)});
      width = s;
    }
    logits = b.linear(h, width, classes);
  } else if (kind == "cnn") {
    if (sizes.empty()) sizes = {32, 64, 128};
    if (sizes.size() != 3) fail("model spec '", spec, "': cnn takes three sizes (C1,C2,F)");
    if (sample_shape.size() != 3) fail("model spec '", spec, "': cnn needs [C, H, W] samples, got ", dims_str(sample_shape));
    const int64_t c = sample_shape[0], h = sample_shape[1] - 4, w = sample_shape[2] - 4;
    if (h < 2 || w < 2) fail("model spec '", spec, "': samples ", dims_str(sample_shape), " are too small for two 3x3 convs and a 2x2 pool");
    ir::Value* y = b.node("Relu", {b.conv2d(x, c, sizes[0], 3)});
    y = b.node("Relu", {b.conv2d(y, sizes[0], sizes[1], 3)});
    y = b.node("Flatten", {b.max_pool2d(y, 2)}, {attr_int("axis", 1)});
    const int64_t flat = sizes[1] * (h / 2) * (w / 2);
    y = b.node("Relu", {b.linear(y, flat, sizes[2])});
    logits = b.linear(y, sizes[2], classes);
  } else if (kind == "transformer") {
    if (sizes.empty()) sizes = {32, 4, 2};
    if (sizes.size() != 3) fail("model spec '", spec, "': transformer takes three sizes (D,HEADS,LAYERS)");
    if (sample_shape.size() != 2)
      fail("model spec '", spec, "': transformer needs [T, F] samples (tokens x features), got ", dims_str(sample_shape));
    const int64_t t = sample_shape[0], f = sample_shape[1], d = sizes[0], heads = sizes[1];
    if (d % heads != 0) fail("model spec '", spec, "': width ", d, " is not divisible by ", heads, " heads");
    ir::Value* h = b.node("Add", {dense(b, x, f, d, "embed"), b.weight("position", {t, d}, d)});
    for (int64_t l = 0; l < sizes[2]; ++l) h = encoder_layer(b, h, t, d, heads, static_cast<int>(l));
    h = layer_norm(b, h, d, "ln_final");
    h = b.node("ReduceMean", {h}, {attr_ints("axes", {1}), attr_int("keepdims", 0)});  // opset 17: axes attribute
    logits = b.linear(h, d, classes);
  } else {
    fail("unknown model builder '", kind, "' (mlp, cnn, transformer)");
  }
  b.output(logits, "logits");
  auto m = b.finish();
  m->doc_string = "duet train builder " + spec;
  return m;
}

void prepend_standardization(ir::Model& model, double mean, double stddev) {
  DUET_CHECK(stddev > 0, "standardization: the standard deviation must be positive, got ", stddev);
  ir::Graph& g = *model.graph;
  DUET_CHECK(!g.inputs.empty(), "standardization: the model has no input");
  ir::Value* x = g.inputs.front();
  DUET_CHECK(x->type.dtype == DType::Float32, "standardization: input '", x->name, "' is not float32");
  for (const char* name : {kStandardizeMean, kStandardizeScale})
    DUET_CHECK(!g.find_value(name), "standardization: the model already has '", name, "'");
  auto scalar = [&](const char* name, float v) {  // the name is free (checked above), so it is kept as is
    return ir::edit::add_initializer(g, name, Tensor::scalar<float>(v));
  };
  ir::Value* centered = g.value(x->name + ".centered");
  ir::Value* standardized = g.value(x->name + ".standardized");
  centered->type = standardized->type = x->type;
  for (auto& n : g.nodes)
    for (auto*& in : n->inputs)
      if (in == x) in = standardized;
  g.add_node("Sub", {x, scalar(kStandardizeMean, static_cast<float>(mean))}, {centered}, "standardize_sub");
  g.add_node("Mul", {centered, scalar(kStandardizeScale, static_cast<float>(1.0 / stddev))}, {standardized},
             "standardize_mul");
  g.topological_sort();
}

}  // namespace duet::train
