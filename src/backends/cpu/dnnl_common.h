// Shared by the oneDNN backend's capability query (claims.cc) and its
// lowering (dnnl_backend.cc): element types and layouts in oneDNN's terms,
// post-op chains, the tests on operands both make, and the switches that
// turn Duet's own kernels and single op types off. Private to backends/cpu.
#pragma once
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/ops/post_ops.h"
#include "duet/runtime/backend.h"
#include "duet/runtime/peaks.h"
#include "duet/backends/cpu/sgemm.h"
#include "duet/backends/cpu/winograd.h"

namespace duet::runtime::dnnl_detail {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using ops::PostOp;
using ops::PostOpKind;
using backends::cpu::PackedSgemm;
using backends::cpu::WinogradConv3x3;
using backends::cpu::WinogradShape;

inline const Tensor* constant_of(const ir::Graph& g, const ir::Value* v) { return g.constant(v); }

inline bool is_f32(const ir::Value* v) { return v && v->type.dtype == DType::Float32; }
inline bool is_8bit(DType t) { return t == DType::UInt8 || t == DType::Int8; }
inline bool is_8bit(const ir::Value* v) { return v && is_8bit(v->type.dtype); }

// Element types that cross a partition boundary.
inline dt dnnl_type(DType t) {
  switch (t) {
    case DType::Float32: return dt::f32;
    case DType::UInt8: return dt::u8;
    case DType::Int8: return dt::s8;
    default: fail("oneDNN backend: ", dtype_name(t), " tensors do not enter a partition");
  }
}
inline DType duet_type(dt t) { return t == dt::u8 ? DType::UInt8 : t == dt::s8 ? DType::Int8 : DType::Float32; }

// md's layout with another element type (strides count elements, so they stay).
inline memory::desc retyped(const memory::desc& md, dt type) {
  dnnl_memory_desc_t d = md.data;
  d.data_type = static_cast<dnnl_data_type_t>(type);
  return memory::desc(d);
}
inline bool rank_is(const ir::Value* v, size_t r) { return v && v->type.shape.rank_known && v->type.shape.rank() == r; }

inline tag plain_tag(size_t rank) {
  switch (rank) {
    case 1: return tag::a;
    case 2: return tag::ab;
    case 3: return tag::abc;
    case 4: return tag::abcd;
    case 5: return tag::abcde;
    case 6: return tag::abcdef;
    default: fail("oneDNN backend: rank ", rank, " is not supported");
  }
}

inline memory::dims to_dims(const Dims& d) { return memory::dims(d.begin(), d.end()); }

// oneDNN eltwise steps for one post-op (HardSigmoid takes two).
inline std::vector<std::tuple<dnnl::algorithm, float, float>> eltwise_steps(const PostOp& op) {
  using a = dnnl::algorithm;
  switch (op.kind) {
    case PostOpKind::Relu: return {{a::eltwise_relu, op.a, 0.f}};
    case PostOpKind::Clip: return {{a::eltwise_clip, op.a, op.b}};
    case PostOpKind::HardSigmoid: return {{a::eltwise_linear, op.a, op.b}, {a::eltwise_clip, 0.f, 1.f}};
    case PostOpKind::HardSwish: return {{a::eltwise_hardswish, 0.f, 0.f}};
    case PostOpKind::Sigmoid: return {{a::eltwise_logistic, 0.f, 0.f}};
    case PostOpKind::Tanh: return {{a::eltwise_tanh, 0.f, 0.f}};
    case PostOpKind::Silu: return {{a::eltwise_swish, 1.f, 0.f}};
    case PostOpKind::GeluErf: return {{a::eltwise_gelu_erf, 0.f, 0.f}};
    case PostOpKind::GeluTanh: return {{a::eltwise_gelu_tanh, 0.f, 0.f}};
    case PostOpKind::Linear: return {{a::eltwise_linear, op.a, op.b}};
  }
  return {};
}

using EltwiseStep = std::tuple<dnnl::algorithm, float, float>;

// oneDNN 2.6's x86 convolutions compute wrong values with three or more
// post-ops (tests/test_cpu_backend.cc holds the case); primitives take at most
// two and later steps run as separate eltwise primitives.
constexpr size_t kMaxPostOps = 2;

inline std::vector<EltwiseStep> flatten(const std::vector<PostOp>& chain) {
  std::vector<EltwiseStep> steps;
  for (auto& op : chain)
    for (auto& step : eltwise_steps(op)) steps.push_back(step);
  return steps;
}

// The attribute for a primitive with an optional sum and the first eltwise
// steps; the steps that do not fit are returned in `rest`.
inline dnnl::primitive_attr post_op_attr(const std::vector<PostOp>& chain, bool sum, std::vector<EltwiseStep>& rest) {
  dnnl::post_ops po;
  if (sum) po.append_sum(1.0f);
  rest.clear();
  for (auto& [alg, alpha, beta] : flatten(chain)) {
    if (static_cast<size_t>(po.len()) < kMaxPostOps) po.append_eltwise(1.0f, alg, alpha, beta);
    else rest.push_back({alg, alpha, beta});
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  return attr;
}

// ---------------------------------------------------------------------------
// Capability query.

// Duet's own kernels are on unless the variable says 0 (read when a plan is
// built, so a comparison can switch them per session).
inline bool own_kernel_enabled(const char* variable) {
  const char* env = std::getenv(variable);
  return !(env && std::string(env) == "0");
}

// The post-op chains Duet's own kernels fuse: none, or one plain ReLU. Sets
// relu; false for any other chain.
inline bool none_or_relu(const std::vector<PostOp>& chain, bool& relu) {
  relu = chain.size() == 1 && chain[0].kind == PostOpKind::Relu && chain[0].a == 0;
  return chain.empty() || relu;
}

// DUET_CPU_OPS=Conv,FusedConv,... limits the claimed op types (for bisecting
// a mismatch against the reference executor).
inline bool op_allowed(const std::string& op) {
  static const char* env = std::getenv("DUET_CPU_OPS");
  if (!env) return true;
  const std::string list = std::string(",") + env + ",";
  return list.find("," + op + ",") != std::string::npos;
}

// --- INT8 -----------------------------------------------------------------------

// A scalar constant: a float32 scale, or an 8-bit zero point.
inline bool scalar_constant(const ir::Graph& g, const ir::Value* v, bool scale) {
  const Tensor* t = constant_of(g, v);
  return t && t->numel() == 1 && (scale ? t->dtype() == DType::Float32 : is_8bit(t->dtype()));
}

// Whether oneDNN 2.6's u8 x s8 kernels compute the integer product exactly on
// this CPU. Without VNNI they multiply through vpmaddubsw, whose s16 sums of
// two products saturate unless |w| <= 64 (255 * 64 * 2 < 2^15; ONNX Runtime's
// reduce_range quantizes weights to 7 bits for this); depthwise kernels widen
// to s32 first. s8 sources get shifted to u8 with weights halved (oneDNN's
// scale_adjust 0.5) there, which loses their low bit.
inline bool integer_product_exact(const Tensor& w, DType x_type, bool depthwise) {
  static const bool vnni = cpu_features().avx512_vnni;
  if (vnni) return true;
  if (x_type != DType::UInt8) return false;
  if (depthwise) return true;
  const int8_t* p = w.data<int8_t>();
  for (int64_t i = 0; i < w.numel(); ++i)
    if (p[i] < -64 || p[i] > 64) return false;
  return true;
}

inline bool is_depthwise(const ir::Node& n, const Tensor& w) {
  const int64_t groups = n.attr_int("group", 1);
  return groups > 1 && w.dim(1) == 1 && w.dim(0) == groups;
}

// The capability query with a reason (claims.cc).
Claim claim_node(const ir::Model& model, const ir::Node& n);

}  // namespace duet::runtime::dnnl_detail
