// Sample folders: calibration and evaluation data for a model, read one sample
// at a time (memory does not grow with the number of samples).
//
// A folder holds one of three layouts, recognized in this order:
//   (a) ONNX backend-test data: DIR/test_data_set_*/input_K.pb, or DIR itself
//       holding input_K.pb. Each test_data_set folder is one sample; input_K.pb
//       feeds the K-th formal input, unless every file's TensorProto name is a
//       distinct formal input name, in which case names decide.
//   (b) .npy / .pb tensor files, one file per sample, for a one-input model.
//   (c) .png / .jpg / .jpeg images, one per sample, for a one-input model,
//       turned into tensors by a Preprocess (io/preprocess.h).
// Samples are in natural order of their names (test_data_set_2 before
// test_data_set_10). Other files (text.txt, output_0.pb in a test_data_set)
// are ignored. Every loaded tensor is checked against the model input (dtype,
// rank, static dims) and, for floating types, for NaN and Inf.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "duet/core/shape.h"
#include "duet/core/tensor.h"
#include "duet/io/preprocess.h"

namespace duet::ir {
struct Graph;
}

namespace duet::io {

// A graph input that data must be supplied for (initializers excluded).
struct ModelInput {
  std::string name;
  DType dtype = DType::Undefined;       // Undefined: any
  Shape shape = Shape::unknown_rank();  // symbolic dims accept any size
};
// The graph's inputs minus initializers, in order. Sequence, optional and map
// inputs throw duet::Unsupported: samples are tensors.
std::vector<ModelInput> formal_inputs(const ir::Graph& graph);

class SampleFolder {
 public:
  enum class Layout { TestDataSets, TensorFiles, Images };

  // Lists the samples (directory listings only; no sample is read). Throws
  // duet::Error when dir is missing or not a directory, holds no samples, has
  // a test_data_set without an input_K.pb for some input, or has tensor files
  // or images but the model has more than one input. preprocess applies to
  // images only (giving it for tensor data is an error); images without one
  // use the default spec, Preprocess::parse("").
  SampleFolder(const std::string& dir, std::vector<ModelInput> inputs,
               std::optional<Preprocess> preprocess = std::nullopt);
  SampleFolder(const std::string& dir, const ir::Graph& graph, std::optional<Preprocess> preprocess = std::nullopt);

  Layout layout() const { return layout_; }
  size_t size() const { return samples_.size(); }
  // The sample's test_data_set folder or file.
  const std::string& sample_path(size_t i) const { return samples_.at(i); }
  const std::vector<ModelInput>& inputs() const { return inputs_; }
  // "12 images in DIR (preprocess: resize=...)", for logs and reports.
  std::string describe() const;

  // Reads sample i: input name → tensor. Throws duet::Error naming the file on
  // a dtype or shape that does not fit the model input, NaN or Inf, a missing
  // input or an unreadable file.
  std::map<std::string, Tensor> load(size_t i) const;

 private:
  std::map<std::string, Tensor> load_test_data_set(const std::string& folder) const;

  std::string dir_;
  std::vector<ModelInput> inputs_;
  Preprocess preprocess_;
  Layout layout_ = Layout::TestDataSets;
  std::vector<std::string> samples_;
};

}  // namespace duet::io
