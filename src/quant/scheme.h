// What the QDQ writer reads off QuantizeOptions::precision (a precision that
// quant::check_quantizable accepted): the few questions quantize.cc,
// calibrate.cc, ptq.cc and report.cc ask of it, answered in one place.
#pragma once
#include "duet/numerics/precision.h"

namespace duet::quant::scheme {

// Weight-only precisions (w8a16, w4a16) leave the activations float: no Q/DQ
// pairs on them and nothing to calibrate.
inline bool quantizes_activations(const numerics::Precision& p) { return !p.weight_only(); }
inline bool int8_activations(const numerics::Precision& p) { return quantizes_activations(p) && p.x.format.name == "int8"; }
inline bool fp8_activations(const numerics::Precision& p) { return quantizes_activations(p) && p.x.format.name == "e4m3fn"; }

inline bool int8_weights(const numerics::Precision& p) { return p.w.format.name == "int8"; }
inline bool int4_weights(const numerics::Precision& p) { return p.w.format.name == "int4"; }  // blocks of p.block along K
inline bool fp8_weights(const numerics::Precision& p) { return p.w.format.name == "e4m3fn"; }
// One weight scale per output channel; otherwise one per tensor (INT8, FP8) or per block (INT4).
inline bool per_channel_weights(const numerics::Precision& p) { return p.w.scaling == numerics::emu::Scaling::Channel; }

}  // namespace duet::quant::scheme
