#include "duet/runtime/session.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "duet/onnx/onnx_io.h"
#include "duet/ops/registry.h"
#include "duet/passes/optimize.h"
#include "duet/numerics/precision.h"
#include "duet/runtime/backend.h"
#include "parallel.h"

namespace duet::runtime {

namespace {

// Reuses freed buffers of the same rounded size: with values released after
// their last use, steady-state runs allocate nothing new.
class PoolAllocator final : public Allocator, public std::enable_shared_from_this<PoolAllocator> {
 public:
  std::shared_ptr<uint8_t> allocate(size_t bytes) override {
    const size_t size = round(bytes);
    uint8_t* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        block = it->second.back();
        it->second.pop_back();
        pooled_ -= size;
      }
    }
    if (!block) {
      block = static_cast<uint8_t*>(std::aligned_alloc(64, size + 64));
      if (!block) throw std::bad_alloc();
      std::lock_guard<std::mutex> lock(mutex_);
      ++allocations_;
    }
    std::weak_ptr<PoolAllocator> weak = weak_from_this();
    return std::shared_ptr<uint8_t>(block, [weak, size](uint8_t* p) {
      if (auto pool = weak.lock()) pool->release(p, size);
      else std::free(p);
    });
  }
  ~PoolAllocator() override {
    for (auto& [s, blocks] : free_) for (auto* b : blocks) std::free(b);
  }
  size_t pooled() const { std::lock_guard<std::mutex> lock(mutex_); return pooled_; }
  size_t allocations() const { std::lock_guard<std::mutex> lock(mutex_); return allocations_; }

 private:
  static size_t round(size_t bytes) {
    size_t s = 64;
    while (s < bytes) s = s < (1u << 20) ? s * 2 : s + (1u << 20);
    return s;
  }
  void release(uint8_t* p, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(p);
    pooled_ += size;
  }
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<uint8_t*>> free_;
  size_t pooled_ = 0;
  size_t allocations_ = 0;
};

struct Scope {
  std::unordered_map<std::string, Tensor> values;
  const Scope* parent = nullptr;
  const Tensor* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent) {
      auto it = s->values.find(name);
      if (it != s->values.end()) return &it->second;
    }
    return nullptr;
  }
};

void check_graph_supported(const ir::Graph& g, const ir::Model& model, const ops::Registry& reg) {
  for (auto& node : g.nodes) {
    if (!reg.find(node->domain, node->op_type)) {
      const std::string domain = node->domain.empty() ? "ai.onnx" : node->domain;
      unsupported("unknown op '", node->op_type, "' (domain ", domain, ", opset ", model.opset(node->domain), ") at ",
                  node->label());
    }
    // Judged at the opset it runs under (a model that imports no default-domain opset runs at the latest).
    const std::string arity = onnx_io::arity_problem(node->domain, node->op_type, model.opset_or_latest(node->domain),
                                                     node->inputs.size(), node->outputs.size());
    DUET_CHECK(arity.empty(), node->label(), ": ", arity);
    for (auto& a : node->attributes) {
      if (a.g) check_graph_supported(*a.g, model, reg);
      for (auto& sg : a.graphs) check_graph_supported(*sg, model, reg);
    }
  }
}

}  // namespace

void check_supported(const ir::Model& model) {
  for (auto& o : model.opset_imports) {
    if (o.domain.empty() || o.domain == "ai.onnx") {
      if (o.version > kMaxOnnxOpset || o.version < 1) {
        unsupported("ONNX opset ", o.version, " is not supported (Duet implements opsets 1 to ", kMaxOnnxOpset, ")");
      }
    }
  }
  check_graph_supported(*model.graph, model, ops::Registry::builtin());
}

class Session::Impl final : public ops::SubgraphRunner {
 public:
  Impl(const ir::Model& model, SessionOptions options)
      : model_(model), options_(options), pool_(std::make_shared<PoolAllocator>()), parallel_(options.threads) {}

  std::vector<Tensor> run(const ir::Graph& body, const std::vector<Tensor>& inputs) override {
    DUET_CHECK(inputs.size() <= body.inputs.size(), "subgraph '", body.name, "' takes ", body.inputs.size(),
               " inputs, got ", inputs.size());
    Scope scope;
    scope.parent = current_scope_;
    for (size_t i = 0; i < inputs.size(); ++i) scope.values[body.inputs[i]->name] = inputs[i];
    return run_graph(body, scope);
  }

