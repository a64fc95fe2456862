// Partitioning: maximal runs of consecutive claimed nodes, with the values
// that cross each run's boundary.
#include <unordered_map>
#include <unordered_set>

#include "duet/runtime/backend.h"

namespace duet::runtime {

namespace {

bool is_constant(const ir::Graph& g, const ir::Value* v) { return g.constant(v) != nullptr; }

// Values read from outside the top-level node list: graph outputs and names
// captured by subgraphs.
std::unordered_set<const ir::Value*> pinned_values(const ir::Graph& g) {
  std::unordered_set<const ir::Value*> pinned(g.outputs.begin(), g.outputs.end());
  for (auto& n : g.nodes)
    for (auto& a : n->attributes) {
      std::vector<const ir::Graph*> subs;
      if (a.g) subs.push_back(a.g.get());
      for (auto& s : a.graphs) subs.push_back(s.get());
      for (auto* s : subs)
        for (auto& name : s->outer_scope_names())
          if (auto* v = g.find_value(name)) pinned.insert(v);
    }
  return pinned;
}

}  // namespace

std::vector<PartitionSpec> partition(const ir::Model& model, const Backend& backend) {
  const ir::Graph& g = *model.graph;
  std::vector<PartitionSpec> parts;
  std::vector<int> part_of(g.nodes.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!backend.claims(model, *g.nodes[i])) continue;
    if (i == 0 || part_of[i - 1] < 0) parts.emplace_back();
    part_of[i] = static_cast<int>(parts.size()) - 1;
    parts.back().nodes.push_back(g.nodes[i].get());
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
        if (!in || produced.count(in) || is_constant(g, in) || !seen.insert(in).second) continue;
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
  return parts;
}

}  // namespace duet::runtime
