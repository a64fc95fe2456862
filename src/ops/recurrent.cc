// Recurrent ops: RNN, GRU and LSTM (ONNX opsets 7, 14 with `layout`, 22).
// One implementation runs all three cells. Every (direction, batch entry)
// chain is independent, so chains run in parallel and each output element is
// written by exactly one thread in a fixed order (deterministic).
// Math runs in double for float64 inputs and in float otherwise.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <type_traits>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

enum class Cell { Rnn, Gru, Lstm };

int gates_of(Cell cell) { return cell == Cell::Rnn ? 1 : cell == Cell::Gru ? 3 : 4; }
int activations_per_direction(Cell cell) { return cell == Cell::Rnn ? 1 : cell == Cell::Gru ? 2 : 3; }

// ---------------------------------------------------------------------------
// Activations named by the `activations` attribute.
struct Activation {
  enum Kind { Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu,
              Softsign, Softplus } kind = Tanh;
  double alpha = 0, beta = 0;

  template <typename A>
  A operator()(A x) const {
    const A a = static_cast<A>(alpha), b = static_cast<A>(beta);
    switch (kind) {
      case Relu: return x > A(0) ? x : A(0);
      case Tanh: return std::tanh(x);
      case Sigmoid: return A(1) / (A(1) + std::exp(-x));
      case Affine: return a * x + b;
      case LeakyRelu: return x >= A(0) ? x : a * x;
      case ThresholdedRelu: return x > a ? x : A(0);
      case ScaledTanh: return a * std::tanh(b * x);
      case HardSigmoid: return std::max(A(0), std::min(A(1), a * x + b));
      case Elu: return x >= A(0) ? x : a * (std::exp(x) - A(1));
      case Softsign: return x / (A(1) + std::abs(x));
      case Softplus: return std::log1p(std::exp(x));
    }
    return x;
  }
};

