// Shape and data-movement ops: Reshape, Transpose, Concat, Split, Slice, Pad,
// Tile, Expand, DepthToSpace, ... Pure reshapes alias their input's storage.
// Copies go through mapped_copy, which works on raw bytes (any dtype, strings
// and sub-byte types through their own paths) and memcpys contiguous runs.
#include <cmath>
#include <cstring>
#include <numeric>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// ---------------------------------------------------------------------------
// Generic copy: element at multi-index i of a box of shape `dims` moves from
// src offset sum_d src_tab[d][i_d] to dst offset sum_d dst_tab[d][i_d]
// (offsets in elements). Transpose, Slice, Expand, Tile, Pad, Concat and Split
// are all such tables.
using OffsetTable = std::vector<std::vector<int64_t>>;

// Table of a contiguous layout: dim d index i -> i * stride_d.
OffsetTable contiguous_table(const Dims& dims) {
  const auto strides = strides_of(dims);
  OffsetTable t(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    t[d].resize(dims[d]);
    for (int64_t i = 0; i < dims[d]; ++i) t[d][i] = i * strides[d];
  }
  return t;
}

void mapped_copy(const KernelContext& ctx, const Tensor& src, Tensor& dst, const Dims& dims,
                 const OffsetTable& src_tab, const OffsetTable& dst_tab) {
  const int64_t total = numel(dims);
  if (total == 0) return;
  const size_t rank = dims.size();
  const DType dt = src.dtype();
  const bool strings = dt == DType::String;
  const bool subbyte = dtype_is_subbyte(dt);
  const size_t es = strings || subbyte ? 0 : static_cast<size_t>(dtype_bits(dt) / 8);

  auto copy_run = [&](int64_t so, int64_t dof, int64_t len) {
    if (strings) {
      const auto& s = src.strings();
      auto& d = dst.strings();
      for (int64_t k = 0; k < len; ++k) d[dof + k] = s[so + k];
    } else if (subbyte) {
      for (int64_t k = 0; k < len; ++k) subbyte_set(dst, dof + k, subbyte_get(src, so + k));
    } else {
      std::memcpy(static_cast<uint8_t*>(dst.raw()) + dof * es,
                  static_cast<const uint8_t*>(src.raw()) + so * es, len * es);
    }
  };
  if (rank == 0) {
    copy_run(0, 0, 1);
    return;
  }
  // Runs of the innermost dimension that are contiguous in both src and dst.
  struct Run { int64_t begin, len; };
  std::vector<Run> runs;
  const auto& sl = src_tab[rank - 1];
  const auto& dl = dst_tab[rank - 1];
  const int64_t inner = dims[rank - 1];
  for (int64_t j = 0; j < inner;) {
    int64_t k = j + 1;
    while (k < inner && sl[k] == sl[k - 1] + 1 && dl[k] == dl[k - 1] + 1) ++k;
    runs.push_back({j, k - j});
    j = k;
  }
  // When the whole innermost dimension is one run, fold outer dimensions whose
  // steps equal the block size on both sides into it: one memcpy per block.
  size_t fold = rank - 1;  // dims[fold..] form the inner block
  int64_t block = inner, src_base = 0, dst_base = 0;
  if (runs.size() == 1) {
    while (fold > 0) {
      const auto& s = src_tab[fold - 1];
      const auto& d = dst_tab[fold - 1];
      bool affine = true;
      for (int64_t i = 1; i < dims[fold - 1] && affine; ++i)
        affine = s[i] - s[i - 1] == block && d[i] - d[i - 1] == block;
      if (!affine) break;
      --fold;
      block *= dims[fold];
      src_base += s[0];
      dst_base += d[0];
    }
    if (fold < rank - 1) runs = {{0, block}};
  }
  const int64_t rows = total / block;
  auto do_rows = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(rank, 0);
    int64_t r = begin;
    for (int64_t d = static_cast<int64_t>(fold) - 1; d >= 0; --d) {
      idx[d] = r % dims[d];
      r /= dims[d];
    }
    for (int64_t row = begin; row < end; ++row) {
      int64_t so = src_base, dof = dst_base;
      for (size_t d = 0; d < fold; ++d) {
        so += src_tab[d][idx[d]];
        dof += dst_tab[d][idx[d]];
      }
      for (const Run& run : runs) copy_run(so + sl[run.begin], dof + dl[run.begin], run.len);
      for (int64_t d = static_cast<int64_t>(fold) - 1; d >= 0; --d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  };
  // Sub-byte writes share bytes between neighbours: keep them on one thread.
  if (subbyte) do_rows(0, rows);
  else ctx.parallel_for(rows, do_rows);
}

Tensor& allocate_like(KernelContext& ctx, size_t i, DType dt, const Dims& dims) {
  return ctx.allocate_output(i, dt, dims);
}

// Transposes `in` viewed with dims `in_dims` by perm into a new tensor.
Tensor transpose_into(KernelContext& ctx, size_t out_index, const Tensor& in, const Dims& in_dims,
                      const std::vector<int64_t>& perm) {
  const auto in_strides = strides_of(in_dims);
  Dims out_dims(perm.size());
  OffsetTable src(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) {
    out_dims[d] = in_dims[perm[d]];
    src[d].resize(out_dims[d]);
    for (int64_t i = 0; i < out_dims[d]; ++i) src[d][i] = i * in_strides[perm[d]];
  }
  Tensor& out = allocate_like(ctx, out_index, in.dtype(), out_dims);
  mapped_copy(ctx, in, out, out_dims, src, contiguous_table(out_dims));
  return out;
}

Cost move_cost(const CostContext& c) {
  Cost k = default_cost(c);
  k.flops = 0;
  return k;
}

std::vector<ir::ValueType> one(DType dt, Shape s) { return {tensor_type(dt, std::move(s))}; }

Shape unknown_shape_of_rank(InferContext& ctx, size_t rank) {
  std::vector<Dim> d;
  for (size_t i = 0; i < rank; ++i) d.push_back(ctx.fresh_dim());
  return Shape(d);
}

// Reads an integer list from an input when present (opset >= since) or an attribute.
std::optional<std::vector<int64_t>> ints_from(const KernelContext& ctx, int64_t since, size_t input,
                                              const char* attr) {
  if (ctx.opset >= since) {
    if (ctx.has_input(input)) return ctx.input(input).to_int_vector();
    return std::nullopt;
  }
  if (ctx.node.has_attr(attr)) return ctx.node.attr_ints(attr);
  return std::nullopt;
}

// Inference variant: input value when constant, attribute otherwise. Sets
// known=false when the list exists but its value is unknown.
std::optional<std::vector<int64_t>> ints_from_infer(InferContext& ctx, int64_t since, size_t input,
                                                    const char* attr, bool& known) {
  known = true;
  if (ctx.opset >= since) {
    if (!ctx.has_input(input)) return std::nullopt;
    if (const Tensor* v = ctx.value(input)) return v->to_int_vector();
    known = false;
    return std::nullopt;
  }
  if (ctx.node.has_attr(attr)) return ctx.node.attr_ints(attr);
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Identity

void identity_kernel(KernelContext& ctx) { ctx.set_output(0, ctx.input(0)); }

// ---------------------------------------------------------------------------
// Reshape

Dims reshape_dims(const Dims& in, const std::vector<int64_t>& shape, bool allow_zero, const ir::Node& node) {
  Dims out(shape.size());
  int64_t infer_at = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t s = shape[i];
    if (s == 0 && !allow_zero) {
      DUET_CHECK(i < in.size(), node.label(), ": shape entry 0 at ", i, " has no input dimension to copy");
      s = in[i];
    }
    if (s == -1) {
      DUET_CHECK(infer_at < 0, node.label(), ": more than one -1 in the shape");
      infer_at = static_cast<int64_t>(i);
      out[i] = -1;
      continue;
    }
    DUET_CHECK(s >= 0, node.label(), ": invalid shape entry ", s);
    out[i] = s;
    DUET_CHECK(!__builtin_mul_overflow(known, s, &known), node.label(), ": shape ", dims_str(shape),
               " has more elements than a 64-bit count holds");
  }
  const int64_t n = numel(in);
  if (infer_at >= 0) {
    DUET_CHECK(known != 0 && n % known == 0, node.label(), ": cannot reshape ", dims_str(in), " with a -1 entry");
    out[infer_at] = n / known;
  }
  DUET_CHECK(numel(out) == n, node.label(), ": cannot reshape ", dims_str(in), " to ", dims_str(out));
  return out;
}

void reshape_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  std::vector<int64_t> shape =
      ctx.opset >= 5 ? ctx.input(1).to_int_vector() : ctx.node.attr_ints("shape");
  const bool allow_zero = ctx.node.attr_int("allowzero", 0) != 0;
  ctx.set_output(0, in.reshaped(reshape_dims(in.dims(), shape, allow_zero, ctx.node)));
}

