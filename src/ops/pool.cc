// Pooling family: AveragePool, MaxPool, LpPool, their Global forms, MaxUnpool,
// MaxRoiPool and RoiAlign. Windows are handled in a canonical 3-D form (1-D
// and 2-D pooling get leading size-1 dimensions); work is split over
// (batch, channel) planes, each computed by one thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "conv_util.h"
#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using window::Geometry;
using window::Geometry3;

// The arithmetic type for element type T: half types compute in float.
template <typename T>
using compute_t = std::conditional_t<std::is_arithmetic_v<T>, T, float>;

// Accumulator for sums: double for double inputs, float otherwise.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct PoolSetup {
  Geometry geom;
  Geometry3 g3{};
  Dims out_dims;
  int64_t planes = 0;  // N * C
};

PoolSetup pool_setup(const ir::Node& node, const Dims& x) {
  if (x.size() < 3) fail(node.label(), ": input must have rank >= 3, got ", dims_str(x));
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  if (kernel.empty()) fail(node.label(), ": attribute kernel_shape is required");
  PoolSetup s;
  s.geom = window::resolve(node, window::spatial_of(x), kernel, node.attr_int("ceil_mode", 0) != 0);
  s.g3 = window::to3(s.geom, node);
  s.out_dims = {x[0], x[1]};
  for (int64_t o : s.geom.out) s.out_dims.push_back(o);
  s.planes = x[0] * x[1];
  return s;
}

// Calls visit(out_index, [taps...]) style: for each output position of one
// plane, fn(o, start_d, start_h, start_w) with window starts (may be negative).
template <typename Fn>
void for_each_window(const Geometry3& g, Fn&& fn) {
  int64_t o = 0;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o)
        fn(o, od * g.stride[0] - g.pad[0], oh * g.stride[1] - g.pad[1], ow * g.stride[2] - g.pad[2]);
}

// Calls tap(d, h, w) for every in-bounds kernel tap of the window starting at (sd, sh, sw).
template <typename Fn>
inline void for_each_tap(const Geometry3& g, int64_t sd, int64_t sh, int64_t sw, Fn&& tap) {
  for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
    int64_t d = sd + kd * g.dilation[0];
    if (d < 0 || d >= g.in[0]) continue;
    for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
      int64_t h = sh + kh * g.dilation[1];
      if (h < 0 || h >= g.in[1]) continue;
      for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
        int64_t w = sw + kw * g.dilation[2];
        if (w < 0 || w >= g.in[2]) continue;
        tap(d, h, w);
      }
    }
  }
}

// Number of taps of a window that fall inside [-pad_begin, in + pad_end) in
// every dimension (the count_include_pad divisor: ceil-mode overhang excluded).
int64_t taps_in_padded(const Geometry& geom, const Geometry3& g, int64_t sd, int64_t sh, int64_t sw) {
  const int64_t start[3] = {sd, sh, sw};
  int64_t total = 1;
  size_t lead = 3 - geom.nsp;
  for (size_t i = 0; i < 3; ++i) {
    int64_t lo = -g.pad[i], hi = g.in[i] + (i >= lead ? geom.pad_end[i - lead] : 0);
    int64_t n = 0;
    for (int64_t k = 0; k < g.kernel[i]; ++k) {
      int64_t p = start[i] + k * g.dilation[i];
      if (p >= lo && p < hi) ++n;
    }
    total *= n;
  }
  return total;
}

// ---------------------------------------------------------------------------
// AveragePool / LpPool

void average_pool_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  PoolSetup s = pool_setup(ctx.node, X.dims());
  const bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const Geometry3& g = s.g3;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    ctx.parallel_for(s.planes, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const T* xp = x + pl * g.in_size();
        T* yp = y + pl * g.out_size();
        for_each_window(g, [&](int64_t o, int64_t sd, int64_t sh, int64_t sw) {
          A sum = 0;
          int64_t count = 0;
          for_each_tap(g, sd, sh, sw, [&](int64_t d, int64_t h, int64_t w) {
            sum += static_cast<A>(xp[(d * g.in[1] + h) * g.in[2] + w]);
            ++count;
          });
          if (include_pad) count = taps_in_padded(s.geom, g, sd, sh, sw);
          yp[o] = static_cast<T>(count > 0 ? sum / static_cast<A>(count) : A(0));
        });
      }
    });
  });
}

