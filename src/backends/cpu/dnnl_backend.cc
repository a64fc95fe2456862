// The oneDNN CPU backend. Claims Conv/FusedConv, ConvTranspose, MatMul/
// FusedMatMul, BatchNormalization, pooling, Resize (integer nearest),
// Concat, elementwise Add/Sub/Mul/Div and activations on float32, 4-d where
// the op has a spatial layout; and the INT8 path of QDQ graphs: com.duet
// QuantizedConv/QuantizedConvTranspose/QuantizedMatMul as u8 x s8 -> s32
// primitives with the requantization (scales, activation, zero points) fused,
// QuantizedBinary as binary primitives on the codes, Resize/MaxPool/Concat
// on codes, and per-tensor QuantizeLinear/DequantizeLinear as reorders, which
// decide where 8-bit tensors enter and leave float regions (8-bit codes are
// nhwc, the layout oneDNN's int8 convolutions read).
//
// A compiled partition builds one Plan per input shape: every node lowered to
// a oneDNN primitive whose source/destination formats are left to oneDNN
// ("any"), so activations stay in its blocked layouts (nChw8c on AVX2,
// nChw16c on AVX-512) between primitives; reorders appear only where a
// primitive wants another layout, and at the partition's boundary, where
// values are plain row-major Tensors. Weights are reordered into the
// primitive's preferred format once, when the plan is built. All
// intermediates share one arena whose offsets come from liveness (values
// whose lifetimes do not overlap share bytes), so a run allocates only the
// output Tensors, from the session's pool.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>

#include "../../ops/conv_util.h"
#include "duet/numerics/convert.h"
#include "duet/numerics/precision.h"
#include "duet/ops/post_ops.h"
#include "duet/runtime/backend.h"
#include "duet/runtime/peaks.h"
#include "dnnl_common.h"

// oneDNN (Debian) runs on OpenMP (libgomp); its thread count is OpenMP's.
extern "C" void omp_set_num_threads(int);

namespace duet::runtime {

namespace {

using namespace dnnl_detail;

// ---------------------------------------------------------------------------
// Plans.

struct Slot {
  const memory::desc& md;  // interned: slots of one layout share a descriptor (696 bytes each)
  memory mem;
  int def = -1, last = -1;  // steps that write it first and read it last
  size_t offset = 0;
  bool external = false;    // a partition input or output: handle set per run
};

struct Step {
  dnnl::primitive prim;
  std::function<void(std::unordered_map<int, memory>&)> kernel;  // Duet's own kernel, run instead of prim
  const ir::Node* node = nullptr;            // the node it was lowered from (profiling)
  std::unordered_map<int, int> slots;        // argument -> slot
  std::unordered_map<int, memory> constants; // argument -> packed weights, bias...
};

// BF16 math on this backend: both operands BF16 without scales, FP32
// accumulation (the bf16 preset; an output rounded to BF16 too, as autocast
// annotates, reads the same). Anything else is computed as the graph is written.
bool is_bf16_math(const numerics::Precision& p) {
  return p.x.format.name == "bf16" && p.w.format.name == "bf16" && p.x.scaling == numerics::emu::Scaling::None &&
         p.w.scaling == numerics::emu::Scaling::None && p.acc_spec == "fp32" && p.sparsity == numerics::Sparsity::Dense;
}

class Plan {
 public:
  Plan(const ir::Model& model, const PartitionSpec& spec, const std::vector<const Tensor*>& inputs,
       const BackendOptions& options, dnnl::engine& engine)
      : model_(model), g_(*model.graph), options_(options),
        default_precision_(numerics::parse_precision(options.precision)), engine_(engine), stream_(engine) {
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const Tensor& t = *inputs[i];
      if (t.dtype() != DType::Float32 && !is_8bit(t.dtype()))
        fail("oneDNN backend: input '", spec.inputs[i]->name, "' is ", t.describe());
      memory::desc md(to_dims(t.dims()), dnnl_type(t.dtype()), plain_tag(t.rank()));
      const int s = new_slot(md);
      slots_[s].external = true;
      input_slots_.push_back(s);
      value_[spec.inputs[i]->name] = s;
    }
    for (auto* n : spec.nodes) {
      current_ = n;
      // oneDNN divides by dimensions (SIGFPE on 0): a value that became empty
      // inside the partition is one clear error (Session runs partitions whose
      // inputs are empty on the reference kernels).
      for (auto* v : n->inputs)
        if (auto it = v ? value_.find(v->name) : value_.end(); it != value_.end())
          for (auto d : slots_[it->second].md.dims())
            DUET_CHECK(d != 0, "oneDNN backend: ", n->label(), " reads '", v->name,
                       "', which has no elements; run this input with --backend reference");
      lower(*n);
    }
    for (auto* out : spec.outputs) {
      const int src = slot_of(out);
      current_ = out->producer;
      const memory::desc& md = slots_[src].md;
      memory::desc plain(md.dims(), md.data_type(), plain_tag(md.dims().size()));
      output_types_.push_back(duet_type(md.data_type()));
      const int dst = new_slot(plain);
      slots_[dst].external = true;
      reorder(src, dst);
      output_slots_.push_back(dst);
      const memory::dims d = md.dims();  // dims() returns a fresh vector each call
      output_dims_.push_back(Dims(d.begin(), d.end()));
    }
    allocate();
    for (auto [slot, data] : constant_slots_) slots_[slot].mem.set_data_handle(data);
  }

