#include "duet/passes/sparsify.h"

#include <cstdlib>
#include <map>

#include "duet/core/error.h"
#include "duet/ir/edit.h"
#include "duet/numerics/precision.h"
#include "duet/ops/registry.h"
#include "duet/passes/optimize.h"

namespace duet::passes {

void check_sparsity_pattern(const std::string& pattern) {
  const size_t colon = pattern.find(':');
  auto whole = [](const std::string& s) {
    return !s.empty() && s.size() < 4 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  const std::string n = colon == std::string::npos ? "" : pattern.substr(0, colon);
  const std::string m = colon == std::string::npos ? "" : pattern.substr(colon + 1);
  DUET_CHECK(whole(n) && whole(m) && std::atoi(n.c_str()) > 0 && std::atoi(n.c_str()) < std::atoi(m.c_str()),
             "sparsity pattern '", pattern, "': expected N:M with 0 < N < M (as 2:4)");
  if (pattern != "2:4")
    unsupported("sparsity pattern ", pattern, ": Duet prunes, emulates and models 2:4 (what sparse tensor cores run)");
}

namespace {

// Zeroes the two smallest of every four along `axis` (groups across the other axes).
int64_t prune_along(Tensor& w, int64_t axis) {
  const Dims& d = w.dims();
  int64_t before = 1, after = 1;
  for (int64_t i = 0; i < axis; ++i) before *= d[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < d.size(); ++i) after *= d[i];
  const int64_t K = d[size_t(axis)];
  float* data = w.data<float>();
  int64_t zeroed = 0;
  for (int64_t b = 0; b < before; ++b) {
    float* block = data + b * K * after;
    const std::vector<float> p = numerics::prune_2of4(block, after, K, 1, after);
    for (int64_t i = 0; i < K * after; ++i) {
      zeroed += block[i] != 0.0f && p[size_t(i)] == 0.0f;
      block[i] = p[size_t(i)];
    }
  }
  return zeroed;
}

}  // namespace

SparsifyReport sparsify(ir::Model& model, const SparsifyOptions& options) {
  check_sparsity_pattern(options.pattern);
  fold_constants(model);  // weights written as Constant nodes (PaddleOCR's exports) become initializers
  ir::Graph& g = *model.graph;
  const ir::edit::Uses uses(g);  // who else reads a weight (subgraph captures and graph outputs pinned)
  SparsifyReport report;
  // First decide, then prune: a shared initializer is pruned only when every reader is.
  struct Choice {
    ir::Node* node;
    SparsifiedNode item;
    const ir::Value* weight = nullptr;
    int64_t axis = -1;
  };
  std::vector<Choice> choices;
  std::map<const ir::Value*, int> chosen_readers;
  for (auto& up : g.nodes) {
    ir::Node& n = *up;
    const ops::MatrixTraits* traits = ops::matrix_traits(n);
    if (!traits) continue;
    Choice c{&n, {n.name.empty() ? n.label() : n.name, n.op_type}};
    const ir::Value* wv = traits->weight_input < n.inputs.size() ? n.inputs[traits->weight_input] : nullptr;
    const Tensor* w = wv ? g.constant(wv) : nullptr;
    const bool selected = (options.op_types.empty() || options.op_types.count(n.op_type)) && !options.exclude.count(n.name);
    if (!selected) {
      c.item.reason = "not selected";
    } else if (!w || !g.is_initializer(wv)) {
      c.item.reason = "its weights are computed";
    } else if (w->dtype() != DType::Float32) {
      c.item.reason = "its weights are " + std::string(dtype_name(w->dtype())) + ", not float32";
    } else {
      const ops::WeightAxes axes = traits->weight_axes(n, static_cast<int64_t>(w->rank()));
      c.item.weights = w->numel();
      c.item.weight = wv->name;
      if (axes.reduce < 0) {
        c.item.reason = "its weights have no reduction axis";
      } else {
        c.item.k = w->dims()[size_t(axes.reduce)];
        if (c.item.k % 4 != 0) {
          c.item.reason = "K = " + std::to_string(c.item.k) + " is not a multiple of 4";
        } else {
          c.axis = axes.reduce;
          c.weight = wv;
          ++chosen_readers[wv];
        }
      }
    }
    choices.push_back(std::move(c));
  }
  std::map<const ir::Value*, int64_t> pruned_axis;  // a shared tensor is pruned once
  for (Choice& c : choices) {
    if (c.axis >= 0) {
      const ir::Value* wv = c.weight;
      if (uses.pinned.count(wv) || chosen_readers[wv] != static_cast<int>(uses.count(wv))) {
        c.item.reason = "its weights are shared with a node that is not pruned";
        c.axis = -1;
      } else if (auto it = pruned_axis.find(wv); it != pruned_axis.end() && it->second != c.axis) {
        c.item.reason = "its weights are shared with a node that reduces along another axis";
        c.axis = -1;
      } else {
        if (it == pruned_axis.end()) {
          Tensor& w = g.initializers.at(wv->name);
          w = w.clone();  // initializers may share bytes with other models (clone_sharing_initializers)
          c.item.zeroed = prune_along(w, c.axis);
          pruned_axis[wv] = c.axis;
        }
        // A node without a precision gets the relative annotation sparsity=2:4 (its formats stay the
        // run's choice); one with a precision keeps it, now 2:4.
        auto a = c.node->annotations.find(numerics::kPrecisionAnnotation);
        if (a == c.node->annotations.end() || numerics::is_relative_precision(a->second)) {
          c.node->annotations[numerics::kPrecisionAnnotation] = "sparsity=2:4";
        } else {
          numerics::Precision p = numerics::parse_precision(a->second);
          p.sparsity = numerics::Sparsity::TwoOfFour;
          p.name = "custom";
          a->second = p.str();
        }
        c.item.pruned = true;
      }
    }
    if (c.item.pruned) {
      ++report.pruned;
      report.weights += c.item.weights;
      report.zeroed += c.item.zeroed;
    } else {
      ++report.dense;
    }
    report.nodes.push_back(std::move(c.item));
  }
  if (report.pruned == 0) {
    std::string why = report.nodes.empty() ? "it has no Conv, ConvTranspose, MatMul or Gemm" : "";
    for (size_t i = 0; i < report.nodes.size() && i < 3; ++i)
      why += (i ? "; " : "") + report.nodes[i].node + ": " + report.nodes[i].reason;
    if (report.nodes.size() > 3) why += "; ...";
    fail("nothing to prune 2:4 in this model (", why, ")");
  }
  return report;
}

}  // namespace duet::passes