std::vector<ir::ValueType> reshape_infer(InferContext& ctx) {
  const DType dt = ctx.inputs[0].dtype;
  std::optional<std::vector<int64_t>> shape;
  if (ctx.opset < 5) shape = ctx.node.attr_ints("shape");
  else if (const Tensor* v = ctx.value(1)) shape = v->to_int_vector();
  if (!shape) {
    if (ctx.inputs.size() > 1 && ctx.inputs[1].shape.rank() == 1 && ctx.inputs[1].shape.dims[0].known())
      return one(dt, unknown_shape_of_rank(ctx, ctx.inputs[1].shape.dims[0].value));
    return one(dt, Shape::unknown_rank());
  }
  const bool allow_zero = ctx.node.attr_int("allowzero", 0) != 0;
  const Shape& in = ctx.inputs[0].shape;
  if (in.rank_known && in.fully_known()) return one(dt, Shape::from(reshape_dims(in.concrete(), *shape, allow_zero, ctx.node)));
  std::vector<Dim> out;
  for (size_t i = 0; i < shape->size(); ++i) {
    int64_t s = (*shape)[i];
    if (s == 0 && !allow_zero) out.push_back(in.rank_known && i < in.rank() ? in.dims[i] : ctx.fresh_dim());
    else if (s < 0) out.push_back(ctx.fresh_dim());
    else out.push_back(Dim(s));
  }
  return one(dt, Shape(out));
}

// ---------------------------------------------------------------------------
// Transpose

std::vector<int64_t> transpose_perm(const ir::Node& node, size_t rank) {
  std::vector<int64_t> perm = node.attr_ints("perm");
  if (perm.empty()) {
    perm.resize(rank);
    for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
  }
  DUET_CHECK(perm.size() == rank, node.label(), ": perm has ", perm.size(), " entries for rank ", rank);
  std::vector<bool> seen(rank, false);
  for (auto& p : perm) {
    p = normalize_axis(p, static_cast<int64_t>(rank), node);
    DUET_CHECK(!seen[p], node.label(), ": perm repeats axis ", p);
    seen[p] = true;
  }
  return perm;
}

void transpose_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  transpose_into(ctx, 0, in, in.dims(), transpose_perm(ctx.node, in.rank()));
}

std::vector<ir::ValueType> transpose_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  auto perm = transpose_perm(ctx.node, in.shape.rank());
  std::vector<Dim> out;
  for (auto p : perm) out.push_back(in.shape.dims[p]);
  return one(in.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// Concat

// Concat-1 defaulted axis to 1; later versions require it.
int64_t concat_axis(const ir::Node& node, int64_t opset) {
  DUET_CHECK(opset < 4 || node.has_attr("axis"), node.label(), ": axis attribute is required");
  return node.attr_int("axis", 1);
}

void concat_kernel(KernelContext& ctx) {
  const Tensor& first = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(first.rank());
  DUET_CHECK(rank > 0, ctx.node.label(), ": cannot concatenate scalars");
  const int64_t axis = normalize_axis(concat_axis(ctx.node, ctx.opset), rank, ctx.node);
  Dims out_dims = first.dims();
  out_dims[axis] = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    DUET_CHECK(t.rank() == first.rank() && t.dtype() == first.dtype(), ctx.node.label(),
               ": input ", i, " (", t.describe(), ") does not match input 0 (", first.describe(), ")");
    for (int64_t d = 0; d < rank; ++d)
      DUET_CHECK(d == axis || t.dims()[d] == first.dims()[d], ctx.node.label(), ": input ", i, " shape ",
                 dims_str(t.dims()), " does not match ", dims_str(first.dims()), " off the axis");
    out_dims[axis] += t.dims()[axis];
  }
  Tensor& out = ctx.allocate_output(0, first.dtype(), out_dims);
  const OffsetTable out_tab = contiguous_table(out_dims);
  int64_t at = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    OffsetTable dst(rank);
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t off = d == axis ? at : 0;
      dst[d].assign(out_tab[d].begin() + off, out_tab[d].begin() + off + t.dims()[d]);
    }
    mapped_copy(ctx, t, out, t.dims(), contiguous_table(t.dims()), dst);
    at += t.dims()[axis];
  }
}

std::vector<ir::ValueType> concat_infer(InferContext& ctx) {
  const DType dt = ctx.inputs[0].dtype;
  size_t rank = 0;
  bool rank_known = false;
  for (auto& t : ctx.inputs)
    if (t.shape.rank_known) { rank = t.shape.rank(); rank_known = true; }
  if (!rank_known) return one(dt, Shape::unknown_rank());
  const int64_t axis = normalize_axis(concat_axis(ctx.node, ctx.opset), static_cast<int64_t>(rank), ctx.node);
  std::vector<Dim> out(rank, Dim());
  bool first = true;
  int64_t sum = 0;
  bool sum_known = true;
  for (auto& t : ctx.inputs) {
    if (!t.shape.rank_known) { sum_known = false; continue; }
    DUET_CHECK(t.shape.rank() == rank, ctx.node.label(), ": inputs of rank ", rank, " and ", t.shape.rank());
    for (size_t d = 0; d < rank; ++d) {
      if (static_cast<int64_t>(d) == axis) continue;
      if (first || (!out[d].known() && t.shape.dims[d].known())) out[d] = t.shape.dims[d];
    }
    first = false;
    if (t.shape.dims[axis].known()) sum += t.shape.dims[axis].value;
    else sum_known = false;
  }
  out[axis] = sum_known ? Dim(sum) : ctx.fresh_dim();
  return one(dt, Shape(out));
}

// ---------------------------------------------------------------------------
// Split

std::vector<int64_t> split_sizes(const ir::Node& node, int64_t opset, int64_t dim, size_t outputs,
                                 std::optional<std::vector<int64_t>> split) {
  if (split && !split->empty()) {
    DUET_CHECK(split->size() == outputs, node.label(), ": split has ", split->size(), " entries for ",
               outputs, " outputs");
    int64_t sum = 0;
    for (auto s : *split) {
      DUET_CHECK(s >= 0, node.label(), ": negative split size");
      sum += s;
    }
    DUET_CHECK(sum == dim, node.label(), ": split sizes sum to ", sum, ", axis has ", dim);
    return *split;
  }
  int64_t n = static_cast<int64_t>(outputs);
  if (opset >= 18 && node.has_attr("num_outputs")) n = node.attr_int("num_outputs", n);
  DUET_CHECK(n > 0, node.label(), ": no outputs to split into");
  std::vector<int64_t> sizes;
  if (dim % n == 0) {
    sizes.assign(n, dim / n);
  } else {
    DUET_CHECK(opset >= 18, node.label(), ": axis of size ", dim, " does not split evenly into ", n);
    const int64_t chunk = (dim + n - 1) / n;
    for (int64_t i = 0; i < n; ++i) sizes.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
  }
  return sizes;
}

