#include "duet/train/graph_builder.h"

#include <cmath>

#include "duet/core/error.h"
#include "duet/ir/edit.h"

namespace duet::train {



GraphBuilder::GraphBuilder(int64_t opset, uint32_t seed) : model_(std::make_unique<ir::Model>()), rng_(seed) {
  model_->opset_imports.push_back({"", opset});
  model_->producer_name = "duet";
}

std::string GraphBuilder::fresh(const std::string& base) {
  for (;;) {
    std::string name = base + "_" + std::to_string(count_++);
    if (!model_->graph->find_value(name)) return name;
  }
}

ir::Value* GraphBuilder::input(const std::string& name, DType dtype, const Dims& dims) {
  ir::Value* v = model_->graph->value(name);
  v->type.dtype = dtype;
  std::vector<Dim> d;
  for (int64_t x : dims) d.push_back(x >= 0 ? Dim(x) : Dim::named("N"));
  v->type.shape = Shape(d);
  model_->graph->inputs.push_back(v);
  return v;
}

ir::Value* GraphBuilder::initializer(const std::string& name, Tensor value) {
  return ir::edit::add_named_initializer(*model_->graph, name, std::move(value));
}

ir::Value* GraphBuilder::weight(const std::string& name, const Dims& dims, int64_t fan_in) {
  Tensor t(DType::Float32, dims);
  const float bound = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(fan_in, 1)));
  std::uniform_real_distribution<float> u(-bound, bound);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng_);
  return initializer(name, std::move(t));
}

std::vector<ir::Value*> GraphBuilder::nodes(const std::string& op, std::vector<ir::Value*> inputs, size_t outputs,
                                            std::vector<ir::Attribute> attrs, const std::string& domain) {
  std::vector<ir::Value*> outs;
  const std::string name = fresh(op);
  for (size_t i = 0; i < outputs; ++i) outs.push_back(model_->graph->value(outputs == 1 ? name : name + "_" + std::to_string(i)));
  ir::Node* n = model_->graph->add_node(op, std::move(inputs), outs, name, domain);
  n->attributes = std::move(attrs);
  if (!domain.empty() && model_->opset(domain) == 0) model_->opset_imports.push_back({domain, 1});
  return outs;
}

ir::Value* GraphBuilder::node(const std::string& op, std::vector<ir::Value*> inputs, std::vector<ir::Attribute> attrs,
                              const std::string& domain) {
  return nodes(op, std::move(inputs), 1, std::move(attrs), domain)[0];
}

void GraphBuilder::output(ir::Value* v, const std::string& name) {
  if (!name.empty() && name != v->name) {  // an Identity gives the output its name
    if (model_->graph->find_value(name)) fail("GraphBuilder: value '", name, "' already exists");
    ir::Value* out = model_->graph->value(name);
    model_->graph->add_node("Identity", {v}, {out}, fresh("Identity"));
    v = out;
  }
  model_->graph->outputs.push_back(v);
}

ir::Value* GraphBuilder::conv2d(ir::Value* x, int64_t cin, int64_t cout, int64_t k, int64_t pad, int64_t stride) {
  const std::string id = fresh("conv");
  ir::Value* w = weight(id + ".weight", {cout, cin, k, k}, cin * k * k);
  ir::Value* b = weight(id + ".bias", {cout}, cin * k * k);
  return node("Conv", {x, w, b},
              {attr_ints("kernel_shape", {k, k}), attr_ints("pads", {pad, pad, pad, pad}),
               attr_ints("strides", {stride, stride})});
}

ir::Value* GraphBuilder::linear(ir::Value* x, int64_t in, int64_t out) {
  const std::string id = fresh("fc");
  ir::Value* w = weight(id + ".weight", {out, in}, in);
  ir::Value* b = weight(id + ".bias", {out}, in);
  return node("Gemm", {x, w, b}, {attr_int("transB", 1)});
}

ir::Value* GraphBuilder::max_pool2d(ir::Value* x, int64_t k) {
  return node("MaxPool", {x}, {attr_ints("kernel_shape", {k, k}), attr_ints("strides", {k, k})});
}

ir::Value* GraphBuilder::batch_norm(ir::Value* x, int64_t channels) {
  const std::string id = fresh("bn");
  auto filled = [&](float v) { return Tensor::from_vector<float>(std::vector<float>(static_cast<size_t>(channels), v), {channels}); };
  return node("BatchNormalization", {x, initializer(id + ".weight", filled(1)), initializer(id + ".bias", filled(0)),
                                     initializer(id + ".running_mean", filled(0)), initializer(id + ".running_var", filled(1))});
}

std::unique_ptr<ir::Model> GraphBuilder::finish() {
  ir::verify(*model_->graph);
  return std::move(model_);
}

}  // namespace duet::train
