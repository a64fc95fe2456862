#include "duet/sim/workload.h"

#include <map>

#include "duet/core/error.h"
#include "duet/numerics/precision.h"
#include "duet/ops/post_ops.h"
#include "duet/ops/registry.h"
#include <algorithm>
#include "duet/passes/shape_inference.h"

namespace duet::sim {

Workload workload_from_topology(const Topology& topo, int64_t batch) {
  DUET_CHECK(batch > 0, "batch must be positive, got ", batch);
  Workload w;
  w.name = topo.name;
  w.batch = batch;
  for (size_t i = 0; i < topo.layers.size(); ++i) {
    const auto& l = topo.layers[i];
    WorkItem item;
    item.name = l.name;
    item.op = l.is_conv ? "Conv" : "Gemm";
    item.matrix = true;
    item.gemm = l.gemm(batch);
    item.flops = 2 * item.gemm.macs();
    item.weight_elements = l.weight_elements();
    item.input_elements = l.input_elements(batch);
    item.output_elements = l.output_elements(batch);
    item.producers = {int(i) - 1};  // a chain: each layer reads the one before
    item.producer_elements = {item.input_elements};
    item.model_output = i + 1 == topo.layers.size();
    w.items.push_back(item);
  }
  return w;
}

namespace {

int64_t channels_4d(const ir::ValueType& t) {
  if (t.kind != ir::ValueType::Kind::Tensor || !t.shape.rank_known || t.shape.rank() != 4 || !t.shape.dims[1].known()) return 0;
  return t.shape.dims[1].value;
}

double elements(const ir::ValueType& t) {
  if (t.kind != ir::ValueType::Kind::Tensor || !t.shape.rank_known || !t.shape.fully_known()) return 0;
  return double(numel(t.shape.concrete()));
}

}  // namespace

Workload workload_from_model(ir::Model& model, int64_t batch, const std::map<std::string, Dims>& input_shapes) {
  DUET_CHECK(batch > 0, "batch must be positive, got ", batch);
  ir::Graph& g = *model.graph;
  passes::ShapeInferenceOptions opts;
  opts.input_shapes = input_shapes;
  for (auto* v : g.inputs) {
    if (g.is_initializer(v)) continue;
    auto bound = opts.input_shapes.find(v->name);
    if (bound != opts.input_shapes.end()) {
      // --shape binds the other dimensions; the batch still replaces dimension 0.
      if (batch != 1 && !bound->second.empty()) bound->second[0] = batch;
      // ...and the model's own dimension 0 (fixed at 1 by an exporter, or by a
      // previous call's inference) gives way to it.
      if (v->type.shape.rank_known && v->type.shape.rank() > 0) v->type.shape.dims[0] = Dim::named("batch");
      continue;
    }
    auto& s = v->type.shape;
    if (!s.rank_known || s.rank() == 0) continue;
    // Batch 1 keeps a fully known input as exported (its batch axis need not be
    // dimension 0); other batches replace dimension 0, often fixed at 1 by exporters.
    if (batch == 1 && s.fully_known()) continue;
    s.dims[0] = Dim::named("batch");
    Dims d;
    for (size_t i = 0; i < s.rank(); ++i) {
      if (i == 0) { d.push_back(batch); continue; }
      DUET_CHECK(s.dims[i].known(), "model input '", v->name, "' has unknown dimension ", i, " (", s.str(),
                 "): bind it with --shape ", v->name, "=...");
      d.push_back(s.dims[i].value);
    }
    opts.input_shapes[v->name] = d;
  }
  auto inferred = passes::infer_shapes(model, opts);
  auto costs = passes::node_costs(model);

  Workload w;
  w.name = g.name;
  w.batch = batch;
  std::map<const ir::Node*, int> index;
  std::map<std::string, bool> is_output;
  for (auto* v : g.outputs) is_output[v->name] = true;
  std::map<const ir::Node*, int> node_index;
  for (size_t i = 0; i < g.nodes.size(); ++i) node_index[g.nodes[i].get()] = int(i);
  for (auto& c : costs) {
    const ir::Node& n = *c.node;
    bool folded = !n.outputs.empty();
    for (auto* o : n.outputs) folded = folded && o && inferred.constants.count(o->name);
    if (folded) continue;  // shape arithmetic evaluated at compile time
    if (!c.known) { ++w.unknown_cost_nodes; continue; }
    WorkItem item;
    item.name = n.name.empty() ? n.op_type + "_" + std::to_string(w.items.size()) : n.name;
    item.op = n.op_type;
    item.flops = c.cost.flops;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ir::Value* v = n.inputs[i];
      if (!v) continue;
      const double e = elements(v->type);
      const bool constant = g.is_initializer(v) || inferred.constants.count(v->name) ||
                            (v->producer && !index.count(v->producer) && !std::count(g.inputs.begin(), g.inputs.end(), v));
      if (constant) { item.weight_elements += e; continue; }
      item.input_elements += e;
      item.producers.push_back(v->producer && index.count(v->producer) ? index[v->producer] : -1);
      item.producer_elements.push_back(e);
      item.input_channels.push_back(channels_4d(v->type));
    }
    for (auto* o : n.outputs) {
      if (!o) continue;
      item.output_elements += elements(o->type);
      item.output_parts.push_back(elements(o->type));
      item.output_channels.push_back(channels_4d(o->type));
      if (is_output.count(o->name)) item.model_output = true;
    }
    item.node_index = node_index.at(&n);
    if (auto p = n.annotations.find(numerics::kPrecisionAnnotation); p != n.annotations.end()) item.precision = p->second;
    const ops::MatrixTraits* traits = ops::matrix_traits(n);
    if (auto gemm = traits ? traits->lower(n) : std::nullopt) {
      item.matrix = true;
      item.gemm = {gemm->m, gemm->n, gemm->k, gemm->groups};
      item.conv = traits->convolution;
      const ir::Value* weight = n.inputs.size() > 1 ? n.inputs[1] : nullptr;
      const ir::Value* x = n.inputs.empty() ? nullptr : n.inputs[0];
      const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
      if (item.conv && (n.op_type == "Conv" || n.op_type == "FusedConv") && weight && x && y &&
          weight->type.shape.fully_known() && x->type.shape.fully_known() && y->type.shape.fully_known() &&
          weight->type.shape.rank() >= 3) {
        const size_t spatial = weight->type.shape.rank() - 2;
        for (size_t i = 0; i < spatial; ++i) {
          item.conv_kernel.push_back(weight->type.shape.dims[2 + i].value);
          if (y->type.shape.rank() == spatial + 2) item.conv_output_spatial.push_back(y->type.shape.dims[2 + i].value);
        }
        item.conv_strides = n.attr_ints("strides", std::vector<int64_t>(spatial, 1));
        item.conv_dilations = n.attr_ints("dilations", std::vector<int64_t>(spatial, 1));
        item.conv_group = n.attr_int("group", 1);
      }
      if (n.domain == "com.duet")
        for (const ops::PostOp& p : ops::read_post_ops(n)) item.post_ops.push_back(p.str());
    }
    if (item.matrix) item.flops = std::max(item.flops, 2 * item.gemm.macs());
    index[&n] = int(w.items.size());
    w.items.push_back(std::move(item));
  }
  return w;
}

}  // namespace duet::sim
