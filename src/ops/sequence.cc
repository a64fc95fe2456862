// Sequence and optional ops. Sequences and optionals travel as Tensors that
// hold a list of element tensors or nothing (Tensor::make_sequence/make_none).
#include <cstring>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

const std::vector<Tensor>& seq(const KernelContext& ctx, size_t i) {
  const Tensor& t = ctx.input(i);
  DUET_CHECK(t.is_sequence(), ctx.node.label(), ": input ", i, " must be a sequence");
  return t.sequence();
}

int64_t position(const KernelContext& ctx, size_t input, int64_t size, bool allow_end) {
  int64_t p = ctx.input(input).get_int(0);
  const int64_t limit = allow_end ? size : size - 1;
  if (p < 0) p += size;
  DUET_CHECK(p >= 0 && p <= limit, ctx.node.label(), ": position ", ctx.input(input).get_int(0),
             " is out of range for a sequence of length ", size);
  return p;
}

void sequence_construct(KernelContext& ctx) {
  std::vector<Tensor> items;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) items.push_back(ctx.input(i));
  DType dt = items.empty() ? DType::Float32 : items[0].dtype();
  for (auto& t : items) DUET_CHECK(t.dtype() == dt, ctx.node.label(), ": sequence elements must share one type");
  ctx.set_output(0, Tensor::make_sequence(dt, items));
}

void sequence_empty(KernelContext& ctx) {
  const DType dt = static_cast<DType>(ctx.node.attr_int("dtype", static_cast<int64_t>(DType::Float32)));
  ctx.set_output(0, Tensor::make_sequence(dt, {}));
}

void sequence_at(KernelContext& ctx) {
  auto& s = seq(ctx, 0);
  ctx.set_output(0, s[position(ctx, 1, static_cast<int64_t>(s.size()), false)]);
}

void sequence_insert(KernelContext& ctx) {
  std::vector<Tensor> s = seq(ctx, 0);
  const int64_t p = ctx.has_input(2) ? position(ctx, 2, static_cast<int64_t>(s.size()), true) : static_cast<int64_t>(s.size());
  s.insert(s.begin() + p, ctx.input(1));
  ctx.set_output(0, Tensor::make_sequence(ctx.input(1).dtype(), s));
}

void sequence_erase(KernelContext& ctx) {
  std::vector<Tensor> s = seq(ctx, 0);
  DUET_CHECK(!s.empty(), ctx.node.label(), ": cannot erase from an empty sequence");
  const int64_t p = ctx.has_input(1) ? position(ctx, 1, static_cast<int64_t>(s.size()), false) : static_cast<int64_t>(s.size()) - 1;
  s.erase(s.begin() + p);
  ctx.set_output(0, Tensor::make_sequence(ctx.input(0).sequence_element_type(), s));
}

void sequence_length(KernelContext& ctx) {
  ctx.set_output(0, Tensor::scalar<int64_t>(static_cast<int64_t>(seq(ctx, 0).size())));
}

// Copies a slab [begin, end) along axis of t into a new tensor.
Tensor slab(const Tensor& t, int64_t axis, int64_t begin, int64_t end, bool keep_axis) {
  Dims d = t.dims();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= d[i];
  for (size_t i = axis + 1; i < d.size(); ++i) inner *= d[i];
  const int64_t n = d[axis];
  Dims od = d;
  od[axis] = end - begin;
  if (!keep_axis) od.erase(od.begin() + axis);
  Tensor out(t.dtype(), od);
  const int64_t run = (end - begin) * inner;
  if (t.dtype() == DType::String) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < run; ++j) out.strings()[o * run + j] = t.strings()[(o * n + begin) * inner + j];
    return out;
  }
  const size_t es = dtype_bits(t.dtype()) / 8;
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(out.data<uint8_t>() + o * run * es, t.data<uint8_t>() + (o * n + begin) * inner * es, run * es);
  return out;
}

void split_to_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), static_cast<int64_t>(x.rank()), ctx.node);
  const int64_t keepdims = ctx.node.attr_int("keepdims", 1);
  const int64_t n = x.dims()[axis];
  std::vector<Tensor> parts;
  if (!ctx.has_input(1)) {
    for (int64_t i = 0; i < n; ++i) parts.push_back(slab(x, axis, i, i + 1, keepdims != 0));
  } else {
    const Tensor& split = ctx.input(1);
    std::vector<int64_t> sizes;
    if (split.rank() == 0) {
      const int64_t s = split.get_int(0);
      DUET_CHECK(s > 0, ctx.node.label(), ": split size must be positive");
      for (int64_t b = 0; b < n; b += s) sizes.push_back(std::min(s, n - b));
    } else {
      sizes = split.to_int_vector();
      int64_t total = 0;
      for (auto s : sizes) total += s;
      DUET_CHECK(total == n, ctx.node.label(), ": split sizes sum to ", total, ", axis has ", n);
    }
    int64_t b = 0;
    for (auto s : sizes) {
      parts.push_back(slab(x, axis, b, b + s, true));
      b += s;
    }
  }
  ctx.set_output(0, Tensor::make_sequence(x.dtype(), parts));
}

