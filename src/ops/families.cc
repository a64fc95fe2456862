#include "families.h"

namespace duet::ops {

const std::vector<Family>& all_families() {
  static const std::vector<Family> families = {
      {"elementwise", register_elementwise},
      {"activation", register_activation},
      {"cast", register_cast},
      {"tensor", register_tensor},
      {"indexing", register_indexing},
      {"reduce", register_reduce},
      {"conv", register_conv},
      {"pool", register_pool},
      {"normalization", register_normalization},
      {"resize", register_resize},
      {"matmul", register_matmul},
      {"quantize", register_quantize},
      {"loss", register_loss},
      {"attention", register_attention},
      {"control_flow", register_control_flow},
      {"sequence", register_sequence},
      {"recurrent", register_recurrent},
      {"detection", register_detection},
      {"linalg", register_linalg},
      {"signal", register_signal},
      {"training", register_training},
      {"causal_conv", register_causal_conv},
      {"linear_attention", register_linear_attention},
      {"flex_attention", register_flex_attention},
      {"strings", register_strings},
      {"ml", register_ml},
      {"fused", register_fused},
      {"emulated", register_emulated},
  };
  return families;
}

}  // namespace duet::ops
