// Normalization ops: BatchNormalization, InstanceNormalization,
// GroupNormalization, LayerNormalization, RMSNormalization, LRN,
// LpNormalization, MeanVarianceNormalization, and Dropout.
//
// Statistics (means, variances, norms) accumulate in double in a fixed order
// so results do not depend on the thread split; element-wise passes convert
// back to the input type.
#include <cmath>
#include <random>
#include <type_traits>

#include "duet/core/error.h"
#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// --- small helpers -----------------------------------------------------------

template <typename T>
inline double load(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return static_cast<float>(v);
}

template <typename T>
inline T store(double v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return T(static_cast<float>(v));
}

// Values of a 1-D parameter tensor (any numeric type) as doubles, checking its length.
std::vector<double> param_values(const KernelContext& ctx, size_t input, int64_t expected, const char* what) {
  const Tensor& t = ctx.input(input);
  if (t.numel() != expected)
    fail(ctx.node.label(), ": ", what, " has ", t.numel(), " elements, expected ", expected);
  std::vector<double> v(static_cast<size_t>(expected));
  for (int64_t i = 0; i < expected; ++i) v[static_cast<size_t>(i)] = t.get_double(i);
  return v;
}

// Broadcasts a scale/bias tensor over the normalized trailing shape `tail`
// (numpy rules; extra leading dims must be 1). Returns one value per tail element.
std::vector<double> broadcast_over_tail(const KernelContext& ctx, const Tensor& t, const Dims& tail,
                                        const char* what) {
  Dims d = t.dims();
  while (d.size() > tail.size()) {
    if (d.front() != 1)
      fail(ctx.node.label(), ": ", what, " shape ", dims_str(t.dims()),
           " does not broadcast to the normalized shape ", dims_str(tail));
    d.erase(d.begin());
  }
  const size_t off = tail.size() - d.size();
  for (size_t i = 0; i < d.size(); ++i)
    if (d[i] != 1 && d[i] != tail[off + i])
      fail(ctx.node.label(), ": ", what, " shape ", dims_str(t.dims()),
           " does not broadcast to the normalized shape ", dims_str(tail));
  const std::vector<int64_t> strides = broadcast_strides(d, tail);
  const int64_t n = numel(tail);
  std::vector<double> out(static_cast<size_t>(n));
  std::vector<int64_t> idx(tail.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t src = 0;
    for (size_t k = 0; k < tail.size(); ++k) src += idx[k] * strides[k];
    out[static_cast<size_t>(i)] = t.get_double(src);
    for (int64_t k = static_cast<int64_t>(tail.size()) - 1; k >= 0; --k) {
      if (++idx[k] < tail[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

void require_rank_at_least(const KernelContext& ctx, const Tensor& x, size_t rank) {
  if (x.rank() < rank)
    fail(ctx.node.label(), ": input must have rank >= ", rank, ", got ", x.describe());
}

int64_t spatial_size(const Dims& d) {
  int64_t s = 1;
  for (size_t i = 2; i < d.size(); ++i) s *= d[i];
  return s;
}

// --- BatchNormalization -------------------------------------------------------

// y = x * a[c] + b[c]; the NCHW float32 case of the detector hot path.
template <typename T>
void apply_channel_affine(const KernelContext& ctx, const Tensor& x, Tensor& y, const std::vector<double>& a,
                          const std::vector<double>& b) {
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  ctx.parallel_for(n * c, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const size_t ch = static_cast<size_t>(nc % c);
      const T* s = src + nc * inner;
      T* d = dst + nc * inner;
      if constexpr (std::is_same_v<T, float>) {
        const float fa = static_cast<float>(a[ch]), fb = static_cast<float>(b[ch]);
        for (int64_t i = 0; i < inner; ++i) d[i] = s[i] * fa + fb;
      } else {
        for (int64_t i = 0; i < inner; ++i) d[i] = store<T>(load(s[i]) * a[ch] + b[ch]);
      }
    }
  });
}

// Per-channel mean and population variance over every axis but 1.
template <typename T>
void channel_moments(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  const T* src = x.data<T>();
  mean.assign(static_cast<size_t>(c), 0.0);
  var.assign(static_cast<size_t>(c), 0.0);
  const double count = static_cast<double>(n * inner);
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i) s += load(src[(b * c + ch) * inner + i]);
    const double m = count > 0 ? s / count : 0.0;
    double q = 0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i) {
        const double dlt = load(src[(b * c + ch) * inner + i]) - m;
        q += dlt * dlt;
      }
    mean[static_cast<size_t>(ch)] = m;
    var[static_cast<size_t>(ch)] = count > 0 ? q / count : 0.0;
  }
}

