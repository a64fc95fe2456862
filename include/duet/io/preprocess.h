// Preprocessing: how a decoded image (io/image.h) becomes a float32 model
// input: resize, scale, mean/std, channel order, layout.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <utility>

#include "duet/core/shape.h"
#include "duet/core/tensor.h"

namespace duet::io {

// Resizes a uint8 [H, W, C] image to [height, width, C] the way PIL's
// Image.resize(..., BILINEAR) does: a triangle filter widened by the scale
// when shrinking (so downscaling averages, not samples), separable, width
// first, fixed-point weights with 22 fractional bits, rounding to uint8 after
// each pass. The tests compare it with PIL output pixel for pixel.
Tensor resize_bilinear(const Tensor& image, int64_t height, int64_t width);

// How an image becomes a float32 model input, parsed from a compact string:
//
//   spec   := "" | item ("," item)*
//   item   := "resize=" H "x" W | "resize=none" | "keep_ratio" | "pad=right"
//           | "scale=" NUMBER | "mean=" TRIPLE | "std=" TRIPLE
//           | "order=" ("rgb" | "bgr") | "layout=" ("nchw" | "nhwc")
//   NUMBER := a decimal ("0.0039", "1e-3") or a fraction ("1/255")
//   TRIPLE := NUMBER ":" NUMBER ":" NUMBER | NUMBER (the same for all three)
//
// Spaces around items are ignored; keys may not repeat; a bad key or value
// throws duet::Error naming it.
//
// Steps, in order: resize to H×W (without "resize", to the model input's H×W
// when both are static, else the image keeps its size; "resize=none" always
// keeps it); with keep_ratio the height becomes H and the width
// min(W, ceil(H * w / h)), and the rest of the W columns is padded on the
// right with zeros in the output (after normalization, as PaddleOCR's text
// recognizer does; "pad=right" states this and is the only padding); channels
// reordered (order=bgr reverses RGB); out = (pixel * scale - mean[c]) / std[c]
// with mean/std listed in output channel order; laid out NCHW or NHWC with a
// batch dimension of 1. Defaults: model-input size, scale=1/255, mean=0:0:0,
// std=1:1:1, order=rgb, layout=nchw, so "" is the default spec.
// Example, PaddleOCR's recognizer:
//   "resize=48x320,keep_ratio,pad=right,scale=1/255,mean=0.5:0.5:0.5,std=0.5:0.5:0.5,order=bgr"
struct Preprocess {
  enum class Resize { ToModelInput, Fixed, None };
  enum class Order { RGB, BGR };
  enum class Layout { NCHW, NHWC };

  Resize resize = Resize::ToModelInput;
  int64_t height = 0, width = 0;  // Resize::Fixed
  bool keep_ratio = false;
  // Double so that 1/255 times 255 is exactly 1, as x / 255 would give.
  double scale = 1.0 / 255.0;
  std::array<double, 3> mean = {0.0, 0.0, 0.0};
  std::array<double, 3> std = {1.0, 1.0, 1.0};
  Order order = Order::RGB;
  Layout layout = Layout::NCHW;

  // Throws duet::Error naming the bad key or value.
  static Preprocess parse(const std::string& spec);
  // Canonical spec (every key but an unset resize); parse(str()) gives it back.
  std::string str() const;

  // uint8 [H, W, 3] RGB image → float32 [1, 3, H', W'] (nchw) or [1, H', W', 3]
  // (nhwc). input_shape is the model input's (possibly symbolic) shape, used
  // for Resize::ToModelInput and to check that the layout has 3 channels.
  Tensor apply(const Tensor& image, const Shape& input_shape = Shape::unknown_rank()) const;
  // The output's H×W when it does not depend on the image (resize=HxW, or the
  // model input's static H×W); nullopt when images keep their size. Throws when
  // the input shape cannot take an image in this layout (rank, 3 channels) or
  // keep_ratio has no target size.
  std::optional<std::pair<int64_t, int64_t>> output_size(const Shape& input_shape) const;
};

}  // namespace duet::io
