#include "duet/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "duet/ir/edit.h"
#include "duet/core/error.h"
#include "duet/numerics/convert.h"
#include "duet/onnx/onnx_io.h"
#include "duet/ops/registry.h"
#include "duet/passes/optimize.h"
#include "duet/passes/precision.h"
#include "duet/passes/shape_inference.h"
#include "duet/passes/upgrade_opset.h"
#include "duet/quant/gptq.h"
#include "scheme.h"

namespace duet::quant {

using namespace ir::edit;

void check_quantizable(const numerics::Precision& p) {
  using numerics::emu::Scaling;
  auto refuse = [&]() {
    fail("precision ", p.str(), ": duet quantize writes INT8 (w8a8 or weight-only w8a16), INT4 weight-only "
         "(w4a16) and FP8 E4M3 QDQ models; to see what ", p.str(), " does, emulate it (duet emulate -d ", p.str(), ")");
  };
  const std::string& w = p.w.format.name;
  const std::string& x = p.x.format.name;
  // A DequantizeLinear scale is a scalar or one per slice along an axis (channel or tensor), or blocked (INT4).
  const bool channel_or_tensor = p.w.scaling == Scaling::Channel || p.w.scaling == Scaling::Tensor;
  if (p.sparsity != numerics::Sparsity::Dense) refuse();
  if (p.weight_only()) {
    if (w == "int8" && channel_or_tensor) return;
    if (w != "int4" || p.w.scaling != Scaling::Block) refuse();
    DUET_CHECK(p.block == 32 || p.block == 64 || p.block == 128, "precision ", p.str(),
               ": INT4 blocks of 32, 64 or 128 along K, got ", p.block);
    return;
  }
  const bool same_format = (x == "int8" && w == "int8") || (x == "e4m3fn" && w == "e4m3fn");
  if (!same_format || !channel_or_tensor) refuse();
  if (p.x.scaling != Scaling::Tensor) refuse();  // QDQ activations carry one scale
}

namespace {

void set_input_value(Node& n, size_t index, Value* v) {
  if (n.inputs.size() <= index) n.inputs.resize(index + 1, nullptr);
  n.inputs[index] = v;
}

int64_t required_opset(const numerics::Precision& p) {
  if (scheme::int4_weights(p)) return 21;  // blocked DequantizeLinear, INT4
  if (scheme::fp8_weights(p) || scheme::fp8_activations(p)) return 19;
  return 13;
}

bool is_float(const Value* v) { return v && v->type.dtype == DType::Float32; }

// Where a quantizable node keeps its constant weight, and the channel axis.
struct WeightSlot {
  size_t input = 1;
  int axis = 0;        // per-channel axis (output channels)
  int reduce_axis = 0; // the axis summed over (INT4 blocks run along it)
};

// From the op's matrix traits (ops::MatrixTraits), for a weight that is a constant.
std::optional<WeightSlot> weight_slot(const Graph& g, const Node& n) {
  const ops::MatrixTraits* traits = ops::matrix_traits(n);
  if (!traits || n.inputs.size() <= traits->weight_input) return std::nullopt;
  const Tensor* w = constant(g, n.inputs[traits->weight_input]);
  if (!w) return std::nullopt;
  const ops::WeightAxes axes = traits->weight_axes(n, static_cast<int64_t>(w->rank()));
  if (axes.channel < 0 || axes.reduce < 0) return std::nullopt;
  return WeightSlot{traits->weight_input, static_cast<int>(axes.channel), static_cast<int>(axes.reduce)};
}

// INT4 blocks run along K of a constant 2-D MatMul/Gemm weight; the other
// weight ops (Conv, ConvTranspose, batched weights) stay float in an INT4 run.
bool int4_applies(const Graph& g, const Node& n) {
  const Tensor* w = n.inputs.size() > 1 ? constant(g, n.inputs[1]) : nullptr;
  return (n.op_type == "MatMul" || n.op_type == "Gemm") && w && w->rank() == 2;
}

}  // namespace

std::unique_ptr<ir::Model> prepare_for_quantization(const ir::Model& model, const QuantizeOptions& options) {
  check_quantizable(options.precision);
  auto m = clone_model(model);
  passes::OptimizeOptions o;
  o.fuse = false;  // com.duet fused ops would not run elsewhere; the exported model stays standard ONNX
  passes::optimize(*m, o);
  passes::upgrade_opset(*m, required_opset(options.precision));
  std::set<std::string> seen;
  int counter = 0;
  for (auto& n : m->graph->nodes) {
    if (n->name.empty() || seen.count(n->name)) {
      do n->name = n->op_type + "_" + std::to_string(counter++);
      while (seen.count(n->name));
    }
    seen.insert(n->name);
  }
  passes::infer_shapes(*m);
  return m;
}

Plan plan_quantization(const ir::Model& prepared, const QuantizeOptions& o) {
  const Graph& g = *prepared.graph;
  Plan plan;
  std::set<std::string> tensors;
  const bool weight_only = !scheme::quantizes_activations(o.precision);
  for (auto& node : g.nodes) {
    const Node& n = *node;
    if (!(n.domain.empty() || n.domain == "ai.onnx") || !o.op_types.count(n.op_type)) continue;
    if (o.exclude_op_types.count(n.op_type) || o.exclude_nodes.count(n.name)) {
      plan.skipped.push_back(n.name + ": excluded");
      continue;
    }
    bool float_io = is_float(n.outputs[0]);
    for (auto* in : n.inputs) float_io &= !in || is_float(in);
    if (!float_io) {
      plan.skipped.push_back(n.name + ": not float32");
      continue;
    }
    const auto slot = weight_slot(g, n);
    if (weight_only && !slot) {
      plan.skipped.push_back(n.name + ": weight-only quantization needs a constant weight");
      continue;
    }
    if (scheme::int4_weights(o.precision) && !int4_applies(g, n)) {
      plan.skipped.push_back(n.name + ": INT4 weight-only covers 2-D MatMul/Gemm weights");
      continue;
    }
    plan.nodes.push_back(n.name);
    if (weight_only) continue;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const Value* in = n.inputs[i];
      if (!in || constant(g, in)) continue;
      if (tensors.insert(in->name).second) plan.activations.push_back(in->name);
    }
    if (o.quantize_outputs && tensors.insert(n.outputs[0]->name).second) plan.activations.push_back(n.outputs[0]->name);
  }
  return plan;
}

