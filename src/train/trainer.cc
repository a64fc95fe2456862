#include "duet/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "duet/core/error.h"
#include "duet/eval/metrics.h"
#include "duet/io/file.h"
#include "duet/io/tensor_file.h"
#include "duet/numerics/format.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/optimize.h"
#include "duet/passes/shape_inference.h"
#include "duet/passes/sparsify.h"
#include "duet/passes/upgrade_opset.h"
#include "duet/train/autocast.h"
#include "duet/train/autodiff.h"
#include "duet/train/models.h"
#include "duet/ir/edit.h"

namespace duet::train {

namespace {

constexpr const char* kLabels = "labels";
constexpr const char* kLossScale = "loss_scale";
constexpr const char* kLoss = "loss";
// --amp fp8 (Transformer Engine's hybrid recipe): forward tensors and gradients.
constexpr const char* kFp8Forward = "e4m3fn";
constexpr const char* kFp8Gradient = "e5m2";

// What --amp asks of autocast: a numerics::Precision text (bf16, fp16, tf32,
// fp8 — per-tensor scaled, i.e. delayed scaling with E5M2 gradients — or a
// spec like x=e4m3fn/none), or, as before, a bare float format name (e4m3fn:
// unscaled rounding). "off": nothing.
struct AmpPlan {
  std::string format;
  bool scaled = false;
};
AmpPlan amp_plan(const std::string& amp) {
  numerics::Precision p;
  try {
    p = numerics::parse_precision(amp);
  } catch (const Error&) {
    return {numerics::parse_format(amp).name, false};  // a bare format name, or one error naming the text
  }
  DUET_CHECK(p.x.format.is_float() && p.w.format.name == p.x.format.name && p.x.scaling != numerics::emu::Scaling::Block &&
                 p.x.scaling != numerics::emu::Scaling::Channel,
             "--amp ", amp, ": mixed-precision training rounds both operands of the matrix ops to one float format, "
             "unscaled or per-tensor scaled (bf16, fp16, tf32, fp8, x=FORMAT/none)");
  return {p.x.format.name, p.x.scaling == numerics::emu::Scaling::Tensor};
}

// BatchNormalization's running mean and variance (inputs 3 and 4): state the
// trainer carries from step to step, not parameters.
std::vector<std::string> running_statistics(const ir::Graph& g) {
  std::vector<std::string> names;
  for (auto& n : g.nodes)
    if (n->op_type == "BatchNormalization")
      for (size_t i = 3; i < 5 && i < n->inputs.size(); ++i)
        if (n->inputs[i] && g.initializers.count(n->inputs[i]->name) &&
            std::find(names.begin(), names.end(), n->inputs[i]->name) == names.end())
          names.push_back(n->inputs[i]->name);
  return names;
}

// Float32 initializers the optimizer updates: every one read by a node,
// except the running statistics, the input standardization (a model exported
// with --standardize keeps its preprocessing when trained further) and the
// frozen ones.
std::vector<std::string> trainable_initializers(const ir::Graph& g, const std::vector<std::string>& frozen) {
  for (auto& f : frozen)
    if (!g.initializers.count(f)) fail("--freeze: the model has no initializer named '", f, "'");
  std::unordered_set<std::string> excluded(frozen.begin(), frozen.end()), read;
  for (auto& name : running_statistics(g)) excluded.insert(name);
  excluded.insert(kStandardizeMean);
  excluded.insert(kStandardizeScale);
  // Constants an imported graph computes with, not parameters: scalars (HardSwish's 3 and 6, epsilons, Pow's
  // exponent) and the inputs no gradient flows to (Pow's exponent, Clip's bounds, Resize's roi and scales).
  auto operand = [](const ir::Node& n, size_t i) {
    if (n.op_type == "Pow" || n.op_type == "Clip" || n.op_type == "Resize" || n.op_type == "Pad") return i == 0;
    return true;
  };
  std::unordered_set<std::string> parameter_use;
  for (auto& n : g.nodes)
    for (size_t i = 0; i < n->inputs.size(); ++i)
      if (n->inputs[i]) {
        read.insert(n->inputs[i]->name);
        if (operand(*n, i)) parameter_use.insert(n->inputs[i]->name);
      }
  std::vector<std::string> names;
  for (auto& name : g.initializer_order) {
    const auto it = g.initializers.find(name);
    if (it == g.initializers.end() || it->second.dtype() != DType::Float32) continue;
    if (it->second.numel() <= 1 || !parameter_use.count(name)) continue;
    if (read.count(name) && !excluded.count(name)) names.push_back(name);
  }
  return names;
}

// The forward graph with the parameters as inputs, batch dimension symbolic,
// the logits as the only output, in opset >= 13, autocast when asked.
std::unique_ptr<ir::Model> forward_with_parameter_inputs(const ir::Model& forward, const std::vector<std::string>& params,
                                                         const std::vector<std::string>& state, bool training,
                                                         const TrainConfig& config, int* autocast_nodes) {
  auto m = onnx_io::clone_model(forward);
  bool has_bn = false;
  for (auto& n : m->graph->nodes) has_bn = has_bn || n->op_type == "BatchNormalization";
  // training_mode (BatchNormalization with batch statistics) is opset 14's.
  if (m->opset("") < (has_bn ? 14 : 13)) passes::upgrade_opset(*m, has_bn ? 14 : 13);
  ir::Graph& g = *m->graph;
  std::vector<std::string> inputs = params;
  inputs.insert(inputs.end(), state.begin(), state.end());
  for (auto& name : inputs) {
    ir::Value* v = g.find_value(name);
    g.initializers.erase(name);
    std::erase(g.initializer_order, name);
    g.inputs.push_back(v);
  }
  // Training: BatchNormalization uses batch statistics and outputs the updated
  // running statistics as "<running stat>.next" (the trainer carries them).
  if (training && !config.freeze_batchnorm)
    for (auto& n : g.nodes) {
      if (n->op_type != "BatchNormalization" || !(n->domain.empty() || n->domain == "ai.onnx")) continue;
      ir::edit::set_attr(*n, "training_mode", int64_t{1});
      n->outputs.resize(3, nullptr);
      for (size_t k = 1; k < 3; ++k) {
        ir::Value* next = g.value(n->inputs.at(2 + k)->name + ".next");
        next->type = n->inputs[2 + k]->type;
        n->outputs[k] = next;
        next->producer = n.get();
        next->producer_output = static_cast<int>(k);
      }
    }
  // The logits, and QAT's observer outputs (batch min/max of fake-quantized activations).
  std::erase_if(g.outputs, [&](ir::Value* v) {
    return v != g.outputs[0] && v->name.rfind(kQatMinPrefix, 0) != 0 && v->name.rfind(kQatMaxPrefix, 0) != 0;
  });
  // Scores, not probabilities: a final Softmax over the last axis is left out (the losses apply their own).
  const ir::Node* p = g.outputs[0]->producer;
  while (p && p->op_type == "Identity" && p->inputs[0]) p = p->inputs[0]->producer;
  if (p && p->op_type == "Softmax" && p->domain.empty() && p->inputs[0]) {
    const Shape& in = p->inputs[0]->type.shape;
    const int64_t axis = p->attr_int("axis", -1);
    if (axis == -1 || (in.rank_known && axis == static_cast<int64_t>(in.rank()) - 1)) g.outputs[0] = p->inputs[0];
  }
  if (training)
    for (auto& name : state) g.outputs.push_back(g.find_value(name + ".next"));
  for (ir::Value* v : {g.inputs[0], g.outputs[0]})
    if (v->type.shape.rank_known && v->type.shape.rank() > 0) v->type.shape.dims[0] = Dim::named("N");
  if (config.amp != "off" || config.tf32) {
    AutocastOptions ao;
    const AmpPlan amp = config.amp != "off" ? amp_plan(config.amp) : AmpPlan{"tf32", false};
    ao.format = amp.scaled ? kFp8Forward : amp.format;
    ao.scaled = amp.scaled;
    DUET_CHECK(!amp.scaled || amp.format == kFp8Forward, "--amp ", config.amp,
               ": delayed (per-tensor) scaling is the FP8 recipe: E4M3 forward, E5M2 gradients");
    ao.grad_format = kFp8Gradient;
    ao.round_outputs = config.amp != "off";
    const auto r = autocast(*m, ao);
    if (autocast_nodes) *autocast_nodes = r.nodes;
  }
  passes::infer_shapes(*m);
  return m;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Mean cross-entropy (double) and correct count of logits [N, C] against labels.
std::pair<double, int64_t> score(const Tensor& logits, const Tensor& labels) {
  const int64_t n = logits.dim(0), c = logits.numel() / std::max<int64_t>(1, n);
  double loss = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits.data<float>() + i * c;
    const int64_t label = labels.data<int64_t>()[i];
    const int64_t arg = std::max_element(row, row + c) - row;
    correct += arg == label;
    double mx = row[arg], sum = 0;
    for (int64_t k = 0; k < c; ++k) sum += std::exp(static_cast<double>(row[k]) - mx);
    loss += std::log(sum) + mx - row[label];
  }
  return {loss, correct};
}

// CTC: greedy decode of scores [N, T, C] (argmax, repeats merged, blanks 0 dropped) against label sequences
// [N, S] (-1 padded): lines decoded exactly, label edits, label length.
struct CtcCounts {
  int64_t exact = 0;
  double edits = 0, length = 0;
};

CtcCounts ctc_counts(const Tensor& scores, const Tensor& labels) {
  CtcCounts r;
  const int64_t n = scores.dim(0), steps = scores.dim(1), classes = scores.dim(2), width = labels.dim(1);
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int64_t> decoded = eval::ctc_greedy_path(scores.data<float>() + i * steps * classes, steps, classes);
    std::vector<int64_t> target;
    for (int64_t k = 0; k < width && labels.data<int64_t>()[i * width + k] >= 0; ++k) target.push_back(labels.data<int64_t>()[i * width + k]);
    r.exact += decoded == target;
    r.edits += static_cast<double>(eval::edit_distance(decoded, target));
    r.length += static_cast<double>(std::max<size_t>(1, target.size()));
  }
  return r;
}

// The training loss node on the scores: SoftmaxCrossEntropyLoss (labels [N]) or CtcLoss (labels [N, S]).
ir::Value* add_loss(ir::Model& m, ir::Value* scores, ir::Value* labels, const std::string& kind) {
  ir::Graph& g = *m.graph;
  ir::Value* loss = g.value(kLoss);
  if (kind == "ctc") {
    if (m.opset("com.duet") == 0) m.opset_imports.push_back({"com.duet", 1});
    ir::Node* n = g.add_node("CtcLoss", {scores, labels}, {loss}, "loss");
    n->domain = "com.duet";
    n->attributes.push_back({.name = "reduction", .type = ir::AttrType::String, .s = "mean"});
    ir::edit::set_attr(*n, "zero_infinity", int64_t{1});
  } else {
    ir::Node* n = g.add_node("SoftmaxCrossEntropyLoss", {scores, labels}, {loss}, "loss");
    n->attributes.push_back({.name = "reduction", .type = ir::AttrType::String, .s = "mean"});
  }
  return loss;
}

}  // namespace