void split_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(in.rank());
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  std::optional<std::vector<int64_t>> split;
  if (ctx.opset >= 13) { if (ctx.has_input(1)) split = ctx.input(1).to_int_vector(); }
  else if (ctx.node.has_attr("split")) split = ctx.node.attr_ints("split");
  else if (ctx.opset < 2 && ctx.has_input(1)) split = ctx.input(1).to_int_vector();
  auto sizes = split_sizes(ctx.node, ctx.opset, in.dims()[axis], ctx.num_outputs(), split);
  DUET_CHECK(sizes.size() == ctx.num_outputs(), ctx.node.label(), ": ", sizes.size(), " splits for ",
             ctx.num_outputs(), " outputs");
  const OffsetTable in_tab = contiguous_table(in.dims());
  int64_t at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Dims od = in.dims();
    od[axis] = sizes[i];
    Tensor& out = ctx.allocate_output(i, in.dtype(), od);
    OffsetTable src(rank);
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t off = d == axis ? at : 0;
      src[d].assign(in_tab[d].begin() + off, in_tab[d].begin() + off + od[d]);
    }
    mapped_copy(ctx, in, out, od, src, contiguous_table(od));
    at += sizes[i];
  }
}

std::vector<ir::ValueType> split_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  std::vector<ir::ValueType> out(ctx.num_outputs, tensor_type(in.dtype, Shape::unknown_rank()));
  if (!in.shape.rank_known) return out;
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), in.shape.rank(), ctx.node);
  bool known = true;
  auto split = ints_from_infer(ctx, 13, 1, "split", known);
  const Dim& ad = in.shape.dims[axis];
  for (size_t i = 0; i < ctx.num_outputs; ++i) {
    Shape s = in.shape;
    s.dims[axis] = ctx.fresh_dim();
    out[i].shape = s;
  }
  if (!known || !ad.known()) return out;
  try {
    auto sizes = split_sizes(ctx.node, ctx.opset, ad.value, ctx.num_outputs, split);
    for (size_t i = 0; i < sizes.size() && i < out.size(); ++i) out[i].shape.dims[axis] = Dim(sizes[i]);
  } catch (const Error&) {
  }
  return out;
}

// ---------------------------------------------------------------------------
// Slice

struct SliceAxis { int64_t start, step, count; };

// Per-axis start/step/count for a Slice with numpy clamping rules.
std::vector<SliceAxis> slice_plan(const ir::Node& node, const Dims& dims, const std::vector<int64_t>& starts,
                                  const std::vector<int64_t>& ends, std::optional<std::vector<int64_t>> axes,
                                  std::optional<std::vector<int64_t>> steps) {
  const int64_t rank = static_cast<int64_t>(dims.size());
  std::vector<SliceAxis> plan(rank);
  for (int64_t d = 0; d < rank; ++d) plan[d] = {0, 1, dims[d]};
  DUET_CHECK(starts.size() == ends.size(), node.label(), ": starts and ends differ in length");
  if (!axes) {
    axes = std::vector<int64_t>(starts.size());
    std::iota(axes->begin(), axes->end(), 0);
  }
  DUET_CHECK(axes->size() == starts.size(), node.label(), ": axes and starts differ in length");
  if (steps) DUET_CHECK(steps->size() == starts.size(), node.label(), ": steps and starts differ in length");
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t a = normalize_axis((*axes)[i], rank, node);
    DUET_CHECK(!seen[a], node.label(), ": axis ", a, " repeats");
    seen[a] = true;
    const int64_t dim = dims[a];
    const int64_t step = steps ? (*steps)[i] : 1;
    DUET_CHECK(step != 0, node.label(), ": step 0");
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
    } else {
      s = std::clamp<int64_t>(s, 0, std::max<int64_t>(dim - 1, 0));
      e = std::clamp<int64_t>(e, -1, dim - 1);
    }
    int64_t count = 0;
    // Written so that extreme steps (INT64_MAX/MIN) cannot overflow.
    if (step > 0 && e > s) count = 1 + (e - s - 1) / step;
    if (step < 0 && s > e) count = 1 + (s - e - 1) / (step == INT64_MIN ? INT64_MAX : -step);
    if (dim == 0) count = 0;
    plan[a] = {s, step, count};
  }
  return plan;
}

struct SliceArgs {
  std::vector<int64_t> starts, ends;
  std::optional<std::vector<int64_t>> axes, steps;
};

void slice_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  SliceArgs a;
  if (ctx.opset < 10) {
    a.starts = ctx.node.attr_ints("starts");
    a.ends = ctx.node.attr_ints("ends");
    if (ctx.node.has_attr("axes")) a.axes = ctx.node.attr_ints("axes");
  } else {
    a.starts = ctx.input(1).to_int_vector();
    a.ends = ctx.input(2).to_int_vector();
    if (ctx.has_input(3)) a.axes = ctx.input(3).to_int_vector();
    if (ctx.has_input(4)) a.steps = ctx.input(4).to_int_vector();
  }
  auto plan = slice_plan(ctx.node, in.dims(), a.starts, a.ends, a.axes, a.steps);
  const auto strides = strides_of(in.dims());
  Dims od(plan.size());
  OffsetTable src(plan.size());
  for (size_t d = 0; d < plan.size(); ++d) {
    od[d] = plan[d].count;
    src[d].resize(od[d]);
    for (int64_t i = 0; i < od[d]; ++i) src[d][i] = (plan[d].start + i * plan[d].step) * strides[d];
  }
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  mapped_copy(ctx, in, out, od, src, contiguous_table(od));
}

std::vector<ir::ValueType> slice_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  SliceArgs a;
  bool known = true;
  if (ctx.opset < 10) {
    a.starts = ctx.node.attr_ints("starts");
    a.ends = ctx.node.attr_ints("ends");
    if (ctx.node.has_attr("axes")) a.axes = ctx.node.attr_ints("axes");
  } else {
    const Tensor* s = ctx.value(1);
    const Tensor* e = ctx.value(2);
    if (!s || !e) known = false;
    else { a.starts = s->to_int_vector(); a.ends = e->to_int_vector(); }
    if (ctx.has_input(3)) { if (auto* v = ctx.value(3)) a.axes = v->to_int_vector(); else known = false; }
    if (ctx.has_input(4)) { if (auto* v = ctx.value(4)) a.steps = v->to_int_vector(); else known = false; }
  }
  std::vector<Dim> out;
  if (!known) {
    for (size_t d = 0; d < in.shape.rank(); ++d) out.push_back(ctx.fresh_dim());
    return one(in.dtype, Shape(out));
  }
  // Axes not sliced keep their (possibly symbolic) dims; sliced ones need a known size.
  const int64_t rank = static_cast<int64_t>(in.shape.rank());
  std::vector<int64_t> axes_v;
  if (a.axes) axes_v = *a.axes;
  else { axes_v.resize(a.starts.size()); std::iota(axes_v.begin(), axes_v.end(), 0); }
  std::vector<bool> sliced(rank, false);
  bool all_known = true;
  for (auto ax : axes_v) {
    const int64_t n = normalize_axis(ax, rank, ctx.node);
    sliced[n] = true;
    if (!in.shape.dims[n].known()) all_known = false;
  }
  Dims probe(rank, 1);
  for (int64_t d = 0; d < rank; ++d) if (sliced[d]) probe[d] = in.shape.dims[d].value;
  std::vector<SliceAxis> plan;
  if (all_known) plan = slice_plan(ctx.node, probe, a.starts, a.ends, a.axes, a.steps);
  for (int64_t d = 0; d < rank; ++d) {
    if (!sliced[d]) out.push_back(in.shape.dims[d]);
    else if (all_known) out.push_back(Dim(plan[d].count));
    else out.push_back(ctx.fresh_dim());
  }
  return one(in.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// Squeeze / Unsqueeze / Flatten

Dims squeeze_dims(const ir::Node& node, const Dims& in, const std::optional<std::vector<int64_t>>& axes) {
  const int64_t rank = static_cast<int64_t>(in.size());
  std::vector<bool> drop(rank, false);
  if (axes) {
    for (auto a : *axes) {
      const int64_t n = normalize_axis(a, rank, node);
      DUET_CHECK(in[n] == 1, node.label(), ": cannot squeeze axis ", a, " of size ", in[n]);
      drop[n] = true;
    }
  } else {
    for (int64_t d = 0; d < rank; ++d) drop[d] = in[d] == 1;
  }
  Dims out;
  for (int64_t d = 0; d < rank; ++d) if (!drop[d]) out.push_back(in[d]);
  return out;
}

void squeeze_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  auto axes = ints_from(ctx, 13, 1, "axes");
  ctx.set_output(0, in.reshaped(squeeze_dims(ctx.node, in.dims(), axes)));
}

