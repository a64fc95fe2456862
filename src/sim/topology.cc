#include "duet/sim/topology.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "duet/core/error.h"

namespace duet::sim {

int64_t TopologyLayer::ofmap_h() const { return is_conv ? (ifmap_h - filter_h + stride_h + stride_h - 1) / stride_h : gemm_m; }
int64_t TopologyLayer::ofmap_w() const { return is_conv ? (ifmap_w - filter_w + stride_w + stride_w - 1) / stride_w : 1; }

Gemm TopologyLayer::gemm(int64_t batch) const {
  if (!is_conv) return {gemm_m * batch, gemm_n, gemm_k, 1};
  return {ofmap_h() * ofmap_w() * batch, filters, filter_h * filter_w * channels, 1};
}

double TopologyLayer::input_elements(int64_t batch) const {
  return is_conv ? double(ifmap_h) * ifmap_w * channels * batch : double(gemm_m) * gemm_k * batch;
}
double TopologyLayer::weight_elements() const {
  return is_conv ? double(filter_h) * filter_w * channels * filters : double(gemm_k) * gemm_n;
}
double TopologyLayer::output_elements(int64_t batch) const {
  return is_conv ? double(ofmap_h()) * ofmap_w() * filters * batch : double(gemm_m) * gemm_n * batch;
}

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) fields.push_back(trim(f));
  return fields;
}

// A layer dimension: digits, at most 12 of them (a larger one is not a layer).
bool is_integer(const std::string& s) {
  return !s.empty() && s.size() <= 12 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Topology parse_topology_csv(const std::string& text, const std::string& name) {
  Topology topo;
  topo.name = name;
  std::stringstream in(text);
  std::string line;
  bool header_seen = false, gemm_mode = false;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (trim(line).empty()) continue;
    auto fields = split(line);
    if (std::all_of(fields.begin(), fields.end(), [](const std::string& f) { return f.empty(); })) continue;  // ",,,,"
    if (!header_seen) {
      header_seen = true;
      const std::string h = lower(line);
      gemm_mode = h.find("ifmap") == std::string::npos && fields.size() >= 4 && lower(fields[1]) == "m";
      continue;
    }
    std::vector<int64_t> values;
    for (size_t i = 1; i < fields.size() && is_integer(fields[i]); ++i) values.push_back(std::stoll(fields[i]));
    TopologyLayer layer;
    layer.name = fields[0];
    DUET_CHECK(!layer.name.empty(), name, " line ", line_number, ": layer without a name");
    if (gemm_mode) {
      DUET_CHECK(values.size() >= 3, name, " line ", line_number, " (", layer.name, "): a GEMM row needs M, N, K");
      layer.is_conv = false;
      layer.gemm_m = values[0], layer.gemm_n = values[1], layer.gemm_k = values[2];
      DUET_CHECK(layer.gemm_m > 0 && layer.gemm_n > 0 && layer.gemm_k > 0, name, " line ", line_number, " (",
                 layer.name, "): M, N, K must be positive");
    } else {
      DUET_CHECK(values.size() >= 7, name, " line ", line_number, " (", layer.name,
                 "): a convolution row needs ifmap h, w, filter h, w, channels, filters, stride; found ",
                 values.size(), " numbers");
      layer.ifmap_h = values[0], layer.ifmap_w = values[1];
      layer.filter_h = values[2], layer.filter_w = values[3];
      layer.channels = values[4], layer.filters = values[5];
      layer.stride_h = values[6];
      layer.stride_w = values.size() >= 8 ? values[7] : values[6];
      for (int64_t v : values) DUET_CHECK(v > 0, name, " line ", line_number, " (", layer.name, "): values must be positive");
      DUET_CHECK(layer.filter_h <= layer.ifmap_h && layer.filter_w <= layer.ifmap_w, name, " line ", line_number, " (",
                 layer.name, "): filter ", layer.filter_h, "x", layer.filter_w, " larger than ifmap ", layer.ifmap_h, "x",
                 layer.ifmap_w);
    }
    topo.layers.push_back(layer);
  }
  DUET_CHECK(!topo.layers.empty(), name, ": no layers (expected a header row, then one row per layer)");
  return topo;
}

Topology read_topology_csv(const std::string& path) {
  std::ifstream f(path);
  DUET_CHECK(f.good(), "cannot open topology file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string stem = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  if (auto dot = stem.rfind('.'); dot != std::string::npos) stem = stem.substr(0, dot);
  return parse_topology_csv(ss.str(), stem);
}

}  // namespace duet::sim