std::string lowercase(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Parses the activation list. activation_alpha / activation_beta are consumed
// in order by the activations that take them; missing values use the
// activation's own default (as ONNX Runtime does).
std::vector<Activation> parse_activations(const ir::Node& node, Cell cell, int64_t directions) {
  std::vector<std::string> names = node.attr_strings("activations");
  const int per_dir = activations_per_direction(cell);
  if (names.empty()) {
    const std::vector<std::string> defaults =
        cell == Cell::Rnn ? std::vector<std::string>{"Tanh"}
        : cell == Cell::Gru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                            : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    for (int64_t d = 0; d < directions; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  }
  if (static_cast<int64_t>(names.size()) == per_dir && directions == 2) {
    // One list given for a bidirectional node: use it for both directions.
    names.insert(names.end(), names.begin(), names.end());
  }
  if (static_cast<int64_t>(names.size()) != per_dir * directions)
    fail(node.label(), ": expected ", per_dir * directions, " activations, got ", names.size());
  const std::vector<float> alphas = node.attr_floats("activation_alpha");
  const std::vector<float> betas = node.attr_floats("activation_beta");
  size_t next_alpha = 0, next_beta = 0;
  auto take = [](const std::vector<float>& list, size_t& next, double def) {
    return next < list.size() ? static_cast<double>(list[next++]) : def;
  };
  std::vector<Activation> out;
  for (const auto& name : names) {
    const std::string n = lowercase(name);
    Activation a;
    if (n == "relu") a.kind = Activation::Relu;
    else if (n == "tanh") a.kind = Activation::Tanh;
    else if (n == "sigmoid") a.kind = Activation::Sigmoid;
    else if (n == "affine") { a.kind = Activation::Affine; a.alpha = take(alphas, next_alpha, 1.0); a.beta = take(betas, next_beta, 0.0); }
    else if (n == "leakyrelu") { a.kind = Activation::LeakyRelu; a.alpha = take(alphas, next_alpha, 0.01); }
    else if (n == "thresholdedrelu") { a.kind = Activation::ThresholdedRelu; a.alpha = take(alphas, next_alpha, 1.0); }
    else if (n == "scaledtanh") { a.kind = Activation::ScaledTanh; a.alpha = take(alphas, next_alpha, 1.0); a.beta = take(betas, next_beta, 1.0); }
    else if (n == "hardsigmoid") { a.kind = Activation::HardSigmoid; a.alpha = take(alphas, next_alpha, 0.2); a.beta = take(betas, next_beta, 0.5); }
    else if (n == "elu") { a.kind = Activation::Elu; a.alpha = take(alphas, next_alpha, 1.0); }
    else if (n == "softsign") a.kind = Activation::Softsign;
    else if (n == "softplus") a.kind = Activation::Softplus;
    else unsupported(node.label(), ": activation '", name, "' is not supported");
    out.push_back(a);
  }
  return out;
}

int64_t directions_of(const ir::Node& node) {
  const std::string dir = node.attr_string("direction", "forward");
  if (dir == "forward" || dir == "reverse") return 1;
  if (dir == "bidirectional") return 2;
  fail(node.label(), ": unknown direction '", dir, "'");
}

// ---------------------------------------------------------------------------
// Validated sizes of one node execution.
struct Sizes {
  int64_t seq = 0, batch = 0, input = 0, hidden = 0, dirs = 1, gates = 1;
  bool batch_major = false;  // layout == 1
};

void check_dims(const ir::Node& node, const Tensor& t, const char* what, const Dims& expected) {
  if (t.dims() != expected)
    fail(node.label(), ": ", what, " has shape ", dims_str(t.dims()), ", expected ", dims_str(expected));
}

Sizes validate(const KernelContext& ctx, Cell cell) {
  const ir::Node& node = ctx.node;
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor& r = ctx.input(2);
  Sizes s;
  s.gates = gates_of(cell);
  s.dirs = directions_of(node);
  s.batch_major = node.attr_int("layout", 0) == 1;
  if (x.rank() != 3) fail(node.label(), ": X must have rank 3, got ", dims_str(x.dims()));
  if (w.rank() != 3 || r.rank() != 3) fail(node.label(), ": W and R must have rank 3");
  s.seq = s.batch_major ? x.dim(1) : x.dim(0);
  s.batch = s.batch_major ? x.dim(0) : x.dim(1);
  s.input = x.dim(2);
  s.hidden = node.attr_int("hidden_size", r.dim(2));
  if (s.hidden <= 0) fail(node.label(), ": hidden_size must be positive");
  const int64_t gh = s.gates * s.hidden;
  check_dims(node, w, "W", {s.dirs, gh, s.input});
  check_dims(node, r, "R", {s.dirs, gh, s.hidden});
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (i == 4 || !ctx.has_input(i)) continue;  // sequence_lens is integer
    if (ctx.inputs[i]->dtype() != x.dtype())
      fail(node.label(), ": input ", i, " has type ", dtype_name(ctx.inputs[i]->dtype()), ", expected ",
           dtype_name(x.dtype()));
  }
  if (auto* b = ctx.optional_input(3)) check_dims(node, *b, "B", {s.dirs, 2 * gh});
  if (auto* lens = ctx.optional_input(4)) {
    check_dims(node, *lens, "sequence_lens", {s.batch});
    if (!dtype_is_integer(lens->dtype())) fail(node.label(), ": sequence_lens must be an integer tensor");
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t len = lens->get_int(b);
      if (len < 0 || len > s.seq)
        fail(node.label(), ": sequence_lens[", b, "] = ", len, " is outside [0, ", s.seq, "]");
    }
  }
  const Dims state = s.batch_major ? Dims{s.batch, s.dirs, s.hidden} : Dims{s.dirs, s.batch, s.hidden};
  if (auto* h0 = ctx.optional_input(5)) check_dims(node, *h0, "initial_h", state);
  if (cell == Cell::Lstm) {
    if (auto* c0 = ctx.optional_input(6)) check_dims(node, *c0, "initial_c", state);
    if (auto* p = ctx.optional_input(7)) check_dims(node, *p, "P", {s.dirs, 3 * s.hidden});
  }
  return s;
}