std::vector<ir::ValueType> squeeze_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  bool known = true;
  auto axes = ints_from_infer(ctx, 13, 1, "axes", known);
  if (!known) return one(in.dtype, Shape::unknown_rank());
  const int64_t rank = static_cast<int64_t>(in.shape.rank());
  std::vector<bool> drop(rank, false);
  if (axes) {
    for (auto a : *axes) drop[normalize_axis(a, rank, ctx.node)] = true;
  } else {
    for (int64_t d = 0; d < rank; ++d) {
      if (!in.shape.dims[d].known()) return one(in.dtype, Shape::unknown_rank());
      drop[d] = in.shape.dims[d].value == 1;
    }
  }
  std::vector<Dim> out;
  for (int64_t d = 0; d < rank; ++d) if (!drop[d]) out.push_back(in.shape.dims[d]);
  return one(in.dtype, Shape(out));
}

// Output positions that hold the inserted 1s.
std::vector<bool> unsqueeze_mask(const ir::Node& node, size_t in_rank, const std::vector<int64_t>& axes) {
  const int64_t out_rank = static_cast<int64_t>(in_rank + axes.size());
  std::vector<bool> ones(out_rank, false);
  for (auto a : axes) {
    const int64_t n = normalize_axis(a, out_rank, node);
    DUET_CHECK(!ones[n], node.label(), ": axis ", a, " repeats");
    ones[n] = true;
  }
  return ones;
}

void unsqueeze_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  auto axes = ints_from(ctx, 13, 1, "axes");
  DUET_CHECK(axes.has_value(), ctx.node.label(), ": axes are required");
  auto mask = unsqueeze_mask(ctx.node, in.rank(), *axes);
  Dims out;
  size_t k = 0;
  for (bool m : mask) out.push_back(m ? 1 : in.dims()[k++]);
  ctx.set_output(0, in.reshaped(out));
}

std::vector<ir::ValueType> unsqueeze_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  bool known = true;
  auto axes = ints_from_infer(ctx, 13, 1, "axes", known);
  if (!in.shape.rank_known || !known || !axes) {
    if (in.shape.rank_known && ctx.opset >= 13 && ctx.inputs.size() > 1 && ctx.inputs[1].shape.rank() == 1 &&
        ctx.inputs[1].shape.dims[0].known())
      return one(in.dtype, unknown_shape_of_rank(ctx, in.shape.rank() + ctx.inputs[1].shape.dims[0].value));
    return one(in.dtype, Shape::unknown_rank());
  }
  auto mask = unsqueeze_mask(ctx.node, in.shape.rank(), *axes);
  std::vector<Dim> out;
  size_t k = 0;
  for (bool m : mask) out.push_back(m ? Dim(1) : in.shape.dims[k++]);
  return one(in.dtype, Shape(out));
}

int64_t flatten_axis(const ir::Node& node, int64_t rank) {
  int64_t axis = node.attr_int("axis", 1);
  if (axis < 0) axis += rank;
  DUET_CHECK(axis >= 0 && axis <= rank, node.label(), ": axis ", node.attr_int("axis", 1), " out of range for rank ", rank);
  return axis;
}

void flatten_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const int64_t axis = flatten_axis(ctx.node, in.rank());
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= in.dims()[d];
  const int64_t inner = outer == 0 ? [&] { int64_t p = 1; for (size_t d = axis; d < in.rank(); ++d) p *= in.dims()[d]; return p; }()
                                   : in.numel() / outer;
  ctx.set_output(0, in.reshaped({outer, inner}));
}

std::vector<ir::ValueType> flatten_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape({ctx.fresh_dim(), ctx.fresh_dim()}));
  const int64_t axis = flatten_axis(ctx.node, in.shape.rank());
  auto prod = [&](int64_t b, int64_t e) -> Dim {
    int64_t p = 1;
    for (int64_t d = b; d < e; ++d) {
      if (!in.shape.dims[d].known()) {
        if (e - b == 1) return in.shape.dims[d];
        return ctx.fresh_dim();
      }
      p *= in.shape.dims[d].value;
    }
    return Dim(p);
  };
  return one(in.dtype, Shape({prod(0, axis), prod(axis, in.shape.rank())}));
}

// ---------------------------------------------------------------------------
// Expand / Tile

void expand_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const Dims shape = ctx.input(1).to_int_vector();
  const Dims od = broadcast_dims({in.dims(), shape}, ctx.node);
  const auto bs = broadcast_strides(in.dims(), od);
  OffsetTable src(od.size());
  for (size_t d = 0; d < od.size(); ++d) {
    src[d].resize(od[d]);
    for (int64_t i = 0; i < od[d]; ++i) src[d][i] = i * bs[d];
  }
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  mapped_copy(ctx, in, out, od, src, contiguous_table(od));
}

std::vector<ir::ValueType> expand_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (const Tensor* v = ctx.value(1)) {
    Dims shape = v->to_int_vector();
    return one(in.dtype, broadcast_shapes({in.shape, Shape::from(shape)}, ctx.node));
  }
  if (in.shape.rank_known && ctx.inputs.size() > 1 && ctx.inputs[1].shape.rank() == 1 && ctx.inputs[1].shape.dims[0].known()) {
    const size_t r = std::max<size_t>(in.shape.rank(), ctx.inputs[1].shape.dims[0].value);
    return one(in.dtype, unknown_shape_of_rank(ctx, r));
  }
  return one(in.dtype, Shape::unknown_rank());
}

void tile_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const auto repeats = ctx.input(1).to_int_vector();
  DUET_CHECK(repeats.size() == in.rank(), ctx.node.label(), ": repeats has ", repeats.size(),
             " entries for rank ", in.rank());
  const auto strides = strides_of(in.dims());
  Dims od(in.rank());
  OffsetTable src(in.rank());
  for (size_t d = 0; d < in.rank(); ++d) {
    DUET_CHECK(repeats[d] >= 0, ctx.node.label(), ": negative repeat");
    od[d] = in.dims()[d] * repeats[d];
    src[d].resize(od[d]);
    for (int64_t i = 0; i < od[d]; ++i) src[d][i] = (i % in.dims()[d]) * strides[d];
  }
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  mapped_copy(ctx, in, out, od, src, contiguous_table(od));
}

