// Convolution family: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv.
//
// Speed matters here (whole models run on these kernels), so float convs are
// lowered to a tiled GEMM: for a tile of TP output pixels a task builds the
// im2col panel [K][TP] and multiplies the packed weights into it with an
// MR x NR register-blocked micro-kernel written in plain C++ for the
// compiler to vectorize. Depthwise convs use a direct loop. Every output
// element is summed by one task in a fixed order (k ascending, then bias), so
// results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "conv_util.h"
#include "duet/ops/kernel_util.h"
#include "families.h"
#include "gemm.h"

namespace duet::ops {

namespace {

using window::Geometry;
using window::Geometry3;
using window::ConvSetup;
using window::conv_setup;
using window::kernel_from_weights;

constexpr int64_t MR = 4;   // rows (output channels) per micro-kernel
constexpr int64_t NR = 8;   // columns (pixels) per micro-kernel
constexpr int64_t TP = 64;  // pixels per task tile (multiple of NR)
constexpr int64_t MC = 64;  // output channels per task (multiple of MR)

// ---------------------------------------------------------------------------
// GEMM core: C[m][p] = sum_k A[m][k] * B[k][p] (+ bias[m]).

// A packed as [M/MR blocks][K][MR], zero rows past M.
template <typename T, typename GetA>
std::vector<T> pack_a(int64_t M, int64_t K, GetA&& a_at) {
  int64_t blocks = (M + MR - 1) / MR;
  std::vector<T> packed(static_cast<size_t>(blocks * K * MR), T(0));
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < MR; ++i) {
        int64_t m = b * MR + i;
        if (m < M) packed[(b * K + k) * MR + i] = a_at(m, k);
      }
  return packed;
}

// acc[MR][NR] = A block (K x MR, packed) times B panel columns (K rows, row stride TP).
template <typename T>
inline void micro_kernel(const T* __restrict a, const T* __restrict b, int64_t K, T* __restrict out) {
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < K; ++k) {
    T bk[NR];
    for (int64_t j = 0; j < NR; ++j) bk[j] = b[k * TP + j];
    const T* ak = a + k * MR;
    for (int64_t i = 0; i < MR; ++i) {
      const T ai = ak[i];
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += ai * bk[j];
    }
  }
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t j = 0; j < NR; ++j) out[i * NR + j] = acc[i][j];
}

// Runs `count` independent GEMMs (one per batch item and group), each
// C_b[M][P] = A_b * B_b where B_b is produced tile by tile by
// fill_b(b, p0, np, panel) into a zero-padded [K][TP] panel.
// a_packed(b) gives the packed A, c_ptr(b) the output (row stride P),
// bias(b) a pointer to M bias values or nullptr.
template <typename T, typename FillB, typename APtr, typename CPtr, typename BiasPtr>
void tiled_gemm(const KernelContext& ctx, int64_t count, int64_t M, int64_t K, int64_t P,
                FillB&& fill_b, APtr&& a_packed, CPtr&& c_ptr, BiasPtr&& bias) {
  if (count == 0 || M == 0 || P == 0) return;
  const int64_t ptiles = (P + TP - 1) / TP;
  const int64_t mchunks = (M + MC - 1) / MC;
  const int64_t tasks = count * ptiles * mchunks;
  ctx.parallel_for(tasks, [&](int64_t begin, int64_t end) {
    std::vector<T> panel(static_cast<size_t>(std::max<int64_t>(K, 1) * TP));
    T out[MR * NR];
    int64_t filled_key = -1;  // (b, ptile) whose panel is in `panel`
    for (int64_t t = begin; t < end; ++t) {
      // Task order: b, then pixel tile, then channel chunk, so consecutive
      // tasks of one thread reuse the panel.
      int64_t mc = t % mchunks;
      int64_t pt = (t / mchunks) % ptiles;
      int64_t b = t / (mchunks * ptiles);
      int64_t p0 = pt * TP, np = std::min(TP, P - p0);
      int64_t key = b * ptiles + pt;
      if (key != filled_key) {
        fill_b(b, p0, np, panel.data());
        if (np < TP)
          for (int64_t k = 0; k < K; ++k) std::fill(panel.data() + k * TP + np, panel.data() + (k + 1) * TP, T(0));
        filled_key = key;
      }
      const T* A = a_packed(b);
      T* C = c_ptr(b);
      const T* bs = bias(b);
      int64_t m_end = std::min(M, (mc + 1) * MC);
      for (int64_t m0 = mc * MC; m0 < m_end; m0 += MR) {
        int64_t nm = std::min(MR, m_end - m0);
        const T* a = A + (m0 / MR) * K * MR;
        for (int64_t j0 = 0; j0 < np; j0 += NR) {
          micro_kernel<T>(a, panel.data() + j0, K, out);
          int64_t nj = std::min(NR, np - j0);
          for (int64_t i = 0; i < nm; ++i) {
            T add = bs ? bs[m0 + i] : T(0);
            T* crow = C + (m0 + i) * P + p0 + j0;
            for (int64_t j = 0; j < nj; ++j) crow[j] = out[i * NR + j] + add;
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Conv setup shared by Conv, ConvInteger, QLinearConv.

// Fills an im2col panel: rows (ci, kd, kh, kw) of the input channels
// [c_begin, c_begin + channels), columns output pixels [p0, p0 + np).
template <typename T>
void im2col_tile(const Geometry3& g, const T* x, int64_t channels, int64_t p0, int64_t np, T* panel) {
  int64_t bd[TP], bh[TP], bw[TP];
  for (int64_t j = 0; j < np; ++j) {
    int64_t p = p0 + j;
    int64_t ow = p % g.out[2], oh = (p / g.out[2]) % g.out[1], od = p / (g.out[2] * g.out[1]);
    bd[j] = od * g.stride[0] - g.pad[0];
    bh[j] = oh * g.stride[1] - g.pad[1];
    bw[j] = ow * g.stride[2] - g.pad[2];
  }
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2];
  const bool pointwise = g.kernel_size() == 1 && g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1 &&
                         g.pad[0] == 0 && g.pad[1] == 0 && g.pad[2] == 0 && g.out[0] == D && g.out[1] == H &&
                         g.out[2] == W;
  if (pointwise) {
    for (int64_t c = 0; c < channels; ++c) std::memcpy(panel + c * TP, x + c * g.in_size() + p0, np * sizeof(T));
    return;
  }
  int64_t row = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const T* xc = x + c * g.in_size();
    for (int64_t kd = 0; kd < g.kernel[0]; ++kd)
      for (int64_t kh = 0; kh < g.kernel[1]; ++kh)
        for (int64_t kw = 0; kw < g.kernel[2]; ++kw, ++row) {
          T* dst = panel + row * TP;
          int64_t od = kd * g.dilation[0], oh = kh * g.dilation[1], ow = kw * g.dilation[2];
          for (int64_t j = 0; j < np; ++j) {
            int64_t id = bd[j] + od, ih = bh[j] + oh, iw = bw[j] + ow;
            bool inside = static_cast<uint64_t>(id) < static_cast<uint64_t>(D) &&
                          static_cast<uint64_t>(ih) < static_cast<uint64_t>(H) &&
                          static_cast<uint64_t>(iw) < static_cast<uint64_t>(W);
            dst[j] = inside ? xc[(id * H + ih) * W + iw] : T(0);
          }
        }
  }
}

// Depthwise (one input channel per group): a direct loop per output plane,
// summing kernel taps in (kd, kh, kw) order.
template <typename T>
void depthwise_conv(const KernelContext& ctx, const ConvSetup& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry3& g = s.g3;
  const int64_t ksize = g.kernel_size(), osize = g.out_size(), isize = g.in_size();
  const int64_t per_group = s.cout_g();
  ctx.parallel_for(s.N * s.Cout, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t n = t / s.Cout, co = t % s.Cout, ci = co / per_group;
      const T* xp = x + (n * s.Cin + ci) * isize;
      const T* wk = w + co * ksize;
      T* yp = y + t * osize;
      std::fill(yp, yp + osize, T(0));
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh) {
          T* yrow = yp + (od * g.out[1] + oh) * g.out[2];
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
            if (id < 0 || id >= g.in[0]) continue;
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
              if (ih < 0 || ih >= g.in[1]) continue;
              const T* xrow = xp + (id * g.in[1] + ih) * g.in[2];
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
                T wv = wk[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
                int64_t off = kw * g.dilation[2] - g.pad[2];  // iw = ow * stride + off
                int64_t sw = g.stride[2];
                // valid ow: 0 <= ow*sw + off < W
                int64_t lo = off >= 0 ? 0 : window::ceil_div(-off, sw);
                int64_t hi = std::min(g.out[2], window::floor_div(g.in[2] - 1 - off, sw) + 1);
                if (sw == 1) {
                  const T* xs = xrow + off;
                  for (int64_t ow = lo; ow < hi; ++ow) yrow[ow] += wv * xs[ow];
                } else {
                  for (int64_t ow = lo; ow < hi; ++ow) yrow[ow] += wv * xrow[ow * sw + off];
                }
              }
            }
          }
        }
      if (bias) {
        T b = bias[co];
        for (int64_t i = 0; i < osize; ++i) yp[i] += b;
      }
    }
  });
}