  std::vector<Tensor> run(const std::vector<const Tensor*>& inputs, Allocator& alloc, NodeTimes* times) {
    for (size_t i = 0; i < input_slots_.size(); ++i)
      slots_[input_slots_[i]].mem.set_data_handle(const_cast<void*>(inputs[i]->raw()));
    for (auto [step, slot] : view_inputs_) args_[step][DNNL_ARG_SRC].set_data_handle(slots_[slot].mem.get_data_handle());
    std::vector<Tensor> outputs;
    for (size_t i = 0; i < output_slots_.size(); ++i) {
      outputs.emplace_back(output_types_[i], output_dims_[i], &alloc);
      slots_[output_slots_[i]].mem.set_data_handle(outputs.back().raw());
    }
    for (auto [step, slot] : view_outputs_) args_[step][DNNL_ARG_DST].set_data_handle(slots_[slot].mem.get_data_handle());
    if (!times) {
      for (size_t i = 0; i < steps_.size(); ++i) execute(i);
      stream_.wait();
      return outputs;
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      execute(i);
      stream_.wait();
      (*times)[steps_[i].node] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    return outputs;
  }

 private:
  void execute(size_t i) {
    if (!steps_[i].kernel) return steps_[i].prim.execute(stream_, args_[i]);
    stream_.wait();  // oneDNN's CPU stream runs in order; a kernel of ours starts after the primitives before it
    steps_[i].kernel(args_[i]);
  }
  int new_slot(const memory::desc& md) {
    slots_.push_back({intern(md)});
    return static_cast<int>(slots_.size()) - 1;
  }
  // The one stored copy of md: a long graph has few distinct layouts.
  const memory::desc& intern(const memory::desc& md) {
    size_t key = md.get_size() ^ static_cast<size_t>(md.data_type());
    for (auto d : md.dims()) key = key * 1000003 ^ static_cast<size_t>(d);
    auto [lo, hi] = desc_index_.equal_range(key);
    for (auto it = lo; it != hi; ++it)
      if (*it->second == md) return *it->second;
    descs_.push_back(md);
    return *desc_index_.emplace(key, &descs_.back())->second;
  }
  int slot_of(const ir::Value* v) {
    auto it = value_.find(v->name);
    if (it == value_.end()) fail("oneDNN backend: value '", v->name, "' has no producer in the partition");
    return it->second;
  }
  int add_step(dnnl::primitive prim, std::unordered_map<int, int> slots, std::unordered_map<int, memory> constants = {}) {
    const int index = static_cast<int>(steps_.size());
    for (auto& [arg, s] : slots) {
      Slot& slot = slots_[s];
      const bool written = arg == DNNL_ARG_DST || arg == DNNL_ARG_DIFF_SRC || arg == DNNL_ARG_DIFF_WEIGHTS ||
                           arg == DNNL_ARG_DIFF_BIAS;  // backward primitives write their diff arguments
      if (written && slot.def < 0) slot.def = index;
      slot.last = index;
    }
    steps_.push_back({std::move(prim), {}, current_, std::move(slots), std::move(constants)});
    return index;
  }
  // A step run by one of Duet's own kernels (reads and writes the slots' memory).
  int add_kernel_step(std::function<void(std::unordered_map<int, memory>&)> kernel, std::unordered_map<int, int> slots) {
    const int index = add_step(dnnl::primitive(), std::move(slots));
    steps_[index].kernel = std::move(kernel);
    return index;
  }
  void reorder(int src, int dst) {
    dnnl::reorder::primitive_desc pd(engine_, slots_[src].md, engine_, slots_[dst].md);
    add_step(dnnl::reorder(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
  }
  // The value in slot s in layout md: s itself, or a reordered copy.
  int as_layout(int s, const memory::desc& md) {
    if (slots_[s].md == md) return s;
    const int d = new_slot(md);
    reorder(s, d);
    return d;
  }
  // A constant tensor packed into md (weights in the primitive's format).
  memory pack(const Tensor& t, const memory::desc& user, const memory::desc& md) {
    keep_.push_back(t);
    memory src(user, engine_, const_cast<void*>(t.raw()));
    if (user == md) return src;
    memory dst(md, engine_);
    dnnl::reorder(src, dst).execute(stream_, src, dst);
    stream_.wait();
    return dst;
  }
  memory vector_memory(const Tensor& t) {
    keep_.push_back(t);
    return memory(memory::desc({t.numel()}, dt::f32, tag::a), engine_, const_cast<void*>(t.raw()));
  }
  const Tensor& constant(const ir::Node& n, size_t i) {
    const Tensor* t = constant_of(g_, n.inputs[i]);
    if (!t) fail(n.label(), ": input ", i, " must be a constant");
    return *t;
  }
  void define(const ir::Node& n, int s) { value_[n.outputs[0]->name] = s; }

  // md's layout for other dims (same format tag), or "any" when it has no simple tag.
  static memory::desc same_layout(const memory::desc& like, const memory::dims& dims) {
    const size_t rank = like.dims().size();
    std::vector<tag> tags = {plain_tag(rank)};
    if (rank == 4) tags.insert(tags.end(), {tag::aBcd8b, tag::aBcd16b, tag::acdb});
    for (tag t : tags)
      if (memory::desc(like.dims(), like.data_type(), t) == like) return memory::desc(dims, like.data_type(), t);
    return memory::desc(dims, like.data_type(), tag::any);
  }

  // A plain copy of slot `src` read through `view` (a permuted, reshaped or
  // sub-memory descriptor of its bytes): Transpose, Reshape, Slice. The view is
  // only the reorder's source descriptor; an aliasing slot would complicate
  // the arena's liveness.
  int copy_through_view(int src, const memory::desc& view) {
    const memory::dims d = view.dims();
    const int dst = new_slot(memory::desc(d, view.data_type(), plain_tag(d.size())));
    dnnl::reorder::primitive_desc pd(engine_, view, engine_, slots_[dst].md);
    views_.push_back({static_cast<int>(steps_.size()), view});
    add_step(dnnl::reorder(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    return dst;
  }

  // Eltwise primitives for steps, starting from slot s; returns the last slot.
  int eltwise(int s, const std::vector<EltwiseStep>& steps) {
    for (auto [alg, alpha, beta] : steps) {
      const EltwisePrimitive* e = &eltwise_primitive(alg, alpha, beta, slots_[s].md);
      // A blocked layout with few channels (det's 1-channel head) gets oneDNN
      // 2.6's reference eltwise; the plain layout gets the jit kernel.
      if (e->reference) {
        s = plain(s);
        e = &eltwise_primitive(alg, alpha, beta, slots_[s].md);
      }
      const int d = new_slot(e->dst);
      add_step(e->prim, {{DNNL_ARG_SRC, s}, {DNNL_ARG_DST, d}});
      s = d;
    }
    return s;
  }

  // One eltwise primitive per (algorithm, alpha, beta, source layout), shared
  // by every step that needs it (a primitive runs with any arguments): a
  // 10^5-node activation chain creates a few primitives, not 10^5. Slot
  // descriptors are interned, so the layout is known by its address.
  struct EltwisePrimitive {
    memory::desc dst;
    dnnl::primitive prim;
    bool reference = false;  // oneDNN chose its reference (slow) implementation
  };
  using EltwiseKey = std::tuple<int, uint32_t, uint32_t, const memory::desc*>;  // alpha and beta by their bits
  const EltwisePrimitive& eltwise_primitive(dnnl::algorithm alg, float alpha, float beta, const memory::desc& src) {
    const EltwiseKey key{static_cast<int>(alg), std::bit_cast<uint32_t>(alpha), std::bit_cast<uint32_t>(beta), &intern(src)};
    if (auto it = eltwise_cache_.find(key); it != eltwise_cache_.end()) return it->second;
    dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, src, alpha, beta}, engine_);
    EltwisePrimitive e{pd.dst_desc(), dnnl::eltwise_forward(pd), std::string(pd.impl_info_str()).find("ref") != std::string::npos};
    return eltwise_cache_.emplace(key, std::move(e)).first->second;
  }

  void lower(const ir::Node& n) {
    const std::string& op = n.op_type;
    if ((op == "Conv" || op == "FusedConv") && !constant_of(g_, n.inputs[1])) return conv_runtime_weights(n);
    if (op == "Conv" || op == "FusedConv") return conv(n);
    if (op == "ConvGrad") return conv_grad(n);
    if (op == "QuantizedConv") return quantized_conv(n);
    if (op == "QuantizedConvTranspose") return quantized_deconv(n);
    if (op == "QuantizedMatMul") return quantized_matmul(n);
    if (op == "QuantizedBinary") return quantized_binary(n);
    if (op == "QuantizeLinear" || op == "DequantizeLinear") return quantize_reorder(n);
    if (op == "ConvTranspose") return deconv(n);
    if (op == "MatMul" && !constant_of(g_, n.inputs[1])) return matmul_runtime(n);
    if (op == "MatMul" || op == "FusedMatMul") return matmul(n);
    if (op == "Softmax") return softmax(n);
    if (op == "Slice") return slice(n);
    if (op == "LayerNormalization") return layer_norm(n);
    if (op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Flatten") return reshape(n);
    if (op == "Transpose") return transpose(n);
    if (op == "BatchNormalization") return batchnorm(n);
    if (op == "GlobalAveragePool" || op == "GlobalMaxPool" || op == "MaxPool" || op == "AveragePool") return pool(n);
    if (op == "Resize") return resize(n);
    if (op == "Concat") return concat(n);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return binary(n);
    if (op == "ReduceMean" || op == "ReduceSum") return reduce(n);
    auto post = ops::activation_post_op(n, model_.opset_or_latest(""),
                                        [&](const ir::Value* v) { return constant_of(g_, v); });
    if (!post) unsupported("oneDNN backend: ", n.label(), " is not supported");
    define(n, eltwise(slot_of(n.inputs[0]), eltwise_steps(*post)));
  }

  void conv(const ir::Node& n) {
    const Tensor* bias = n.has_input(2) ? &constant(n, 2) : nullptr;
    const int sum = n.has_input(3) ? slot_of(n.inputs[3]) : -1;
    if (bf16_math(n))
      return define(n, conv_bf16(n, slot_of(n.inputs[0]), constant(n, 1), bias, ops::read_post_ops(n), sum));
    define(n, conv_f32(n, slot_of(n.inputs[0]), constant(n, 1), bias, ops::read_post_ops(n), sum));
  }

  // --- BF16 precision (--precision bf16): Conv/ConvTranspose/MatMul read their
  // input and weights rounded to BF16 (nearest-even) and accumulate in FP32;
  // every other op stays FP32 (PyTorch's CPU autocast lists). Natively where
  // oneDNN has a bf16 primitive (AVX512-BF16 / AMX: src and weights bf16,
  // destination f32); elsewhere emulated with the same products: the input
  // rounded by a step of ours (numerics' bulk BF16 encoder and decoder), the
  // weights rounded once, and the FP32 primitive. The native path never ran
  // on the AVX2 machine this was written on (oneDNN 2.6 refuses bf16 there).

  // A copy of slot x with every value rounded to BF16, same layout.
  int bf16_values(int x) {
    const int y = new_slot(slots_[x].md);
    const size_t count = slots_[x].md.get_size() / sizeof(float);
    auto bits = std::make_shared<std::vector<uint16_t>>(count);  // sized once: runs allocate nothing
    add_kernel_step(
        [bits, count](std::unordered_map<int, memory>& args) {
          const auto* src = static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle());
          numerics::encode_bulk(numerics::bf16(), src, count, bits->data());
          numerics::decode_bulk(numerics::bf16(), bits->data(), count,
                                static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()));
        },
        {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}});
    return y;
  }
  static Tensor bf16_values(const Tensor& t) {
    Tensor r(DType::Float32, t.dims());
    std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
    numerics::encode_bulk(numerics::bf16(), t.data<float>(), bits.size(), bits.data());
    numerics::decode_bulk(numerics::bf16(), bits.data(), bits.size(), r.data<float>());
    return r;
  }

  int conv_bf16(const ir::Node& n, int x, const Tensor& w, const Tensor* bias, const std::vector<PostOp>& chain, int sum) {
    const ConvShape c = conv_shape(n, slots_[x].md.dims(), w);
    try {  // conv_primitive throws when it creates the primitive descriptor, before it adds anything
      return conv_primitive(n, c, x, w, bias, chain, sum, dt::bf16);
    } catch (const dnnl::error&) {
      return conv_f32(n, bf16_values(x), bf16_values(w), bias, chain, sum);
    }
  }

  // A Conv's geometry in oneDNN's terms (weights grouped when group > 1).
  struct ConvShape {
    memory::dims src, weights, dst, strides, dilates, pad_begin, pad_end;
    tag weights_tag = tag::oihw;
  };
  ConvShape conv_shape(const ir::Node& n, const memory::dims& xd, const Tensor& w) {
    return conv_shape(n, xd, memory::dims{w.dim(0), w.dim(1), w.dim(2), w.dim(3)});
  }
  ConvShape conv_shape(const ir::Node& n, const memory::dims& xd, const memory::dims& wd) {
    const int64_t groups = n.attr_int("group", 1);
    if (xd[1] != wd[1] * groups) fail(n.label(), ": input has ", xd[1], " channels, weights expect ", wd[1] * groups);
    const auto geo = ops::window::resolve(n, {xd[2], xd[3]}, {wd[2], wd[3]}, false);
    ConvShape c;
    c.src = xd;
    c.dst = {xd[0], wd[0], geo.out[0], geo.out[1]};
    c.weights = wd;
    if (groups > 1) {
      c.weights = {groups, wd[0] / groups, wd[1], wd[2], wd[3]};
      c.weights_tag = tag::goihw;
    }
    c.strides = {geo.stride[0], geo.stride[1]};
    c.dilates = {geo.dilation[0] - 1, geo.dilation[1] - 1};
    c.pad_begin = {geo.pad_begin[0], geo.pad_begin[1]};
    c.pad_end = {geo.pad_end[0], geo.pad_end[1]};
    return c;
  }

  // A float32 convolution of slot x: bias, the residual sum (slot `sum`, or
  // -1) and the post-op chain fused; returns the result's slot.
  int conv_f32(const ir::Node& n, int x, const Tensor& w, const Tensor* bias, const std::vector<PostOp>& chain, int sum) {
    const ConvShape c = conv_shape(n, slots_[x].md.dims(), w);
    if (const int y = winograd_conv(n, c, x, w, bias, chain, sum); y >= 0) return y;
    return conv_primitive(n, c, x, w, bias, chain, sum, dt::f32);
  }

  // The oneDNN convolution with source and weights of type `in` (f32, or
  // bf16 where oneDNN has such a primitive, else dnnl::error), float32 out.
  int conv_primitive(const ir::Node& n, const ConvShape& c, int x, const Tensor& w, const Tensor* bias,
                     const std::vector<PostOp>& chain, int sum, dt in) {
    memory::desc src_any(c.src, in, tag::any), w_any(c.weights, in, tag::any), dst_any(c.dst, dt::f32, tag::any);
    memory::desc bias_md = bias ? memory::desc({w.dim(0)}, dt::f32, tag::a) : memory::desc();
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_any,
                                         w_any, bias_md, dst_any, c.strides, c.dilates, c.pad_begin, c.pad_end);
    std::vector<EltwiseStep> rest;
    dnnl::convolution_forward::primitive_desc pd(desc, post_op_attr(chain, sum >= 0, rest), engine_);
    const int src = as_layout(x, pd.src_desc());  // for bf16, the reorder rounds to nearest even
    std::unordered_map<int, memory> consts = {
        {DNNL_ARG_WEIGHTS, pack(w, memory::desc(c.weights, dt::f32, c.weights_tag), pd.weights_desc())}};
    if (bias) consts[DNNL_ARG_BIAS] = vector_memory(*bias);
    const int dst = new_slot(pd.dst_desc());
    if (sum >= 0) reorder(sum, dst);
    add_step(dnnl::convolution_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}, std::move(consts));
    return eltwise(dst, rest);
  }