namespace {

bool is_depthwise(const Node& n, const Tensor& w) { return n.op_type == "Conv" && w.dim(1) == 1 && n.attr_int("group", 1) > 1; }

// The input channel that weight element e multiplies: Conv [O, C, k...]
// (group 1) or depthwise [C, 1, k...], MatMul [K, N].
int64_t input_channel(const Node& n, const Tensor& w, int64_t e) {
  if (n.op_type != "Conv") return e / w.dim(1);
  const int64_t inner = w.numel() / (w.dim(0) * w.dim(1));
  return is_depthwise(n, w) ? e / inner : (e / inner) % w.dim(1);
}

// The planned readers of each tensor, and whether every one reads it as the
// data input of a weight op (Conv group 1 or depthwise, MatMul with a constant
// 2-D weight) along the same channel axis.
struct Smoothable {
  std::vector<Node*> readers;
  int axis = -1;
  bool ok = true;
};

std::map<std::string, Smoothable> find_smoothable(Graph& g, const Plan& plan) {
  const std::set<std::string> planned(plan.nodes.begin(), plan.nodes.end());
  std::map<std::string, Smoothable> out;
  for (auto& node : g.nodes) {
    Node* n = node.get();
    if (!planned.count(n->name)) continue;
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      Value* x = n->inputs[i];
      if (!x || constant(g, x)) continue;
      Smoothable& s = out[x->name];
      s.readers.push_back(n);
      const Tensor* w = n->inputs.size() > 1 ? constant(g, n->inputs[1]) : nullptr;
      int axis = -1;
      if (i == 0 && w && n->op_type == "Conv" && x->type.shape.rank_known && x->type.shape.rank() >= 3) {
        const int64_t group = n->attr_int("group", 1);
        if (group == 1 || w->dim(1) == 1) axis = 1;
      } else if (i == 0 && w && n->op_type == "MatMul" && w->rank() == 2 && x->type.shape.rank_known) {
        axis = static_cast<int>(x->type.shape.rank()) - 1;
      }
      if (axis < 0 || (s.axis >= 0 && s.axis != axis)) s.ok = false;
      s.axis = axis;
    }
  }
  // A weight shared with a node outside the readers would be scaled for it too.
  std::map<std::string, int> weight_reads;
  for (auto& node : g.nodes)
    for (auto* in : node->inputs)
      if (in && constant(g, in)) ++weight_reads[in->name];
  for (auto& [name, s] : out)
    for (Node* n : s.readers) {
      int mine = 0;
      for (Node* m : s.readers) mine += m->inputs[1] == n->inputs[1];
      if (s.ok && n->inputs.size() > 1 && weight_reads[n->inputs[1]->name] != mine) s.ok = false;
    }
  std::erase_if(out, [](const auto& kv) { return !kv.second.ok; });
  return out;
}

}  // namespace