void concat_from_sequence(KernelContext& ctx) {
  auto& s = seq(ctx, 0);
  DUET_CHECK(!s.empty(), ctx.node.label(), ": cannot concatenate an empty sequence");
  const bool new_axis = ctx.node.attr_int("new_axis", 0) != 0;
  const int64_t rank = static_cast<int64_t>(s[0].rank()) + (new_axis ? 1 : 0);
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  std::vector<Tensor> parts;
  for (auto& t : s) {
    if (new_axis) {
      Dims d = t.dims();
      d.insert(d.begin() + axis, 1);
      parts.push_back(t.reshaped(d));
    } else {
      parts.push_back(t);
    }
  }
  Dims od = parts[0].dims();
  od[axis] = 0;
  for (auto& p : parts) {
    for (size_t i = 0; i < od.size(); ++i) {
      DUET_CHECK(p.rank() == od.size() && (static_cast<int64_t>(i) == axis || p.dims()[i] == parts[0].dims()[i]),
                 ctx.node.label(), ": sequence elements have incompatible shapes");
    }
    od[axis] += p.dims()[axis];
  }
  Tensor out(parts[0].dtype(), od);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= od[i];
  for (size_t i = axis + 1; i < od.size(); ++i) inner *= od[i];
  const size_t es = dtype_bits(out.dtype()) / 8;
  DUET_CHECK(out.dtype() != DType::String, ctx.node.label(), ": string sequences are not supported here");
  int64_t offset = 0;
  for (auto& p : parts) {
    const int64_t run = p.dims()[axis] * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(out.data<uint8_t>() + (o * od[axis] * inner + offset) * es, p.data<uint8_t>() + o * run * es, run * es);
    offset += run;
  }
  ctx.set_output(0, out);
}

void sequence_map(KernelContext& ctx) {
  const ir::Graph* body = ctx.node.attr_graph("body");
  DUET_CHECK(body, ctx.node.label(), ": missing body");
  auto& first = seq(ctx, 0);
  const size_t n = first.size();
  std::vector<std::vector<Tensor>> results(ctx.num_outputs());
  for (size_t i = 0; i < n; ++i) {
    std::vector<Tensor> args;
    for (size_t k = 0; k < ctx.num_inputs(); ++k) {
      const Tensor& in = ctx.input(k);
      if (in.is_sequence()) {
        DUET_CHECK(in.sequence().size() == n, ctx.node.label(), ": sequences have different lengths");
        args.push_back(in.sequence()[i]);
      } else {
        args.push_back(in);
      }
    }
    auto outs = ctx.subgraphs->run(*body, args);
    for (size_t k = 0; k < outs.size() && k < results.size(); ++k) results[k].push_back(outs[k]);
  }
  for (size_t k = 0; k < results.size(); ++k) {
    DType dt = results[k].empty() ? body->outputs[k]->type.dtype : results[k][0].dtype();
    ctx.set_output(k, Tensor::make_sequence(dt, results[k]));
  }
}

void optional_kernel(KernelContext& ctx) {
  ctx.set_output(0, ctx.has_input(0) ? ctx.input(0) : Tensor::make_none());
}

void optional_has_element(KernelContext& ctx) {
  const bool has = ctx.has_input(0) && !ctx.input(0).is_none();
  ctx.set_output(0, Tensor::scalar<bool>(has));
}

void optional_get_element(KernelContext& ctx) {
  const Tensor& t = ctx.input(0);
  DUET_CHECK(!t.is_none(), ctx.node.label(), ": the optional is empty");
  ctx.set_output(0, t);
}

std::vector<ir::ValueType> sequence_type(InferContext& c) {
  ir::ValueType t;
  t.kind = ir::ValueType::Kind::Sequence;
  return std::vector<ir::ValueType>(c.num_outputs, t);
}

}  // namespace

void register_sequence(Registry& r) {
  r.add({.name = "SequenceConstruct", .kernel = sequence_construct, .infer = sequence_type});
  r.add({.name = "SequenceEmpty", .kernel = sequence_empty, .infer = sequence_type});
  r.add({.name = "SequenceAt", .kernel = sequence_at});
  r.add({.name = "SequenceInsert", .kernel = sequence_insert, .infer = sequence_type});
  r.add({.name = "SequenceErase", .kernel = sequence_erase, .infer = sequence_type});
  r.add({.name = "SequenceLength", .kernel = sequence_length,
         .infer = [](InferContext&) { return std::vector<ir::ValueType>{tensor_type(DType::Int64, Shape())}; }});
  r.add({.name = "SplitToSequence", .kernel = split_to_sequence, .infer = sequence_type});
  r.add({.name = "ConcatFromSequence", .kernel = concat_from_sequence});
  r.add({.name = "SequenceMap", .kernel = sequence_map, .infer = sequence_type});
  r.add({.name = "Optional", .kernel = optional_kernel});
  r.add({.name = "OptionalHasElement", .kernel = optional_has_element,
         .infer = [](InferContext&) { return std::vector<ir::ValueType>{tensor_type(DType::Bool, Shape())}; }});
  r.add({.name = "OptionalGetElement", .kernel = optional_get_element});
}

}  // namespace duet::ops
