// Signal-processing ops: DFT, STFT, the Hann/Hamming/Blackman windows and
// MelWeightMatrix. Transforms compute in double (complex<double>) whatever the
// storage type, so outputs that should be near zero stay near zero; any
// length is handled by a mixed-radix FFT, with Bluestein's algorithm for
// lengths that have a large prime factor.
#include <cmath>
#include <complex>
#include <numbers>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using cd = std::complex<double>;

std::vector<ir::ValueType> one(DType dt, Shape s) { return {tensor_type(dt, std::move(s))}; }

// ---------------------------------------------------------------------------
// FFT of any length.

// Radixes above this go through Bluestein: a radix-p step costs p per output.
constexpr int64_t kMaxDirectRadix = 64;

int64_t next_pow2(int64_t n) {
  int64_t m = 1;
  while (m < n) m <<= 1;
  return m;
}

// Prime factors of n in increasing order (4 kept whole first: fewer passes).
std::vector<int64_t> factorize(int64_t n) {
  std::vector<int64_t> f;
  while (n % 4 == 0) { f.push_back(4); n /= 4; }
  for (int64_t p = 2; p * p <= n; ++p)
    while (n % p == 0) { f.push_back(p); n /= p; }
  if (n > 1) f.push_back(n);
  return f;
}

// A forward transform of one length: X[k] = sum_n x[n] exp(-2 pi i k n / N).
// Immutable after construction, so threads share one plan.
class FftPlan {
 public:
  explicit FftPlan(int64_t n) : n_(n) {
    if (n_ <= 1) return;
    factors_ = factorize(n_);
    if (factors_.back() > kMaxDirectRadix) {
      setup_bluestein();
      return;
    }
    // twiddle_[j] = exp(-2 pi i j / N), each entry computed directly (no
    // accumulated rotation error).
    twiddle_.resize(n_);
    for (int64_t j = 0; j < n_; ++j) {
      const double a = -2.0 * std::numbers::pi * static_cast<double>(j) / static_cast<double>(n_);
      twiddle_[j] = cd(std::cos(a), std::sin(a));
    }
  }

  int64_t size() const { return n_; }

  // In-place forward transform of data[0..N); scratch is resized as needed.
  void forward(cd* data, std::vector<cd>& scratch) const {
    if (n_ <= 1) return;
    if (bluestein_inner_) {
      bluestein(data, scratch);
      return;
    }
    scratch.assign(data, data + n_);
    recurse(scratch.data(), 1, data, n_, 0);
  }

 private:
  // out[0..n) = DFT of in[0], in[stride], ... (decimation in time).
  void recurse(const cd* in, int64_t stride, cd* out, int64_t n, size_t fi) const {
    if (n == 1) {
      out[0] = in[0];
      return;
    }
    const int64_t p = factors_[fi], m = n / p;
    for (int64_t r = 0; r < p; ++r) recurse(in + r * stride, stride * p, out + r * m, m, fi + 1);
    // out[r*m + k1] now holds sub-transform r at k1. Output k = k1 + m*k2
    // combines the p values at k1, so each k1 column is done in place.
    const int64_t scale = n_ / n;  // twiddle of this level: exp(-2 pi i j / n)
    cd col[kMaxDirectRadix];
    for (int64_t k1 = 0; k1 < m; ++k1) {
      for (int64_t r = 0; r < p; ++r) col[r] = out[r * m + k1];
      for (int64_t k2 = 0; k2 < p; ++k2) {
        const int64_t k = k1 + m * k2;
        cd sum = col[0];
        for (int64_t r = 1; r < p; ++r) sum += col[r] * twiddle_[((r * k) % n) * scale];
        out[k] = sum;
      }
    }
  }

