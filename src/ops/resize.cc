// Resampling ops: Resize (opsets 10-19), Upsample (deprecated), GridSample,
// AffineGrid.
//
// Resize is separable: every resized axis gets a plan that lists, for each
// output index, a fixed number of (input index, weight) taps. Plans are built
// once per call; the kernels then only gather and accumulate.
#include <cmath>
#include <limits>
#include <type_traits>

#include "duet/core/error.h"
#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

template <typename T>
inline double load(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else if constexpr (std::is_integral_v<T>) return static_cast<double>(v);
  else return static_cast<float>(v);
}

// Stores an interpolated value: integers round half to even and saturate.
template <typename T>
inline T store(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else if constexpr (std::is_same_v<T, bool>) {
    return std::nearbyint(v) != 0;
  } else if constexpr (std::is_integral_v<T>) {
    const double r = std::nearbyint(v);
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    if (!(r >= lo)) return std::numeric_limits<T>::lowest();
    if (r >= hi) return std::numeric_limits<T>::max();
    return static_cast<T>(r);
  } else {
    return T(static_cast<float>(v));
  }
}

// ============================================================================
// Resize / Upsample
// ============================================================================

enum class Mode { Nearest, Linear, Cubic };
enum class Coord {
  HalfPixel,
  HalfPixelSymmetric,
  PytorchHalfPixel,
  AlignCorners,
  Asymmetric,
  TfCropAndResize,
  TfHalfPixelForNn,  // opset 11 only
};
enum class NearestRule { RoundPreferFloor, RoundPreferCeil, Floor, Ceil, Simple };

struct ResizeConfig {
  Mode mode = Mode::Nearest;
  Coord coord = Coord::HalfPixel;
  NearestRule nearest = NearestRule::RoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool antialias = false;
  double extrapolation = 0.0;
};

// Per-axis resampling plan: taps (index, weight) per output index.
struct AxisPlan {
  int64_t in = 0, out = 0, taps = 0;
  std::vector<int64_t> index;    // out * taps, clamped into [0, in)
  std::vector<double> weight;    // out * taps
  std::vector<uint8_t> outside;  // tf_crop_and_resize: output takes the extrapolation value
  bool any_outside = false;
  bool identity = false;
};

Mode parse_mode(const ir::Node& node, const std::string& s) {
  if (s == "nearest") return Mode::Nearest;
  if (s == "linear" || s == "bilinear" || s == "trilinear") return Mode::Linear;
  if (s == "cubic" || s == "bicubic") return Mode::Cubic;
  unsupported(node.label(), ": mode '", s, "' is not supported");
}

Coord parse_coord(const ir::Node& node, const std::string& s) {
  if (s == "half_pixel") return Coord::HalfPixel;
  if (s == "half_pixel_symmetric") return Coord::HalfPixelSymmetric;
  if (s == "pytorch_half_pixel") return Coord::PytorchHalfPixel;
  if (s == "align_corners") return Coord::AlignCorners;
  if (s == "asymmetric") return Coord::Asymmetric;
  if (s == "tf_crop_and_resize") return Coord::TfCropAndResize;
  if (s == "tf_half_pixel_for_nn") return Coord::TfHalfPixelForNn;
  fail(node.label(), ": unknown coordinate_transformation_mode '", s, "'");
}

NearestRule parse_nearest(const ir::Node& node, const std::string& s) {
  if (s == "round_prefer_floor") return NearestRule::RoundPreferFloor;
  if (s == "round_prefer_ceil") return NearestRule::RoundPreferCeil;
  if (s == "floor") return NearestRule::Floor;
  if (s == "ceil") return NearestRule::Ceil;
  fail(node.label(), ": unknown nearest_mode '", s, "'");
}

// Upsample and Resize-10 have neither coordinate modes nor nearest modes:
// asymmetric coordinates, and the nearest pixel is floor when enlarging and
// ceil when shrinking (what runtimes do for these opsets).
ResizeConfig legacy_config(const ir::Node& node, const std::string& mode) {
  ResizeConfig c;
  c.mode = parse_mode(node, mode);
  if (c.mode == Mode::Cubic) unsupported(node.label(), ": cubic mode needs Resize opset 11 or later");
  c.coord = Coord::Asymmetric;
  c.nearest = NearestRule::Simple;
  return c;
}

ResizeConfig resize_config(const ir::Node& n, int64_t opset) {
  if (opset < 11) return legacy_config(n, n.attr_string("mode", "nearest"));
  ResizeConfig c;
  c.mode = parse_mode(n, n.attr_string("mode", "nearest"));
  c.coord = parse_coord(n, n.attr_string("coordinate_transformation_mode", "half_pixel"));
  c.nearest = parse_nearest(n, n.attr_string("nearest_mode", "round_prefer_floor"));
  c.cubic_a = n.attr_float("cubic_coeff_a", -0.75f);
  c.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  c.extrapolation = n.attr_float("extrapolation_value", 0.0f);
  c.antialias = n.attr_int("antialias", 0) != 0;
  return c;
}

// Maps output index y to a (fractional) input coordinate. `out_w` is
// scale * in (not rounded), as the ONNX reference defines it.
double source_coordinate(Coord m, double y, double scale, int64_t in, int64_t out_int, double roi_lo,
                         double roi_hi) {
  const double out_w = scale * static_cast<double>(in);
  const double len = static_cast<double>(in);
  switch (m) {
    case Coord::AlignCorners: return out_w == 1 ? 0.0 : y * (len - 1) / (out_w - 1);
    case Coord::Asymmetric: return y / scale;
    case Coord::TfCropAndResize: {
      const double x = out_w == 1 ? (roi_hi - roi_lo) * (len - 1) / 2 : y * (roi_hi - roi_lo) * (len - 1) / (out_w - 1);
      return x + roi_lo * (len - 1);
    }
    case Coord::PytorchHalfPixel: return out_w == 1 ? -0.5 : (y + 0.5) / scale - 0.5;
    case Coord::HalfPixel: return (y + 0.5) / scale - 0.5;
    case Coord::TfHalfPixelForNn: return (y + 0.5) / scale;
    case Coord::HalfPixelSymmetric: {
      const double adjustment = static_cast<double>(out_int) / out_w;
      const double offset = len / 2 * (1 - adjustment);
      return offset + (y + 0.5) / scale - 0.5;
    }
  }
  return 0.0;
}

