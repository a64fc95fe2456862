// The op families. Each family file defines register_<family>(Registry&) and
// registers its ops there; adding a family means one line in families.cc.
#pragma once
#include <vector>

#include "duet/ops/registry.h"

namespace duet::ops {

struct Family {
  const char* name;
  void (*register_fn)(Registry&);
};

void register_elementwise(Registry&);    // elementwise.cc: math, comparison, logical, bitwise, Where, variadic
void register_activation(Registry&);     // activation.cc: Relu..Gelu, Softmax/LogSoftmax/Hardmax
void register_cast(Registry&);           // cast.cc: Cast, CastLike
void register_tensor(Registry&);         // tensor.cc: shape and data movement
void register_indexing(Registry&);       // indexing.cc: Gather*/Scatter*, TopK, ArgMax, NonZero, CumSum...
void register_reduce(Registry&);         // reduce.cc: Reduce*
void register_conv(Registry&);           // conv.cc: Conv, ConvTranspose
void register_pool(Registry&);           // pool.cc: pooling
void register_normalization(Registry&);  // normalization.cc: BatchNorm, LayerNorm, ...
void register_resize(Registry&);         // resize.cc: Resize, Upsample, GridSample
void register_matmul(Registry&);         // matmul.cc: MatMul, Gemm, Einsum
void register_quantize(Registry&);       // quantize.cc: Q/DQ and integer ops
void register_loss(Registry&);           // loss.cc: SoftmaxCrossEntropyLoss, NLL, CtcLoss
void register_attention(Registry&);      // attention.cc: Attention, RotaryEmbedding
void register_control_flow(Registry&);   // control_flow.cc: If, Loop, Scan
void register_sequence(Registry&);       // sequence.cc: Sequence*, SplitToSequence, Optional*
void register_recurrent(Registry&);           // recurrent.cc: RNN, GRU, LSTM
void register_detection(Registry&);           // detection.cc: NonMaxSuppression
void register_linalg(Registry&);              // linalg.cc: Det
void register_signal(Registry&);              // signal.cc: DFT, STFT, window functions, MelWeightMatrix
void register_training(Registry&);            // training.cc: Adam, Adagrad, Momentum (ai.onnx.preview.training)
void register_causal_conv(Registry&);         // causal_conv.cc: CausalConvWithState
void register_linear_attention(Registry&);    // linear_attention.cc: LinearAttention
void register_flex_attention(Registry&);      // flex_attention.cc: FlexAttention (ai.onnx.preview)
void register_strings(Registry&);             // strings.cc: StringConcat, StringSplit, StringNormalizer, RegexFullMatch, TfIdfVectorizer
void register_ml(Registry&);                  // ml.cc: ai.onnx.ml ops
void register_fused(Registry&);               // fused.cc: com.duet FusedConv, FusedMatMul (graph optimizer output)
void register_emulated(Registry&);            // emulated.cc: com.duet EmulatedConv/MatMul/Gemm (datapath emulation)

const std::vector<Family>& all_families();

// Matrix traits of the ONNX matrix ops, for their fused and emulated forms too.
MatrixTraits conv_traits();            // conv.cc
MatrixTraits conv_transpose_traits();  // conv.cc
MatrixTraits matmul_traits();          // matmul.cc
MatrixTraits gemm_traits();            // matmul.cc

}  // namespace duet::ops
