#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>
#include <onnx/onnx-data.pb.h>

#include <charconv>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "duet/io/file.h"
#include "duet/onnx/onnx_io.h"
#include "proto_tensor.h"

namespace duet::onnx_io {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) { return io::read_file(path); }

namespace {

int64_t checked_numel(const google::protobuf::RepeatedField<int64_t>& dims, const std::string& what) {
  int64_t n = 1;
  for (auto d : dims) {
    DUET_CHECK(d >= 0, what, ": negative dimension ", d);
    DUET_CHECK(d == 0 || n <= (int64_t{1} << 40) / std::max<int64_t>(d, 1), what, ": tensor is too large");
    n *= d;
  }
  return n;
}

int64_t parse_external_int(const std::string& text, const char* key, const std::string& what) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  DUET_CHECK(ec == std::errc() && end == text.data() + text.size() && v >= 0, what, ": external data ", key, " '", text,
             "' is not a non-negative integer");
  return v;
}

std::string read_external(const onnx::TensorProto& p, const std::string& base_dir, const std::string& what) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (auto& kv : p.external_data()) {
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") offset = parse_external_int(kv.value(), "offset", what);
    else if (kv.key() == "length") length = parse_external_int(kv.value(), "length", what);
  }
  DUET_CHECK(!location.empty(), what, ": external data without a location");
  const fs::path loc(location);
  bool climbs = false;
  for (auto& part : loc) climbs |= part == "..";
  DUET_CHECK(!loc.is_absolute() && !climbs, what, ": external data location '", location,
             "' must be relative to the model and stay beside it");
  const fs::path dir = base_dir.empty() ? "." : base_dir, full = dir / loc;
  std::error_code ec;
  DUET_CHECK(fs::exists(full, ec), what, ": external data file not found: ", full.string());
  // Through symlinks too: the file must lie in the model's folder.
  const fs::path real = fs::canonical(full, ec), home = fs::canonical(dir, ec);
  const auto rel = real.lexically_relative(home);
  DUET_CHECK(!ec && !rel.empty() && *rel.begin() != "..", what, ": external data '", location, "' leads out of the model's folder (to ",
             real.string(), ")");
  const io::InputFile in(full.string(), "external data file");
  const int64_t file_size = in.size();
  DUET_CHECK(offset >= 0 && offset <= file_size, what, ": external data offset ", offset, " is past the end of ", full.string());
  if (length < 0) length = file_size - offset;
  DUET_CHECK(length <= file_size - offset, what, ": external data (offset ", offset, ", length ", length,
             ") runs past the end of ", full.string());
  std::string bytes(static_cast<size_t>(length), '\0');
  in.read_at(offset, bytes.data(), length);
  return bytes;
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& p, const std::string& base_dir) {
  const std::string what = "tensor '" + p.name() + "'";
  DUET_CHECK(dtype_is_valid(p.data_type()), what, ": unknown data type code ", p.data_type());
  const DType dt = static_cast<DType>(p.data_type());
  const int64_t n = checked_numel(p.dims(), what);
  Dims dims(p.dims().begin(), p.dims().end());
  const size_t nbytes = dtype_storage_bytes(dt, n);
  // Every branch checks that the data is there before the tensor is allocated: a header declaring a huge
  // shape over a few bytes of data is a malformed model, not a reason to reserve gigabytes.
  if (dt == DType::String) {
    DUET_CHECK(p.string_data_size() == n, what, ": has ", p.string_data_size(), " strings, shape needs ", n);
    Tensor t(dt, dims);
    for (int64_t i = 0; i < n; ++i) t.strings()[i] = p.string_data(static_cast<int>(i));
    return t;
  }
  const bool external = p.data_location() == onnx::TensorProto::EXTERNAL;
  if (external || p.has_raw_data()) {
    const std::string bytes = external ? read_external(p, base_dir, what) : p.raw_data();
    DUET_CHECK(bytes.size() == nbytes, what, ": raw data has ", bytes.size(), " bytes, ", dtype_name(dt), "[",
               dims_str(dims), "] needs ", nbytes);
    Tensor t(dt, dims);
    if (nbytes) std::memcpy(t.raw(), bytes.data(), nbytes);
    return t;
  }
  auto count_check = [&](int64_t have, int64_t want) {
    DUET_CHECK(have == want, what, ": has ", have, " values, ", dtype_name(dt), "[", dims_str(dims), "] needs ", want);
  };
  const int bits = dtype_bits(dt);
  switch (dt) {
    case DType::Float32: case DType::Complex64: count_check(p.float_data_size(), dt == DType::Float32 ? n : 2 * n); break;
    case DType::Float64: case DType::Complex128: count_check(p.double_data_size(), dt == DType::Float64 ? n : 2 * n); break;
    case DType::Int64: count_check(p.int64_data_size(), n); break;
    case DType::UInt32: case DType::UInt64: count_check(p.uint64_data_size(), n); break;
    // int32_data holds one element (or, for sub-byte types, one packed byte) per entry.
    default: count_check(p.int32_data_size(), bits < 8 ? static_cast<int64_t>(nbytes) : n);
  }
  Tensor t(dt, dims);
  if (nbytes == 0) return t;  // empty repeated fields have a null data()
  switch (dt) {
    case DType::Float32: case DType::Complex64: std::memcpy(t.raw(), p.float_data().data(), nbytes); break;
    case DType::Float64: case DType::Complex128: std::memcpy(t.raw(), p.double_data().data(), nbytes); break;
    case DType::Int64: std::memcpy(t.raw(), p.int64_data().data(), nbytes); break;
    case DType::UInt64: std::memcpy(t.raw(), p.uint64_data().data(), nbytes); break;
    case DType::Int32: std::memcpy(t.raw(), p.int32_data().data(), nbytes); break;
    case DType::UInt32:
      for (int64_t i = 0; i < n; ++i) t.data<uint32_t>()[i] = static_cast<uint32_t>(p.uint64_data(static_cast<int>(i)));
      break;
    default: {
      const int64_t entries = p.int32_data_size();
      for (int64_t i = 0; i < entries; ++i) {
        const uint32_t v = static_cast<uint32_t>(p.int32_data(static_cast<int>(i)));
        uint8_t* dst = t.data<uint8_t>() + i * std::max(bits / 8, 1);
        if (bits == 16) { const uint16_t h = static_cast<uint16_t>(v); std::memcpy(dst, &h, 2); }
        else *dst = static_cast<uint8_t>(v);
      }
    }
  }
  return t;
}