std::vector<ir::ValueType> tile_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  const Tensor* v = ctx.value(1);
  if (!v) return one(in.dtype, unknown_shape_of_rank(ctx, in.shape.rank()));
  auto reps = v->to_int_vector();
  std::vector<Dim> out;
  for (size_t d = 0; d < in.shape.rank(); ++d) {
    const Dim& id = in.shape.dims[d];
    const int64_t r = d < reps.size() ? reps[d] : 1;
    if (id.known()) out.push_back(Dim(id.value * r));
    else out.push_back(r == 1 ? id : ctx.fresh_dim());
  }
  return one(in.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// Pad

// Pads per axis as (begin, end) pairs over all axes.
std::vector<int64_t> pad_amounts(const ir::Node& node, size_t rank, const std::vector<int64_t>& pads,
                                 const std::optional<std::vector<int64_t>>& axes) {
  std::vector<int64_t> full(2 * rank, 0);
  if (axes) {
    DUET_CHECK(pads.size() == 2 * axes->size(), node.label(), ": pads has ", pads.size(), " entries for ",
               axes->size(), " axes");
    for (size_t i = 0; i < axes->size(); ++i) {
      const int64_t a = normalize_axis((*axes)[i], rank, node);
      full[a] = pads[i];
      full[a + rank] = pads[i + axes->size()];
    }
  } else {
    DUET_CHECK(pads.size() == 2 * rank, node.label(), ": pads has ", pads.size(), " entries for rank ", rank);
    full = pads;
  }
  return full;
}

// Source index for output position i along one axis, or -1 for the constant.
int64_t pad_source(const std::string& mode, int64_t i, int64_t begin, int64_t n) {
  int64_t s = i - begin;
  if (s >= 0 && s < n) return s;
  if (mode == "constant") return -1;
  if (mode == "edge") return s < 0 ? 0 : n - 1;
  if (mode == "wrap") return ((s % n) + n) % n;
  // reflect: mirror without repeating the edge; period 2(n-1)
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = ((s % period) + period) % period;
  return m < n ? m : period - m;
}

void pad_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const size_t rank = in.rank();
  const std::string mode = ctx.node.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    unsupported("pad mode '", mode, "' is not supported");
  std::vector<int64_t> pads;
  std::optional<std::vector<int64_t>> axes;
  if (ctx.opset < 11) pads = ctx.node.attr_ints(ctx.opset < 2 ? "paddings" : "pads");
  else {
    pads = ctx.input(1).to_int_vector();
    if (ctx.has_input(3)) axes = ctx.input(3).to_int_vector();
  }
  auto full = pad_amounts(ctx.node, rank, pads, axes);
  Dims od(rank);
  for (size_t d = 0; d < rank; ++d) {
    od[d] = in.dims()[d] + full[d] + full[d + rank];
    DUET_CHECK(od[d] >= 0, ctx.node.label(), ": pads remove more than axis ", d, " holds");
    if (mode != "constant" && od[d] > 0)
      DUET_CHECK(in.dims()[d] > 0, ctx.node.label(), ": cannot ", mode, "-pad an empty axis ", d);
  }
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  if (numel(od) == 0) return;
  const auto strides = strides_of(in.dims());
  if (mode == "constant") {
    // Fill with the constant, then copy the interior box.
    if (in.dtype() == DType::String) {
      std::string v;
      if (ctx.has_input(2) && ctx.input(2).numel() > 0) v = ctx.input(2).strings()[0];
      for (auto& s : out.strings()) s = v;
    } else if (dtype_is_subbyte(in.dtype())) {
      int32_t v = ctx.has_input(2) && ctx.input(2).numel() > 0 ? subbyte_get(ctx.input(2), 0) : 0;
      for (int64_t i = 0; i < out.numel(); ++i) subbyte_set(out, i, v);
    } else {
      const size_t es = dtype_bits(in.dtype()) / 8;
      std::vector<uint8_t> value(es, 0);
      if (ctx.opset >= 11 && ctx.has_input(2) && ctx.input(2).numel() > 0) {
        DUET_CHECK(ctx.input(2).dtype() == in.dtype(), ctx.node.label(), ": constant_value type differs from data");
        std::memcpy(value.data(), ctx.input(2).raw(), es);
      } else if (ctx.opset < 11) {
        const double v = ctx.node.attr_float("value", 0.0f);
        dispatch_numeric(in.dtype(), [&](auto tag) {
          using T = typename decltype(tag)::type;
          T t = static_cast<T>(static_cast<float>(v));
          std::memcpy(value.data(), &t, es);
        });
      }
      uint8_t* p = static_cast<uint8_t*>(out.raw());
      bool zero = std::all_of(value.begin(), value.end(), [](uint8_t b) { return b == 0; });
      if (zero) std::memset(p, 0, out.nbytes());
      else for (int64_t i = 0; i < out.numel(); ++i) std::memcpy(p + i * es, value.data(), es);
    }
    Dims box(rank);
    OffsetTable src(rank), dst(rank);
    const auto ostr = strides_of(od);
    for (size_t d = 0; d < rank; ++d) {
      const int64_t lo = std::max<int64_t>(0, -full[d]);  // first input index kept
      const int64_t hi = std::min<int64_t>(in.dims()[d], in.dims()[d] + full[d + rank]);
      box[d] = std::max<int64_t>(0, hi - lo);
      for (int64_t i = 0; i < box[d]; ++i) {
        src[d].push_back((lo + i) * strides[d]);
        dst[d].push_back((lo + i + full[d]) * ostr[d]);
      }
    }
    mapped_copy(ctx, in, out, box, src, dst);
    return;
  }
  OffsetTable src(rank);
  for (size_t d = 0; d < rank; ++d) {
    src[d].resize(od[d]);
    for (int64_t i = 0; i < od[d]; ++i) src[d][i] = pad_source(mode, i, full[d], in.dims()[d]) * strides[d];
  }
  mapped_copy(ctx, in, out, od, src, contiguous_table(od));
}

std::vector<ir::ValueType> pad_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  const size_t rank = in.shape.rank();
  std::vector<int64_t> pads;
  std::optional<std::vector<int64_t>> axes;
  if (ctx.opset < 11) pads = ctx.node.attr_ints(ctx.opset < 2 ? "paddings" : "pads");
  else {
    const Tensor* p = ctx.value(1);
    if (!p) return one(in.dtype, unknown_shape_of_rank(ctx, rank));
    pads = p->to_int_vector();
    if (ctx.has_input(3)) {
      const Tensor* a = ctx.value(3);
      if (!a) return one(in.dtype, unknown_shape_of_rank(ctx, rank));
      axes = a->to_int_vector();
    }
  }
  auto full = pad_amounts(ctx.node, rank, pads, axes);
  std::vector<Dim> out;
  for (size_t d = 0; d < rank; ++d) {
    const Dim& id = in.shape.dims[d];
    const int64_t add = full[d] + full[d + rank];
    if (id.known()) out.push_back(Dim(id.value + add));
    else out.push_back(add == 0 ? id : ctx.fresh_dim());
  }
  return one(in.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// Shape / Size

std::pair<int64_t, int64_t> shape_range(const ir::Node& node, int64_t opset, int64_t rank) {
  if (opset < 15) return {0, rank};
  int64_t s = node.attr_int("start", 0), e = node.attr_int("end", rank);
  if (s < 0) s += rank;
  if (e < 0) e += rank;
  s = std::clamp<int64_t>(s, 0, rank);
  e = std::clamp<int64_t>(e, 0, rank);
  return {s, std::max(s, e)};
}

void shape_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  auto [s, e] = shape_range(ctx.node, ctx.opset, in.rank());
  Tensor& out = ctx.allocate_output(0, DType::Int64, {e - s});
  for (int64_t i = s; i < e; ++i) out.data<int64_t>()[i - s] = in.dims()[i];
}

std::vector<ir::ValueType> shape_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(DType::Int64, Shape({ctx.fresh_dim()}));
  auto [s, e] = shape_range(ctx.node, ctx.opset, in.shape.rank());
  return one(DType::Int64, Shape({Dim(e - s)}));
}

void size_kernel(KernelContext& ctx) {
  ctx.allocate_output(0, DType::Int64, {}).data<int64_t>()[0] = ctx.input(0).numel();
}

// ---------------------------------------------------------------------------
// Constant / ConstantOfShape

Tensor constant_value(const ir::Node& node) {
  if (auto* a = node.attr("value")) return a->t;
  if (auto* a = node.attr("value_float")) return Tensor::scalar<float>(a->f);
  if (auto* a = node.attr("value_floats")) return Tensor::from_vector<float>(a->floats, {static_cast<int64_t>(a->floats.size())});
  if (auto* a = node.attr("value_int")) return Tensor::scalar<int64_t>(a->i);
  if (auto* a = node.attr("value_ints")) return Tensor::from_vector<int64_t>(a->ints, {static_cast<int64_t>(a->ints.size())});
  if (auto* a = node.attr("value_string")) {
    Tensor t(DType::String, {});
    t.strings() = {a->s};
    return t;
  }
  if (auto* a = node.attr("value_strings")) {
    Tensor t(DType::String, {static_cast<int64_t>(a->strings.size())});
    t.strings() = a->strings;
    return t;
  }
  if (node.has_attr("sparse_value")) unsupported("sparse_value constants are not supported");
  fail(node.label(), ": no value attribute");
}

