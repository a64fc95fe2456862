// Classical ML ops of the "ai.onnx.ml" domain: LabelEncoder, TreeEnsemble,
// ArrayFeatureExtractor and Binarizer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <unordered_map>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

constexpr const char* kMlDomain = "ai.onnx.ml";

std::vector<ir::ValueType> one(DType dt, Shape shape) { return {tensor_type(dt, std::move(shape))}; }

// Copies element `from` of src into element `to` of dst (same dtype, not sub-byte).
void copy_element(const Tensor& src, int64_t from, Tensor& dst, int64_t to) {
  if (src.dtype() == DType::String) {
    dst.strings()[to] = src.strings()[from];
    return;
  }
  const size_t es = static_cast<size_t>(dtype_bits(src.dtype()) / 8);
  std::memcpy(static_cast<uint8_t*>(dst.raw()) + to * es, static_cast<const uint8_t*>(src.raw()) + from * es, es);
}

// ---------------------------------------------------------------------------
// LabelEncoder. Opset 1 maps strings to their index in classes_strings (or
// back); opset 2+ maps keys_* to values_*; opset 4 adds tensor-typed keys,
// values and default. A repeated key takes the last value; NaN keys match any
// NaN input.

enum class KeyKind { String, Integer, Float };

KeyKind key_kind_of(DType dt) {
  if (dt == DType::String) return KeyKind::String;
  if (dt == DType::Float32 || dt == DType::Float64 || dt == DType::Float16) return KeyKind::Float;
  return KeyKind::Integer;
}

struct LabelTable {
  KeyKind kind = KeyKind::String;
  std::unordered_map<std::string, int64_t> string_keys;  // key -> index into values
  std::unordered_map<int64_t, int64_t> int_keys;
  std::unordered_map<double, int64_t> float_keys;
  int64_t nan_key = -1;
  Tensor values;         // 1-D, output dtype
  Tensor default_value;  // one element, output dtype
};

Tensor strings_tensor(const std::vector<std::string>& v) {
  Tensor t(DType::String, {static_cast<int64_t>(v.size())});
  t.strings() = v;
  return t;
}

Tensor scalar_string(const std::string& s) {
  Tensor t(DType::String, {});
  t.strings()[0] = s;
  return t;
}

// The default when values_tensor has no default_tensor: "_Unused", -1 or -0.0.
Tensor implicit_default(DType dt) {
  if (dt == DType::String) return scalar_string("_Unused");
  Tensor t(dt, {});
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    t.data<T>()[0] = dtype_is_float(dt) ? static_cast<T>(-0.0f) : static_cast<T>(-1);
  });
  return t;
}

// Keys as a tensor (strings, int64 or float), whichever attribute is set.
Tensor label_keys(const ir::Node& node) {
  int set = 0;
  Tensor keys;
  if (node.has_attr("keys_strings")) { keys = strings_tensor(node.attr_strings("keys_strings")); ++set; }
  if (node.has_attr("keys_int64s")) {
    const auto v = node.attr_ints("keys_int64s");
    keys = Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
    ++set;
  }
  if (node.has_attr("keys_floats")) {
    const auto v = node.attr_floats("keys_floats");
    keys = Tensor::from_vector<float>(v, {static_cast<int64_t>(v.size())});
    ++set;
  }
  if (node.has_attr("keys_tensor")) { keys = node.attr("keys_tensor")->t; ++set; }
  if (set != 1) fail(node.label(), ": exactly one keys_* attribute must be set (found ", set, ")");
  return keys;
}