  // Bluestein: X[k] = c[k] * sum_n (x[n] c[n]) conj(c[k-n]) with the chirp
  // c[j] = exp(-pi i j^2 / N); the convolution runs as a power-of-2 FFT.
  void setup_bluestein() {
    const int64_t m = next_pow2(2 * n_ - 1);
    bluestein_inner_ = std::make_shared<FftPlan>(m);
    chirp_.resize(n_);
    const unsigned __int128 two_n = 2 * static_cast<unsigned __int128>(n_);
    for (int64_t j = 0; j < n_; ++j) {
      // j^2 mod 2N keeps the angle small and exact.
      const auto jj = static_cast<int64_t>((static_cast<unsigned __int128>(j) * j) % two_n);
      const double a = -std::numbers::pi * static_cast<double>(jj) / static_cast<double>(n_);
      chirp_[j] = cd(std::cos(a), std::sin(a));
    }
    // Transform of the filter b[j] = conj(c[|j|]) on the circular grid.
    std::vector<cd> b(m, cd(0, 0)), scratch;
    b[0] = std::conj(chirp_[0]);
    for (int64_t j = 1; j < n_; ++j) b[j] = b[m - j] = std::conj(chirp_[j]);
    bluestein_inner_->forward(b.data(), scratch);
    filter_ = std::move(b);
  }

  void bluestein(cd* data, std::vector<cd>& scratch) const {
    const int64_t m = bluestein_inner_->size();
    std::vector<cd> a(m, cd(0, 0)), inner_scratch;
    for (int64_t j = 0; j < n_; ++j) a[j] = data[j] * chirp_[j];
    bluestein_inner_->forward(a.data(), inner_scratch);
    // Inverse transform via conjugation: ifft(y) = conj(fft(conj(y))) / m.
    for (int64_t j = 0; j < m; ++j) a[j] = std::conj(a[j] * filter_[j]);
    bluestein_inner_->forward(a.data(), inner_scratch);
    const double inv_m = 1.0 / static_cast<double>(m);
    for (int64_t k = 0; k < n_; ++k) data[k] = std::conj(a[k]) * inv_m * chirp_[k];
    (void)scratch;
  }

  int64_t n_;
  std::vector<int64_t> factors_;
  std::vector<cd> twiddle_;
  std::shared_ptr<FftPlan> bluestein_inner_;
  std::vector<cd> chirp_, filter_;
};

// In-place transform of one line; inverse includes the 1/N factor.
void transform(const FftPlan& plan, cd* data, bool inverse, std::vector<cd>& scratch) {
  const int64_t n = plan.size();
  if (!inverse) {
    plan.forward(data, scratch);
    return;
  }
  for (int64_t i = 0; i < n; ++i) data[i] = std::conj(data[i]);
  plan.forward(data, scratch);
  const double inv_n = 1.0 / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) data[i] = std::conj(data[i]) * inv_n;
}

// Storage element -> double and back for float tensor types.
template <typename T>
double load(const T& v) { return static_cast<double>(static_cast<float>(v)); }
template <>
double load<double>(const double& v) { return v; }
template <typename T>
T store(double v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return static_cast<T>(static_cast<float>(v));
}

// A scalar (rank 0 or one element) integer input.
int64_t scalar_int(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor& t = ctx.input(i);
  if (t.numel() != 1) fail(ctx.node.label(), ": ", what, " must be a scalar, got ", t.describe());
  if (!dtype_is_integer(t.dtype())) fail(ctx.node.label(), ": ", what, " must be an integer, got ", t.describe());
  return t.get_int(0);
}

double scalar_double(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor& t = ctx.input(i);
  if (t.numel() != 1) fail(ctx.node.label(), ": ", what, " must be a scalar, got ", t.describe());
  return t.get_double(0);
}

// ---------------------------------------------------------------------------
// DFT

struct DftParams {
  int64_t axis = 0;        // normalized, in [0, rank-2]
  int64_t length = 0;      // dft_length (N)
  bool inverse = false;
  bool onesided = false;
  int64_t out_axis_len = 0;
  int64_t out_components = 2;
};

// Axis as given (attribute before opset 20, optional input 2 from opset 20).
int64_t raw_dft_axis(const ir::Node& node, int64_t opset, const Tensor* axis_value, bool axis_input_present,
                     bool* known) {
  *known = true;
  if (opset < 20) return node.attr_int("axis", 1);
  if (!axis_input_present) return -2;
  if (!axis_value) {
    *known = false;
    return 0;
  }
  return axis_value->get_int(0);
}

