// If, Loop, Scan: bodies run through the session's SubgraphRunner, which
// resolves names the body captures from the enclosing scopes.
#include <cstdlib>
#include <cstring>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

bool truth(const Tensor& t, const ir::Node& node) {
  DUET_CHECK(t.numel() == 1, node.label(), ": condition must have one element, got ", t.describe());
  return t.get_double(0) != 0;
}

void if_kernel(KernelContext& ctx) {
  const bool cond = truth(ctx.input(0), ctx.node);
  const ir::Graph* branch = ctx.node.attr_graph(cond ? "then_branch" : "else_branch");
  DUET_CHECK(branch, ctx.node.label(), ": missing ", cond ? "then_branch" : "else_branch");
  auto outs = ctx.subgraphs->run(*branch, {});
  DUET_CHECK(outs.size() == ctx.num_outputs(), ctx.node.label(), ": branch produced ", outs.size(), " outputs, node has ",
             ctx.num_outputs());
  for (size_t i = 0; i < outs.size(); ++i) ctx.set_output(i, std::move(outs[i]));
}

// Stacks per-iteration tensors along a new axis at `axis` (Scan/Loop scan outputs).
Tensor stack(const std::vector<Tensor>& parts, int64_t axis, const ir::Node& node, DType dtype_if_empty) {
  if (parts.empty()) return Tensor(dtype_if_empty == DType::Undefined ? DType::Float32 : dtype_if_empty, {0});
  const Tensor& first = parts[0];
  for (auto& p : parts) {
    DUET_CHECK(p.dims() == first.dims() && p.dtype() == first.dtype(), node.label(),
               ": scan output changes shape or type between iterations (", first.describe(), " vs ", p.describe(), ")");
  }
  const int64_t rank = static_cast<int64_t>(first.rank()) + 1;
  axis = normalize_axis(axis, rank, node);
  Dims out_dims = first.dims();
  out_dims.insert(out_dims.begin() + axis, static_cast<int64_t>(parts.size()));
  Tensor out(first.dtype(), out_dims);
  const Dims& d = first.dims();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= d[i];
  for (size_t i = axis; i < d.size(); ++i) inner *= d[i];
  if (first.dtype() == DType::String) {
    for (size_t k = 0; k < parts.size(); ++k)
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < inner; ++j)
          out.strings()[(o * parts.size() + k) * inner + j] = parts[k].strings()[o * inner + j];
    return out;
  }
  const size_t es = dtype_bits(first.dtype()) / 8;
  for (size_t k = 0; k < parts.size(); ++k)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(out.data<uint8_t>() + ((o * parts.size() + k) * inner) * es, parts[k].data<uint8_t>() + o * inner * es,
                  inner * es);
  return out;
}

// Slice `index` along `axis` (the axis is removed).
Tensor take(const Tensor& t, int64_t axis, int64_t index) {
  const Dims& d = t.dims();
  Dims out_dims = d;
  out_dims.erase(out_dims.begin() + axis);
  Tensor out(t.dtype(), out_dims);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= d[i];
  for (size_t i = axis + 1; i < d.size(); ++i) inner *= d[i];
  const int64_t n = d[axis];
  if (t.dtype() == DType::String) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < inner; ++j) out.strings()[o * inner + j] = t.strings()[(o * n + index) * inner + j];
    return out;
  }
  const size_t es = dtype_bits(t.dtype()) / 8;
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(out.data<uint8_t>() + o * inner * es, t.data<uint8_t>() + ((o * n + index) * inner) * es, inner * es);
  return out;
}

DType declared_dtype(const ir::Value* v) { return v ? v->type.dtype : DType::Undefined; }

// At most this many Loop iterations: $DUET_MAX_LOOP_ITERATIONS, else 2^24.
int64_t max_loop_iterations() {
  static const int64_t most = [] {
    const char* env = std::getenv("DUET_MAX_LOOP_ITERATIONS");
    const long long v = env ? std::strtoll(env, nullptr, 10) : 0;
    return v > 0 ? int64_t(v) : int64_t{1} << 24;
  }();
  return most;
}