// Values and the matching default.
std::pair<Tensor, Tensor> label_values(const ir::Node& node) {
  int set = 0;
  Tensor values, def;
  if (node.has_attr("values_strings")) {
    values = strings_tensor(node.attr_strings("values_strings"));
    def = scalar_string(node.attr_string("default_string", "_Unused"));
    ++set;
  }
  if (node.has_attr("values_int64s")) {
    const auto v = node.attr_ints("values_int64s");
    values = Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
    def = Tensor::scalar<int64_t>(node.attr_int("default_int64", -1));
    ++set;
  }
  if (node.has_attr("values_floats")) {
    const auto v = node.attr_floats("values_floats");
    values = Tensor::from_vector<float>(v, {static_cast<int64_t>(v.size())});
    def = Tensor::scalar<float>(node.attr_float("default_float", -0.0f));
    ++set;
  }
  if (node.has_attr("values_tensor")) {
    values = node.attr("values_tensor")->t;
    def = implicit_default(values.dtype());
    ++set;
  }
  if (set != 1) fail(node.label(), ": exactly one values_* attribute must be set (found ", set, ")");
  if (const ir::Attribute* d = node.attr("default_tensor"); d && node.has_attr("values_tensor")) {
    if (d->t.dtype() != values.dtype() || d->t.numel() != 1)
      fail(node.label(), ": default_tensor must hold one ", dtype_name(values.dtype()), " value");
    def = d->t;
  }
  return {values, def};
}

LabelTable build_label_table(const ir::Node& node, DType input_dtype) {
  Tensor keys;
  LabelTable table;
  if (node.has_attr("classes_strings")) {
    // Opset 1: string -> index, or index -> string.
    const auto classes = node.attr_strings("classes_strings");
    const int64_t n = static_cast<int64_t>(classes.size());
    std::vector<int64_t> idx(n);
    for (int64_t i = 0; i < n; ++i) idx[i] = i;
    if (input_dtype == DType::String) {
      keys = strings_tensor(classes);
      table.values = Tensor::from_vector<int64_t>(idx, {n});
      table.default_value = Tensor::scalar<int64_t>(node.attr_int("default_int64", -1));
    } else {
      keys = Tensor::from_vector<int64_t>(idx, {n});
      table.values = strings_tensor(classes);
      table.default_value = scalar_string(node.attr_string("default_string", "_Unused"));
    }
  } else {
    keys = label_keys(node);
    std::tie(table.values, table.default_value) = label_values(node);
  }
  if (keys.numel() != table.values.numel())
    fail(node.label(), ": ", keys.numel(), " keys but ", table.values.numel(), " values");
  if (table.values.dtype() != DType::String && (dtype_is_subbyte(table.values.dtype()) || dtype_bits(table.values.dtype()) == 0))
    unsupported(node.label(), ": values of type ", dtype_name(table.values.dtype()), " are not supported");
  table.kind = key_kind_of(keys.dtype());
  if (table.kind != key_kind_of(input_dtype))
    fail(node.label(), ": input type ", dtype_name(input_dtype), " does not match keys of type ",
         dtype_name(keys.dtype()));
  for (int64_t i = 0; i < keys.numel(); ++i) {
    switch (table.kind) {
      case KeyKind::String: table.string_keys[keys.strings()[i]] = i; break;
      case KeyKind::Integer: table.int_keys[keys.get_int(i)] = i; break;
      case KeyKind::Float: {
        const double k = keys.get_double(i);
        if (std::isnan(k)) table.nan_key = i;
        else table.float_keys[k] = i;
        break;
      }
    }
  }
  return table;
}

// Index into table.values for element i of x, or -1 for the default.
int64_t label_lookup(const LabelTable& table, const Tensor& x, int64_t i) {
  switch (table.kind) {
    case KeyKind::String: {
      auto it = table.string_keys.find(x.strings()[i]);
      return it == table.string_keys.end() ? -1 : it->second;
    }
    case KeyKind::Integer: {
      auto it = table.int_keys.find(x.get_int(i));
      return it == table.int_keys.end() ? -1 : it->second;
    }
    case KeyKind::Float: {
      const double v = x.get_double(i);
      if (std::isnan(v)) return table.nan_key;
      auto it = table.float_keys.find(v);
      return it == table.float_keys.end() ? -1 : it->second;
    }
  }
  return -1;
}

