// SCALE-Sim topology CSV files: one layer per row, either convolutions
//   name, ifmap height, ifmap width, filter height, filter width, channels, filters, stride[, stride w],
// or GEMMs (header naming M, N, K)
//   name, M, N, K,
// A header row comes first; blank rows, surrounding whitespace, a trailing
// comma and anything after the last numeric field (SCALE-Sim files carry
// "#dw" notes there) are ignored.
#pragma once
#include <string>
#include <vector>

#include "duet/sim/systolic.h"

namespace duet::sim {

struct TopologyLayer {
  std::string name;
  bool is_conv = true;
  int64_t ifmap_h = 1, ifmap_w = 1, filter_h = 1, filter_w = 1, channels = 1, filters = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t gemm_m = 0, gemm_n = 0, gemm_k = 0;  // GEMM rows

  // ceil((ifmap - filter + stride) / stride): SCALE-Sim counts a partial window at
  // the edge (AlexNet conv1: 55, where ONNX floor arithmetic gives 54).
  int64_t ofmap_h() const;
  int64_t ofmap_w() const;
  Gemm gemm(int64_t batch = 1) const;  // im2col lowering; batch multiplies m
  double input_elements(int64_t batch = 1) const;
  double weight_elements() const;
  double output_elements(int64_t batch = 1) const;
};

struct Topology {
  std::string name;  // file stem
  std::vector<TopologyLayer> layers;
};

Topology read_topology_csv(const std::string& path);
Topology parse_topology_csv(const std::string& text, const std::string& name = "topology");

}  // namespace duet::sim