struct Trainer::Impl {
  TrainConfig config;
  std::unique_ptr<ir::Model> forward;
  std::string input, logits;
  std::vector<std::string> names, grad_outputs;
  std::vector<Tensor> params;
  std::vector<std::string> state_names;  // BatchNormalization running statistics
  std::vector<Tensor> state;
  std::shared_ptr<ir::Model> train_model, eval_model;
  std::unique_ptr<runtime::Session> train_session, eval_session;
  Optimizer optimizer;
  GradScaler scaler;
  bool scaling = false;
  int64_t steps = 0, epoch = 0;
  int autocast_nodes = 0;
  int64_t last_correct = 0;  // argmax hits of the last training batch
  double last_loss = 0;      // loss of the last step
  // FP8 delayed scaling: amax history and current scale per scale input name.
  std::map<std::string, std::deque<float>> amax_history;
  std::map<std::string, float> fp8_scales;
  // The largest finite values of the forward and gradient FP8 formats.
  const double fp8_forward_max = numerics::parse_format(kFp8Forward).max_finite();
  const double fp8_gradient_max = numerics::parse_format(kFp8Gradient).max_finite();
  // QAT: the fake-quantized tensors and the activations' moving-average ranges.
  std::vector<QatTensor> qat;
  std::map<std::string, std::pair<float, float>> act_range;
  // 2:4 training: (parameter index, mask) of the pruned weights, applied after every update.
  std::vector<std::pair<size_t, Tensor>> masks;