void write_vector(KernelContext& ctx, size_t out, DType dtype, const std::vector<double>& v) {
  if (!ctx.output_requested(out)) return;
  Tensor& t = ctx.allocate_output(out, dtype, {static_cast<int64_t>(v.size())});
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < v.size(); ++i) t.data<T>()[i] = store<T>(v[i]);
  });
}

void batch_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  require_rank_at_least(ctx, x, 2);
  const int64_t c = x.dim(1);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const double momentum = ctx.node.attr_float("momentum", 0.9f);
  std::vector<double> scale = param_values(ctx, 1, c, "scale");
  std::vector<double> bias = param_values(ctx, 2, c, "B");
  std::vector<double> mean = param_values(ctx, 3, c, "input_mean");
  std::vector<double> var = param_values(ctx, 4, c, "input_var");

  // Training uses batch statistics: opset 14+ says so with training_mode;
  // older opsets with is_test=0 (opset < 7) or by asking for the extra outputs.
  bool training;
  if (ctx.opset >= 14) training = ctx.node.attr_int("training_mode", 0) != 0;
  else if (ctx.opset < 7) training = ctx.node.attr_int("is_test", 0) == 0 && ctx.num_outputs() > 1;
  else training = ctx.num_outputs() > 1 && ctx.output_requested(1);
  if (ctx.opset < 9 && ctx.node.attr_int("spatial", 1) == 0)
    unsupported(ctx.node.label(), ": spatial=0 is not supported");

  std::vector<double> use_mean = mean, use_var = var, batch_mean, batch_var;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (training) {
      channel_moments<T>(x, batch_mean, batch_var);
      use_mean = batch_mean;
      use_var = batch_var;
    }
    std::vector<double> a(static_cast<size_t>(c)), b(static_cast<size_t>(c));
    for (size_t i = 0; i < a.size(); ++i) {
      a[i] = scale[i] / std::sqrt(use_var[i] + eps);
      b[i] = bias[i] - use_mean[i] * a[i];
    }
    Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
    apply_channel_affine<T>(ctx, x, y, a, b);
  });
  if (!training) return;
  std::vector<double> run_mean(mean.size()), run_var(var.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    run_mean[i] = mean[i] * momentum + batch_mean[i] * (1 - momentum);
    run_var[i] = var[i] * momentum + batch_var[i] * (1 - momentum);
  }
  const DType stat_type = dtype_is_float(ctx.input(3).dtype()) ? ctx.input(3).dtype() : x.dtype();
  if (ctx.num_outputs() > 1) write_vector(ctx, 1, stat_type, run_mean);
  if (ctx.num_outputs() > 2) write_vector(ctx, 2, stat_type, run_var);
  if (ctx.num_outputs() > 3) write_vector(ctx, 3, stat_type, batch_mean);
  if (ctx.num_outputs() > 4) write_vector(ctx, 4, stat_type, batch_var);
}

std::vector<ir::ValueType> batch_norm_infer(InferContext& ctx) {
  std::vector<ir::ValueType> out(ctx.num_outputs);
  if (ctx.num_outputs > 0) out[0] = ctx.inputs.at(0);
  Shape channels = Shape::unknown_rank();
  const Shape& xs = ctx.inputs.at(0).shape;
  if (xs.rank_known && xs.rank() >= 2) channels = Shape({xs.dims[1]});
  const DType stat = ctx.inputs.size() > 3 && ctx.inputs[3].dtype != DType::Undefined ? ctx.inputs[3].dtype
                                                                                        : ctx.inputs[0].dtype;
  for (size_t i = 1; i < ctx.num_outputs; ++i) out[i] = tensor_type(stat, channels);
  return out;
}

// --- InstanceNormalization / GroupNormalization ------------------------------