int64_t normalize_dft_axis(int64_t axis, int64_t rank, const ir::Node& node) {
  // Accepted: [-r, -2] and [0, r-2]; the last dimension holds the components.
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a > rank - 2)
    fail(node.label(), ": axis ", axis, " is out of range for input rank ", rank,
         " (the last dimension holds real/imaginary parts)");
  return a;
}

// Output length along the axis given the input length and dft_length (-1 if omitted).
void resolve_lengths(DftParams& p, int64_t in_len, int64_t dft_length, const ir::Node& node) {
  if (dft_length < 0) dft_length = p.inverse && p.onesided ? 2 * (in_len - 1) : in_len;
  if (dft_length < 1) fail(node.label(), ": dft_length must be positive, got ", dft_length);
  p.length = dft_length;
  if (p.onesided && !p.inverse) {
    p.out_axis_len = dft_length / 2 + 1;
    p.out_components = 2;
  } else if (p.onesided && p.inverse) {
    p.out_axis_len = dft_length;
    p.out_components = 1;
  } else {
    p.out_axis_len = dft_length;
    p.out_components = 2;
  }
}

template <typename T>
void dft_typed(KernelContext& ctx, const Tensor& x, const DftParams& p, Tensor& y) {
  const Dims& in = x.dims();
  const int64_t rank = static_cast<int64_t>(in.size());
  const int64_t comps = in[rank - 1];
  const int64_t in_len = in[p.axis];
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < p.axis; ++d) outer *= in[d];
  for (int64_t d = p.axis + 1; d < rank - 1; ++d) inner *= in[d];
  const int64_t n = p.length;
  const bool irfft = p.inverse && p.onesided;
  // Input bins used: the first N samples, or for IRFFT the N/2+1 unique bins.
  const int64_t used = std::min(in_len, irfft ? n / 2 + 1 : n);
  const FftPlan plan(n);
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  const int64_t out_len = p.out_axis_len, out_comps = p.out_components;

  ctx.parallel_for(outer * inner, [&](int64_t begin, int64_t end) {
    std::vector<cd> line(n), scratch;
    for (int64_t li = begin; li < end; ++li) {
      const int64_t o = li / inner, i = li % inner;
      std::fill(line.begin(), line.end(), cd(0, 0));
      for (int64_t k = 0; k < used; ++k) {
        const T* e = src + ((o * in_len + k) * inner + i) * comps;
        line[k] = cd(load(e[0]), comps == 2 ? load(e[1]) : 0.0);
      }
      if (irfft) {
        // Rebuild the full spectrum from its conjugate symmetry; the real part
        // of the inverse then ignores the imaginary parts of DC and Nyquist.
        for (int64_t k = n / 2 + 1; k < n; ++k) line[k] = std::conj(line[n - k]);
      }
      transform(plan, line.data(), p.inverse, scratch);
      for (int64_t k = 0; k < out_len; ++k) {
        T* e = dst + ((o * out_len + k) * inner + i) * out_comps;
        e[0] = store<T>(line[k].real());
        if (out_comps == 2) e[1] = store<T>(line[k].imag());
      }
    }
  });
}

void dft_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  if (rank < 2) fail(ctx.node.label(), ": input must have rank >= 2 (signal dims and a trailing 1 or 2), got ", x.describe());
  const int64_t comps = x.dims().back();
  if (comps != 1 && comps != 2)
    fail(ctx.node.label(), ": the last input dimension must be 1 (real) or 2 (complex), got ", x.describe());
  DftParams p;
  p.inverse = ctx.node.attr_int("inverse", 0) != 0;
  p.onesided = ctx.node.attr_int("onesided", 0) != 0;
  bool known = true;
  const Tensor* axis_t = ctx.opset >= 20 ? ctx.optional_input(2) : nullptr;
  if (axis_t && axis_t->numel() != 1) fail(ctx.node.label(), ": axis must be a scalar, got ", axis_t->describe());
  p.axis = normalize_dft_axis(raw_dft_axis(ctx.node, ctx.opset, axis_t, axis_t != nullptr, &known), rank, ctx.node);
  if (p.onesided && !p.inverse && comps != 1)
    fail(ctx.node.label(), ": onesided forward DFT needs a real input (last dimension 1), got ", x.describe());
  if (p.onesided && p.inverse && comps != 2)
    fail(ctx.node.label(), ": onesided inverse DFT (IRFFT) needs a complex input (last dimension 2), got ",
         x.describe());
  const int64_t dft_length = ctx.has_input(1) ? scalar_int(ctx, 1, "dft_length") : -1;
  resolve_lengths(p, x.dims()[p.axis], dft_length, ctx.node);
  Dims out = x.dims();
  out[p.axis] = p.out_axis_len;
  out.back() = p.out_components;
  Tensor& y = ctx.allocate_output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    dft_typed<T>(ctx, x, p, y);
  });
}

