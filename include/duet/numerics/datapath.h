// A matrix engine's datapath as data: which format the activations (x) and the
// weights (w) are rounded to and how they are scaled, how the exact products
// accumulate, and which format the result is stored in. `duet emulate` runs a
// whole model's Conv/MatMul/Gemm through it (passes::emulate_datapath and the
// com.duet Emulated* ops) so that the accuracy measured on this CPU is the
// accuracy such a device would give.
//
// Spec grammar (comma-separated, parentheses in format specs are respected):
//   x=FORMAT[/SCALING]   activations: the first MatMul/Gemm input, Conv's input
//   w=FORMAT[/SCALING]   weights: the second MatMul/Gemm input, Conv's weights
//   acc=ACCUMULATOR      numerics::emu::parse_accumulator names (fp32, fp16, int32, hopper...)
//   out=FORMAT           the stored result (default fp32)
//   round=rne|rtz|rna|sr input rounding (default rne); seed=N for sr
//   block=N              block length along K for /block scaling (also the accumulator chunk)
// SCALING: none, tensor, channel (x: one scale per row of A, i.e. per token; w: one per
// output channel), block (per `block` consecutive K values of each row/column).
// Scales are dynamic: computed from the tensor's values at run time as
// amax / max(format) (the "current scaling" of FP8 recipes and dynamic INT8),
// symmetric, no zero points. Defaults: w = x's format (and x's block scaling
// when x is block-scaled); integer formats and floats of 8 bits or fewer scale
// x per tensor and w per channel, wider floats are not scaled; integer formats
// accumulate in int32, float formats in fp32. Keys may appear once; seed needs round=sr.
// A preset name (datapath_presets()) may stand for the whole spec.
#pragma once
#include <string>
#include <vector>

#include "duet/numerics/emu_gemm.h"

namespace duet::numerics {

struct OperandRule {
  Format format;
  emu::Scaling scaling = emu::Scaling::None;
};

struct Datapath {
  std::string name;  // preset name, or "custom"
  OperandRule x, w;
  Rounding rounding = Rounding::NearestEven;
  uint64_t seed = 0;
  int block = 0;
  std::string acc_spec = "fp32";  // as parse_accumulator reads it
  emu::Accumulator acc;
  Format out;
  std::string devices;  // presets: which hardware computes this (for listings)

  // Canonical spec: parse_datapath(spec()) gives the same datapath.
  std::string spec() const;
};

Datapath parse_datapath(const std::string& spec_or_preset);
const std::vector<Datapath>& datapath_presets();

const char* scaling_name(emu::Scaling s);

// Dynamic symmetric scales for one GEMM operand, laid out as emu::Operand wants
// them. rows×cols is the logical operand (A: M×K, B: K×N); `data` holds it
// row-major, or its transpose when `trans`. Per tensor: amax / max(format);
// Channel: A per row, B per column; Block: per `block` values along K.
// A zero or non-finite amax gives scale 1 (such values pass unscaled).
std::vector<float> dynamic_scales(const Format& f, emu::Scaling s, int block, const float* data, int64_t rows,
                                  int64_t cols, bool trans, bool is_a);

// The emu::GemmSpec of a datapath (scales left empty: the caller fills them).
emu::GemmSpec gemm_spec(const Datapath& d, int threads);

}  // namespace duet::numerics