// Conv of T data (float, double or int32 with zero points already removed).
template <typename T>
void conv_core(const KernelContext& ctx, const ConvSetup& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry3& g = s.g3;
  if (s.cin_g() == 1 && s.group > 1) return depthwise_conv(ctx, s, x, w, bias, y);
  const int64_t K = s.cin_g() * g.kernel_size(), M = s.cout_g(), P = g.out_size();
  std::vector<std::vector<T>> packed(static_cast<size_t>(s.group));
  for (int64_t gi = 0; gi < s.group; ++gi) {
    const T* wg = w + gi * M * K;
    packed[gi] = pack_a<T>(M, K, [&](int64_t m, int64_t k) { return wg[m * K + k]; });
  }
  const int64_t isize = g.in_size();
  tiled_gemm<T>(
      ctx, s.N * s.group, M, K, P,
      [&](int64_t b, int64_t p0, int64_t np, T* panel) {
        int64_t n = b / s.group, gi = b % s.group;
        im2col_tile<T>(g, x + (n * s.Cin + gi * s.cin_g()) * isize, s.cin_g(), p0, np, panel);
      },
      [&](int64_t b) { return packed[b % s.group].data(); },
      [&](int64_t b) { return y + (b / s.group * s.Cout + b % s.group * M) * P; },
      [&](int64_t b) -> const T* { return bias ? bias + b % s.group * M : nullptr; });
}

// Values of a tensor converted to C (float for the half types).
template <typename C>
std::vector<C> values_as(const Tensor& t) {
  std::vector<C> v(static_cast<size_t>(t.numel()));
  dispatch_numeric(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<C>(static_cast<float>(p[i]));
  });
  return v;
}
template <typename C>
void store_values(Tensor& t, const std::vector<C>& v) {
  dispatch_numeric(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(static_cast<float>(v[i]));
  });
}

void check_bias(const ir::Node& node, const Tensor* b, int64_t channels) {
  if (b && b->numel() != channels)
    fail(node.label(), ": bias has ", b->numel(), " values, expected ", channels);
}

void check_float_dtypes(const KernelContext& ctx, std::initializer_list<size_t> inputs) {
  DType t = ctx.input(0).dtype();
  for (size_t i : inputs)
    if (ctx.has_input(i) && ctx.input(i).dtype() != t)
      fail(ctx.node.label(), ": input ", i, " has type ", dtype_name(ctx.input(i).dtype()), ", expected ",
           dtype_name(t));
}

// Runs fn<C>(x, w, b, y) on float/double pointers, converting half types
// through float buffers.
template <typename Fn>
void run_float(KernelContext& ctx, const Tensor& X, const Tensor& W, const Tensor* B, Tensor& Y, Fn&& fn) {
  switch (X.dtype()) {
    case DType::Float32:
      fn(X.data<float>(), W.data<float>(), B ? B->data<float>() : nullptr, Y.data<float>());
      return;
    case DType::Float64:
      fn(X.data<double>(), W.data<double>(), B ? B->data<double>() : nullptr, Y.data<double>());
      return;
    case DType::Float16:
    case DType::BFloat16: {
      auto x = values_as<float>(X), w = values_as<float>(W);
      std::vector<float> b = B ? values_as<float>(*B) : std::vector<float>{};
      std::vector<float> y(static_cast<size_t>(Y.numel()));
      fn(x.data(), w.data(), B ? b.data() : nullptr, y.data());
      store_values(Y, y);
      return;
    }
    default:
      unsupported(ctx.node.label(), ": data type ", dtype_name(X.dtype()), " is not supported");
  }
}