double cubic_kernel(double d, double a) {
  d = std::fabs(d);
  if (d <= 1) return ((a + 2) * d - (a + 3)) * d * d + 1;
  if (d < 2) return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
  return 0.0;
}

double linear_kernel(double d) { return std::max(0.0, 1.0 - std::fabs(d)); }

int64_t nearest_index(NearestRule rule, double x, bool downsampling) {
  const double fl = std::floor(x);
  if (x == fl) return static_cast<int64_t>(fl);
  const double frac = x - fl;
  bool up = false;
  switch (rule) {
    case NearestRule::RoundPreferFloor: up = frac > 0.5; break;
    case NearestRule::RoundPreferCeil: up = frac >= 0.5; break;
    case NearestRule::Floor: up = false; break;
    case NearestRule::Ceil: up = true; break;
    case NearestRule::Simple: up = downsampling; break;
  }
  return static_cast<int64_t>(fl) + (up ? 1 : 0);
}

AxisPlan make_identity_plan(int64_t n) {
  AxisPlan p;
  p.in = p.out = n;
  p.taps = 1;
  p.identity = true;
  p.index.resize(static_cast<size_t>(n));
  p.weight.assign(static_cast<size_t>(n), 1.0);
  for (int64_t i = 0; i < n; ++i) p.index[static_cast<size_t>(i)] = i;
  p.outside.assign(static_cast<size_t>(n), 0);
  return p;
}

AxisPlan make_axis_plan(const ResizeConfig& c, int64_t in, int64_t out, double scale, double roi_lo, double roi_hi) {
  const bool default_roi = std::fabs(roi_lo) <= 1e-9 && std::fabs(roi_hi - 1) <= 1e-9;
  // Like the reference: an axis that keeps its size at scale 1 is untouched.
  if (out == in && std::fabs(scale - 1) <= 1e-9 && (c.coord != Coord::TfCropAndResize || default_roi))
    return make_identity_plan(in);
  AxisPlan p;
  p.in = in;
  p.out = out;
  p.outside.assign(static_cast<size_t>(out), 0);
  // Kernel footprint: radius 1 (linear) or 2 (cubic), widened by 1/scale when antialiasing a downscale.
  const double radius = c.mode == Mode::Cubic ? 2.0 : 1.0;
  const double support_scale = c.antialias ? std::min(scale, 1.0) : 1.0;
  const int64_t start = c.mode == Mode::Nearest ? 0 : static_cast<int64_t>(std::floor(-radius / support_scale)) + 1;
  p.taps = c.mode == Mode::Nearest ? 1 : 2 - 2 * start;
  p.index.resize(static_cast<size_t>(out * p.taps));
  p.weight.resize(static_cast<size_t>(out * p.taps));
  std::vector<double> w(static_cast<size_t>(p.taps));
  std::vector<int64_t> idx(static_cast<size_t>(p.taps));
  for (int64_t y = 0; y < out; ++y) {
    double x = source_coordinate(c.coord, static_cast<double>(y), scale, in, out, roi_lo, roi_hi);
    if (c.coord == Coord::TfCropAndResize && !(x >= 0 && x <= static_cast<double>(in - 1))) {
      p.outside[static_cast<size_t>(y)] = 1;
      p.any_outside = true;
    }
    // Far-out coordinates (absurd roi) only ever reach clamped edge taps;
    // bounding them keeps the integer tap arithmetic defined.
    const double bound = 2.0 * static_cast<double>(in + p.taps + 2);
    x = std::isnan(x) ? 0.0 : std::clamp(x, -bound, bound);
    if (c.mode == Mode::Nearest) {
      w[0] = 1.0;
      idx[0] = nearest_index(c.nearest, x, scale < 1.0);
    } else {
      // Taps sit at base + j; the left neighbour is preferred, so an exact
      // integer coordinate is treated as ratio 1 from the pixel before it.
      double base = std::floor(x);
      double ratio = x - base;
      if (ratio == 0) {
        base -= 1;
        ratio = 1;
      }
      double sum = 0;
      for (int64_t k = 0; k < p.taps; ++k) {
        const double d = (static_cast<double>(start + k) - ratio) * support_scale;
        w[static_cast<size_t>(k)] = c.mode == Mode::Cubic ? cubic_kernel(d, c.cubic_a) : linear_kernel(d);
        idx[static_cast<size_t>(k)] = static_cast<int64_t>(base) + start + k;
        sum += w[static_cast<size_t>(k)];
      }
      if (c.antialias && sum != 0)
        for (double& v : w) v /= sum;
      if (c.exclude_outside) {
        double kept = 0;
        for (int64_t k = 0; k < p.taps; ++k) {
          if (idx[static_cast<size_t>(k)] < 0 || idx[static_cast<size_t>(k)] >= in) w[static_cast<size_t>(k)] = 0;
          kept += w[static_cast<size_t>(k)];
        }
        if (kept != 0)
          for (double& v : w) v /= kept;
      }
    }
    for (int64_t k = 0; k < p.taps; ++k) {
      const size_t o = static_cast<size_t>(y * p.taps + k);
      p.index[o] = std::clamp<int64_t>(idx[static_cast<size_t>(k)], 0, in - 1);
      p.weight[o] = w[static_cast<size_t>(k)];
    }
  }
  return p;
}

// Output sizes and per-axis scales from scales or sizes (already expanded to
// every axis), applying keep_aspect_ratio_policy over the listed axes.
struct ResizeShape {
  Dims out;
  std::vector<double> scale;
};

