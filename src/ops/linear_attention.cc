// LinearAttention (opset 27): recurrent linear attention with the update rules
// linear, gated, delta and gated_delta, per-head or per-key-dimension decay,
// and grouped KV heads (GQA/MQA).
//
// The recurrence runs token by token in float32, as the ONNX reference does:
//   S *= exp(g_t)                                    (gated rules)
//   v_t <- beta_t * (v_t - S^T k_t)                   (delta rules)
//   S += k_t (x) v_t
//   o_t = scale * q_t^T S        for every query head sharing this KV head
// Each (batch, KV head) state is independent, so that is the parallel unit.
#include <cmath>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

struct UpdateRule {
  bool gating = false;  // state decays by exp(decay) each step
  bool delta = false;   // value is corrected by what the state already predicts
};

UpdateRule update_rule(const ir::Node& node) {
  const std::string rule = node.attr_string("update_rule", "gated_delta");
  if (rule == "linear") return {false, false};
  if (rule == "gated") return {true, false};
  if (rule == "delta") return {false, true};
  if (rule == "gated_delta") return {true, true};
  fail(node.label(), ": update_rule must be linear, gated, delta or gated_delta, got '", rule, "'");
}

struct LinearAttentionShape {
  int64_t batch = 0, tokens = 0, q_heads = 0, kv_heads = 0, d_k = 0, d_v = 0;
  bool per_key_decay = false;  // decay is (B, T, H_kv*d_k) rather than (B, T, H_kv)
  int64_t beta_heads = 0;      // H_kv, or 1 when one beta is shared by every head
};

// Validates every operand against the attributes; each problem names the node.
LinearAttentionShape linear_attention_shape(const KernelContext& ctx, const UpdateRule& rule) {
  const std::string label = ctx.node.label();
  LinearAttentionShape s;
  s.q_heads = ctx.node.attr_int("q_num_heads", 0);
  s.kv_heads = ctx.node.attr_int("kv_num_heads", 0);
  if (s.q_heads <= 0 || s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0)
    fail(label, ": q_num_heads (", s.q_heads, ") must be a positive multiple of kv_num_heads (", s.kv_heads, ")");
  const Tensor& q = ctx.input(0);
  const Tensor& k = ctx.input(1);
  const Tensor& v = ctx.input(2);
  for (const Tensor* t : {&q, &k, &v})
    if (t->rank() != 3) fail(label, ": query, key and value must be rank 3 (B, T, H*D), got ", t->describe());
  s.batch = q.dim(0);
  s.tokens = q.dim(1);
  if (k.dim(0) != s.batch || v.dim(0) != s.batch || k.dim(1) != s.tokens || v.dim(1) != s.tokens)
    fail(label, ": query ", q.describe(), ", key ", k.describe(), " and value ", v.describe(),
         " must share batch and sequence length");
  if (q.dim(2) % s.q_heads != 0 || v.dim(2) % s.kv_heads != 0)
    fail(label, ": query width ", q.dim(2), " / value width ", v.dim(2), " not divisible by q_num_heads ", s.q_heads,
         " / kv_num_heads ", s.kv_heads);
  s.d_k = q.dim(2) / s.q_heads;
  s.d_v = v.dim(2) / s.kv_heads;
  if (k.dim(2) != s.kv_heads * s.d_k)
    fail(label, ": key width ", k.dim(2), " must be kv_num_heads*d_k = ", s.kv_heads * s.d_k);
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) fail(label, ": query, key and value types differ");

  if (const Tensor* past = ctx.optional_input(3)) {
    if (past->dims() != Dims{s.batch, s.kv_heads, s.d_k, s.d_v})
      fail(label, ": past_state ", past->describe(), " must be [", s.batch, "x", s.kv_heads, "x", s.d_k, "x", s.d_v,
           "]");
  }
  const Tensor* decay = ctx.optional_input(4);
  if (rule.gating != (decay != nullptr))
    fail(label, ": decay is ", rule.gating ? "required" : "not allowed", " for update_rule '",
         ctx.node.attr_string("update_rule", "gated_delta"), "'");
  if (decay) {
    if (decay->rank() != 3 || decay->dim(0) != s.batch || decay->dim(1) != s.tokens ||
        (decay->dim(2) != s.kv_heads && decay->dim(2) != s.kv_heads * s.d_k))
      fail(label, ": decay ", decay->describe(), " must be (B, T, kv_num_heads) or (B, T, kv_num_heads*d_k)");
    if (decay->dtype() != q.dtype()) fail(label, ": decay type differs from query type");
    // When d_k == 1 both layouts coincide, so either reading is the same.
    s.per_key_decay = decay->dim(2) != s.kv_heads;
  }
  const Tensor* beta = ctx.optional_input(5);
  if (rule.delta != (beta != nullptr))
    fail(label, ": beta is ", rule.delta ? "required" : "not allowed", " for update_rule '",
         ctx.node.attr_string("update_rule", "gated_delta"), "'");
  if (beta) {
    if (beta->rank() != 3 || beta->dim(0) != s.batch || beta->dim(1) != s.tokens ||
        (beta->dim(2) != s.kv_heads && beta->dim(2) != 1))
      fail(label, ": beta ", beta->describe(), " must be (B, T, kv_num_heads) or (B, T, 1)");
    if (beta->dtype() != q.dtype()) fail(label, ": beta type differs from query type");
    s.beta_heads = beta->dim(2);
  }
  return s;
}