void loop_kernel(KernelContext& ctx) {
  const ir::Graph* body = ctx.node.attr_graph("body");
  DUET_CHECK(body, ctx.node.label(), ": missing body");
  const Tensor* max_trip = ctx.optional_input(0);
  const Tensor* cond_in = ctx.optional_input(1);
  const int64_t trip_limit = max_trip ? max_trip->get_int(0) : INT64_MAX;
  bool cond = cond_in ? truth(*cond_in, ctx.node) : true;
  // A bound on the iterations, so that a trip count of 2^62 (or a condition
  // that never turns false) ends in one error line instead of running forever.
  const int64_t most = max_loop_iterations();
  DUET_CHECK(!max_trip || trip_limit <= most || !cond, ctx.node.label(), ": trip count ", trip_limit, " is over the limit of ", most,
             " iterations (DUET_MAX_LOOP_ITERATIONS raises it)");
  const size_t n_carried = ctx.num_inputs() >= 2 ? ctx.num_inputs() - 2 : 0;
  std::vector<Tensor> carried;
  for (size_t i = 0; i < n_carried; ++i) carried.push_back(ctx.input(2 + i));
  const size_t n_scan = ctx.num_outputs() - n_carried;
  DUET_CHECK(body->outputs.size() == 1 + n_carried + n_scan, ctx.node.label(), ": body has ", body->outputs.size(),
             " outputs, expected ", 1 + n_carried + n_scan);
  std::vector<std::vector<Tensor>> scans(n_scan);
  for (int64_t it = 0; it < trip_limit && cond; ++it) {
    DUET_CHECK(it < most, ctx.node.label(), ": the loop condition still holds after ", most,
               " iterations (DUET_MAX_LOOP_ITERATIONS raises the limit)");
    std::vector<Tensor> args{Tensor::scalar<int64_t>(it), Tensor::scalar<bool>(cond)};
    args.insert(args.end(), carried.begin(), carried.end());
    auto outs = ctx.subgraphs->run(*body, args);
    cond = truth(outs[0], ctx.node);
    for (size_t i = 0; i < n_carried; ++i) carried[i] = outs[1 + i];
    for (size_t i = 0; i < n_scan; ++i) scans[i].push_back(outs[1 + n_carried + i]);
  }
  for (size_t i = 0; i < n_carried; ++i) ctx.set_output(i, carried[i]);
  for (size_t i = 0; i < n_scan; ++i) {
    const ir::Value* bo = body->outputs[1 + n_carried + i];
    if (!scans[i].empty() && scans[i][0].is_sequence()) unsupported("Loop scan outputs of sequences");
    ctx.set_output(n_carried + i, stack(scans[i], 0, ctx.node, declared_dtype(bo)));
  }
}

// Scan-8: a leading optional sequence_lens input and a batch axis 0 on every
// state and scan input; each batch element is scanned on its own along axis 1.
void scan8_kernel(KernelContext& ctx) {
  const ir::Graph* body = ctx.node.attr_graph("body");
  DUET_CHECK(body, ctx.node.label(), ": missing body");
  const int64_t n_scan_in = ctx.node.attr_int("num_scan_inputs", -1);
  DUET_CHECK(n_scan_in >= 1 && static_cast<size_t>(n_scan_in) + 1 <= ctx.num_inputs(), ctx.node.label(),
             ": num_scan_inputs must be between 1 and the number of inputs");
  const size_t n_state = ctx.num_inputs() - 1 - n_scan_in;
  const size_t n_scan_out = ctx.num_outputs() - n_state;
  auto dirs = ctx.node.attr_ints("directions", std::vector<int64_t>(n_scan_in, 0));
  DUET_CHECK(dirs.size() == static_cast<size_t>(n_scan_in), ctx.node.label(), ": directions has the wrong length");
  const Tensor& first = ctx.input(1 + n_state);
  DUET_CHECK(first.rank() >= 2, ctx.node.label(), ": scan inputs need a batch and a sequence axis");
  const int64_t batch = first.dims()[0], max_len = first.dims()[1];
  std::vector<std::vector<Tensor>> state_out(n_state), scan_out(n_scan_out);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = ctx.has_input(0) ? ctx.input(0).get_int(b) : max_len;
    DUET_CHECK(len >= 0 && len <= max_len, ctx.node.label(), ": sequence length ", len, " out of range");
    std::vector<Tensor> state;
    for (size_t i = 0; i < n_state; ++i) state.push_back(take(ctx.input(1 + i), 0, b));
    std::vector<Tensor> seqs;
    for (int64_t j = 0; j < n_scan_in; ++j) {
      const Tensor& x = ctx.input(1 + n_state + j);
      DUET_CHECK(x.rank() >= 2 && x.dims()[0] == batch, ctx.node.label(), ": scan inputs must share the batch size");
      seqs.push_back(take(x, 0, b));
    }
    std::vector<std::vector<Tensor>> outs(n_scan_out);
    for (int64_t it = 0; it < len; ++it) {
      std::vector<Tensor> args = state;
      for (int64_t j = 0; j < n_scan_in; ++j) args.push_back(take(seqs[j], 0, dirs[j] ? len - 1 - it : it));
      auto res = ctx.subgraphs->run(*body, args);
      DUET_CHECK(res.size() == n_state + n_scan_out, ctx.node.label(), ": body produced ", res.size(), " outputs");
      for (size_t i = 0; i < n_state; ++i) state[i] = res[i];
      for (size_t k = 0; k < n_scan_out; ++k) outs[k].push_back(res[n_state + k]);
    }
    for (size_t i = 0; i < n_state; ++i) state_out[i].push_back(state[i]);
    for (size_t k = 0; k < n_scan_out; ++k) scan_out[k].push_back(stack(outs[k], 0, ctx.node, DType::Float32));
  }
  for (size_t i = 0; i < n_state; ++i) ctx.set_output(i, stack(state_out[i], 0, ctx.node, ctx.input(1 + i).dtype()));
  for (size_t k = 0; k < n_scan_out; ++k) ctx.set_output(n_state + k, stack(scan_out[k], 0, ctx.node, DType::Float32));
}

