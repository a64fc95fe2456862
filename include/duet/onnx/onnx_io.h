// ONNX import and export through the ONNX protobuf library. Every data type
// (packed INT4/UINT4, FP8, strings), raw and typed fields and external data
// (location/offset/length relative to the model file) are supported.
#pragma once
#include <memory>
#include <string>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"

namespace duet::onnx_io {

// Node annotations (ir::Node::annotations, e.g. a plan's per-node precision)
// survive save/load as model metadata_props entries named kAnnotationPrefix +
// key, one "node<TAB>value" line per named node (this ONNX version's NodeProto
// has no metadata of its own). Other tools ignore them.
constexpr const char* kAnnotationPrefix = "duet.annotation.";

// Loads MODEL.onnx; throws duet::Error with one line naming the problem.
std::unique_ptr<ir::Model> load_model(const std::string& path);
// Parses a serialized ModelProto; external data resolves against base_dir.
std::unique_ptr<ir::Model> parse_model(const void* data, size_t size, const std::string& base_dir = "");

std::string serialize_model(const ir::Model& model);
// A deep copy (through the ONNX serialization, so every field survives; the
// main graph's node annotations, which ONNX has no field for, are copied over).
std::unique_ptr<ir::Model> clone_model(const ir::Model& model);
void save_model(const ir::Model& model, const std::string& path);

// A TensorProto file (.pb): the backend test suite's input_N.pb/output_N.pb.
Tensor load_tensor_pb(const std::string& path, std::string* name = nullptr);
void save_tensor_pb(const Tensor& tensor, const std::string& name, const std::string& path);
// A test-data value of the given kind: TensorProto, SequenceProto or
// OptionalProto (the suite's sequence and optional inputs/outputs).
Tensor load_value_pb(const std::string& path, const ir::ValueType& type);
Tensor parse_tensor_pb(const std::string& bytes, const std::string& base_dir = "", std::string* name = nullptr);

// What is wrong with a node's input/output counts by its ONNX schema at the
// model's opset ("" when nothing is, or when the schema library on this
// machine does not know that op at that opset: its schemas stop at the
// opset it was released with, and a later opset may have added inputs).
std::string arity_problem(const std::string& domain, const std::string& op_type, int64_t opset, size_t inputs,
                          size_t outputs);

}  // namespace duet::onnx_io