  // What runs, in order: single nodes on the reference kernels, or compiled
  // partitions of a backend (top-level graph only).
  struct Step {
    const ir::Node* node = nullptr;
    int partition = -1;
    std::vector<const ir::Value*> inputs, outputs;
  };
  struct Plan {
    std::vector<Step> steps;
    std::unordered_map<std::string, size_t> last_use;  // values released after this step
  };

  void compile_partitions(std::vector<std::unique_ptr<Backend>> backends, const BackendOptions& options) {
    backends_ = std::move(backends);
    std::vector<const Backend*> preference;
    for (auto& b : backends_) preference.push_back(b.get());
    Placement placement = place(model_, preference);
    specs_ = std::move(placement.partitions);
    refusals_ = std::move(placement.refusals);
    for (auto& spec : specs_) partitions_.push_back(backends_[spec.backend]->compile(model_, spec, options));
    for (auto& b : backends_) device_backends_ = device_backends_ || b->device_id() >= 0;
  }

  // The backend whose memory holds `t` (device tensors only).
  Backend& owner(const Tensor& t) {
    for (auto& b : backends_)
      if (b->device_id() == t.device()) return *b;
    fail("a value lives on device ", t.device(), " but no backend of this session owns it");
  }

  // The value of `name` in host memory: a device value is copied back once and
  // the host copy replaces it in `scope` (values never change once computed).
  const Tensor* host_value(const std::string& name, Scope& scope) {
    const Tensor* t = scope.find(name);
    if (!t || t->on_host()) return t;
    Tensor host = owner(*t).to_host(*t);
    host.set_device(-1);
    return &(scope.values[name] = std::move(host));
  }

  const Plan& plan(const ir::Graph& g) {
    auto it = plans_.find(&g);
    if (it != plans_.end()) return it->second;
    Plan p;
    std::unordered_map<const ir::Node*, int> first_of;
    std::unordered_set<const ir::Node*> in_partition;
    if (&g == model_.graph.get()) {
      for (size_t k = 0; k < specs_.size(); ++k) {
        first_of[specs_[k].nodes.front()] = static_cast<int>(k);
        for (auto* n : specs_[k].nodes) in_partition.insert(n);
      }
    }
    for (auto& node : g.nodes) {
      auto f = first_of.find(node.get());
      if (f != first_of.end()) {
        const PartitionSpec& spec = specs_[f->second];
        p.steps.push_back({nullptr, f->second, spec.inputs, spec.outputs});
      } else if (!in_partition.count(node.get())) {
        Step step{node.get()};
        step.inputs.assign(node->inputs.begin(), node->inputs.end());
        step.outputs.assign(node->outputs.begin(), node->outputs.end());
        p.steps.push_back(std::move(step));
      }
    }
    for (size_t i = 0; i < p.steps.size(); ++i) {
      const Step& step = p.steps[i];
      for (auto* in : step.inputs) if (in) p.last_use[in->name] = i;
      if (!step.node) continue;
      for (auto& n : step.node->captured_names()) p.last_use[n] = i;
    }
    for (auto* out : g.outputs) p.last_use.erase(out->name);
    return plans_.emplace(&g, std::move(p)).first->second;
  }

  void run_partition(const Step& step, Scope& scope) {
    // A zero-size input (an empty batch): the reference kernels run the
    // partition's nodes; a backend's library may divide by a dimension (oneDNN
    // raised SIGFPE on a batch of 0).
    for (auto* in : step.inputs)
      if (const Tensor* t = scope.find(in->name); t && !t->is_sequence() && !t->is_none() && t->numel() == 0) {
        for (const ir::Node* n : specs_[step.partition].nodes) run_node(*n, scope);
        return;
      }
    Backend& backend = *backends_[specs_[step.partition].backend];
    const int device = backend.device_id();
    std::vector<const Tensor*> inputs;
    std::vector<Tensor> moved;  // inputs copied into the backend's memory for this run
    moved.reserve(step.inputs.size());
    for (auto* in : step.inputs) {
      const Tensor* t = scope.find(in->name);
      DUET_CHECK(t, "partition input '", in->name, "' has no value");
      if (t->device() != device) {
        if (!t->on_host()) t = host_value(in->name, scope);
        if (device >= 0) {
          moved.push_back(backend.to_device(*t));
          moved.back().set_device(device);
          t = &moved.back();
        }
      }
      inputs.push_back(t);
    }
    auto outputs = partitions_[step.partition]->run(inputs, *pool_, options_.profile ? &times_ : nullptr);
    for (size_t k = 0; k < outputs.size(); ++k) scope.values[step.outputs[k]->name] = std::move(outputs[k]);
  }

