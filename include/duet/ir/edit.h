// Editing a graph in place: who reads a value, constants, fresh value and node
// names, new initializers and nodes, node removal, use rewiring, attributes.
// The one set of editing helpers that passes, the quantizer, QAT, autocast,
// autodiff and train::GraphBuilder (which builds whole models on top of it) use.
#pragma once
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "duet/core/error.h"
#include "duet/ir/graph.h"

namespace duet::ir::edit {

using ir::Graph;
using ir::Node;
using ir::Value;

// Who reads each value. Graph outputs and subgraph captures count as readers
// that cannot be rewritten, so values they read are never folded away.
struct Uses {
  std::unordered_map<const Value*, std::vector<std::pair<Node*, size_t>>> readers;
  std::unordered_set<const Value*> pinned;  // graph outputs, subgraph captures

  explicit Uses(Graph& g) {
    for (auto* out : g.outputs) pinned.insert(out);
    for (auto& n : g.nodes) {
      for (size_t i = 0; i < n->inputs.size(); ++i)
        if (n->inputs[i]) readers[n->inputs[i]].push_back({n.get(), i});
      for (auto& name : n->captured_names())
        if (auto* v = g.find_value(name)) pinned.insert(v);
    }
  }
  size_t count(const Value* v) const {
    auto it = readers.find(v);
    return it == readers.end() ? 0 : it->second.size();
  }
  // The only reader of v, or null when v has several, none, or is pinned.
  Node* sole_reader(const Value* v) const {
    if (pinned.count(v) || count(v) != 1) return nullptr;
    return readers.at(v)[0].first;
  }
  const std::vector<std::pair<Node*, size_t>>& of(const Value* v) const {
    static const std::vector<std::pair<Node*, size_t>> none;
    auto it = readers.find(v);
    return it == readers.end() ? none : it->second;
  }
};

inline bool is_graph_input(const Graph& g, const Value* v) {
  for (auto* in : g.inputs) if (in == v) return true;
  return false;
}

// The value of v when it is a constant (ir::Graph::constant).
inline const Tensor* constant(const Graph& g, const Value* v) { return g.constant(v); }

inline std::optional<float> scalar(const Graph& g, const Value* v) {
  const Tensor* t = constant(g, v);
  if (!t || t->numel() != 1 || t->dtype() != DType::Float32) return std::nullopt;
  return t->data<float>()[0];
}

inline std::string fresh_name(Graph& g, const std::string& base) {
  for (int i = 0;; ++i) {
    std::string name = base + (i ? "_" + std::to_string(i) : "");
    if (!g.find_value(name) && !g.initializers.count(name)) return name;
  }
}

// Node names in use, handing out fresh ones (base, base_1, base_2...) while a
// pass adds many nodes (ONNX wants node names unique when present).
class NodeNames {
 public:
  explicit NodeNames(const Graph& g) {
    for (auto& n : g.nodes) taken_.insert(n->name);
  }
  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int i = 1; taken_.count(name); ++i) name = base + "_" + std::to_string(i);
    taken_.insert(name);
    return name;
  }

 private:
  std::unordered_set<std::string> taken_;
};

// An initializer named exactly `name` (an error when the name is taken).
inline Value* add_named_initializer(Graph& g, const std::string& name, Tensor t) {
  DUET_CHECK(!g.find_value(name) && !g.initializers.count(name), "value '", name, "' already exists");
  Value* v = g.value(name);
  v->type.dtype = t.dtype();
  v->type.shape = Shape::from(t.dims());
  g.initializers[name] = std::move(t);
  g.initializer_order.push_back(name);
  return v;
}

// An initializer under a fresh name built from `base`.
inline Value* add_initializer(Graph& g, const std::string& base, Tensor t) {
  return add_named_initializer(g, fresh_name(g, base), std::move(t));
}

inline void drop_nodes(Graph& g, const std::unordered_set<const Node*>& dead) {
  if (dead.empty()) return;
  std::erase_if(g.nodes, [&](const std::unique_ptr<Node>& n) { return dead.count(n.get()) > 0; });
}

// Points every reader of `from` at `to`. False (nothing changed) when `from`
// is a graph output or captured by a subgraph.
inline bool replace_uses(Graph& g, const Uses& uses, Value* from, Value* to) {
  if (uses.pinned.count(from)) return false;
  for (auto [n, i] : uses.of(from)) n->inputs[i] = to;
  return true;
}

// Attributes by value.
inline ir::Attribute attr_int(const std::string& name, int64_t v) { return {.name = name, .type = ir::AttrType::Int, .i = v}; }
inline ir::Attribute attr_ints(const std::string& name, std::vector<int64_t> v) {
  return {.name = name, .type = ir::AttrType::Ints, .ints = std::move(v)};
}
inline ir::Attribute attr_float(const std::string& name, float v) { return {.name = name, .type = ir::AttrType::Float, .f = v}; }
inline ir::Attribute attr_string(const std::string& name, const std::string& v) {
  return {.name = name, .type = ir::AttrType::String, .s = v};
}

inline void remove_attr(Node& n, const std::string& name) {
  std::erase_if(n.attributes, [&](const ir::Attribute& a) { return a.name == name; });
}

// Sets (replacing) an integer or string attribute.
inline void set_attr(Node& n, const std::string& name, int64_t value) {
  remove_attr(n, name);
  n.attributes.push_back(attr_int(name, value));
}
inline void set_attr(Node& n, const std::string& name, const std::string& value) {
  remove_attr(n, name);
  n.attributes.push_back(attr_string(name, value));
}

}  // namespace duet::ir::edit