ResizeShape resolve_shape(const ir::Node& node, const Dims& in, const std::vector<double>* scales,
                          const std::vector<int64_t>* sizes, const std::vector<int64_t>& axes,
                          const std::string& policy) {
  ResizeShape r;
  const size_t rank = in.size();
  r.out = in;
  r.scale.assign(rank, 1.0);
  if (sizes) {
    for (size_t i = 0; i < rank; ++i) {
      r.out[i] = (*sizes)[i];
      if (r.out[i] < 0) fail(node.label(), ": negative output size ", r.out[i]);
      r.scale[i] = in[i] == 0 ? 1.0 : static_cast<double>(r.out[i]) / static_cast<double>(in[i]);
    }
    if (policy != "stretch") {
      if (policy != "not_larger" && policy != "not_smaller")
        fail(node.label(), ": unknown keep_aspect_ratio_policy '", policy, "'");
      double s = policy == "not_larger" ? std::numeric_limits<double>::infinity() : 0.0;
      for (int64_t a : axes)
        s = policy == "not_larger" ? std::min(s, r.scale[static_cast<size_t>(a)]) : std::max(s, r.scale[static_cast<size_t>(a)]);
      for (int64_t a : axes) {
        const size_t i = static_cast<size_t>(a);
        r.scale[i] = s;
        r.out[i] = static_cast<int64_t>(s * static_cast<double>(in[i]) + 0.5);
      }
    }
  } else {
    for (size_t i = 0; i < rank; ++i) {
      r.scale[i] = (*scales)[i];
      if (!(r.scale[i] > 0) || !std::isfinite(r.scale[i]))
        fail(node.label(), ": scales must be positive and finite, got ", r.scale[i]);
      const double size = std::floor(r.scale[i] * static_cast<double>(in[i]));
      if (size > 1e12) fail(node.label(), ": scale ", r.scale[i], " gives an unreasonable output size");
      r.out[i] = static_cast<int64_t>(size);
    }
  }
  return r;
}

// Resamples one axis of a double buffer laid out as [outer, in, inner].
void resample_axis(const KernelContext& ctx, const std::vector<double>& src, std::vector<double>& dst, int64_t outer,
                   int64_t inner, const AxisPlan& p, double extrapolation) {
  dst.assign(static_cast<size_t>(outer * p.out * inner), 0.0);
  ctx.parallel_for(outer, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const double* s = src.data() + o * p.in * inner;
      double* d = dst.data() + o * p.out * inner;
      for (int64_t y = 0; y < p.out; ++y) {
        double* row = d + y * inner;
        if (p.outside[static_cast<size_t>(y)]) {
          std::fill(row, row + inner, extrapolation);
          continue;
        }
        for (int64_t k = 0; k < p.taps; ++k) {
          const double w = p.weight[static_cast<size_t>(y * p.taps + k)];
          if (w == 0) continue;
          const double* srow = s + p.index[static_cast<size_t>(y * p.taps + k)] * inner;
          for (int64_t i = 0; i < inner; ++i) row[i] += w * srow[i];
        }
      }
    }
  });
}

// General N-D resize: one separable pass per non-identity axis in double.
template <typename T>
void resize_generic(const KernelContext& ctx, const Tensor& x, Tensor& y, const std::vector<AxisPlan>& plans,
                    double extrapolation) {
  const T* xs = x.data<T>();
  std::vector<double> cur(static_cast<size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) cur[static_cast<size_t>(i)] = load(xs[i]);
  Dims shape = x.dims();
  std::vector<double> next;
  for (size_t a = 0; a < plans.size(); ++a) {
    if (plans[a].identity) continue;
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < a; ++i) outer *= shape[i];
    for (size_t i = a + 1; i < shape.size(); ++i) inner *= shape[i];
    resample_axis(ctx, cur, next, outer, inner, plans[a], extrapolation);
    cur.swap(next);
    shape[a] = plans[a].out;
  }
  T* ys = y.data<T>();
  for (int64_t i = 0; i < y.numel(); ++i) ys[i] = store<T>(cur[static_cast<size_t>(i)]);
}

// Float32 resize of the two innermost axes (NCHW images): one plane per task,
// indices and float weights precomputed. Nearest is a pure gather that copies
// repeated rows; other modes run a horizontal pass over the input rows into a
// scratch plane, then a vertical pass whose inner loop is contiguous.
void resize_planes_f32(const KernelContext& ctx, const Tensor& x, Tensor& y, const AxisPlan& ph,
                       const AxisPlan& pw) {
  const int64_t ih = ph.in, iw = pw.in, oh = ph.out, ow = pw.out;
  const int64_t planes = ih * iw == 0 ? 0 : x.numel() / (ih * iw);
  const std::vector<float> wh(ph.weight.begin(), ph.weight.end());
  const std::vector<float> ww(pw.weight.begin(), pw.weight.end());
  const int64_t th = ph.taps, tw = pw.taps;
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  if (th == 1 && tw == 1) {
    ctx.parallel_for(planes, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const float* s = src + pl * ih * iw;
        float* d = dst + pl * oh * ow;
        for (int64_t oy = 0; oy < oh; ++oy, d += ow) {
          if (oy > 0 && ph.index[static_cast<size_t>(oy)] == ph.index[static_cast<size_t>(oy - 1)]) {
            std::copy(d - ow, d, d);
            continue;
          }
          const float* row = s + ph.index[static_cast<size_t>(oy)] * iw;
          for (int64_t ox = 0; ox < ow; ++ox) d[ox] = row[pw.index[static_cast<size_t>(ox)]];
        }
      }
    });
    return;
  }
  ctx.parallel_for(planes, [&](int64_t begin, int64_t end) {
    std::vector<float> horizontal(static_cast<size_t>(ih * ow));
    for (int64_t pl = begin; pl < end; ++pl) {
      const float* s = src + pl * ih * iw;
      float* d = dst + pl * oh * ow;
      for (int64_t iy = 0; iy < ih; ++iy) {
        const float* row = s + iy * iw;
        float* h = horizontal.data() + iy * ow;
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t* idx = pw.index.data() + ox * tw;
          const float* w = ww.data() + ox * tw;
          float acc = 0;
          for (int64_t k = 0; k < tw; ++k) acc += w[k] * row[idx[k]];
          h[ox] = acc;
        }
      }
      for (int64_t oy = 0; oy < oh; ++oy, d += ow) {
        std::fill(d, d + ow, 0.0f);
        for (int64_t k = 0; k < th; ++k) {
          const float w = wh[static_cast<size_t>(oy * th + k)];
          if (w == 0) continue;
          const float* h = horizontal.data() + ph.index[static_cast<size_t>(oy * th + k)] * ow;
          for (int64_t ox = 0; ox < ow; ++ox) d[ox] += w * h[ox];
        }
      }
    }
  });
}