void label_encoder_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const DType in = x.dtype();
  if (in != DType::String && in != DType::Int64 && in != DType::Int32 && in != DType::Int16 &&
      in != DType::Float32 && in != DType::Float64)
    unsupported(ctx.node.label(), ": input type ", dtype_name(in), " is not supported");
  const LabelTable table = build_label_table(ctx.node, in);
  Tensor& y = ctx.allocate_output(0, table.values.dtype(), x.dims());
  ctx.parallel_for(x.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t k = label_lookup(table, x, i);
      if (k < 0) copy_element(table.default_value, 0, y, i);
      else copy_element(table.values, k, y, i);
    }
  });
}

std::vector<ir::ValueType> label_encoder_infer(InferContext& ctx) {
  const ir::Node& n = ctx.node;
  DType out = DType::Undefined;
  if (n.has_attr("classes_strings")) out = ctx.inputs[0].dtype == DType::String ? DType::Int64 : DType::String;
  else if (const ir::Attribute* t = n.attr("values_tensor")) out = t->t.dtype();
  else if (n.has_attr("values_strings")) out = DType::String;
  else if (n.has_attr("values_int64s")) out = DType::Int64;
  else if (n.has_attr("values_floats")) out = DType::Float32;
  return one(out, ctx.inputs[0].shape);
}

// ---------------------------------------------------------------------------
// TreeEnsemble (opset 5). Interior nodes are the nodes_* tuples; a branch
// leads either to another node or to a leaf_* entry. Each row walks every
// tree and adds the reached leaf's weight to its target.

enum class BranchMode : uint8_t { LEQ = 0, LT = 1, GTE = 2, GT = 3, EQ = 4, NEQ = 5, MEMBER = 6 };

struct TreeNode {
  BranchMode mode;
  int64_t feature;
  double split;
  bool missing_tracks_true;
  int64_t true_id, false_id;
  bool true_is_leaf, false_is_leaf;
  std::vector<double> members;  // sorted, for MEMBER nodes
};

struct TreeModel {
  std::vector<TreeNode> nodes;
  std::vector<int64_t> roots;
  std::vector<int64_t> leaf_targets;
  std::vector<double> leaf_weights;
  int64_t n_targets = 0;
  int aggregate = 1;  // 0 AVERAGE, 1 SUM, 2 MIN, 3 MAX
  int post_transform = 0;  // 0 NONE, 1 SOFTMAX, 2 LOGISTIC, 3 SOFTMAX_ZERO, 4 PROBIT
};

std::vector<double> tensor_attr_doubles(const ir::Node& node, const std::string& name, bool required) {
  const ir::Attribute* a = node.attr(name);
  if (!a) {
    if (required) fail(node.label(), ": attribute '", name, "' is required");
    return {};
  }
  std::vector<double> v(a->t.numel());
  for (int64_t i = 0; i < a->t.numel(); ++i) v[i] = a->t.get_double(i);
  return v;
}

// Fails unless every tree is finite (no cycles) and every index is in range.
void check_tree_structure(const TreeModel& m, const ir::Node& node) {
  enum : uint8_t { kUnseen, kOnPath, kDone };
  std::vector<uint8_t> state(m.nodes.size(), kUnseen);
  for (int64_t root : m.roots) {
    if (root < 0 || root >= static_cast<int64_t>(m.nodes.size()))
      fail(node.label(), ": tree root ", root, " is not a node index");
    // Iterative DFS; a node met again while on the current path is a cycle.
    std::vector<std::pair<int64_t, int>> stack{{root, 0}};
    if (state[root] == kDone) continue;  // trees may share nodes
    state[root] = kOnPath;
    while (!stack.empty()) {
      auto& [id, branch] = stack.back();
      if (branch == 2) {
        state[id] = kDone;
        stack.pop_back();
        continue;
      }
      const TreeNode& n = m.nodes[id];
      const bool leaf = branch == 0 ? n.true_is_leaf : n.false_is_leaf;
      const int64_t next = branch == 0 ? n.true_id : n.false_id;
      ++branch;
      if (leaf) {
        if (next < 0 || next >= static_cast<int64_t>(m.leaf_weights.size()))
          fail(node.label(), ": node ", id, " refers to leaf ", next, " of ", m.leaf_weights.size());
        continue;
      }
      if (next < 0 || next >= static_cast<int64_t>(m.nodes.size()))
        fail(node.label(), ": node ", id, " refers to node ", next, " of ", m.nodes.size());
      if (state[next] == kOnPath) fail(node.label(), ": the trees contain a cycle through node ", next);
      if (state[next] == kDone) continue;
      state[next] = kOnPath;
      stack.push_back({next, 0});
    }
  }
}