template <typename T, typename A>
std::vector<A> to_acc(const Tensor* t, int64_t n_if_missing) {
  if (!t) return std::vector<A>(n_if_missing, A(0));
  std::vector<A> v(t->numel());
  const T* p = t->data<T>();
  for (int64_t i = 0; i < t->numel(); ++i) {
    if constexpr (std::is_same_v<T, double>) v[i] = static_cast<A>(p[i]);
    else v[i] = static_cast<A>(static_cast<float>(p[i]));  // float16/bfloat16 convert through float
  }
  return v;
}

template <typename A>
A dot(const A* a, const A* b, int64_t n) {
  A sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

template <typename T, typename A>
void run_cell(KernelContext& ctx, Cell cell, const Sizes& s) {
  const ir::Node& node = ctx.node;
  const auto acts = parse_activations(node, cell, s.dirs);
  const int per_dir = activations_per_direction(cell);
  const bool reverse_only = node.attr_string("direction", "forward") == "reverse";
  const bool has_clip = node.has_attr("clip");
  const A clip = static_cast<A>(node.attr_float("clip", 0.0f));
  const bool linear_before_reset = cell == Cell::Gru && node.attr_int("linear_before_reset", 0) != 0;
  const bool input_forget = cell == Cell::Lstm && node.attr_int("input_forget", 0) != 0;
  if (has_clip && clip < A(0)) fail(node.label(), ": clip must be non-negative");

  const int64_t H = s.hidden, I = s.input, G = s.gates, GH = G * H;
  const auto x = to_acc<T, A>(&ctx.input(0), 0);
  const auto w = to_acc<T, A>(&ctx.input(1), 0);
  const auto r = to_acc<T, A>(&ctx.input(2), 0);
  const auto bias = to_acc<T, A>(ctx.optional_input(3), s.dirs * 2 * GH);
  const auto h0 = to_acc<T, A>(ctx.optional_input(5), s.dirs * s.batch * H);
  const auto c0 = to_acc<T, A>(cell == Cell::Lstm ? ctx.optional_input(6) : nullptr, s.dirs * s.batch * H);
  const auto peep = to_acc<T, A>(cell == Cell::Lstm ? ctx.optional_input(7) : nullptr, s.dirs * 3 * H);
  const Tensor* lens = ctx.optional_input(4);

  // Outputs; Y entries past a sequence's length stay zero.
  T* y = nullptr;
  if (ctx.output_requested(0)) {
    const Dims dims = s.batch_major ? Dims{s.batch, s.seq, s.dirs, H} : Dims{s.seq, s.dirs, s.batch, H};
    y = ctx.allocate_output(0, ctx.input(0).dtype(), dims).template data<T>();
    std::fill(y, y + numel(dims), T(0.0f));
  }
  const Dims state_dims = s.batch_major ? Dims{s.batch, s.dirs, H} : Dims{s.dirs, s.batch, H};
  T* y_h = ctx.output_requested(1) ? ctx.allocate_output(1, ctx.input(0).dtype(), state_dims).template data<T>() : nullptr;
  T* y_c = cell == Cell::Lstm && ctx.output_requested(2)
               ? ctx.allocate_output(2, ctx.input(0).dtype(), state_dims).template data<T>()
               : nullptr;

  auto x_at = [&](int64_t t, int64_t b) { return &x[(s.batch_major ? b * s.seq + t : t * s.batch + b) * I]; };
  auto y_offset = [&](int64_t t, int64_t d, int64_t b) {
    return (s.batch_major ? (b * s.seq + t) * s.dirs + d : (t * s.dirs + d) * s.batch + b) * H;
  };
  auto state_offset = [&](int64_t d, int64_t b) { return (s.batch_major ? b * s.dirs + d : d * s.batch + b) * H; };
  auto clipped = [&](A v) { return has_clip ? std::clamp(v, -clip, clip) : v; };

  ctx.parallel_for(s.dirs * s.batch, [&](int64_t begin, int64_t end) {
    std::vector<A> h(H), c(H), xw(GH), hr(GH);
    std::vector<A> update(H), reset(H), cand(H), reset_h(H);  // GRU scratch
    for (int64_t chain = begin; chain < end; ++chain) {
      const int64_t d = chain / s.batch, b = chain % s.batch;
      const bool reverse = d == 1 || reverse_only;
      const Activation& f = acts[d * per_dir];
      const Activation& g = acts[d * per_dir + (per_dir > 1 ? 1 : 0)];
      const Activation& hact = acts[d * per_dir + (per_dir > 2 ? 2 : 0)];
      const A* wd = &w[d * GH * I];
      const A* rd = &r[d * GH * H];
      const A* wb = &bias[d * 2 * GH];
      const A* rb = wb + GH;
      const A* pd = &peep[d * 3 * H];
      std::copy_n(&h0[state_offset(d, b)], H, h.begin());
      std::copy_n(&c0[state_offset(d, b)], H, c.begin());
      const int64_t len = lens ? lens->get_int(b) : s.seq;
      for (int64_t step = 0; step < len; ++step) {
        const int64_t t = reverse ? len - 1 - step : step;
        const A* xt = x_at(t, b);
        for (int64_t k = 0; k < GH; ++k) xw[k] = dot(&wd[k * I], xt, I) + wb[k];
        // GRU without linear_before_reset needs r first for its h gate rows.
        const int64_t recur_rows = cell == Cell::Gru && !linear_before_reset ? 2 * H : GH;
        for (int64_t k = 0; k < recur_rows; ++k) hr[k] = dot(&rd[k * H], h.data(), H) + rb[k];
        switch (cell) {
          case Cell::Rnn:
            for (int64_t j = 0; j < H; ++j) h[j] = f(clipped(xw[j] + hr[j]));
            break;
          case Cell::Gru: {
            // Gate order z, r, h.
            for (int64_t j = 0; j < H; ++j) update[j] = f(clipped(xw[j] + hr[j]));
            for (int64_t j = 0; j < H; ++j) reset[j] = f(clipped(xw[H + j] + hr[H + j]));
            if (linear_before_reset) {
              for (int64_t j = 0; j < H; ++j) cand[j] = g(clipped(xw[2 * H + j] + reset[j] * hr[2 * H + j]));
            } else {
              for (int64_t j = 0; j < H; ++j) reset_h[j] = reset[j] * h[j];
              for (int64_t j = 0; j < H; ++j)
                cand[j] = g(clipped(xw[2 * H + j] + dot(&rd[(2 * H + j) * H], reset_h.data(), H) + rb[2 * H + j]));
            }
            for (int64_t j = 0; j < H; ++j) h[j] = (A(1) - update[j]) * cand[j] + update[j] * h[j];
            break;
          }
          case Cell::Lstm:
            // Gate order i, o, f, c; peepholes i, o, f.
            for (int64_t j = 0; j < H; ++j) {
              const A in_gate = f(clipped(xw[j] + hr[j] + pd[j] * c[j]));
              const A forget = input_forget ? A(1) - in_gate : f(clipped(xw[2 * H + j] + hr[2 * H + j] + pd[2 * H + j] * c[j]));
              const A cand = g(clipped(xw[3 * H + j] + hr[3 * H + j]));
              c[j] = forget * c[j] + in_gate * cand;
              const A out_gate = f(clipped(xw[H + j] + hr[H + j] + pd[H + j] * c[j]));
              h[j] = out_gate * hact(c[j]);
            }
            break;
        }
        if (y)
          for (int64_t j = 0; j < H; ++j) y[y_offset(t, d, b) + j] = static_cast<T>(h[j]);
      }
      if (y_h)
        for (int64_t j = 0; j < H; ++j) y_h[state_offset(d, b) + j] = static_cast<T>(h[j]);
      if (y_c)
        for (int64_t j = 0; j < H; ++j) y_c[state_offset(d, b) + j] = static_cast<T>(c[j]);
    }
  });
}

void recurrent_kernel(KernelContext& ctx, Cell cell) {
  const Sizes s = validate(ctx, cell);
  dispatch_float(ctx.input(0).dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    run_cell<T, A>(ctx, cell, s);
  });
}

