#include "duet/train/qat.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "duet/core/error.h"
#include "duet/passes/upgrade_opset.h"
#include "duet/train/graph_builder.h"
#include "duet/ir/edit.h"

namespace duet::train {

namespace {
namespace gu = ir::edit;

// The output-channel axis of a matrix op's weight (its op's matrix traits); -1 when unknown.
int64_t weight_axis(const ir::Node& n, const ir::Value* w) {
  const ops::MatrixTraits* traits = ops::matrix_traits(n);
  if (!traits || !w->type.shape.rank_known) return -1;
  return traits->weight_axes(n, static_cast<int64_t>(w->type.shape.rank())).channel;
}

ir::Value* scalar_input(ir::Graph& g, const std::string& name, DType dtype, const Shape& shape) {
  ir::Value* v = g.value(name);
  v->type.dtype = dtype;
  v->type.shape = shape;
  g.inputs.push_back(v);
  return v;
}

// Scale slices of a weight: one per channel along q.axis, or one for the tensor.
int64_t slice_count(const Tensor& w, const QatTensor& q) { return q.axis >= 0 ? w.dim(static_cast<int>(q.axis)) : 1; }

// fn(slice, value) for every element of w.
template <typename Fn>
void for_each_in_slices(const Tensor& w, const QatTensor& q, Fn&& fn) {
  const int64_t channels = slice_count(w, q);
  int64_t inner = 1;
  if (q.axis >= 0)
    for (size_t d = static_cast<size_t>(q.axis) + 1; d < w.rank(); ++d) inner *= w.dims()[d];
  for (int64_t i = 0; i < w.numel(); ++i) fn(channels == 1 ? 0 : (i / inner) % channels, w.data<float>()[i]);
}

Tensor scales_tensor(const std::vector<float>& v, const QatTensor& q) {
  return q.axis >= 0 ? Tensor::from_vector<float>(v, {static_cast<int64_t>(v.size())}) : Tensor::from_vector<float>(v, {});
}

// LSQ's starting step size per slice: 2 mean|w| / sqrt(qmax).
Tensor lsq_initial_scales(const Tensor& w, const QatTensor& q) {
  std::vector<double> sum(static_cast<size_t>(slice_count(w, q)), 0.0);
  for_each_in_slices(w, q, [&](int64_t c, float v) { sum[c] += std::fabs(v); });
  const double per = static_cast<double>(w.numel()) / static_cast<double>(sum.size());
  std::vector<float> s;
  for (double total : sum) s.push_back(static_cast<float>(std::max(2 * total / per / std::sqrt(static_cast<double>(q.qmax)), 1e-8)));
  return scales_tensor(s, q);
}

}  // namespace

Tensor weight_scales(const Tensor& w, const QatTensor& q) {
  std::vector<float> amax(static_cast<size_t>(slice_count(w, q)), 0.0f);
  for_each_in_slices(w, q, [&](int64_t c, float v) { amax[c] = std::max(amax[c], std::fabs(v)); });
  for (auto& a : amax) a = a > 0 ? a / static_cast<float>(q.qmax) : 1.0f;
  return scales_tensor(amax, q);
}

std::vector<QatTensor> insert_fake_quant(ir::Model& model, const QatOptions& options) {
  if (options.weight_bits != 8 && options.weight_bits != 4)
    fail("QAT: weights are 8 or 4 bits, got ", options.weight_bits);
  ir::Graph& g = *model.graph;
  if (model.opset("com.duet") == 0) model.opset_imports.push_back({"com.duet", 1});
  const int64_t wq = (int64_t{1} << (options.weight_bits - 1)) - 1;
  std::vector<QatTensor> out;
  std::unordered_map<const ir::Value*, ir::Value*> done;
  std::vector<ir::Node*> targets;
  for (auto& n : g.nodes)
    if ((n->domain.empty() || n->domain == "ai.onnx") &&
        options.ops.count(n->op_type))
      targets.push_back(n.get());
  for (ir::Node* n : targets) {
    for (size_t i = 0; i < 2 && i < n->inputs.size(); ++i) {
      ir::Value* v = n->inputs[i];
      if (!v || v->type.dtype != DType::Float32) continue;
      const bool weight = i == 1 && g.initializers.count(v->name);
      if (!weight && (i != 0 || !options.activations)) continue;
      if (auto it = done.find(v); it != done.end()) {
        n->inputs[i] = it->second;
        continue;
      }
      QatTensor q;
      q.tensor = v->name;
      q.weight = weight;
      ir::Value* scale;
      ir::Value* zp = nullptr;
      std::vector<ir::Value*> outs{g.value(gu::fresh_name(g, v->name + ".fq"))};
      outs[0]->type = v->type;
      if (weight) {
        q.axis = options.per_channel ? weight_axis(*n, v) : -1;
        q.qmin = -wq;
        q.qmax = wq;
        const std::string sname = kQatScalePrefix + v->name;
        if (options.lsq) {  // a trainable initializer
          scale = gu::add_initializer(g, sname, lsq_initial_scales(g.initializers.at(v->name), q));
        } else {
          Shape shape = q.axis >= 0 ? Shape({v->type.shape.dims.at(static_cast<size_t>(q.axis))}) : Shape(std::vector<Dim>{});
          scale = scalar_input(g, sname, DType::Float32, shape);
        }
      } else {
        q.qmin = 0;
        q.qmax = 255;
        scale = scalar_input(g, kQatScalePrefix + v->name, DType::Float32, Shape(std::vector<Dim>{}));
        zp = scalar_input(g, kQatZeroPointPrefix + v->name, DType::Int32, Shape(std::vector<Dim>{}));
        for (const char* prefix : {kQatMinPrefix, kQatMaxPrefix}) {
          ir::Value* r = g.value(prefix + v->name);
          r->type.dtype = DType::Float32;
          r->type.shape = Shape(std::vector<Dim>{});
          outs.push_back(r);
          g.outputs.push_back(r);
        }
      }
      std::vector<ir::Value*> inputs{v, scale};
      if (zp) inputs.push_back(zp);
      ir::Node* fq = g.add_node("FakeQuantize", inputs, outs, gu::fresh_name(g, v->name + ".fq_node"), "com.duet");
      fq->attributes = {attr_int("qmin", q.qmin), attr_int("qmax", q.qmax), attr_int("axis", std::max<int64_t>(q.axis, 0))};
      done[v] = outs[0];
      n->inputs[i] = outs[0];
      out.push_back(q);
    }
  }
  g.topological_sort();
  return out;
}

void export_qdq(ir::Model& model, const std::map<std::string, Tensor>& scales,
                const std::map<std::string, Tensor>& zero_points) {
  ir::Graph& g = *model.graph;
  bool int4 = false;
  std::vector<ir::Node*> fqs;
  for (auto& n : g.nodes)
    if (n->domain == "com.duet" && n->op_type == "FakeQuantize") fqs.push_back(n.get());
  for (ir::Node* n : fqs) int4 = int4 || n->attr_int("qmax", 127) < 127;
  const int64_t target = int4 ? 21 : 13;
  if (model.opset("") < target) passes::upgrade_opset(model, target);
  for (ir::Node* n : fqs) {
    const std::string tensor = n->inputs[0]->name;
    auto s = scales.find(tensor);
    if (s == scales.end()) fail("QAT export: no scale for ", n->label(), " (tensor '", tensor, "')");
    const int64_t qmin = n->attr_int("qmin", -128), qmax = n->attr_int("qmax", 127);
    const DType qt = qmin >= 0 ? DType::UInt8 : qmax < 127 ? DType::Int4 : DType::Int8;
    Tensor zp(qt, s->second.dims());
    auto z = zero_points.find(tensor);
    for (int64_t i = 0; i < zp.numel(); ++i) {
      const int32_t v = z == zero_points.end() ? 0 : static_cast<int32_t>(z->second.get_int(i));
      if (qt == DType::UInt8) zp.data<uint8_t>()[i] = static_cast<uint8_t>(v);
      else if (qt == DType::Int8) zp.data<int8_t>()[i] = static_cast<int8_t>(v);
      else subbyte_set(zp, i, v);
    }
    ir::Value* sv = gu::add_initializer(g, tensor + ".scale", s->second.clone());
    ir::Value* zv = gu::add_initializer(g, tensor + ".zero_point", zp);
    ir::Value* q = g.value(gu::fresh_name(g, tensor + ".q"));
    std::vector<ir::Attribute> axis;
    if (s->second.numel() > 1) axis.push_back(attr_int("axis", n->attr_int("axis", 0)));
    ir::Node* qn = g.add_node("QuantizeLinear", {n->inputs[0], sv, zv}, {q}, tensor + ".QuantizeLinear");
    qn->attributes = axis;
    ir::Node* dq = g.add_node("DequantizeLinear", {q, sv, zv}, {n->outputs[0]}, tensor + ".DequantizeLinear");
    dq->attributes = axis;
    // The observer outputs (min/max) leave the graph.
    for (size_t k = 1; k < n->outputs.size(); ++k)
      if (n->outputs[k]) {
        std::erase(g.outputs, n->outputs[k]);
        n->outputs[k]->producer = nullptr;
      }
  }
  std::erase_if(g.nodes, [&](const std::unique_ptr<ir::Node>& n) {
    return std::find(fqs.begin(), fqs.end(), n.get()) != fqs.end();
  });
  // Scale / zero-point inputs fed during training are now initializers.
  std::erase_if(g.inputs, [&](ir::Value* v) {
    return v->name.rfind(kQatScalePrefix, 0) == 0 || v->name.rfind(kQatZeroPointPrefix, 0) == 0;
  });
  // Learned (LSQ) scales were initializers of the training graph; the exported ones replace them.
  for (auto it = g.initializers.begin(); it != g.initializers.end();)
    it = it->first.rfind(kQatScalePrefix, 0) == 0 ? g.initializers.erase(it) : std::next(it);
  std::erase_if(g.initializer_order, [&](const std::string& n) { return !g.initializers.count(n); });
  g.topological_sort();
  ir::verify(g);
}

}  // namespace duet::train