TreeModel build_tree_model(const ir::Node& node, int64_t num_features) {
  TreeModel m;
  const auto features = node.attr_ints("nodes_featureids");
  const auto true_ids = node.attr_ints("nodes_truenodeids");
  const auto false_ids = node.attr_ints("nodes_falsenodeids");
  const auto true_leafs = node.attr_ints("nodes_trueleafs");
  const auto false_leafs = node.attr_ints("nodes_falseleafs");
  const auto missing = node.attr_ints("nodes_missing_value_tracks_true");
  const auto splits = tensor_attr_doubles(node, "nodes_splits", true);
  const ir::Attribute* modes_attr = node.attr("nodes_modes");
  if (!modes_attr) fail(node.label(), ": attribute 'nodes_modes' is required");
  const Tensor& modes = modes_attr->t;
  const size_t n = features.size();
  if (true_ids.size() != n || false_ids.size() != n || true_leafs.size() != n || false_leafs.size() != n ||
      splits.size() != n || static_cast<size_t>(modes.numel()) != n || (!missing.empty() && missing.size() != n))
    fail(node.label(), ": the nodes_* attributes must all have the same length");

  m.leaf_targets = node.attr_ints("leaf_targetids");
  m.leaf_weights = tensor_attr_doubles(node, "leaf_weights", true);
  if (m.leaf_targets.size() != m.leaf_weights.size())
    fail(node.label(), ": leaf_targetids and leaf_weights must have the same length");
  int64_t max_target = -1;
  for (int64_t t : m.leaf_targets) max_target = std::max(max_target, t);
  m.n_targets = node.attr_int("n_targets", max_target + 1);
  if (m.n_targets < 0) fail(node.label(), ": n_targets must be >= 0, got ", m.n_targets);
  for (int64_t t : m.leaf_targets)
    if (t < 0 || t >= m.n_targets) fail(node.label(), ": leaf target ", t, " is outside [0, ", m.n_targets, ")");
  m.roots = node.attr_ints("tree_roots");
  m.aggregate = static_cast<int>(node.attr_int("aggregate_function", 1));
  m.post_transform = static_cast<int>(node.attr_int("post_transform", 0));
  if (m.aggregate < 0 || m.aggregate > 3) fail(node.label(), ": invalid aggregate_function ", m.aggregate);
  if (m.post_transform < 0 || m.post_transform > 4) fail(node.label(), ": invalid post_transform ", m.post_transform);

  const auto members = tensor_attr_doubles(node, "membership_values", false);
  size_t member_pos = 0;
  m.nodes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    TreeNode& t = m.nodes[i];
    const int64_t mode = modes.get_int(static_cast<int64_t>(i));
    if (mode < 0 || mode > 6) fail(node.label(), ": node ", i, " has invalid mode ", mode);
    t.mode = static_cast<BranchMode>(mode);
    t.feature = features[i];
    t.split = splits[i];
    t.missing_tracks_true = !missing.empty() && missing[i] != 0;
    t.true_id = true_ids[i];
    t.false_id = false_ids[i];
    t.true_is_leaf = true_leafs[i] != 0;
    t.false_is_leaf = false_leafs[i] != 0;
    const bool degenerate = t.true_is_leaf && t.false_is_leaf && t.true_id == t.false_id;
    if (!degenerate && (t.feature < 0 || t.feature >= num_features))
      fail(node.label(), ": node ", i, " uses feature ", t.feature, " but the input has ", num_features);
    if (t.mode == BranchMode::MEMBER) {
      // The next NaN-terminated run of membership_values.
      if (member_pos >= members.size())
        fail(node.label(), ": membership_values has no set for member node ", i);
      while (member_pos < members.size() && !std::isnan(members[member_pos])) t.members.push_back(members[member_pos++]);
      ++member_pos;  // the NaN delimiter
      std::sort(t.members.begin(), t.members.end());
    }
  }
  check_tree_structure(m, node);
  return m;
}