void conv_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor* B = ctx.optional_input(2);
  check_float_dtypes(ctx, {1, 2});
  ConvSetup s = conv_setup(ctx.node, X.dims(), W.dims());
  check_bias(ctx.node, B, s.Cout);
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  run_float(ctx, X, W, B, Y, [&](const auto* x, const auto* w, const auto* b, auto* y) {
    conv_core(ctx, s, x, w, b, y);
  });
}


// ---------------------------------------------------------------------------
// ConvGrad (com.duet, written by train::add_gradients): from dY, X and W with
// the forward Conv's attributes, outputs dX, dW and dB (each optional). Per
// group, dW = dY · im2col(X)^T summed over the batch as one GEMM (k runs over
// samples and pixels), dX = col2im(W^T · dY) per sample, dB sums dY. Samples
// are taken in chunks so that the column buffers stay below ~32 MB.

// Calls fn(p, k, offset) for output pixel p and tap k = (c, kd, kh, kw) of
// `channels` input channels, where offset indexes the input plane block (-1:
// the tap falls in the padding). Pixels outer, taps inner: the im2row order.
template <typename Fn>
void for_each_tap_of_pixels(const Geometry3& g, int64_t channels, Fn&& fn) {
  int64_t p = 0;
  for (int64_t od = 0; od < g.out[0]; ++od)
    for (int64_t oh = 0; oh < g.out[1]; ++oh)
      for (int64_t ow = 0; ow < g.out[2]; ++ow, ++p) {
        int64_t k = 0;
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
            const bool d_in = static_cast<uint64_t>(id) < static_cast<uint64_t>(g.in[0]);
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
              const bool h_in = d_in && static_cast<uint64_t>(ih) < static_cast<uint64_t>(g.in[1]);
              const int64_t row = c * g.in_size() + (id * g.in[1] + ih) * g.in[2];
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw, ++k) {
                const int64_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dilation[2];
                fn(p, k, h_in && static_cast<uint64_t>(iw) < static_cast<uint64_t>(g.in[2]) ? row + iw : int64_t{-1});
              }
            }
          }
      }
}

// rows[p * K + k] = the input value of tap k for output pixel p (0 in the padding).
template <typename T>
void im2row(const Geometry3& g, const T* x, int64_t channels, T* rows) {
  const int64_t K = channels * g.kernel_size();
  for_each_tap_of_pixels(g, channels, [&](int64_t p, int64_t k, int64_t off) { rows[p * K + k] = off >= 0 ? x[off] : T(0); });
}

// The adjoint of im2row: dx[tap] += rows[p * K + k] for every in-bounds tap.
template <typename T>
void row2im_add(const Geometry3& g, const T* rows, int64_t channels, T* dx) {
  const int64_t K = channels * g.kernel_size();
  for_each_tap_of_pixels(g, channels, [&](int64_t p, int64_t k, int64_t off) { if (off >= 0) dx[off] += rows[p * K + k]; });
}

template <typename T>
void conv_grad_core(const KernelContext& ctx, const ConvSetup& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                    T* db) {
  const Geometry3& g = s.g3;
  const int64_t K = s.cin_g() * g.kernel_size(), M = s.cout_g(), P = g.out_size(), N = s.N;
  if (db) {
    ctx.parallel_for(s.Cout, [&](int64_t begin, int64_t end) {
      for (int64_t co = begin; co < end; ++co) {
        T sum = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < P; ++p) sum += dy[(n * s.Cout + co) * P + p];
        db[co] = sum;
      }
    });
  }
  if (!dx && !dw) return;
  const int64_t per_sample = std::max<int64_t>(1, K * P);
  const int64_t chunk = std::clamp<int64_t>((int64_t{32} << 20) / static_cast<int64_t>(sizeof(T)) / per_sample, 1,
                                            std::max<int64_t>(N, 1));
  std::vector<T> rows(static_cast<size_t>(chunk * P * K)), dyt, part;
  if (dw) {
    dyt.resize(static_cast<size_t>(M * chunk * P));
    part.resize(static_cast<size_t>(M * K));
    std::fill(dw, dw + s.Cout * K, T(0));
  }
  if (dx) std::fill(dx, dx + N * s.Cin * g.in_size(), T(0));
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t nc = std::min(chunk, N - n0), NP = nc * P;
    for (int64_t gi = 0; gi < s.group; ++gi) {
      const T* dy_g = dy + (n0 * s.Cout + gi * M) * P;  // (n, m, p) at n * Cout * P + m * P + p
      if (dw) {
        // dW_g [M x K] = dY as [M][nc * P] times im2row(X) as [nc * P][K]: one GEMM over samples and pixels.
        ctx.parallel_for(nc, [&](int64_t begin, int64_t end) {
          for (int64_t n = begin; n < end; ++n) {
            im2row<T>(g, x + ((n0 + n) * s.Cin + gi * s.cin_g()) * g.in_size(), s.cin_g(), rows.data() + n * P * K);
            for (int64_t m = 0; m < M; ++m)
              std::copy_n(dy_g + (n * s.Cout + m) * P, P, dyt.data() + m * NP + n * P);
          }
        });
        strided_gemm<T>(ctx, 1, M, K, NP, {dyt.data(), 0, NP, 1}, {rows.data(), 0, K, 1}, part.data());
        T* dw_g = dw + gi * M * K;
        for (int64_t i = 0; i < M * K; ++i) dw_g[i] += part[i];
      }
      if (dx) {
        // Per sample: rows [P x K] = dY[n, g]^T (P x M) · W_g (M x K), scattered back into dX.
        strided_gemm<T>(ctx, nc, P, K, M, {dy_g, s.Cout * P, 1, P}, {w + gi * M * K, 0, K, 1}, rows.data());
        ctx.parallel_for(nc, [&](int64_t begin, int64_t end) {
          for (int64_t n = begin; n < end; ++n)
            row2im_add<T>(g, rows.data() + n * P * K, s.cin_g(), dx + ((n0 + n) * s.Cin + gi * s.cin_g()) * g.in_size());
        });
      }
    }
  }
}