  Impl(const ir::Model& fwd, TrainConfig cfg)
      : config(std::move(cfg)), forward(onnx_io::clone_model(fwd)), optimizer(config.optimizer), scaler(config.scaler) {
    if (config.loss != "cross_entropy" && config.loss != "ctc")
      fail("train: the loss must be cross_entropy or ctc, got '", config.loss, "'");
    passes::fold_constants(*forward);  // weights written as Constant nodes (PaddleOCR's exports) become parameters
    ir::Graph& g = *forward->graph;
    std::vector<ir::Value*> data_inputs;
    for (auto* v : g.inputs)
      if (!g.initializers.count(v->name)) data_inputs.push_back(v);
    if (data_inputs.size() != 1)
      fail("train: the model must have one data input (features), it has ", data_inputs.size());
    if (g.outputs.empty()) fail("train: the model has no output (logits)");
    if (data_inputs[0]->type.dtype != DType::Float32)
      fail("train: the model input '", data_inputs[0]->name, "' must be float32, got ", data_inputs[0]->type.str());
    // Graph inputs that are also initializers would be fed; keep them constant instead.
    std::erase_if(g.inputs, [&](ir::Value* v) { return g.initializers.count(v->name) > 0; });
    input = data_inputs[0]->name;
    bool open = !data_inputs[0]->type.shape.rank_known;
    for (size_t i = 1; !open && i < data_inputs[0]->type.shape.rank(); ++i) open = !data_inputs[0]->type.shape.dims[i].known();
    if (!config.sample_shape.empty() && open) {  // bind what the model leaves open; a known dim must agree
      Shape& shape = data_inputs[0]->type.shape;
      if (!shape.rank_known) shape = Shape::from(Dims(config.sample_shape.size() + 1, 1)), shape.dims[0] = Dim::named("N");
      if (shape.rank() != config.sample_shape.size() + 1)
        fail("train: samples are ", dims_str(config.sample_shape), " but the model input '", input, "' is ", shape.str());
      for (size_t i = 0; i < config.sample_shape.size(); ++i) {
        Dim& d = shape.dims[i + 1];
        if (d.known() && d.value != config.sample_shape[i])
          fail("train: samples are ", dims_str(config.sample_shape), " but the model input '", input, "' is ", shape.str());
        d = Dim(config.sample_shape[i]);
      }
      passes::infer_shapes(*forward);
    }
    logits = g.outputs[0]->name;
    std::set<std::string> pruned;
    if (config.sparsity != "dense") {
      passes::SparsifyOptions so;
      so.pattern = config.sparsity;  // checked there
      for (const passes::SparsifiedNode& n : passes::sparsify(*forward, so).nodes)
        if (n.pruned) pruned.insert(n.weight);
    }
    if (config.qat != "off") {
      if (config.qat != "int8" && config.qat != "int4") fail("train: --qat must be off, int8 or int4, got '", config.qat, "'");
      QatOptions qo = config.qat_options;
      qo.weight_bits = config.qat == "int4" ? 4 : 8;
      qo.activations = config.qat_activations.value_or(config.qat == "int8");
      if (forward->opset("") < 13) passes::upgrade_opset(*forward, 13);
      passes::infer_shapes(*forward);
      qat = insert_fake_quant(*forward, qo);
    }
    names = trainable_initializers(g, config.frozen);
    if (names.empty()) fail("train: the model has no trainable float32 initializers");
    for (auto& n : names) params.push_back(g.initializers.at(n).clone());
    for (size_t i = 0; i < names.size(); ++i)
      if (pruned.count(names[i])) {  // 1 where the pruned weights are non-zero
        Tensor m(DType::Float32, params[i].dims());
        for (int64_t k = 0; k < m.numel(); ++k) m.data<float>()[k] = params[i].data<float>()[k] != 0.0f;
        masks.emplace_back(i, std::move(m));
      }
    if (!config.freeze_batchnorm) state_names = running_statistics(g);
    for (auto& n : state_names) state.push_back(g.initializers.at(n).clone());
    if (config.comm)  // every rank starts from rank 0's weights
      for (auto& p : params) config.comm->broadcast(p.data<float>(), static_cast<size_t>(p.numel()), 0);
    scaling = config.loss_scaling.value_or(config.amp != "off" && amp_plan(config.amp).format == "fp16");

    // Training graph: forward + loss + backward.
    auto tm = forward_with_parameter_inputs(*forward, names, state_names, true, config, &autocast_nodes);
    ir::Graph& tg = *tm->graph;
    const bool ctc = config.loss == "ctc";
    auto labels_input = [&](ir::Graph& graph) {
      ir::Value* labels = graph.value(kLabels);
      labels->type.dtype = DType::Int64;
      labels->type.shape = ctc ? Shape({Dim::named("N"), Dim::named("S")}) : Shape({Dim::named("N")});
      graph.inputs.push_back(labels);
      return labels;
    };
    ir::Value* labels = labels_input(tg);
    ir::Value* seed = tg.value(kLossScale);
    seed->type.dtype = DType::Float32;
    seed->type.shape = Shape(std::vector<Dim>{});
    tg.inputs.push_back(seed);
    logits = tg.outputs[0]->name;  // the scores (a final Softmax left out)
    tg.outputs.insert(tg.outputs.begin(), add_loss(*tm, tg.outputs[0], labels, config.loss));
    passes::infer_shapes(*tm);
    GradientRequest req{.loss = kLoss, .wrt = names, .seed = kLossScale};
    const auto grads = add_gradients(*tm, req);
    for (auto& n : names) grad_outputs.push_back(grads.at(n));
    train_model = std::move(tm);
    eval_model = forward_with_parameter_inputs(*forward, names, state_names, false, config, nullptr);
    if (ctc) {  // evaluation measures the loss too: it needs the labels
      ir::Graph& eg = *eval_model->graph;
      eg.outputs.push_back(add_loss(*eval_model, eg.outputs[0], labels_input(eg), config.loss));
      passes::infer_shapes(*eval_model);
    }

    runtime::SessionOptions so;
    so.threads = config.threads;
    so.backend = config.backend;
    so.profile = config.profile;
    runtime::prepare_model(*train_model, so);
    runtime::prepare_model(*eval_model, so);
    train_session = std::make_unique<runtime::Session>(train_model, so);
    eval_session = std::make_unique<runtime::Session>(eval_model, so);
  }