void constant_kernel(KernelContext& ctx) { ctx.set_output(0, constant_value(ctx.node)); }

std::vector<ir::ValueType> constant_infer(InferContext& ctx) {
  try {
    Tensor t = constant_value(ctx.node);
    return one(t.dtype(), Shape::from(t.dims()));
  } catch (const Error&) {
    return one(DType::Undefined, Shape::unknown_rank());
  }
}

Tensor constant_of_shape_fill(const ir::Node& node) {
  if (auto* a = node.attr("value")) {
    DUET_CHECK(a->t.numel() == 1, node.label(), ": value must hold one element");
    return a->t;
  }
  return Tensor::scalar<float>(0.0f);
}

void constant_of_shape_kernel(KernelContext& ctx) {
  const Dims dims = ctx.input(0).to_int_vector();
  for (auto d : dims) DUET_CHECK(d >= 0, ctx.node.label(), ": negative dimension ", d);
  const Tensor v = constant_of_shape_fill(ctx.node);
  Tensor& out = ctx.allocate_output(0, v.dtype(), dims);
  if (v.dtype() == DType::String) {
    for (auto& s : out.strings()) s = v.strings()[0];
    return;
  }
  if (dtype_is_subbyte(v.dtype())) {
    for (int64_t i = 0; i < out.numel(); ++i) subbyte_set(out, i, subbyte_get(v, 0));
    return;
  }
  const size_t es = dtype_bits(v.dtype()) / 8;
  uint8_t* p = static_cast<uint8_t*>(out.raw());
  for (int64_t i = 0; i < out.numel(); ++i) std::memcpy(p + i * es, v.raw(), es);
}

std::vector<ir::ValueType> constant_of_shape_infer(InferContext& ctx) {
  DType dt = DType::Float32;
  if (auto* a = ctx.node.attr("value")) dt = a->t.dtype();
  if (const Tensor* v = ctx.value(0)) return one(dt, Shape::from(v->to_int_vector()));
  if (ctx.inputs[0].shape.rank() == 1 && ctx.inputs[0].shape.dims[0].known())
    return one(dt, unknown_shape_of_rank(ctx, ctx.inputs[0].shape.dims[0].value));
  return one(dt, Shape::unknown_rank());
}

// ---------------------------------------------------------------------------
// Range

int64_t range_count(double start, double limit, double delta, const ir::Node& node) {
  DUET_CHECK(delta != 0, node.label(), ": delta is 0");
  const double n = std::ceil((limit - start) / delta);
  DUET_CHECK(std::isfinite(n) && n < 9.0e15, node.label(), ": range of ", n, " elements is not representable");
  return std::max<int64_t>(0, static_cast<int64_t>(n));
}

void range_kernel(KernelContext& ctx) {
  const Tensor& st = ctx.input(0);
  const DType dt = st.dtype();
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      const int64_t s = st.get_int(0), l = ctx.input(1).get_int(0), d = ctx.input(2).get_int(0);
      DUET_CHECK(d != 0, ctx.node.label(), ": delta is 0");
      int64_t n = 0;
      if (d > 0 && l > s) n = (l - s + d - 1) / d;
      if (d < 0 && l < s) n = (s - l + (-d) - 1) / (-d);
      Tensor& out = ctx.allocate_output(0, dt, {n});
      for (int64_t i = 0; i < n; ++i) out.data<T>()[i] = static_cast<T>(s + i * d);
    } else if constexpr (!std::is_same_v<T, bool>) {
      // float16/bfloat16/float8 compute in float, native floats in their own type.
      using C = std::conditional_t<std::is_floating_point_v<T>, T, float>;
      const C s = static_cast<C>(st.data<T>()[0]), l = static_cast<C>(ctx.input(1).data<T>()[0]),
              d = static_cast<C>(ctx.input(2).data<T>()[0]);
      const int64_t n = range_count(s, l, d, ctx.node);
      Tensor& out = ctx.allocate_output(0, dt, {n});
      // Accumulate as the spec's loop does (start, start+delta, ...).
      C v = s;
      for (int64_t i = 0; i < n; ++i) { out.data<T>()[i] = static_cast<T>(v); v += d; }
    } else {
      unsupported("Range on ", dtype_name(dt), " is not supported");
    }
  });
}

std::vector<ir::ValueType> range_infer(InferContext& ctx) {
  const DType dt = ctx.inputs[0].dtype;
  const Tensor *s = ctx.value(0), *l = ctx.value(1), *d = ctx.value(2);
  if (s && l && d) {
    try {
      if (dtype_is_float(dt))
        return one(dt, Shape({Dim(range_count(s->get_double(0), l->get_double(0), d->get_double(0), ctx.node))}));
      const int64_t a = s->get_int(0), b = l->get_int(0), c = d->get_int(0);
      int64_t n = 0;
      if (c > 0 && b > a) n = (b - a + c - 1) / c;
      if (c < 0 && b < a) n = (a - b + (-c) - 1) / (-c);
      return one(dt, Shape({Dim(n)}));
    } catch (const Error&) {
    }
  }
  return one(dt, Shape({ctx.fresh_dim()}));
}

// ---------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth: a reshape to 6-D, a transpose, a reshape.

void depth_to_space_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  DUET_CHECK(in.rank() == 4, ctx.node.label(), ": input must be 4-D, got ", in.describe());
  const int64_t b = ctx.node.attr_int("blocksize", 0);
  DUET_CHECK(b > 0, ctx.node.label(), ": blocksize must be positive");
  const int64_t N = in.dims()[0], C = in.dims()[1], H = in.dims()[2], W = in.dims()[3];
  DUET_CHECK(C % (b * b) == 0, ctx.node.label(), ": channels ", C, " not divisible by blocksize^2");
  const std::string mode = ctx.node.attr_string("mode", "DCR");
  const int64_t c = C / (b * b);
  Tensor t;
  if (mode == "DCR") t = transpose_into(ctx, 0, in, {N, b, b, c, H, W}, {0, 3, 4, 1, 5, 2});
  else if (mode == "CRD") t = transpose_into(ctx, 0, in, {N, c, b, b, H, W}, {0, 1, 4, 2, 5, 3});
  else fail(ctx.node.label(), ": unknown mode '", mode, "'");
  ctx.set_output(0, t.reshaped({N, c, H * b, W * b}));
}

std::vector<ir::ValueType> depth_space_infer(InferContext& ctx, bool to_space) {
  const auto& in = ctx.inputs[0];
  const int64_t b = ctx.node.attr_int("blocksize", 1);
  if (!in.shape.rank_known || in.shape.rank() != 4) return one(in.dtype, unknown_shape_of_rank(ctx, 4));
  auto scale = [&](const Dim& d, bool mul, int64_t f) -> Dim {
    if (!d.known()) return ctx.fresh_dim();
    return Dim(mul ? d.value * f : d.value / f);
  };
  const auto& d = in.shape.dims;
  if (to_space) return one(in.dtype, Shape({d[0], scale(d[1], false, b * b), scale(d[2], true, b), scale(d[3], true, b)}));
  return one(in.dtype, Shape({d[0], scale(d[1], true, b * b), scale(d[2], false, b), scale(d[3], false, b)}));
}