void lp_pool_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  PoolSetup s = pool_setup(ctx.node, X.dims());
  const int64_t p = ctx.node.attr_int("p", 2);
  if (p <= 0) fail(ctx.node.label(), ": p must be positive");
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const Geometry3& g = s.g3;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    ctx.parallel_for(s.planes, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const T* xp = x + pl * g.in_size();
        T* yp = y + pl * g.out_size();
        for_each_window(g, [&](int64_t o, int64_t sd, int64_t sh, int64_t sw) {
          A sum = 0;
          for_each_tap(g, sd, sh, sw, [&](int64_t d, int64_t h, int64_t w) {
            A v = std::abs(static_cast<A>(xp[(d * g.in[1] + h) * g.in[2] + w]));
            sum += p == 2 ? v * v : std::pow(v, static_cast<A>(p));
          });
          yp[o] = static_cast<T>(p == 2 ? std::sqrt(sum) : std::pow(sum, A(1) / static_cast<A>(p)));
        });
      }
    });
  });
}

// ---------------------------------------------------------------------------
// MaxPool (with optional Indices)

void max_pool_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  PoolSetup s = pool_setup(ctx.node, X.dims());
  const int64_t storage_order = ctx.node.attr_int("storage_order", 0);
  if (storage_order != 0 && storage_order != 1) fail(ctx.node.label(), ": storage_order must be 0 or 1");
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  const bool want_indices = ctx.num_outputs() > 1 && ctx.output_requested(1);
  int64_t* idx = want_indices ? ctx.allocate_output(1, DType::Int64, s.out_dims).data<int64_t>() : nullptr;
  switch (X.dtype()) {
    case DType::Float32: case DType::Float64: case DType::Float16: case DType::BFloat16:
    case DType::Int8: case DType::UInt8:
      break;
    default:
      unsupported(ctx.node.label(), ": data type ", dtype_name(X.dtype()), " is not supported");
  }
  dispatch_numeric(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      unsupported(ctx.node.label(), ": bool is not supported");
    } else {
      using C = compute_t<T>;
      const Geometry3& g = s.g3;
      const T* x = X.data<T>();
      T* y = Y.data<T>();
      ctx.parallel_for(s.planes, [&](int64_t begin, int64_t end) {
        for (int64_t pl = begin; pl < end; ++pl) {
          const T* xp = x + pl * g.in_size();
          T* yp = y + pl * g.out_size();
          for_each_window(g, [&](int64_t o, int64_t sd, int64_t sh, int64_t sw) {
            C best = std::numeric_limits<C>::lowest();
            int64_t bd = -1, bh = -1, bw = -1;
            for_each_tap(g, sd, sh, sw, [&](int64_t d, int64_t h, int64_t w) {
              C v = static_cast<C>(xp[(d * g.in[1] + h) * g.in[2] + w]);
              if (bd < 0 || v > best) {
                best = v;
                bd = d, bh = h, bw = w;
              }
            });
            yp[o] = static_cast<T>(best);
            if (idx) {
              int64_t within = bd < 0 ? 0
                               : storage_order == 0 ? (bd * g.in[1] + bh) * g.in[2] + bw
                                                    : bd + bh * g.in[0] + bw * g.in[0] * g.in[1];
              idx[pl * g.out_size() + o] = pl * g.in_size() + within;
            }
          });
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Global pools: one window over all spatial positions.

Dims global_out_dims(const ir::Node& node, const Dims& x) {
  if (x.size() < 3) fail(node.label(), ": input must have rank >= 3, got ", dims_str(x));
  Dims out(x.size(), 1);
  out[0] = x[0];
  out[1] = x[1];
  return out;
}

enum class GlobalKind { Average, Max, Lp };

void global_pool(KernelContext& ctx, GlobalKind kind) {
  const Tensor& X = ctx.input(0);
  Dims out = global_out_dims(ctx.node, X.dims());
  const int64_t planes = out[0] * out[1];
  const int64_t size = planes > 0 ? X.numel() / planes : 0;
  const int64_t p = ctx.node.attr_int("p", 2);
  if (kind == GlobalKind::Lp && p <= 0) fail(ctx.node.label(), ": p must be positive");
  Tensor& Y = ctx.allocate_output(0, X.dtype(), out);
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    ctx.parallel_for(planes, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const T* xp = x + pl * size;
        A r = 0;
        if (kind == GlobalKind::Max) {
          r = size > 0 ? static_cast<A>(xp[0]) : A(0);
          for (int64_t i = 1; i < size; ++i) r = std::max(r, static_cast<A>(xp[i]));
        } else if (kind == GlobalKind::Average) {
          for (int64_t i = 0; i < size; ++i) r += static_cast<A>(xp[i]);
          r = size > 0 ? r / static_cast<A>(size) : A(0);
        } else {
          for (int64_t i = 0; i < size; ++i) {
            A v = std::abs(static_cast<A>(xp[i]));
            r += p == 2 ? v * v : std::pow(v, static_cast<A>(p));
          }
          r = p == 2 ? std::sqrt(r) : std::pow(r, A(1) / static_cast<A>(p));
        }
        y[pl] = static_cast<T>(r);
      }
    });
  });
}