std::map<std::string, int> smoothable_tensors(const ir::Model& prepared, const Plan& plan) {
  std::map<std::string, int> out;
  for (auto& [name, s] : find_smoothable(*prepared.graph, plan)) out[name] = s.axis;
  return out;
}

int smooth_activations(ir::Model& prepared, const Plan& plan, const std::map<std::string, std::vector<float>>& channel_amax,
                       double alpha, bool awq) {
  Graph& g = *prepared.graph;
  int count = 0;
  for (auto& [name, sm] : find_smoothable(g, plan)) {
    auto it = channel_amax.find(name);
    if (it == channel_amax.end()) continue;
    const std::vector<float>& ax = it->second;
    const int64_t channels = static_cast<int64_t>(ax.size());
    // Max |w| per input channel over every reader's weights; depthwise readers use alpha 1.
    std::vector<double> aw(channels, 0.0);
    bool depthwise_only = true;
    for (Node* n : sm.readers) {
      const Tensor& w = *constant(g, n->inputs[1]);
      const bool conv = n->op_type == "Conv";
      const bool dw = is_depthwise(*n, w);
      depthwise_only &= dw;
      const bool mismatch = dw ? w.dim(0) != channels : conv ? w.dim(1) != 1 && w.dim(1) != channels : w.dim(0) != channels;
      if (mismatch) {
        aw.clear();
        break;
      }
      for (int64_t e = 0; e < w.numel(); ++e) {
        const int64_t c = input_channel(*n, w, e);
        aw[c] = std::max(aw[c], static_cast<double>(std::fabs(w.data<float>()[e])));
      }
    }
    if (aw.empty()) continue;
    const double a = depthwise_only && !awq ? 1.0 : alpha;
    std::vector<float> s(channels, 1.0f);
    if (awq) {
      double log_sum = 0;
      int64_t n = 0;
      for (int64_t c = 0; c < channels; ++c)
        if (ax[c] > 0) log_sum += a * std::log(static_cast<double>(ax[c])), ++n;
      const double mean = n ? log_sum / static_cast<double>(n) : 0.0;
      for (int64_t c = 0; c < channels; ++c)
        if (ax[c] > 0) s[c] = static_cast<float>(std::clamp(std::exp(a * std::log(static_cast<double>(ax[c])) - mean), 1e-4, 1e4));
    } else {
      for (int64_t c = 0; c < channels; ++c)
        if (ax[c] > 0 && aw[c] > 0) s[c] = static_cast<float>(std::clamp(std::pow(ax[c], a) / std::pow(aw[c], 1 - a), 1e-4, 1e4));
    }
    // x' = x * (1/s), broadcast along the channel axis.
    Value* x = g.find_value(name);
    const size_t rank = x->type.shape.rank();
    Dims sd(rank - sm.axis, 1);
    sd[0] = channels;
    Tensor inv(DType::Float32, sd);
    for (int64_t c = 0; c < channels; ++c) inv.data<float>()[c] = 1.0f / s[c];
    Value* iv = add_initializer(g, name + "_smooth_scale", inv);
    Value* xs = g.value(fresh_name(g, name + "_smoothed"));
    xs->type = x->type;
    Node* mul = g.add_node("Mul", {x, iv}, {xs}, fresh_name(g, name + "_smooth"));
    xs->producer = mul;
    xs->producer_output = 0;
    std::set<std::string> scaled;
    for (Node* n : sm.readers) {
      n->inputs[0] = xs;
      Value* wv = n->inputs[1];
      if (!scaled.insert(wv->name).second) continue;
      Tensor w = constant(g, wv)->clone();
      for (int64_t e = 0; e < w.numel(); ++e) w.data<float>()[e] *= s[input_channel(*n, w, e)];
      g.initializers[wv->name] = w;
    }
    ++count;
  }
  if (count) {
    g.topological_sort();
    ir::verify(g);
    passes::infer_shapes(prepared);
  }
  return count;
}

