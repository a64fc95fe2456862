// Calibration/evaluation samples for the CLI: io::SampleFolder (test-data
// folders, tensor files or images with a preprocessing spec), loaded lazily.
#include <memory>

#include "duet/io/preprocess.h"
#include "duet/io/samples.h"
#include "duet/quant/calibrate.h"

namespace duet::cli {

quant::SampleSource open_samples(const std::string& dir, const ir::Graph& graph, const std::string& preprocess) {
  std::optional<io::Preprocess> pre;
  if (!preprocess.empty()) pre = io::Preprocess::parse(preprocess);
  auto folder = std::make_shared<io::SampleFolder>(dir, graph, pre);
  quant::SampleSource s;
  s.count = folder->size();
  s.name = [folder](size_t i) { return folder->sample_path(i); };
  s.load = [folder](size_t i) { return folder->load(i); };
  return s;
}

}  // namespace duet::cli