void conv_grad_kernel(KernelContext& ctx) {
  const Tensor& dY = ctx.input(0);
  const Tensor& X = ctx.input(1);
  const Tensor& W = ctx.input(2);
  ConvSetup s = conv_setup(ctx.node, X.dims(), W.dims());
  if (dY.dims() != s.out_dims)
    fail(ctx.node.label(), ": gradient ", dY.describe(), " does not match the conv output ", dims_str(s.out_dims));
  if (X.dtype() != DType::Float32 && X.dtype() != DType::Float64)
    unsupported(ctx.node.label(), ": gradients are float32 or float64, got ", X.describe());
  if (dY.dtype() != X.dtype() || W.dtype() != X.dtype())
    fail(ctx.node.label(), ": dY ", dY.describe(), ", X ", X.describe(), " and W ", W.describe(), " must share a type");
  auto out = [&](size_t i, const Dims& dims) -> Tensor* {
    return ctx.num_outputs() > i && ctx.output_requested(i) ? &ctx.allocate_output(i, X.dtype(), dims) : nullptr;
  };
  Tensor* dX = out(0, X.dims());
  Tensor* dW = out(1, W.dims());
  Tensor* dB = out(2, {s.Cout});
  dispatch_float(X.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      conv_grad_core<T>(ctx, s, X.data<T>(), W.data<T>(), dY.data<T>(), dX ? dX->data<T>() : nullptr,
                        dW ? dW->data<T>() : nullptr, dB ? dB->data<T>() : nullptr);
    }
  });
}

std::vector<ir::ValueType> infer_conv_grad(InferContext& ctx) {
  const DType t = ctx.inputs.size() > 1 ? ctx.inputs[1].dtype : DType::Undefined;
  std::vector<ir::ValueType> out(ctx.num_outputs);
  if (out.size() > 0) out[0] = ctx.inputs[1];
  if (out.size() > 1 && ctx.inputs.size() > 2) out[1] = ctx.inputs[2];
  if (out.size() > 2) {
    Shape b = Shape::unknown_rank();
    if (ctx.inputs.size() > 2 && ctx.inputs[2].shape.rank_known) b = Shape({ctx.inputs[2].shape.dims[0]});
    out[2] = tensor_type(t, b);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Integer convs: zero points removed into int32 buffers, exact int32 GEMM.

std::vector<int32_t> minus_zero_point(const ir::Node& node, const Tensor& t, const Tensor* zp, int64_t channels,
                                      const char* what) {
  if (t.dtype() != DType::UInt8 && t.dtype() != DType::Int8)
    unsupported(node.label(), ": ", what, " type ", dtype_name(t.dtype()), " is not supported (int8/uint8 only)");
  std::vector<int32_t> zps{0};
  if (zp) {
    if (zp->dtype() != t.dtype())
      fail(node.label(), ": ", what, " zero point type ", dtype_name(zp->dtype()), " differs from ",
           dtype_name(t.dtype()));
    zps.clear();
    for (int64_t i = 0; i < zp->numel(); ++i) zps.push_back(static_cast<int32_t>(zp->get_int(i)));
    if (zps.empty()) zps.push_back(0);
    if (zps.size() != 1 && static_cast<int64_t>(zps.size()) != channels)
      fail(node.label(), ": ", what, " zero point has ", zps.size(), " values, expected 1 or ", channels);
  }
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  const int64_t per = channels > 0 && t.numel() > 0 ? t.numel() / channels : 1;
  bool is_signed = t.dtype() == DType::Int8;
  for (int64_t i = 0; i < t.numel(); ++i) {
    int32_t raw = is_signed ? t.data<int8_t>()[i] : t.data<uint8_t>()[i];
    v[i] = raw - (zps.size() == 1 ? zps[0] : zps[i / per]);
  }
  return v;
}

// The input's zero point is per tensor; x values are grouped by batch and channel.
std::vector<int32_t> input_minus_zero_point(const ir::Node& node, const Tensor& x, const Tensor* zp) {
  if (zp && zp->numel() != 1) fail(node.label(), ": the input zero point must be a scalar");
  return minus_zero_point(node, x, zp, 1, "input");
}

void conv_integer_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  ConvSetup s = conv_setup(ctx.node, X.dims(), W.dims());
  auto x = input_minus_zero_point(ctx.node, X, ctx.optional_input(2));
  auto w = minus_zero_point(ctx.node, W, ctx.optional_input(3), s.Cout, "weight");
  Tensor& Y = ctx.allocate_output(0, DType::Int32, s.out_dims);
  conv_core<int32_t>(ctx, s, x.data(), w.data(), nullptr, Y.data<int32_t>());
}

std::vector<float> float_values(const Tensor& t) {
  std::vector<float> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(static_cast<float>(t.get_double(i)));
  return v;
}

void qlinear_conv_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& X = ctx.input(0);
  const Tensor& x_scale = ctx.input(1);
  const Tensor& W = ctx.input(3);
  const Tensor& w_scale = ctx.input(4);
  const Tensor& y_scale = ctx.input(6);
  const Tensor* B = ctx.optional_input(8);
  ConvSetup s = conv_setup(node, X.dims(), W.dims());
  if (x_scale.numel() != 1 || y_scale.numel() != 1) fail(node.label(), ": x_scale and y_scale must be scalars");
  auto ws = float_values(w_scale);
  if (ws.size() != 1 && static_cast<int64_t>(ws.size()) != s.Cout)
    fail(node.label(), ": w_scale has ", ws.size(), " values, expected 1 or ", s.Cout);
  auto x = input_minus_zero_point(node, X, &ctx.input(2));
  auto w = minus_zero_point(node, W, &ctx.input(5), s.Cout, "weight");
  const Tensor& y_zp_t = ctx.input(7);
  if (y_zp_t.numel() != 1) fail(node.label(), ": the output zero point must be a scalar");
  DType out_type = y_zp_t.dtype();
  if (out_type != DType::UInt8 && out_type != DType::Int8)
    unsupported(node.label(), ": output type ", dtype_name(out_type), " is not supported");
  std::vector<int32_t> bias;
  if (B) {
    if (B->dtype() != DType::Int32) fail(node.label(), ": bias must be int32");
    check_bias(node, B, s.Cout);
    bias.assign(B->data<int32_t>(), B->data<int32_t>() + B->numel());
  }
  std::vector<int32_t> acc(static_cast<size_t>(numel(s.out_dims)));
  conv_core<int32_t>(ctx, s, x.data(), w.data(), B ? bias.data() : nullptr, acc.data());

  Tensor& Y = ctx.allocate_output(0, out_type, s.out_dims);
  const float xs = static_cast<float>(x_scale.get_double(0)), ys = static_cast<float>(y_scale.get_double(0));
  const int32_t yzp = static_cast<int32_t>(y_zp_t.get_int(0));
  const int32_t lo = out_type == DType::Int8 ? -128 : 0, hi = out_type == DType::Int8 ? 127 : 255;
  const int64_t plane = numel(s.out_dims) / std::max<int64_t>(1, s.N * s.Cout);
  for (int64_t i = 0; i < static_cast<int64_t>(acc.size()); ++i) {
    int64_t co = (i / std::max<int64_t>(plane, 1)) % s.Cout;
    float multiplier = xs * (ws.size() == 1 ? ws[0] : ws[co]) / ys;
    float r = std::nearbyint(static_cast<float>(acc[i]) * multiplier);  // half to even (default rounding)
    int64_t q = static_cast<int64_t>(r) + yzp;
    q = std::clamp<int64_t>(q, lo, hi);
    if (out_type == DType::Int8) Y.data<int8_t>()[i] = static_cast<int8_t>(q);
    else Y.data<uint8_t>()[i] = static_cast<uint8_t>(q);
  }
}

