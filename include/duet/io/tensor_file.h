// Tensor files: NumPy .npy (format 1.0-3.0, little-endian, C order) and ONNX
// TensorProto .pb, chosen by extension.
#pragma once
#include <string>

#include "duet/core/tensor.h"

namespace duet::io {

Tensor load_npy(const std::string& path);
void save_npy(const Tensor& tensor, const std::string& path);

// .npy → NumPy, anything else → TensorProto.
Tensor load_tensor_file(const std::string& path);
void save_tensor_file(const Tensor& tensor, const std::string& name, const std::string& path);

}  // namespace duet::io