  std::map<std::string, Tensor> feeds(const Tensor& x, const ir::Model& m) const {
    std::map<std::string, Tensor> f;
    f[input] = x;
    for (size_t i = 0; i < names.size(); ++i) f[names[i]] = params[i];
    for (size_t i = 0; i < state_names.size(); ++i) f[state_names[i]] = state[i];
    for (auto* v : m.graph->inputs)
      if (v->name.rfind(kFp8ScalePrefix, 0) == 0) {
        auto it = fp8_scales.find(v->name);
        f[v->name] = Tensor::scalar<float>(it == fp8_scales.end() ? 1.0f : it->second);
      }
    for (auto& [name, t] : qat_feeds()) f[name] = t;
    return f;
  }

  // QAT scale / zero-point inputs: weight scales from the current weights,
  // activation ones from the moving-average ranges (scale 0 = pass-through
  // until the first batch has been observed).
  std::map<std::string, Tensor> qat_feeds() const {
    std::map<std::string, Tensor> f;
    for (const QatTensor& q : qat) {
      const std::string sname = kQatScalePrefix + q.tensor;
      if (q.weight) {
        if (config.qat_options.lsq) continue;  // a trainable parameter, fed with the others
        const size_t i = std::find(names.begin(), names.end(), q.tensor) - names.begin();
        if (i == names.size()) fail("QAT: weight '", q.tensor, "' is not trainable");
        f[sname] = weight_scales(params[i], q);
      } else {
        auto [scale, zp] = activation_qparams(q);
        f[sname] = Tensor::scalar<float>(scale);
        f[kQatZeroPointPrefix + q.tensor] = Tensor::scalar<int32_t>(zp);
      }
    }
    return f;
  }