// Expands per-listed-axis values to every axis (default for unlisted axes).
template <typename V>
std::vector<V> expand_to_rank(const std::vector<V>& v, const std::vector<int64_t>& axes, size_t rank,
                              const std::vector<V>& defaults) {
  std::vector<V> full = defaults;
  for (size_t i = 0; i < axes.size(); ++i) full[static_cast<size_t>(axes[i])] = v[i];
  return full;
}

std::vector<int64_t> resize_axes(const ir::Node& node, int64_t opset, size_t rank) {
  std::vector<int64_t> axes;
  if (opset >= 18 && node.has_attr("axes")) {
    for (int64_t a : node.attr_ints("axes")) {
      const int64_t n = normalize_axis(a, static_cast<int64_t>(rank), node);
      if (std::find(axes.begin(), axes.end(), n) != axes.end()) fail(node.label(), ": duplicate axis ", a, " in axes");
      axes.push_back(n);
    }
  } else {
    for (size_t i = 0; i < rank; ++i) axes.push_back(static_cast<int64_t>(i));
  }
  return axes;
}

// Every axis's plan and the output shape, once scales/sizes/roi are known (all per listed axis).
struct ResizePlans {
  std::vector<AxisPlan> plans;
  Dims out;
};

ResizePlans plan_resize(const ir::Node& node, const Dims& x_dims, const ResizeConfig& cfg, const std::vector<int64_t>& axes,
                        const std::vector<double>* scales_in, const std::vector<int64_t>* sizes_in,
                        const std::vector<double>& roi_in, const std::string& policy) {
  const size_t rank = x_dims.size();
  const size_t na = axes.size();
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (scales_in) {
    if (scales_in->size() != na)
      fail(node.label(), ": scales has ", scales_in->size(), " values, expected ", na);
    scales = expand_to_rank(*scales_in, axes, rank, std::vector<double>(rank, 1.0));
  } else {
    if (sizes_in->size() != na) fail(node.label(), ": sizes has ", sizes_in->size(), " values, expected ", na);
    sizes = expand_to_rank(*sizes_in, axes, rank, x_dims);
  }
  std::vector<double> roi_lo(rank, 0.0), roi_hi(rank, 1.0);
  if (cfg.coord == Coord::TfCropAndResize && !roi_in.empty()) {
    if (roi_in.size() != 2 * na)
      fail(node.label(), ": roi has ", roi_in.size(), " values, expected ", 2 * na);
    for (size_t i = 0; i < na; ++i) {
      roi_lo[static_cast<size_t>(axes[i])] = roi_in[i];
      roi_hi[static_cast<size_t>(axes[i])] = roi_in[na + i];
    }
  }
  const ResizeShape rs = resolve_shape(node, x_dims, scales_in ? &scales : nullptr, scales_in ? nullptr : &sizes, axes, policy);
  ResizePlans r;
  r.out = rs.out;
  for (size_t a = 0; a < rank; ++a) {
    if (x_dims[a] == 0 && rs.out[a] != 0) fail(node.label(), ": cannot resize an empty axis ", a, " to ", rs.out[a]);
    r.plans.push_back(rs.out[a] == 0 || x_dims[a] == 0
                          ? make_identity_plan(rs.out[a])
                          : make_axis_plan(cfg, x_dims[a], rs.out[a], rs.scale[a], roi_lo[a], roi_hi[a]));
  }
  return r;
}

// The shared resize driver once scales/sizes/roi are known (all per listed axis).
void run_resize(KernelContext& ctx, const ResizeConfig& cfg, const std::vector<int64_t>& axes,
                const std::vector<double>* scales_in, const std::vector<int64_t>* sizes_in,
                const std::vector<double>& roi_in, const std::string& policy) {
  const Tensor& x = ctx.input(0);
  const size_t rank = x.rank();
  const ResizePlans rp = plan_resize(ctx.node, x.dims(), cfg, axes, scales_in, sizes_in, roi_in, policy);
  const std::vector<AxisPlan>& plans = rp.plans;
  Tensor& y = ctx.allocate_output(0, x.dtype(), rp.out);
  if (y.numel() == 0) return;

  bool planar = x.dtype() == DType::Float32 && rank >= 2;
  for (size_t a = 0; planar && a + 2 < rank; ++a) planar = plans[a].identity;
  for (size_t a = rank >= 2 ? rank - 2 : 0; planar && a < rank; ++a) planar = !plans[a].any_outside;
  if (planar) return resize_planes_f32(ctx, x, y, plans[rank - 2], plans[rank - 1]);
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) unsupported(ctx.node.label(), ": bool input is not supported");
    else resize_generic<T>(ctx, x, y, plans, cfg.extrapolation);
  });
}

std::vector<double> float_values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.get_double(i);
  return v;
}

// Resize inputs by opset: 10 has (X, scales); 11+ (X, roi, scales, sizes),
// where an empty tensor means absent.
struct ResizeInputs {
  const Tensor* roi = nullptr;
  const Tensor* scales = nullptr;
  const Tensor* sizes = nullptr;
};

// `first`: where roi (or scales, before opset 11) sits — 1 for Resize, 2 for ResizeGrad.
ResizeInputs resize_inputs(const KernelContext& ctx, int64_t opset, size_t first = 1) {
  ResizeInputs r;
  auto present = [&](size_t i) -> const Tensor* {
    const Tensor* t = ctx.optional_input(i);
    return t && t->numel() > 0 ? t : nullptr;
  };
  if (opset < 11) {
    r.scales = present(first);
  } else {
    r.roi = present(first);
    r.scales = present(first + 1);
    r.sizes = present(first + 2);
  }
  return r;
}