namespace {

struct ActParams {
  float scale = 1;
  Tensor zero_point;
};

}  // namespace

ActivationGrid activation_grid(const Range& r, bool symmetric) {
  ActivationGrid grid;
  if (symmetric) {
    const float amax = std::max(std::fabs(r.lo), std::fabs(r.hi));
    grid.scale = amax > 0 ? amax / 127.0f : 1.0f;
    grid.qmin = -128, grid.qmax = 127;
  } else {
    const float span = r.hi - r.lo;
    grid.scale = span > 0 ? span / 255.0f : 1.0f;
    grid.zero_point = std::clamp(std::nearbyint(-r.lo / grid.scale), 0.0f, 255.0f);
  }
  return grid;
}

namespace {

ActParams activation_params(const Range& r, const QuantizeOptions& o) {
  ActParams p;
  if (scheme::fp8_activations(o.precision)) {
    const float amax = std::max(std::fabs(r.lo), std::fabs(r.hi));
    p.scale = amax > 0 ? amax / 448.0f : 1.0f;
    p.zero_point = Tensor::zeros(DType::Float8E4M3FN, {});
    return p;
  }
  const ActivationGrid grid = activation_grid(r, o.symmetric_activations);
  p.scale = grid.scale;
  p.zero_point = o.symmetric_activations ? Tensor::zeros(DType::Int8, {})
                                         : Tensor::scalar<uint8_t>(static_cast<uint8_t>(grid.zero_point));
  return p;
}

struct QuantWeight {
  Tensor q;                   // int8 / int4 / fp8
  Tensor scale;               // float: scalar, [C] or blocked
  std::vector<float> scales;  // per output channel (bias scales), empty for blocked
  std::optional<int> axis;
  int block_size = 0;
};

// Max |w| over each slice along `axis` (per channel) or of all (axis < 0).
std::vector<float> channel_amax(const Tensor& w, int axis) {
  const auto& d = w.dims();
  const int64_t channels = axis < 0 ? 1 : d[axis];
  int64_t inner = 1;
  if (axis >= 0) for (size_t k = axis + 1; k < d.size(); ++k) inner *= d[k];
  std::vector<float> amax(channels, 0.0f);
  const float* x = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int64_t c = axis < 0 ? 0 : (i / inner) % channels;
    amax[c] = std::max(amax[c], std::fabs(x[i]));
  }
  return amax;
}

// GPTQ rounding of a 2-D INT8 or INT4 weight against its input's X^T X:
// the same scale layouts as round-to-nearest below.
QuantWeight quantize_weight_gptq(const Tensor& w, const WeightSlot& slot, const QuantizeOptions& options,
                                 const std::vector<double>& gram, QuantizedModel::Rounding* figure) {
  const numerics::Precision& p = options.precision;
  const auto& d = w.dims();
  const int64_t k = d[slot.reduce_axis], n = d[slot.axis];
  const float* x = w.data<float>();
  std::vector<float> rows(static_cast<size_t>(n * k));  // [N][K]
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) rows[c * k + i] = slot.reduce_axis == 0 ? x[i * n + c] : x[c * k + i];
  GptqOptions go;
  const bool int4 = scheme::int4_weights(p);
  if (int4) {
    go.qmin = -8, go.qmax = 7, go.block = p.block;
  } else {
    go.qmax = options.reduce_range ? 63.0f : 127.0f;
    go.qmin = -go.qmax;
    go.per_tensor = !scheme::per_channel_weights(p);
  }
  const GptqResult g = gptq_round(rows.data(), n, k, gram, go);
  if (figure) *figure = {g.nearest_relative_error, g.relative_error};
  QuantWeight r;
  std::vector<int8_t> q(static_cast<size_t>(w.numel()));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) q[slot.reduce_axis == 0 ? i * n + c : c * k + i] = g.q[c * k + i];
  if (int4) {
    const int64_t blocks = (k + p.block - 1) / p.block;
    Dims sd = d;
    sd[slot.reduce_axis] = blocks;
    r.scale = Tensor(DType::Float32, sd);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t b = 0; b < blocks; ++b)
        r.scale.data<float>()[slot.reduce_axis == 0 ? b * n + c : c * blocks + b] = g.scales[c * blocks + b];
    r.q = Tensor(DType::Int4, d);
    numerics::pack_int4(q.data(), q.size(), r.q.data<uint8_t>());
    r.axis = slot.reduce_axis;
    r.block_size = p.block;
    return r;
  }
  r.q = Tensor(DType::Int8, d);
  std::copy(q.begin(), q.end(), r.q.data<int8_t>());
  r.scales = g.scales;
  if (go.per_tensor) {
    r.scale = Tensor::scalar<float>(r.scales[0]);
  } else {
    r.scale = Tensor::from_vector<float>(r.scales, {n});
    r.axis = slot.axis;
  }
  return r;
}