// Normalizes each of `groups` contiguous blocks of `block` elements to zero
// mean and unit variance, then applies y = norm * scale(ch) + bias(ch), where
// a block holds `channels_per_block` channels of `inner` elements each.
template <typename T>
void normalize_blocks(const KernelContext& ctx, const T* src, T* dst, int64_t groups, int64_t channels_per_block,
                      int64_t inner, double eps, const std::function<size_t(int64_t, int64_t)>& param_index,
                      const std::vector<double>& scale, const std::vector<double>& bias) {
  const int64_t block = channels_per_block * inner;
  ctx.parallel_for(groups, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const T* s = src + g * block;
      T* d = dst + g * block;
      double sum = 0;
      for (int64_t i = 0; i < block; ++i) sum += load(s[i]);
      const double mean = block > 0 ? sum / static_cast<double>(block) : 0.0;
      double sq = 0;
      for (int64_t i = 0; i < block; ++i) {
        const double dlt = load(s[i]) - mean;
        sq += dlt * dlt;
      }
      const double inv = 1.0 / std::sqrt((block > 0 ? sq / static_cast<double>(block) : 0.0) + eps);
      for (int64_t c = 0; c < channels_per_block; ++c) {
        const size_t p = param_index(g, c);
        const double a = scale[p] * inv, b = bias[p] - mean * a;
        for (int64_t i = 0; i < inner; ++i) d[c * inner + i] = store<T>(load(s[c * inner + i]) * a + b);
      }
    }
  });
}

void instance_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  require_rank_at_least(ctx, x, 3);
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  std::vector<double> scale = param_values(ctx, 1, c, "scale");
  std::vector<double> bias = param_values(ctx, 2, c, "B");
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    normalize_blocks<T>(ctx, x.data<T>(), y.data<T>(), n * c, 1, inner, eps,
                        [c](int64_t g, int64_t) { return static_cast<size_t>(g % c); }, scale, bias);
  });
}

void group_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  require_rank_at_least(ctx, x, 2);
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  const int64_t groups = ctx.node.attr_int("num_groups", 0);
  if (groups <= 0 || c % groups != 0)
    fail(ctx.node.label(), ": num_groups=", groups, " must be positive and divide the ", c, " channels");
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  // Opset 18 gives scale/bias per group, opset 21 per channel; accept either by size.
  const int64_t params = ctx.input(1).numel();
  if (params != c && params != groups)
    fail(ctx.node.label(), ": scale has ", params, " elements, expected ", c, " (channels) or ", groups,
         " (groups)");
  const bool per_channel = params == c && (ctx.opset >= 21 || params != groups);
  std::vector<double> scale = param_values(ctx, 1, params, "scale");
  std::vector<double> bias = param_values(ctx, 2, params, "bias");
  const int64_t cpg = c / groups;
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    normalize_blocks<T>(
        ctx, x.data<T>(), y.data<T>(), n * groups, cpg, inner, eps,
        [&](int64_t g, int64_t ch) {
          const int64_t group = g % groups;
          return static_cast<size_t>(per_channel ? group * cpg + ch : group);
        },
        scale, bias);
  });
}

// --- LayerNormalization / RMSNormalization ----------------------------------

struct RowSplit {
  int64_t axis, rows, cols;
  Dims tail;
};

RowSplit split_rows(const KernelContext& ctx, const Tensor& x, int64_t default_axis = -1) {
  RowSplit r;
  const int64_t rank = static_cast<int64_t>(x.rank());
  r.axis = normalize_axis(ctx.node.attr_int("axis", default_axis), rank, ctx.node);
  r.rows = 1;
  r.cols = 1;
  for (int64_t i = 0; i < rank; ++i) (i < r.axis ? r.rows : r.cols) *= x.dims()[static_cast<size_t>(i)];
  r.tail.assign(x.dims().begin() + r.axis, x.dims().end());
  return r;
}

DType stash_dtype(const KernelContext& ctx) {
  const int64_t code = ctx.node.attr_int("stash_type", 1);
  const DType d = static_cast<DType>(code);
  if (d != DType::Float32 && d != DType::Float64 && d != DType::Float16 && d != DType::BFloat16)
    unsupported(ctx.node.label(), ": stash_type ", code, " is not supported");
  return d;
}

