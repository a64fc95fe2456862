// Energy per operation and per byte moved: a technology table. Default:
// M. Horowitz, "Computing's energy problem (and what we can do about it)",
// ISSCC 2014, 45 nm, 0.9 V. A device file may override any entry ([energy]).
#pragma once
#include <map>
#include <string>

namespace duet::sim {

struct TechnologyTable {
  std::string source = "Horowitz, ISSCC 2014, 45 nm";
  // pJ per multiply and per add, by format. bf16 is taken as fp16 and tf32 as
  // fp32, fp8 as int8 multiply with fp16 add (the table has none of them);
  // int4 is int8 scaled as an array multiplier scales (bits squared) and an
  // adder (bits): an assumption, the table has no 4-bit entries.
  std::map<std::string, double> mul_pj{{"fp32", 3.7}, {"tf32", 3.7}, {"fp16", 1.1}, {"bf16", 1.1},
                                       {"fp8", 0.2},  {"int8", 0.2}, {"int4", 0.05}, {"int32", 3.1}};
  std::map<std::string, double> add_pj{{"fp32", 0.9}, {"tf32", 0.9}, {"fp16", 0.4}, {"bf16", 0.4},
                                       {"fp8", 0.4},  {"int8", 0.03}, {"int4", 0.015}, {"int32", 0.1}};
  // 32-bit SRAM read: 5 pJ (8 KB), 10 pJ (32 KB), 20 pJ (1 MB); per byte below.
  double sram_8k_pj_per_byte = 5.0 / 4, sram_32k_pj_per_byte = 10.0 / 4, sram_1m_pj_per_byte = 20.0 / 4;
  double dram_pj_per_byte = 640.0 / 4;  // 32-bit DRAM read: 640 pJ
  // Host link (PCIe-class SerDes): not in the table; an assumption of 10 pJ/bit.
  double link_pj_per_byte = 80;

  // Multiply-accumulate: multiply in the input format, add in its accumulator
  // (fp32 for floating formats, int32 for int8).
  double mac_pj(const std::string& precision) const;
  double op_pj(const std::string& precision) const;  // one elementwise op: an add
  // Read of an SRAM of `capacity_bytes`, log-interpolated between the three sizes
  // (flat outside them).
  double sram_pj_per_byte(double capacity_bytes) const;
};

}  // namespace duet::sim