QuantWeight quantize_weight(const Tensor& w, const WeightSlot& slot, const QuantizeOptions& options) {
  QuantWeight r;
  const auto& d = w.dims();
  const float* x = w.data<float>();
  const numerics::Precision& p = options.precision;
  if (scheme::int4_weights(p)) {
    // Blocks of block_size along the reduced axis, one scale per block and column.
    const int block_size = p.block;
    const int axis = slot.reduce_axis;
    Dims sd = d;
    sd[axis] = (d[axis] + block_size - 1) / block_size;
    r.scale = Tensor(DType::Float32, sd);
    int64_t inner = 1;
    for (size_t k = axis + 1; k < d.size(); ++k) inner *= d[k];
    const int64_t outer = w.numel() / (inner * d[axis]);
    std::vector<float> amax(r.scale.numel(), 0.0f);
    auto block_index = [&](int64_t o, int64_t k, int64_t i) { return (o * sd[axis] + k / block_size) * inner + i; };
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < d[axis]; ++k)
        for (int64_t i = 0; i < inner; ++i) {
          float& a = amax[block_index(o, k, i)];
          a = std::max(a, std::fabs(x[(o * d[axis] + k) * inner + i]));
        }
    for (int64_t i = 0; i < r.scale.numel(); ++i) r.scale.data<float>()[i] = amax[i] > 0 ? amax[i] / 7.0f : 1.0f;
    std::vector<int8_t> q(w.numel());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < d[axis]; ++k)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t e = (o * d[axis] + k) * inner + i;
          q[e] = static_cast<int8_t>(std::clamp(std::nearbyint(x[e] / r.scale.data<float>()[block_index(o, k, i)]), -8.0f, 7.0f));
        }
    r.q = Tensor(DType::Int4, d);
    numerics::pack_int4(q.data(), q.size(), r.q.data<uint8_t>());
    r.axis = axis;
    r.block_size = block_size;
    return r;
  }
  const bool fp8 = scheme::fp8_weights(p);
  const int axis = scheme::per_channel_weights(p) ? slot.axis : -1;
  const std::vector<float> amax = channel_amax(w, axis);
  const float qmax = fp8 ? 448.0f : options.reduce_range ? 63.0f : 127.0f;
  for (float a : amax) r.scales.push_back(a > 0 ? a / qmax : 1.0f);
  int64_t inner = 1;
  if (axis >= 0) for (size_t k = axis + 1; k < d.size(); ++k) inner *= d[k];
  const int64_t channels = static_cast<int64_t>(r.scales.size());
  std::vector<float> scaled(w.numel());
  for (int64_t i = 0; i < w.numel(); ++i) scaled[i] = x[i] / r.scales[axis < 0 ? 0 : (i / inner) % channels];
  if (fp8) {
    r.q = Tensor(DType::Float8E4M3FN, d);
    numerics::ConvertOptions co;
    co.overflow = numerics::Overflow::Saturate;
    numerics::encode_bulk(numerics::e4m3fn(), scaled.data(), scaled.size(), r.q.data<uint8_t>(), co);
  } else {
    r.q = Tensor(DType::Int8, d);
    for (int64_t i = 0; i < w.numel(); ++i)
      r.q.data<int8_t>()[i] = static_cast<int8_t>(std::clamp(std::nearbyint(scaled[i]), -qmax, qmax));
  }
  if (axis >= 0) {
    r.scale = Tensor::from_vector<float>(r.scales, {channels});
    r.axis = axis;
  } else {
    r.scale = Tensor::scalar<float>(r.scales[0]);
  }
  return r;
}