  // PyTorch's affine UINT8 parameters from a range that is widened to hold 0.
  std::pair<float, int32_t> activation_qparams(const QatTensor& q) const {
    auto it = act_range.find(q.tensor);
    if (it == act_range.end()) return {0.0f, 0};
    const float lo = std::min(it->second.first, 0.0f), hi = std::max(it->second.second, 0.0f);
    const float scale = std::max((hi - lo) / static_cast<float>(q.qmax - q.qmin), 1.1920929e-07f);
    const int32_t zp = static_cast<int32_t>(std::clamp<float>(static_cast<float>(q.qmin) - std::nearbyint(lo / scale),
                                                              static_cast<float>(q.qmin), static_cast<float>(q.qmax)));
    return {scale, zp};
  }

  // Moving-average min/max observers (PyTorch's averaging constant 0.01; the
  // first batch sets the range), max/min over ranks under MPI.
  void observe_activations(const std::map<std::string, Tensor>& outputs) {
    std::vector<std::string> keys;
    std::vector<float> v;  // -min, max per tensor
    for (const QatTensor& q : qat) {
      if (q.weight) continue;
      auto lo = outputs.find(kQatMinPrefix + q.tensor), hi = outputs.find(kQatMaxPrefix + q.tensor);
      keys.push_back(q.tensor);
      v.push_back(lo == outputs.end() ? -INFINITY : -lo->second.data<float>()[0]);
      v.push_back(hi == outputs.end() ? -INFINITY : hi->second.data<float>()[0]);
    }
    if (keys.empty()) return;
    if (config.comm) v = allreduce_max(*config.comm, v);
    for (size_t i = 0; i < keys.size(); ++i) {
      const float lo = -v[2 * i], hi = v[2 * i + 1];
      if (!std::isfinite(lo) || !std::isfinite(hi)) continue;
      auto it = act_range.find(keys[i]);
      if (it == act_range.end()) act_range[keys[i]] = {lo, hi};
      else {
        it->second.first += 0.01f * (lo - it->second.first);
        it->second.second += 0.01f * (hi - it->second.second);
      }
    }
  }

  // Records this step's amaxes (graph outputs "fp8_amax:T") and sets the
  // scales of the next step from the histories (Transformer Engine's rule).
  void update_fp8(const std::map<std::string, Tensor>& outputs) {
    std::vector<std::string> keys;
    std::vector<float> amaxes;
    for (auto& [name, t] : outputs)
      if (name.rfind(kFp8AmaxPrefix, 0) == 0) {
        keys.push_back(kFp8ScalePrefix + name.substr(std::string(kFp8AmaxPrefix).size()));
        amaxes.push_back(t.data<float>()[0]);
      }
    if (keys.empty()) return;
    if (config.comm) amaxes = allreduce_max(*config.comm, amaxes);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto& h = amax_history[keys[i]];
      h.push_back(amaxes[i]);
      while (static_cast<int64_t>(h.size()) > std::max<int64_t>(1, config.fp8_history)) h.pop_front();
      const float amax = *std::max_element(h.begin(), h.end());
      if (!(amax > 0) || !std::isfinite(amax)) continue;  // keep the previous scale
      const bool gradient = keys[i].ends_with(".grad");  // the gradient scales' names (train::autodiff)
      const double fp8_max = gradient ? fp8_gradient_max : fp8_forward_max;
      fp8_scales[keys[i]] = static_cast<float>(fp8_max / amax / std::ldexp(1.0, config.fp8_margin));
    }
  }
};

Trainer::Trainer(const ir::Model& forward, TrainConfig config)
    : impl_(std::make_unique<Impl>(forward, std::move(config))) {}
Trainer::~Trainer() = default;