bool is_state_type(DType t) { return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16; }

// Copies a float32/float16/bfloat16 tensor into float32.
std::vector<float> to_float(const Tensor& t) {
  std::vector<float> out(t.numel());
  dispatch_float(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<float>(p[i]);
  });
  return out;
}

void store_float(const std::vector<float>& src, Tensor& dst) {
  dispatch_float(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = dst.data<T>();
    for (int64_t i = 0; i < dst.numel(); ++i) p[i] = T(src[i]);
  });
}

void linear_attention_kernel(KernelContext& ctx) {
  const std::string label = ctx.node.label();
  const UpdateRule rule = update_rule(ctx.node);
  const DType dtype = ctx.input(0).dtype();
  if (!is_state_type(dtype))
    unsupported(label, ": input type ", dtype_name(dtype), " is not supported (float, float16, bfloat16)");
  const Tensor* past_t = ctx.optional_input(3);
  if (past_t && !is_state_type(past_t->dtype()))
    unsupported(label, ": past_state type ", dtype_name(past_t->dtype()), " is not supported");
  const LinearAttentionShape s = linear_attention_shape(ctx, rule);
  const int64_t B = s.batch, T = s.tokens, Hq = s.q_heads, Hkv = s.kv_heads, dk = s.d_k, dv = s.d_v;
  const int64_t group = Hq / Hkv;

  const float attr_scale = ctx.node.attr_float("scale", 0.0f);
  const float scale = attr_scale == 0.0f ? 1.0f / std::sqrt(static_cast<float>(dk)) : attr_scale;

  const std::vector<float> q = to_float(ctx.input(0));
  const std::vector<float> k = to_float(ctx.input(1));
  const std::vector<float> v = to_float(ctx.input(2));
  const std::vector<float> decay = rule.gating ? to_float(ctx.input(4)) : std::vector<float>{};
  const std::vector<float> beta = rule.delta ? to_float(ctx.input(5)) : std::vector<float>{};
  // state[b][h] is a dk x dv row-major matrix; it starts from past_state or zeros.
  std::vector<float> state = past_t ? to_float(*past_t) : std::vector<float>(B * Hkv * dk * dv, 0.0f);
  std::vector<float> out(B * T * Hq * dv, 0.0f);
  const int64_t decay_width = s.per_key_decay ? Hkv * dk : Hkv;

  ctx.parallel_for(B * Hkv, [&](int64_t begin, int64_t end) {
    std::vector<float> vt(dv), gate(dk);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / Hkv, h = bh % Hkv;
      float* S = state.data() + bh * dk * dv;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t token = b * T + t;
        const float* kt = k.data() + token * Hkv * dk + h * dk;
        const float* vsrc = v.data() + token * Hkv * dv + h * dv;
        std::copy(vsrc, vsrc + dv, vt.begin());
        if (rule.gating) {
          const float* g = decay.data() + token * decay_width;
          for (int64_t i = 0; i < dk; ++i) gate[i] = std::exp(s.per_key_decay ? g[h * dk + i] : g[h]);
          for (int64_t i = 0; i < dk; ++i)
            for (int64_t j = 0; j < dv; ++j) S[i * dv + j] *= gate[i];
        }
        if (rule.delta) {
          const float bt = beta[token * s.beta_heads + (s.beta_heads == 1 ? 0 : h)];
          for (int64_t j = 0; j < dv; ++j) {
            float retrieved = 0.0f;
            for (int64_t i = 0; i < dk; ++i) retrieved += S[i * dv + j] * kt[i];
            vt[j] = bt * (vt[j] - retrieved);
          }
        }
        for (int64_t i = 0; i < dk; ++i)
          for (int64_t j = 0; j < dv; ++j) S[i * dv + j] += kt[i] * vt[j];
        // Query heads h*group .. h*group+group-1 read this KV head's state.
        for (int64_t g = 0; g < group; ++g) {
          const int64_t qh = h * group + g;
          const float* qt = q.data() + token * Hq * dk + qh * dk;
          float* o = out.data() + token * Hq * dv + qh * dv;
          for (int64_t j = 0; j < dv; ++j) {
            float acc = 0.0f;
            for (int64_t i = 0; i < dk; ++i) acc += qt[i] * S[i * dv + j];
            o[j] = scale * acc;
          }
        }
      }
    }
  });

  Tensor& y = ctx.allocate_output(0, dtype, {B, T, Hq * dv});
  store_float(out, y);
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) {
    // The state keeps past_state's type; without one there is no state type
    // to follow, so it takes the query's (as the ONNX reference does).
    Tensor& present = ctx.allocate_output(1, past_t ? past_t->dtype() : dtype, {B, Hkv, dk, dv});
    store_float(state, present);
  }
}