// ---------------------------------------------------------------------------
// MaxUnpool: scatter X into zeros at the flat Indices.

// The shape MaxUnpool infers from kernel, strides and pads (the shape of the
// tensor the indices refer to).
Dims max_unpool_inferred_dims(const ir::Node& node, const Dims& x) {
  if (x.size() < 3) fail(node.label(), ": input must have rank >= 3, got ", dims_str(x));
  size_t nsp = x.size() - 2;
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  if (kernel.size() != nsp) fail(node.label(), ": kernel_shape must have ", nsp, " values");
  auto strides = window::spatial_ints(node, "strides", nsp, 1);
  std::vector<int64_t> pads = node.attr_ints("pads");
  if (pads.empty()) pads.assign(2 * nsp, 0);
  if (pads.size() != 2 * nsp) fail(node.label(), ": pads must have ", 2 * nsp, " values");
  Dims out{x[0], x[1]};
  for (size_t i = 0; i < nsp; ++i) {
    int64_t o = (x[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + nsp];
    if (o < 0) fail(node.label(), ": inferred output size ", o, " is negative");
    out.push_back(o);
  }
  return out;
}

// Scatters X into a zero tensor of the inferred shape at the flat Indices;
// an explicit output_shape then embeds that tensor at the origin (zeros after).
void max_unpool_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& X = ctx.input(0);
  const Tensor& I = ctx.input(1);
  if (I.dims() != X.dims())
    fail(node.label(), ": indices shape ", dims_str(I.dims()), " differs from the input ", dims_str(X.dims()));
  if (dtype_is_subbyte(X.dtype()) || X.dtype() == DType::String)
    unsupported(node.label(), ": data type ", dtype_name(X.dtype()), " is not supported");
  Dims inferred = max_unpool_inferred_dims(node, X.dims());
  Dims out = inferred;
  if (ctx.has_input(2)) {
    std::vector<int64_t> shape = ctx.input(2).to_int_vector();
    if (shape.size() != X.rank())
      fail(node.label(), ": output_shape has ", shape.size(), " values, expected ", X.rank());
    out.assign(shape.begin(), shape.end());
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i] < inferred[i])
        fail(node.label(), ": output_shape ", dims_str(out), " is smaller than the inferred ", dims_str(inferred));
  }
  const size_t esize = dtype_storage_bytes(X.dtype(), 1);
  const int64_t total = numel(inferred);
  std::vector<uint8_t> scattered(static_cast<size_t>(total) * esize, 0);
  const auto* xb = static_cast<const uint8_t*>(X.raw());
  for (int64_t i = 0; i < X.numel(); ++i) {
    int64_t j = I.get_int(i);
    if (j < 0 || j >= total) fail(node.label(), ": index ", j, " is outside the output of ", total, " elements");
    std::memcpy(scattered.data() + j * esize, xb + i * esize, esize);
  }
  Tensor& Y = ctx.allocate_output(0, X.dtype(), out);
  auto* yb = static_cast<uint8_t*>(Y.raw());
  std::fill(yb, yb + Y.nbytes(), uint8_t(0));
  // Copy element by element through the inferred index space.
  std::vector<int64_t> ostrides = strides_of(out);
  std::vector<int64_t> idx(inferred.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < idx.size(); ++d) o += idx[d] * ostrides[d];
    std::memcpy(yb + o * esize, scattered.data() + i * esize, esize);
    for (int64_t d = static_cast<int64_t>(idx.size()) - 1; d >= 0; --d) {
      if (++idx[d] < inferred[d]) break;
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------------------
// MaxRoiPool (Caffe semantics: rounded ROI corners, integer bins).

void max_roi_pool_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& X = ctx.input(0);
  const Tensor& R = ctx.input(1);
  if (X.rank() != 4) fail(node.label(), ": input must have rank 4");
  if (R.rank() != 2 || R.dim(1) != 5) fail(node.label(), ": rois must have shape [num_rois, 5]");
  auto pooled = node.attr_ints("pooled_shape");
  if (pooled.size() != 2 || pooled[0] <= 0 || pooled[1] <= 0)
    fail(node.label(), ": pooled_shape must be two positive values");
  const float scale = node.attr_float("spatial_scale", 1.0f);
  const int64_t N = X.dim(0), C = X.dim(1), H = X.dim(2), W = X.dim(3), PH = pooled[0], PW = pooled[1];
  const int64_t rois = R.dim(0);
  Tensor& Y = ctx.allocate_output(0, X.dtype(), {rois, C, PH, PW});
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    for (int64_t r = 0; r < rois; ++r) {
      int64_t n = static_cast<int64_t>(R.get_double(r * 5));
      if (n < 0 || n >= N) fail(node.label(), ": roi batch index ", n, " is out of range");
      int64_t x1 = std::llround(R.get_double(r * 5 + 1) * scale), y1 = std::llround(R.get_double(r * 5 + 2) * scale);
      int64_t x2 = std::llround(R.get_double(r * 5 + 3) * scale), y2 = std::llround(R.get_double(r * 5 + 4) * scale);
      A bin_h = static_cast<A>(std::max<int64_t>(y2 - y1 + 1, 1)) / static_cast<A>(PH);
      A bin_w = static_cast<A>(std::max<int64_t>(x2 - x1 + 1, 1)) / static_cast<A>(PW);
      ctx.parallel_for(C, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          const T* plane = x + (n * C + c) * H * W;
          for (int64_t ph = 0; ph < PH; ++ph)
            for (int64_t pw = 0; pw < PW; ++pw) {
              int64_t hs = std::clamp<int64_t>(static_cast<int64_t>(std::floor(ph * bin_h)) + y1, 0, H);
              int64_t he = std::clamp<int64_t>(static_cast<int64_t>(std::ceil((ph + 1) * bin_h)) + y1, 0, H);
              int64_t ws = std::clamp<int64_t>(static_cast<int64_t>(std::floor(pw * bin_w)) + x1, 0, W);
              int64_t we = std::clamp<int64_t>(static_cast<int64_t>(std::ceil((pw + 1) * bin_w)) + x1, 0, W);
              A best = 0;
              bool any = false;
              for (int64_t h = hs; h < he; ++h)
                for (int64_t w = ws; w < we; ++w) {
                  A v = static_cast<A>(plane[h * W + w]);
                  if (!any || v > best) best = v, any = true;
                }
              y[((r * C + c) * PH + ph) * PW + pw] = static_cast<T>(any ? best : A(0));
            }
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// RoiAlign: bilinear samples on a regular grid in each bin, averaged or maxed.

struct Sample {
  int64_t pos[4];
  double weight[4];
};

void roi_align_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& X = ctx.input(0);
  const Tensor& R = ctx.input(1);
  const Tensor& BI = ctx.input(2);
  if (X.rank() != 4) fail(node.label(), ": input must have rank 4");
  if (R.rank() != 2 || R.dim(1) != 4) fail(node.label(), ": rois must have shape [num_rois, 4]");
  if (BI.numel() != R.dim(0)) fail(node.label(), ": batch_indices must have one value per roi");
  const std::string mode = node.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") fail(node.label(), ": unknown mode '", mode, "'");
  const std::string ctm = node.attr_string("coordinate_transformation_mode", ctx.opset >= 16 ? "half_pixel" : "output_half_pixel");
  if (ctm != "half_pixel" && ctm != "output_half_pixel")
    fail(node.label(), ": unknown coordinate_transformation_mode '", ctm, "'");
  const bool half_pixel = ctm == "half_pixel";
  const int64_t PH = node.attr_int("output_height", 1), PW = node.attr_int("output_width", 1);
  const int64_t sampling_ratio = node.attr_int("sampling_ratio", 0);
  const double scale = node.attr_float("spatial_scale", 1.0f);
  if (PH <= 0 || PW <= 0) fail(node.label(), ": output_height and output_width must be positive");
  const int64_t N = X.dim(0), C = X.dim(1), H = X.dim(2), W = X.dim(3), rois = R.dim(0);
  Tensor& Y = ctx.allocate_output(0, X.dtype(), {rois, C, PH, PW});
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* x = X.data<T>();
    T* y = Y.data<T>();
    if (H == 0 || W == 0) {  // nothing to sample
      std::fill(y, y + Y.numel(), T(0));
      return;
    }
    for (int64_t r = 0; r < rois; ++r) {
      int64_t n = BI.get_int(r);
      if (n < 0 || n >= N) fail(node.label(), ": batch index ", n, " is out of range");
      const double offset = half_pixel ? 0.5 : 0.0;
      double x1 = R.get_double(r * 4) * scale - offset, y1 = R.get_double(r * 4 + 1) * scale - offset;
      double x2 = R.get_double(r * 4 + 2) * scale - offset, y2 = R.get_double(r * 4 + 3) * scale - offset;
      double rw = x2 - x1, rh = y2 - y1;
      if (!half_pixel) rw = std::max(rw, 1.0), rh = std::max(rh, 1.0);
      double bin_h = rh / PH, bin_w = rw / PW;
      int64_t grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(rh / PH));
      int64_t grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(rw / PW));
      grid_h = std::max<int64_t>(grid_h, 0);
      grid_w = std::max<int64_t>(grid_w, 0);
      const int64_t count = std::max<int64_t>(grid_h * grid_w, 1);
      // Sample positions and weights are shared by all channels.
      std::vector<Sample> samples;
      samples.reserve(static_cast<size_t>(PH * PW * grid_h * grid_w));
      for (int64_t ph = 0; ph < PH; ++ph)
        for (int64_t pw = 0; pw < PW; ++pw)
          for (int64_t iy = 0; iy < grid_h; ++iy) {
            double yy = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h;
            for (int64_t ix = 0; ix < grid_w; ++ix) {
              double xx = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w;
              Sample sm{};
              if (yy < -1.0 || yy > H || xx < -1.0 || xx > W) {
                samples.push_back(sm);
                continue;
              }
              double yv = std::max(yy, 0.0), xv = std::max(xx, 0.0);
              int64_t yl = static_cast<int64_t>(yv), xl = static_cast<int64_t>(xv), yh, xh;
              if (yl >= H - 1) yh = yl = H - 1, yv = static_cast<double>(yl);
              else yh = yl + 1;
              if (xl >= W - 1) xh = xl = W - 1, xv = static_cast<double>(xl);
              else xh = xl + 1;
              double ly = yv - yl, lx = xv - xl, hy = 1 - ly, hx = 1 - lx;
              sm.pos[0] = yl * W + xl, sm.pos[1] = yl * W + xh, sm.pos[2] = yh * W + xl, sm.pos[3] = yh * W + xh;
              sm.weight[0] = hy * hx, sm.weight[1] = hy * lx, sm.weight[2] = ly * hx, sm.weight[3] = ly * lx;
              samples.push_back(sm);
            }
          }
      const int64_t per_bin = grid_h * grid_w;
      ctx.parallel_for(C, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          const T* plane = x + (n * C + c) * H * W;
          for (int64_t b = 0; b < PH * PW; ++b) {
            A out = 0;
            for (int64_t s = 0; s < per_bin; ++s) {
              const Sample& sm = samples[b * per_bin + s];
              A v[4];
              for (int k = 0; k < 4; ++k) v[k] = static_cast<A>(sm.weight[k]) * static_cast<A>(plane[sm.pos[k]]);
              if (mode == "avg") {
                out += v[0] + v[1] + v[2] + v[3];
              } else {
                A m = std::max(std::max(std::max(v[0], v[1]), v[2]), v[3]);
                out = s == 0 ? m : std::max(out, m);
              }
            }
            if (mode == "avg") out /= static_cast<A>(count);
            y[(r * C + c) * PH * PW + b] = static_cast<T>(out);
          }
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Inference and cost

std::vector<ir::ValueType> infer_pool(InferContext& ctx) {
  const ir::ValueType& x = ctx.inputs[0];
  if (!x.shape.rank_known || x.shape.rank() < 3) {
    std::vector<ir::ValueType> r(ctx.num_outputs, tensor_type(x.dtype, Shape::unknown_rank()));
    if (r.size() > 1) r[1].dtype = DType::Int64;
    return r;
  }
  std::vector<int64_t> kernel = ctx.node.attr_ints("kernel_shape");
  size_t nsp = x.shape.rank() - 2;
  std::vector<int64_t> out(nsp, -1);
  if (kernel.size() == nsp)
    out = window::resolve(ctx.node, window::spatial_of(x.shape), kernel, ctx.node.attr_int("ceil_mode", 0) != 0).out;
  Shape s = window::output_shape(ctx, x.shape.dims[0], x.shape.dims[1], out);
  std::vector<ir::ValueType> r{tensor_type(x.dtype, s)};
  if (ctx.num_outputs > 1) r.push_back(tensor_type(DType::Int64, s));
  return r;
}

std::vector<ir::ValueType> infer_global(InferContext& ctx) {
  const ir::ValueType& x = ctx.inputs[0];
  if (!x.shape.rank_known || x.shape.rank() < 3) return {tensor_type(x.dtype, Shape::unknown_rank())};
  std::vector<Dim> dims(x.shape.rank(), Dim(1));
  dims[0] = x.shape.dims[0];
  dims[1] = x.shape.dims[1];
  return {tensor_type(x.dtype, Shape(dims))};
}

std::vector<ir::ValueType> infer_max_unpool(InferContext& ctx) {
  const ir::ValueType& x = ctx.inputs[0];
  if (ctx.has_input(2)) {
    if (const Tensor* v = ctx.value(2)) {
      auto s = v->to_int_vector();
      return {tensor_type(x.dtype, Shape::from(Dims(s.begin(), s.end())))};
    }
    const Shape& ss = ctx.inputs[2].shape;
    if (ss.rank_known && ss.rank() == 1 && ss.dims[0].known()) {
      std::vector<Dim> dims;
      for (int64_t i = 0; i < ss.dims[0].value; ++i) dims.push_back(ctx.fresh_dim());
      return {tensor_type(x.dtype, Shape(dims))};
    }
    return {tensor_type(x.dtype, Shape::unknown_rank())};
  }
  if (!x.shape.rank_known || x.shape.rank() < 3) return {tensor_type(x.dtype, Shape::unknown_rank())};
  size_t nsp = x.shape.rank() - 2;
  std::vector<int64_t> kernel = ctx.node.attr_ints("kernel_shape");
  auto strides = window::spatial_ints(ctx.node, "strides", nsp, 1);
  std::vector<int64_t> pads = ctx.node.attr_ints("pads");
  if (pads.size() != 2 * nsp) pads.assign(2 * nsp, 0);
  std::vector<int64_t> out(nsp, -1);
  for (size_t i = 0; i < nsp && kernel.size() == nsp; ++i) {
    int64_t in = x.shape.dims[2 + i].value;
    if (in >= 0) out[i] = (in - 1) * strides[i] + kernel[i] - pads[i] - pads[i + nsp];
  }
  return {tensor_type(x.dtype, window::output_shape(ctx, x.shape.dims[0], x.shape.dims[1], out))};
}

std::vector<ir::ValueType> infer_roi(InferContext& ctx, int64_t ph, int64_t pw) {
  const ir::ValueType& x = ctx.inputs[0];
  const Shape& rs = ctx.inputs[1].shape;
  Dim rois = rs.rank_known && rs.rank() == 2 ? rs.dims[0] : ctx.fresh_dim();
  Dim ch = x.shape.rank_known && x.shape.rank() == 4 ? x.shape.dims[1] : ctx.fresh_dim();
  return {tensor_type(x.dtype, Shape({rois, ch, Dim(ph), Dim(pw)}))};
}

// Window pools: one FLOP per tap per output element.
Cost pool_cost(const CostContext& c) {
  Cost k = default_cost(c);
  auto kernel = c.node.attr_ints("kernel_shape");
  double taps = 1;
  for (int64_t v : kernel) taps *= static_cast<double>(v);
  if (!c.outputs.empty() && c.outputs[0].shape.rank_known && c.outputs[0].shape.fully_known())
    k.flops = taps * static_cast<double>(numel(c.outputs[0].shape.concrete()));
  return k;
}

// Global pools: one FLOP per input element.
Cost global_cost(const CostContext& c) {
  Cost k = default_cost(c);
  if (!c.inputs.empty() && c.inputs[0].shape.rank_known && c.inputs[0].shape.fully_known())
    k.flops = static_cast<double>(numel(c.inputs[0].shape.concrete()));
  return k;
}


// ---------------------------------------------------------------------------
// Gradients (com.duet, written by train::add_gradients): dX from dY and X for
// the pooling attributes of the forward node. MaxPoolGrad routes each output
// gradient to the tap the forward pass chose (the first maximum in tap order);
// AveragePoolGrad spreads it over the window's taps with the forward divisor.

// The float32/float64 operands of a pooling gradient: dY (0) and X (1).
template <typename Fn>
void pool_grad(KernelContext& ctx, Fn&& per_plane) {
  const Tensor& dY = ctx.input(0);
  const Tensor& X = ctx.input(1);
  PoolSetup s = pool_setup(ctx.node, X.dims());
  if (dY.dims() != s.out_dims)
    fail(ctx.node.label(), ": gradient ", dY.describe(), " does not match the pooled shape ", dims_str(s.out_dims));
  if (dY.dtype() != X.dtype() || (X.dtype() != DType::Float32 && X.dtype() != DType::Float64))
    unsupported(ctx.node.label(), ": gradients are float32 or float64, got ", dY.describe(), " and ", X.describe());
  Tensor& dX = ctx.allocate_output(0, X.dtype(), X.dims());
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const Geometry3& g = s.g3;
      ctx.parallel_for(s.planes, [&](int64_t begin, int64_t end) {
        for (int64_t pl = begin; pl < end; ++pl) {
          T* dx = dX.data<T>() + pl * g.in_size();
          std::fill(dx, dx + g.in_size(), T(0));
          per_plane(s, X.data<T>() + pl * g.in_size(), dY.data<T>() + pl * g.out_size(), dx);
        }
      });
    }
  });
}

