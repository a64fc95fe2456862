#include "duet/sim/memory.h"

#include <algorithm>

namespace duet::sim {

namespace {
// DRAM bytes for an operand of `bytes` needed `passes` times, whose reused
// part (`reused_bytes`) must stay in the active half of an SRAM of `sram` bytes.
double fetched(double bytes, double passes, double reused_bytes, double sram) {
  return reused_bytes <= sram / 2 ? bytes : bytes * passes;
}
}  // namespace

MemoryTraffic gemm_traffic(const Gemm& g, const ArrayShape& array, const SystolicResult& c, const SramSizes& sram,
                           double word_bytes) {
  const double M = double(g.m), N = double(g.n), K = double(g.k), rep = double(g.repeats);
  const double R = double(array.rows), C = double(array.cols);
  const double rf = double(c.row_folds), cf = double(c.col_folds);
  const double a = M * K * word_bytes, b = K * N * word_bytes, out = M * N * word_bytes;
  MemoryTraffic t;
  // Folds run column fold outer, row fold inner (SCALE-Sim's order).
  double out_block = 0;  // output block that accumulates across row folds
  switch (array.dataflow) {
    case Dataflow::OutputStationary:
      t.ifmap_dram_read_bytes = fetched(a, cf, a, sram.ifmap_bytes);              // all of A per column fold
      t.filter_dram_read_bytes = fetched(b, rf, K * C * word_bytes, sram.filter_bytes);  // B's column block per row fold
      break;
    case Dataflow::WeightStationary:
      t.ifmap_dram_read_bytes = fetched(a, cf, a, sram.ifmap_bytes);
      t.filter_dram_read_bytes = b;
      out_block = M * C * word_bytes;
      break;
    case Dataflow::InputStationary:
      t.ifmap_dram_read_bytes = a;
      t.filter_dram_read_bytes = fetched(b, cf, b, sram.filter_bytes);
      out_block = C * N * word_bytes;
      break;
  }
  t.ofmap_dram_write_bytes = out;
  if (array.dataflow != Dataflow::OutputStationary && rf > 1 && out_block > sram.ofmap_bytes / 2) {
    t.ofmap_dram_write_bytes = out * rf;
    t.ofmap_dram_read_bytes = out * (rf - 1);
  }
  (void)R;
  t.ifmap_dram_read_bytes *= rep;
  t.filter_dram_read_bytes *= rep;
  t.ofmap_dram_write_bytes *= rep;
  t.ofmap_dram_read_bytes *= rep;
  t.sram_read_bytes = (c.ifmap_sram_reads + c.filter_sram_reads) * word_bytes;
  t.sram_write_bytes = c.ofmap_sram_writes * word_bytes;
  return t;
}

double overlapped_cycles(const SystolicResult& compute, const MemoryTraffic& traffic, const ArrayShape& array,
                         double word_bytes, double dram_bytes_per_cycle) {
  const double compute_cycles = double(compute.cycles + 1);
  if (dram_bytes_per_cycle <= 0) return compute_cycles;
  const double memory_cycles = traffic.dram_bytes() / dram_bytes_per_cycle;
  const double first_tile = double(array.rows) * double(array.cols) * word_bytes / dram_bytes_per_cycle;
  return std::max(compute_cycles, memory_cycles) + first_tile;
}

}  // namespace duet::sim