bool branch_true(const TreeNode& n, double x) {
  if (std::isnan(x) && n.missing_tracks_true) return true;
  switch (n.mode) {
    case BranchMode::LEQ: return x <= n.split;
    case BranchMode::LT: return x < n.split;
    case BranchMode::GTE: return x >= n.split;
    case BranchMode::GT: return x > n.split;
    case BranchMode::EQ: return x == n.split;
    case BranchMode::NEQ: return x != n.split;
    case BranchMode::MEMBER: return std::binary_search(n.members.begin(), n.members.end(), x);
  }
  return false;
}

// The leaf index a row reaches in the tree rooted at `root`.
int64_t walk_tree(const TreeModel& m, int64_t root, const double* row) {
  int64_t id = root;
  while (true) {
    const TreeNode& n = m.nodes[id];
    if (n.true_is_leaf && n.false_is_leaf && n.true_id == n.false_id) return n.true_id;
    const bool go_true = branch_true(n, row[n.feature]);
    const bool leaf = go_true ? n.true_is_leaf : n.false_is_leaf;
    id = go_true ? n.true_id : n.false_id;
    if (leaf) return id;
  }
}

// Inverse error function: a rational first guess refined by Newton steps.
double erfinv(double y) {
  if (y <= -1) return y == -1 ? -std::numeric_limits<double>::infinity() : std::nan("");
  if (y >= 1) return y == 1 ? std::numeric_limits<double>::infinity() : std::nan("");
  const double w = -std::log((1.0 - y) * (1.0 + y));
  double x;
  if (w < 5.0) {
    double v = w - 2.5;
    x = 2.81022636e-08;
    for (double c : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                     -0.00417768164, 0.246640727, 1.50140941})
      x = c + x * v;
  } else {
    double v = std::sqrt(w) - 3.0;
    x = -0.000200214257;
    for (double c : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                     0.00943887047, 1.00167406, 2.83297682})
      x = c + x * v;
  }
  x *= y;
  const double two_over_sqrt_pi = 1.1283791670955126;
  for (int k = 0; k < 2; ++k) x -= (std::erf(x) - y) / (two_over_sqrt_pi * std::exp(-x * x));
  return x;
}

void post_transform(int kind, std::vector<double>& s) {
  switch (kind) {
    case 1: case 3: {  // SOFTMAX, SOFTMAX_ZERO (zeros stay zero)
      const bool keep_zero = kind == 3;
      double mx = -std::numeric_limits<double>::infinity();
      for (double v : s) mx = std::max(mx, v);
      double sum = 0;
      for (double& v : s) {
        v = keep_zero && v == 0 ? 0 : std::exp(v - mx);
        sum += v;
      }
      if (sum > 0) for (double& v : s) v /= sum;
      break;
    }
    case 2:
      for (double& v : s) v = 1.0 / (1.0 + std::exp(-v));
      break;
    case 4:
      for (double& v : s) v = std::sqrt(2.0) * erfinv(2.0 * v - 1.0);
      break;
    default: break;
  }
}

template <typename T>
double to_double(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return static_cast<float>(v);  // float16 converts through float
}