// ---------------------------------------------------------------------------
// ConvTranspose: col = W^T * X per group (tiled GEMM), then col2im.

struct ConvTransposeSetup {
  Geometry3 g3{};  // in = input spatial, out = output spatial, pad = begin pads
  Dims out_dims;
  int64_t N = 0, Cin = 0, Cout = 0, group = 1;
};

// Computes output size and begin pads of ConvTranspose along each spatial
// dimension. in may contain -1 (unknown), giving -1 outputs.
struct TransposeShape {
  std::vector<int64_t> kernel, stride, dilation, pad_begin, out;
};
TransposeShape transpose_shape(const ir::Node& node, const std::vector<int64_t>& in,
                               const std::vector<int64_t>& kernel) {
  size_t nsp = in.size();
  TransposeShape t;
  t.kernel = kernel;
  t.stride = window::spatial_ints(node, "strides", nsp, 1);
  t.dilation = window::spatial_ints(node, "dilations", nsp, 1);
  auto out_pad = window::spatial_ints(node, "output_padding", nsp, 0);
  std::vector<int64_t> pads = node.attr_ints("pads");
  if (!pads.empty() && pads.size() != 2 * nsp)
    fail(node.label(), ": attribute pads has ", pads.size(), " values, expected ", 2 * nsp);
  if (pads.empty()) pads.assign(2 * nsp, 0);
  std::vector<int64_t> out_shape = node.attr_ints("output_shape");
  if (out_shape.size() == nsp + 2) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);
  if (!out_shape.empty() && out_shape.size() != nsp)
    fail(node.label(), ": output_shape has ", out_shape.size(), " values, expected ", nsp);
  std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "" && auto_pad != "VALID" && auto_pad != "SAME_UPPER" &&
      auto_pad != "SAME_LOWER")
    fail(node.label(), ": unknown auto_pad '", auto_pad, "'");
  bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  if (auto_pad == "VALID") pads.assign(2 * nsp, 0);
  for (size_t i = 0; i < nsp; ++i) {
    if (t.kernel[i] <= 0 || t.stride[i] <= 0 || t.dilation[i] <= 0)
      fail(node.label(), ": kernel, strides and dilations must be positive");
  }
  t.pad_begin.assign(nsp, 0);
  t.out.assign(nsp, -1);
  for (size_t i = 0; i < nsp; ++i) {
    int64_t win = (t.kernel[i] - 1) * t.dilation[i] + 1;
    if (in[i] < 0) {
      if (!out_shape.empty()) t.out[i] = out_shape[i];
      continue;
    }
    int64_t full = t.stride[i] * (in[i] - 1) + out_pad[i] + win;
    if (!out_shape.empty() || same) {
      int64_t target = !out_shape.empty() ? out_shape[i] : in[i] * t.stride[i];
      int64_t total = full - target;
      if (auto_pad == "SAME_UPPER") t.pad_begin[i] = window::floor_div(total, 2);
      else if (auto_pad == "SAME_LOWER") t.pad_begin[i] = total - window::floor_div(total, 2);
      else t.pad_begin[i] = pads[i];  // explicit output_shape: extra size goes to the end
      t.out[i] = target;
    } else {
      t.pad_begin[i] = pads[i];
      t.out[i] = full - pads[i] - pads[i + nsp];
    }
    if (t.out[i] < 0) fail(node.label(), ": output size ", t.out[i], " is negative");
  }
  return t;
}

ConvTransposeSetup conv_transpose_setup(const ir::Node& node, const Dims& x, const Dims& w) {
  if (x.size() < 3) fail(node.label(), ": input must have rank >= 3, got ", dims_str(x));
  if (w.size() != x.size())
    fail(node.label(), ": weights ", dims_str(w), " must have the rank of the input ", dims_str(x));
  ConvTransposeSetup s;
  s.N = x[0];
  s.Cin = x[1];
  s.group = node.attr_int("group", 1);
  if (s.group <= 0) fail(node.label(), ": group must be positive");
  if (w[0] != s.Cin) fail(node.label(), ": weights have ", w[0], " input channels, expected ", s.Cin);
  if (s.Cin % s.group != 0) fail(node.label(), ": input channels ", s.Cin, " not divisible by group ", s.group);
  s.Cout = w[1] * s.group;
  auto kernel = kernel_from_weights(node, window::spatial_of(w));
  TransposeShape t = transpose_shape(node, window::spatial_of(x), kernel);
  size_t nsp = x.size() - 2;
  if (nsp > 3) unsupported(node.label(), ": more than 3 spatial dimensions are not supported");
  size_t lead = 3 - nsp;
  for (size_t i = 0; i < 3; ++i) {
    bool real = i >= lead;
    size_t j = i - lead;
    s.g3.in[i] = real ? x[2 + j] : 1;
    s.g3.kernel[i] = real ? t.kernel[j] : 1;
    s.g3.stride[i] = real ? t.stride[j] : 1;
    s.g3.dilation[i] = real ? t.dilation[j] : 1;
    s.g3.pad[i] = real ? t.pad_begin[j] : 0;
    s.g3.out[i] = real ? t.out[j] : 1;
  }
  s.out_dims = {s.N, s.Cout};
  for (int64_t o : t.out) s.out_dims.push_back(o);
  return s;
}

