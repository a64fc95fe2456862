// The exact per-layer choice under budgets: a multiple-choice knapsack with
// several constraints. Each layer takes one of its options; every option has a
// value in each column (latency, bytes, energy, error, ...); the solver picks
// one option per layer minimizing the sum of the objective column subject to
// limits on the sums of any other columns. Layers of one group take the same
// option (a residual shortcut and its main path, layers that share a tensor's
// scale), matched by option name. This is the integer program of HAWQ-V3
// (per-layer bit widths under latency / size limits) solved exactly by branch
// and bound, with linear-relaxation bounds per constrained column.
//
//   plan::Problem p;
//   p.columns = {"latency_us", "error"};
//   p.objective = "error";
//   p.limits["latency_us"] = 900;
//   p.layers.push_back({"conv1", "", {{"int8", {120, 0.004}}, {"bf16", {240, 0.0001}}}});
//   const plan::Solution s = plan::solve(p);   // s.choice[i]: option index of layer i
//
// Deterministic: the same problem gives the same solution, ties broken by the
// lower option index. A search stopped by max_nodes returns the best plan found
// with exact = false and a lower bound on the optimum (the gap is what the
// heuristic left uncovered).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace duet::plan {

struct Option {
  std::string name;
  std::vector<double> values;  // one per Problem::columns
};

struct Layer {
  std::string name;
  std::string group;  // empty: alone
  std::vector<Option> options;
};

struct Problem {
  std::vector<std::string> columns;
  std::string objective;                // a column, minimized
  std::map<std::string, double> limits; // column -> the most its sum may be
  std::vector<Layer> layers;
};

struct SolveOptions {
  int64_t max_nodes = 20'000'000;  // search nodes before settling for the best found
  double tolerance = 1e-9;         // relative slack on limits (sums of floating-point figures)
  // Relative optimality gap: stop proving once no plan can beat the best found
  // by more than this share (0: exact). Near-ties among many options (fp32,
  // tf32, bf16 differing in the 7th digit over 50 layers) make exact proofs
  // exponential; a planner can settle for 0.1%.
  double gap = 0;
};

struct Solution {
  bool feasible = false;
  std::vector<int> choice;     // per layer: index into its options (-1 when infeasible)
  std::vector<double> totals;  // per column
  bool exact = true;           // false: max_nodes stopped the search
  double lower_bound = 0;      // on the objective: totals[objective] x (1 - gap) when the search completed
  int64_t nodes = 0;           // search nodes explored
  double objective() const;    // totals at the objective column (set by solve)
  int objective_column = 0;
};

// One clear error for a malformed problem (unknown column, a value row of the
// wrong length, a layer without options, a group whose layers share no option
// name, non-finite values).
Solution solve(const Problem& problem, const SolveOptions& options = {});

// Why a problem has no solution: the constraint that binds, and the nearest
// plan that meets every other limit — the one with the smallest value of the
// binding column — and how far that limit must move.
struct Infeasibility {
  std::string binding;       // the column whose limit cannot be met
  double limit = 0;          // its limit
  double nearest = 0;        // the least value of that column any plan meeting the other limits reaches
  Solution plan;             // that plan (feasible = false when even the other limits conflict)
  std::string message() const;  // one line: "latency_us must be at least 812.5 (limit 700): ..."
};
Infeasibility diagnose(const Problem& problem, const SolveOptions& options = {});

// The exact trade-off between the objective and one column: every plan on the
// Pareto front of (column total, objective total), cheapest in the column first,
// found by solving at each budget just under the previous plan's total. Other
// limits in the problem still apply. At most max_points plans.
std::vector<Solution> trade_off(const Problem& problem, const std::string& column, size_t max_points = 1000,
                                const SolveOptions& options = {});

// Indices of the points not dominated in every coordinate (each minimized):
// a point is dominated when another is no worse in all and better in one.
// Ties (identical points) keep the first. O(n^2); the order of the input is kept.
std::vector<size_t> pareto_front(const std::vector<std::vector<double>>& points);

// A per-layer table in CSV (duet plan --solve): a header naming layer, option,
// an optional group column, and any number of numeric columns; one row per
// (layer, option). Layers keep their first appearance's order.
Problem read_table(const std::string& path);
Problem parse_table(const std::string& text, const std::string& source = "table");

}  // namespace duet::plan