Dims reduced_dims(const Dims& x, int64_t axis) {
  Dims d = x;
  for (size_t i = static_cast<size_t>(axis); i < d.size(); ++i) d[i] = 1;
  return d;
}

void layer_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const RowSplit rs = split_rows(ctx, x);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const DType stash = stash_dtype(ctx);
  std::vector<double> scale = broadcast_over_tail(ctx, ctx.input(1), rs.tail, "Scale");
  std::vector<double> bias;
  if (const Tensor* b = ctx.optional_input(2)) bias = broadcast_over_tail(ctx, *b, rs.tail, "B");
  std::vector<double> means(static_cast<size_t>(rs.rows)), invs(static_cast<size_t>(rs.rows));
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    ctx.parallel_for(rs.rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* s = src + r * rs.cols;
        T* d = dst + r * rs.cols;
        double sum = 0;
        for (int64_t i = 0; i < rs.cols; ++i) sum += load(s[i]);
        const double mean = rs.cols > 0 ? sum / static_cast<double>(rs.cols) : 0.0;
        double sq = 0;
        for (int64_t i = 0; i < rs.cols; ++i) {
          const double dlt = load(s[i]) - mean;
          sq += dlt * dlt;
        }
        const double inv = 1.0 / std::sqrt((rs.cols > 0 ? sq / static_cast<double>(rs.cols) : 0.0) + eps);
        for (int64_t i = 0; i < rs.cols; ++i) {
          double v = (load(s[i]) - mean) * inv * scale[static_cast<size_t>(i)];
          if (!bias.empty()) v += bias[static_cast<size_t>(i)];
          d[i] = store<T>(v);
        }
        means[static_cast<size_t>(r)] = mean;
        invs[static_cast<size_t>(r)] = inv;
      }
    });
  });
  const Dims stat_dims = reduced_dims(x.dims(), rs.axis);
  for (size_t out = 1; out < 3 && out < ctx.num_outputs(); ++out) {
    if (!ctx.output_requested(out)) continue;
    Tensor& t = ctx.allocate_output(out, stash, stat_dims);
    const std::vector<double>& v = out == 1 ? means : invs;
    dispatch_float(stash, [&](auto tag) {
      using U = typename decltype(tag)::type;
      for (size_t i = 0; i < v.size(); ++i) t.data<U>()[i] = store<U>(v[i]);
    });
  }
}

std::vector<ir::ValueType> layer_norm_infer(InferContext& ctx) {
  std::vector<ir::ValueType> out(ctx.num_outputs);
  const ir::ValueType& x = ctx.inputs.at(0);
  if (ctx.num_outputs > 0) out[0] = x;
  const DType stash = static_cast<DType>(ctx.node.attr_int("stash_type", 1));
  Shape stat = Shape::unknown_rank();
  if (x.shape.rank_known) {
    const int64_t rank = static_cast<int64_t>(x.shape.rank());
    const int64_t axis = normalize_axis(ctx.node.attr_int("axis", -1), rank, ctx.node);
    stat = x.shape;
    for (int64_t i = axis; i < rank; ++i) stat.dims[static_cast<size_t>(i)] = Dim(1);
  }
  for (size_t i = 1; i < ctx.num_outputs; ++i) out[i] = tensor_type(stash, stat);
  return out;
}

void rms_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const RowSplit rs = split_rows(ctx, x);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  stash_dtype(ctx);  // validates; statistics are kept in double regardless
  std::vector<double> scale = broadcast_over_tail(ctx, ctx.input(1), rs.tail, "scale");
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    ctx.parallel_for(rs.rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* s = src + r * rs.cols;
        T* d = dst + r * rs.cols;
        double sq = 0;
        for (int64_t i = 0; i < rs.cols; ++i) sq += load(s[i]) * load(s[i]);
        const double inv = 1.0 / std::sqrt((rs.cols > 0 ? sq / static_cast<double>(rs.cols) : 0.0) + eps);
        for (int64_t i = 0; i < rs.cols; ++i) d[i] = store<T>(load(s[i]) * inv * scale[static_cast<size_t>(i)]);
      }
    });
  });
}

// --- LRN -----------------------------------------------------------------------