// ---------------------------------------------------------------------------
std::vector<ir::ValueType> recurrent_infer(InferContext& ctx, Cell cell) {
  const ir::Node& node = ctx.node;
  const DType dt = ctx.inputs[0].dtype;
  const bool batch_major = node.attr_int("layout", 0) == 1;
  const Dim dirs = directions_of(node);
  const Shape& xs = ctx.inputs[0].shape;
  Dim seq = ctx.fresh_dim(), batch = ctx.fresh_dim();
  if (xs.rank_known && xs.rank() == 3) {
    seq = xs.dims[batch_major ? 1 : 0];
    batch = xs.dims[batch_major ? 0 : 1];
  }
  Dim hidden = ctx.fresh_dim();
  if (node.has_attr("hidden_size")) hidden = node.attr_int("hidden_size", 0);
  else if (ctx.inputs.size() > 2 && ctx.inputs[2].shape.rank_known && ctx.inputs[2].shape.rank() == 3)
    hidden = ctx.inputs[2].shape.dims[2];
  const Shape y = batch_major ? Shape({batch, seq, dirs, hidden}) : Shape({seq, dirs, batch, hidden});
  const Shape state = batch_major ? Shape({batch, dirs, hidden}) : Shape({dirs, batch, hidden});
  std::vector<ir::ValueType> out{tensor_type(dt, y), tensor_type(dt, state)};
  if (cell == Cell::Lstm) out.push_back(tensor_type(dt, state));
  out.resize(std::min(out.size(), std::max<size_t>(ctx.num_outputs, 1)));
  return out;
}