template <typename T>
void tree_ensemble_run(KernelContext& ctx, const Tensor& x, const TreeModel& m, int64_t rows, int64_t features) {
  Tensor& y = ctx.allocate_output(0, x.dtype(), {rows, m.n_targets});
  const T* in = x.data<T>();
  T* out = y.data<T>();
  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<double> row(features), score(m.n_targets);
    std::vector<uint8_t> hit(m.n_targets);
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t f = 0; f < features; ++f) row[f] = to_double(in[r * features + f]);
      std::fill(score.begin(), score.end(), 0.0);
      std::fill(hit.begin(), hit.end(), 0);
      for (int64_t root : m.roots) {
        const int64_t leaf = walk_tree(m, root, row.data());
        const int64_t t = m.leaf_targets[leaf];
        const double w = m.leaf_weights[leaf];
        if (m.aggregate == 2) score[t] = hit[t] ? std::min(score[t], w) : w;
        else if (m.aggregate == 3) score[t] = hit[t] ? std::max(score[t], w) : w;
        else score[t] += w;
        hit[t] = 1;
      }
      if (m.aggregate == 0 && !m.roots.empty())
        for (double& v : score) v /= static_cast<double>(m.roots.size());
      post_transform(m.post_transform, score);
      for (int64_t t = 0; t < m.n_targets; ++t) out[r * m.n_targets + t] = static_cast<T>(score[t]);
    }
  });
}

void tree_ensemble_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 1 || x.rank() > 2)
    fail(ctx.node.label(), ": input must be [N, F] (or [F]), got ", dims_str(x.dims()));
  const int64_t rows = x.rank() == 2 ? x.dim(0) : 1;
  const int64_t features = x.rank() == 2 ? x.dim(1) : x.dim(0);
  const TreeModel m = build_tree_model(ctx.node, features);
  switch (x.dtype()) {
    case DType::Float32: return tree_ensemble_run<float>(ctx, x, m, rows, features);
    case DType::Float64: return tree_ensemble_run<double>(ctx, x, m, rows, features);
    case DType::Float16: return tree_ensemble_run<float16>(ctx, x, m, rows, features);
    default: unsupported(ctx.node.label(), ": input type ", dtype_name(x.dtype()), " is not supported");
  }
}

std::vector<ir::ValueType> tree_ensemble_infer(InferContext& ctx) {
  int64_t max_target = -1;
  for (int64_t t : ctx.node.attr_ints("leaf_targetids")) max_target = std::max(max_target, t);
  const int64_t targets = ctx.node.attr_int("n_targets", max_target + 1);
  const Shape& in = ctx.inputs[0].shape;
  Dim rows = in.rank_known && in.rank() == 2 ? in.dims[0] : in.rank_known && in.rank() == 1 ? Dim(1) : ctx.fresh_dim();
  return one(ctx.inputs[0].dtype, Shape({rows, Dim(targets)}));
}

// Cost: one comparison per level walked (the depth of each tree bounds it)
// and one add per tree, for every row.
Cost tree_ensemble_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const ir::Node& node = ctx.node;
  const auto true_ids = node.attr_ints("nodes_truenodeids");
  const auto false_ids = node.attr_ints("nodes_falsenodeids");
  const auto true_leafs = node.attr_ints("nodes_trueleafs");
  const auto false_leafs = node.attr_ints("nodes_falseleafs");
  const size_t n = true_ids.size();
  if (false_ids.size() != n || true_leafs.size() != n || false_leafs.size() != n) return c;
  // Depth of each interior node's subtree, children before parents.
  std::vector<int64_t> depth(n, -1);
  std::function<int64_t(int64_t, int)> depth_of = [&](int64_t id, int guard) -> int64_t {
    if (id < 0 || id >= static_cast<int64_t>(n) || guard > 4096) return 0;
    if (depth[id] >= 0) return depth[id];
    const int64_t t = true_leafs[id] ? 0 : depth_of(true_ids[id], guard + 1);
    const int64_t f = false_leafs[id] ? 0 : depth_of(false_ids[id], guard + 1);
    return depth[id] = 1 + std::max(t, f);
  };
  double per_row = 0;
  for (int64_t root : node.attr_ints("tree_roots")) per_row += static_cast<double>(depth_of(root, 0)) + 1;
  const ir::ValueType& x = ctx.inputs[0];
  if (x.shape.fully_known() && x.shape.rank() >= 1)
    c.flops = per_row * static_cast<double>(x.shape.rank() == 2 ? x.shape.dims[0].value : 1);
  return c;
}