// width / divisor as a Dim, or a fresh dim when width is unknown.
Dim divided(InferContext& ctx, const Dim& width, int64_t divisor) {
  if (width.known() && divisor > 0) return Dim(width.value / divisor);
  return ctx.fresh_dim();
}

std::vector<ir::ValueType> linear_attention_infer(InferContext& ctx) {
  const ir::ValueType& q = ctx.inputs.at(0);
  const ir::ValueType& v = ctx.inputs.at(2);
  const DType state_type = ctx.has_input(3) ? ctx.inputs[3].dtype : q.dtype;
  std::vector<ir::ValueType> out{tensor_type(q.dtype, Shape::unknown_rank())};
  if (ctx.num_outputs > 1) out.push_back(tensor_type(state_type, Shape::unknown_rank()));
  const int64_t hq = ctx.node.attr_int("q_num_heads", 0), hkv = ctx.node.attr_int("kv_num_heads", 0);
  if (!q.shape.rank_known || q.shape.rank() != 3 || !v.shape.rank_known || v.shape.rank() != 3) return out;
  const Dim dk = divided(ctx, q.shape.dims[2], hq);
  const Dim dv = divided(ctx, v.shape.dims[2], hkv);
  const Dim out_width = dv.known() ? Dim(hq * dv.value) : ctx.fresh_dim();
  out[0].shape = Shape({q.shape.dims[0], q.shape.dims[1], out_width});
  if (ctx.num_outputs > 1) out[1].shape = Shape({q.shape.dims[0], Dim(hkv), dk, dv});
  return out;
}

// Per token and KV head: decay (dk*dv), retrieval and correction (2*dk*dv),
// the outer-product update (2*dk*dv); per query head the read (2*dk*dv).
Cost linear_attention_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const ir::ValueType& q = ctx.inputs.at(0);
  const ir::ValueType& v = ctx.inputs.at(2);
  if (!q.shape.fully_known() || !v.shape.fully_known() || q.shape.rank() != 3) return c;
  const double hq = static_cast<double>(ctx.node.attr_int("q_num_heads", 1));
  const double hkv = static_cast<double>(ctx.node.attr_int("kv_num_heads", 1));
  const double tokens = static_cast<double>(q.shape.dims[0].value * q.shape.dims[1].value);
  const double dk = q.shape.dims[2].value / hq, dv = v.shape.dims[2].value / hkv;
  const UpdateRule rule = update_rule(ctx.node);
  const double per_kv_head = dk * dv * (2.0 + (rule.gating ? 1.0 : 0.0) + (rule.delta ? 2.0 : 0.0));
  c.flops = tokens * (hkv * per_kv_head + hq * 2.0 * dk * dv);
  return c;
}

}  // namespace

void register_linear_attention(Registry& r) {
  r.add({.domain = "", .name = "LinearAttention", .kernel = linear_attention_kernel, .infer = linear_attention_infer,
         .cost = linear_attention_cost, .family = {}});
}

}  // namespace duet::ops