class Rewriter {
 public:
  Rewriter(ir::Model& m, const QuantizeOptions& o) : m_(m), g_(*m.graph), o_(o) {}

  Value* dequantize(const std::string& base, Value* q, Value* scale, Value* zp, std::optional<int> axis, int block) {
    Value* out = g_.value(fresh_name(g_, base + "_dequantized"));
    std::vector<Value*> ins = {q, scale};
    if (zp) ins.push_back(zp);
    Node* n = g_.add_node("DequantizeLinear", ins, {out}, node_names_.fresh(base + "_DequantizeLinear"));
    if (axis) set_attr(*n, "axis", static_cast<int64_t>(*axis));
    if (block) set_attr(*n, "block_size", static_cast<int64_t>(block));
    return out;
  }

  // x -> QuantizeLinear -> DequantizeLinear; returns the dequantized value
  // (`into` when given: the pair then produces that existing value).
  Value* activation_pair(Value* x, const Range& r, Value* into = nullptr) {
    const ActParams p = activation_params(r, o_);
    Value* scale = add_initializer(g_, x->name + "_scale", Tensor::scalar<float>(p.scale));
    Value* zp = add_initializer(g_, x->name + "_zero_point", p.zero_point);
    return pair(x, scale, zp, into);
  }

  // The same pair with the scale computed at run time: max |x| / 127 over the
  // whole tensor, symmetric INT8 (zero point 0) — the emulator's x=int8/tensor.
  Value* dynamic_activation_pair(Value* x, Value* into = nullptr) {
    auto op = [&](const std::string& type, std::vector<Value*> ins, const std::string& what) {
      Value* out = g_.value(fresh_name(g_, x->name + "_" + what));
      g_.add_node(type, ins, {out}, node_names_.fresh(x->name + "_" + type));
      return out;
    };
    Value* amax = op("ReduceMax", {op("Abs", {x}, "abs")}, "amax");
    set_attr(*amax->producer, "keepdims", int64_t{0});
    Value* scale = op("Max", {op("Div", {amax, add_initializer(g_, x->name + "_qmax", Tensor::scalar<float>(127.0f))}, "scale_raw"),
                              add_initializer(g_, x->name + "_smallest_scale", Tensor::scalar<float>(std::numeric_limits<float>::min()))},
                      "scale");
    Value* zp = add_initializer(g_, x->name + "_zero_point", Tensor::zeros(DType::Int8, {}));
    return pair(x, scale, zp, into);
  }

 private:
  Value* pair(Value* x, Value* scale, Value* zp, Value* into) {
    Value* q = g_.value(fresh_name(g_, x->name + "_quantized"));
    g_.add_node("QuantizeLinear", {x, scale, zp}, {q}, node_names_.fresh(x->name + "_QuantizeLinear"));
    if (!into) return dequantize(x->name, q, scale, zp, std::nullopt, 0);
    g_.add_node("DequantizeLinear", {q, scale, zp}, {into}, node_names_.fresh(into->name + "_DequantizeLinear"));
    return into;
  }

 public:
  ir::Model& m_;
  Graph& g_;
  const QuantizeOptions& o_;
  NodeNames node_names_{g_};
  std::map<std::string, float> act_scale_;  // activation (dequantized name) -> scale
};

}  // namespace

