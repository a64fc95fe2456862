// Attention ops: Attention (opset 23/24) and RotaryEmbedding (opset 23).
//
// Arithmetic is in double, rounded to the element type at the points where
// the ONNX function body casts (scaled Q and K, the QK product, the biased
// scores, the softmax in softmax_precision, the probabilities, the output),
// so half-precision results track the spec's own rounding.
#include <cmath>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

template <typename T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return static_cast<double>(static_cast<float>(v));
}

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) return static_cast<T>(v);
  else return T(static_cast<float>(v));
}

// Rounds v to the precision of dtype t (float types only).
double round_as(DType t, double v) {
  switch (t) {
    case DType::Float32: return static_cast<float>(v);
    case DType::Float16: return static_cast<float>(float16(static_cast<float>(v)));
    case DType::BFloat16: return static_cast<float>(bfloat16(static_cast<float>(v)));
    default: return v;
  }
}

// ============================================================================
// Attention
// ============================================================================

// Element (b, h, s, d) of a Q/K/V tensor lies at b*sb + h*sh + s*ss + d. 3-D
// inputs (batch, seq, heads*head_size) and 4-D inputs (batch, heads, seq,
// head_size) differ only in these strides.
struct HeadView {
  int64_t sb = 0, sh = 0, ss = 0;
};

HeadView head_view(bool rank3, int64_t heads, int64_t seq, int64_t head_size) {
  if (rank3) return {seq * heads * head_size, head_size, heads * head_size};
  return {heads * seq * head_size, seq * head_size, head_size};
}

struct AttentionShape {
  bool rank3 = false;
  int64_t batch = 0, q_heads = 0, kv_heads = 0;
  int64_t q_len = 0, new_kv_len = 0, past_len = 0, kv_len = 0;  // kv_len = past_len + new_kv_len
  int64_t head_size = 0, v_head_size = 0;
};

AttentionShape attention_shape(const KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& q = ctx.input(0);
  const Tensor& k = ctx.input(1);
  const Tensor& v = ctx.input(2);
  AttentionShape s;
  if (q.rank() != k.rank() || q.rank() != v.rank() || (q.rank() != 3 && q.rank() != 4))
    fail(node.label(), ": Q, K and V must all be 3-D or all 4-D, got ", q.describe(), ", ", k.describe(), ", ",
         v.describe());
  s.rank3 = q.rank() == 3;
  s.batch = q.dim(0);
  if (k.dim(0) != s.batch || v.dim(0) != s.batch)
    fail(node.label(), ": Q, K and V batch sizes differ (", q.describe(), ", ", k.describe(), ", ", v.describe(), ")");
  if (s.rank3) {
    s.q_heads = node.attr_int("q_num_heads", 0);
    s.kv_heads = node.attr_int("kv_num_heads", 0);
    if (s.q_heads <= 0 || s.kv_heads <= 0)
      fail(node.label(), ": 3-D inputs need positive q_num_heads and kv_num_heads attributes");
    if (q.dim(2) % s.q_heads || k.dim(2) % s.kv_heads || v.dim(2) % s.kv_heads)
      fail(node.label(), ": hidden sizes (", q.dim(2), ", ", k.dim(2), ", ", v.dim(2),
           ") are not divisible by q_num_heads=", s.q_heads, " / kv_num_heads=", s.kv_heads);
    s.q_len = q.dim(1);
    s.new_kv_len = k.dim(1);
    s.head_size = q.dim(2) / s.q_heads;
    if (k.dim(2) / s.kv_heads != s.head_size)
      fail(node.label(), ": Q head size ", s.head_size, " differs from K head size ", k.dim(2) / s.kv_heads);
    s.v_head_size = v.dim(2) / s.kv_heads;
    if (v.dim(1) != s.new_kv_len) fail(node.label(), ": K and V sequence lengths differ");
  } else {
    s.q_heads = q.dim(1);
    s.kv_heads = k.dim(1);
    s.q_len = q.dim(2);
    s.new_kv_len = k.dim(2);
    s.head_size = q.dim(3);
    s.v_head_size = v.dim(3);
    if (k.dim(3) != s.head_size) fail(node.label(), ": Q head size ", s.head_size, " differs from K head size ", k.dim(3));
    if (v.dim(1) != s.kv_heads || v.dim(2) != s.new_kv_len)
      fail(node.label(), ": V ", v.describe(), " does not match K ", k.describe());
  }
  if (s.kv_heads == 0 || s.q_heads % s.kv_heads)
    fail(node.label(), ": q heads (", s.q_heads, ") must be a multiple of kv heads (", s.kv_heads, ")");
  const Tensor* past_key = ctx.optional_input(4);
  const Tensor* past_value = ctx.optional_input(5);
  if ((past_key == nullptr) != (past_value == nullptr))
    fail(node.label(), ": past_key and past_value must be given together");
  if (past_key) {
    const Dims pk{s.batch, s.kv_heads, past_key->rank() == 4 ? past_key->dim(2) : -1, s.head_size};
    if (past_key->dims() != pk)
      fail(node.label(), ": past_key ", past_key->describe(), " must be [batch, kv_heads, past_len, head_size]");
    s.past_len = past_key->dim(2);
    if (past_value->dims() != Dims{s.batch, s.kv_heads, s.past_len, s.v_head_size})
      fail(node.label(), ": past_value ", past_value->describe(), " must be [", s.batch, "x", s.kv_heads, "x",
           s.past_len, "x", s.v_head_size, "]");
    if (past_key->dtype() != q.dtype() || past_value->dtype() != q.dtype())
      fail(node.label(), ": past_key/past_value type differs from Q");
  }
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) fail(node.label(), ": Q, K and V types differ");
  s.kv_len = s.past_len + s.new_kv_len;
  return s;
}

