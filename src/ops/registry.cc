#include "duet/ops/registry.h"

#include <cmath>

#include "families.h"

namespace duet::ops {

namespace {
class SerialParallel final : public Parallel {
 public:
  int threads() const override { return 1; }
  void for_range(int64_t n, const std::function<void(int64_t, int64_t)>& fn) override {
    if (n > 0) fn(0, n);
  }
};
}  // namespace

Parallel& serial() {
  static SerialParallel p;
  return p;
}

const Tensor& KernelContext::input(size_t i) const {
  DUET_CHECK(has_input(i), node.label(), ": required input ", i, " is missing");
  return *inputs[i];
}

bool KernelContext::output_requested(size_t i) const {
  return i < node.outputs.size() && node.outputs[i] != nullptr;
}

Tensor& KernelContext::allocate_output(size_t i, DType dtype, Dims dims) {
  DUET_CHECK(i < outputs.size(), node.label(), ": output ", i, " does not exist");
  outputs[i] = Tensor(dtype, std::move(dims), allocator);
  return outputs[i];
}

void KernelContext::set_output(size_t i, Tensor t) {
  DUET_CHECK(i < outputs.size(), node.label(), ": output ", i, " does not exist");
  outputs[i] = std::move(t);
}

void KernelContext::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) const {
  (parallel ? *parallel : serial()).for_range(n, fn);
}

Dim InferContext::fresh_dim() {
  int id = fresh_counter ? (*fresh_counter)++ : 0;
  return Dim::named("unk__" + std::to_string(id));
}

void Registry::add(OpDef def) {
  def.family = current_family;
  auto key = std::make_pair(def.domain, def.name);
  DUET_CHECK(!ops_.count(key), "op ", def.name, " registered twice");
  ops_.emplace(key, std::move(def));
}

const MatrixTraits* matrix_traits(const ir::Node& n) {
  const OpDef* def = Registry::builtin().find(n.domain, n.op_type);
  return def && def->matrix ? &*def->matrix : nullptr;
}

std::set<std::string> matrix_op_types(const std::string& domain) {
  std::set<std::string> out;
  for (const OpDef* def : Registry::builtin().all())
    if (def->matrix && def->domain == domain) out.insert(def->name);
  return out;
}

Dims known_dims(const ir::Value* v) {
  if (!v || v->type.kind != ir::ValueType::Kind::Tensor || !v->type.shape.rank_known || !v->type.shape.fully_known())
    return {};
  return v->type.shape.concrete();
}

const OpDef* Registry::find(const std::string& domain, const std::string& name) const {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = ops_.find({d, name});
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<const OpDef*> Registry::all() const {
  std::vector<const OpDef*> r;
  for (auto& [k, v] : ops_) r.push_back(&v);
  return r;
}

const Registry& Registry::builtin() {
  static const Registry registry = [] {
    Registry r;
    for (auto& family : all_families()) {
      r.current_family = family.name;
      family.register_fn(r);
    }
    r.current_family.clear();
    return r;
  }();
  return registry;
}

// In double: a cost is an estimate, and a declared shape may hold more bytes than a 64-bit count (found by fuzzing).
double value_bytes(const ir::ValueType& t) {
  if (t.kind != ir::ValueType::Kind::Tensor || !t.shape.fully_known()) return 0;
  return std::ceil(static_cast<double>(numel(t.shape.concrete())) * dtype_bits(t.dtype) / 8);
}

Cost default_cost(const CostContext& ctx) {
  Cost c;
  for (auto& t : ctx.inputs) c.input_bytes.push_back(value_bytes(t));
  for (auto& t : ctx.outputs) {
    c.output_bytes.push_back(value_bytes(t));
    if (t.shape.fully_known()) c.flops += static_cast<double>(numel(t.shape.concrete()));
  }
  return c;
}

}  // namespace duet::ops