void scan_kernel(KernelContext& ctx) {
  if (ctx.opset < 9) return scan8_kernel(ctx);
  const ir::Graph* body = ctx.node.attr_graph("body");
  DUET_CHECK(body, ctx.node.label(), ": missing body");
  const int64_t n_scan_in = ctx.node.attr_int("num_scan_inputs", -1);
  DUET_CHECK(n_scan_in >= 1 && static_cast<size_t>(n_scan_in) <= ctx.num_inputs(), ctx.node.label(),
             ": num_scan_inputs must be between 1 and the number of inputs");
  const size_t n_state = ctx.num_inputs() - n_scan_in;
  const size_t n_scan_out = ctx.num_outputs() - n_state;
  auto in_dirs = ctx.node.attr_ints("scan_input_directions", std::vector<int64_t>(n_scan_in, 0));
  auto in_axes = ctx.node.attr_ints("scan_input_axes", std::vector<int64_t>(n_scan_in, 0));
  auto out_dirs = ctx.node.attr_ints("scan_output_directions", std::vector<int64_t>(n_scan_out, 0));
  auto out_axes = ctx.node.attr_ints("scan_output_axes", std::vector<int64_t>(n_scan_out, 0));
  DUET_CHECK(in_dirs.size() == static_cast<size_t>(n_scan_in) && in_axes.size() == static_cast<size_t>(n_scan_in) &&
                 out_dirs.size() == n_scan_out && out_axes.size() == n_scan_out,
             ctx.node.label(), ": scan direction/axis attributes do not match the number of scan inputs/outputs");
  std::vector<Tensor> state;
  for (size_t i = 0; i < n_state; ++i) state.push_back(ctx.input(i));
  int64_t length = -1;
  std::vector<int64_t> axes(n_scan_in);
  for (int64_t j = 0; j < n_scan_in; ++j) {
    const Tensor& x = ctx.input(n_state + j);
    axes[j] = normalize_axis(in_axes[j], static_cast<int64_t>(x.rank()), ctx.node);
    const int64_t len = x.dims()[axes[j]];
    DUET_CHECK(length < 0 || len == length, ctx.node.label(), ": scan inputs have different lengths (", length, " vs ", len, ")");
    length = len;
  }
  std::vector<std::vector<Tensor>> outs(n_scan_out);
  for (int64_t it = 0; it < length; ++it) {
    std::vector<Tensor> args = state;
    for (int64_t j = 0; j < n_scan_in; ++j) {
      const int64_t idx = in_dirs[j] ? length - 1 - it : it;
      args.push_back(take(ctx.input(n_state + j), axes[j], idx));
    }
    auto res = ctx.subgraphs->run(*body, args);
    DUET_CHECK(res.size() == n_state + n_scan_out, ctx.node.label(), ": body produced ", res.size(), " outputs");
    for (size_t i = 0; i < n_state; ++i) state[i] = res[i];
    for (size_t k = 0; k < n_scan_out; ++k) outs[k].push_back(res[n_state + k]);
  }
  for (size_t i = 0; i < n_state; ++i) ctx.set_output(i, state[i]);
  for (size_t k = 0; k < n_scan_out; ++k) {
    if (out_dirs[k]) std::reverse(outs[k].begin(), outs[k].end());
    ctx.set_output(n_state + k, stack(outs[k], out_axes[k], ctx.node, declared_dtype(body->outputs[n_state + k])));
  }
}

std::vector<ir::ValueType> infer_from_body_outputs(InferContext& ctx, const char* attr, size_t skip) {
  std::vector<ir::ValueType> out(ctx.num_outputs);
  const ir::Graph* body = ctx.node.attr_graph(attr);
  if (!body) return out;
  for (size_t i = 0; i < out.size() && i + skip < body->outputs.size(); ++i) {
    out[i].dtype = body->outputs[i + skip]->type.dtype;
    out[i].kind = body->outputs[i + skip]->type.kind;
  }
  return out;
}

}  // namespace

void register_control_flow(Registry& r) {
  r.add({.name = "If", .kernel = if_kernel,
         .infer = [](InferContext& c) { return infer_from_body_outputs(c, "then_branch", 0); }});
  r.add({.name = "Loop", .kernel = loop_kernel,
         .infer = [](InferContext& c) { return infer_from_body_outputs(c, "body", 1); }});
  r.add({.name = "Scan", .kernel = scan_kernel,
         .infer = [](InferContext& c) { return infer_from_body_outputs(c, "body", 0); }});
}

}  // namespace duet::ops