// Concatenates the cache and the new keys (or values) into a 4-D
// (batch, kv_heads, kv_len, size) tensor: present_key / present_value.
template <typename T>
void build_present(const AttentionShape& s, const Tensor* past, const Tensor& fresh, int64_t size, Tensor& out) {
  T* dst = out.data<T>();
  const HeadView view = head_view(s.rank3, s.kv_heads, s.new_kv_len, size);
  const T* src = fresh.data<T>();
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.kv_heads; ++h) {
      T* row = dst + ((b * s.kv_heads + h) * s.kv_len) * size;
      if (past) {
        const T* p = past->data<T>() + ((b * s.kv_heads + h) * s.past_len) * size;
        std::copy(p, p + s.past_len * size, row);
        row += s.past_len * size;
      }
      for (int64_t j = 0; j < s.new_kv_len; ++j) {
        const T* f = src + b * view.sb + h * view.sh + j * view.ss;
        std::copy(f, f + size, row + j * size);
      }
    }
  }
}

// The additive bias (0 or -inf, or the float mask's value) of score (b, h, i, j)
// from attn_mask, is_causal and nonpad_kv_seqlen.
struct BiasSource {
  const Tensor* mask = nullptr;
  bool mask_is_bool = false;
  int64_t mask_len = 0;                  // last mask dim; keys beyond it are masked out
  int64_t mask_sb = 0, mask_sh = 0, mask_si = 0;  // broadcast strides (0 where broadcast)
  bool causal = false;
  int64_t past_len = 0;
  int64_t q_len = 0;
  const Tensor* nonpad = nullptr;        // (batch,) valid key counts