void max_pool_grad_kernel(KernelContext& ctx) {
  pool_grad(ctx, [](const PoolSetup& s, const auto* x, const auto* dy, auto* dx) {
    const Geometry3& g = s.g3;
    for_each_window(g, [&](int64_t o, int64_t sd, int64_t sh, int64_t sw) {
      int64_t best = -1;
      for_each_tap(g, sd, sh, sw, [&](int64_t d, int64_t h, int64_t w) {
        const int64_t i = (d * g.in[1] + h) * g.in[2] + w;
        if (best < 0 || x[i] > x[best]) best = i;
      });
      if (best >= 0) dx[best] += dy[o];
    });
  });
}

void average_pool_grad_kernel(KernelContext& ctx) {
  const bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  pool_grad(ctx, [&](const PoolSetup& s, const auto* /*x*/, const auto* dy, auto* dx) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(*dy)>>;
    const Geometry3& g = s.g3;
    for_each_window(g, [&](int64_t o, int64_t sd, int64_t sh, int64_t sw) {
      int64_t count = 0;
      for_each_tap(g, sd, sh, sw, [&](int64_t, int64_t, int64_t) { ++count; });
      if (include_pad) count = taps_in_padded(s.geom, g, sd, sh, sw);
      if (count == 0) return;
      const T share = dy[o] / static_cast<T>(count);
      for_each_tap(g, sd, sh, sw, [&](int64_t d, int64_t h, int64_t w) { dx[(d * g.in[1] + h) * g.in[2] + w] += share; });
    });
  });
}

}  // namespace

