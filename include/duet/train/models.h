// Small models written with GraphBuilder, for `duet train BUILDER`:
//   mlp[:H1,H2,...]   Flatten -> (Gemm -> Relu)* -> Gemm (default hidden 128)
//   cnn[:C1,C2,F]     Conv3x3xC1 -> Relu -> Conv3x3xC2 -> Relu -> MaxPool2 ->
//                     Flatten -> Gemm F -> Relu -> Gemm classes (default 32,64,128:
//                     PyTorch's MNIST example without dropout)
//   transformer[:D,HEADS,LAYERS]  samples [T, F] as T tokens of F features:
//                     Linear F->D + learned positions -> LAYERS pre-norm encoder
//                     layers (multi-head attention, GELU MLP 4D) -> LayerNorm ->
//                     mean over tokens -> Gemm classes (default 32,4,2)
// Weights use PyTorch's default initialization from a seeded generator.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "duet/ir/graph.h"

namespace duet::train {

// sample_shape: one sample's shape ([C, H, W] for cnn, anything for mlp).
std::unique_ptr<ir::Model> build_model(const std::string& spec, const Dims& sample_shape, int64_t classes,
                                       uint32_t seed = 0);
bool is_builder_spec(const std::string& s);  // "mlp", "cnn", "mlp:..." or "cnn:..."

// The model's first input x becomes (x - mean) / stddev before every reader:
// Sub and Mul by constants named kStandardizeMean / kStandardizeScale, so the
// trained and exported model takes the data as given (the trainer never
// trains constants of those names).
inline constexpr const char* kStandardizeMean = "standardize.mean";
inline constexpr const char* kStandardizeScale = "standardize.inv_std";
void prepend_standardization(ir::Model& model, double mean, double stddev);

}  // namespace duet::train