  BiasSource(const KernelContext& ctx, const AttentionShape& s) {
    const ir::Node& node = ctx.node;
    mask = ctx.optional_input(3);
    causal = ctx.node.attr_int("is_causal", 0) != 0;
    past_len = s.past_len;
    q_len = s.q_len;
    nonpad = ctx.opset >= 24 ? ctx.optional_input(6) : nullptr;
    if (nonpad) {
      if (ctx.has_input(4)) fail(node.label(), ": nonpad_kv_seqlen cannot be combined with past_key/past_value");
      if (nonpad->dims() != Dims{s.batch} || (nonpad->dtype() != DType::Int64 && nonpad->dtype() != DType::Int32))
        fail(node.label(), ": nonpad_kv_seqlen must be an int64 [", s.batch, "] tensor, got ", nonpad->describe());
    }
    if (!mask) return;
    mask_is_bool = mask->dtype() == DType::Bool;
    if (!mask_is_bool && mask->dtype() != ctx.input(0).dtype())
      fail(node.label(), ": attn_mask must be bool or Q's type, got ", dtype_name(mask->dtype()));
    const int64_t r = static_cast<int64_t>(mask->rank());
    if (r < 2 || r > 4) fail(node.label(), ": attn_mask must have rank 2 to 4, got ", mask->describe());
    const Dims& m = mask->dims();
    mask_len = m[r - 1];
    if (mask_len > s.kv_len)
      fail(node.label(), ": attn_mask ", mask->describe(), " is longer than the ", s.kv_len, " keys");
    const int64_t rows = m[r - 2], heads = r >= 3 ? m[r - 3] : 1, batches = r >= 4 ? m[0] : 1;
    if ((rows != 1 && rows != s.q_len) || (heads != 1 && heads != s.q_heads) || (batches != 1 && batches != s.batch))
      fail(node.label(), ": attn_mask ", mask->describe(), " does not broadcast to [", s.batch, "x", s.q_heads, "x",
           s.q_len, "x", s.kv_len, "]");
    mask_si = rows == 1 ? 0 : mask_len;
    mask_sh = heads == 1 ? 0 : rows * mask_len;
    mask_sb = batches == 1 ? 0 : heads * rows * mask_len;
  }

  template <typename T>
  double operator()(int64_t b, int64_t h, int64_t i, int64_t j) const {
    double bias = 0;
    if (mask) {
      if (j >= mask_len) return -INFINITY;  // a short mask is padded with "masked"
      const int64_t at = b * mask_sb + h * mask_sh + i * mask_si + j;
      if (mask_is_bool) bias = mask->data<uint8_t>()[at] ? 0.0 : -INFINITY;
      else bias = as_double(mask->data<T>()[at]);
    }
    if (causal) {
      // Bottom-right aligned: query i sees keys up to i + (keys before this block).
      const int64_t offset = nonpad ? nonpad->get_int(b) - q_len : past_len;
      if (j > i + offset) bias += -INFINITY;
    }
    if (nonpad && j >= nonpad->get_int(b)) bias += -INFINITY;
    return bias;
  }
};

// qk_matmul_output_mode values.
enum QkMode { kQkRaw = 0, kQkSoftcapped = 1, kQkBiased = 2, kQkSoftmax = 3 };