std::vector<ir::ValueType> dft_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  const int64_t rank = static_cast<int64_t>(in.shape.rank());
  if (rank < 2) fail(ctx.node.label(), ": input must have rank >= 2, got ", in.shape.str());
  const bool inverse = ctx.node.attr_int("inverse", 0) != 0;
  const bool onesided = ctx.node.attr_int("onesided", 0) != 0;
  std::vector<Dim> out = in.shape.dims;
  out.back() = Dim(inverse && onesided ? 1 : 2);
  bool known = true;
  const bool axis_present = ctx.opset >= 20 && ctx.has_input(2);
  const int64_t raw = raw_dft_axis(ctx.node, ctx.opset, axis_present ? ctx.value(2) : nullptr, axis_present, &known);
  if (!known) {
    // The transformed axis is unknown: every signal dimension may change.
    for (int64_t d = 0; d < rank - 1; ++d) out[d] = ctx.fresh_dim();
    return one(in.dtype, Shape(out));
  }
  const int64_t axis = normalize_dft_axis(raw, rank, ctx.node);
  int64_t dft_length = -1;
  if (ctx.has_input(1)) {
    const Tensor* v = ctx.value(1);
    if (!v) {
      out[axis] = ctx.fresh_dim();
      return one(in.dtype, Shape(out));
    }
    dft_length = v->get_int(0);
  }
  if (dft_length < 0 && !in.shape.dims[axis].known()) {
    // Length follows the input's: only the plain transform keeps the dim.
    if (onesided) out[axis] = ctx.fresh_dim();
    return one(in.dtype, Shape(out));
  }
  DftParams p;
  p.inverse = inverse;
  p.onesided = onesided;
  resolve_lengths(p, in.shape.dims[axis].value, dft_length, ctx.node);
  out[axis] = Dim(p.out_axis_len);
  return one(in.dtype, Shape(out));
}

// About 5 N log2 N flops per complex transform of length N (radix-2 count).
double fft_flops(double n) { return n > 1 ? 5.0 * n * std::log2(n) : 0.0; }

Cost dft_cost(const CostContext& c) {
  Cost k = default_cost(c);
  if (c.outputs.empty() || !c.outputs[0].shape.rank_known || !c.outputs[0].shape.fully_known()) return k;
  const Dims out = c.outputs[0].shape.concrete();
  const int64_t rank = static_cast<int64_t>(out.size());
  if (rank < 2) return k;
  // The axis may be a runtime input (opset 20); the default -2 is the estimate then.
  int64_t axis = c.node.attr_int("axis", -2);
  axis = axis < 0 ? axis + rank : axis;
  if (axis < 0 || axis > rank - 2) axis = rank - 2;
  const double n = static_cast<double>(std::max<int64_t>(out[axis], 1));
  const double lines = static_cast<double>(numel(out)) / static_cast<double>(out.back()) / n;
  k.flops = lines * fft_flops(n);
  return k;
}

// ---------------------------------------------------------------------------
// STFT