template <typename T>
void conv_transpose_core(const KernelContext& ctx, const ConvTransposeSetup& s, const T* x, const T* w,
                         const T* bias, T* y) {
  const Geometry3& g = s.g3;
  const int64_t cin_g = s.Cin / s.group, cout_g = s.Cout / s.group;
  const int64_t ksize = g.kernel_size(), P = g.in_size(), osize = g.out_size();
  const int64_t M = cout_g * ksize;
  std::vector<std::vector<T>> packed(static_cast<size_t>(s.group));
  for (int64_t gi = 0; gi < s.group; ++gi) {
    const T* wg = w + gi * cin_g * M;  // [cin_g][M]
    packed[gi] = pack_a<T>(M, cin_g, [&](int64_t m, int64_t k) { return wg[k * M + m]; });
  }
  std::vector<T> col(static_cast<size_t>(s.group * M * P));
  for (int64_t n = 0; n < s.N; ++n) {
    const T* xn = x + n * s.Cin * P;
    tiled_gemm<T>(
        ctx, s.group, M, cin_g, P,
        [&](int64_t gi, int64_t p0, int64_t np, T* panel) {
          for (int64_t c = 0; c < cin_g; ++c)
            std::memcpy(panel + c * TP, xn + (gi * cin_g + c) * P + p0, np * sizeof(T));
        },
        [&](int64_t gi) { return packed[gi].data(); }, [&](int64_t gi) { return col.data() + gi * M * P; },
        [&](int64_t) -> const T* { return nullptr; });
    // col2im: each output channel gathers its own rows, in kernel-tap order.
    ctx.parallel_for(s.Cout, [&](int64_t begin, int64_t end) {
      for (int64_t co = begin; co < end; ++co) {
        T* yp = y + (n * s.Cout + co) * osize;
        std::fill(yp, yp + osize, T(0));
        const T* cbase = col.data() + co * ksize * P;  // group-major layout matches co order
        for (int64_t kd = 0; kd < g.kernel[0]; ++kd)
          for (int64_t kh = 0; kh < g.kernel[1]; ++kh)
            for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
              const T* crow = cbase + ((kd * g.kernel[1] + kh) * g.kernel[2] + kw) * P;
              int64_t off = kw * g.dilation[2] - g.pad[2];  // ow = iw * stride + off
              int64_t sw = g.stride[2];
              int64_t lo = off >= 0 ? 0 : window::ceil_div(-off, sw);
              int64_t hi = std::min(g.in[2], window::floor_div(g.out[2] - 1 - off, sw) + 1);
              for (int64_t id = 0; id < g.in[0]; ++id) {
                int64_t od = id * g.stride[0] - g.pad[0] + kd * g.dilation[0];
                if (od < 0 || od >= g.out[0]) continue;
                for (int64_t ih = 0; ih < g.in[1]; ++ih) {
                  int64_t oh = ih * g.stride[1] - g.pad[1] + kh * g.dilation[1];
                  if (oh < 0 || oh >= g.out[1]) continue;
                  const T* src = crow + (id * g.in[1] + ih) * g.in[2];
                  T* dst = yp + (od * g.out[1] + oh) * g.out[2] + off;
                  for (int64_t iw = lo; iw < hi; ++iw) dst[iw * sw] += src[iw];
                }
              }
            }
        if (bias) {
          T b = bias[co];
          for (int64_t i = 0; i < osize; ++i) yp[i] += b;
        }
      }
    });
  }
}

void conv_transpose_kernel(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor* B = ctx.optional_input(2);
  check_float_dtypes(ctx, {1, 2});
  ConvTransposeSetup s = conv_transpose_setup(ctx.node, X.dims(), W.dims());
  check_bias(ctx.node, B, s.Cout);
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  run_float(ctx, X, W, B, Y, [&](const auto* x, const auto* w, const auto* b, auto* y) {
    conv_transpose_core(ctx, s, x, w, b, y);
  });
}

// ---------------------------------------------------------------------------
// DeformConv: bilinear sampling at offset positions (optionally masked), then
// the same GEMM per group.

template <typename T>
T bilinear(const T* plane, int64_t H, int64_t W, T h, T w) {
  if (!(h > T(-1) && h < T(H) && w > T(-1) && w < T(W))) return T(0);
  int64_t h0 = static_cast<int64_t>(std::floor(h)), w0 = static_cast<int64_t>(std::floor(w));
  T lh = h - T(h0), lw = w - T(w0);
  auto at = [&](int64_t r, int64_t c) { return (r >= 0 && r < H && c >= 0 && c < W) ? plane[r * W + c] : T(0); };
  return (T(1) - lh) * (T(1) - lw) * at(h0, w0) + (T(1) - lh) * lw * at(h0, w0 + 1) +
         lh * (T(1) - lw) * at(h0 + 1, w0) + lh * lw * at(h0 + 1, w0 + 1);
}