  // A 3x3 stride-1 convolution through Duet's Winograd F(2x2, 3x3) kernel
  // where it applies (winograd.h: AVX2, channels in blocks of 8/16, outputs
  // of 12x12 or more, no post-op but ReLU); -1 where it does not. Set
  // DUET_WINOGRAD=0 to run every convolution through oneDNN (comparisons).
  int winograd_conv(const ir::Node& n, const ConvShape& c, int x, const Tensor& w, const Tensor* bias,
                    const std::vector<PostOp>& chain, int sum) {
    bool relu = false;
    if (!own_kernel_enabled("DUET_WINOGRAD") || !WinogradConv3x3::available() || !none_or_relu(chain, relu) ||
        n.attr_int("group", 1) != 1 || w.dtype() != DType::Float32)
      return -1;
    if (c.weights.size() != 4 || c.weights[2] != 3 || c.weights[3] != 3 || c.strides != memory::dims{1, 1} ||
        c.dilates != memory::dims{0, 0})
      return -1;
    WinogradShape s;
    s.batch = c.src[0];
    s.in_channels = c.src[1];
    s.out_channels = c.dst[1];
    s.height = c.src[2];
    s.width = c.src[3];
    s.out_height = c.dst[2];
    s.out_width = c.dst[3];
    s.pad_top = c.pad_begin[0];
    s.pad_left = c.pad_begin[1];
    if (!WinogradConv3x3::suits(s) || s.pad_top < 0 || s.pad_left < 0) return -1;
    auto kernel = std::make_shared<const WinogradConv3x3>(s, w.data<float>(), bias ? bias->data<float>() : nullptr,
                                                          sum >= 0, relu);
    const int src = as_layout(x, memory::desc(c.src, dt::f32, tag::nChw8c));
    const int dst = new_slot(memory::desc(c.dst, dt::f32, tag::nChw8c));
    if (sum >= 0) reorder(sum, dst);
    add_kernel_step(
        [kernel](std::unordered_map<int, memory>& args) {
          kernel->run(static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()),
                      static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()));
        },
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    return dst;
  }

  // --- Training: weights computed at run time, convolution gradients ----------------

  // A Conv whose weights (and bias) are values of the graph (training feeds
  // them every step): reordered into the primitive's layout per run.
  void conv_runtime_weights(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]), w = slot_of_or_constant(n.inputs[1]);
    const ConvShape c = conv_shape(n, slots_[x].md.dims(), slots_[w].md.dims());
    const bool has_bias = n.has_input(2);
    memory::desc src_any(c.src, dt::f32, tag::any), w_any(c.weights, dt::f32, tag::any), dst_any(c.dst, dt::f32, tag::any);
    memory::desc bias_md = has_bias ? memory::desc({c.weights[0]}, dt::f32, tag::a) : memory::desc();
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
                                         w_any, bias_md, dst_any, c.strides, c.dilates, c.pad_begin, c.pad_end);
    std::vector<EltwiseStep> rest;
    dnnl::convolution_forward::primitive_desc pd(desc, post_op_attr(ops::read_post_ops(n), false, rest), engine_);
    std::unordered_map<int, int> args{{DNNL_ARG_SRC, as_layout(x, pd.src_desc())},
                                      {DNNL_ARG_WEIGHTS, as_layout(w, pd.weights_desc())}};
    if (has_bias) args[DNNL_ARG_BIAS] = as_layout(slot_of_or_constant(n.inputs[2]), bias_md);
    const int dst = new_slot(pd.dst_desc());
    args[DNNL_ARG_DST] = dst;
    add_step(dnnl::convolution_forward(pd), std::move(args));
    define(n, eltwise(dst, rest));
  }

  // com.duet ConvGrad (dY, X, W) -> dX, dW, dB with oneDNN's backward-data and
  // backward-weights primitives (hinted by the forward training primitive).
  void conv_grad(const ir::Node& n) {
    const int dy = slot_of(n.inputs[0]), x = slot_of(n.inputs[1]), w = slot_of_or_constant(n.inputs[2]);
    const ConvShape c = conv_shape(n, slots_[x].md.dims(), slots_[w].md.dims());
    auto wanted = [&](size_t i) { return i < n.outputs.size() && n.outputs[i] != nullptr; };
    memory::desc src_any(c.src, dt::f32, tag::any), w_any(c.weights, dt::f32, tag::any), dst_any(c.dst, dt::f32, tag::any);
    memory::desc bias_md({c.weights[0]}, dt::f32, tag::a);
    dnnl::convolution_forward::desc fdesc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
                                          w_any, bias_md, dst_any, c.strides, c.dilates, c.pad_begin, c.pad_end);
    dnnl::convolution_forward::primitive_desc hint(fdesc, engine_);
    if (wanted(0)) {
      dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, src_any, w_any, dst_any, c.strides,
                                              c.dilates, c.pad_begin, c.pad_end);
      dnnl::convolution_backward_data::primitive_desc pd(d, engine_, hint);
      const int dx = new_slot(pd.diff_src_desc());
      add_step(dnnl::convolution_backward_data(pd), {{DNNL_ARG_DIFF_DST, as_layout(dy, pd.diff_dst_desc())},
                                                     {DNNL_ARG_WEIGHTS, as_layout(w, pd.weights_desc())},
                                                     {DNNL_ARG_DIFF_SRC, dx}});
      value_[n.outputs[0]->name] = dx;
    }
    if (wanted(1) || wanted(2)) {
      dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, src_any, w_any,
                                                 wanted(2) ? bias_md : memory::desc(), dst_any, c.strides, c.dilates,
                                                 c.pad_begin, c.pad_end);
      dnnl::convolution_backward_weights::primitive_desc pd(d, engine_, hint);
      const int dw = new_slot(pd.diff_weights_desc());
      std::unordered_map<int, int> args{{DNNL_ARG_SRC, as_layout(x, pd.src_desc())},
                                        {DNNL_ARG_DIFF_DST, as_layout(dy, pd.diff_dst_desc())},
                                        {DNNL_ARG_DIFF_WEIGHTS, dw}};
      int db = -1;
      if (wanted(2)) args[DNNL_ARG_DIFF_BIAS] = db = new_slot(pd.diff_bias_desc());
      add_step(dnnl::convolution_backward_weights(pd), std::move(args));
      if (wanted(1)) value_[n.outputs[1]->name] = dw;
      if (wanted(2)) value_[n.outputs[2]->name] = db;
    }
  }

  // The slot of a computed value, or a constant copied into a slot of its own.
  int slot_of_or_constant(const ir::Value* v) {
    if (const Tensor* t = constant_of(g_, v)) {
      memory::desc md(to_dims(t->dims()), dt::f32, plain_tag(t->rank()));
      const int s = new_slot(md);
      slots_[s].external = true;  // no arena space: its handle points at the constant (set after allocate)
      keep_.push_back(*t);
      constant_slots_.push_back({s, const_cast<void*>(t->raw())});
      return s;
    }
    return slot_of(v);
  }

  // --- INT8 ---------------------------------------------------------------------

  // The constant scales and zero points of a QuantizedConv / QuantizedMatMul.
  struct Requantization {
    float x_scale = 1, y_scale = 1;
    int32_t x_zero = 0, y_zero = 0;
    std::vector<float> w_scale;  // one per output channel
    dt y_type = dt::u8;
  };
  Requantization requantization(const ir::Node& n, int64_t channels) {
    Requantization q;
    q.x_scale = constant(n, 1).data<float>()[0];
    q.y_scale = constant(n, 6).data<float>()[0];
    if (n.has_input(2)) q.x_zero = static_cast<int32_t>(constant(n, 2).get_int(0));
    if (n.has_input(7)) q.y_zero = static_cast<int32_t>(constant(n, 7).get_int(0));
    const Tensor& ws = constant(n, 4);
    for (int64_t c = 0; c < channels; ++c) q.w_scale.push_back(ws.data<float>()[ws.numel() == 1 ? 0 : c]);
    q.y_type = dnnl_type(n.outputs[0]->type.dtype);
    return q;
  }

  // The integer primitive's attribute. Without an activation the output
  // scales x_scale * w_scale[c] / y_scale (and y_zero carried by the bias:
  // accumulator_bias) give the code before rounding, and the first requantize
  // step fits as post-ops. With one, the activation runs on the real result
  // and a linear step divides by y_scale and adds y_zero: oneDNN 2.6's x86
  // injectors compute wrong values for two eltwise_linear post-ops with other
  // parameters in one chain, and binary post-ops by scalars cost more than a
  // pass of their own, so no step fuses then. oneDNN rounds to nearest even
  // and saturates as it stores the 8-bit result. Returns the steps fused.
  size_t requantize_attr(const Requantization& q, const std::vector<PostOp>& chain,
                         const std::vector<ops::RequantizeStep>& steps, int channel_mask, bool zero_in_bias,
                         dnnl::primitive_attr& attr) {
    const bool fold = chain.empty() && zero_in_bias;
    std::vector<float> scales;
    for (float ws : q.w_scale) scales.push_back(fold ? q.x_scale * ws / q.y_scale : q.x_scale * ws);
    const bool per_channel = std::any_of(scales.begin(), scales.end(), [&](float v) { return v != scales[0]; });
    if (per_channel) attr.set_output_scales(channel_mask, scales);
    else attr.set_output_scales(0, {scales[0]});
    if (q.x_zero != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::post_ops po;
    size_t fused = 0;
    if (fold) {
      if (!steps.empty()) append_requantize_step(po, steps[0], q.y_type), fused = 1;
    } else {
      for (auto& [alg, alpha, beta] : flatten(chain)) po.append_eltwise(1.0f, alg, alpha, beta);
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / q.y_scale, static_cast<float>(q.y_zero));
    }
    attr.set_post_ops(po);
    return fused;
  }

  // A requantize step as post-ops: round and saturate (the QuantizeLinear
  // before it), then its affine map over its output scale (the store rounds).
  static void append_requantize_step(dnnl::post_ops& po, const ops::RequantizeStep& step, dt type) {
    const auto [a, b] = step_map(step);
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_round, 0.0f, 0.0f);
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, type == dt::u8 ? 0.0f : -128.0f, type == dt::u8 ? 255.0f : 127.0f);
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, static_cast<float>(a), static_cast<float>(b));
  }

  // A step as a map from input codes to output codes before rounding.
  static std::pair<double, double> step_map(const ops::RequantizeStep& step) {
    const auto [alpha, beta] = step.affine();
    return {alpha / step.out_scale, beta / step.out_scale + static_cast<double>(step.out_zero)};
  }

  // Codes a * code + b of slot s (rounded and saturated on store), then the
  // requantize `steps`: a binary primitive (the code scaled, plus a scalar
  // operand) with the first step as post-ops, the rest as passes of their
  // own. Few channels (det's probability map) take the 8-bit eltwise instead:
  // the binary jit vectorizes over channels and crawls there.
  int affine_codes(int s, double a, double b, std::vector<ops::RequantizeStep> steps) {
    const memory::desc md = slots_[s].md;
    const memory::dims d = md.dims();
    if (d.size() > 1 && d[1] < 8) {
      dnnl::eltwise_forward::primitive_desc pd(
          {dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_linear, md, static_cast<float>(a), static_cast<float>(b)},
          engine_);
      const int dst = new_slot(pd.dst_desc());
      add_step(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, s}, {DNNL_ARG_DST, dst}});
      return requantize_apart(dst, steps);
    }
    dnnl::primitive_attr attr;
    attr.set_scales(DNNL_ARG_SRC_0, 0, {static_cast<float>(a)});
    dnnl::post_ops po;
    if (!steps.empty()) {
      append_requantize_step(po, steps.front(), md.data_type());
      steps.erase(steps.begin());
    }
    attr.set_post_ops(po);
    const memory::desc scalar_md(memory::dims(d.size(), 1), dt::f32, plain_tag(d.size()));
    memory shift(scalar_md, engine_);
    *static_cast<float*>(shift.get_data_handle()) = static_cast<float>(b);
    dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_add, md, scalar_md, memory::desc(d, md.data_type(), tag::any)},
                                    attr, engine_);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::binary(pd), {{DNNL_ARG_SRC_0, s}, {DNNL_ARG_DST, dst}}, {{DNNL_ARG_SRC_1, shift}});
    return requantize_apart(dst, steps);
  }

  // Requantize steps each as a pass over the codes.
  int requantize_apart(int s, const std::vector<ops::RequantizeStep>& steps) {
    for (auto& step : steps) {
      const auto [a, b] = step_map(step);
      s = affine_codes(s, a, b, {});
    }
    return s;
  }

  memory s32_scalar(int32_t v) {
    memory m(memory::desc({1}, dt::s32, tag::x), engine_);
    *static_cast<int32_t*>(m.get_data_handle()) = v;
    return m;
  }

  // oneDNN adds the bias to the s32 accumulator before the output scales: the
  // float bias in accumulator units, plus y_zero when the scales include
  // 1 / y_scale (requantize_attr without an activation). Null: no bias.
  memory accumulator_bias(const Tensor* bias, const Requantization& q, bool with_zero) {
    const int64_t channels = static_cast<int64_t>(q.w_scale.size());
    Tensor t(DType::Float32, {channels});
    for (int64_t c = 0; c < channels; ++c) {
      const double unit = static_cast<double>(q.x_scale) * q.w_scale[c];
      const double b = bias ? bias->data<float>()[c] : 0.0;
      t.data<float>()[c] = static_cast<float>((b + (with_zero ? q.y_zero * static_cast<double>(q.y_scale) : 0.0)) / unit);
    }
    return vector_memory(t);
  }

  // A reorder computing scale * (src - src_zero) + dst_zero into layout `to`
  // (rounded to nearest even and saturated for 8-bit types).
  int convert(int s, const memory::desc& to, float scale, int32_t src_zero, int32_t dst_zero) {
    dnnl::primitive_attr attr;
    attr.set_output_scales(0, {scale});
    std::unordered_map<int, memory> consts;
    if (src_zero != 0) {
      attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
      consts[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = s32_scalar(src_zero);
    }
    if (dst_zero != 0) {
      attr.set_zero_points(DNNL_ARG_DST, 0, {DNNL_RUNTIME_S32_VAL});
      consts[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST] = s32_scalar(dst_zero);
    }
    dnnl::reorder::primitive_desc pd(engine_, slots_[s].md, engine_, to, attr);
    const int d = new_slot(to);
    add_step(dnnl::reorder(pd), {{DNNL_ARG_SRC, s}, {DNNL_ARG_DST, d}}, std::move(consts));
    return d;
  }

  // 8-bit codes are written nhwc when 4-d: the layout the int8 convolutions read.
  memory::desc code_layout(const memory::desc& like, dt type) {
    const memory::dims d = like.dims();
    return d.size() == 4 ? memory::desc(d, type, tag::acdb) : retyped(like, type);
  }

  // QuantizeLinear / DequantizeLinear per tensor: one reorder (QuantizeLinear
  // multiplies by 1/scale where the reference divides: ties may differ by 1).
  void quantize_reorder(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const float scale = constant(n, 1).data<float>()[0];
    const int32_t zero = n.has_input(2) ? static_cast<int32_t>(constant(n, 2).get_int(0)) : 0;
    if (n.op_type == "DequantizeLinear") return define(n, convert(x, retyped(slots_[x].md, dt::f32), scale, zero, 0));
    define(n, convert(x, code_layout(slots_[x].md, dnnl_type(n.outputs[0]->type.dtype)), 1.0f / scale, 0, zero));
  }

  void quantized_conv(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const Tensor& w = constant(n, 3);
    const Requantization q = requantization(n, w.dim(0));
    const Tensor* bias = n.has_input(8) ? &constant(n, 8) : nullptr;
    const auto chain = ops::read_post_ops(n);
    const dt x_type = slots_[x].md.data_type();
    if (!integer_product_exact(w, duet_type(x_type), is_depthwise(n, w)) || flatten(chain).size() >= kMaxPostOps) {
      // Float between two reorders, with the weights dequantized once.
      const int xf = convert(x, retyped(slots_[x].md, dt::f32), q.x_scale, q.x_zero, 0);
      Tensor wf(DType::Float32, w.dims());
      const int64_t per = w.numel() / w.dim(0);
      for (int64_t i = 0; i < w.numel(); ++i)
        wf.data<float>()[i] = static_cast<float>(w.data<int8_t>()[i]) * q.w_scale[i / per];
      const int yf = conv_f32(n, xf, wf, bias, chain, -1);
      const int codes = convert(yf, code_layout(slots_[yf].md, q.y_type), 1.0f / q.y_scale, 0, q.y_zero);
      return define(n, requantize_apart(codes, ops::read_requantize_steps(n)));
    }
    const ConvShape c = conv_shape(n, slots_[x].md.dims(), w);
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, memory::desc(c.src, x_type, tag::any),
        memory::desc(c.weights, dt::s8, tag::any), memory::desc({w.dim(0)}, dt::f32, tag::a),
        memory::desc(c.dst, q.y_type, tag::any), c.strides, c.dilates, c.pad_begin, c.pad_end);
    const auto steps = ops::read_requantize_steps(n);
    integer_conv_step<dnnl::convolution_forward>(n, desc, x, w, memory::desc(c.weights, dt::s8, c.weights_tag), bias, q, chain, steps);
  }

  // The integer primitive of QuantizedConv / QuantizedConvTranspose: the
  // requantization fused as far as requantize_attr allows, x's zero point,
  // s8 weights packed once, the remaining requantize steps as passes.
  template <typename Primitive>
  void integer_conv_step(const ir::Node& n, const typename Primitive::desc& desc, int x, const Tensor& w,
                         const memory::desc& plain_weights, const Tensor* bias, const Requantization& q,
                         const std::vector<PostOp>& chain, const std::vector<ops::RequantizeStep>& steps) {
    dnnl::primitive_attr attr;
    const size_t fused = requantize_attr(q, chain, steps, 1 << 1, true, attr);
    typename Primitive::primitive_desc pd(desc, attr, engine_);
    const int src = as_layout(x, pd.src_desc());
    std::unordered_map<int, memory> consts = {{DNNL_ARG_WEIGHTS, pack(w, plain_weights, pd.weights_desc())},
                                              {DNNL_ARG_BIAS, accumulator_bias(bias, q, chain.empty())}};
    if (q.x_zero != 0) consts[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = s32_scalar(q.x_zero);
    const int dst = new_slot(pd.dst_desc());
    add_step(Primitive(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}, std::move(consts));
    define(n, requantize_apart(dst, {steps.begin() + static_cast<std::ptrdiff_t>(fused), steps.end()}));
  }

  // QuantizedBinary as one binary primitive on the codes (the real value of
  // an operand is s * (code - z)): with a scalar operand the result is affine
  // in the code (affine_codes); with two codes their scales and one shift
  // (Mul: the cross term of one zero point as a binary post-op). oneDNN rounds
  // to nearest even and saturates on store. Requantize steps follow.
  void quantized_binary(const ir::Node& n) {
    const std::string op = n.attr_string("operation", "");
    const double ys = constant(n, 6).data<float>()[0];
    const double yz = n.has_input(7) ? static_cast<double>(constant(n, 7).get_int(0)) : 0.0;
    auto scale_of = [&](size_t i) { return static_cast<double>(constant(n, i + 1).data<float>()[0]); };
    auto zero_of = [&](size_t i) { return n.has_input(i + 2) ? static_cast<double>(constant(n, i + 2).get_int(0)) : 0.0; };
    const auto steps = ops::read_requantize_steps(n);
    if (!n.has_input(1) || !n.has_input(4)) {
      // A scalar operand: affine in the other operand's code.
      const size_t qi = n.has_input(1) ? 0 : 3;
      const ops::RequantizeStep as_step{qi == 3 && op == "Sub" ? "RSub" : op, constant(n, 3 - qi).data<float>()[0],
                                        static_cast<float>(scale_of(qi)), 1.0f, static_cast<int64_t>(zero_of(qi)), 0};
      const auto [alpha, beta] = as_step.affine();
      return define(n, affine_codes(slot_of(n.inputs[qi]), alpha / ys, beta / ys + yz, steps));
    }
    const memory::dims d0 = slots_[slot_of(n.inputs[0])].md.dims(), d3 = slots_[slot_of(n.inputs[3])].md.dims();
    if (d0.size() != d3.size()) fail(n.label(), ": operands of ranks ", d0.size(), " and ", d3.size());
    memory::dims out = d0;
    for (size_t i = 0; i < out.size(); ++i) out[i] = std::max(d0[i], d3[i]);
    size_t ia = 0, ib = 3;
    if (d0 != out) std::swap(ia, ib);  // Add/Mul only (claims): the first operand has the output's shape
    int a = slot_of(n.inputs[ia]), b = slot_of(n.inputs[ib]);
    b = slots_[b].md.dims() == slots_[a].md.dims() ? as_layout(b, retyped(slots_[a].md, slots_[b].md.data_type())) : plain(b);
    double sa = scale_of(ia), sb = scale_of(ib), za = zero_of(ia), zb = zero_of(ib);
    double shift = yz, gain = 1;
    int cross = -1;  // the operand a Mul's cross term subtracts (binary post-op)
    dnnl::algorithm alg = op == "Sub" ? dnnl::algorithm::binary_sub : dnnl::algorithm::binary_add;
    if (op == "Mul" && (za == 0) != (zb == 0)) {
      // One zero point z (of a, say): sa sb (a - z) b = sa sb z (a b / z - b),
      // so the codes' product scaled by 1/z, minus b as a binary post-op.
      alg = dnnl::algorithm::binary_mul;
      const double z = za != 0 ? za : zb;
      cross = za != 0 ? b : a;
      gain = sa * sb * z / ys;
      sa = za != 0 ? 1 / z : 1;
      sb = zb != 0 ? 1 / z : 1;
    } else if (op == "Mul") {
      // Both or no zero points: operands with one are dequantized first.
      alg = dnnl::algorithm::binary_mul;
      if (za != 0) a = convert(a, retyped(slots_[a].md, dt::f32), static_cast<float>(sa), static_cast<int32_t>(za), 0), sa = 1;
      if (zb != 0) b = convert(b, retyped(slots_[b].md, dt::f32), static_cast<float>(sb), static_cast<int32_t>(zb), 0), sb = 1;
      sa /= ys;
    } else {
      shift -= (sa * za + (op == "Sub" ? -sb * zb : sb * zb)) / ys;
      sa /= ys;
      sb /= ys;
    }
    dnnl::primitive_attr attr;
    if (sa != 1) attr.set_scales(DNNL_ARG_SRC_0, 0, {static_cast<float>(sa)});
    if (sb != 1) attr.set_scales(DNNL_ARG_SRC_1, 0, {static_cast<float>(sb)});
    dnnl::post_ops po;
    if (cross >= 0) po.append_binary(dnnl::algorithm::binary_sub, slots_[cross].md);
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, static_cast<float>(gain), static_cast<float>(shift));
    attr.set_post_ops(po);
    const dt y_type = dnnl_type(n.outputs[0]->type.dtype);
    const memory::desc amd = slots_[a].md;
    dnnl::binary::primitive_desc pd({alg, amd, slots_[b].md, memory::desc(amd.dims(), y_type, tag::any)}, attr, engine_);
    const int dst = new_slot(pd.dst_desc());
    std::unordered_map<int, int> args = {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}};
    if (cross >= 0) args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = cross;
    add_step(dnnl::binary(pd), std::move(args));
    define(n, requantize_apart(dst, steps));
  }

  // Integer only (claims_quantized leaves the inexact cases to the reference kernel).
  void quantized_matmul(const ir::Node& n) {
    const int a0 = slot_of(n.inputs[0]);
    const memory::dims ad = slots_[a0].md.dims();
    const Tensor& b = constant(n, 3);
    const int64_t k = b.dim(0), cols = b.dim(1);
    if (ad.back() != k) fail(n.label(), ": A has ", ad.back(), " columns, B has ", k, " rows");
    const Requantization q = requantization(n, cols);
    const bool batched = ad.size() == 3;
    const memory::dims bd = batched ? memory::dims{1, k, cols} : memory::dims{k, cols};
    memory::dims od = ad;
    od.back() = cols;
    const int a = plain(a0);
    const dt a_type = slots_[a].md.data_type();
    dnnl::matmul::desc desc(memory::desc(ad, a_type, plain_tag(ad.size())), memory::desc(bd, dt::s8, tag::any),
                            memory::desc(od, q.y_type, plain_tag(od.size())));
    const int last_axis = static_cast<int>(od.size()) - 1;
    const auto steps = ops::read_requantize_steps(n);
    dnnl::primitive_attr attr;
    requantize_attr(q, ops::read_post_ops(n), steps, 1 << last_axis, false, attr);  // no bias to carry y_zero: fuses no step
    dnnl::matmul::primitive_desc pd(desc, attr, engine_);
    std::unordered_map<int, memory> consts = {
        {DNNL_ARG_WEIGHTS, pack(b, memory::desc(bd, dt::s8, plain_tag(bd.size())), pd.weights_desc())}};
    if (q.x_zero != 0) consts[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = s32_scalar(q.x_zero);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::matmul(pd), {{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, dst}}, std::move(consts));
    define(n, requantize_apart(dst, steps));
  }

  void deconv(const ir::Node& n) {
    const Tensor* bias = n.has_input(2) ? &constant(n, 2) : nullptr;
    if (bf16_math(n))  // emulated everywhere (see conv_bf16)
      return define(n, deconv_f32(n, bf16_values(slot_of(n.inputs[0])), bf16_values(constant(n, 1)), bias));
    define(n, deconv_f32(n, slot_of(n.inputs[0]), constant(n, 1), bias));
  }

  // A ConvTranspose's geometry in oneDNN's terms (weights [Cin, Cout/group, kh, kw]).
  struct DeconvShape {
    memory::dims src, weights, dst, strides, dilates, pad_begin, pad_end;
    tag weights_tag = tag::iohw;
  };
  DeconvShape deconv_shape(const ir::Node& n, const memory::dims& xd, const Tensor& w) {
    const int64_t groups = n.attr_int("group", 1);
    const int64_t cout = w.dim(1) * groups;
    auto ints = [&](const char* name, int64_t def) { return ops::window::spatial_ints(n, name, 2, def); };
    const auto stride = ints("strides", 1), dil = ints("dilations", 1);
    auto pads = n.attr_ints("pads");
    if (pads.empty()) pads.assign(4, 0);
    DeconvShape c;
    c.src = xd;
    c.dst = {xd[0], cout, 0, 0};
    for (int i = 0; i < 2; ++i)
      c.dst[2 + i] = (xd[2 + i] - 1) * stride[i] - pads[i] - pads[i + 2] + dil[i] * (w.dim(2 + i) - 1) + 1;
    c.weights = {cout, w.dim(0), w.dim(2), w.dim(3)};
    if (groups > 1) {
      c.weights = {groups, w.dim(1), w.dim(0) / groups, w.dim(2), w.dim(3)};
      c.weights_tag = tag::giohw;
    }
    c.strides = {stride[0], stride[1]};
    c.dilates = {dil[0] - 1, dil[1] - 1};
    c.pad_begin = {pads[0], pads[1]};
    c.pad_end = {pads[2], pads[3]};
    return c;
  }

  int deconv_f32(const ir::Node& n, int x, const Tensor& w, const Tensor* bias) {
    const DeconvShape c = deconv_shape(n, slots_[x].md.dims(), w);
    memory::desc bias_md = bias ? memory::desc({c.dst[1]}, dt::f32, tag::a) : memory::desc();
    dnnl::deconvolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, memory::desc(c.src, dt::f32, tag::any),
        memory::desc(c.weights, dt::f32, tag::any), bias_md, memory::desc(c.dst, dt::f32, tag::any), c.strides, c.dilates,
        c.pad_begin, c.pad_end);
    dnnl::deconvolution_forward::primitive_desc pd(desc, engine_);
    const int src = as_layout(x, pd.src_desc());
    std::unordered_map<int, memory> consts = {
        {DNNL_ARG_WEIGHTS, pack(w, memory::desc(c.weights, dt::f32, c.weights_tag), pd.weights_desc())}};
    if (bias) consts[DNNL_ARG_BIAS] = vector_memory(*bias);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::deconvolution_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}, std::move(consts));
    return dst;
  }

  // QuantizedConvTranspose (group 1): as QuantizedConv, through the
  // deconvolution primitive; output channels are the weights' axis 1.
  void quantized_deconv(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const Tensor& w = constant(n, 3);
    const DeconvShape c = deconv_shape(n, slots_[x].md.dims(), w);
    const Requantization q = requantization(n, c.dst[1]);
    const Tensor* bias = n.has_input(8) ? &constant(n, 8) : nullptr;
    const auto chain = ops::read_post_ops(n);
    const auto steps = ops::read_requantize_steps(n);
    const dt x_type = slots_[x].md.data_type();
    if (!integer_product_exact(w, duet_type(x_type), false) || flatten(chain).size() >= kMaxPostOps) {
      const int xf = convert(x, retyped(slots_[x].md, dt::f32), q.x_scale, q.x_zero, 0);
      Tensor wf(DType::Float32, w.dims());
      const int64_t spatial = w.dim(2) * w.dim(3);
      for (int64_t i = 0; i < w.numel(); ++i)
        wf.data<float>()[i] = static_cast<float>(w.data<int8_t>()[i]) * q.w_scale[(i / spatial) % w.dim(1)];
      const int yf = eltwise(deconv_f32(n, xf, wf, bias), flatten(chain));
      const int codes = convert(yf, code_layout(slots_[yf].md, q.y_type), 1.0f / q.y_scale, 0, q.y_zero);
      return define(n, requantize_apart(codes, steps));
    }
    dnnl::deconvolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, memory::desc(c.src, x_type, tag::any),
        memory::desc(c.weights, dt::s8, tag::any), memory::desc({c.dst[1]}, dt::f32, tag::a),
        memory::desc(c.dst, q.y_type, tag::any), c.strides, c.dilates, c.pad_begin, c.pad_end);
    integer_conv_step<dnnl::deconvolution_forward>(n, desc, x, w, memory::desc(c.weights, dt::s8, c.weights_tag), bias, q, chain,
                                                   steps);
  }

  void matmul(const ir::Node& n) {
    const int a0 = slot_of(n.inputs[0]);
    const memory::dims ad = slots_[a0].md.dims();
    const Tensor* b = &constant(n, 1);
    const int64_t k = b->dim(0), cols = b->dim(1);
    if (ad.back() != k) fail(n.label(), ": A has ", ad.back(), " columns, B has ", k, " rows");
    // Any rank from 2: the weights and bias broadcast over A's leading dims
    // (ConvNeXt's and transformers' 4-D channels-last MLPs).
    memory::dims bd(ad.size(), 1), bias_dims(ad.size(), 1);
    bd[ad.size() - 2] = k, bd.back() = cols, bias_dims.back() = cols;
    memory::dims od = ad;
    od.back() = cols;
    int a = as_layout(a0, memory::desc(ad, dt::f32, plain_tag(ad.size())));
    const auto chain = n.op_type == "FusedMatMul" ? ops::read_post_ops(n) : std::vector<PostOp>{};
    const bool has_bias = n.has_input(2), has_sum = n.has_input(3);
    memory::desc bias_md;
    if (has_bias) bias_md = memory::desc(bias_dims, dt::f32, plain_tag(ad.size()));
    memory::desc dst_md(od, dt::f32, plain_tag(od.size()));
    std::vector<EltwiseStep> rest;
    auto primitive = [&](dt in) {  // throws dnnl::error where oneDNN has no such matmul
      dnnl::matmul::desc desc(memory::desc(ad, in, plain_tag(ad.size())), memory::desc(bd, in, tag::any), bias_md, dst_md);
      return dnnl::matmul::primitive_desc(desc, post_op_attr(chain, has_sum, rest), engine_);
    };
    dnnl::matmul::primitive_desc pd;
    Tensor rounded;
    if (bf16_math(n)) {  // see conv_bf16
      try {
        pd = primitive(dt::bf16);
        a = as_layout(a, pd.src_desc());
      } catch (const dnnl::error&) {
        a = bf16_values(a);
        rounded = bf16_values(*b);
        b = &rounded;
      }
    }
    if (!pd) {
      if (const int y = sgemm_matmul(n, a, ad, *b, chain); y >= 0) return define(n, y);
      pd = primitive(dt::f32);
    }
    std::unordered_map<int, memory> consts = {
        {DNNL_ARG_WEIGHTS, pack(*b, memory::desc(bd, dt::f32, plain_tag(bd.size())), pd.weights_desc())}};
    if (has_bias) {
      const Tensor& c = constant(n, 2);
      keep_.push_back(c);
      consts[DNNL_ARG_BIAS] = memory(bias_md, engine_, const_cast<void*>(c.raw()));
    }
    const int dst = new_slot(pd.dst_desc());
    if (has_sum) reorder(slot_of(n.inputs[3]), dst);
    add_step(dnnl::matmul(pd), {{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, dst}}, std::move(consts));
    define(n, eltwise(dst, rest));
  }

  // A MatMul with constant B through Duet's packed GEMM (sgemm.h) where it
  // is faster than oneDNN's: a few to a few hundred rows, bias, residual sum
  // and ReLU fused; -1 where it does not apply. DUET_SGEMM=0 turns it off.
  int sgemm_matmul(const ir::Node& n, int a, const memory::dims& ad, const Tensor& b, const std::vector<PostOp>& chain) {
    bool relu = false;
    if (!own_kernel_enabled("DUET_SGEMM") || !PackedSgemm::available() || !none_or_relu(chain, relu) ||
        b.dtype() != DType::Float32 || b.rank() != 2)
      return -1;
    int64_t m = 1;
    for (size_t i = 0; i + 1 < ad.size(); ++i) m *= ad[i];
    const int64_t k = b.dim(0), cols = b.dim(1);
    const Tensor* bias = n.has_input(2) ? &constant(n, 2) : nullptr;
    if (!PackedSgemm::suits(m, k, cols) || (bias && (bias->numel() != cols || bias->dtype() != DType::Float32)))
      return -1;
    const bool sum = n.has_input(3);
    auto gemm = std::make_shared<const PackedSgemm>(k, cols, b.data<float>(), cols,
                                                    bias ? bias->data<float>() : nullptr, sum, relu);
    memory::dims od = ad;
    od.back() = cols;
    const int dst = new_slot(memory::desc(od, dt::f32, plain_tag(od.size())));
    if (sum) reorder(slot_of(n.inputs[3]), dst);
    add_kernel_step(
        [gemm, m, k, cols](std::unordered_map<int, memory>& args) {
          gemm->run(m, static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()), k,
                    static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()), cols);
        },
        {{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, dst}});
    return dst;
  }

  // A slot in the plain row-major layout of its dims.
  int plain(int s) {
    const memory::dims d = slots_[s].md.dims();
    return as_layout(s, memory::desc(d, slots_[s].md.data_type(), plain_tag(d.size())));
  }

  void matmul_runtime(const ir::Node& n) {
    int a = plain(slot_of(n.inputs[0])), b = plain(slot_of(n.inputs[1]));
    if (bf16_math(n)) {  // emulated (see conv_bf16)
      a = bf16_values(a);
      b = bf16_values(b);
    }
    const memory::dims ad = slots_[a].md.dims(), bd = slots_[b].md.dims();
    const size_t r = ad.size();
    if (ad[r - 1] != bd[r - 2]) fail(n.label(), ": A has ", ad[r - 1], " columns, B has ", bd[r - 2], " rows");
    memory::dims od = ad;
    od[r - 1] = bd[r - 1];
    for (size_t i = 0; i + 2 < r; ++i) {
      if (ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1) fail(n.label(), ": batch dimensions ", ad[i], " and ", bd[i], " do not broadcast");
      od[i] = std::max(ad[i], bd[i]);
    }
    dnnl::matmul::primitive_desc pd({slots_[a].md, slots_[b].md, memory::desc(od, dt::f32, plain_tag(r))}, engine_);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::matmul(pd), {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, dst}});
    define(n, dst);
  }

  void softmax(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const int axis = static_cast<int>(slots_[x].md.dims().size()) - 1;
    dnnl::softmax_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, slots_[x].md, axis}, engine_);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::softmax_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, dst}});
    define(n, dst);
  }

  // Transpose as a reorder: the source viewed with permuted axes, written plain.
  void transpose(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const memory::dims xd = slots_[x].md.dims();
    const int rank = static_cast<int>(xd.size());
    std::vector<int64_t> perm = n.attr_ints("perm");
    if (perm.empty()) for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
    if (static_cast<int>(perm.size()) != rank) fail(n.label(), ": perm has ", perm.size(), " entries for rank ", rank);
    std::vector<int> inverse(rank, -1);  // output axis i reads input axis perm[i]
    for (int i = 0; i < rank; ++i) {
      const int64_t p = perm[i] < 0 ? perm[i] + rank : perm[i];
      if (p < 0 || p >= rank || inverse[p] >= 0) fail(n.label(), ": perm is not a permutation");
      inverse[p] = i;
    }
    define(n, copy_through_view(x, slots_[x].md.permute_axes(inverse)));
  }

  // Slice with unit steps: a reorder from a sub-memory view of the plain source.
  void slice(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const memory::dims xd = slots_[x].md.dims();
    const int64_t rank = static_cast<int64_t>(xd.size());
    const auto starts = constant(n, 1).to_int_vector(), ends = constant(n, 2).to_int_vector();
    std::vector<int64_t> axes;
    if (n.has_input(3)) axes = constant(n, 3).to_int_vector();
    else for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (starts.size() != ends.size() || axes.size() != starts.size()) fail(n.label(), ": starts, ends and axes differ in length");
    memory::dims od = xd, offsets(rank, 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (a < 0 || a >= rank) fail(n.label(), ": axis ", axes[i], " is out of range");
      auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + xd[a] : v, 0, xd[a]); };
      const int64_t b = clamp(starts[i]), e = clamp(ends[i]);
      offsets[a] = b;
      od[a] = std::max<int64_t>(0, e - b);
    }
    define(n, copy_through_view(x, slots_[x].md.submemory_desc(od, offsets)));
  }

  void layer_norm(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const bool has_bias = n.has_input(2);
    auto flags = dnnl::normalization_flags::use_scale;
    if (has_bias) flags = flags | dnnl::normalization_flags::use_shift;
    dnnl::layer_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, slots_[x].md, n.attr_float("epsilon", 1e-5f), flags}, engine_);
    const int dst = new_slot(pd.dst_desc());
    std::unordered_map<int, memory> consts = {{DNNL_ARG_SCALE, vector_memory(constant(n, 1))}};
    if (has_bias) consts[DNNL_ARG_SHIFT] = vector_memory(constant(n, 2));
    add_step(dnnl::layer_normalization_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, dst}}, std::move(consts));
    define(n, dst);
  }

  // Reshape, Squeeze, Unsqueeze, Flatten: a copy through a reshaped view of the plain source.
  void reshape(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const memory::dims xd = slots_[x].md.dims();
    const int64_t rank = static_cast<int64_t>(xd.size());
    int64_t total = 1;
    for (auto d : xd) total *= d;
    memory::dims od;
    const std::string& op = n.op_type;
    auto axes_of = [&](int64_t out_rank) {
      std::vector<int64_t> axes = n.attr_ints("axes");
      if (n.has_input(1)) axes = constant(n, 1).to_int_vector();
      for (auto& a : axes) if (a < 0) a += out_rank;
      return axes;
    };
    if (op == "Reshape") {
      const auto shape = constant(n, 1).to_int_vector();
      int64_t known = 1, infer = -1;
      for (size_t i = 0; i < shape.size(); ++i) {
        int64_t d = shape[i] == 0 ? (static_cast<int64_t>(i) < rank ? xd[i] : 0) : shape[i];
        if (d == -1) { infer = static_cast<int64_t>(i); od.push_back(1); continue; }
        od.push_back(d);
        known *= d;
      }
      if (infer >= 0) od[infer] = known ? total / known : 0;
    } else if (op == "Flatten") {
      int64_t axis = n.attr_int("axis", 1);
      if (axis < 0) axis += rank;
      int64_t outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= xd[i];
      od = {outer, outer ? total / outer : 0};
    } else if (op == "Squeeze") {
      const auto axes = axes_of(rank);
      for (int64_t i = 0; i < rank; ++i) {
        const bool drop = axes.empty() ? xd[i] == 1 : std::find(axes.begin(), axes.end(), i) != axes.end();
        if (!drop) od.push_back(xd[i]);
      }
    } else {  // Unsqueeze
      const auto axes = axes_of(rank + static_cast<int64_t>(n.has_input(1) ? constant(n, 1).numel() : n.attr_ints("axes").size()));
      const int64_t out_rank = rank + static_cast<int64_t>(axes.size());
      for (int64_t i = 0, j = 0; i < out_rank; ++i)
        od.push_back(std::find(axes.begin(), axes.end(), i) != axes.end() ? 1 : xd[j++]);
    }
    int64_t out_total = 1;
    for (auto d : od) out_total *= d;
    if (out_total != total || od.empty() || od.size() > 6)
      fail(n.label(), ": cannot reshape ", dims_str(Dims(xd.begin(), xd.end())), " to ", dims_str(Dims(od.begin(), od.end())));
    define(n, copy_through_view(x, slots_[x].md.reshape(od)));
  }

  // ReduceMean/ReduceSum over constant axes (every axis when none are given):
  // oneDNN's reduction primitive on the plain layout; keepdims 0 then drops the
  // reduced axes through a view of the (small) result.
  void reduce(const ir::Node& n) {
    const int x = plain(slot_of(n.inputs[0]));
    const memory::dims xd = slots_[x].md.dims();
    const int64_t rank = static_cast<int64_t>(xd.size());
    std::vector<int64_t> axes = n.has_input(1) ? constant(n, 1).to_int_vector() : n.attr_ints("axes");
    std::vector<bool> reduced(xd.size(), axes.empty());
    for (int64_t a : axes) {
      const int64_t k = a < 0 ? a + rank : a;
      if (k < 0 || k >= rank) fail(n.label(), ": axis ", a, " is out of range for rank ", rank);
      reduced[size_t(k)] = true;
    }
    memory::dims kept = xd, dropped;
    for (size_t i = 0; i < xd.size(); ++i) {
      if (reduced[i]) kept[i] = 1;
      else dropped.push_back(xd[i]);
    }
    const std::string& op = n.op_type;
    const dnnl::algorithm alg = op == "ReduceMean" ? dnnl::algorithm::reduction_mean : dnnl::algorithm::reduction_sum;
    dnnl::reduction::primitive_desc pd(
        {alg, slots_[x].md, memory::desc(kept, dt::f32, plain_tag(kept.size())), 0.f, 0.f}, engine_);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::reduction(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, dst}});
    if (n.attr_int("keepdims", 1) || dropped == kept) return define(n, dst);
    if (dropped.empty()) fail(n.label(), ": reduces to a scalar, which oneDNN memories do not hold");
    define(n, copy_through_view(dst, slots_[dst].md.reshape(dropped)));
  }

  void batchnorm(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                       dnnl::normalization_flags::use_shift;
    dnnl::batch_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, slots_[x].md, n.attr_float("epsilon", 1e-5f), flags}, engine_);
    const int dst = new_slot(pd.dst_desc());
    std::unordered_map<int, memory> consts = {{DNNL_ARG_SCALE, vector_memory(constant(n, 1))},
                                              {DNNL_ARG_SHIFT, vector_memory(constant(n, 2))},
                                              {DNNL_ARG_MEAN, vector_memory(constant(n, 3))},
                                              {DNNL_ARG_VARIANCE, vector_memory(constant(n, 4))}};
    add_step(dnnl::batch_normalization_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, dst}}, std::move(consts));
    define(n, dst);
  }

  void pool(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const memory::dims xd = slots_[x].md.dims();
    const bool global = n.op_type.rfind("Global", 0) == 0;
    const bool max = n.op_type.find("Max") != std::string::npos;
    memory::dims kernel = {xd[2], xd[3]}, stride = {1, 1}, pl = {0, 0}, pr = {0, 0}, out = {xd[0], xd[1], 1, 1};
    if (!global) {
      const auto k = n.attr_ints("kernel_shape");
      if (k.size() != 2) fail(n.label(), ": kernel_shape must have 2 values");
      const auto geo = ops::window::resolve(n, {xd[2], xd[3]}, k, n.attr_int("ceil_mode", 0) != 0);
      for (int i = 0; i < 2; ++i) {
        kernel[i] = k[i];
        stride[i] = geo.stride[i];
        pl[i] = geo.pad_begin[i];
        out[2 + i] = geo.out[i];
        pr[i] = (geo.out[i] - 1) * geo.stride[i] + k[i] - xd[2 + i] - geo.pad_begin[i];
      }
    }
    const auto alg = max ? dnnl::algorithm::pooling_max
                         : (n.attr_int("count_include_pad", 0) ? dnnl::algorithm::pooling_avg_include_padding
                                                               : dnnl::algorithm::pooling_avg_exclude_padding);
    dnnl::pooling_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, slots_[x].md,
                                              memory::desc(out, slots_[x].md.data_type(), tag::any), stride, kernel, pl, pr},
                                             engine_);
    const int src = as_layout(x, pd.src_desc());
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    define(n, dst);
  }

  void resize(const ir::Node& n) {
    const int x = slot_of(n.inputs[0]);
    const memory::dims xd = slots_[x].md.dims();
    const Tensor& scales = constant(n, 2);
    const std::vector<float> factors = {static_cast<float>(scales.get_double(2)), static_cast<float>(scales.get_double(3))};
    memory::dims out = {xd[0], xd[1], xd[2] * static_cast<int64_t>(factors[0]), xd[3] * static_cast<int64_t>(factors[1])};
    dnnl::resampling_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, dnnl::algorithm::resampling_nearest, factors, slots_[x].md,
         same_layout(slots_[x].md, out)},  // "any" picks plain, which then costs a reorder at the next concat
        engine_);
    const int dst = new_slot(pd.dst_desc());
    add_step(dnnl::resampling_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, dst}});
    define(n, dst);
  }

  void concat(const ir::Node& n) {
    std::vector<memory::desc> mds;
    std::unordered_map<int, int> args;
    const int rank = static_cast<int>(slots_[slot_of(n.inputs[0])].md.dims().size());
    int axis = static_cast<int>(n.attr_int("axis", 0));
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) fail(n.label(), ": axis ", n.attr_int("axis", 0), " is out of range for rank ", rank);
    // One layout for every input (that of the first): mixed layouts send oneDNN
    // 2.6 to a slow generic concat.
    const memory::desc first = slots_[slot_of(n.inputs[0])].md;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const int in = slot_of(n.inputs[i]);
      int s = in;
      if (rank == 4 && axis == 1) {
        const memory::desc target = same_layout(first, slots_[in].md.dims());
        s = target.data.format_kind == dnnl_format_kind_any ? in : as_layout(in, target);
      } else {
        s = plain(in);
      }
      mds.push_back(slots_[s].md);
      args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i)] = s;
    }
    // Channel concat of 4-d inputs in one layout whose channel offsets land on
    // block boundaries: one reorder per input into its slice of the output (a
    // sub-memory view). oneDNN 2.6's concat primitive took 13 ms for four
    // 24x160x160 blocked inputs on one thread (simple:any, ~1.5 GB/s); the
    // copies run at memory speed.
    if (rank == 4 && axis == 1) {
      const memory::desc& f = mds.front();
      const int64_t block = f.data.format_kind == dnnl_blocked && f.data.format_desc.blocking.inner_nblks == 1 &&
                                    f.data.format_desc.blocking.inner_idxs[0] == 1
                                ? f.data.format_desc.blocking.inner_blks[0]
                                : 1;
      const bool plain_or_blocked = f.data.format_desc.blocking.inner_nblks == 0 || block > 1;
      bool aligned = f.data.format_kind == dnnl_blocked && plain_or_blocked;
      int64_t channels = 0;
      for (const auto& md : mds) {
        aligned = aligned && md == same_layout(f, md.dims()) && md.dims()[1] % block == 0 && md.data.offset0 == 0;
        channels += md.dims()[1];
      }
      if (aligned) {
        memory::dims out = f.dims();
        out[1] = channels;
        const memory::desc whole = same_layout(f, out);
        const int dst = new_slot(whole);
        int64_t offset = 0;
        for (size_t i = 0; i < mds.size(); ++i) {
          const memory::desc part = whole.submemory_desc(mds[i].dims(), {0, offset, 0, 0});
          dnnl::reorder::primitive_desc pd(engine_, mds[i], engine_, part);
          const int step = add_step(dnnl::reorder(pd), {{DNNL_ARG_SRC, args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i)]},
                                                        {DNNL_ARG_DST, dst}});
          dst_views_.push_back({step, part});
          offset += mds[i].dims()[1];
        }
        define(n, dst);
        return;
      }
    }
    dnnl::concat::primitive_desc pd(axis, mds, engine_);
    const int dst = new_slot(pd.dst_desc());
    args[DNNL_ARG_DST] = dst;
    add_step(dnnl::concat(pd), args);
    define(n, dst);
  }

  // A copy of slot s with its dims padded with leading ones to `rank`.
  int with_rank(int s, size_t rank) {
    const int p = plain(s);
    memory::dims d = slots_[p].md.dims();
    if (d.size() == rank) return p;
    d.insert(d.begin(), rank - d.size(), 1);
    return copy_through_view(p, slots_[p].md.reshape(d));
  }

  void binary(const ir::Node& n) {
    const std::string& op = n.op_type;
    const size_t rank = std::max(n.inputs[0]->type.shape.rank(), n.inputs[1]->type.shape.rank());
    auto operand = [&](size_t i) -> std::pair<int, const Tensor*> {
      if (const Tensor* t = constant_of(g_, n.inputs[i])) return {-1, t};
      const int s = slot_of(n.inputs[i]);
      return {slots_[s].md.dims().size() == rank ? s : with_rank(s, rank), nullptr};
    };
    auto a = operand(0), b = operand(1);
    auto dims_of = [&](const std::pair<int, const Tensor*>& o) {
      if (o.second) {
        memory::dims d(rank - o.second->rank(), 1);
        for (int64_t v : o.second->dims()) d.push_back(v);
        return d;
      }
      return slots_[o.first].md.dims();
    };
    // src0 must have the output's shape: swap the operands of Add/Mul when the first one broadcasts.
    memory::dims out = dims_of(a);
    for (size_t i = 0; i < rank; ++i) out[i] = std::max(out[i], dims_of(b)[i]);
    if ((op == "Add" || op == "Mul") && (a.first < 0 || dims_of(a) != out)) std::swap(a, b);
    if (a.first < 0 || dims_of(a) != out) unsupported(n.label(), ": oneDNN backend cannot broadcast the first operand");
    const memory::dims bd = dims_of(b);
    const auto alg = op == "Add" ? dnnl::algorithm::binary_add : op == "Sub" ? dnnl::algorithm::binary_sub
                     : op == "Mul" ? dnnl::algorithm::binary_mul : dnnl::algorithm::binary_div;
    // The layouts: src0 as it comes, the second operand in src0's layout when
    // the shapes match, else the first candidate that gets a jit kernel (a
    // plain [1,C,1,1] beside a blocked src0 sends oneDNN to its reference
    // code). Where every candidate does — a per-channel Mul on an 8-blocked
    // tensor with AVX-512 (jit:uni wants 16-blocked or channels-last there):
    // the SE multiply of PP-OCRv4's detector took 35-57 ms on a 24x160x160
    // tensor, against 0.3 ms after a reorder — src0 is reordered to
    // channels-last or 16-blocked first.
    const memory::desc given = slots_[a.first].md;
    std::vector<memory::desc> src0_layouts = {given};
    if (rank == 4)
      for (tag t : {tag::acdb, tag::aBcd16b}) src0_layouts.push_back(memory::desc(given.dims(), dt::f32, t));
    dnnl::binary::primitive_desc pd;
    bool jit = false;
    memory::desc amd = given;
    for (const memory::desc& src0 : src0_layouts) {
      std::vector<memory::desc> candidates;
      if (bd == src0.dims()) candidates.push_back(src0);
      if (rank == 4)
        for (tag t : {tag::aBcd8b, tag::aBcd16b}) candidates.push_back(memory::desc(bd, dt::f32, t));
      candidates.push_back(memory::desc(bd, dt::f32, plain_tag(rank)));
      for (auto& md : candidates) {
        dnnl::binary::primitive_desc tried;
        try {
          tried = dnnl::binary::primitive_desc({alg, src0, md, memory::desc(src0.dims(), dt::f32, tag::any)}, engine_);
        } catch (const dnnl::error&) {
          continue;
        }
        jit = std::string(tried.impl_info_str()).find("ref") == std::string::npos;
        if (!pd || jit) pd = tried, amd = src0;  // the first that works, unless a jit one follows
        if (jit) break;
      }
      if (jit) break;
    }
    if (!pd) unsupported(n.label(), ": oneDNN has no binary primitive for these layouts");
    a.first = as_layout(a.first, amd);
    const memory::desc bmd = pd.src1_desc();
    const int dst = new_slot(pd.dst_desc());
    if (b.second) {
      const memory::desc user(bd, dt::f32, plain_tag(rank));
      add_step(dnnl::binary(pd), {{DNNL_ARG_SRC_0, a.first}, {DNNL_ARG_DST, dst}},
               {{DNNL_ARG_SRC_1, pack(*b.second, user, bmd)}});
    } else {
      add_step(dnnl::binary(pd), {{DNNL_ARG_SRC_0, a.first}, {DNNL_ARG_SRC_1, as_layout(b.first, bmd)}, {DNNL_ARG_DST, dst}});
    }
    define(n, dst);
  }

  // Offsets in one arena: first fit by size over the slots live at the same time.
  void allocate() {
    std::vector<int> order;
    for (size_t s = 0; s < slots_.size(); ++s)
      if (!slots_[s].external && slots_[s].def >= 0) order.push_back(static_cast<int>(s));
    std::vector<size_t> bytes(slots_.size());  // asked of oneDNN once per slot, not per comparison
    for (int s : order) bytes[size_t(s)] = (slots_[s].md.get_size() + 63) / 64 * 64;
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return bytes[size_t(x)] > bytes[size_t(y)]; });
    // The placed slots whose lifetimes [def, last] meet a slot's: found in
    // time proportional to their number (a scan of every placed slot made a
    // 10^5-node chain's plan quadratic): those alive at its def (a segment
    // tree over steps, each placed lifetime stored in its canonical nodes)
    // and those defined after its def, up to its last (ordered by def).
    int steps = 1;
    for (int s : order) steps = std::max(steps, slots_[s].last + 1);
    int leaves = 1;
    while (leaves < steps) leaves *= 2;
    std::vector<std::vector<int>> alive(2 * size_t(leaves));
    std::multimap<int, int> by_def;
    auto store = [&](int s) {
      int lo = std::max(slots_[s].def, 0) + leaves, hi = std::max(slots_[s].last, slots_[s].def) + leaves + 1;
      for (; lo < hi; lo /= 2, hi /= 2) {
        if (lo & 1) alive[size_t(lo++)].push_back(s);
        if (hi & 1) alive[size_t(--hi)].push_back(s);
      }
      by_def.emplace(slots_[s].def, s);
    };
    size_t total = 0;
    for (int s : order) {
      Slot& slot = slots_[s];
      const size_t size = bytes[size_t(s)];
      std::vector<std::pair<size_t, size_t>> busy;
      auto add = [&](int p) { busy.push_back({slots_[p].offset, slots_[p].offset + bytes[size_t(p)]}); };
      for (int node = std::max(slot.def, 0) + leaves; node >= 1; node /= 2)
        for (int p : alive[size_t(node)]) add(p);
      for (auto it = by_def.upper_bound(slot.def); it != by_def.end() && it->first <= slot.last; ++it) add(it->second);
      std::sort(busy.begin(), busy.end());
      size_t offset = 0;
      for (auto [b, e] : busy) {
        if (offset + size <= b) break;
        offset = std::max(offset, e);
      }
      slot.offset = offset;
      total = std::max(total, offset + size);
      store(s);
    }
    arena_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, std::max<size_t>(total, 64))));
    arena_bytes_ = total;
    // Placed slots of one layout at one offset share a memory object (their
    // handles never change); partition inputs, outputs and constants get their
    // own, as their handles are set per run.
    std::map<std::pair<const memory::desc*, size_t>, memory> placed;
    for (auto& slot : slots_) {
      if (slot.external) {
        slot.mem = memory(slot.md, engine_, DNNL_MEMORY_NONE);
      } else if (slot.def < 0) {
        slot.mem = memory(slot.md, engine_, arena_.get() + slot.offset);
      } else {
        auto [it, fresh] = placed.try_emplace({&slot.md, slot.offset});
        if (fresh) it->second = memory(slot.md, engine_, arena_.get() + slot.offset);
        slot.mem = it->second;
      }
    }
    for (auto& step : steps_) {
      std::unordered_map<int, memory> args = step.constants;
      for (auto [arg, s] : step.slots) args[arg] = slots_[s].mem;
      args_.push_back(std::move(args));
    }
    for (auto& [index, view] : views_) {
      const int sid = steps_[index].slots.at(DNNL_ARG_SRC);
      const Slot& src = slots_[sid];
      if (src.external) view_inputs_.push_back({index, sid});
      args_[index][DNNL_ARG_SRC] = memory(view, engine_, src.external ? DNNL_MEMORY_NONE : arena_.get() + src.offset);
    }
    for (auto& [index, view] : dst_views_) {
      const int sid = steps_[index].slots.at(DNNL_ARG_DST);
      const Slot& dst = slots_[sid];
      if (dst.external) view_outputs_.push_back({index, sid});
      args_[index][DNNL_ARG_DST] = memory(view, engine_, dst.external ? DNNL_MEMORY_NONE : arena_.get() + dst.offset);
    }
  }

  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };

  const ir::Model& model_;
  const ir::Graph& g_;
  BackendOptions options_;
  numerics::Precision default_precision_;  // of the nodes without their own annotation
  // A matrix node's math: its own precision annotation (read over the default), else the default.
  // Sparsity is a property of the weights, which run as stored (duet sparsify stores them pruned).
  bool bf16_math(const ir::Node& n) const {
    auto it = n.annotations.find(numerics::kPrecisionAnnotation);
    if (it == n.annotations.end()) return is_bf16_math(default_precision_);
    numerics::Precision p = numerics::resolve_precision(it->second, default_precision_);
    p.sparsity = numerics::Sparsity::Dense;
    return is_bf16_math(p);
  }
  dnnl::engine& engine_;
  dnnl::stream stream_;
  std::deque<memory::desc> descs_;  // interned descriptors (deque: references stay valid)
  std::unordered_multimap<size_t, const memory::desc*> desc_index_;
  std::deque<Slot> slots_;  // deque: references stay valid as slots are added
  std::vector<Step> steps_;
  std::vector<std::unordered_map<int, memory>> args_;
  std::map<EltwiseKey, EltwisePrimitive> eltwise_cache_;
  std::unordered_map<std::string, int> value_;
  std::vector<int> input_slots_, output_slots_;
  std::vector<Dims> output_dims_;
  std::vector<DType> output_types_;
  std::vector<Tensor> keep_;  // constants whose bytes oneDNN memories point at
  const ir::Node* current_ = nullptr;  // the node being lowered
  std::vector<std::pair<int, memory::desc>> views_;  // steps that read their source through a permuted view
  std::vector<std::pair<int, int>> view_inputs_;     // (step, external slot) views of partition inputs
  std::vector<std::pair<int, memory::desc>> dst_views_;  // steps that write a slice of their destination (concat)
  std::vector<std::pair<int, int>> view_outputs_;        // (step, external slot) slices of partition outputs
  std::vector<std::pair<int, void*>> constant_slots_;  // constants read as slots (runtime-weight convs' bias)
  std::unique_ptr<uint8_t, Free> arena_;
  size_t arena_bytes_ = 0;
};