// FLOPs: per step and chain, the input and recurrent matrix-vector products
// (2 per multiply-add) plus a few element-wise operations per gate.
Cost recurrent_cost(const CostContext& ctx, Cell cell) {
  Cost c = default_cost(ctx);
  const auto& xs = ctx.inputs[0].shape;
  const auto& ws = ctx.inputs[1].shape;
  const auto& rs = ctx.inputs[2].shape;
  if (xs.fully_known() && ws.fully_known() && rs.fully_known() && xs.rank() == 3 && ws.rank() == 3 && rs.rank() == 3) {
    const Dims x = xs.concrete(), w = ws.concrete(), r = rs.concrete();
    const double steps = static_cast<double>(x[0] * x[1]);  // seq * batch, either layout
    const double dirs = static_cast<double>(w[0]), gh = static_cast<double>(w[1]);
    const double in = static_cast<double>(w[2]), hid = static_cast<double>(r[2]);
    const double elementwise = gh * (cell == Cell::Lstm ? 3.0 : 2.0) + hid * 3.0;
    c.flops = steps * dirs * (2.0 * gh * (in + hid) + elementwise);
  }
  return c;
}

void add_cell(Registry& r, const char* name, Cell cell) {
  r.add({.name = name,
         .kernel = [cell](KernelContext& ctx) { recurrent_kernel(ctx, cell); },
         .infer = [cell](InferContext& ctx) { return recurrent_infer(ctx, cell); },
         .cost = [cell](const CostContext& ctx) { return recurrent_cost(ctx, cell); }});
}

}  // namespace

void register_recurrent(Registry& r) {
  add_cell(r, "RNN", Cell::Rnn);
  add_cell(r, "GRU", Cell::Gru);
  add_cell(r, "LSTM", Cell::Lstm);
}

}  // namespace duet::ops
