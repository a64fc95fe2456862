// Shared by the Conv and pooling families: sliding-window geometry (kernel,
// strides, dilations, pads, auto_pad, ceil_mode) and shape inference for it.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "duet/ops/kernel_util.h"

namespace duet::ops::window {

// Floor division that also rounds negative quotients down (like Python's //).
inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The geometry of one N-d sliding window op. Unknown input sizes are -1 and
// give unknown output sizes (-1).
struct Geometry {
  size_t nsp = 0;  // number of spatial dimensions
  std::vector<int64_t> in, kernel, stride, dilation, pad_begin, pad_end, out;
  int64_t window(size_t i) const { return (kernel[i] - 1) * dilation[i] + 1; }
};

// An ints attribute with one entry per spatial dimension (or the default).
inline std::vector<int64_t> spatial_ints(const ir::Node& node, const std::string& name, size_t nsp,
                                         int64_t def) {
  std::vector<int64_t> v = node.attr_ints(name);
  if (v.empty()) return std::vector<int64_t>(nsp, def);
  if (v.size() != nsp)
    fail(node.label(), ": attribute ", name, " has ", v.size(), " values, expected ", nsp);
  return v;
}

// Reads kernel/strides/dilations/pads/auto_pad and computes the output size of
// a convolution or pooling window. kernel must already be known (from the
// attribute or the weights). ceil_mode applies to pooling only.
inline Geometry resolve(const ir::Node& node, const std::vector<int64_t>& in,
                        const std::vector<int64_t>& kernel, bool ceil_mode) {
  Geometry g;
  g.nsp = in.size();
  g.in = in;
  g.kernel = kernel;
  if (kernel.size() != g.nsp)
    fail(node.label(), ": kernel has ", kernel.size(), " dimensions but the input has ", g.nsp,
         " spatial dimensions");
  g.stride = spatial_ints(node, "strides", g.nsp, 1);
  g.dilation = spatial_ints(node, "dilations", g.nsp, 1);
  for (size_t i = 0; i < g.nsp; ++i) {
    if (g.kernel[i] <= 0) fail(node.label(), ": kernel sizes must be positive");
    if (g.stride[i] <= 0) fail(node.label(), ": strides must be positive");
    if (g.dilation[i] <= 0) fail(node.label(), ": dilations must be positive");
  }
  std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  g.pad_begin.assign(g.nsp, 0);
  g.pad_end.assign(g.nsp, 0);
  g.out.assign(g.nsp, -1);
  if (auto_pad == "NOTSET" || auto_pad.empty()) {
    std::vector<int64_t> pads = node.attr_ints("pads");
    if (pads.empty()) pads.assign(2 * g.nsp, 0);
    if (pads.size() != 2 * g.nsp)
      fail(node.label(), ": attribute pads has ", pads.size(), " values, expected ", 2 * g.nsp);
    for (size_t i = 0; i < g.nsp; ++i) {
      g.pad_begin[i] = pads[i];
      g.pad_end[i] = pads[i + g.nsp];
      if (pads[i] < 0 || pads[i + g.nsp] < 0) fail(node.label(), ": pads must not be negative");
    }
    for (size_t i = 0; i < g.nsp; ++i) {
      if (in[i] < 0) continue;
      int64_t span = in[i] + g.pad_begin[i] + g.pad_end[i] - g.window(i);
      if (span < 0)
        fail(node.label(), ": window ", g.window(i), " is larger than the padded input ",
             in[i] + g.pad_begin[i] + g.pad_end[i], " in spatial dimension ", i);
      if (ceil_mode) {
        int64_t o = ceil_div(span, g.stride[i]) + 1;
        // The last window must start inside the input or the leading pad.
        if ((o - 1) * g.stride[i] >= in[i] + g.pad_begin[i]) --o;
        g.out[i] = o;
      } else {
        g.out[i] = span / g.stride[i] + 1;
      }
    }
  } else if (auto_pad == "VALID") {
    for (size_t i = 0; i < g.nsp; ++i) {
      if (in[i] < 0) continue;
      int64_t span = in[i] - g.window(i);
      if (span < 0) fail(node.label(), ": window is larger than the input (auto_pad VALID)");
      g.out[i] = (ceil_mode ? ceil_div(span, g.stride[i]) : span / g.stride[i]) + 1;
    }
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (size_t i = 0; i < g.nsp; ++i) {
      if (in[i] < 0) continue;
      g.out[i] = ceil_div(in[i], g.stride[i]);
      int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * g.stride[i] + g.window(i) - in[i]);
      int64_t small = total / 2, large = total - total / 2;
      g.pad_begin[i] = auto_pad == "SAME_UPPER" ? small : large;
      g.pad_end[i] = auto_pad == "SAME_UPPER" ? large : small;
    }
  } else {
    fail(node.label(), ": unknown auto_pad '", auto_pad, "'");
  }
  return g;
}