template <typename T>
void stft_typed(KernelContext& ctx, const Tensor& signal, const Tensor* window, int64_t frame_length,
                int64_t frame_step, int64_t frames, int64_t bins, Tensor& y) {
  const int64_t batch = signal.dims()[0], sig_len = signal.dims()[1], comps = signal.dims()[2];
  const FftPlan plan(frame_length);
  const T* src = signal.data<T>();
  T* dst = y.data<T>();
  std::vector<double> w(frame_length, 1.0);
  if (window) {
    dispatch_float(window->dtype(), [&](auto tag) {
      using W = typename decltype(tag)::type;
      for (int64_t j = 0; j < frame_length; ++j) w[j] = load(window->data<W>()[j]);
    });
  }
  ctx.parallel_for(batch * frames, [&](int64_t begin, int64_t end) {
    std::vector<cd> line(frame_length), scratch;
    for (int64_t bf = begin; bf < end; ++bf) {
      const int64_t b = bf / frames, f = bf % frames;
      for (int64_t j = 0; j < frame_length; ++j) {
        const T* e = src + (b * sig_len + f * frame_step + j) * comps;
        line[j] = cd(load(e[0]), comps == 2 ? load(e[1]) : 0.0) * w[j];
      }
      transform(plan, line.data(), false, scratch);
      T* out = dst + bf * bins * 2;
      for (int64_t k = 0; k < bins; ++k) {
        out[2 * k] = store<T>(line[k].real());
        out[2 * k + 1] = store<T>(line[k].imag());
      }
    }
  });
}

// Frame length from the frame_length input, the window, or the signal.
int64_t stft_frame_length(const KernelContext& ctx, const Tensor& signal, const Tensor* window) {
  int64_t frame_length = -1;
  if (ctx.has_input(3)) frame_length = scalar_int(ctx, 3, "frame_length");
  if (window) {
    if (window->rank() != 1) fail(ctx.node.label(), ": window must be 1-D, got ", window->describe());
    if (frame_length >= 0 && window->dims()[0] != frame_length)
      fail(ctx.node.label(), ": window length ", window->dims()[0], " differs from frame_length ", frame_length);
    frame_length = window->dims()[0];
  }
  if (frame_length < 0) frame_length = signal.dims()[1];
  return frame_length;
}

void stft_kernel(KernelContext& ctx) {
  const Tensor& signal = ctx.input(0);
  if (signal.rank() != 3 || (signal.dims()[2] != 1 && signal.dims()[2] != 2))
    fail(ctx.node.label(), ": signal must be [batch][length][1 or 2], got ", signal.describe());
  const int64_t frame_step = scalar_int(ctx, 1, "frame_step");
  if (frame_step < 1) fail(ctx.node.label(), ": frame_step must be positive, got ", frame_step);
  const Tensor* window = ctx.optional_input(2);
  const int64_t frame_length = stft_frame_length(ctx, signal, window);
  const int64_t sig_len = signal.dims()[1];
  if (frame_length < 1 || frame_length > sig_len)
    fail(ctx.node.label(), ": frame_length ", frame_length, " must be in [1, signal length ", sig_len, "]");
  const bool onesided = ctx.node.attr_int("onesided", 1) != 0;
  if (onesided && signal.dims()[2] == 2)
    fail(ctx.node.label(), ": onesided output needs a real signal; set onesided=0 for complex input");
  const int64_t frames = (sig_len - frame_length) / frame_step + 1;
  const int64_t bins = onesided ? frame_length / 2 + 1 : frame_length;
  Tensor& y = ctx.allocate_output(0, signal.dtype(), {signal.dims()[0], frames, bins, 2});
  if (y.numel() == 0) return;
  dispatch_float(signal.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    stft_typed<T>(ctx, signal, window, frame_length, frame_step, frames, bins, y);
  });
}

std::vector<ir::ValueType> stft_infer(InferContext& ctx) {
  const auto& sig = ctx.inputs[0];
  const bool onesided = ctx.node.attr_int("onesided", 1) != 0;
  Dim batch = ctx.fresh_dim(), frames = ctx.fresh_dim(), bins = ctx.fresh_dim();
  int64_t sig_len = -1;
  if (sig.shape.rank_known && sig.shape.rank() == 3) {
    batch = sig.shape.dims[0];
    sig_len = sig.shape.dims[1].value;
  }
  int64_t frame_length = -1;
  if (ctx.has_input(3)) {
    if (const Tensor* v = ctx.value(3)) frame_length = v->get_int(0);
  } else if (ctx.has_input(2)) {
    const auto& w = ctx.inputs[2].shape;
    if (w.rank_known && w.rank() == 1 && w.dims[0].known()) frame_length = w.dims[0].value;
  } else {
    frame_length = sig_len;
  }
  if (frame_length >= 1) {
    bins = Dim(onesided ? frame_length / 2 + 1 : frame_length);
    const Tensor* step = ctx.value(1);
    if (step && sig_len >= frame_length && step->get_int(0) > 0)
      frames = Dim((sig_len - frame_length) / step->get_int(0) + 1);
  }
  return one(sig.dtype, Shape({batch, frames, bins, Dim(2)}));
}