void space_to_depth_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  DUET_CHECK(in.rank() == 4, ctx.node.label(), ": input must be 4-D, got ", in.describe());
  const int64_t b = ctx.node.attr_int("blocksize", 0);
  DUET_CHECK(b > 0, ctx.node.label(), ": blocksize must be positive");
  const int64_t N = in.dims()[0], C = in.dims()[1], H = in.dims()[2], W = in.dims()[3];
  DUET_CHECK(H % b == 0 && W % b == 0, ctx.node.label(), ": spatial size not divisible by blocksize");
  Tensor t = transpose_into(ctx, 0, in, {N, C, H / b, b, W / b, b}, {0, 3, 5, 1, 2, 4});
  ctx.set_output(0, t.reshaped({N, C * b * b, H / b, W / b}));
}

// ---------------------------------------------------------------------------
// Trilu

void trilu_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  DUET_CHECK(in.rank() >= 2, ctx.node.label(), ": input must have rank >= 2");
  const int64_t k = ctx.has_input(1) ? ctx.input(1).get_int(0) : 0;
  const bool upper = ctx.node.attr_int("upper", 1) != 0;
  if (in.dtype() == DType::String || dtype_is_subbyte(in.dtype()))
    unsupported("Trilu on ", dtype_name(in.dtype()), " is not supported");
  Tensor out = in.clone();
  const size_t es = dtype_bits(in.dtype()) / 8;
  const int64_t R = in.dim(-2), Cc = in.dim(-1);
  const int64_t mats = R * Cc == 0 ? 0 : in.numel() / (R * Cc);
  uint8_t* p = static_cast<uint8_t*>(out.raw());
  for (int64_t m = 0; m < mats; ++m)
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < Cc; ++j) {
        const bool keep = upper ? (j - i >= k) : (j - i <= k);
        if (!keep) std::memset(p + ((m * R + i) * Cc + j) * es, 0, es);
      }
  ctx.set_output(0, out);
}

// ---------------------------------------------------------------------------
// OneHot

void onehot_kernel(KernelContext& ctx) {
  const Tensor& indices = ctx.input(0);
  const int64_t depth = static_cast<int64_t>(ctx.input(1).get_double(0));
  const Tensor& values = ctx.input(2);
  DUET_CHECK(values.numel() == 2, ctx.node.label(), ": values must hold [off, on]");
  DUET_CHECK(depth > 0, ctx.node.label(), ": depth must be positive");
  const int64_t rank = static_cast<int64_t>(indices.rank()) + 1;
  int64_t axis = ctx.node.attr_int("axis", -1);
  if (axis < 0) axis += rank;
  DUET_CHECK(axis >= 0 && axis < rank, ctx.node.label(), ": axis out of range");
  Dims od = indices.dims();
  od.insert(od.begin() + axis, depth);
  Tensor& out = ctx.allocate_output(0, values.dtype(), od);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= od[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= od[d];
  if (values.dtype() == DType::String) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < depth; ++k)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t idx = static_cast<int64_t>(indices.get_double(o * inner + i));
          if (idx < 0) idx += depth;
          out.strings()[(o * depth + k) * inner + i] = values.strings()[idx == k ? 1 : 0];
        }
    return;
  }
  const size_t es = dtype_bits(values.dtype()) / 8;
  const uint8_t* v = static_cast<const uint8_t*>(values.raw());
  uint8_t* p = static_cast<uint8_t*>(out.raw());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < depth; ++k)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t idx = static_cast<int64_t>(indices.get_double(o * inner + i));
        if (idx < 0) idx += depth;
        std::memcpy(p + ((o * depth + k) * inner + i) * es, v + (idx == k ? es : 0), es);
      }
}

std::vector<ir::ValueType> onehot_infer(InferContext& ctx) {
  const DType dt = ctx.inputs.size() > 2 ? ctx.inputs[2].dtype : DType::Undefined;
  const auto& ind = ctx.inputs[0];
  if (!ind.shape.rank_known) return one(dt, Shape::unknown_rank());
  const int64_t rank = static_cast<int64_t>(ind.shape.rank()) + 1;
  int64_t axis = ctx.node.attr_int("axis", -1);
  if (axis < 0) axis += rank;
  auto dims = ind.shape.dims;
  Dim depth = ctx.fresh_dim();
  if (const Tensor* v = ctx.value(1)) depth = Dim(static_cast<int64_t>(v->get_double(0)));
  if (axis >= 0 && axis < rank) dims.insert(dims.begin() + axis, depth);
  return one(dt, Shape(dims));
}

// ---------------------------------------------------------------------------
// EyeLike

void eyelike_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  DUET_CHECK(in.rank() == 2, ctx.node.label(), ": input must be 2-D");
  const int64_t code = ctx.node.attr_int("dtype", static_cast<int64_t>(in.dtype()));
  DUET_CHECK(dtype_is_valid(static_cast<int>(code)), ctx.node.label(), ": invalid dtype ", code);
  const DType dt = static_cast<DType>(code);
  const int64_t k = ctx.node.attr_int("k", 0);
  Tensor& out = ctx.allocate_output(0, dt, in.dims());
  std::memset(out.raw(), 0, out.nbytes());
  dispatch_numeric(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = out.data<T>();
    for (int64_t i = 0; i < in.dims()[0]; ++i) {
      const int64_t j = i + k;
      if (j >= 0 && j < in.dims()[1]) p[i * in.dims()[1] + j] = static_cast<T>(1);
    }
  });
}

std::vector<ir::ValueType> eyelike_infer(InferContext& ctx) {
  const DType dt = ctx.node.has_attr("dtype") ? static_cast<DType>(ctx.node.attr_int("dtype", 1)) : ctx.inputs[0].dtype;
  return one(dt, ctx.inputs[0].shape);
}

// ---------------------------------------------------------------------------
// CenterCropPad: crop or zero-pad each listed axis around its center.

void center_crop_pad_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const auto shape = ctx.input(1).to_int_vector();
  const int64_t rank = static_cast<int64_t>(in.rank());
  std::vector<int64_t> axes = ctx.node.attr_ints("axes");
  if (axes.empty()) { axes.resize(rank); std::iota(axes.begin(), axes.end(), 0); }
  DUET_CHECK(axes.size() == shape.size(), ctx.node.label(), ": shape has ", shape.size(), " entries for ", axes.size(), " axes");
  Dims od = in.dims();
  std::vector<int64_t> src_lo(rank, 0), dst_lo(rank, 0);
  Dims box = in.dims();
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = normalize_axis(axes[i], rank, ctx.node);
    const int64_t dim = in.dims()[a], target = shape[i];
    DUET_CHECK(target >= 0, ctx.node.label(), ": negative target size");
    od[a] = target;
    if (target < dim) { src_lo[a] = (dim - target) / 2; box[a] = target; }
    else { dst_lo[a] = (target - dim) / 2; box[a] = dim; }
  }
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  if (in.dtype() == DType::String) for (auto& s : out.strings()) s.clear();
  else std::memset(out.raw(), 0, out.nbytes());
  const auto is = strides_of(in.dims()), os = strides_of(od);
  OffsetTable src(rank), dst(rank);
  for (int64_t d = 0; d < rank; ++d)
    for (int64_t i = 0; i < box[d]; ++i) {
      src[d].push_back((src_lo[d] + i) * is[d]);
      dst[d].push_back((dst_lo[d] + i) * os[d]);
    }
  mapped_copy(ctx, in, out, box, src, dst);
}

std::vector<ir::ValueType> center_crop_pad_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  if (!in.shape.rank_known) return one(in.dtype, Shape::unknown_rank());
  const Tensor* v = ctx.value(1);
  const int64_t rank = static_cast<int64_t>(in.shape.rank());
  std::vector<int64_t> axes = ctx.node.attr_ints("axes");
  if (axes.empty()) { axes.resize(rank); std::iota(axes.begin(), axes.end(), 0); }
  auto dims = in.shape.dims;
  auto shape = v ? v->to_int_vector() : std::vector<int64_t>{};
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = normalize_axis(axes[i], rank, ctx.node);
    dims[a] = v && i < shape.size() ? Dim(shape[i]) : ctx.fresh_dim();
  }
  return one(in.dtype, Shape(dims));
}

// ---------------------------------------------------------------------------
// Col2Im: sums sliding-window columns back into an image (inverse of im2col).

