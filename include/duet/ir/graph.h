// The graph IR: ONNX semantics (SSA values named by strings, nodes with typed
// attributes, initializers, subgraphs in attributes, opset imports), plus
// annotations that passes set on nodes (precision, placement, ...).
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::ir {

struct Graph;
struct Node;

enum class AttrType {
  Undefined = 0, Float = 1, Int = 2, String = 3, Tensor = 4, Graph = 5,
  Floats = 6, Ints = 7, Strings = 8, Tensors = 9, Graphs = 10,
  SparseTensor = 11, SparseTensors = 12, TypeProto = 13, TypeProtos = 14,
};

struct Attribute {
  std::string name;
  AttrType type = AttrType::Undefined;
  float f = 0.0f;
  int64_t i = 0;
  std::string s;  // bytes
  Tensor t;
  std::shared_ptr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Graph>> graphs;
  std::string ref_attr_name;  // inside functions: refers to the caller's attribute
  std::string doc_string;
  std::vector<std::string> opaque;  // serialized sparse tensors / type protos, kept for export
};

// Element type and (possibly symbolic) shape of a value. dtype Undefined means
// not known yet. Sequence/optional/map values are marked by kind.
struct ValueType {
  enum class Kind { Tensor, Sequence, Optional, Map, SparseTensor, Unknown };
  Kind kind = Kind::Tensor;
  DType dtype = DType::Undefined;
  Shape shape = Shape::unknown_rank();
  std::string opaque;  // serialized TypeProto for non-tensor kinds (export round trip)
  std::string str() const;
};

struct Value {
  std::string name;
  ValueType type;
  Node* producer = nullptr;  // null for graph inputs, initializers and outer-scope captures
  int producer_output = -1;
  std::string doc_string;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" is the default ONNX domain ("ai.onnx")
  std::vector<Value*> inputs;   // nullptr where an optional input is omitted
  std::vector<Value*> outputs;  // nullptr where an optional output is omitted
  std::vector<Attribute> attributes;
  std::map<std::string, std::string> annotations;  // set by passes: "precision", "placement", ...
  std::string doc_string;

  const Attribute* attr(const std::string& n) const;
  bool has_attr(const std::string& n) const { return attr(n) != nullptr; }
  int64_t attr_int(const std::string& n, int64_t def) const;
  float attr_float(const std::string& n, float def) const;
  std::string attr_string(const std::string& n, const std::string& def) const;
  std::vector<int64_t> attr_ints(const std::string& n, std::vector<int64_t> def = {}) const;
  std::vector<float> attr_floats(const std::string& n, std::vector<float> def = {}) const;
  std::vector<std::string> attr_strings(const std::string& n) const;
  // The bodies in its graph attributes (If branches, Loop/Scan bodies), and the
  // enclosing-scope names they read (captures): what the node depends on
  // beyond its inputs.
  std::vector<const Graph*> subgraphs() const;
  std::vector<std::string> captured_names() const;
  const Graph* attr_graph(const std::string& n) const;

  size_t num_inputs() const { return inputs.size(); }
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  std::string label() const;  // "Conv 'conv1'" for messages
};

struct OpsetImport {
  std::string domain;
  int64_t version = 0;
};

struct Graph {
  std::string name;
  std::string doc_string;
  std::vector<std::unique_ptr<Node>> nodes;  // in topological order after import
  std::vector<Value*> inputs;
  std::vector<Value*> outputs;
  std::map<std::string, Tensor> initializers;
  std::vector<std::string> initializer_order;  // import order, kept for export
  std::vector<std::string> opaque_value_info;  // serialized ValueInfoProtos for intermediates (export)
  std::vector<std::string> opaque_sparse_initializers;
  Graph* parent = nullptr;  // enclosing graph for subgraphs

  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // The value with this name, created (with unknown type) when absent.
  Value* value(const std::string& name);
  Value* find_value(const std::string& name) const;
  Node* add_node(std::string op_type, std::vector<Value*> inputs, std::vector<Value*> outputs,
                 std::string name = "", std::string domain = "");
  const std::unordered_map<std::string, std::unique_ptr<Value>>& values() const { return values_; }
  bool is_initializer(const Value* v) const { return v && initializers.count(v->name); }
  // v's value when it is a constant: an initializer that no graph input
  // overrides (ONNX lets an input of the same name replace it); else nullptr.
  const Tensor* constant(const Value* v) const;
  // Names used but not defined here: captured from an enclosing graph.
  std::vector<std::string> outer_scope_names() const;
  // Re-sorts nodes topologically; throws naming a node on a cycle.
  void topological_sort();

 private:
  std::unordered_map<std::string, std::unique_ptr<Value>> values_;
};

// The newest ONNX opset Duet implements (every op of the default domain up to it).
constexpr int64_t kMaxOnnxOpset = 28;

struct Model {
  int64_t ir_version = 8;
  std::vector<OpsetImport> opset_imports;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata_props;
  std::vector<std::string> opaque_functions;      // serialized FunctionProtos (export round trip)
  std::vector<std::string> opaque_training_info;  // serialized TrainingInfoProtos
  std::unique_ptr<Graph> graph = std::make_unique<Graph>();

  int64_t opset(const std::string& domain) const;  // 0 when not imported
  // The version the model's nodes of `domain` follow: the imported one, or for
  // the default domain the latest Duet implements when the model imports none.
  int64_t opset_or_latest(const std::string& domain) const;
};

// Checks SSA form, definitions before uses, graph outputs defined and subgraphs
// recursively. Throws duet::Error naming the first inconsistent node.
void verify(const Graph& graph);

// A deep copy of the model's structure (nodes, values, attributes, subgraphs,
// annotations) whose initializer tensors share their buffers with the
// original: cheap for large models, for copies that rewrite nodes but never
// write into initializer data (emulating a plan, re-running a session).
// onnx_io::clone_model is the independent copy.
std::unique_ptr<Model> clone_sharing_initializers(const Model& model);

}  // namespace duet::ir