  void run_node(const ir::Node& node, Scope& scope) {
    // Subgraph bodies read captured values by name: bring them to the host
    // first (only a session with a device backend has values elsewhere).
    if (device_backends_)
      for (auto& name : node.captured_names()) host_value(name, scope);
    const ops::OpDef* def = ops::Registry::builtin().find(node.domain, node.op_type);
    DUET_CHECK(def, "unknown op '", node.op_type, "' at ", node.label());
    ops::KernelContext ctx{node};
    ctx.opset = model_.opset(node.domain);
    if (ctx.opset == 0 && node.domain.empty()) ctx.opset = kMaxOnnxOpset;
    ctx.allocator = pool_.get();
    ctx.parallel = &parallel_;
    ctx.subgraphs = this;
    for (auto* in : node.inputs) {
      if (!in) { ctx.inputs.push_back(nullptr); continue; }
      const Tensor* t = host_value(in->name, scope);
      DUET_CHECK(t, node.label(), ": input '", in->name, "' has no value");
      ctx.inputs.push_back(t);
    }
    ctx.outputs.resize(node.outputs.size());
    const Scope* saved = current_scope_;
    current_scope_ = &scope;
    try {
      def->kernel(ctx);
    } catch (const Unsupported& e) {
      // Kernels name their node; add the label only where one did not.
      current_scope_ = saved;
      const std::string msg = e.what();
      if (msg.find(node.op_type) != std::string::npos) throw;
      throw Unsupported(node.label() + ": " + msg);
    } catch (const Error& e) {
      current_scope_ = saved;
      const std::string msg = e.what();
      if (msg.find(node.op_type) != std::string::npos) throw;
      throw Error(node.label() + ": " + msg);
    } catch (const std::bad_alloc&) {
      current_scope_ = saved;
      throw Error(node.label() + ": out of memory");
    }
    current_scope_ = saved;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      if (!node.outputs[k]) continue;
      DUET_CHECK(ctx.outputs[k].defined() || k > 0 || node.op_type == "Optional", node.label(),
                 ": kernel produced no output ", k);
      if (ctx.outputs[k].defined()) scope.values[node.outputs[k]->name] = std::move(ctx.outputs[k]);
    }
  }

  std::vector<Tensor> run_graph(const ir::Graph& g, Scope& scope) {
    for (auto& [name, t] : g.initializers) {
      if (!scope.values.count(name)) scope.values[name] = t;
    }
    const Plan& p = plan(g);
    for (size_t i = 0; i < p.steps.size(); ++i) {
      const Step& step = p.steps[i];
      if (!step.node) {
        run_partition(step, scope);
      } else if (options_.profile && &g == model_.graph.get()) {
        const auto start = std::chrono::steady_clock::now();
        run_node(*step.node, scope);
        times_[step.node] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      } else {
        run_node(*step.node, scope);
      }
      // Release values whose last reader was this step.
      for (auto* in : step.inputs) {
        if (!in) continue;
        auto it = p.last_use.find(in->name);
        if (it != p.last_use.end() && it->second == i) scope.values.erase(in->name);
      }
    }
    std::vector<Tensor> outputs;
    for (auto* out : g.outputs) {
      const Tensor* t = host_value(out->name, scope);
      DUET_CHECK(t, "graph '", g.name, "': output '", out->name, "' was not computed");
      outputs.push_back(*t);
    }
    return outputs;
  }

  const ir::Model& model_;
  SessionOptions options_;
  std::shared_ptr<PoolAllocator> pool_;
  ThreadPool parallel_;
  const Scope* current_scope_ = nullptr;
  std::unordered_map<const ir::Graph*, Plan> plans_;
  std::vector<std::unique_ptr<Backend>> backends_;  // in preference order
  bool device_backends_ = false;                    // one of them keeps values outside host memory
  std::vector<PartitionSpec> specs_;
  std::vector<std::unique_ptr<CompiledPartition>> partitions_;
  std::map<const ir::Node*, std::vector<std::pair<std::string, std::string>>> refusals_;
  NodeTimes times_;
};

