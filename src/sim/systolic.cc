// Fold arithmetic of a rows x cols systolic array.
//
// Per fold, the array is filled, operands stream through with a skew of one
// cycle per row/column, and results drain before the next fold starts (no
// overlap between folds, as in SCALE-Sim v2):
//   OS: temporal + rows + cols - 2 cycles (stream k with skew, drain outputs)
//   WS/IS: 2 rows + cols + temporal - 2 (load the stationary tile row by row,
//          stream, drain partial sums through the columns)
// and the whole GEMM takes folds x per-fold - 1 cycles (cycle numbering from 0).
#include "duet/sim/systolic.h"

#include "duet/core/error.h"

namespace duet::sim {

Dataflow parse_dataflow(std::string_view name) {
  if (name == "os") return Dataflow::OutputStationary;
  if (name == "ws") return Dataflow::WeightStationary;
  if (name == "is") return Dataflow::InputStationary;
  fail("unknown dataflow '", name, "' (expected os, ws or is)");
}

const char* dataflow_name(Dataflow d) {
  switch (d) {
    case Dataflow::OutputStationary: return "os";
    case Dataflow::WeightStationary: return "ws";
    case Dataflow::InputStationary: return "is";
  }
  return "?";
}

Mapping map_gemm(const Gemm& g, Dataflow d) {
  switch (d) {
    case Dataflow::OutputStationary: return {g.m, g.n, g.k};  // outputs stay, k streams
    case Dataflow::WeightStationary: return {g.k, g.n, g.m};  // weights stay, pixels stream
    case Dataflow::InputStationary: return {g.k, g.m, g.n};   // im2col inputs stay, filters stream
  }
  return {g.m, g.n, g.k};
}

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

SystolicResult simulate_gemm(const Gemm& g, const ArrayShape& array) {
  DUET_CHECK(array.rows > 0 && array.cols > 0, "systolic array needs positive rows and cols, got ", array.rows, "x",
             array.cols);
  DUET_CHECK(g.m > 0 && g.n > 0 && g.k > 0 && g.repeats > 0, "GEMM dimensions must be positive, got m=", g.m,
             " n=", g.n, " k=", g.k);
  const int64_t R = array.rows, C = array.cols;
  const Mapping map = map_gemm(g, array.dataflow);
  SystolicResult r;
  r.row_folds = ceil_div(map.spatial_rows, R);
  r.col_folds = ceil_div(map.spatial_cols, C);
  const int64_t folds = r.row_folds * r.col_folds;
  const int64_t T = map.temporal;

  // Cycles per fold, and the cycle count SCALE-Sim divides by for utilization
  // (the fold's demand rows plus its width less one).
  int64_t fold_cycles, util_cycles;
  if (array.dataflow == Dataflow::OutputStationary) {
    fold_cycles = T + R + C - 2;
    util_cycles = T + R + C - 2;
  } else {
    fold_cycles = 2 * R + C + T - 2;
    util_cycles = 2 * R + 2 * C + T - 3;
  }
  r.cycles = g.repeats * (folds * fold_cycles) - 1;

  // Summed over the fold grid, used rows x used cols is spatial_rows x spatial_cols.
  r.mapping_efficiency = double(map.spatial_rows) * double(map.spatial_cols) / (double(folds) * double(R) * double(C));
  r.compute_utilization = r.mapping_efficiency * double(T) / double(util_cycles);
  r.macs = g.macs();

  const double M = double(g.m), N = double(g.n), K = double(g.k), rep = double(g.repeats);
  switch (array.dataflow) {
    case Dataflow::OutputStationary:  // every fold streams its rows of A and columns of B
      r.ifmap_sram_reads = rep * double(r.col_folds) * M * K;
      r.filter_sram_reads = rep * double(r.row_folds) * K * N;
      r.ofmap_sram_writes = rep * M * N;
      break;
    case Dataflow::WeightStationary:  // B loaded once; A re-streamed per column fold; partial sums per row fold
      r.ifmap_sram_reads = rep * double(r.col_folds) * M * K;
      r.filter_sram_reads = rep * K * N;
      r.ofmap_sram_writes = rep * double(r.row_folds) * M * N;
      break;
    case Dataflow::InputStationary:  // A loaded once; B re-streamed per column fold
      r.ifmap_sram_reads = rep * M * K;
      r.filter_sram_reads = rep * double(r.col_folds) * K * N;
      r.ofmap_sram_writes = rep * double(r.row_folds) * M * N;
      break;
  }
  return r;
}

}  // namespace duet::sim