// ---------------------------------------------------------------------------
// ArrayFeatureExtractor: gathers indices along the last axis. A 1-D input
// gives a [1, K] output (as onnxruntime does).

void array_feature_extractor_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  if (idx.dtype() != DType::Int64) fail(ctx.node.label(), ": indices must be int64");
  if (x.rank() < 1) fail(ctx.node.label(), ": input must have rank >= 1");
  if (x.dtype() != DType::String && (dtype_is_subbyte(x.dtype()) || dtype_bits(x.dtype()) == 0))
    unsupported(ctx.node.label(), ": input type ", dtype_name(x.dtype()), " is not supported");
  const int64_t last = x.dim(-1);
  const int64_t k = idx.numel();
  const int64_t* indices = idx.data<int64_t>();
  for (int64_t j = 0; j < k; ++j)
    if (indices[j] < 0 || indices[j] >= last)
      fail(ctx.node.label(), ": index ", indices[j], " is outside [0, ", last, ")");
  Dims out_dims = x.rank() == 1 ? Dims{1} : Dims(x.dims().begin(), x.dims().end() - 1);
  out_dims.push_back(k);
  Tensor& y = ctx.allocate_output(0, x.dtype(), out_dims);
  if (k == 0) return;
  const int64_t outer = x.numel() / last;  // last > 0: some index was in range
  ctx.parallel_for(outer, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t j = 0; j < k; ++j) copy_element(x, o * last + indices[j], y, o * k + j);
  });
}

std::vector<ir::ValueType> array_feature_extractor_infer(InferContext& ctx) {
  const Shape& in = ctx.inputs[0].shape;
  const Shape& idx = ctx.inputs[1].shape;
  Dim k = idx.fully_known() ? Dim(numel(idx.concrete())) : ctx.fresh_dim();
  if (!in.rank_known) return one(ctx.inputs[0].dtype, Shape::unknown_rank());
  std::vector<Dim> dims = in.rank() <= 1 ? std::vector<Dim>{Dim(1)} : std::vector<Dim>(in.dims.begin(), in.dims.end() - 1);
  dims.push_back(k);
  return one(ctx.inputs[0].dtype, Shape(dims));
}

// ---------------------------------------------------------------------------
// Binarizer: 1 where x > threshold, else 0 (NaN gives 0).

void binarizer_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const double threshold = ctx.node.attr_float("threshold", 0.0f);
  const DType dt = x.dtype();
  if (dt != DType::Float32 && dt != DType::Float64 && dt != DType::Int64 && dt != DType::Int32)
    unsupported(ctx.node.label(), ": input type ", dtype_name(dt), " is not supported");
  Tensor& y = ctx.allocate_output(0, dt, x.dims());
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* out = y.data<T>();
    ctx.parallel_for(x.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = static_cast<double>(in[i]) > threshold ? T(1) : T(0);
    });
  });
}

void add_ml(Registry& r, const char* name, KernelFn kernel, InferFn infer, CostFn cost = default_cost) {
  r.add({.domain = kMlDomain, .name = name, .kernel = std::move(kernel), .infer = std::move(infer),
         .cost = std::move(cost), .family = {}});
}

}  // namespace

void register_ml(Registry& r) {
  add_ml(r, "LabelEncoder", label_encoder_kernel, label_encoder_infer);
  add_ml(r, "TreeEnsemble", tree_ensemble_kernel, tree_ensemble_infer, tree_ensemble_cost);
  add_ml(r, "ArrayFeatureExtractor", array_feature_extractor_kernel, array_feature_extractor_infer);
  add_ml(r, "Binarizer", binarizer_kernel, infer_same_as(0));
}

}  // namespace duet::ops