Cost stft_cost(const CostContext& c) {
  Cost k = default_cost(c);
  if (c.outputs.empty() || !c.outputs[0].shape.fully_known()) return k;
  const Dims out = c.outputs[0].shape.concrete();
  if (out.size() != 4) return k;
  // Frame length is bins (two-sided) or about 2*(bins-1) (one-sided).
  const bool onesided = c.node.attr_int("onesided", 1) != 0;
  const double n = onesided ? std::max<double>(1, 2.0 * static_cast<double>(out[2] - 1)) : static_cast<double>(out[2]);
  const double transforms = static_cast<double>(out[0] * out[1]);
  k.flops = transforms * (fft_flops(n) + 2.0 * n);  // transform plus windowing
  return k;
}

// ---------------------------------------------------------------------------
// Windows: w[n] = f(2 pi n / N1) with N1 = size (periodic) or size - 1.

DType output_datatype(const ir::Node& node) {
  const int64_t code = node.attr_int("output_datatype", 1);
  if (!dtype_is_valid(static_cast<int>(code)) || code == 0)
    fail(node.label(), ": output_datatype ", code, " is not a valid data type");
  return static_cast<DType>(code);
}

// Writes values (computed in double) into a fresh tensor of the given type.
void store_values(KernelContext& ctx, DType dt, const std::vector<double>& v, Dims dims) {
  Tensor& y = ctx.allocate_output(0, dt, std::move(dims));
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    for (size_t i = 0; i < v.size(); ++i) {
      if constexpr (std::is_same_v<T, double>) out[i] = v[i];
      else if constexpr (std::is_arithmetic_v<T>) out[i] = static_cast<T>(v[i]);
      else out[i] = static_cast<T>(static_cast<float>(v[i]));
    }
  });
}

template <typename Fn>
void window_kernel(KernelContext& ctx, Fn&& shape) {
  const int64_t size = scalar_int(ctx, 0, "size");
  if (size < 0) fail(ctx.node.label(), ": size must be non-negative, got ", size);
  const DType dt = output_datatype(ctx.node);
  const bool periodic = ctx.node.attr_int("periodic", 1) != 0;
  const int64_t n1 = periodic ? size : size - 1;
  std::vector<double> v(size);
  for (int64_t i = 0; i < size; ++i) {
    // A symmetric window of one point is [1] (as torch defines it).
    v[i] = n1 == 0 ? 1.0 : shape(2.0 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(n1));
  }
  store_values(ctx, dt, v, {size});
}

std::vector<ir::ValueType> window_infer(InferContext& ctx) {
  const DType dt = output_datatype(ctx.node);
  if (const Tensor* v = ctx.value(0)) return one(dt, Shape({Dim(v->get_int(0))}));
  return one(dt, Shape({ctx.fresh_dim()}));
}

void hann_kernel(KernelContext& ctx) {
  window_kernel(ctx, [](double t) { return 0.5 - 0.5 * std::cos(t); });
}
void hamming_kernel(KernelContext& ctx) {
  const double alpha = 25.0 / 46.0;
  window_kernel(ctx, [&](double t) { return alpha - (1.0 - alpha) * std::cos(t); });
}
void blackman_kernel(KernelContext& ctx) {
  window_kernel(ctx, [](double t) { return 0.42 - 0.5 * std::cos(t) + 0.08 * std::cos(2.0 * t); });
}

// ---------------------------------------------------------------------------
// MelWeightMatrix: triangular filters between mel-spaced bin edges.

double hz_to_mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double mel_to_hz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