void resize_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ResizeConfig cfg = resize_config(ctx.node, ctx.opset);
  const ResizeInputs in = resize_inputs(ctx, ctx.opset);
  if (in.scales && in.sizes) fail(ctx.node.label(), ": only one of scales and sizes may be given");
  if (!in.scales && !in.sizes) fail(ctx.node.label(), ": one of scales and sizes must be given");
  const std::vector<int64_t> axes = resize_axes(ctx.node, ctx.opset, x.rank());
  const std::vector<double> roi = in.roi ? float_values(*in.roi) : std::vector<double>{};
  if (cfg.coord == Coord::TfCropAndResize && roi.empty())
    fail(ctx.node.label(), ": tf_crop_and_resize needs the roi input");
  const std::string policy = ctx.opset >= 18 ? ctx.node.attr_string("keep_aspect_ratio_policy", "stretch") : "stretch";
  if (in.scales) {
    const std::vector<double> s = float_values(*in.scales);
    run_resize(ctx, cfg, axes, &s, nullptr, roi, policy);
  } else {
    const std::vector<int64_t> s = in.sizes->to_int_vector();
    run_resize(ctx, cfg, axes, nullptr, &s, roi, policy);
  }
}

// ResizeGrad (com.duet, written by train::add_gradients): inputs dY, X (for
// its shape), then Resize's roi, scales and sizes, with Resize's attributes;
// output dX. Resize is linear in X, one separable pass per axis: dX runs the
// passes backwards, each scattering dY[y] * w into the taps' input indices
// (the transpose of the gather). Extrapolated outputs take no gradient.
void resize_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& x = ctx.input(1);
  DUET_CHECK(dy.dtype() == DType::Float32 || dy.dtype() == DType::Float64, ctx.node.label(), ": ResizeGrad takes float gradients");
  // Gradients need opset 13 or later, whose Resize differs from the latest only by attributes that are
  // absent below 18 (axes, keep_aspect_ratio_policy, antialias): read as the latest.
  const int64_t opset = 19;
  const ResizeConfig cfg = resize_config(ctx.node, opset);
  if (cfg.antialias) unsupported(ctx.node.label(), ": gradient of an antialiased Resize");
  const ResizeInputs in = resize_inputs(ctx, opset, 2);
  const std::vector<int64_t> axes = resize_axes(ctx.node, opset, x.rank());
  const std::vector<double> roi = in.roi ? float_values(*in.roi) : std::vector<double>{};
  const std::string policy = ctx.node.attr_string("keep_aspect_ratio_policy", "stretch");
  DUET_CHECK(in.scales || in.sizes, ctx.node.label(), ": one of scales and sizes must be given");
  ResizePlans rp;
  if (in.scales) {
    const std::vector<double> sc = float_values(*in.scales);
    rp = plan_resize(ctx.node, x.dims(), cfg, axes, &sc, nullptr, roi, policy);
  } else {
    const std::vector<int64_t> sz = in.sizes->to_int_vector();
    rp = plan_resize(ctx.node, x.dims(), cfg, axes, nullptr, &sz, roi, policy);
  }
  DUET_CHECK(rp.out == dy.dims(), ctx.node.label(), ": dY is ", dy.describe(), ", not the shape Resize gives X");
  std::vector<double> cur(static_cast<size_t>(dy.numel()));
  for (int64_t i = 0; i < dy.numel(); ++i) cur[static_cast<size_t>(i)] = dy.get_double(i);
  Dims shape = rp.out;
  std::vector<double> next;
  for (size_t a = rp.plans.size(); a-- > 0;) {
    const AxisPlan& p = rp.plans[a];
    if (p.identity) continue;
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < a; ++i) outer *= shape[i];
    for (size_t i = a + 1; i < shape.size(); ++i) inner *= shape[i];
    next.assign(static_cast<size_t>(outer * p.in * inner), 0.0);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t yy = 0; yy < p.out; ++yy) {
        if (p.outside[static_cast<size_t>(yy)]) continue;
        const double* g = cur.data() + (o * p.out + yy) * inner;
        for (int64_t k = 0; k < p.taps; ++k) {
          const double w = p.weight[static_cast<size_t>(yy * p.taps + k)];
          if (w == 0) continue;
          double* d = next.data() + (o * p.in + p.index[static_cast<size_t>(yy * p.taps + k)]) * inner;
          for (int64_t i = 0; i < inner; ++i) d[i] += w * g[i];
        }
      }
    cur.swap(next);
    shape[a] = p.in;
  }
  Tensor& dx = ctx.allocate_output(0, dy.dtype(), x.dims());
  for (int64_t i = 0; i < dx.numel(); ++i) {
    if (dx.dtype() == DType::Float32) dx.data<float>()[i] = static_cast<float>(cur[static_cast<size_t>(i)]);
    else dx.data<double>()[i] = cur[static_cast<size_t>(i)];
  }
}

void upsample_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ResizeConfig cfg = legacy_config(ctx.node, ctx.node.attr_string("mode", "nearest"));
  std::vector<double> scales;
  if (ctx.opset >= 9) {
    scales = float_values(ctx.input(1));
  } else {
    for (float f : ctx.node.attr_floats("scales")) scales.push_back(f);
    if (scales.empty()) {  // Upsample-1: height_scale / width_scale on NCHW
      scales = {1.0, 1.0, ctx.node.attr_float("height_scale", 1.0f), ctx.node.attr_float("width_scale", 1.0f)};
    }
  }
  std::vector<int64_t> axes;
  for (size_t i = 0; i < x.rank(); ++i) axes.push_back(static_cast<int64_t>(i));
  for (double s : scales)
    if (s < 1) fail(ctx.node.label(), ": Upsample scales must be >= 1, got ", s);
  run_resize(ctx, cfg, axes, &scales, nullptr, {}, "stretch");
}