template <typename T>
void attention_typed(KernelContext& ctx, const AttentionShape& s) {
  const ir::Node& node = ctx.node;
  const DType dt = dtype_of<T>::value;
  const Tensor& q = ctx.input(0);
  // Always materialize the concatenated caches; they are outputs 1 and 2.
  Tensor present_k = ctx.output_requested(1) ? ctx.allocate_output(1, dt, {s.batch, s.kv_heads, s.kv_len, s.head_size})
                                              : Tensor(dt, {s.batch, s.kv_heads, s.kv_len, s.head_size});
  Tensor present_v = ctx.num_outputs() > 2 && ctx.output_requested(2)
                         ? ctx.allocate_output(2, dt, {s.batch, s.kv_heads, s.kv_len, s.v_head_size})
                         : Tensor(dt, {s.batch, s.kv_heads, s.kv_len, s.v_head_size});
  build_present<T>(s, ctx.optional_input(4), ctx.input(1), s.head_size, present_k);
  build_present<T>(s, ctx.optional_input(5), ctx.input(2), s.v_head_size, present_v);

  const int64_t mode = node.attr_int("qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3) fail(node.label(), ": qk_matmul_output_mode must be 0..3, got ", mode);
  const bool want_qk = ctx.num_outputs() > 3 && ctx.output_requested(3);
  T* qk_out = want_qk ? ctx.allocate_output(3, dt, {s.batch, s.q_heads, s.q_len, s.kv_len}).template data<T>() : nullptr;

  Dims y_dims = s.rank3 ? Dims{s.batch, s.q_len, s.q_heads * s.v_head_size}
                        : Dims{s.batch, s.q_heads, s.q_len, s.v_head_size};
  T* y = ctx.allocate_output(0, dt, y_dims).template data<T>();
  const HeadView yv = head_view(s.rank3, s.q_heads, s.q_len, s.v_head_size);
  const HeadView qv = head_view(s.rank3, s.q_heads, s.q_len, s.head_size);

  // Q and K are each scaled by sqrt(scale) (rounded to T), as the spec does.
  const double scale = node.has_attr("scale") ? node.attr_float("scale", 1.0f)
                                              : 1.0 / std::sqrt(static_cast<double>(s.head_size));
  const double scale_sqrt = round_as(dt, std::sqrt(scale));
  const double softcap = node.attr_float("softcap", 0.0f);
  const DType softmax_dt = node.has_attr("softmax_precision")
                               ? static_cast<DType>(node.attr_int("softmax_precision", 1)) : dt;
  if (softmax_dt != DType::Float32 && softmax_dt != DType::Float16 && softmax_dt != DType::BFloat16 &&
      softmax_dt != DType::Float64)
    fail(node.label(), ": softmax_precision must be a float type, got ", static_cast<int>(softmax_dt));
  const BiasSource bias_of(ctx, s);
  const int64_t group = s.q_heads / s.kv_heads;  // query heads sharing one kv head
  const T* qd = q.data<T>();
  const T* kd = present_k.data<T>();
  const T* vd = present_v.data<T>();
  auto rnd = [dt](double v) { return round_as(dt, v); };
  auto rnd_sm = [softmax_dt](double v) { return round_as(softmax_dt, v); };

  const int64_t rows = s.batch * s.q_heads * s.q_len;
  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<double> qs(s.head_size), score(s.kv_len), acc(s.v_head_size);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % s.q_len, h = (row / s.q_len) % s.q_heads, b = row / (s.q_len * s.q_heads);
      const int64_t kvh = h / group;
      const T* qrow = qd + b * qv.sb + h * qv.sh + i * qv.ss;
      for (int64_t d = 0; d < s.head_size; ++d) qs[d] = rnd(as_double(qrow[d]) * scale_sqrt);
      T* qk_row = qk_out ? qk_out + row * s.kv_len : nullptr;
      bool all_masked = true;
      for (int64_t j = 0; j < s.kv_len; ++j) {
        const T* krow = kd + ((b * s.kv_heads + kvh) * s.kv_len + j) * s.head_size;
        double dot = 0;
        for (int64_t d = 0; d < s.head_size; ++d) dot += qs[d] * rnd(as_double(krow[d]) * scale_sqrt);
        double x = rnd(dot);
        if (qk_row && mode == kQkRaw) qk_row[j] = from_double<T>(x);
        if (softcap > 0) x = rnd(softcap * rnd(std::tanh(rnd(x / softcap))));
        if (qk_row && mode == kQkSoftcapped) qk_row[j] = from_double<T>(x);
        const double bias = bias_of.operator()<T>(b, h, i, j);
        if (!(std::isinf(bias) && bias < 0)) all_masked = false;
        x = rnd(x + bias);
        if (qk_row && mode == kQkBiased) qk_row[j] = from_double<T>(x);
        score[j] = rnd_sm(x);
      }
      // Softmax in softmax_precision; a row with every key masked gives all
      // zero probabilities (and a zero output).
      if (all_masked) {
        std::fill(score.begin(), score.end(), 0.0);
      } else {
        double mx = -INFINITY;
        for (double v : score) mx = std::max(mx, v);
        if (std::isinf(mx) && mx < 0) mx = 0;
        double sum = 0;
        for (double& v : score) {
          v = rnd_sm(std::exp(rnd_sm(v - mx)));
          sum += v;
        }
        sum = rnd_sm(sum);
        for (double& v : score) v = rnd(rnd_sm(v / sum));
      }
      if (qk_row && mode == kQkSoftmax)
        for (int64_t j = 0; j < s.kv_len; ++j) qk_row[j] = from_double<T>(score[j]);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < s.kv_len; ++j) {
        const double p = score[j];
        if (p == 0) continue;
        const T* vrow = vd + ((b * s.kv_heads + kvh) * s.kv_len + j) * s.v_head_size;
        for (int64_t d = 0; d < s.v_head_size; ++d) acc[d] += p * as_double(vrow[d]);
      }
      T* yrow = y + b * yv.sb + h * yv.sh + i * yv.ss;
      for (int64_t d = 0; d < s.v_head_size; ++d) yrow[d] = from_double<T>(acc[d]);
    }
  });
}