QuantizedModel quantize_model(const ir::Model& prepared, const Plan& plan, const std::map<std::string, Range>& ranges,
                              const QuantizeOptions& o, const std::set<std::string>& only,
                              const std::set<std::string>& keep_float) {
  QuantizedModel result;
  result.model = clone_model(prepared);
  Graph& g = *result.model->graph;
  Rewriter rw(*result.model, o);
  std::unordered_map<std::string, Node*> by_name;
  for (auto& n : g.nodes) by_name[n->name] = n.get();

  std::vector<Node*> selected;
  for (const auto& name : plan.nodes) {
    const bool on = (only.empty() || only.count(name)) && !keep_float.count(name);
    result.precision[name] = on ? o.precision.str() : "fp32";  // the node's annotation replaces it below
    if (on) selected.push_back(by_name.at(name));
  }
  auto range_of = [&](const std::string& tensor) -> Range {
    auto ov = o.overrides.find(tensor);
    if (ov != o.overrides.end()) return ov->second;
    auto it = ranges.find(tensor);
    if (it == ranges.end()) fail("no calibration range for tensor '", tensor, "'");
    return it->second;
  };

  const numerics::Precision& p = o.precision;
  const bool acts = scheme::quantizes_activations(p);
  DUET_CHECK(!o.dynamic_activations || scheme::int8_activations(p),
             "dynamic activation scales are for INT8 activations; precision ", p.str(), " has none");
  std::unordered_set<const Value*> made;  // dequantized values this rewrite produced
  std::map<const Value*, std::string> original;  // dequantized value -> the float tensor it stands for
  if (acts && o.quantize_outputs) {
    // Outputs first: the node writes a fresh float value; the pair produces the old name.
    for (Node* n : selected) {
      Value* y = n->outputs[0];
      if (made.count(y)) continue;
      Value* yf = g.value(fresh_name(g, y->name + "_float"));
      yf->type = y->type;
      yf->producer = n;
      yf->producer_output = 0;
      n->outputs[0] = yf;
      if (o.dynamic_activations) {
        rw.dynamic_activation_pair(yf, y);
      } else {
        rw.activation_pair(yf, range_of(y->name), y);
        rw.act_scale_[y->name] = activation_params(range_of(y->name), o).scale;
      }
      made.insert(y);
      result.dequantized[y->name] = y->name;
    }
  }
  if (acts) {
    // Inputs: one pair per tensor, shared by the quantized readers.
    std::map<std::string, Value*> pairs;
    for (Node* n : selected)
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        Value* x = n->inputs[i];
        if (!x || constant(g, x) || made.count(x)) continue;
        auto it = pairs.find(x->name);
        if (it == pairs.end()) {
          Value* dq = o.dynamic_activations ? rw.dynamic_activation_pair(x) : rw.activation_pair(x, range_of(x->name));
          if (!o.dynamic_activations) rw.act_scale_[dq->name] = activation_params(range_of(x->name), o).scale;
          made.insert(dq);
          original[dq] = x->name;
          it = pairs.emplace(x->name, dq).first;
          result.dequantized[x->name] = dq->name;
        }
        n->inputs[i] = it->second;
      }
  }
  // Weights (shared weights quantized once per use pattern) and biases.
  std::map<std::string, std::pair<Value*, std::vector<float>>> weights;
  std::map<std::string, Tensor> quantized_codes;  // weight key -> INT8 codes (bias correction)
  for (Node* n : selected) {
    auto slot = weight_slot(g, *n);
    if (!slot) continue;
    Value* wv = n->inputs[slot->input];
    const std::string key = wv->name + "/" + std::to_string(slot->axis) + "/" + std::to_string(slot->reduce_axis);
    auto it = weights.find(key);
    if (it == weights.end()) {
      const Tensor& wt = *constant(g, wv);
      const auto data_in = original.find(n->inputs[0]);
      const auto gram = o.gptq_grams.find(data_in != original.end() ? data_in->second : n->inputs[0]->name);
      const bool gptq = gram != o.gptq_grams.end() && wt.rank() == 2 && !scheme::fp8_weights(p);
      QuantWeight qw = gptq ? quantize_weight_gptq(wt, *slot, o, gram->second, &result.rounding[n->name])
                            : quantize_weight(wt, *slot, o);
      Value* q = add_initializer(g, wv->name + "_quantized", qw.q);
      Value* scale = add_initializer(g, wv->name + "_scale", qw.scale);
      Value* zp = nullptr;
      if (!qw.block_size) {
        const Dims zd = qw.scale.dims();
        zp = add_initializer(g, wv->name + "_zero_point", Tensor::zeros(scheme::fp8_weights(p) ? DType::Float8E4M3FN : DType::Int8, zd));
      }
      Value* dq = rw.dequantize(wv->name, q, scale, zp, qw.axis, qw.block_size);
      it = weights.emplace(key, std::make_pair(dq, qw.scales)).first;
      quantized_codes[key] = qw.q;
    }
    const Tensor* wf = constant(g, wv);
    n->inputs[slot->input] = it->second.first;
    if (n->op_type == "Conv" && scheme::int8_weights(p) && !o.input_means.empty()) {
      auto orig = original.find(n->inputs[0]);
      auto mu = o.input_means.find(orig != original.end() ? orig->second : n->inputs[0]->name);
      const int64_t cout = wf->dim(0), cin_g = wf->dim(1), group = n->attr_int("group", 1);
      if (mu != o.input_means.end() && static_cast<int64_t>(mu->second.size()) == cin_g * group) {
        const int64_t inner = wf->numel() / (cout * cin_g), per_group = cout / group;
        const std::vector<float>& sw = it->second.second;
        const Tensor& q = quantized_codes.at(key);
        std::vector<double> shift(cout, 0.0);
        for (int64_t oc = 0; oc < cout; ++oc)
          for (int64_t c = 0; c < cin_g; ++c) {
            double d = 0;
            for (int64_t k = 0; k < inner; ++k) {
              const int64_t e = (oc * cin_g + c) * inner + k;
              d += static_cast<double>(q.data<int8_t>()[e]) * sw[sw.size() == 1 ? 0 : oc] - wf->data<float>()[e];
            }
            shift[oc] += d * mu->second[(oc / per_group) * cin_g + c];
          }
        Tensor b = n->has_input(2) && constant(g, n->inputs[2]) ? constant(g, n->inputs[2])->clone() : Tensor::zeros(DType::Float32, {cout});
        for (int64_t oc = 0; oc < cout; ++oc) b.data<float>()[oc] -= static_cast<float>(shift[oc]);
        set_input_value(*n, 2, add_initializer(g, n->name + "_corrected_bias", b));
      }
    }
    // INT32 bias for Conv/ConvTranspose with INT8 activations and weights.
    const bool conv = n->op_type == "Conv" || n->op_type == "ConvTranspose";
    if (!conv || !scheme::int8_activations(p) || !scheme::int8_weights(p) || !n->has_input(2)) continue;
    const Tensor* b = constant(g, n->inputs[2]);
    auto sx = rw.act_scale_.find(n->inputs[0]->name);
    if (!b || b->dtype() != DType::Float32 || b->rank() != 1 || sx == rw.act_scale_.end()) continue;
    const std::vector<float>& sw = it->second.second;
    std::vector<float> bs(b->numel());
    Tensor bq(DType::Int32, b->dims());
    bool fits = true;
    for (int64_t c = 0; c < b->numel(); ++c) {
      bs[c] = sx->second * sw[sw.size() == 1 ? 0 : c];
      const double v = std::nearbyint(static_cast<double>(b->data<float>()[c]) / bs[c]);
      fits &= std::fabs(v) < 2147483647.0;
      bq.data<int32_t>()[c] = fits ? static_cast<int32_t>(v) : 0;
    }
    if (!fits) continue;
    Value* q = add_initializer(g, n->inputs[2]->name + "_quantized", bq);
    Value* scale = add_initializer(g, n->inputs[2]->name + "_scale", Tensor::from_vector<float>(bs, {b->numel()}));
    Value* zp = add_initializer(g, n->inputs[2]->name + "_zero_point", Tensor::zeros(DType::Int32, {b->numel()}));
    n->inputs[2] = rw.dequantize(n->inputs[2]->name, q, scale, zp, 0, 0);
  }
  passes::remove_dead(*result.model);
  g.topological_sort();
  ir::verify(g);
  passes::infer_shapes(*result.model);
  passes::annotate_qdq_precision(*result.model);  // each quantized node says what it computes
  for (auto& n : g.nodes) {  // ...and the plan's record says the same, in the same words
    auto p = result.precision.find(n->name);
    auto a = n->annotations.find(numerics::kPrecisionAnnotation);
    if (p != result.precision.end() && p->second != "fp32" && a != n->annotations.end()) p->second = a->second;
  }
  return result;
}

}  // namespace duet::quant