// Output shape when scales or sizes are constants; otherwise fresh dims.
std::vector<ir::ValueType> resize_infer(InferContext& ctx, bool upsample) {
  const ir::ValueType& xt = ctx.inputs.at(0);
  ir::ValueType out = tensor_type(xt.dtype, Shape::unknown_rank());
  if (!xt.shape.rank_known) return {out};
  const size_t rank = xt.shape.rank();
  out.shape = xt.shape;
  const Tensor *scales_t = nullptr, *sizes_t = nullptr;
  std::vector<double> attr_scales;
  if (upsample) {
    if (ctx.opset >= 9) scales_t = ctx.value(1);
    else for (float f : ctx.node.attr_floats("scales")) attr_scales.push_back(f);
  } else if (ctx.opset < 11) {
    scales_t = ctx.value(1);
  } else {
    scales_t = ctx.value(2);
    sizes_t = ctx.value(3);
    if (scales_t && scales_t->numel() == 0) scales_t = nullptr;
    if (sizes_t && sizes_t->numel() == 0) sizes_t = nullptr;
  }
  const std::vector<int64_t> axes = upsample ? resize_axes(ctx.node, 0, rank) : resize_axes(ctx.node, ctx.opset, rank);
  const std::string policy =
      !upsample && ctx.opset >= 18 ? ctx.node.attr_string("keep_aspect_ratio_policy", "stretch") : "stretch";
  std::vector<double> scales = attr_scales;
  if (scales_t) scales = float_values(*scales_t);
  const bool have_scales = !scales.empty() && scales.size() == axes.size();
  const bool have_sizes = sizes_t && static_cast<size_t>(sizes_t->numel()) == axes.size();
  std::vector<bool> listed(rank, false);
  for (int64_t a : axes) listed[static_cast<size_t>(a)] = true;
  if (have_sizes && policy == "stretch") {
    const std::vector<int64_t> s = sizes_t->to_int_vector();
    for (size_t i = 0; i < axes.size(); ++i) out.shape.dims[static_cast<size_t>(axes[i])] = Dim(s[i]);
    return {out};
  }
  if (have_sizes || have_scales) {
    if (xt.shape.fully_known()) {
      const Dims in = xt.shape.concrete();
      std::vector<int64_t> sz;
      if (have_sizes) sz = expand_to_rank(sizes_t->to_int_vector(), axes, rank, in);
      const std::vector<double> sc = have_scales ? expand_to_rank(scales, axes, rank, std::vector<double>(rank, 1.0))
                                                 : std::vector<double>{};
      const ResizeShape rs = resolve_shape(ctx.node, in, have_scales ? &sc : nullptr, have_scales ? nullptr : &sz,
                                           axes, policy);
      out.shape = Shape::from(rs.out);
      return {out};
    }
    if (have_scales) {
      for (size_t i = 0; i < axes.size(); ++i) {
        Dim& d = out.shape.dims[static_cast<size_t>(axes[i])];
        if (d.known()) d = Dim(static_cast<int64_t>(std::floor(scales[i] * static_cast<double>(d.value))));
        else if (scales[i] != 1.0) d = ctx.fresh_dim();
      }
      return {out};
    }
  }
  for (size_t i = 0; i < rank; ++i)
    if (listed[i]) out.shape.dims[i] = ctx.fresh_dim();
  return {out};
}

// Taps per output element: 1 (nearest), 2^k (linear), 4^k (cubic) over resized axes.
Cost resize_cost(const CostContext& c) {
  Cost k = default_cost(c);
  const std::string mode = c.node.attr_string("mode", "nearest");
  if (mode == "nearest") {
    k.flops = 0;
    return k;
  }
  const double taps_per_axis = (mode == "cubic" || mode == "bicubic") ? 4.0 : 2.0;
  double resized = 2;  // typical: the two spatial axes
  if (!c.inputs.empty() && c.inputs[0].shape.rank_known && !c.outputs.empty() && c.outputs[0].shape.rank_known &&
      c.inputs[0].shape.rank() == c.outputs[0].shape.rank()) {
    resized = 0;
    for (size_t i = 0; i < c.inputs[0].shape.rank(); ++i)
      if (!(c.inputs[0].shape.dims[i] == c.outputs[0].shape.dims[i])) resized += 1;
  }
  k.flops *= 2 * std::pow(taps_per_axis, resized);
  return k;
}

// ============================================================================
// GridSample
// ============================================================================

enum class Padding { Zeros, Border, Reflection };

// Reflects x into [lo, hi] by repeated mirroring at the borders.
template <typename F>
F reflect(F x, F lo, F hi) {
  const F range = hi - lo;
  if (range <= 0) return lo;
  if (x < lo) {
    const F dx = lo - x;
    const int64_t n = static_cast<int64_t>(dx / range);
    const F r = dx - static_cast<F>(n) * range;
    return n % 2 == 0 ? lo + r : hi - r;
  }
  if (x > hi) {
    const F dx = x - hi;
    const int64_t n = static_cast<int64_t>(dx / range);
    const F r = dx - static_cast<F>(n) * range;
    return n % 2 == 0 ? hi - r : lo + r;
  }
  return x;
}

template <typename F>
void cubic_coeffs(F t, F* c) {
  const F a = F(-0.75);
  for (int k = 0; k < 4; ++k) c[k] = static_cast<F>(cubic_kernel(static_cast<double>(t) - (k - 1), a));
}

