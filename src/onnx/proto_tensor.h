// Conversions between duet::Tensor and onnx::TensorProto, shared by import and export.
#pragma once
#include <onnx/onnx_pb.h>

#include <string>

#include "duet/core/tensor.h"

namespace duet::onnx_io {

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir);
void tensor_to_proto(const Tensor& tensor, const std::string& name, onnx::TensorProto& proto);
std::string read_file(const std::string& path);

}  // namespace duet::onnx_io