Session::Session(std::shared_ptr<const ir::Model> model, SessionOptions options) : model_(std::move(model)) {
  DUET_CHECK(model_ && model_->graph, "session needs a model");
  ir::verify(*model_->graph);
  check_supported(*model_);
  impl_ = std::make_unique<Impl>(*model_, options);
  const BackendRegistry& registry = options.registry ? *options.registry : BackendRegistry::builtin();
  std::vector<std::unique_ptr<Backend>> backends;
  for (const std::string& name : backend_preference(options.backend)) backends.push_back(registry.make(name));
  const numerics::Precision precision = numerics::parse_precision(options.precision);
  if (precision != numerics::parse_precision("fp32")) {
    DUET_CHECK(!backends.empty(), "precision ", precision.str(),
               " needs a backend (--backend cpu): the reference executor runs the graph as written");
    DUET_CHECK(precision == numerics::parse_precision("bf16"), "precision ", precision.str(),
               ": the cpu backend computes fp32 and bf16; to see what ", precision.str(),
               " does to this model, emulate it (duet emulate -d ", precision.str(), ")");
  }
  if (!backends.empty()) impl_->compile_partitions(std::move(backends), {options.threads, options.precision});
}

Session::~Session() = default;

namespace {

// The values an integer input can take without making the model fail: the
// rows of the table it indexes (token ids into an embedding Gather), else
// [0, 2) (masks, flags).
std::pair<double, double> integer_range(const ir::Graph& graph, const ir::Value& v) {
  for (auto& n : graph.nodes) {
    if (n->op_type != "Gather" || !n->domain.empty() || n->inputs.size() < 2 || n->inputs[1] != &v) continue;
    auto table = n->inputs[0] ? graph.initializers.find(n->inputs[0]->name) : graph.initializers.end();
    if (table == graph.initializers.end() || table->second.rank() == 0) continue;
    int64_t axis = n->attr_int("axis", 0);
    if (axis < 0) axis += static_cast<int64_t>(table->second.rank());
    if (axis >= 0 && axis < static_cast<int64_t>(table->second.rank()))
      return {0.0, static_cast<double>(table->second.dims()[static_cast<size_t>(axis)])};
  }
  return {0.0, 2.0};
}

}  // namespace

std::map<std::string, Tensor> seeded_feeds(const ir::Graph& graph, const std::map<std::string, Dims>& shapes,
                                           const std::map<std::string, Tensor>& given,
                                           const std::map<std::string, std::pair<double, double>>& ranges) {
  std::map<std::string, Tensor> feeds;
  for (auto& [name, t] : given) {
    bool input = false;
    for (auto* v : graph.inputs) input |= v->name == name;
    DUET_CHECK(input, "'", name, "' is not an input of the model");
    feeds[name] = t;
  }
  for (auto& [name, range] : ranges) {
    bool input = false;
    for (auto* v : graph.inputs) input |= v->name == name;
    DUET_CHECK(input, "--range: '", name, "' is not an input of the model");
    DUET_CHECK(range.first < range.second, "--range ", name, ": the range [", range.first, ", ", range.second,
               ") is empty");
  }
  for (auto* v : graph.inputs) {
    if (graph.initializers.count(v->name) || given.count(v->name)) continue;
    Dims dims;
    if (auto it = shapes.find(v->name); it != shapes.end()) {
      dims = it->second;
    } else {
      if (!v->type.shape.rank_known || !v->type.shape.fully_known())
        fail("input '", v->name, "' has shape ", v->type.shape.str(), "; bind it with --shape ", v->name, "=DIMS");
      dims = v->type.shape.concrete();
    }
    const DType dt = v->type.dtype;
    const bool floating = dtype_is_float(dt) && !dtype_is_subbyte(dt);
    const bool integral = (dtype_is_integer(dt) && !dtype_is_subbyte(dt)) || dt == DType::Bool;
    if (!floating && !integral)
      unsupported("input '", v->name, "' is ", dtype_name(dt), "; seeded inputs are numbers (give it with --input)");
    auto r = ranges.find(v->name);
    const std::pair<double, double> range = r != ranges.end() ? r->second
                                            : floating        ? std::make_pair(0.0, 1.0)
                                                              : integer_range(graph, *v);
    const double lo = range.first, hi = range.second;  // not a structured binding: lambdas capture it (clang 14)
    Tensor t(dt, dims);
    std::mt19937 rng(42);
    dispatch_numeric(dt, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* out = t.data<T>();
      if (floating) {
        std::uniform_real_distribution<double> u(lo, hi);
        for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<T>(static_cast<float>(u(rng)));
      } else {
        std::uniform_int_distribution<int64_t> u(static_cast<int64_t>(std::ceil(lo)), static_cast<int64_t>(std::ceil(hi)) - 1);
        for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<T>(u(rng));
      }
    });
    feeds[v->name] = std::move(t);
  }
  return feeds;
}