void attention_kernel(KernelContext& ctx) {
  const AttentionShape s = attention_shape(ctx);
  dispatch_float(ctx.input(0).dtype(), [&](auto tag) { attention_typed<typename decltype(tag)::type>(ctx, s); });
}

Dim dim_or_fresh(InferContext& ctx, const Dim& d) { return d.known() || !d.symbol.empty() ? d : ctx.fresh_dim(); }

Dim product_dim(InferContext& ctx, const Dim& a, int64_t mul, int64_t div) {
  if (a.known() && div > 0) return Dim(a.value / div * mul);
  return ctx.fresh_dim();
}

Dim sum_dim(InferContext& ctx, const Dim& a, const Dim& b) {
  if (a.known() && b.known()) return Dim(a.value + b.value);
  if (a.known() && a.value == 0) return b;
  return ctx.fresh_dim();
}

std::vector<ir::ValueType> attention_infer(InferContext& ctx) {
  const ir::ValueType& q = ctx.inputs.at(0);
  const ir::ValueType& k = ctx.inputs.at(1);
  const ir::ValueType& v = ctx.inputs.at(2);
  const DType dt = q.dtype;
  std::vector<ir::ValueType> out(ctx.num_outputs, tensor_type(dt, Shape::unknown_rank()));
  if (!q.shape.rank_known || !k.shape.rank_known || !v.shape.rank_known) return out;
  const bool rank3 = q.shape.rank() == 3;
  if (q.shape.rank() != k.shape.rank() || q.shape.rank() != v.shape.rank() || (!rank3 && q.shape.rank() != 4))
    fail(ctx.node.label(), ": Q, K and V must all be 3-D or all 4-D");
  const int64_t qh_attr = ctx.node.attr_int("q_num_heads", 0), kvh_attr = ctx.node.attr_int("kv_num_heads", 0);
  const Dim batch = dim_or_fresh(ctx, q.shape.dims[0]);
  Dim q_heads, kv_heads, q_len, new_kv_len, head_size, v_head_size;
  if (rank3) {
    q_heads = Dim(qh_attr);
    kv_heads = Dim(kvh_attr);
    q_len = q.shape.dims[1];
    new_kv_len = k.shape.dims[1];
    head_size = product_dim(ctx, q.shape.dims[2], 1, qh_attr);
    v_head_size = product_dim(ctx, v.shape.dims[2], 1, kvh_attr);
  } else {
    q_heads = q.shape.dims[1];
    kv_heads = k.shape.dims[1];
    q_len = q.shape.dims[2];
    new_kv_len = k.shape.dims[2];
    head_size = q.shape.dims[3];
    v_head_size = v.shape.dims[3];
  }
  Dim kv_len = new_kv_len;
  if (ctx.has_input(4)) {
    const ir::ValueType& pk = ctx.inputs[4];
    kv_len = pk.shape.rank_known && pk.shape.rank() == 4 ? sum_dim(ctx, pk.shape.dims[2], new_kv_len) : ctx.fresh_dim();
  }
  if (rank3) {
    out[0] = tensor_type(dt, Shape({batch, q_len, product_dim(ctx, v.shape.dims[2], qh_attr, kvh_attr)}));
  } else {
    out[0] = tensor_type(dt, Shape({batch, q_heads, q_len, v_head_size}));
  }
  if (ctx.num_outputs > 1) out[1] = tensor_type(dt, Shape({batch, kv_heads, kv_len, head_size}));
  if (ctx.num_outputs > 2) out[2] = tensor_type(dt, Shape({batch, kv_heads, kv_len, v_head_size}));
  if (ctx.num_outputs > 3) out[3] = tensor_type(dt, Shape({batch, q_heads, q_len, kv_len}));
  return out;
}