namespace {

ir::ValueType type_from_proto(const onnx::TypeProto& tp) {
  ir::ValueType t;
  if (tp.has_tensor_type()) {
    const auto& tt = tp.tensor_type();
    t.kind = ir::ValueType::Kind::Tensor;
    t.dtype = dtype_is_valid(tt.elem_type()) ? static_cast<DType>(tt.elem_type()) : DType::Undefined;
    if (tt.has_shape()) {
      Shape s;
      for (auto& d : tt.shape().dim()) {
        if (d.has_dim_value()) s.dims.emplace_back(d.dim_value());
        else if (d.has_dim_param()) s.dims.push_back(Dim::named(d.dim_param()));
        else s.dims.emplace_back();
      }
      t.shape = s;
    }
    return t;
  }
  if (tp.has_sequence_type()) t.kind = ir::ValueType::Kind::Sequence;
  else if (tp.has_optional_type()) t.kind = ir::ValueType::Kind::Optional;
  else if (tp.has_map_type()) t.kind = ir::ValueType::Kind::Map;
  else if (tp.has_sparse_tensor_type()) t.kind = ir::ValueType::Kind::SparseTensor;
  else t.kind = ir::ValueType::Kind::Unknown;
  t.opaque = tp.SerializeAsString();
  return t;
}

void graph_from_proto(const onnx::GraphProto& gp, ir::Graph& g, const std::string& base_dir);

ir::Attribute attribute_from_proto(const onnx::AttributeProto& ap, const std::string& base_dir, ir::Graph& owner) {
  ir::Attribute a;
  a.name = ap.name();
  a.ref_attr_name = ap.ref_attr_name();
  a.doc_string = ap.doc_string();
  int type = ap.type();
  if (type == 0) {  // IR < 2 models leave the type out: infer it from the field present
    if (ap.has_f()) type = onnx::AttributeProto::FLOAT;
    else if (ap.has_i()) type = onnx::AttributeProto::INT;
    else if (ap.has_s()) type = onnx::AttributeProto::STRING;
    else if (ap.has_t()) type = onnx::AttributeProto::TENSOR;
    else if (ap.has_g()) type = onnx::AttributeProto::GRAPH;
    else if (ap.floats_size()) type = onnx::AttributeProto::FLOATS;
    else if (ap.ints_size()) type = onnx::AttributeProto::INTS;
    else if (ap.strings_size()) type = onnx::AttributeProto::STRINGS;
    else if (ap.tensors_size()) type = onnx::AttributeProto::TENSORS;
    else if (ap.graphs_size()) type = onnx::AttributeProto::GRAPHS;
  }
  a.type = static_cast<ir::AttrType>(type);
  switch (a.type) {
    case ir::AttrType::Float: a.f = ap.f(); break;
    case ir::AttrType::Int: a.i = ap.i(); break;
    case ir::AttrType::String: a.s = ap.s(); break;
    case ir::AttrType::Tensor: a.t = tensor_from_proto(ap.t(), base_dir); break;
    case ir::AttrType::Graph:
      a.g = std::make_shared<ir::Graph>();
      a.g->parent = &owner;
      graph_from_proto(ap.g(), *a.g, base_dir);
      break;
    case ir::AttrType::Floats: a.floats.assign(ap.floats().begin(), ap.floats().end()); break;
    case ir::AttrType::Ints: a.ints.assign(ap.ints().begin(), ap.ints().end()); break;
    case ir::AttrType::Strings: a.strings.assign(ap.strings().begin(), ap.strings().end()); break;
    case ir::AttrType::Tensors:
      for (auto& t : ap.tensors()) a.tensors.push_back(tensor_from_proto(t, base_dir));
      break;
    case ir::AttrType::Graphs:
      for (auto& gp : ap.graphs()) {
        auto g = std::make_shared<ir::Graph>();
        g->parent = &owner;
        graph_from_proto(gp, *g, base_dir);
        a.graphs.push_back(g);
      }
      break;
    case ir::AttrType::SparseTensor: a.opaque.push_back(ap.sparse_tensor().SerializeAsString()); break;
    case ir::AttrType::SparseTensors:
      for (auto& s : ap.sparse_tensors()) a.opaque.push_back(s.SerializeAsString());
      break;
    case ir::AttrType::TypeProto: a.opaque.push_back(ap.tp().SerializeAsString()); break;
    case ir::AttrType::TypeProtos:
      for (auto& s : ap.type_protos()) a.opaque.push_back(s.SerializeAsString());
      break;
    default: fail("attribute '", ap.name(), "' has unknown type ", type);
  }
  return a;
}

void graph_from_proto(const onnx::GraphProto& gp, ir::Graph& g, const std::string& base_dir) {
  g.name = gp.name();
  g.doc_string = gp.doc_string();
  for (auto& init : gp.initializer()) {
    DUET_CHECK(!init.name().empty(), "graph '", gp.name(), "': an initializer has no name");
    g.initializers[init.name()] = tensor_from_proto(init, base_dir);
    g.initializer_order.push_back(init.name());
    ir::Value* v = g.value(init.name());
    v->type.kind = ir::ValueType::Kind::Tensor;
    v->type.dtype = g.initializers[init.name()].dtype();
    v->type.shape = Shape::from(g.initializers[init.name()].dims());
  }
  for (auto& s : gp.sparse_initializer()) g.opaque_sparse_initializers.push_back(s.SerializeAsString());
  for (auto& vi : gp.input()) {
    DUET_CHECK(!vi.name().empty(), "graph '", gp.name(), "': an input has no name");
    ir::Value* v = g.value(vi.name());
    if (vi.has_type()) v->type = type_from_proto(vi.type());
    v->doc_string = vi.doc_string();
    g.inputs.push_back(v);
  }
  for (auto& vi : gp.value_info()) {
    ir::Value* v = g.value(vi.name());
    if (vi.has_type()) v->type = type_from_proto(vi.type());
    g.opaque_value_info.push_back(vi.SerializeAsString());
  }
  for (auto& np : gp.node()) {
    std::vector<ir::Value*> ins, outs;
    for (auto& n : np.input()) ins.push_back(n.empty() ? nullptr : g.value(n));
    for (auto& n : np.output()) outs.push_back(n.empty() ? nullptr : g.value(n));
    for (auto* o : outs) {
      DUET_CHECK(!o || !o->producer, np.op_type(), " '", np.name(), "': output '", o->name,
                 "' is already produced by another node");
    }
    ir::Node* node = g.add_node(np.op_type(), ins, outs, np.name(), np.domain());
    node->doc_string = np.doc_string();
    for (auto& ap : np.attribute()) node->attributes.push_back(attribute_from_proto(ap, base_dir, g));
  }
  for (auto& vi : gp.output()) {
    ir::Value* v = g.value(vi.name());
    if (vi.has_type()) {
      ir::ValueType declared = type_from_proto(vi.type());
      if (v->type.dtype == DType::Undefined || declared.shape.rank_known) v->type = declared;
    }
    g.outputs.push_back(v);
  }
}

}  // namespace

