#include "duet/ops/kernel_util.h"

namespace duet::ops {

int64_t normalize_axis(int64_t axis, int64_t rank, const ir::Node& node) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  DUET_CHECK(a >= 0 && a < rank, node.label(), ": axis ", axis,
             " is out of range for rank ", rank);
  return a;
}

std::vector<int64_t> strides_of(const Dims& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int64_t i = static_cast<int64_t>(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

Dims broadcast_dims(const std::vector<Dims>& shapes, const ir::Node& node) {
  size_t rank = 0;
  for (auto& s : shapes) rank = std::max(rank, s.size());
  Dims out(rank, 1);
  for (auto& s : shapes) {
    const size_t off = rank - s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      const int64_t d = s[i];
      int64_t& o = out[off + i];
      if (d == o || d == 1) continue;
      DUET_CHECK(o == 1, node.label(), ": shapes cannot be broadcast together (",
                 [&] { std::string m; for (auto& x : shapes) m += (m.empty() ? "" : " vs ") + dims_str(x); return m; }(), ")");
      o = d;
    }
  }
  return out;
}

Shape broadcast_shapes(const std::vector<Shape>& shapes, const ir::Node& node) {
  size_t rank = 0;
  for (auto& s : shapes) {
    if (!s.rank_known) return Shape::unknown_rank();
    rank = std::max(rank, s.rank());
  }
  std::vector<Dim> out(rank, Dim(1));
  for (auto& s : shapes) {
    const size_t off = rank - s.rank();
    for (size_t i = 0; i < s.rank(); ++i) {
      const Dim& d = s.dims[i];
      Dim& o = out[off + i];
      if (d.known() && d.value == 1) continue;
      if (o.known() && o.value == 1) { o = d; continue; }
      if (d == o) continue;
      if (d.known() && o.known()) {
        fail(node.label(), ": shapes cannot be broadcast together (", o.value, " vs ", d.value, ")");
      }
      if (!o.known() && d.known()) o = d;  // a symbol meeting a number must equal it
    }
  }
  return Shape(out);
}

std::vector<int64_t> broadcast_strides(const Dims& in, const Dims& out) {
  std::vector<int64_t> s(out.size(), 0);
  const auto in_strides = strides_of(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[off + i] = in[i] == 1 ? 0 : in_strides[i];
  return s;
}

ir::ValueType tensor_type(DType dtype, Shape shape) {
  ir::ValueType t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  return t;
}

InferFn infer_same_as(size_t input_index) {
  return [input_index](InferContext& ctx) {
    std::vector<ir::ValueType> out(ctx.num_outputs);
    if (input_index < ctx.inputs.size()) for (auto& o : out) o = ctx.inputs[input_index];
    return out;
  };
}

InferFn infer_broadcast(DType out_dtype) {
  return [out_dtype](InferContext& ctx) {
    std::vector<Shape> shapes;
    for (size_t i = 0; i < ctx.inputs.size(); ++i) if (ctx.has_input(i)) shapes.push_back(ctx.inputs[i].shape);
    DType dt = out_dtype != DType::Undefined ? out_dtype : (ctx.inputs.empty() ? DType::Undefined : ctx.inputs[0].dtype);
    return std::vector<ir::ValueType>{tensor_type(dt, broadcast_shapes(shapes, ctx.node))};
  };
}

CostFn cost_per_output_element(double flops_per_element) {
  return [flops_per_element](const CostContext& ctx) {
    Cost c = default_cost(ctx);
    c.flops *= flops_per_element;
    return c;
  };
}

}  // namespace duet::ops
