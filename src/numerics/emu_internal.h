// Pieces of emu::gemm shared by the fast driver and the reference: argument checks,
// the quantization of step 1, scales, and the output rounding of step 5.
#pragma once
#include <cstdint>
#include <vector>

#include "duet/numerics/emu_gemm.h"

namespace duet::numerics::emu {

// Throws duet::Error naming the first thing the spec gets wrong for these sizes.
void validate(const GemmSpec& spec, int64_t M, int64_t N, int64_t K);

// Step 1 for one operand: the logical rows×cols matrix (A: M×K, B: K×N) of quantized values.
// `x` is as passed (transposed when `trans`). The reference version encodes element by element;
// the fast one uses the bulk converters, which are tested to agree on every input.
std::vector<float> quantize_reference(const Operand& op, const float* x, int64_t rows, int64_t cols, bool trans,
                                      bool is_a);
std::vector<float> quantize_fast(const Operand& op, const float* x, int64_t rows, int64_t cols, bool trans, bool is_a);

// Scale of A's row m / B's column n (Tensor and Channel; 1 otherwise).
float channel_scale(const Operand& op, int64_t index);
// Block scale of A's row m (is_a) or B's column n for K block c.
float block_scale(const Operand& op, int64_t index, int64_t c, int64_t K, bool is_a);

}  // namespace duet::numerics::emu