void lrn_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  require_rank_at_least(ctx, x, 2);
  const double alpha = ctx.node.attr_float("alpha", 1e-4f);
  const double beta = ctx.node.attr_float("beta", 0.75f);
  const double bias = ctx.node.attr_float("bias", 1.0f);
  const int64_t size = ctx.node.attr_int("size", 0);
  if (size <= 0) fail(ctx.node.label(), ": attribute 'size' must be positive, got ", size);
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  // Window over channels [c - floor((size-1)/2), c + ceil((size-1)/2)].
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    ctx.parallel_for(n * c, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t b = nc / c, ch = nc % c;
        const int64_t lo = std::max<int64_t>(0, ch - before), hi = std::min<int64_t>(c - 1, ch + after);
        for (int64_t i = 0; i < inner; ++i) {
          double sq = 0;
          for (int64_t k = lo; k <= hi; ++k) {
            const double v = load(src[(b * c + k) * inner + i]);
            sq += v * v;
          }
          const double v = load(src[nc * inner + i]);
          dst[nc * inner + i] = store<T>(v / std::pow(bias + alpha / static_cast<double>(size) * sq, beta));
        }
      }
    });
  });
}

// --- LpNormalization --------------------------------------------------------------

void lp_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  if (rank == 0) fail(ctx.node.label(), ": input must have rank >= 1");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", -1), rank, ctx.node);
  const int64_t p = ctx.node.attr_int("p", 2);
  if (p != 1 && p != 2) fail(ctx.node.label(), ": attribute p must be 1 or 2, got ", p);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dims()[static_cast<size_t>(i)];
  for (int64_t i = axis + 1; i < rank; ++i) inner *= x.dims()[static_cast<size_t>(i)];
  const int64_t len = x.dims()[static_cast<size_t>(axis)];
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    ctx.parallel_for(outer * inner, [&](int64_t begin, int64_t end) {
      for (int64_t oi = begin; oi < end; ++oi) {
        const int64_t base = (oi / inner) * len * inner + oi % inner;
        double norm = 0;
        for (int64_t k = 0; k < len; ++k) {
          const double v = load(src[base + k * inner]);
          norm += p == 1 ? std::fabs(v) : v * v;
        }
        if (p == 2) norm = std::sqrt(norm);
        // A zero vector stays zero (the ONNX reference divides by 1 there).
        if (norm == 0) norm = 1;
        for (int64_t k = 0; k < len; ++k) dst[base + k * inner] = store<T>(load(src[base + k * inner]) / norm);
      }
    });
  });
}

// --- MeanVarianceNormalization ----------------------------------------------------

// Y = (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9), moments over `axes`.
void mvn_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const size_t rank = x.rank();
  std::vector<int64_t> axes = ctx.node.attr_ints("axes", {0, 2, 3});
  std::vector<bool> reduced(rank, false);
  for (int64_t a : axes) reduced[static_cast<size_t>(normalize_axis(a, static_cast<int64_t>(rank), ctx.node))] = true;
  // Each element belongs to the group named by its kept coordinates.
  Dims group_dims;
  for (size_t i = 0; i < rank; ++i) group_dims.push_back(reduced[i] ? 1 : x.dims()[i]);
  const std::vector<int64_t> gstrides = broadcast_strides(group_dims, x.dims());
  const int64_t groups = numel(group_dims), total = x.numel();
  std::vector<int64_t> group_of(static_cast<size_t>(total));
  {
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0; i < total; ++i) {
      int64_t g = 0;
      for (size_t k = 0; k < rank; ++k) g += idx[k] * gstrides[k];
      group_of[static_cast<size_t>(i)] = g;
      for (int64_t k = static_cast<int64_t>(rank) - 1; k >= 0; --k) {
        if (++idx[k] < x.dims()[k]) break;
        idx[k] = 0;
      }
    }
  }
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    std::vector<double> sum(static_cast<size_t>(groups), 0.0), sq(static_cast<size_t>(groups), 0.0),
        count(static_cast<size_t>(groups), 0.0);
    for (int64_t i = 0; i < total; ++i) {
      const size_t g = static_cast<size_t>(group_of[static_cast<size_t>(i)]);
      const double v = load(src[i]);
      sum[g] += v;
      sq[g] += v * v;
      count[g] += 1;
    }
    std::vector<double> mean(sum.size()), denom(sum.size());
    for (size_t g = 0; g < sum.size(); ++g) {
      mean[g] = count[g] > 0 ? sum[g] / count[g] : 0.0;
      const double var = count[g] > 0 ? sq[g] / count[g] - mean[g] * mean[g] : 0.0;
      denom[g] = std::sqrt(std::max(var, 0.0)) + 1e-9;
    }
    T* dst = y.data<T>();
    for (int64_t i = 0; i < total; ++i) {
      const size_t g = static_cast<size_t>(group_of[static_cast<size_t>(i)]);
      dst[i] = store<T>((load(src[i]) - mean[g]) / denom[g]);
    }
  });
}