void prepare_model(ir::Model& model, const SessionOptions& options) {
  if (!backend_preference(options.backend).empty()) {  // backends claim by inferred types and fused forms
    check_supported(model);
    passes::optimize(model);
  }
}

namespace {
void check_feed(const ir::Value& input, const Tensor& t) {
  const auto& type = input.type;
  if (type.kind == ir::ValueType::Kind::Sequence) {
    DUET_CHECK(t.is_sequence(), "input '", input.name, "' must be a sequence");
    return;
  }
  if (type.kind == ir::ValueType::Kind::Optional) return;
  if (type.kind != ir::ValueType::Kind::Tensor) unsupported("input '", input.name, "' is a ", type.str(), "; only tensors, sequences and optionals are supported");
  DUET_CHECK(!t.is_sequence() && !t.is_none(), "input '", input.name, "' must be a tensor");
  if (type.dtype != DType::Undefined && type.dtype != t.dtype()) {
    fail("input '", input.name, "' must be ", dtype_name(type.dtype), ", got ", dtype_name(t.dtype()));
  }
  if (!type.shape.rank_known) return;
  if (type.shape.rank() != t.rank()) {
    fail("input '", input.name, "' must have shape ", type.shape.str(), " (rank ", type.shape.rank(), "), got ",
         dims_str(t.dims()), " (rank ", t.rank(), ")");
  }
  for (size_t i = 0; i < t.rank(); ++i) {
    const Dim& d = type.shape.dims[i];
    if (d.known() && d.value != t.dims()[i]) {
      fail("input '", input.name, "' must have shape ", type.shape.str(), ", got ", dims_str(t.dims()),
           " (dimension ", i, " is ", t.dims()[i], ", expected ", d.value, ")");
    }
  }
}
}  // namespace

std::vector<NamedTensor> Session::run(const std::map<std::string, Tensor>& feeds) {
  const ir::Graph& g = *model_->graph;
  Scope scope;
  std::unordered_set<std::string> input_names;
  for (auto* in : g.inputs) input_names.insert(in->name);
  for (auto& [name, t] : feeds) {
    if (!input_names.count(name)) {
      std::string names;
      for (auto* in : g.inputs) if (!g.initializers.count(in->name)) names += (names.empty() ? "" : ", ") + in->name;
      fail("unknown input name '", name, "'; the model's inputs are: ", names);
    }
  }
  for (auto* in : g.inputs) {
    auto it = feeds.find(in->name);
    if (it == feeds.end()) {
      DUET_CHECK(g.initializers.count(in->name), "missing input '", in->name, "' (", in->type.str(), ")");
      continue;
    }
    check_feed(*in, it->second);
    scope.values[in->name] = it->second;
  }
  auto outputs = impl_->run_graph(g, scope);
  std::vector<NamedTensor> result;
  for (size_t i = 0; i < outputs.size(); ++i) result.push_back({g.outputs[i]->name, std::move(outputs[i])});
  return result;
}

size_t Session::pooled_bytes() const { return impl_->pool_->pooled(); }
size_t Session::allocation_count() const { return impl_->pool_->allocations(); }

const NodeTimes& Session::node_times() const { return impl_->times_; }
void Session::reset_node_times() { impl_->times_.clear(); }

std::vector<std::string> Session::partition_backends() const {
  std::vector<std::string> result;
  for (auto& spec : impl_->specs_) result.push_back(impl_->backends_[spec.backend]->name());
  return result;
}

const std::map<const ir::Node*, std::vector<std::pair<std::string, std::string>>>& Session::refusals() const {
  return impl_->refusals_;
}

std::vector<std::vector<const ir::Node*>> Session::partitions() const {
  std::vector<std::vector<const ir::Node*>> result;
  for (auto& spec : impl_->specs_) result.push_back(spec.nodes);
  return result;
}

}  // namespace duet::runtime