// Spatial sizes of a shape from dimension 2 on (-1 where unknown).
inline std::vector<int64_t> spatial_of(const Shape& s) {
  std::vector<int64_t> v;
  for (size_t i = 2; i < s.rank(); ++i) v.push_back(s.dims[i].value);
  return v;
}
inline std::vector<int64_t> spatial_of(const Dims& d) { return std::vector<int64_t>(d.begin() + 2, d.end()); }

// Output shape [N, channels, out...] with fresh dims where unknown.
inline Shape output_shape(InferContext& ctx, const Dim& batch, const Dim& channels,
                          const std::vector<int64_t>& out) {
  std::vector<Dim> dims{batch, channels};
  for (int64_t o : out) dims.push_back(o >= 0 ? Dim(o) : ctx.fresh_dim());
  return Shape(dims);
}

// Pads the spatial description to exactly 3 dimensions (leading size-1 dims)
// so that kernels need only one loop nest for 1-D, 2-D and 3-D.
struct Geometry3 {
  int64_t in[3], kernel[3], stride[3], dilation[3], pad[3], out[3];
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
};
inline Geometry3 to3(const Geometry& g, const ir::Node& node) {
  if (g.nsp > 3) unsupported(node.label(), ": more than 3 spatial dimensions are not supported");
  Geometry3 r;
  size_t lead = 3 - g.nsp;
  for (size_t i = 0; i < 3; ++i) {
    bool real = i >= lead;
    size_t j = i - lead;
    r.in[i] = real ? g.in[j] : 1;
    r.kernel[i] = real ? g.kernel[j] : 1;
    r.stride[i] = real ? g.stride[j] : 1;
    r.dilation[i] = real ? g.dilation[j] : 1;
    r.pad[i] = real ? g.pad_begin[j] : 0;
    r.out[i] = real ? g.out[j] : 1;
  }
  return r;
}

// Conv geometry from the node and the input/weight dims (shared by Conv and
// its gradient).
struct ConvSetup {
  Geometry3 g3{};
  Dims out_dims;
  int64_t N = 0, Cin = 0, Cout = 0, group = 1;
  int64_t cin_g() const { return Cin / group; }
  int64_t cout_g() const { return Cout / group; }
};

inline std::vector<int64_t> kernel_from_weights(const ir::Node& node, const std::vector<int64_t>& w_spatial) {
  std::vector<int64_t> k = node.attr_ints("kernel_shape");
  if (k.empty()) return w_spatial;
  if (k.size() != w_spatial.size())
    fail(node.label(), ": kernel_shape has ", k.size(), " values but the weights have ", w_spatial.size(),
         " spatial dimensions");
  for (size_t i = 0; i < k.size(); ++i)
    if (w_spatial[i] >= 0 && k[i] != w_spatial[i])
      fail(node.label(), ": kernel_shape ", k[i], " does not match the weight size ", w_spatial[i]);
  return k;
}

inline ConvSetup conv_setup(const ir::Node& node, const Dims& x, const Dims& w) {
  if (x.size() < 3) fail(node.label(), ": input must have rank >= 3, got ", dims_str(x));
  if (w.size() != x.size())
    fail(node.label(), ": weights ", dims_str(w), " must have the rank of the input ", dims_str(x));
  ConvSetup s;
  s.N = x[0];
  s.Cin = x[1];
  s.Cout = w[0];
  s.group = node.attr_int("group", 1);
  if (s.group <= 0) fail(node.label(), ": group must be positive");
  if (s.Cin % s.group != 0 || s.Cout % s.group != 0)
    fail(node.label(), ": channels (", s.Cin, " in, ", s.Cout, " out) are not divisible by group ", s.group);
  if (w[1] != s.Cin / s.group)
    fail(node.label(), ": weights have ", w[1], " input channels, expected ", s.Cin / s.group);
  auto kernel = kernel_from_weights(node, window::spatial_of(w));
  Geometry g = window::resolve(node, window::spatial_of(x), kernel, false);
  s.g3 = window::to3(g, node);
  s.out_dims = {s.N, s.Cout};
  for (int64_t o : g.out) s.out_dims.push_back(o);
  return s;
}


}  // namespace duet::ops::window
