// Calibration/evaluation samples for the CLI: ONNX test-data folders
// (DIR/test_data_set_*/input_K.pb, input K -> the K-th formal input).
#include <algorithm>
#include <filesystem>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/quant/calibrate.h"

namespace duet::cli {

quant::SampleSource open_samples(const std::string& dir, const ir::Graph& graph, const std::string& preprocess) {
  namespace fs = std::filesystem;
  DUET_CHECK(fs::is_directory(dir), dir, ": not a directory");
  std::vector<std::string> inputs;
  for (auto* v : graph.inputs)
    if (!graph.initializers.count(v->name)) inputs.push_back(v->name);
  std::vector<std::string> sets;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path().string());
  std::sort(sets.begin(), sets.end());
  DUET_CHECK(!sets.empty(), "no samples in ", dir, ": expected test_data_set_*/input_*.pb");
  quant::SampleSource s;
  s.count = sets.size();
  s.name = [sets](size_t i) { return sets[i]; };
  s.load = [sets, inputs](size_t i) {
    std::map<std::string, Tensor> feeds;
    for (size_t k = 0; k < inputs.size(); ++k)
      feeds[inputs[k]] = onnx_io::load_tensor_pb(sets[i] + "/input_" + std::to_string(k) + ".pb");
    return feeds;
  };
  return s;
}

}  // namespace duet::cli