// --- Dropout ------------------------------------------------------------------------

// Uniform [0, 1) doubles from MT19937 exactly as numpy's RandomState(seed)
// draws them (53-bit doubles from two 32-bit words), so seeded training-mode
// masks match the ONNX reference.
class NumpyUniform {
 public:
  explicit NumpyUniform(uint32_t seed) : gen_(seed) {}
  double next() {
    const uint32_t a = static_cast<uint32_t>(gen_()) >> 5, b = static_cast<uint32_t>(gen_()) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

 private:
  std::mt19937 gen_;
};

void dropout_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  float ratio = 0.5f;
  bool training = false;
  if (ctx.opset >= 12) {
    if (const Tensor* r = ctx.optional_input(1)) {
      if (r->numel() != 1) fail(ctx.node.label(), ": ratio must be a scalar, got ", r->describe());
      ratio = static_cast<float>(r->get_double(0));
    }
    if (const Tensor* t = ctx.optional_input(2)) {
      if (t->numel() != 1) fail(ctx.node.label(), ": training_mode must be a scalar, got ", t->describe());
      training = t->get_double(0) != 0;
    }
  } else {
    // Before opset 12 there is no seed or training input: always inference.
    ratio = ctx.node.attr_float("ratio", 0.5f);
  }
  if (ratio < 0 || ratio > 1) fail(ctx.node.label(), ": ratio must be in [0, 1), got ", ratio);
  const bool want_mask = ctx.num_outputs() > 1 && ctx.output_requested(1);
  // Before opset 10 the mask has the data type; from 10 on it is bool.
  const DType mask_type = ctx.opset >= 10 ? DType::Bool : x.dtype();

  if (!training || ratio == 0) {
    ctx.set_output(0, x);
    if (want_mask) {
      Tensor& m = ctx.allocate_output(1, mask_type, x.dims());
      dispatch_numeric(mask_type, [&](auto tag) {
        using M = typename decltype(tag)::type;
        for (int64_t i = 0; i < x.numel(); ++i) m.data<M>()[i] = M(1);
      });
    }
    return;
  }
  // Without a seed attribute the spec allows any mask; seed 0 keeps runs reproducible.
  const int64_t seed = ctx.node.attr_int("seed", 0);
  NumpyUniform rng(static_cast<uint32_t>(seed));
  const float keep_scale = ratio < 1 ? 1.0f / (1.0f - ratio) : 0.0f;
  Tensor& y = ctx.allocate_output(0, x.dtype(), x.dims());
  Tensor* m = want_mask ? &ctx.allocate_output(1, mask_type, x.dims()) : nullptr;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    // Sequential on purpose: the mask is one random stream in element order.
    for (int64_t i = 0; i < x.numel(); ++i) {
      const bool keep = rng.next() >= static_cast<double>(ratio);
      if constexpr (std::is_same_v<T, double>) dst[i] = keep ? src[i] * static_cast<double>(keep_scale) : 0.0;
      else dst[i] = T(keep ? static_cast<float>(src[i]) * keep_scale : 0.0f);
      if (m) {
        dispatch_numeric(mask_type, [&](auto mtag) {
          using M = typename decltype(mtag)::type;
          m->data<M>()[i] = M(keep ? 1 : 0);
        });
      }
    }
  });
}

std::vector<ir::ValueType> dropout_infer(InferContext& ctx) {
  std::vector<ir::ValueType> out(ctx.num_outputs);
  const ir::ValueType& x = ctx.inputs.at(0);
  if (ctx.num_outputs > 0) out[0] = x;
  if (ctx.num_outputs > 1) out[1] = tensor_type(ctx.opset >= 10 ? DType::Bool : x.dtype, x.shape);
  return out;
}

