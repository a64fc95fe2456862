// com.duet EmulatedConv / EmulatedMatMul / EmulatedGemm: Conv, MatMul and Gemm
// computed as a reduced-precision matrix engine would (numerics::Precision,
// numerics::emu kernels): inputs rounded to the datapath's formats with dynamic
// symmetric scales, exact products, the stated accumulator, the output format;
// a 2:4-sparse precision prunes the weights by magnitude along K first.
// Each takes its ONNX op's inputs and attributes plus `datapath` (a
// numerics::parse_precision spec); shape inference and cost are the ONNX op's.
// passes::emulate_datapath writes them. float32 only.
#include <algorithm>
#include <optional>

#include "conv_util.h"
#include "duet/numerics/precision.h"
#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

using numerics::Precision;
namespace emu = numerics::emu;

Precision datapath_of(const KernelContext& ctx) {
  const std::string spec = ctx.node.attr_string("datapath", "");
  if (spec.empty()) fail(ctx.node.label(), ": ", ctx.node.op_type, " needs a datapath attribute");
  Precision d = numerics::parse_precision(spec);
  if (d.weight_only())
    unsupported(ctx.node.label(), ": weight-only precision ", d.str(), " (integer weights, float products) is not emulated");
  return d;
}

// The weights as the datapath sees them: pruned 2:4 along K when it is sparse
// (`outer` × K matrices, `count` of them `matrix` values apart), else as stored.
const float* weights_of(const Precision& d, const Tensor& w, int64_t count, int64_t matrix, int64_t outer, int64_t K,
                        int64_t outer_stride, int64_t k_stride, std::vector<float>& pruned) {
  if (d.sparsity != numerics::Sparsity::TwoOfFour) return w.data<float>();
  pruned.assign(w.data<float>(), w.data<float>() + w.numel());
  for (int64_t i = 0; i < count; ++i) {
    const std::vector<float> p = numerics::prune_2of4(w.data<float>() + i * matrix, outer, K, outer_stride, k_stride);
    std::copy(p.begin(), p.end(), pruned.begin() + i * matrix);
  }
  return pruned.data();
}

int threads_of(const KernelContext& ctx) { return ctx.parallel ? ctx.parallel->threads() : 1; }

void require_float32(const KernelContext& ctx, size_t i) {
  const Tensor* t = ctx.optional_input(i);
  if (t && t->dtype() != DType::Float32)
    unsupported(ctx.node.label(), ": ", ctx.node.op_type, " emulates float32 models, input ", i, " is ", t->describe());
}

// A per-tensor scale covers the whole tensor (every batch entry); the other
// scalings are per matrix. Returns the tensor's scale, or nothing.
std::optional<std::vector<float>> tensor_scale(const numerics::OperandRule& rule, const float* data, int64_t n) {
  if (rule.scaling != emu::Scaling::Tensor) return std::nullopt;
  return numerics::dynamic_scales(rule.format, rule.scaling, 0, data, 1, n, false, true);
}

// One M×K by K×N product with the datapath's dynamic scales; `out` is M×N.
void emulated_gemm(const Precision& d, int threads, int64_t M, int64_t N, int64_t K, const float* A, bool trans_a,
                   const float* B, bool trans_b, float* out, const std::optional<std::vector<float>>& a_tensor_scale,
                   const std::optional<std::vector<float>>& b_tensor_scale, bool fp32_out = false) {
  emu::GemmSpec spec = numerics::gemm_spec(d, threads);
  spec.trans_a = trans_a;
  spec.trans_b = trans_b;
  if (fp32_out) spec.out = *numerics::find_format("fp32");
  spec.a.scales = a_tensor_scale ? *a_tensor_scale
                                 : numerics::dynamic_scales(d.x.format, d.x.scaling, d.block, A, M, K, trans_a, true);
  spec.b.scales = b_tensor_scale ? *b_tensor_scale
                                 : numerics::dynamic_scales(d.w.format, d.w.scaling, d.block, B, K, N, trans_b, false);
  emu::gemm(spec, M, N, K, A, B, out);
}