double Trainer::step(const Tensor& features, const Tensor& labels) {
  Impl& s = *impl_;
  const int64_t n = labels.dim(0);
  int64_t lo = 0, hi = n;
  if (s.config.comm) {  // this rank's contiguous slice of the global batch
    const int64_t r = s.config.comm->rank(), p = s.config.comm->size();
    lo = n * r / p;
    hi = n * (r + 1) / p;
  }
  std::vector<Tensor> grads;
  double loss = 0;
  s.last_correct = 0;
  if (hi > lo) {
    Tensor x = features, y = labels;
    if (hi - lo != n) {
      std::vector<int64_t> idx;
      for (int64_t i = lo; i < hi; ++i) idx.push_back(i);
      const Dataset part = Dataset{features, labels}.gather(idx);
      x = part.features;
      y = part.labels;
    }
    auto feeds = s.feeds(x, *s.train_model);
    feeds[kLabels] = y;
    feeds[kLossScale] = Tensor::scalar<float>(s.scaling ? static_cast<float>(s.scaler.scale()) : 1.0f);
    auto outs = s.train_session->run(feeds);
    std::map<std::string, Tensor> by_name;
    for (auto& o : outs) by_name[o.name] = o.tensor;
    loss = by_name.at(kLoss).get_double(0);
    s.last_correct = s.config.loss == "ctc" ? ctc_counts(by_name.at(s.logits), y).exact : score(by_name.at(s.logits), y).second;
    for (auto& g : s.grad_outputs) grads.push_back(by_name.at(g).clone());
    s.update_fp8(by_name);
    s.observe_activations(by_name);
    for (size_t i = 0; i < s.state_names.size(); ++i) s.state[i] = by_name.at(s.state_names[i] + ".next").clone();
  } else {  // an empty slice (global batch smaller than the rank count) still joins the collectives
    for (auto& p : s.params) grads.push_back(Tensor::zeros(DType::Float32, p.dims()));
    std::map<std::string, Tensor> no_amax;
    for (auto* v : s.train_model->graph->outputs)
      if (v->name.rfind(kFp8AmaxPrefix, 0) == 0) no_amax[v->name] = Tensor::scalar<float>(0.0f);
    s.update_fp8(no_amax);
    s.observe_activations({});
  }
  if (s.config.comm) {
    // Mean over the global batch = Σ over ranks of (share of the batch) × rank mean.
    const double share = static_cast<double>(hi - lo) / static_cast<double>(n);
    allreduce_gradients(*s.config.comm, grads, share, s.config.bf16_allreduce);
    const auto totals = allreduce_values(*s.config.comm, {loss * share, static_cast<double>(s.last_correct)});
    loss = totals[0];
    s.last_correct = static_cast<int64_t>(totals[1]);
  }
  ++s.steps;
  if (!s.scaling && !std::isfinite(loss))
    fail("training diverged at step ", s.steps, ": the loss is ", std::isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf",
         " (lower the learning rate, clip with --clip-norm, or check the data for NaN/Inf)");
  if (s.scaling) {
    const bool found_inf = s.scaler.unscale_and_check(grads);
    s.scaler.update(found_inf);
    if (found_inf) return std::nan("");
  }
  if (s.config.clip_norm > 0) clip_grad_norm(grads, s.config.clip_norm);
  const double lr = scheduled_lr(s.config.schedule, s.config.optimizer.lr, s.optimizer.steps());
  s.optimizer.step(s.params, grads, lr);
  for (auto& [i, m] : s.masks) {
    float* w = s.params[i].data<float>();
    const float* keep = m.data<float>();
    for (int64_t k = 0; k < m.numel(); ++k) w[k] *= keep[k];
  }
  return loss;
}

EpochResult Trainer::train_epoch(const Dataset& train, const Dataset* test,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  Impl& s = *impl_;
  EpochResult r;
  r.epoch = s.epoch;
  const auto order = permutation(train.size(), s.config.seed, static_cast<uint64_t>(s.epoch));
  const int64_t batches = (train.size() + s.config.batch - 1) / s.config.batch;
  std::vector<double> step_ms;
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  for (int64_t b = 0; b < batches; ++b) {
    if (s.config.max_steps > 0 && s.steps >= s.config.max_steps) break;
    const int64_t lo = b * s.config.batch, hi = std::min(train.size(), lo + s.config.batch);
    const Dataset batch = train.gather(std::vector<int64_t>(order.begin() + lo, order.begin() + hi));
    r.lr = scheduled_lr(s.config.schedule, s.config.optimizer.lr, s.optimizer.steps());
    const double t0 = now_ms();
    const double loss = step(batch.features, batch.labels);
    step_ms.push_back(now_ms() - t0);
    s.last_loss = loss;
    if (std::isnan(loss)) {
      ++r.skipped_steps;
    } else {
      loss_sum += loss;
      ++r.steps;
    }
    correct += s.last_correct;
    seen += hi - lo;
    if (progress) progress(b + 1, batches);
  }
  r.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0;
  r.seconds = 0;
  for (double ms : step_ms) r.seconds += ms / 1000;
  std::sort(step_ms.begin(), step_ms.end());
  r.ms_per_step = step_ms.empty() ? 0 : step_ms[step_ms.size() / 2];
  r.train_loss = r.steps ? loss_sum / static_cast<double>(r.steps) : std::nan("");
  r.last_loss = s.last_loss;
  r.loss_scale = s.scaling ? s.scaler.scale() : 1.0;
  if (test) r.test = evaluate(*test);
  ++s.epoch;
  return r;
}

Evaluation Trainer::evaluate(const Dataset& data) {
  Impl& s = *impl_;
  Evaluation e;
  const int64_t bs = std::max<int64_t>(s.config.batch, 256);
  double loss = 0, edits = 0, length = 0;
  int64_t correct = 0;
  const bool ctc = s.config.loss == "ctc";
  DUET_CHECK(data.sequences() == ctc, "evaluate: ", ctc ? "CTC training takes label sequences" : "labels are one class per sample");
  for (int64_t lo = 0; lo < data.size(); lo += bs) {
    std::vector<int64_t> idx;
    for (int64_t i = lo; i < std::min(data.size(), lo + bs); ++i) idx.push_back(i);
    const Dataset batch = data.gather(idx);
    auto feeds = s.feeds(batch.features, *s.eval_model);
    if (ctc) feeds[kLabels] = batch.labels;
    auto outs = s.eval_session->run(feeds);
    if (ctc) {
      const CtcCounts k = ctc_counts(outs.at(0).tensor, batch.labels);
      const auto mean = std::find_if(outs.begin(), outs.end(), [](const runtime::NamedTensor& o) { return o.name == kLoss; });
      DUET_CHECK(mean != outs.end(), "evaluate: the evaluation graph lost its loss output");
      loss += mean->tensor.get_double(0) * static_cast<double>(batch.size());  // the batch's mean
      correct += k.exact;
      edits += k.edits, length += k.length;
    } else {
      auto [l, c] = score(outs.at(0).tensor, batch.labels);
      loss += l;
      correct += c;
    }
  }
  if (ctc) e.cer = length > 0 ? edits / length : 0;
  e.samples = data.size();
  e.loss = data.size() ? loss / static_cast<double>(data.size()) : 0;
  e.accuracy = data.size() ? static_cast<double>(correct) / static_cast<double>(data.size()) : 0;
  return e;
}

