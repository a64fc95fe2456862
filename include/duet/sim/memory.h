// What memory does around a systolic GEMM: three double-buffered SRAMs
// (ifmap, filter, ofmap; half of each is being computed on while the other
// half fills, as in SCALE-Sim) in front of DRAM.
//
// An operand the dataflow streams more than once (SystolicResult's SRAM
// reads) is fetched from DRAM once when the part that is reused fits in the
// active half of its SRAM, and once per pass otherwise; partial sums that do
// not fit are written out and read back per row fold.
#pragma once
#include "duet/sim/systolic.h"

namespace duet::sim {

struct SramSizes {
  double ifmap_bytes = 64 * 1024, filter_bytes = 64 * 1024, ofmap_bytes = 64 * 1024;
};

struct MemoryTraffic {
  double ifmap_dram_read_bytes = 0, filter_dram_read_bytes = 0;
  double ofmap_dram_write_bytes = 0, ofmap_dram_read_bytes = 0;  // reads: spilled partial sums
  double sram_read_bytes = 0, sram_write_bytes = 0;
  double dram_bytes() const {
    return ifmap_dram_read_bytes + filter_dram_read_bytes + ofmap_dram_write_bytes + ofmap_dram_read_bytes;
  }
};

MemoryTraffic gemm_traffic(const Gemm& g, const ArrayShape& array, const SystolicResult& compute, const SramSizes& sram,
                           double word_bytes);

// Cycles of the layer when DRAM delivers `dram_bytes_per_cycle`: with double
// buffering transfers overlap compute, so the longer of the two, plus the
// first stationary tile's fill, which nothing overlaps.
double overlapped_cycles(const SystolicResult& compute, const MemoryTraffic& traffic, const ArrayShape& array,
                         double word_bytes, double dram_bytes_per_cycle);

}  // namespace duet::sim