// MatMul with numpy broadcasting of the batch dimensions; 1-D operands as ONNX says.
void emulated_matmul_kernel(KernelContext& ctx) {
  require_float32(ctx, 0);
  require_float32(ctx, 1);
  const Precision d = datapath_of(ctx);
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Dims ad = a.dims(), bd = b.dims();
  if (ad.empty() || bd.empty()) fail(ctx.node.label(), ": MatMul inputs must have rank >= 1");
  const bool a_vec = ad.size() == 1, b_vec = bd.size() == 1;
  if (a_vec) ad.insert(ad.begin(), 1);
  if (b_vec) bd.push_back(1);
  const int64_t M = ad[ad.size() - 2], K = ad.back(), N = bd.back();
  if (bd[bd.size() - 2] != K)
    fail(ctx.node.label(), ": MatMul inner dimensions differ: ", dims_str(a.dims()), " x ", dims_str(b.dims()));
  const Dims abatch(ad.begin(), ad.end() - 2), bbatch(bd.begin(), bd.end() - 2);
  const size_t rank = std::max(abatch.size(), bbatch.size());
  Dims batch(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t x = i + abatch.size() >= rank ? abatch[i + abatch.size() - rank] : 1;
    const int64_t y = i + bbatch.size() >= rank ? bbatch[i + bbatch.size() - rank] : 1;
    if (x != y && x != 1 && y != 1)
      fail(ctx.node.label(), ": MatMul batch dimensions do not broadcast: ", dims_str(a.dims()), " x ", dims_str(b.dims()));
    batch[i] = x == 1 ? y : x;  // numpy: a 1 broadcasts, a 0 stays 0
  }
  Dims out_dims = batch;
  if (!a_vec) out_dims.push_back(M);
  if (!b_vec) out_dims.push_back(N);
  Tensor& y = ctx.allocate_output(0, DType::Float32, out_dims);
  const int64_t count = numel(batch);
  if (count == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(y.data<float>(), y.data<float>() + y.numel(), 0.0f);
    return;
  }
  // Batch index -> offsets into A and B (broadcast dims contribute nothing).
  auto offset = [&](const Dims& own, int64_t flat, int64_t matrix) {
    int64_t off = 0, stride = matrix;
    for (size_t i = rank; i-- > 0;) {
      const int64_t idx = flat % batch[i];
      flat /= batch[i];
      const size_t j = i + own.size();
      if (j >= rank) {
        const int64_t dim = own[j - rank];
        if (dim != 1) off += idx * stride;
        stride *= dim;
      }
    }
    return off;
  };
  const int threads = threads_of(ctx);
  std::vector<float> pruned;
  const float* bw = weights_of(d, b, b.numel() / std::max<int64_t>(1, K * N), K * N, N, K, 1, N, pruned);
  const auto sa = tensor_scale(d.x, a.data<float>(), a.numel()), sb = tensor_scale(d.w, bw, b.numel());
  for (int64_t i = 0; i < count; ++i) {
    emulated_gemm(d, threads, M, N, K, a.data<float>() + offset(abatch, i, M * K), false,
                  bw + offset(bbatch, i, K * N), false, y.data<float>() + i * M * N, sa, sb);
  }
}

// Gemm: Y = alpha * A'·B' + beta * C; the product through the datapath (FP32
// out), alpha/beta/C in FP32, then the datapath's output rounding.
void emulated_gemm_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < 3; ++i) require_float32(ctx, i);
  const Precision d = datapath_of(ctx);
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2)
    fail(ctx.node.label(), ": Gemm inputs must be 2-D, got ", dims_str(a.dims()), " and ", dims_str(b.dims()));
  const int64_t M = ta ? a.dims()[1] : a.dims()[0], K = ta ? a.dims()[0] : a.dims()[1];
  const int64_t N = tb ? b.dims()[0] : b.dims()[1], Kb = tb ? b.dims()[1] : b.dims()[0];
  if (K != Kb) fail(ctx.node.label(), ": Gemm inner dimensions differ: ", K, " and ", Kb);
  const float alpha = ctx.node.attr_float("alpha", 1.0f), beta = ctx.node.attr_float("beta", 1.0f);
  Tensor& y = ctx.allocate_output(0, DType::Float32, {M, N});
  float* out = y.data<float>();
  if (M * N == 0) return;
  if (K > 0) {
    std::vector<float> pruned;
    const float* bw = weights_of(d, b, 1, K * N, N, K, tb ? K : 1, tb ? 1 : N, pruned);
    emulated_gemm(d, threads_of(ctx), M, N, K, a.data<float>(), ta, bw, tb, out, std::nullopt, std::nullopt, true);
  } else {
    std::fill(out, out + M * N, 0.0f);
  }
  const Tensor* c = ctx.optional_input(2);
  Dims cd = c ? c->dims() : Dims{};
  if (c) {
    if (cd.size() > 2) fail(ctx.node.label(), ": Gemm C must have rank <= 2, got ", dims_str(cd));
    while (cd.size() < 2) cd.insert(cd.begin(), 1);
    if ((cd[0] != 1 && cd[0] != M) || (cd[1] != 1 && cd[1] != N))
      fail(ctx.node.label(), ": Gemm C ", dims_str(c->dims()), " does not broadcast to ", M, "x", N);
  }
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      float v = out[m * N + n];
      if (alpha != 1.0f) v = alpha * v;
      if (c && beta != 0.0f) v = v + beta * c->data<float>()[(cd[0] == 1 ? 0 : m) * cd[1] + (cd[1] == 1 ? 0 : n)];
      out[m * N + n] = emu::output_value(d.out, v);
    }
  }
}