// Two matmuls (QK^T and PV) at 2 FLOPs per multiply-add, plus about five
// FLOPs per score for scaling, bias and softmax.
Cost attention_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  if (ctx.outputs.empty() || !ctx.outputs[0].shape.fully_known() || ctx.inputs.size() < 3) return c;
  const ir::ValueType& q = ctx.inputs[0];
  if (!q.shape.fully_known()) return c;
  const Dims y = ctx.outputs[0].shape.concrete();
  const Dims qd = q.shape.concrete();
  const bool rank3 = qd.size() == 3;
  const int64_t q_heads = rank3 ? ctx.node.attr_int("q_num_heads", 1) : qd[1];
  const int64_t batch = qd[0], q_len = rank3 ? qd[1] : qd[2];
  const int64_t head_size = rank3 ? qd[2] / std::max<int64_t>(1, q_heads) : qd[3];
  const int64_t v_head_size = rank3 ? y[2] / std::max<int64_t>(1, q_heads) : y[3];
  int64_t kv_len = -1;
  if (ctx.outputs.size() > 1 && ctx.outputs[1].shape.fully_known()) kv_len = ctx.outputs[1].shape.concrete()[2];
  else if (ctx.inputs[1].shape.fully_known()) {
    const Dims kd = ctx.inputs[1].shape.concrete();
    kv_len = rank3 ? kd[1] : kd[2];
    if (ctx.inputs.size() > 4 && ctx.inputs[4].shape.fully_known()) kv_len += ctx.inputs[4].shape.concrete()[2];
  }
  if (kv_len < 0) return c;
  const double scores = static_cast<double>(batch * q_heads * q_len * kv_len);
  c.flops = scores * (2.0 * head_size + 2.0 * v_head_size + 5.0);
  return c;
}

// ============================================================================
// RotaryEmbedding
// ============================================================================