Cost zero_flop_cost(const CostContext& c) {
  Cost k = default_cost(c);
  k.flops = 0;
  return k;
}


// --- Gradients (com.duet, written by train::add_gradients) --------------------
// Both recompute the statistics from X (training mode: batch statistics) and
// work in double. Inputs dY, X, scale; outputs dX, dScale, dB (each optional).

void write_grad(KernelContext& ctx, size_t out, DType dtype, const Dims& dims, const std::vector<double>& v) {
  if (ctx.num_outputs() <= out || !ctx.output_requested(out)) return;
  Tensor& t = ctx.allocate_output(out, dtype, dims);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t i = 0; i < v.size(); ++i) t.data<T>()[i] = store<T>(v[i]);
  });
}

void check_grad_operands(const KernelContext& ctx, const Tensor& dy, const Tensor& x) {
  if (dy.dims() != x.dims() || dy.dtype() != x.dtype())
    fail(ctx.node.label(), ": gradient ", dy.describe(), " does not match the input ", x.describe());
  if (x.dtype() != DType::Float32 && x.dtype() != DType::Float64)
    unsupported(ctx.node.label(), ": gradients are float32 or float64, got ", x.describe());
}

// Training-mode BatchNormalization: with xh = (x - mean) / sqrt(var + eps) per
// channel over m = N * spatial values, dB = sum dy, dScale = sum dy * xh,
// dX = scale / sqrt(var + eps) * (dy - dB / m - xh * dScale / m).
void batch_norm_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& x = ctx.input(1);
  require_rank_at_least(ctx, x, 2);
  check_grad_operands(ctx, dy, x);
  const int64_t n = x.dim(0), c = x.dim(1), inner = spatial_size(x.dims());
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const std::vector<double> scale = param_values(ctx, 2, c, "scale");
  std::vector<double> mean, var, dbias(static_cast<size_t>(c)), dscale(static_cast<size_t>(c));
  const double m = static_cast<double>(n * inner);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    channel_moments<T>(x, mean, var);
    const T* xs = x.data<T>();
    const T* g = dy.data<T>();
    ctx.parallel_for(c, [&](int64_t begin, int64_t end) {
      for (int64_t ch = begin; ch < end; ++ch) {
        const double inv = 1.0 / std::sqrt(var[ch] + eps);
        double sb = 0, ss = 0;
        for (int64_t b = 0; b < n; ++b)
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = (b * c + ch) * inner + i;
            sb += load(g[k]);
            ss += load(g[k]) * (load(xs[k]) - mean[ch]) * inv;
          }
        dbias[ch] = sb;
        dscale[ch] = ss;
      }
    });
    if (ctx.num_outputs() > 0 && ctx.output_requested(0)) {
      T* dx = ctx.allocate_output(0, x.dtype(), x.dims()).template data<T>();
      ctx.parallel_for(n * c, [&](int64_t begin, int64_t end) {
        for (int64_t nc = begin; nc < end; ++nc) {
          const int64_t ch = nc % c;
          const double inv = 1.0 / std::sqrt(var[ch] + eps);
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = nc * inner + i;
            const double xh = (load(xs[k]) - mean[ch]) * inv;
            dx[k] = store<T>(scale[ch] * inv * (load(g[k]) - dbias[ch] / m - xh * dscale[ch] / m));
          }
        }
      });
    }
  });
  const DType pt = dtype_is_float(ctx.input(2).dtype()) ? ctx.input(2).dtype() : x.dtype();
  write_grad(ctx, 1, pt, {c}, dscale);
  write_grad(ctx, 2, pt, {c}, dbias);
}