void register_pool(Registry& r) {
  r.add({.name = "AveragePool", .kernel = average_pool_kernel, .infer = infer_pool, .cost = pool_cost});
  r.add({.name = "MaxPool", .kernel = max_pool_kernel, .infer = infer_pool, .cost = pool_cost});
  r.add({.name = "LpPool", .kernel = lp_pool_kernel, .infer = infer_pool, .cost = pool_cost});
  r.add({.name = "GlobalAveragePool", .kernel = [](KernelContext& c) { global_pool(c, GlobalKind::Average); },
         .infer = infer_global, .cost = global_cost});
  r.add({.name = "GlobalMaxPool", .kernel = [](KernelContext& c) { global_pool(c, GlobalKind::Max); },
         .infer = infer_global, .cost = global_cost});
  r.add({.name = "GlobalLpPool", .kernel = [](KernelContext& c) { global_pool(c, GlobalKind::Lp); },
         .infer = infer_global, .cost = global_cost});
  r.add({.name = "MaxUnpool", .kernel = max_unpool_kernel, .infer = infer_max_unpool});
  r.add({.name = "MaxRoiPool", .kernel = max_roi_pool_kernel,
         .infer = [](InferContext& c) {
           auto p = c.node.attr_ints("pooled_shape");
           return infer_roi(c, p.size() == 2 ? p[0] : -1, p.size() == 2 ? p[1] : -1);
         }});
  r.add({.name = "RoiAlign", .kernel = roi_align_kernel,
         .infer = [](InferContext& c) {
           return infer_roi(c, c.node.attr_int("output_height", 1), c.node.attr_int("output_width", 1));
         }});
  r.add({.domain = "com.duet", .name = "MaxPoolGrad", .kernel = max_pool_grad_kernel, .infer = infer_same_as(1)});
  r.add({.domain = "com.duet", .name = "AveragePoolGrad", .kernel = average_pool_grad_kernel,
         .infer = infer_same_as(1)});
}

}  // namespace duet::ops
