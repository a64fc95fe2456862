// Precision: Duet's one description of how a node computes — the formats of its
// activations (x) and weights (w) and how they are scaled, how the products
// accumulate, the stored result's format, the input rounding, and the weights'
// sparsity pattern. Every consumer reads this one form: `duet emulate` runs a
// model's Conv/MatMul/Gemm through it bit-exactly (passes::emulate_datapath and
// the com.duet Emulated* ops), the simulator costs each node at its own
// precision (the node annotation kPrecisionAnnotation), autocast and the
// quantizer write it on the nodes they change, and every CLI flag that takes a
// precision parses it here.
//
// Text form (comma-separated, parentheses in format specs are respected):
//   PRESET[,key=value...]  a preset (precision_presets()), keys override its own
//   x=FORMAT[/SCALING]   activations: the first MatMul/Gemm input, Conv's input
//   w=FORMAT[/SCALING]   weights: the second MatMul/Gemm input, Conv's weights
//   acc=ACCUMULATOR      numerics::emu::parse_accumulator names (fp32, fp16, int32, hopper...)
//   out=FORMAT           the stored result (default fp32)
//   round=rne|rtz|rna|sr input rounding (default rne); seed=N for sr
//   block=N              block length along K for /block scaling (also the accumulator chunk)
//   sparsity=dense|2:4   weights pruned 2 of every 4 along K (NVIDIA sparse tensor cores)
// SCALING: none, tensor, channel (x: one scale per row of A, i.e. per token; w: one per
// output channel), block (per `block` consecutive K values of each row/column).
// Scales are dynamic: computed from the tensor's values at run time as
// amax / max(format) (the "current scaling" of FP8 recipes and dynamic INT8),
// symmetric, no zero points. Defaults: w = x's format (and x's block scaling
// when x is block-scaled); integer formats and floats of 8 bits or fewer scale
// x per tensor and w per channel, wider floats are not scaled; integer formats
// accumulate in int32, float formats in fp32. Integer weights with float
// activations are weight-only quantization (w4a16: the weights are dequantized
// to x's format, the product is x's). Keys may appear once; seed needs round=sr.
//
// spec() prints every key (parse_precision(p.spec()) == p); str() prints the
// shortest form that parses back to the same precision (a preset's name where
// the precision is a preset).
#pragma once
#include <string>
#include <vector>

#include "duet/numerics/emu_gemm.h"

namespace duet::numerics {

// The node annotation (ir::Node::annotations) that carries a node's Precision in text form.
constexpr const char* kPrecisionAnnotation = "precision";

enum class Sparsity { Dense, TwoOfFour };
const char* sparsity_name(Sparsity s);  // "dense", "2:4"

struct OperandRule {
  Format format;
  emu::Scaling scaling = emu::Scaling::None;
};

struct Precision {
  std::string name;  // preset name, or "custom"
  OperandRule x, w;
  Rounding rounding = Rounding::NearestEven;
  uint64_t seed = 0;
  int block = 0;
  std::string acc_spec = "fp32";  // as parse_accumulator reads it
  emu::Accumulator acc;
  Format out;
  Sparsity sparsity = Sparsity::Dense;
  std::string devices;  // presets: which hardware computes this (for listings)

  std::string spec() const;  // every key: parse_precision(spec()) gives the same precision
  std::string str() const;   // shortest text that parses back to it (a preset's name where it is one)
  bool operator==(const Precision& o) const { return spec() == o.spec(); }

  bool weight_only() const { return x.format.is_float() && !w.format.is_float(); }
  // The format the products are computed in: x's for weight-only precisions,
  // otherwise the wider of x and w. What a device's peak rates are keyed by.
  const Format& compute_format() const;
  // Storage per element in bytes: weights (with one FP16 scale per block for
  // block-scaled weights, and 2:4's kept half plus a 2-bit index per kept value)
  // and activations (x's format, read and written between nodes).
  double weight_bytes() const;
  double activation_bytes() const;
};

Precision parse_precision(const std::string& text);
const std::vector<Precision>& precision_presets();

// A node's precision annotation read over the precision the node would have
// without it (the run's default, an auto-cast rule): a full text (a preset, or
// keys with x=) stands alone; keys alone ("sparsity=2:4", what duet sparsify
// writes: a property of the weights, not a choice of formats) change only those
// keys of `base`.
Precision resolve_precision(const std::string& annotation, const Precision& base);
// Whether `annotation` is such a relative text (keys without x= or a preset).
bool is_relative_precision(const std::string& annotation);

const char* scaling_name(emu::Scaling s);

// Dynamic symmetric scales for one GEMM operand, laid out as emu::Operand wants
// them. rows×cols is the logical operand (A: M×K, B: K×N); `data` holds it
// row-major, or its transpose when `trans`. Per tensor: amax / max(format);
// Channel: A per row, B per column; Block: per `block` values along K.
// A zero or non-finite amax gives scale 1 (such values pass unscaled).
std::vector<float> dynamic_scales(const Format& f, emu::Scaling s, int block, const float* data, int64_t rows,
                                  int64_t cols, bool trans, bool is_a);

// Magnitude 2:4 pruning: of every 4 consecutive values along K, the 2 largest
// |values| are kept and the others become 0 (a last group of 3 keeps 2, of 1-2
// keeps all); ties keep the earlier value. Element (o, k) of the `outer` × K
// operand is at data[o * outer_stride + k * k_stride]; returns a pruned copy
// in the same layout (data spans outer_stride * outer or k_stride * K values).
std::vector<float> prune_2of4(const float* data, int64_t outer, int64_t K, int64_t outer_stride, int64_t k_stride);

// The emu::GemmSpec of a precision (scales left empty: the caller fills them).
emu::GemmSpec gemm_spec(const Precision& d, int threads);

}  // namespace duet::numerics
