// GraphBuilder: writes whole small models in C++ (the training builders MLP /
// CNN / transformer encoder, and tests) on top of ir/edit.h: typed graph
// inputs, initializers with seeded He/Glorot-style values, nodes with
// generated names, graph outputs, common layers.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "duet/ir/edit.h"
#include "duet/ir/graph.h"

namespace duet::train {

using ir::edit::attr_float;
using ir::edit::attr_int;
using ir::edit::attr_ints;
using ir::edit::attr_string;

class GraphBuilder {
 public:
  explicit GraphBuilder(int64_t opset = 17, uint32_t seed = 0);

  // A graph input; dims of -1 become named symbols ("N" for the first).
  ir::Value* input(const std::string& name, DType dtype, const Dims& dims);
  ir::Value* initializer(const std::string& name, Tensor value);
  // Seeded Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) float32 values: PyTorch's
  // default Linear/Conv initialization (kaiming_uniform with a = sqrt(5)).
  ir::Value* weight(const std::string& name, const Dims& dims, int64_t fan_in);
  ir::Value* node(const std::string& op, std::vector<ir::Value*> inputs, std::vector<ir::Attribute> attrs = {},
                  const std::string& domain = "");
  std::vector<ir::Value*> nodes(const std::string& op, std::vector<ir::Value*> inputs, size_t outputs,
                                std::vector<ir::Attribute> attrs = {}, const std::string& domain = "");
  void output(ir::Value* v, const std::string& name = "");

  // Layers (PyTorch layouts and default initialization).
  ir::Value* conv2d(ir::Value* x, int64_t cin, int64_t cout, int64_t k, int64_t pad = 0, int64_t stride = 1);
  ir::Value* linear(ir::Value* x, int64_t in, int64_t out);  // Gemm with transB = 1
  ir::Value* max_pool2d(ir::Value* x, int64_t k);
  // BatchNormalization with scale 1, bias 0, running mean 0 and variance 1 (PyTorch's start).
  ir::Value* batch_norm(ir::Value* x, int64_t channels);

  ir::Model& model() { return *model_; }
  std::unique_ptr<ir::Model> finish();  // verified

 private:
  std::unique_ptr<ir::Model> model_;
  std::mt19937 rng_;
  int count_ = 0;
  std::string fresh(const std::string& base);
};

}  // namespace duet::train