std::unique_ptr<ir::Model> Trainer::trained_model() const {
  const Impl& s = *impl_;
  auto m = onnx_io::clone_model(*s.forward);
  for (size_t i = 0; i < s.names.size(); ++i) m->graph->initializers[s.names[i]] = s.params[i].clone();
  for (size_t i = 0; i < s.state_names.size(); ++i) m->graph->initializers[s.state_names[i]] = s.state[i].clone();
  if (s.qat.empty()) return m;
  std::map<std::string, Tensor> scales, zero_points;
  const auto feeds = s.qat_feeds();
  for (const QatTensor& q : s.qat) {
    const std::string sname = kQatScalePrefix + q.tensor;
    if (q.weight && s.config.qat_options.lsq) {
      const size_t i = std::find(s.names.begin(), s.names.end(), sname) - s.names.begin();
      scales[q.tensor] = s.params.at(i).clone();
    } else {
      scales[q.tensor] = feeds.at(sname);
      if (!q.weight) zero_points[q.tensor] = feeds.at(kQatZeroPointPrefix + q.tensor);
    }
    if (!q.weight && scales[q.tensor].data<float>()[0] == 0)
      fail("QAT export: activation '", q.tensor, "' was never observed (train at least one step)");
  }
  export_qdq(*m, scales, zero_points);
  return m;
}

const std::vector<std::string>& Trainer::parameter_names() const { return impl_->names; }
std::vector<Tensor>& Trainer::parameters() { return impl_->params; }
int64_t Trainer::steps() const { return impl_->steps; }
int64_t Trainer::epoch() const { return impl_->epoch; }
double Trainer::loss_scale() const { return impl_->scaling ? impl_->scaler.scale() : 1.0; }
int Trainer::autocast_nodes() const { return impl_->autocast_nodes; }
int64_t Trainer::classes() const {
  const ir::Value* scores = impl_->train_model->graph->find_value(impl_->logits);
  const Shape& s = scores->type.shape;
  return s.rank_known && s.rank() > 0 && s.dims.back().known() ? s.dims.back().value : 0;
}
const ir::Model& Trainer::training_graph() const { return *impl_->train_model; }

std::map<std::string, double> Trainer::profile() const {
  std::map<std::string, double> by_op;
  if (!impl_->config.profile || impl_->steps == 0) return by_op;
  for (auto& [node, ms] : impl_->train_session->node_times())
    by_op[node->domain.empty() ? node->op_type : node->domain + ":" + node->op_type] += ms / static_cast<double>(impl_->steps);
  return by_op;
}

// The input standardization constants of a model ({mean, inv_std}), or null.
static nlohmann::json standardization_of(const ir::Model& m) {
  const auto& init = m.graph->initializers;
  const auto mean = init.find(kStandardizeMean), scale = init.find(kStandardizeScale);
  if (mean == init.end() || scale == init.end()) return nullptr;
  return {{"mean", mean->second.get_double(0)}, {"inv_std", scale->second.get_double(0)}};
}

// A checkpoint is a folder: checkpoint.json and one .npy per tensor. Each
// save writes its tensors under names carrying its step count, then replaces
// checkpoint.json (which lists them) in one rename, then removes the tensors
// of earlier saves: a save killed at any point leaves the previous checkpoint
// whole, never a mix of two.
namespace {

const char* const kCheckpointGroups[] = {"parameters", "optimizer_state", "running_statistics"};

// Each group's tensor files start with its prefix.
std::string group_prefix(const std::string& group) {
  return group == "parameters" ? "param_" : group == "optimizer_state" ? "state_" : "running_";
}

std::string checkpoint_file(const char* group, size_t i, int64_t steps) {
  return group_prefix(group) + std::to_string(i) + ".step" + std::to_string(steps) + ".npy";
}

// The tensor file names a checkpoint.json lists for `group`; older
// checkpoints (without "files") named them PREFIX_I.npy.
std::vector<std::string> listed_files(const nlohmann::json& meta, const char* group, size_t count, const std::string& dir) {
  std::vector<std::string> names;
  if (meta.contains("files")) {
    names = meta.at("files").at(group).get<std::vector<std::string>>();
    for (auto& n : names)
      if (n.empty() || n.find('/') != std::string::npos || n == "." || n == "..")
        fail("checkpoint '", dir, "': '", n, "' is not a file name in the checkpoint's folder");
  } else {
    for (size_t i = 0; i < count; ++i) names.push_back(group_prefix(group) + std::to_string(i) + ".npy");
  }
  if (names.size() != count) fail("checkpoint '", dir, "' lists ", names.size(), " ", group, " files for ", count, " tensors");
  return names;
}

}  // namespace