void mel_weight_matrix_kernel(KernelContext& ctx) {
  const int64_t num_mel_bins = scalar_int(ctx, 0, "num_mel_bins");
  const int64_t dft_length = scalar_int(ctx, 1, "dft_length");
  const int64_t sample_rate = scalar_int(ctx, 2, "sample_rate");
  const double lower = scalar_double(ctx, 3, "lower_edge_hertz");
  const double upper = scalar_double(ctx, 4, "upper_edge_hertz");
  if (num_mel_bins < 1) fail(ctx.node.label(), ": num_mel_bins must be positive, got ", num_mel_bins);
  if (dft_length < 1) fail(ctx.node.label(), ": dft_length must be positive, got ", dft_length);
  if (sample_rate < 1) fail(ctx.node.label(), ": sample_rate must be positive, got ", sample_rate);
  if (!(lower >= 0 && lower <= upper))
    fail(ctx.node.label(), ": need 0 <= lower_edge_hertz <= upper_edge_hertz, got ", lower, " and ", upper);
  const DType dt = output_datatype(ctx.node);
  const int64_t spectrogram_bins = dft_length / 2 + 1;

  // num_mel_bins + 2 edges, evenly spaced in mel, mapped to DFT bin indices.
  const int64_t edges = num_mel_bins + 2;
  const double low_mel = hz_to_mel(lower), high_mel = hz_to_mel(upper);
  const double step = (high_mel - low_mel) / static_cast<double>(edges);
  std::vector<int64_t> bin(edges);
  for (int64_t i = 0; i < edges; ++i) {
    const double hz = mel_to_hz(static_cast<double>(i) * step + low_mel);
    bin[i] = static_cast<int64_t>(std::floor(static_cast<double>(dft_length + 1) * hz / static_cast<double>(sample_rate)));
  }

  std::vector<double> w(spectrogram_bins * num_mel_bins, 0.0);
  // Rows past the last spectrogram bin (edges above Nyquist) are dropped.
  auto set = [&](int64_t row, int64_t col, double v) {
    if (row >= 0 && row < spectrogram_bins) w[row * num_mel_bins + col] = v;
  };
  for (int64_t m = 0; m < num_mel_bins; ++m) {
    const int64_t left = bin[m], center = bin[m + 1], right = bin[m + 2];
    if (center == left) {
      set(center, m, 1.0);
    } else {
      for (int64_t j = left; j <= center; ++j)
        set(j, m, static_cast<double>(j - left) / static_cast<double>(center - left));
    }
    for (int64_t j = center; j < right; ++j)
      set(j, m, static_cast<double>(right - j) / static_cast<double>(right - center));
  }
  store_values(ctx, dt, w, {spectrogram_bins, num_mel_bins});
}

std::vector<ir::ValueType> mel_weight_matrix_infer(InferContext& ctx) {
  const DType dt = output_datatype(ctx.node);
  Dim rows = ctx.fresh_dim(), cols = ctx.fresh_dim();
  if (const Tensor* v = ctx.value(1)) rows = Dim(v->get_int(0) / 2 + 1);
  if (const Tensor* v = ctx.value(0)) cols = Dim(v->get_int(0));
  return one(dt, Shape({rows, cols}));
}

}  // namespace

void register_signal(Registry& r) {
  r.add({.name = "DFT", .kernel = dft_kernel, .infer = dft_infer, .cost = dft_cost});
  r.add({.name = "STFT", .kernel = stft_kernel, .infer = stft_infer, .cost = stft_cost});
  r.add({.name = "HannWindow", .kernel = hann_kernel, .infer = window_infer, .cost = cost_per_output_element(4)});
  r.add({.name = "HammingWindow", .kernel = hamming_kernel, .infer = window_infer, .cost = cost_per_output_element(4)});
  r.add({.name = "BlackmanWindow", .kernel = blackman_kernel, .infer = window_infer, .cost = cost_per_output_element(8)});
  r.add({.name = "MelWeightMatrix", .kernel = mel_weight_matrix_kernel, .infer = mel_weight_matrix_infer,
         .cost = cost_per_output_element(1)});
}

}  // namespace duet::ops
