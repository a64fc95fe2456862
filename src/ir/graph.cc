#include "duet/ir/graph.h"

#include <functional>
#include <set>
#include <unordered_set>

namespace duet::ir {

std::string ValueType::str() const {
  switch (kind) {
    case Kind::Tensor: return std::string(dtype_name(dtype)) + "[" + shape.str() + "]";
    case Kind::Sequence: return "sequence";
    case Kind::Optional: return "optional";
    case Kind::Map: return "map";
    case Kind::SparseTensor: return "sparse_tensor";
    default: return "unknown";
  }
}

const Attribute* Node::attr(const std::string& n) const {
  for (auto& a : attributes) if (a.name == n) return &a;
  return nullptr;
}

int64_t Node::attr_int(const std::string& n, int64_t def) const {
  auto* a = attr(n);
  if (!a) return def;
  DUET_CHECK(a->type == AttrType::Int, label(), ": attribute '", n, "' must be an int");
  return a->i;
}

float Node::attr_float(const std::string& n, float def) const {
  auto* a = attr(n);
  if (!a) return def;
  if (a->type == AttrType::Int) return static_cast<float>(a->i);
  DUET_CHECK(a->type == AttrType::Float, label(), ": attribute '", n, "' must be a float");
  return a->f;
}

std::string Node::attr_string(const std::string& n, const std::string& def) const {
  auto* a = attr(n);
  if (!a) return def;
  DUET_CHECK(a->type == AttrType::String, label(), ": attribute '", n, "' must be a string");
  return a->s;
}

std::vector<int64_t> Node::attr_ints(const std::string& n, std::vector<int64_t> def) const {
  auto* a = attr(n);
  if (!a) return def;
  if (a->type == AttrType::Int) return {a->i};
  DUET_CHECK(a->type == AttrType::Ints, label(), ": attribute '", n, "' must be a list of ints");
  return a->ints;
}

std::vector<float> Node::attr_floats(const std::string& n, std::vector<float> def) const {
  auto* a = attr(n);
  if (!a) return def;
  if (a->type == AttrType::Float) return {a->f};
  DUET_CHECK(a->type == AttrType::Floats, label(), ": attribute '", n, "' must be a list of floats");
  return a->floats;
}

std::vector<std::string> Node::attr_strings(const std::string& n) const {
  auto* a = attr(n);
  if (!a) return {};
  if (a->type == AttrType::String) return {a->s};
  DUET_CHECK(a->type == AttrType::Strings, label(), ": attribute '", n, "' must be a list of strings");
  return a->strings;
}

const Graph* Node::attr_graph(const std::string& n) const {
  auto* a = attr(n);
  if (!a) return nullptr;
  DUET_CHECK(a->type == AttrType::Graph && a->g, label(), ": attribute '", n, "' must be a graph");
  return a->g.get();
}

std::string Node::label() const {
  return name.empty() ? op_type + " node (output '" + (outputs.empty() || !outputs[0] ? std::string("?") : outputs[0]->name) + "')"
                      : op_type + " '" + name + "'";
}

Value* Graph::value(const std::string& name) {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second.get();
  auto v = std::make_unique<Value>();
  v->name = name;
  Value* raw = v.get();
  values_.emplace(name, std::move(v));
  return raw;
}

Value* Graph::find_value(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : it->second.get();
}

Node* Graph::add_node(std::string op_type, std::vector<Value*> ins, std::vector<Value*> outs,
                      std::string name, std::string domain) {
  auto n = std::make_unique<Node>();
  n->op_type = std::move(op_type);
  n->domain = std::move(domain);
  n->name = std::move(name);
  n->inputs = std::move(ins);
  n->outputs = std::move(outs);
  for (size_t i = 0; i < n->outputs.size(); ++i) {
    if (n->outputs[i]) {
      n->outputs[i]->producer = n.get();
      n->outputs[i]->producer_output = static_cast<int>(i);
    }
  }
  nodes.push_back(std::move(n));
  return nodes.back().get();
}

std::vector<std::string> Graph::outer_scope_names() const {
  std::unordered_set<std::string> defined;
  for (auto* v : inputs) defined.insert(v->name);
  for (auto& [n, t] : initializers) defined.insert(n);
  std::vector<std::string> result;
  std::unordered_set<std::string> seen;
  std::function<void(const Graph&)> visit = [&](const Graph& g) {
    for (auto& node : g.nodes) {
      for (auto* in : node->inputs) {
        if (in && !defined.count(in->name) && !in->producer && !seen.count(in->name)) {
          bool local = false;
          for (auto* gi : g.inputs) local |= gi == in;
          if (!local && !g.initializers.count(in->name)) {
            seen.insert(in->name);
            result.push_back(in->name);
          }
        }
      }
      for (auto& a : node->attributes) {
        if (a.g) for (auto& n : a.g->outer_scope_names()) if (!defined.count(n) && !seen.count(n)) {
          // a name defined by a node of this graph is not outer scope
          Value* v = find_value(n);
          if (v && v->producer) continue;
          seen.insert(n);
          result.push_back(n);
        }
        for (auto& sg : a.graphs) for (auto& n : sg->outer_scope_names()) if (!defined.count(n) && !seen.count(n)) {
          Value* v = find_value(n);
          if (v && v->producer) continue;
          seen.insert(n);
          result.push_back(n);
        }
      }
    }
  };
  visit(*this);
  return result;
}

std::vector<const Graph*> Node::subgraphs() const {
  std::vector<const Graph*> bodies;
  for (auto& a : attributes) {
    if (a.g) bodies.push_back(a.g.get());
    for (auto& g : a.graphs) bodies.push_back(g.get());
  }
  return bodies;
}

std::vector<std::string> Node::captured_names() const {
  std::vector<std::string> names;
  for (const Graph* body : subgraphs())
    for (auto& name : body->outer_scope_names()) names.push_back(name);
  return names;
}

void Graph::topological_sort() {
  std::unordered_map<const Node*, int> pending;
  std::unordered_map<const Value*, std::vector<Node*>> users;
  // A node depends on producers of its inputs and of values its subgraphs capture.
  auto deps_of = [&](const Node* n) {
    std::vector<const Value*> deps;
    for (auto* in : n->inputs) if (in) deps.push_back(in);
    for (auto& name : n->captured_names())
      if (auto* v = find_value(name)) deps.push_back(v);
    return deps;
  };
  std::vector<Node*> ready;
  for (auto& n : nodes) {
    int count = 0;
    std::set<const Value*> uniq;
    for (auto* v : deps_of(n.get())) {
      if (v->producer && uniq.insert(v).second) {
        ++count;
        users[v].push_back(n.get());
      }
    }
    pending[n.get()] = count;
    if (count == 0) ready.push_back(n.get());
  }
  std::vector<std::unique_ptr<Node>> sorted;
  std::unordered_map<Node*, std::unique_ptr<Node>*> owner;
  for (auto& n : nodes) owner[n.get()] = &n;
  size_t head = 0;
  // Keep the original order where possible: process ready nodes in input order.
  std::vector<Node*> order;
  while (head < ready.size()) {
    Node* n = ready[head++];
    order.push_back(n);
    for (auto* out : n->outputs) {
      if (!out) continue;
      for (Node* u : users[out]) if (--pending[u] == 0) ready.push_back(u);
    }
  }
  if (order.size() != nodes.size()) {
    for (auto& n : nodes) if (pending[n.get()] > 0) fail("graph has a cycle or an undefined input at ", n->label());
  }
  for (Node* n : order) sorted.push_back(std::move(*owner[n]));
  nodes = std::move(sorted);
}

const Tensor* Graph::constant(const Value* v) const {
  if (!v) return nullptr;
  auto it = initializers.find(v->name);
  if (it == initializers.end()) return nullptr;
  for (auto* in : inputs)
    if (in == v) return nullptr;
  return &it->second;
}

int64_t Model::opset(const std::string& d) const {
  for (auto& o : opset_imports) {
    if (o.domain == d || (d.empty() && o.domain == "ai.onnx") || (d == "ai.onnx" && o.domain.empty())) return o.version;
  }
  return 0;
}

int64_t Model::opset_or_latest(const std::string& domain) const {
  const int64_t v = opset(domain);
  return v || !(domain.empty() || domain == "ai.onnx") ? v : kMaxOnnxOpset;
}

namespace {
void verify_graph(const Graph& g, const std::unordered_set<std::string>& outer) {
  std::unordered_set<std::string> defined = outer, inputs;
  for (auto* v : g.inputs) {
    DUET_CHECK(inputs.insert(v->name).second, "graph input '", v->name, "' is listed twice");
    defined.insert(v->name);
  }
  for (auto& [n, t] : g.initializers) defined.insert(n);
  std::unordered_set<std::string> produced;
  for (auto& node : g.nodes) {
    DUET_CHECK(!node->op_type.empty(), "node '", node->name, "' has no op_type");
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      auto* in = node->inputs[i];
      if (!in) continue;
      DUET_CHECK(defined.count(in->name), node->label(), ": input ", i, " '", in->name,
                 "' is not defined before use");
    }
    for (auto& a : node->attributes) {
      if (a.g) verify_graph(*a.g, defined);
      for (auto& sg : a.graphs) verify_graph(*sg, defined);
    }
    for (auto* out : node->outputs) {
      if (!out) continue;
      DUET_CHECK(produced.insert(out->name).second, node->label(), ": output '", out->name,
                 "' is already produced by another node");
      defined.insert(out->name);
    }
  }
  for (auto* out : g.outputs) {
    DUET_CHECK(defined.count(out->name), "graph output '", out->name, "' is not produced by any node");
  }
}
}  // namespace