// Conv (1-D and 2-D): emu::conv2d with A = weights (the datapath's w rule:
// per-output-channel scales) and B = im2col of the input (the x rule: per
// tensor or none).
void emulated_conv_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < 3; ++i) require_float32(ctx, i);
  const Precision d = datapath_of(ctx);
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* bias = ctx.optional_input(2);
  const window::ConvSetup s = window::conv_setup(ctx.node, x.dims(), w.dims());
  if (s.g3.kernel[0] != 1 || s.g3.in[0] != 1 || s.g3.out[0] != 1)
    unsupported(ctx.node.label(), ": emulated Conv handles 1-D and 2-D convolutions, got ", dims_str(w.dims()));
  if (d.x.scaling != emu::Scaling::None && d.x.scaling != emu::Scaling::Tensor)
    unsupported(ctx.node.label(), ": emulated Conv scales its input per tensor only (datapath x scaling is ",
                numerics::scaling_name(d.x.scaling), ")");
  if (d.w.scaling == emu::Scaling::Block)
    unsupported(ctx.node.label(), ": emulated Conv has no block scales (datapath ", d.spec(), ")");
  if (bias && bias->numel() != s.Cout)
    fail(ctx.node.label(), ": bias has ", bias->numel(), " values for ", s.Cout, " output channels");
  emu::GemmSpec spec = numerics::gemm_spec(d, threads_of(ctx));
  std::swap(spec.a, spec.b);  // A = weights, B = input columns
  emu::Conv2dShape cs;
  cs.n = s.N;
  cs.c = s.Cin;
  cs.h = s.g3.in[1];
  cs.w = s.g3.in[2];
  cs.o = s.Cout;
  cs.kh = s.g3.kernel[1];
  cs.kw = s.g3.kernel[2];
  cs.stride_h = s.g3.stride[1];
  cs.stride_w = s.g3.stride[2];
  cs.dilation_h = s.g3.dilation[1];
  cs.dilation_w = s.g3.dilation[2];
  cs.pad_top = s.g3.pad[1];
  cs.pad_left = s.g3.pad[2];
  cs.groups = s.group;
  // Bottom/right pads follow from the output size the geometry resolved.
  cs.pad_bottom = std::max<int64_t>(0, (s.g3.out[1] - 1) * cs.stride_h + (cs.kh - 1) * cs.dilation_h + 1 - cs.h - cs.pad_top);
  cs.pad_right = std::max<int64_t>(0, (s.g3.out[2] - 1) * cs.stride_w + (cs.kw - 1) * cs.dilation_w + 1 - cs.w - cs.pad_left);
  Tensor& y = ctx.allocate_output(0, DType::Float32, s.out_dims);
  if (y.numel() == 0) return;
  const int64_t K = s.cin_g() * cs.kh * cs.kw;
  // Weights: logical A is O × K (row-major as stored); input: one tensor scale.
  std::vector<float> pruned;
  const float* wd = weights_of(d, w, 1, s.Cout * K, s.Cout, K, K, 1, pruned);
  spec.a.scales = numerics::dynamic_scales(d.w.format, d.w.scaling, 0, wd, s.Cout, K, false, true);
  spec.b.scales = numerics::dynamic_scales(d.x.format, d.x.scaling, 0, x.data<float>(), 1, x.numel(), false, false);
  emu::conv2d(spec, cs, x.data<float>(), wd, bias ? bias->data<float>() : nullptr, y.data<float>());
}

InferFn infer_as_onnx(const char* op_type) {
  return [op_type](InferContext& ctx) { return Registry::builtin().find("", op_type)->infer(ctx); };
}
CostFn cost_as_onnx(const char* op_type) {
  return [op_type](const CostContext& c) { return Registry::builtin().find("", op_type)->cost(c); };
}

}  // namespace

void register_emulated(Registry& r) {
  r.add({.domain = "com.duet", .name = "EmulatedConv", .kernel = emulated_conv_kernel, .infer = infer_as_onnx("Conv"),
         .cost = cost_as_onnx("Conv"), .matrix = conv_traits()});
  r.add({.domain = "com.duet", .name = "EmulatedMatMul", .kernel = emulated_matmul_kernel,
         .infer = infer_as_onnx("MatMul"), .cost = cost_as_onnx("MatMul"), .matrix = matmul_traits()});
  r.add({.domain = "com.duet", .name = "EmulatedGemm", .kernel = emulated_gemm_kernel, .infer = infer_as_onnx("Gemm"),
         .cost = cost_as_onnx("Gemm"), .matrix = gemm_traits()});
}

}  // namespace duet::ops