template <typename T>
void grid_sample_typed(KernelContext& ctx, const Tensor& x, const Tensor& grid, Tensor& y, Mode mode, Padding pad,
                       bool align) {
  // Coordinates follow the input precision (float for 16/32-bit types).
  using F = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const size_t nd = x.rank() - 2;
  const int64_t n = x.dim(0), c = x.dim(1);
  Dims in_sp(x.dims().begin() + 2, x.dims().end());
  const int64_t in_plane = numel(in_sp);
  int64_t out_plane = 1;
  for (size_t i = 1; i + 1 < grid.rank(); ++i) out_plane *= grid.dims()[i];
  const std::vector<int64_t> in_strides = strides_of(in_sp);
  std::vector<F> lo(nd), hi(nd);
  for (size_t i = 0; i < nd; ++i) {
    lo[i] = align ? F(0) : F(-0.5);
    hi[i] = align ? static_cast<F>(in_sp[i] - 1) : static_cast<F>(in_sp[i]) - F(0.5);
  }
  const T* xs = x.data<T>();
  T* ys = y.data<T>();
  const int taps = mode == Mode::Nearest ? 1 : mode == Mode::Linear ? 2 : 4;
  ctx.parallel_for(n * out_plane, [&](int64_t begin, int64_t end) {
    std::vector<F> coord(nd);
    std::vector<int64_t> tap_index(nd * 4);
    std::vector<F> tap_weight(nd * 4);
    std::vector<uint8_t> tap_valid(nd * 4);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / out_plane, o = job % out_plane;
      // grid's last axis lists (x, y[, z]): innermost spatial axis first.
      for (size_t i = 0; i < nd; ++i) {
        const F g = static_cast<F>(load(grid.data<T>()[(b * out_plane + o) * static_cast<int64_t>(nd) + static_cast<int64_t>(nd - 1 - i)]));
        const F len = static_cast<F>(in_sp[i]);
        F v = align ? (g + 1) / 2 * (len - 1) : ((g + 1) * len - 1) / 2;
        if (mode == Mode::Nearest) v = std::nearbyint(v);
        if (v < lo[i] || v > hi[i]) {
          if (pad == Padding::Border) v = std::clamp(v, F(0), len - 1);
          else if (pad == Padding::Reflection) v = reflect(v, lo[i], hi[i]);
        }
        // NaN or far-out coordinates only reach padding; bound them so the
        // integer tap arithmetic below stays defined.
        const F bound = 2 * (len + 4);
        coord[i] = std::isnan(v) ? -bound : std::clamp(v, -bound, bound);
      }
      // Per-axis taps; out-of-range taps read zero, clamp or reflect.
      for (size_t i = 0; i < nd; ++i) {
        const int64_t len = in_sp[i];
        int64_t first;
        F w[4] = {1, 0, 0, 0};
        if (mode == Mode::Nearest) {
          first = static_cast<int64_t>(coord[i]);
        } else {
          const F fl = std::floor(coord[i]);
          const F t = coord[i] - fl;
          if (mode == Mode::Linear) {
            first = static_cast<int64_t>(fl);
            w[0] = 1 - t;
            w[1] = t;
          } else {
            first = static_cast<int64_t>(fl) - 1;
            cubic_coeffs(t, w);
          }
        }
        for (int k = 0; k < taps; ++k) {
          int64_t p = first + k;
          bool valid = true;
          if (p < 0 || p >= len) {
            if (pad == Padding::Zeros) valid = false;
            else if (pad == Padding::Border) p = std::clamp<int64_t>(p, 0, len - 1);
            else p = std::clamp<int64_t>(static_cast<int64_t>(reflect(static_cast<F>(p), lo[i], hi[i])), 0, len - 1);
          }
          tap_index[i * 4 + static_cast<size_t>(k)] = p;
          tap_weight[i * 4 + static_cast<size_t>(k)] = w[k];
          tap_valid[i * 4 + static_cast<size_t>(k)] = valid;
        }
      }
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* plane = xs + (b * c + ch) * in_plane;
        // Sum over the tap grid in row-major tap order (innermost axis fastest).
        F acc = 0;
        int64_t total = 1;
        for (size_t i = 0; i < nd; ++i) total *= taps;
        for (int64_t t = 0; t < total; ++t) {
          int64_t rem = t, off = 0;
          F w = 1;
          bool valid = true;
          for (int64_t i = static_cast<int64_t>(nd) - 1; i >= 0; --i) {
            const size_t k = static_cast<size_t>(i) * 4 + static_cast<size_t>(rem % taps);
            rem /= taps;
            w *= tap_weight[k];
            valid = valid && tap_valid[k];
            off += tap_index[k] * in_strides[static_cast<size_t>(i)];
          }
          if (valid && w != 0) acc += w * static_cast<F>(load(plane[off]));
        }
        ys[(b * c + ch) * out_plane + o] = store<T>(static_cast<double>(acc));
      }
    }
  });
}

void grid_sample_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& grid = ctx.input(1);
  if (x.rank() < 3) fail(ctx.node.label(), ": X must have rank >= 3, got ", x.describe());
  const size_t nd = x.rank() - 2;
  if (grid.rank() != x.rank() || grid.dim(0) != x.dim(0) || grid.dims().back() != static_cast<int64_t>(nd))
    fail(ctx.node.label(), ": grid ", grid.describe(), " does not match X ", x.describe(),
         " (expected N x spatial... x ", nd, ")");
  if (grid.dtype() != x.dtype())
    unsupported(ctx.node.label(), ": grid type ", dtype_name(grid.dtype()), " differs from X type ", dtype_name(x.dtype()));
  const std::string mode_s = ctx.node.attr_string("mode", ctx.opset >= 20 ? "linear" : "bilinear");
  const Mode mode = parse_mode(ctx.node, mode_s);
  const std::string pad_s = ctx.node.attr_string("padding_mode", "zeros");
  Padding pad;
  if (pad_s == "zeros") pad = Padding::Zeros;
  else if (pad_s == "border") pad = Padding::Border;
  else if (pad_s == "reflection") pad = Padding::Reflection;
  else fail(ctx.node.label(), ": unknown padding_mode '", pad_s, "'");
  const bool align = ctx.node.attr_int("align_corners", 0) != 0;
  for (size_t i = 2; i < x.rank(); ++i)
    if (x.dim(static_cast<int>(i)) == 0) fail(ctx.node.label(), ": X has an empty spatial axis: ", x.describe());
  Dims out{x.dim(0), x.dim(1)};
  for (size_t i = 1; i + 1 < grid.rank(); ++i) out.push_back(grid.dims()[i]);
  Tensor& y = ctx.allocate_output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    grid_sample_typed<T>(ctx, x, grid, y, mode, pad, align);
  });
}