// LayerNormalization over the trailing axes from `axis` (scale of the full
// normalized shape): per row, with gs = dy * scale, dX = inv * (gs - mean(gs)
// - xh * mean(gs * xh)); dScale and dB sum over rows (in row order).
void layer_norm_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& x = ctx.input(1);
  check_grad_operands(ctx, dy, x);
  const RowSplit rs = split_rows(ctx, x);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const Tensor& scale_t = ctx.input(2);
  if (scale_t.numel() != rs.cols)
    unsupported(ctx.node.label(), ": gradients need a scale of the whole normalized shape ", dims_str(rs.tail),
                ", got ", scale_t.describe());
  const std::vector<double> scale = broadcast_over_tail(ctx, scale_t, rs.tail, "Scale");
  std::vector<double> xhat(static_cast<size_t>(x.numel()));
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = x.data<T>();
    const T* g = dy.data<T>();
    T* dx = ctx.num_outputs() > 0 && ctx.output_requested(0)
                ? ctx.allocate_output(0, x.dtype(), x.dims()).template data<T>()
                : nullptr;
    ctx.parallel_for(rs.rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* s = xs + r * rs.cols;
        const T* gr = g + r * rs.cols;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < rs.cols; ++i) sum += load(s[i]);
        const double mean = sum / static_cast<double>(rs.cols);
        for (int64_t i = 0; i < rs.cols; ++i) sq += (load(s[i]) - mean) * (load(s[i]) - mean);
        const double inv = 1.0 / std::sqrt(sq / static_cast<double>(rs.cols) + eps);
        double mg = 0, mgx = 0;
        for (int64_t i = 0; i < rs.cols; ++i) {
          const double xh = (load(s[i]) - mean) * inv, gs = load(gr[i]) * scale[i];
          xhat[r * rs.cols + i] = xh;
          mg += gs;
          mgx += gs * xh;
        }
        mg /= static_cast<double>(rs.cols);
        mgx /= static_cast<double>(rs.cols);
        if (dx)
          for (int64_t i = 0; i < rs.cols; ++i)
            dx[r * rs.cols + i] = store<T>(inv * (load(gr[i]) * scale[i] - mg - xhat[r * rs.cols + i] * mgx));
      }
    });
    std::vector<double> dscale(static_cast<size_t>(rs.cols), 0.0), dbias(static_cast<size_t>(rs.cols), 0.0);
    for (int64_t r = 0; r < rs.rows; ++r)
      for (int64_t i = 0; i < rs.cols; ++i) {
        dscale[i] += load(g[r * rs.cols + i]) * xhat[r * rs.cols + i];
        dbias[i] += load(g[r * rs.cols + i]);
      }
    const DType pt = dtype_is_float(scale_t.dtype()) ? scale_t.dtype() : x.dtype();
    write_grad(ctx, 1, pt, scale_t.dims(), dscale);
    write_grad(ctx, 2, pt, scale_t.dims(), dbias);
  });
}

// dX like X; dScale and dB like input 2.
std::vector<ir::ValueType> infer_norm_grad(InferContext& ctx) {
  std::vector<ir::ValueType> out(ctx.num_outputs);
  for (size_t i = 0; i < out.size(); ++i) out[i] = ctx.inputs.at(i == 0 ? 1 : 2);
  return out;
}

}  // namespace

void register_normalization(Registry& r) {
  r.add({.domain = "com.duet", .name = "BatchNormalizationGrad", .kernel = batch_norm_grad_kernel,
         .infer = infer_norm_grad});
  r.add({.domain = "com.duet", .name = "LayerNormalizationGrad", .kernel = layer_norm_grad_kernel,
         .infer = infer_norm_grad});
  r.add({.name = "BatchNormalization", .kernel = batch_norm_kernel, .infer = batch_norm_infer,
         .cost = cost_per_output_element(2)});
  r.add({.name = "InstanceNormalization", .kernel = instance_norm_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(7)});
  r.add({.name = "GroupNormalization", .kernel = group_norm_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(7)});
  r.add({.name = "LayerNormalization", .kernel = layer_norm_kernel, .infer = layer_norm_infer,
         .cost = cost_per_output_element(8)});
  r.add({.name = "RMSNormalization", .kernel = rms_norm_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(4)});
  r.add({.name = "LRN", .kernel = lrn_kernel, .infer = infer_same_as(0),
         .cost = [](const CostContext& c) {
           Cost k = default_cost(c);
           const double size = static_cast<double>(c.node.attr_int("size", 1));
           k.flops *= 2 * size + 4;
           return k;
         }});
  r.add({.name = "LpNormalization", .kernel = lp_norm_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(3)});
  r.add({.name = "MeanVarianceNormalization", .kernel = mvn_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(6)});
  r.add({.name = "Dropout", .kernel = dropout_kernel, .infer = dropout_infer, .cost = zero_flop_cost});
}

}  // namespace duet::ops
