// Systolic-array model of one GEMM (Conv lowered by im2col, MatMul, Gemm):
// output-, weight- and input-stationary dataflows, fold-based cycle counts.
//
// "What the array computes" only: cycles assume operands are always ready.
// What memory does (SRAM sizes, double buffering, DRAM traffic) is in
// sim/memory.h. Cycle counts follow SCALE-Sim v2's compute model exactly
// (tests/data/scalesim/expected_cycles.csv holds its figures).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace duet::sim {

enum class Dataflow { OutputStationary, WeightStationary, InputStationary };
Dataflow parse_dataflow(std::string_view name);  // "os", "ws", "is"; throws otherwise
const char* dataflow_name(Dataflow d);           // "os", "ws", "is"

// C[m, n] = sum_k A[m, k] * B[k, n]. For a convolution (im2col): m = output
// pixels x batch, n = filters, k = filter height x width x input channels.
// `repeats` independent GEMMs of this shape run one after another (groups,
// batched MatMul heads).
struct Gemm {
  int64_t m = 1, n = 1, k = 1;
  int64_t repeats = 1;
  double macs() const { return double(m) * double(n) * double(k) * double(repeats); }
};

struct ArrayShape {
  int64_t rows = 32, cols = 32;
  Dataflow dataflow = Dataflow::WeightStationary;
};

// How a dataflow maps the GEMM onto the array: `spatial_rows` x `spatial_cols`
// operands are held in the array (split into folds of rows x cols), `temporal`
// values stream through each fold.
struct Mapping {
  int64_t spatial_rows, spatial_cols, temporal;
};
Mapping map_gemm(const Gemm& g, Dataflow d);

struct SystolicResult {
  int64_t row_folds = 0, col_folds = 0;  // per repeat
  int64_t cycles = 0;                    // all repeats, operands always ready
  double mapping_efficiency = 0;         // mean over folds of used PEs / all PEs
  double compute_utilization = 0;        // mean over folds of MACs / (PEs x fold cycles)
  double macs = 0;
  // Element accesses the array makes to its three SRAMs (all repeats).
  double ifmap_sram_reads = 0, filter_sram_reads = 0, ofmap_sram_writes = 0;
};

SystolicResult simulate_gemm(const Gemm& g, const ArrayShape& array);

}  // namespace duet::sim