void col2im_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const auto image = ctx.input(1).to_int_vector();
  const auto block = ctx.input(2).to_int_vector();
  const size_t nd = image.size();
  DUET_CHECK(block.size() == nd, ctx.node.label(), ": image_shape and block_shape differ in length");
  DUET_CHECK(in.rank() == 3, ctx.node.label(), ": input must be 3-D [N, C*prod(block), L]");
  auto dil = ctx.node.attr_ints("dilations", std::vector<int64_t>(nd, 1));
  auto strides = ctx.node.attr_ints("strides", std::vector<int64_t>(nd, 1));
  auto pads = ctx.node.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  DUET_CHECK(dil.size() == nd && strides.size() == nd && pads.size() == 2 * nd, ctx.node.label(), ": attribute lengths do not match the image rank");
  for (size_t d = 0; d < nd; ++d)
    DUET_CHECK(dil[d] > 0 && strides[d] > 0 && block[d] > 0 && image[d] >= 0, ctx.node.label(),
               ": dilations, strides and block_shape must be positive");
  int64_t kprod = 1;
  for (auto b : block) kprod *= b;
  const int64_t N = in.dims()[0], CK = in.dims()[1], L = in.dims()[2];
  DUET_CHECK(kprod > 0 && CK % kprod == 0, ctx.node.label(), ": channel dim not divisible by block size");
  const int64_t C = CK / kprod;
  std::vector<int64_t> outn(nd);
  int64_t Lexp = 1;
  for (size_t d = 0; d < nd; ++d) {
    outn[d] = (image[d] + pads[d] + pads[d + nd] - dil[d] * (block[d] - 1) - 1) / strides[d] + 1;
    Lexp *= outn[d];
  }
  DUET_CHECK(Lexp == L, ctx.node.label(), ": input has ", L, " blocks, expected ", Lexp);
  Dims od = {N, C};
  for (auto s : image) od.push_back(s);
  Tensor& out = ctx.allocate_output(0, in.dtype(), od);
  int64_t img = 1;
  for (auto s : image) img *= s;
  dispatch_float(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = in.data<T>();
    T* y = out.data<T>();
    ctx.parallel_for(N * C, [&](int64_t b0, int64_t b1) {
      std::vector<double> acc(img);
      std::vector<int64_t> kidx(nd), lidx(nd);
      for (int64_t nc = b0; nc < b1; ++nc) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = 0; k < kprod; ++k) {
          int64_t r = k;
          for (int64_t d = nd - 1; d >= 0; --d) { kidx[d] = r % block[d]; r /= block[d]; }
          for (int64_t l = 0; l < L; ++l) {
            int64_t q = l;
            for (int64_t d = nd - 1; d >= 0; --d) { lidx[d] = q % outn[d]; q /= outn[d]; }
            int64_t off = 0;
            bool inside = true;
            for (size_t d = 0; d < nd; ++d) {
              const int64_t p = lidx[d] * strides[d] - pads[d] + kidx[d] * dil[d];
              if (p < 0 || p >= image[d]) { inside = false; break; }
              off = off * image[d] + p;
            }
            if (inside) acc[off] += static_cast<double>(x[(nc * kprod + k) * L + l]);
          }
        }
        for (int64_t i = 0; i < img; ++i) y[nc * img + i] = static_cast<T>(acc[i]);
      }
    });
  });
}

std::vector<ir::ValueType> col2im_infer(InferContext& ctx) {
  const auto& in = ctx.inputs[0];
  const Tensor* image = ctx.value(1);
  const Tensor* block = ctx.value(2);
  if (!in.shape.rank_known || in.shape.rank() != 3 || !image) return one(in.dtype, Shape::unknown_rank());
  std::vector<Dim> out = {in.shape.dims[0], ctx.fresh_dim()};
  if (block && in.shape.dims[1].known()) {
    int64_t k = 1;
    for (auto b : block->to_int_vector()) k *= b;
    if (k > 0) out[1] = Dim(in.shape.dims[1].value / k);
  }
  for (auto s : image->to_int_vector()) out.push_back(Dim(s));
  return one(in.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// ReverseSequence

void reverse_sequence_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  const auto lens = ctx.input(1).to_int_vector();
  const int64_t rank = static_cast<int64_t>(in.rank());
  DUET_CHECK(rank >= 2, ctx.node.label(), ": input must have rank >= 2");
  const int64_t batch_axis = normalize_axis(ctx.node.attr_int("batch_axis", 1), rank, ctx.node);
  const int64_t time_axis = normalize_axis(ctx.node.attr_int("time_axis", 0), rank, ctx.node);
  DUET_CHECK(batch_axis != time_axis, ctx.node.label(), ": batch_axis equals time_axis");
  const int64_t B = in.dims()[batch_axis], T = in.dims()[time_axis];
  DUET_CHECK(static_cast<int64_t>(lens.size()) == B, ctx.node.label(), ": sequence_lens has ", lens.size(),
             " entries for batch ", B);
  Tensor& out = ctx.allocate_output(0, in.dtype(), in.dims());
  const auto strides = strides_of(in.dims());
  // One copy per batch entry: the batch axis has size 1 in the box.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = std::clamp<int64_t>(lens[b], 0, T);
    DUET_CHECK(lens[b] >= 0 && lens[b] <= T, ctx.node.label(), ": sequence length ", lens[b], " out of range");
    Dims box = in.dims();
    box[batch_axis] = 1;
    OffsetTable src = contiguous_table(box), dst = contiguous_table(box);
    for (int64_t d = 0; d < rank; ++d) {
      src[d].resize(box[d]);
      dst[d].resize(box[d]);
      for (int64_t i = 0; i < box[d]; ++i) {
        const int64_t di = d == batch_axis ? b : i;
        const int64_t si = d == time_axis && i < len ? len - 1 - i : di;
        src[d][i] = si * strides[d];
        dst[d][i] = di * strides[d];
      }
    }
    mapped_copy(ctx, in, out, box, src, dst);
  }
}

}  // namespace

void register_tensor(Registry& r) {
  auto add = [&](const char* name, KernelFn k, InferFn inf) {
    r.add({.name = name, .kernel = std::move(k), .infer = std::move(inf), .cost = move_cost});
  };
  add("Identity", identity_kernel, infer_same_as(0));
  add("Reshape", reshape_kernel, reshape_infer);
  add("Transpose", transpose_kernel, transpose_infer);
  add("Concat", concat_kernel, concat_infer);
  add("Split", split_kernel, split_infer);
  add("Slice", slice_kernel, slice_infer);
  add("Squeeze", squeeze_kernel, squeeze_infer);
  add("Unsqueeze", unsqueeze_kernel, unsqueeze_infer);
  add("Flatten", flatten_kernel, flatten_infer);
  add("Expand", expand_kernel, expand_infer);
  add("Tile", tile_kernel, tile_infer);
  add("Pad", pad_kernel, pad_infer);
  add("Shape", shape_kernel, shape_infer);
  add("Size", size_kernel, [](InferContext&) { return one(DType::Int64, Shape(std::vector<Dim>{})); });
  add("Constant", constant_kernel, constant_infer);
  add("ConstantOfShape", constant_of_shape_kernel, constant_of_shape_infer);
  add("Range", range_kernel, range_infer);
  add("DepthToSpace", depth_to_space_kernel, [](InferContext& c) { return depth_space_infer(c, true); });
  add("SpaceToDepth", space_to_depth_kernel, [](InferContext& c) { return depth_space_infer(c, false); });
  add("Trilu", trilu_kernel, infer_same_as(0));
  add("OneHot", onehot_kernel, onehot_infer);
  add("EyeLike", eyelike_kernel, eyelike_infer);
  add("CenterCropPad", center_crop_pad_kernel, center_crop_pad_infer);
  add("Col2Im", col2im_kernel, col2im_infer);
  add("ReverseSequence", reverse_sequence_kernel, infer_same_as(0));
}

}  // namespace duet::ops