class DnnlPartition final : public CompiledPartition {
 public:
  DnnlPartition(const ir::Model& model, PartitionSpec spec, BackendOptions options)
      : model_(model), spec_(std::move(spec)), options_(options), engine_(dnnl::engine::kind::cpu, 0) {}

  std::vector<Tensor> run(const std::vector<const Tensor*>& inputs, Allocator& alloc, NodeTimes* times) override {
    std::vector<Dims> key;
    for (auto* t : inputs) key.push_back(t->dims());
    // Before the plan: oneDNN primitives fix their thread split when they are
    // created (from omp_get_max_threads), so a plan built before this call ran
    // on every core whatever --threads said (measured: rec "1 thread" 20.6 ms,
    // pinned to one core 28.6 ms).
    omp_set_num_threads(options_.threads);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      try {
        it = plans_.emplace(key, std::make_unique<Plan>(model_, spec_, inputs, options_, engine_)).first;
      } catch (const dnnl::error& e) {
        fail("oneDNN backend: building the partition that starts at ", spec_.nodes.front()->label(),
             " failed: ", e.what());
      }
    }
    return it->second->run(inputs, alloc, times);
  }

 private:
  const ir::Model& model_;
  PartitionSpec spec_;
  BackendOptions options_;
  dnnl::engine engine_;
  std::map<std::vector<Dims>, std::unique_ptr<Plan>> plans_;
};

class DnnlBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Claim claim(const ir::Model& model, const ir::Node& node) const override { return claim_node(model, node); }
  std::unique_ptr<CompiledPartition> compile(const ir::Model& model, const PartitionSpec& spec,
                                             const BackendOptions& options) override {
    return std::make_unique<DnnlPartition>(model, spec, options);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<DnnlBackend>(); }

}  // namespace duet::runtime