template <typename T>
void deform_conv_core(const KernelContext& ctx, const ConvSetup& s, int64_t offset_groups, const T* x,
                      const T* w, const T* offset, const T* bias, const T* mask, T* y) {
  const Geometry3& g = s.g3;  // 2-D: index 0 is the dummy depth
  const int64_t kH = g.kernel[1], kW = g.kernel[2], ksize = kH * kW;
  const int64_t H = g.in[1], W = g.in[2], oH = g.out[1], oW = g.out[2], P = oH * oW;
  const int64_t K = s.cin_g() * ksize, M = s.cout_g();
  const int64_t ch_per_offset_group = s.Cin / offset_groups;
  std::vector<std::vector<T>> packed(static_cast<size_t>(s.group));
  for (int64_t gi = 0; gi < s.group; ++gi) {
    const T* wg = w + gi * M * K;
    packed[gi] = pack_a<T>(M, K, [&](int64_t m, int64_t k) { return wg[m * K + k]; });
  }
  tiled_gemm<T>(
      ctx, s.N * s.group, M, K, P,
      [&](int64_t b, int64_t p0, int64_t np, T* panel) {
        int64_t n = b / s.group, gi = b % s.group;
        for (int64_t cl = 0; cl < s.cin_g(); ++cl) {
          int64_t c = gi * s.cin_g() + cl;
          int64_t og = c / ch_per_offset_group;
          const T* plane = x + (n * s.Cin + c) * H * W;
          const T* off = offset + (n * offset_groups + og) * 2 * ksize * P;
          const T* msk = mask ? mask + (n * offset_groups + og) * ksize * P : nullptr;
          for (int64_t kh = 0; kh < kH; ++kh)
            for (int64_t kw = 0; kw < kW; ++kw) {
              int64_t k = kh * kW + kw;
              T* dst = panel + (cl * ksize + k) * TP;
              for (int64_t j = 0; j < np; ++j) {
                int64_t p = p0 + j, oh = p / oW, ow = p % oW;
                T h = T(oh * g.stride[1] - g.pad[1] + kh * g.dilation[1]) + off[(2 * k) * P + p];
                T wv = T(ow * g.stride[2] - g.pad[2] + kw * g.dilation[2]) + off[(2 * k + 1) * P + p];
                T v = bilinear(plane, H, W, h, wv);
                dst[j] = msk ? v * msk[k * P + p] : v;
              }
            }
        }
      },
      [&](int64_t b) { return packed[b % s.group].data(); },
      [&](int64_t b) { return y + (b / s.group * s.Cout + b % s.group * M) * P; },
      [&](int64_t b) -> const T* { return bias ? bias + b % s.group * M : nullptr; });
}

void deform_conv_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& O = ctx.input(2);
  const Tensor* B = ctx.optional_input(3);
  const Tensor* Mk = ctx.optional_input(4);
  if (X.rank() != 4) unsupported(node.label(), ": only 2-D DeformConv is supported");
  ConvSetup s = conv_setup(node, X.dims(), W.dims());
  int64_t og = node.attr_int("offset_group", 1);
  if (og <= 0 || s.Cin % og != 0) fail(node.label(), ": offset_group ", og, " does not divide ", s.Cin);
  int64_t ksize = s.g3.kernel_size();
  Dims want_off{s.N, og * 2 * ksize, s.out_dims[2], s.out_dims[3]};
  if (O.dims() != want_off)
    fail(node.label(), ": offset has shape ", dims_str(O.dims()), ", expected ", dims_str(want_off));
  Dims want_mask{s.N, og * ksize, s.out_dims[2], s.out_dims[3]};
  if (Mk && Mk->dims() != want_mask)
    fail(node.label(), ": mask has shape ", dims_str(Mk->dims()), ", expected ", dims_str(want_mask));
  check_bias(node, B, s.Cout);
  Tensor& Y = ctx.allocate_output(0, X.dtype(), s.out_dims);
  auto run = [&](auto tag) {
    using C = typename decltype(tag)::type;
    auto x = values_as<C>(X), w = values_as<C>(W), o = values_as<C>(O);
    std::vector<C> b = B ? values_as<C>(*B) : std::vector<C>{};
    std::vector<C> m = Mk ? values_as<C>(*Mk) : std::vector<C>{};
    std::vector<C> y(static_cast<size_t>(Y.numel()));
    deform_conv_core<C>(ctx, s, og, x.data(), w.data(), o.data(), B ? b.data() : nullptr,
                        Mk ? m.data() : nullptr, y.data());
    store_values(Y, y);
  };
  if (X.dtype() == DType::Float64) run(TypeTag<double>{});
  else if (X.dtype() == DType::Float32 || X.dtype() == DType::Float16 || X.dtype() == DType::BFloat16)
    run(TypeTag<float>{});
  else unsupported(node.label(), ": data type ", dtype_name(X.dtype()), " is not supported");
}

// ---------------------------------------------------------------------------
// Inference and cost.

// Conv-like output: [N, W.dim0, out...].
std::vector<ir::ValueType> infer_conv_like(InferContext& ctx, DType out_type, size_t x_index, size_t w_index) {
  const Shape& xs = ctx.inputs[x_index].shape;
  const Shape& ws = ctx.inputs[w_index].shape;
  if (!xs.rank_known || xs.rank() < 3) return {tensor_type(out_type, Shape::unknown_rank())};
  size_t nsp = xs.rank() - 2;
  std::vector<int64_t> wspat(nsp, -1);
  if (ws.rank_known && ws.rank() == xs.rank()) wspat = window::spatial_of(ws);
  std::vector<int64_t> kernel = ctx.node.attr_ints("kernel_shape");
  if (kernel.empty()) kernel = wspat;
  std::vector<int64_t> out(nsp, -1);
  bool kernel_known = std::all_of(kernel.begin(), kernel.end(), [](int64_t k) { return k > 0; });
  if (kernel_known && kernel.size() == nsp) out = window::resolve(ctx.node, window::spatial_of(xs), kernel, false).out;
  Dim channels = ws.rank_known && ws.rank() >= 1 ? ws.dims[0] : ctx.fresh_dim();
  return {tensor_type(out_type, window::output_shape(ctx, xs.dims[0], channels, out))};
}

