// Placement over an ordered list of backends (maximal runs of consecutive
// nodes of one backend, with the values that cross each run's boundary) and
// the backend registry.
#include <unordered_map>
#include <unordered_set>

#include "duet/core/error.h"
#include "duet/runtime/backend.h"

namespace duet::runtime {

namespace {

// Values read from outside the top-level node list: graph outputs and names
// captured by subgraphs.
std::unordered_set<const ir::Value*> pinned_values(const ir::Graph& g) {
  std::unordered_set<const ir::Value*> pinned(g.outputs.begin(), g.outputs.end());
  for (auto& n : g.nodes)
    for (auto& name : n->captured_names())
      if (auto* v = g.find_value(name)) pinned.insert(v);
  return pinned;
}

}  // namespace

void BackendRegistry::add(const std::string& name, Factory factory) {
  DUET_CHECK(name != "reference" && !name.empty() && name.find(',') == std::string::npos,
             "backend name '", name, "' is reserved or not a plain name");
  DUET_CHECK(!factories_.count(name), "backend '", name, "' registered twice");
  factories_[name] = std::move(factory);
}

std::vector<std::string> BackendRegistry::names() const {
  std::vector<std::string> out;
  for (auto& [name, _] : factories_) out.push_back(name);
  return out;
}

std::unique_ptr<Backend> BackendRegistry::make(const std::string& name) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known = "reference";
    for (auto& [n, _] : factories_) known += ", " + n;
    fail("unknown backend '", name, "' (choose from ", known, ")");
  }
  return it->second();
}

const BackendRegistry& BackendRegistry::builtin() {
  static const BackendRegistry registry = [] {
    BackendRegistry r;
    r.add("cpu", make_cpu_backend);
    return r;
  }();
  return registry;
}

std::vector<std::string> backend_preference(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = list.find(',', start);
    const std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    DUET_CHECK(!name.empty(), "backend list '", list, "' has an empty name");
    if (name == "reference") {
      DUET_CHECK(comma == std::string::npos, "backend list '", list,
                 "': reference runs what no backend claims, so it comes last");
    } else {
      out.push_back(name);
    }
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

Placement place(const ir::Model& model, const std::vector<const Backend*>& preference) {
  const ir::Graph& g = *model.graph;
  Placement placement;
  std::vector<PartitionSpec>& parts = placement.partitions;
  std::vector<int> part_of(g.nodes.size(), -1);
  int previous_backend = -1;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = *g.nodes[i];
    int chosen = -1;
    std::vector<std::pair<std::string, std::string>> refusals;
    for (size_t b = 0; b < preference.size() && chosen < 0; ++b) {
      const Claim c = preference[b]->claim(model, n);
      if (c.claimed) chosen = static_cast<int>(b);
      else refusals.emplace_back(preference[b]->name(), c.reason.empty() ? "not claimed" : c.reason);
    }
    if (chosen < 0) {
      if (!preference.empty()) placement.refusals[&n] = std::move(refusals);
      previous_backend = -1;
      continue;
    }
    if (chosen != previous_backend) {
      parts.emplace_back();
      parts.back().backend = static_cast<size_t>(chosen);
    }
    previous_backend = chosen;
    part_of[i] = static_cast<int>(parts.size()) - 1;
    parts.back().nodes.push_back(&n);
  }
  // Who reads each value, by partition (-1: a node outside every partition).
  std::unordered_map<const ir::Value*, std::unordered_set<int>> readers;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (auto* in : g.nodes[i]->inputs)
      if (in) readers[in].insert(part_of[i]);
  const auto pinned = pinned_values(g);
  for (size_t p = 0; p < parts.size(); ++p) {
    auto& spec = parts[p];
    std::unordered_set<const ir::Value*> produced, seen;
    for (auto* n : spec.nodes) {
      for (auto* in : n->inputs) {
        if (!in || produced.count(in) || g.constant(in) || !seen.insert(in).second) continue;
        spec.inputs.push_back(in);
      }
      for (auto* out : n->outputs) if (out) produced.insert(out);
    }
    for (auto* n : spec.nodes)
      for (auto* out : n->outputs) {
        if (!out) continue;
        bool outside = pinned.count(out) > 0;
        for (int r : readers[out]) outside |= r != static_cast<int>(p);
        if (outside) spec.outputs.push_back(out);
      }
  }
  return placement;
}

}  // namespace duet::runtime