void Trainer::save_checkpoint(const std::string& dir) const {
  const Impl& s = *impl_;
  std::filesystem::create_directories(dir);
  nlohmann::json meta;
  meta["format"] = "duet-checkpoint-1";
  meta["steps"] = s.steps;
  meta["epoch"] = s.epoch;
  meta["optimizer_steps"] = s.optimizer.steps();
  meta["loss_scale"] = s.scaler.scale();
  meta["growth_tracker"] = s.scaler.growth_tracker();
  meta["parameters"] = s.names;
  meta["optimizer_state"] = s.optimizer.state().size();
  meta["running_statistics"] = s.state_names;
  meta["standardization"] = standardization_of(*s.forward);
  const std::vector<Tensor>* tensors[] = {&s.params, &s.optimizer.state(), &s.state};
  std::set<std::string> written;
  for (size_t g = 0; g < 3; ++g) {
    nlohmann::json names = nlohmann::json::array();
    for (size_t i = 0; i < tensors[g]->size(); ++i) {
      const std::string name = checkpoint_file(kCheckpointGroups[g], i, s.steps);
      io::save_npy((*tensors[g])[i], dir + "/" + name);
      names.push_back(name);
      written.insert(name);
    }
    meta["files"][kCheckpointGroups[g]] = names;
  }
  io::write_file_atomically(dir + "/checkpoint.json", meta.dump(2) + "\n", "checkpoint");
  // The earlier saves' tensors, now that nothing lists them.
  for (auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    bool ours = false;
    for (const char* group : kCheckpointGroups) ours |= name.ends_with(".npy") && name.starts_with(group_prefix(group));
    if (ours && !written.count(name)) std::filesystem::remove(entry.path());
  }
}

void Trainer::load_checkpoint(const std::string& dir) {
  Impl& s = *impl_;
  if (!std::filesystem::exists(dir + "/checkpoint.json")) fail("checkpoint '", dir, "' has no checkpoint.json");
  const std::string text = io::read_file(dir + "/checkpoint.json", "checkpoint");  // regular files only
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail("checkpoint '", dir, "/checkpoint.json' is not valid JSON: ", e.what());
  }
  if (!meta.is_object() || !meta.contains("format") || meta.at("format") != "duet-checkpoint-1")
    fail("checkpoint '", dir, "' has an unknown format");
  // Everything is read and checked before anything of this trainer changes.
  try {
    if (meta.at("parameters").get<std::vector<std::string>>() != s.names)
      fail("checkpoint '", dir, "' holds the parameters of another model");
    if (meta.value("running_statistics", std::vector<std::string>{}) != s.state_names)
      fail("checkpoint '", dir, "' holds the running statistics of another model");
    const nlohmann::json want = meta.value("standardization", nlohmann::json()), have = standardization_of(*s.forward);
    if (want != have)
      fail("checkpoint '", dir, "' was trained with input standardization ", want.is_null() ? "off" : want.dump(),
           ", this run has ", have.is_null() ? "none" : have.dump(), " (same --standardize and data as the first run)");
    const auto load = [&](const char* group, size_t count, const std::vector<Tensor>* like, const std::vector<std::string>& names) {
      std::vector<Tensor> out;
      const std::vector<std::string> files = listed_files(meta, group, count, dir);
      for (size_t i = 0; i < files.size(); ++i) {
        Tensor t = io::load_npy(dir + "/" + files[i]);
        if (like && (t.dims() != (*like)[i].dims() || t.dtype() != (*like)[i].dtype()))
          fail("checkpoint '", dir, "': ", names[i], " is ", t.describe(), ", expected ", (*like)[i].describe());
        out.push_back(std::move(t));
      }
      return out;
    };
    std::vector<Tensor> params = load("parameters", s.params.size(), &s.params, s.names);
    // Bounded before anything is listed: no optimizer keeps more than two tensors per parameter
    // (restore_state checks the exact count for this run's optimizer).
    const size_t state_count = meta.at("optimizer_state").get<size_t>();
    if (state_count > 2 * s.params.size())
      fail("checkpoint '", dir, "' lists ", state_count, " optimizer state tensors for ", s.params.size(), " parameters");
    std::vector<Tensor> state = load("optimizer_state", state_count, nullptr, {});
    std::vector<Tensor> running = load("running_statistics", s.state.size(), &s.state, s.state_names);
    const int64_t optimizer_steps = meta.at("optimizer_steps").get<int64_t>(), steps = meta.at("steps").get<int64_t>(),
                  epoch = meta.at("epoch").get<int64_t>(), growth = meta.at("growth_tracker").get<int64_t>();
    const double loss_scale = meta.at("loss_scale").get<double>();
    if (steps < 0 || epoch < 0 || optimizer_steps < 0 || growth < 0 || !(loss_scale > 0) || !std::isfinite(loss_scale))
      fail("checkpoint '", dir, "' has a negative count or a loss scale that is not a positive number");
    try {
      s.optimizer.restore_state(std::move(state), params);
    } catch (const Error& e) {
      fail("checkpoint '", dir, "': ", e.what());
    }
    s.params = std::move(params);
    s.state = std::move(running);
    s.optimizer.set_steps(optimizer_steps);
    s.steps = steps;
    s.epoch = epoch;
    s.scaler.restore(loss_scale, growth);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint '", dir, "/checkpoint.json' is missing a field or has one of the wrong type (", e.what(), ")");
  }
}

}  // namespace duet::train