void verify(const Graph& graph) {
  verify_graph(graph, {});
  // Each output is one result (one file, one name in a session's answer).
  std::unordered_set<std::string> outputs;
  for (auto* out : graph.outputs) DUET_CHECK(outputs.insert(out->name).second, "graph output '", out->name, "' is listed twice");
}

namespace {

void clone_into(const Graph& g, Graph& c, Graph* parent) {
  c.name = g.name;
  c.doc_string = g.doc_string;
  c.initializers = g.initializers;  // Tensor copies share their buffers
  c.initializer_order = g.initializer_order;
  c.opaque_value_info = g.opaque_value_info;
  c.opaque_sparse_initializers = g.opaque_sparse_initializers;
  c.parent = parent;
  for (const auto& [name, v] : g.values()) {
    Value* w = c.value(name);
    w->type = v->type;
    w->doc_string = v->doc_string;
  }
  auto map = [&](const Value* v) { return v ? c.find_value(v->name) : nullptr; };
  for (const auto& n : g.nodes) {
    std::vector<Value*> ins, outs;
    for (const Value* v : n->inputs) ins.push_back(map(v));
    for (const Value* v : n->outputs) outs.push_back(map(v));
    Node* m = c.add_node(n->op_type, std::move(ins), std::move(outs), n->name, n->domain);
    m->attributes = n->attributes;
    auto sub = [&](std::shared_ptr<Graph>& body) {
      auto copy = std::make_shared<Graph>();
      clone_into(*body, *copy, &c);
      body = std::move(copy);
    };
    for (Attribute& a : m->attributes) {
      if (a.g) sub(a.g);
      for (auto& body : a.graphs) sub(body);
    }
    m->annotations = n->annotations;
    m->doc_string = n->doc_string;
  }
  for (const Value* v : g.inputs) c.inputs.push_back(map(v));
  for (const Value* v : g.outputs) c.outputs.push_back(map(v));
}

}  // namespace

std::unique_ptr<Model> clone_sharing_initializers(const Model& model) {
  auto c = std::make_unique<Model>();
  c->ir_version = model.ir_version;
  c->opset_imports = model.opset_imports;
  c->producer_name = model.producer_name;
  c->producer_version = model.producer_version;
  c->domain = model.domain;
  c->model_version = model.model_version;
  c->doc_string = model.doc_string;
  c->metadata_props = model.metadata_props;
  c->opaque_functions = model.opaque_functions;
  c->opaque_training_info = model.opaque_training_info;
  clone_into(*model.graph, *c->graph, nullptr);
  return c;
}

}  // namespace duet::ir
