#include <onnx/onnx_pb.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "duet/io/file.h"
#include "duet/onnx/onnx_io.h"
#include "proto_tensor.h"

namespace duet::onnx_io {

void tensor_to_proto(const Tensor& t, const std::string& name, onnx::TensorProto& p) {
  p.set_name(name);
  p.set_data_type(static_cast<int>(t.dtype()));
  for (auto d : t.dims()) p.add_dims(d);
  if (t.dtype() == DType::String) {
    for (auto& s : t.strings()) p.add_string_data(s);
    return;
  }
  // raw_data keeps every type bit-exact, packed sub-byte types included.
  p.set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
}

namespace {

void type_to_proto(const ir::ValueType& t, onnx::TypeProto& tp) {
  if (t.kind != ir::ValueType::Kind::Tensor) {
    if (!t.opaque.empty()) tp.ParseFromString(t.opaque);
    return;
  }
  auto* tt = tp.mutable_tensor_type();
  tt->set_elem_type(static_cast<int>(t.dtype));
  if (t.shape.rank_known) {
    auto* s = tt->mutable_shape();
    for (auto& d : t.shape.dims) {
      auto* dp = s->add_dim();
      if (d.known()) dp->set_dim_value(d.value);
      else if (!d.symbol.empty()) dp->set_dim_param(d.symbol);
    }
  }
}

void value_info(const ir::Value& v, onnx::ValueInfoProto& vi) {
  vi.set_name(v.name);
  if (!v.doc_string.empty()) vi.set_doc_string(v.doc_string);
  if (v.type.kind != ir::ValueType::Kind::Tensor || v.type.dtype != DType::Undefined) type_to_proto(v.type, *vi.mutable_type());
}

void graph_to_proto(const ir::Graph& g, onnx::GraphProto& gp);

void attribute_to_proto(const ir::Attribute& a, onnx::AttributeProto& ap) {
  ap.set_name(a.name);
  if (!a.ref_attr_name.empty()) ap.set_ref_attr_name(a.ref_attr_name);
  if (!a.doc_string.empty()) ap.set_doc_string(a.doc_string);
  ap.set_type(static_cast<onnx::AttributeProto::AttributeType>(a.type));
  switch (a.type) {
    case ir::AttrType::Float: ap.set_f(a.f); break;
    case ir::AttrType::Int: ap.set_i(a.i); break;
    case ir::AttrType::String: ap.set_s(a.s); break;
    case ir::AttrType::Tensor: tensor_to_proto(a.t, a.t.defined() ? "" : "", *ap.mutable_t()); break;
    case ir::AttrType::Graph: graph_to_proto(*a.g, *ap.mutable_g()); break;
    case ir::AttrType::Floats: for (auto f : a.floats) ap.add_floats(f); break;
    case ir::AttrType::Ints: for (auto i : a.ints) ap.add_ints(i); break;
    case ir::AttrType::Strings: for (auto& s : a.strings) ap.add_strings(s); break;
    case ir::AttrType::Tensors: for (auto& t : a.tensors) tensor_to_proto(t, "", *ap.add_tensors()); break;
    case ir::AttrType::Graphs: for (auto& g : a.graphs) graph_to_proto(*g, *ap.add_graphs()); break;
    case ir::AttrType::SparseTensor: if (!a.opaque.empty()) ap.mutable_sparse_tensor()->ParseFromString(a.opaque[0]); break;
    case ir::AttrType::SparseTensors: for (auto& s : a.opaque) ap.add_sparse_tensors()->ParseFromString(s); break;
    case ir::AttrType::TypeProto: if (!a.opaque.empty()) ap.mutable_tp()->ParseFromString(a.opaque[0]); break;
    case ir::AttrType::TypeProtos: for (auto& s : a.opaque) ap.add_type_protos()->ParseFromString(s); break;
    default: break;
  }
}

void graph_to_proto(const ir::Graph& g, onnx::GraphProto& gp) {
  gp.set_name(g.name);
  if (!g.doc_string.empty()) gp.set_doc_string(g.doc_string);
  // Initializers: import order first, then any added by passes.
  std::vector<std::string> order;
  for (auto& n : g.initializer_order) if (g.initializers.count(n)) order.push_back(n);
  for (auto& [n, t] : g.initializers) {
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  }
  for (auto& n : order) tensor_to_proto(g.initializers.at(n), n, *gp.add_initializer());
  for (auto& s : g.opaque_sparse_initializers) gp.add_sparse_initializer()->ParseFromString(s);
  for (auto* v : g.inputs) value_info(*v, *gp.add_input());
  for (auto* v : g.outputs) value_info(*v, *gp.add_output());
  for (auto& node : g.nodes) {
    auto* np = gp.add_node();
    np->set_op_type(node->op_type);
    if (!node->name.empty()) np->set_name(node->name);
    if (!node->domain.empty()) np->set_domain(node->domain);
    if (!node->doc_string.empty()) np->set_doc_string(node->doc_string);
    for (auto* in : node->inputs) np->add_input(in ? in->name : "");
    for (auto* out : node->outputs) np->add_output(out ? out->name : "");
    for (auto& a : node->attributes) attribute_to_proto(a, *np->add_attribute());
  }
  // Intermediate value types known to the IR (imported value_info or inferred).
  for (auto& node : g.nodes) {
    for (auto* out : node->outputs) {
      if (!out || out->type.kind != ir::ValueType::Kind::Tensor || out->type.dtype == DType::Undefined) continue;
      bool is_output = false;
      for (auto* o : g.outputs) is_output |= o == out;
      if (!is_output) value_info(*out, *gp.add_value_info());
    }
  }
}

}  // namespace

std::string serialize_model(const ir::Model& m) {
  onnx::ModelProto mp;
  mp.set_ir_version(m.ir_version);
  for (auto& o : m.opset_imports) {
    auto* op = mp.add_opset_import();
    op->set_domain(o.domain);
    op->set_version(o.version);
  }
  if (!m.producer_name.empty()) mp.set_producer_name(m.producer_name);
  if (!m.producer_version.empty()) mp.set_producer_version(m.producer_version);
  if (!m.domain.empty()) mp.set_domain(m.domain);
  if (m.model_version) mp.set_model_version(m.model_version);
  if (!m.doc_string.empty()) mp.set_doc_string(m.doc_string);
  for (auto& [k, v] : m.metadata_props) {
    if (k.rfind(kAnnotationPrefix, 0) == 0) continue;  // rewritten from the nodes below
    auto* e = mp.add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  }
  // Node annotations (the IR's per-node facts, e.g. a plan's precision): this
  // ONNX version's NodeProto has no metadata_props, so the model's carries them,
  // one entry per annotation key, one "node<TAB>value" line per named node.
  std::map<std::string, std::string> annotations;
  for (auto& node : m.graph->nodes) {
    if (node->name.empty() || node->name.find_first_of("\t\n") != std::string::npos) continue;
    for (auto& [key, value] : node->annotations)
      if (value.find_first_of("\t\n") == std::string::npos) annotations[key] += node->name + "\t" + value + "\n";
  }
  for (auto& [key, lines] : annotations) {
    auto* e = mp.add_metadata_props();
    e->set_key(kAnnotationPrefix + key);
    e->set_value(lines);
  }
  for (auto& f : m.opaque_functions) mp.add_functions()->ParseFromString(f);
  for (auto& t : m.opaque_training_info) mp.add_training_info()->ParseFromString(t);
  graph_to_proto(*m.graph, *mp.mutable_graph());
  return mp.SerializeAsString();
}

void save_model(const ir::Model& m, const std::string& path) {
  io::write_file_atomically(path, serialize_model(m), "model");
}

void save_tensor_pb(const Tensor& t, const std::string& name, const std::string& path) {
  onnx::TensorProto p;
  tensor_to_proto(t, name, p);
  io::write_file_atomically(path, p.SerializeAsString(), "tensor");
}

std::unique_ptr<ir::Model> clone_model(const ir::Model& model) {
  const std::string bytes = serialize_model(model);
  std::unique_ptr<ir::Model> copy = parse_model(bytes.data(), bytes.size());
  // ONNX has no field for pass annotations (precision...): carry them over
  // node by node (serialization keeps the main graph's node order).
  const auto& from = model.graph->nodes;
  auto& to = copy->graph->nodes;
  if (from.size() == to.size())
    for (size_t i = 0; i < from.size(); ++i) to[i]->annotations = from[i]->annotations;
  return copy;
}

}  // namespace duet::onnx_io