std::vector<ir::ValueType> grid_sample_infer(InferContext& ctx) {
  const ir::ValueType& xt = ctx.inputs.at(0);
  const ir::ValueType& gt = ctx.inputs.at(1);
  if (!xt.shape.rank_known || !gt.shape.rank_known || gt.shape.rank() < 2)
    return {tensor_type(xt.dtype, Shape::unknown_rank())};
  std::vector<Dim> d;
  d.push_back(xt.shape.rank() > 0 ? xt.shape.dims[0] : gt.shape.dims[0]);
  d.push_back(xt.shape.rank() > 1 ? xt.shape.dims[1] : ctx.fresh_dim());
  for (size_t i = 1; i + 1 < gt.shape.rank(); ++i) d.push_back(gt.shape.dims[i]);
  return {tensor_type(xt.dtype, Shape(d))};
}

// ============================================================================
// AffineGrid
// ============================================================================

// grid[n, (d,) h, w] = theta[n] @ (x, y, (z,) 1) with normalized base coordinates.
void affine_grid_kernel(KernelContext& ctx) {
  const Tensor& theta = ctx.input(0);
  const std::vector<int64_t> size = ctx.input(1).to_int_vector();
  const bool align = ctx.node.attr_int("align_corners", 0) != 0;
  if (size.size() != 4 && size.size() != 5)
    fail(ctx.node.label(), ": size must have 4 (2-D) or 5 (3-D) values, got ", size.size());
  const int64_t nd = static_cast<int64_t>(size.size()) - 2;
  const int64_t n = size[0];
  if (theta.rank() != 3 || theta.dim(0) != n || theta.dim(1) != nd || theta.dim(2) != nd + 1)
    fail(ctx.node.label(), ": theta ", theta.describe(), " must be ", n, "x", nd, "x", nd + 1);
  Dims sp(size.begin() + 2, size.end());  // (D,) H, W
  for (int64_t s : sp)
    if (s < 0) fail(ctx.node.label(), ": negative size ", s);
  Dims out{n};
  out.insert(out.end(), sp.begin(), sp.end());
  out.push_back(nd);
  Tensor& y = ctx.allocate_output(0, theta.dtype(), out);
  const int64_t points = numel(sp);
  // Base coordinate i of an axis of length len, in [-1, 1].
  auto base = [align](int64_t i, int64_t len) -> double {
    if (align) return len <= 1 ? 0.0 : -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(len - 1);
    return (2.0 * static_cast<double>(i) + 1.0) / static_cast<double>(len) - 1.0;
  };
  dispatch_float(theta.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* th = theta.data<T>();
    T* ys = y.data<T>();
    for (int64_t b = 0; b < n; ++b) {
      const T* m = th + b * nd * (nd + 1);
      for (int64_t p = 0; p < points; ++p) {
        // Homogeneous point (x, y[, z], 1): x runs along the innermost axis.
        double h[4];
        int64_t rem = p;
        for (int64_t i = nd - 1; i >= 0; --i) {
          const int64_t len = sp[static_cast<size_t>(i)];
          h[nd - 1 - i] = base(rem % len, len);
          rem /= len;
        }
        h[nd] = 1.0;
        for (int64_t r = 0; r < nd; ++r) {
          double acc = 0;
          for (int64_t k = 0; k <= nd; ++k) acc += load(m[r * (nd + 1) + k]) * h[k];
          ys[(b * points + p) * nd + r] = store<T>(acc);
        }
      }
    }
  });
}

std::vector<ir::ValueType> affine_grid_infer(InferContext& ctx) {
  const DType dt = ctx.inputs.at(0).dtype;
  if (const Tensor* s = ctx.value(1)) {
    const std::vector<int64_t> size = s->to_int_vector();
    if (size.size() == 4 || size.size() == 5) {
      std::vector<Dim> d{Dim(size[0])};
      for (size_t i = 2; i < size.size(); ++i) d.push_back(Dim(size[i]));
      d.push_back(Dim(static_cast<int64_t>(size.size()) - 2));
      return {tensor_type(dt, Shape(d))};
    }
  }
  const ir::ValueType& st = ctx.inputs.at(1);
  if (st.shape.rank_known && st.shape.rank() == 1 && st.shape.dims[0].known()) {
    const int64_t len = st.shape.dims[0].value;
    std::vector<Dim> d;
    for (int64_t i = 0; i < len - 1; ++i) d.push_back(ctx.fresh_dim());
    if (len >= 3) d.push_back(Dim(len - 2));
    return {tensor_type(dt, Shape(d))};
  }
  return {tensor_type(dt, Shape::unknown_rank())};
}

}  // namespace

void register_resize(Registry& r) {
  r.add({.name = "Resize", .kernel = resize_kernel,
         .infer = [](InferContext& c) { return resize_infer(c, false); }, .cost = resize_cost});
  r.add({.domain = "com.duet", .name = "ResizeGrad", .kernel = resize_grad_kernel,
         .infer = [](InferContext& c) { return std::vector<ir::ValueType>{tensor_type(c.inputs.at(0).dtype, c.inputs.at(1).shape)}; },
         .cost = resize_cost});
  r.add({.name = "Upsample", .kernel = upsample_kernel,
         .infer = [](InferContext& c) { return resize_infer(c, true); }, .cost = resize_cost});
  r.add({.name = "GridSample", .kernel = grid_sample_kernel, .infer = grid_sample_infer,
         .cost = [](const CostContext& c) {
           Cost k = default_cost(c);
           const std::string mode = c.node.attr_string("mode", "linear");
           const double taps = mode == "nearest" ? 1 : (mode == "cubic" || mode == "bicubic") ? 16 : 4;
           k.flops *= 2 * taps;
           return k;
         }});
  r.add({.name = "AffineGrid", .kernel = affine_grid_kernel, .infer = affine_grid_infer,
         .cost = cost_per_output_element(6)});
}

}  // namespace duet::ops