template <typename T>
void rotary_typed(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& x = ctx.input(0);
  const Tensor& cos_cache = ctx.input(1);
  const Tensor& sin_cache = ctx.input(2);
  const Tensor* position_ids = ctx.optional_input(3);
  const bool rank3 = x.rank() == 3;
  if (!rank3 && x.rank() != 4) fail(node.label(), ": input must be 3-D or 4-D, got ", x.describe());
  const int64_t batch = x.dim(0);
  int64_t heads, seq, head_size;
  if (rank3) {
    heads = node.attr_int("num_heads", 0);
    if (heads <= 0) fail(node.label(), ": 3-D input needs a positive num_heads attribute");
    seq = x.dim(1);
    if (x.dim(2) % heads) fail(node.label(), ": hidden size ", x.dim(2), " is not divisible by num_heads ", heads);
    head_size = x.dim(2) / heads;
  } else {
    heads = x.dim(1);
    seq = x.dim(2);
    head_size = x.dim(3);
  }
  int64_t rotary_dim = node.attr_int("rotary_embedding_dim", 0);
  if (rotary_dim == 0) rotary_dim = head_size;
  if (rotary_dim < 0 || rotary_dim > head_size || rotary_dim % 2)
    fail(node.label(), ": rotary_embedding_dim ", rotary_dim, " must be even and at most the head size ", head_size);
  const int64_t half = rotary_dim / 2;
  const bool interleaved = node.attr_int("interleaved", 0) != 0;
  if (cos_cache.dims() != sin_cache.dims())
    fail(node.label(), ": cos_cache ", cos_cache.describe(), " and sin_cache ", sin_cache.describe(), " differ");
  if (cos_cache.dtype() != x.dtype() || sin_cache.dtype() != x.dtype())
    fail(node.label(), ": cos_cache/sin_cache type differs from the input");
  int64_t max_pos = 0;
  if (position_ids) {
    if (cos_cache.rank() != 2 || cos_cache.dim(1) != half)
      fail(node.label(), ": with position_ids the caches must be [max_position, ", half, "], got ", cos_cache.describe());
    if (position_ids->dims() != Dims{batch, seq} && position_ids->dims() != Dims{1, seq})
      fail(node.label(), ": position_ids ", position_ids->describe(), " must be [", batch, "x", seq, "]");
    max_pos = cos_cache.dim(0);
  } else if (cos_cache.dims() != Dims{batch, seq, half}) {
    fail(node.label(), ": without position_ids the caches must be [", batch, "x", seq, "x", half, "], got ",
         cos_cache.describe());
  }
  const HeadView view = head_view(rank3, heads, seq, head_size);
  const T* xd = x.data<T>();
  const T* cd = cos_cache.data<T>();
  const T* sd = sin_cache.data<T>();
  T* out = ctx.allocate_output(0, x.dtype(), x.dims()).template data<T>();
  const bool pid_batched = position_ids && position_ids->dim(0) == batch;
  auto rnd = [dt = x.dtype()](double v) { return round_as(dt, v); };
  if (position_ids) {
    for (int64_t i = 0; i < position_ids->numel(); ++i) {
      const int64_t p = position_ids->get_int(i);
      if (p < 0 || p >= max_pos)
        fail(node.label(), ": position id ", p, " is outside the cache of ", max_pos, " positions");
    }
  }
  ctx.parallel_for(batch * seq, [&](int64_t begin, int64_t end) {
    for (int64_t bs = begin; bs < end; ++bs) {
      const int64_t b = bs / seq, s = bs % seq;
      int64_t cache_row = bs;
      if (position_ids) cache_row = position_ids->get_int(pid_batched ? bs : s);
      const T* c = cd + cache_row * half;
      const T* sn = sd + cache_row * half;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t at = b * view.sb + h * view.sh + s * view.ss;
        const T* in = xd + at;
        T* o = out + at;
        // Each product rounds to T before the sum, as the spec's function body does.
        for (int64_t k = 0; k < half; ++k) {
          const int64_t i1 = interleaved ? 2 * k : k, i2 = interleaved ? 2 * k + 1 : k + half;
          const double x1 = as_double(in[i1]), x2 = as_double(in[i2]);
          const double cv = as_double(c[k]), sv = as_double(sn[k]);
          o[i1] = from_double<T>(rnd(cv * x1) - rnd(sv * x2));
          o[i2] = from_double<T>(rnd(sv * x1) + rnd(cv * x2));
        }
        std::copy(in + rotary_dim, in + head_size, o + rotary_dim);
      }
    }
  });
}

void rotary_kernel(KernelContext& ctx) {
  dispatch_float(ctx.input(0).dtype(), [&](auto tag) { rotary_typed<typename decltype(tag)::type>(ctx); });
}

}  // namespace

void register_attention(Registry& r) {
  r.add({.domain = "", .name = "Attention", .kernel = attention_kernel, .infer = attention_infer,
         .cost = attention_cost, .family = {}});
  // About six FLOPs per rotated pair (four multiplies, two adds).
  r.add({.domain = "", .name = "RotaryEmbedding", .kernel = rotary_kernel, .infer = infer_same_as(0),
         .cost = cost_per_output_element(3), .family = {}});
}

}  // namespace duet::ops