std::vector<ir::ValueType> infer_conv_transpose(InferContext& ctx) {
  const Shape& xs = ctx.inputs[0].shape;
  const Shape& ws = ctx.inputs[1].shape;
  DType t = ctx.inputs[0].dtype;
  if (!xs.rank_known || xs.rank() < 3) return {tensor_type(t, Shape::unknown_rank())};
  size_t nsp = xs.rank() - 2;
  std::vector<int64_t> kernel = ctx.node.attr_ints("kernel_shape");
  if (kernel.empty()) kernel = ws.rank_known && ws.rank() == xs.rank() ? window::spatial_of(ws) : std::vector<int64_t>(nsp, -1);
  std::vector<int64_t> out(nsp, -1);
  if (kernel.size() == nsp && std::all_of(kernel.begin(), kernel.end(), [](int64_t k) { return k > 0; }))
    out = transpose_shape(ctx.node, window::spatial_of(xs), kernel).out;
  Dim channels = ctx.fresh_dim();
  if (ws.rank_known && ws.rank() >= 2 && ws.dims[1].known())
    channels = Dim(ws.dims[1].value * ctx.node.attr_int("group", 1));
  return {tensor_type(t, window::output_shape(ctx, xs.dims[0], channels, out))};
}

double shape_numel(const Shape& s) {
  return s.rank_known && s.fully_known() ? static_cast<double>(numel(s.concrete())) : 0.0;
}

// FLOPs = 2 * MACs (+ one add per output element with a bias).
Cost conv_cost(const CostContext& c, size_t w_index, std::optional<size_t> bias_index) {
  Cost k = default_cost(c);
  k.flops = 0;
  if (c.outputs.empty() || c.inputs.size() <= w_index) return k;
  const Shape& ws = c.inputs[w_index].shape;
  double out = shape_numel(c.outputs[0].shape);
  double w = shape_numel(ws);
  if (ws.rank_known && ws.rank() >= 1 && ws.dims[0].known() && ws.dims[0].value > 0) {
    // Each output element takes W.numel / Cout multiply-adds.
    k.flops = 2.0 * out * (w / static_cast<double>(ws.dims[0].value));
  }
  if (bias_index && c.inputs.size() > *bias_index && c.inputs[*bias_index].dtype != DType::Undefined) k.flops += out;
  return k;
}

Cost conv_transpose_cost(const CostContext& c) {
  Cost k = default_cost(c);
  k.flops = 0;
  if (c.inputs.size() < 2 || c.outputs.empty()) return k;
  // Each input element is multiplied into W.numel / Cin outputs (Cout/group * kernel).
  const Shape& ws = c.inputs[1].shape;
  double in = shape_numel(c.inputs[0].shape), w = shape_numel(ws);
  if (ws.rank_known && ws.rank() >= 1 && ws.dims[0].known() && ws.dims[0].value > 0)
    k.flops = 2.0 * in * (w / static_cast<double>(ws.dims[0].value));
  if (c.inputs.size() > 2 && c.inputs[2].dtype != DType::Undefined) k.flops += shape_numel(c.outputs[0].shape);
  return k;
}

int64_t product(const Dims& d, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < d.size(); ++i) p *= d[i];
  return p;
}

}  // namespace

// Weights [Cout, Cin/group, k...]: per output channel along 0; K = Cin/group x
// window, the trailing axes (axis 1 leads them).
MatrixTraits conv_traits() {
  return {.weight_input = 1,
          .convolution = true,
          .weight_axes = [](const ir::Node&, int64_t rank) { return rank >= 2 ? WeightAxes{0, 1} : WeightAxes{}; },
          .lower = [](const ir::Node& n) -> std::optional<GemmLowering> {
            const Dims x = known_dims(n.inputs[0]), w = known_dims(n.inputs.size() > 1 ? n.inputs[1] : nullptr),
                       y = known_dims(n.outputs[0]);
            if (x.size() < 3 || w.size() != x.size() || y.size() != x.size()) return std::nullopt;
            const int64_t groups = n.attr_int("group", 1);
            if (groups <= 0) return std::nullopt;
            // Every output pixel is a row; each group's Cout/group filters of K values are the columns.
            return GemmLowering{y[0] * product(y, 2), w[0] / groups, w[1] * product(w, 2), groups};
          }};
}

// Weights [Cin, Cout/group, k...]: output channels along 1, K along 0.
MatrixTraits conv_transpose_traits() {
  return {.weight_input = 1,
          .convolution = true,
          .weight_axes = [](const ir::Node&, int64_t rank) { return rank >= 2 ? WeightAxes{1, 0} : WeightAxes{}; },
          .lower = [](const ir::Node& n) -> std::optional<GemmLowering> {
            // Every input pixel times the Cin x (Cout x window) weights of its group.
            const Dims x = known_dims(n.inputs[0]), w = known_dims(n.inputs.size() > 1 ? n.inputs[1] : nullptr);
            if (x.size() < 3 || w.size() != x.size()) return std::nullopt;
            const int64_t groups = n.attr_int("group", 1);
            if (groups <= 0) return std::nullopt;
            return GemmLowering{x[0] * product(x, 2), w[1] * product(w, 2), w[0] / groups, groups};
          }};
}

void register_conv(Registry& r) {
  r.add({.name = "Conv", .kernel = conv_kernel,
         .infer = [](InferContext& c) { return infer_conv_like(c, c.inputs[0].dtype, 0, 1); },
         .cost = [](const CostContext& c) { return conv_cost(c, 1, 2); },
         .matrix = conv_traits()});
  r.add({.name = "ConvTranspose", .kernel = conv_transpose_kernel, .infer = infer_conv_transpose,
         .cost = conv_transpose_cost, .matrix = conv_transpose_traits()});
  r.add({.domain = "com.duet", .name = "ConvGrad", .kernel = conv_grad_kernel, .infer = infer_conv_grad});
  r.add({.name = "ConvInteger", .kernel = conv_integer_kernel,
         .infer = [](InferContext& c) { return infer_conv_like(c, DType::Int32, 0, 1); },
         .cost = [](const CostContext& c) { return conv_cost(c, 1, std::nullopt); }});
  r.add({.name = "QLinearConv", .kernel = qlinear_conv_kernel,
         .infer = [](InferContext& c) {
           DType t = c.has_input(7) ? c.inputs[7].dtype : c.inputs[0].dtype;
           return infer_conv_like(c, t, 0, 3);
         },
         .cost = [](const CostContext& c) { return conv_cost(c, 3, 8); }});
  r.add({.name = "DeformConv", .kernel = deform_conv_kernel,
         .infer = [](InferContext& c) { return infer_conv_like(c, c.inputs[0].dtype, 0, 1); },
         .cost = [](const CostContext& c) { return conv_cost(c, 1, 3); }});
}

}  // namespace duet::ops