std::unique_ptr<ir::Model> parse_model(const void* data, size_t size, const std::string& base_dir) {
  onnx::ModelProto mp;
  DUET_CHECK(size < size_t(INT32_MAX), "model is ", size, " bytes: protobuf reads at most 2 GiB; models that large keep their "
             "weights as external data (onnx.save_model(..., save_as_external_data=True))");
  google::protobuf::io::CodedInputStream stream(static_cast<const uint8_t*>(data), static_cast<int>(size));
  stream.SetRecursionLimit(64);
  DUET_CHECK(size > 0, "model is empty (0 bytes)");
  DUET_CHECK(mp.ParseFromCodedStream(&stream) && stream.ConsumedEntireMessage(),
             "not a valid ONNX model: the protobuf could not be parsed (truncated or corrupt file?)");
  DUET_CHECK(mp.has_graph(), "not a valid ONNX model: it has no graph");
  auto m = std::make_unique<ir::Model>();
  m->ir_version = mp.ir_version();
  for (auto& o : mp.opset_import()) m->opset_imports.push_back({o.domain(), o.version()});
  if (m->opset_imports.empty()) m->opset_imports.push_back({"", 1});
  m->producer_name = mp.producer_name();
  m->producer_version = mp.producer_version();
  m->domain = mp.domain();
  m->model_version = mp.model_version();
  m->doc_string = mp.doc_string();
  std::vector<std::pair<std::string, std::string>> annotations;  // key -> "node<TAB>value" lines (export.cc)
  for (auto& kv : mp.metadata_props()) {
    if (kv.key().rfind(kAnnotationPrefix, 0) == 0) annotations.emplace_back(kv.key().substr(std::strlen(kAnnotationPrefix)), kv.value());
    else m->metadata_props.emplace_back(kv.key(), kv.value());
  }
  for (auto& f : mp.functions()) m->opaque_functions.push_back(f.SerializeAsString());
  for (auto& t : mp.training_info()) m->opaque_training_info.push_back(t.SerializeAsString());
  graph_from_proto(mp.graph(), *m->graph, base_dir);
  if (!annotations.empty()) {
    std::map<std::string, ir::Node*> by_name;
    for (auto& n : m->graph->nodes)
      if (!n->name.empty()) by_name[n->name] = n.get();
    for (const auto& [key, lines] : annotations) {
      std::istringstream in(lines);
      std::string line;
      while (std::getline(in, line)) {
        const size_t tab = line.find('\t');
        if (tab == std::string::npos) continue;
        if (auto it = by_name.find(line.substr(0, tab)); it != by_name.end())
          it->second->annotations[key] = line.substr(tab + 1);
      }
    }
  }
  return m;
}

std::unique_ptr<ir::Model> load_model(const std::string& path) {
  const std::string bytes = read_file(path);
  try {
    return parse_model(bytes.data(), bytes.size(), fs::path(path).parent_path().string());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

Tensor parse_tensor_pb(const std::string& bytes, const std::string& base_dir, std::string* name) {
  onnx::TensorProto p;
  DUET_CHECK(p.ParseFromString(bytes), "not a valid ONNX TensorProto (protobuf parse failed)");
  if (name) *name = p.name();
  return tensor_from_proto(p, base_dir);
}

Tensor load_tensor_pb(const std::string& path, std::string* name) {
  const std::string bytes = read_file(path);
  try {
    return parse_tensor_pb(bytes, fs::path(path).parent_path().string(), name);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

}  // namespace duet::onnx_io

namespace duet::onnx_io {

namespace {
Tensor sequence_from_proto(const onnx::SequenceProto& s, const std::string& base_dir);

Tensor optional_from_proto(const onnx::OptionalProto& o, const std::string& base_dir) {
  if (o.has_tensor_value()) return tensor_from_proto(o.tensor_value(), base_dir);
  if (o.has_sequence_value()) return sequence_from_proto(o.sequence_value(), base_dir);
  if (o.has_optional_value()) return optional_from_proto(o.optional_value(), base_dir);
  DUET_CHECK(!o.has_map_value() && !o.has_sparse_tensor_value(), "optional holding a map or sparse tensor is not supported");
  return Tensor::make_none();
}

Tensor sequence_from_proto(const onnx::SequenceProto& s, const std::string& base_dir) {
  DUET_CHECK(s.map_values_size() == 0 && s.sparse_tensor_values_size() == 0 && s.optional_values_size() == 0,
             "sequences of maps, sparse tensors or optionals are not supported");
  std::vector<Tensor> items;
  for (auto& t : s.tensor_values()) items.push_back(tensor_from_proto(t, base_dir));
  for (auto& q : s.sequence_values()) items.push_back(sequence_from_proto(q, base_dir));
  DType dt = items.empty() ? static_cast<DType>(dtype_is_valid(s.elem_type()) ? s.elem_type() : 1) : items[0].dtype();
  return Tensor::make_sequence(dt, items);
}
}  // namespace

Tensor load_value_pb(const std::string& path, const ir::ValueType& type) {
  const std::string dir = fs::path(path).parent_path().string();
  if (type.kind == ir::ValueType::Kind::Tensor || type.kind == ir::ValueType::Kind::Unknown) return load_tensor_pb(path);
  const std::string bytes = read_file(path);
  if (type.kind == ir::ValueType::Kind::Sequence) {
    onnx::SequenceProto s;
    DUET_CHECK(s.ParseFromString(bytes), path, ": not a valid SequenceProto");
    return sequence_from_proto(s, dir);
  }
  if (type.kind == ir::ValueType::Kind::Optional) {
    onnx::OptionalProto o;
    DUET_CHECK(o.ParseFromString(bytes), path, ": not a valid OptionalProto");
    return optional_from_proto(o, dir);
  }
  unsupported(path, ": values of type ", type.str(), " are not supported");
}

}  // namespace duet::onnx_io
