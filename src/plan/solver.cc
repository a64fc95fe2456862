#include "duet/plan/solver.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include "duet/core/csv.h"
#include "duet/core/error.h"
#include "duet/core/html.h"

namespace duet::plan {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

int column_index(const Problem& p, const std::string& name, const char* role) {
  for (size_t i = 0; i < p.columns.size(); ++i)
    if (p.columns[i] == name) return static_cast<int>(i);
  std::string known;
  for (const auto& c : p.columns) known += (known.empty() ? "" : ", ") + c;
  fail(role, " '", name, "' is not a column of the problem (", known, ")");
}

// A group of layers that choose together: one option per name all members offer.
struct Item {
  std::vector<int> layers;
  std::vector<std::vector<int>> member_option;  // per item option: each member's option index
  std::vector<std::vector<double>> values;      // per item option: summed values per column
};

std::vector<Item> merge_groups(const Problem& p) {
  std::vector<Item> items;
  std::map<std::string, size_t> by_group;
  for (size_t li = 0; li < p.layers.size(); ++li) {
    const Layer& l = p.layers[li];
    DUET_CHECK(!l.options.empty(), "layer '", l.name, "' has no options");
    for (const Option& o : l.options) {
      DUET_CHECK(o.values.size() == p.columns.size(), "layer '", l.name, "' option '", o.name, "' has ",
                 o.values.size(), " values for ", p.columns.size(), " columns");
      for (size_t c = 0; c < o.values.size(); ++c)
        DUET_CHECK(std::isfinite(o.values[c]), "layer '", l.name, "' option '", o.name, "': ", p.columns[c],
                   " is not a finite number");
    }
    if (l.group.empty() || !by_group.count(l.group)) {
      if (!l.group.empty()) by_group[l.group] = items.size();
      Item it;
      it.layers = {static_cast<int>(li)};
      for (size_t o = 0; o < l.options.size(); ++o) {
        it.member_option.push_back({static_cast<int>(o)});
        it.values.push_back(l.options[o].values);
      }
      items.push_back(std::move(it));
      continue;
    }
    // Join the group: keep the options this layer offers too, by name.
    Item& it = items[by_group[l.group]];
    const Layer& first = p.layers[it.layers[0]];
    Item joined;
    joined.layers = it.layers;
    joined.layers.push_back(static_cast<int>(li));
    for (size_t io = 0; io < it.values.size(); ++io) {
      const std::string& name = first.options[it.member_option[io][0]].name;
      for (size_t o = 0; o < l.options.size(); ++o) {
        if (l.options[o].name != name) continue;
        auto members = it.member_option[io];
        members.push_back(static_cast<int>(o));
        auto values = it.values[io];
        for (size_t c = 0; c < values.size(); ++c) values[c] += l.options[o].values[c];
        joined.member_option.push_back(std::move(members));
        joined.values.push_back(std::move(values));
        break;
      }
    }
    DUET_CHECK(!joined.values.empty(), "group '", l.group, "': layer '", l.name, "' shares no option name with '",
               first.name, "'");
    it = std::move(joined);
  }
  return items;
}

// Options that another option beats or equals in the objective and every
// limited column are never needed (the first of equals stays).
void drop_dominated(Item& it, int objective, const std::vector<int>& limited) {
  std::vector<std::vector<double>> relevant;
  for (const auto& v : it.values) {
    relevant.push_back({v[objective]});
    for (int c : limited) relevant.back().push_back(v[c]);
  }
  Item kept;
  kept.layers = it.layers;
  for (size_t o : pareto_front(relevant)) {
    kept.member_option.push_back(it.member_option[o]);
    kept.values.push_back(it.values[o]);
  }
  it = std::move(kept);
}

// The linear relaxation of "least objective over items d.. with at most B of
// one column": start every item at its cheapest option, then buy the segments
// of each item's lower convex hull (objective against the column) steepest
// first, the last one in part. Stored per suffix as sorted cumulative segments.
struct Relaxation {
  std::vector<std::vector<int>> hulls;                  // per item: its hull's option indices (hull_options)
  std::vector<double> base_cost, base_objective;        // per suffix d
  std::vector<std::vector<double>> cum_cost, cum_gain;  // per suffix: prefix sums of segments, steepest first

  double bound(size_t d, double budget) const {
    double spare = budget - base_cost[d];
    if (spare < 0) return kInf;
    const auto& cc = cum_cost[d];
    const auto& cg = cum_gain[d];
    // Largest j with cc[j] <= spare (cc[0] = 0).
    const size_t j = static_cast<size_t>(std::upper_bound(cc.begin(), cc.end(), spare) - cc.begin()) - 1;
    double gain = cg[j];
    if (j + 1 < cc.size()) gain += (cg[j + 1] - cg[j]) * (spare - cc[j]) / (cc[j + 1] - cc[j]);
    return base_objective[d] - gain;
  }
};

// An item's lower convex hull of (column, objective) as option indices, cheapest in the column first.
std::vector<int> hull_options(const Item& item, int objective, int column) {
  std::vector<int> order(item.values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const auto &va = item.values[a], &vb = item.values[b];
    return va[column] != vb[column] ? va[column] < vb[column] : va[objective] < vb[objective];
  });
  std::vector<int> stair;  // strictly falling objective as the column rises
  for (int o : order)
    if (stair.empty() || item.values[o][objective] < item.values[stair.back()][objective]) stair.push_back(o);
  std::vector<int> hull;
  for (int o : stair) {
    while (hull.size() >= 2) {
      const auto& a = item.values[hull[hull.size() - 2]];
      const auto& b = item.values[hull.back()];
      const auto& c = item.values[o];
      const double cross = (b[column] - a[column]) * (c[objective] - a[objective]) -
                           (b[objective] - a[objective]) * (c[column] - a[column]);
      if (cross <= 0) hull.pop_back();
      else break;
    }
    hull.push_back(o);
  }
  return hull;
}

Relaxation relax(const std::vector<Item>& items, int objective, int column) {
  struct Segment { double cost, gain; };
  const size_t n = items.size();
  Relaxation r;
  std::vector<std::vector<Segment>> hulls(n);
  std::vector<double> start_cost(n), start_obj(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& v = items[i].values;
    const std::vector<int>& h = r.hulls.emplace_back(hull_options(items[i], objective, column));
    start_cost[i] = v[h[0]][column];
    start_obj[i] = v[h[0]][objective];
    for (size_t k = 1; k < h.size(); ++k)
      hulls[i].push_back({v[h[k]][column] - v[h[k - 1]][column], v[h[k - 1]][objective] - v[h[k]][objective]});
  }
  r.base_cost.assign(n + 1, 0);
  r.base_objective.assign(n + 1, 0);
  r.cum_cost.assign(n + 1, {0});
  r.cum_gain.assign(n + 1, {0});
  std::vector<Segment> segments;
  for (size_t d = n; d-- > 0;) {
    r.base_cost[d] = r.base_cost[d + 1] + start_cost[d];
    r.base_objective[d] = r.base_objective[d + 1] + start_obj[d];
    segments.insert(segments.end(), hulls[d].begin(), hulls[d].end());
    std::stable_sort(segments.begin(), segments.end(),
                     [](const Segment& a, const Segment& b) { return a.gain * b.cost > b.gain * a.cost; });
    auto& cc = r.cum_cost[d];
    auto& cg = r.cum_gain[d];
    for (const Segment& s : segments) {
      cc.push_back(cc.back() + s.cost);
      cg.push_back(cg.back() + s.gain);
    }
  }
  return r;
}

class Search {
 public:
  Search(std::vector<Item> items, int objective, std::vector<int> limited, std::vector<double> limits, const SolveOptions& o)
      : items_(std::move(items)), objective_(objective), limited_(std::move(limited)), limits_(std::move(limits)),
        options_(o) {
    const size_t n = items_.size(), k = limited_.size();
    // Each item's options in the order tried: least objective first.
    order_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      order_[i].resize(items_[i].values.size());
      std::iota(order_[i].begin(), order_[i].end(), 0);
      std::stable_sort(order_[i].begin(), order_[i].end(), [&](int a, int b) {
        return items_[i].values[a][objective_] < items_[i].values[b][objective_];
      });
    }
    min_suffix_.assign(n + 1, std::vector<double>(k + 1, 0));
    for (size_t d = n; d-- > 0;)
      for (size_t c = 0; c <= k; ++c) {
        const int col = c == 0 ? objective_ : limited_[c - 1];
        double m = kInf;
        for (const auto& v : items_[d].values) m = std::min(m, v[col]);
        min_suffix_[d][c] = min_suffix_[d + 1][c] + m;
      }
    for (int col : limited_) relaxations_.push_back(relax(items_, objective_, col));
    used_.assign(k, 0);
    current_.assign(n, -1);
  }

  double bound(size_t d, double used_objective) const {
    double b = min_suffix_[d][0];
    for (size_t c = 0; c < limited_.size(); ++c) b = std::max(b, relaxations_[c].bound(d, limits_[c] - used_[c]));
    return used_objective + b;
  }

  void run() {
    root_bound_ = bound(0, 0);
    if (!std::isfinite(root_bound_)) return;
    for (size_t c = 0; c < limited_.size(); ++c) greedy(c);
    dfs(0, 0);
  }

  // A first incumbent: the linear relaxation on limited column c rounded down
  // (every item at its cheapest hull point, then whole hull steps, steepest
  // first, while they fit). Near the optimum, so the search prunes from the start.
  void greedy(size_t c) {
    const int col = limited_[c];
    struct Step { size_t item; int from, to; double cost, gain; };
    std::vector<int> choice(items_.size());
    std::vector<Step> steps;
    double spent = 0;
    for (size_t i = 0; i < items_.size(); ++i) {
      const std::vector<int>& h = relaxations_[c].hulls[i];
      choice[i] = h[0];
      spent += items_[i].values[h[0]][col];
      for (size_t k = 1; k < h.size(); ++k)
        steps.push_back({i, h[k - 1], h[k], items_[i].values[h[k]][col] - items_[i].values[h[k - 1]][col],
                         items_[i].values[h[k - 1]][objective_] - items_[i].values[h[k]][objective_]});
    }
    if (spent > limits_[c]) return;
    // Steepest first; an item's steps are in hull order, so they stay in order.
    std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) { return a.gain * b.cost > b.gain * a.cost; });
    for (const Step& st : steps)
      if (choice[st.item] == st.from && spent + st.cost <= limits_[c]) {
        choice[st.item] = st.to;
        spent += st.cost;
      }
    double obj = 0;
    for (size_t i = 0; i < items_.size(); ++i) obj += items_[i].values[choice[i]][objective_];
    for (size_t k = 0; k < limited_.size(); ++k) {
      double sum = 0;
      for (size_t i = 0; i < items_.size(); ++i) sum += items_[i].values[choice[i]][limited_[k]];
      if (sum > limits_[k]) return;
    }
    if (best_.empty() || obj < best_objective_) {
      best_objective_ = obj;
      best_ = choice;
    }
  }

  bool found() const { return !best_.empty(); }
  bool stopped() const { return stopped_; }
  const std::vector<int>& best() const { return best_; }
  double root_bound() const { return root_bound_; }
  int64_t nodes() const { return nodes_; }

 private:
  void dfs(size_t d, double used_objective) {
    if (stopped_) return;
    if (++nodes_ > options_.max_nodes) {
      stopped_ = true;
      return;
    }
    if (d == items_.size()) {
      if (best_.empty() || used_objective < best_objective_) {
        best_objective_ = used_objective;
        best_ = current_;
      }
      return;
    }
    for (int o : order_[d]) {
      const auto& v = items_[d].values[o];
      bool fits = true;
      for (size_t c = 0; c < limited_.size() && fits; ++c)
        fits = used_[c] + v[limited_[c]] + min_suffix_[d + 1][c + 1] <= limits_[c];
      if (!fits) continue;
      for (size_t c = 0; c < limited_.size(); ++c) used_[c] += v[limited_[c]];
      const double obj = used_objective + v[objective_];
      if (best_.empty() || bound(d + 1, obj) < best_objective_ - std::max(1e-9, options_.gap) * std::fabs(best_objective_)) {
        current_[d] = o;
        dfs(d + 1, obj);
      }
      for (size_t c = 0; c < limited_.size(); ++c) used_[c] -= v[limited_[c]];
      if (stopped_) return;
    }
  }

  std::vector<Item> items_;
  int objective_;
  std::vector<int> limited_;
  std::vector<double> limits_;
  SolveOptions options_;
  std::vector<std::vector<int>> order_;
  std::vector<std::vector<double>> min_suffix_;  // per depth: [objective, limited...] least sums of items d..
  std::vector<Relaxation> relaxations_;
  std::vector<double> used_;
  std::vector<int> current_, best_;
  double best_objective_ = kInf, root_bound_ = 0;
  int64_t nodes_ = 0;
  bool stopped_ = false;
};

std::vector<double> totals_of(const Problem& p, const std::vector<int>& choice) {
  std::vector<double> t(p.columns.size(), 0);
  for (size_t l = 0; l < p.layers.size(); ++l)
    for (size_t c = 0; c < t.size(); ++c) t[c] += p.layers[l].options[choice[l]].values[c];
  return t;
}

std::string number(double v) { return format_number(v, 6); }

}  // namespace

double Solution::objective() const { return totals.empty() ? kInf : totals[objective_column]; }

Solution solve(const Problem& p, const SolveOptions& options) {
  DUET_CHECK(!p.layers.empty(), "the problem has no layers");
  const int objective = column_index(p, p.objective, "objective");
  std::vector<int> limited;
  std::vector<double> limits;
  for (const auto& [name, limit] : p.limits) {
    DUET_CHECK(std::isfinite(limit), "limit on ", name, " is not a finite number");
    limited.push_back(column_index(p, name, "limit"));
    limits.push_back(limit + options.tolerance * std::max(1.0, std::fabs(limit)));
  }
  std::vector<Item> items = merge_groups(p);
  for (Item& it : items) drop_dominated(it, objective, limited);
  // Items whose objective spread is widest first: decisions that matter most are made near the root.
  std::vector<size_t> by_spread(items.size());
  std::iota(by_spread.begin(), by_spread.end(), 0);
  auto spread = [&](const Item& it) {
    double lo = kInf, hi = -kInf;
    for (const auto& v : it.values) lo = std::min(lo, v[objective]), hi = std::max(hi, v[objective]);
    return hi - lo;
  };
  std::stable_sort(by_spread.begin(), by_spread.end(),
                   [&](size_t a, size_t b) { return spread(items[a]) > spread(items[b]); });
  std::vector<Item> ordered;
  for (size_t i : by_spread) ordered.push_back(items[i]);

  Search search(ordered, objective, limited, limits, options);
  search.run();

  Solution s;
  s.objective_column = objective;
  s.nodes = search.nodes();
  s.exact = !search.stopped();
  s.choice.assign(p.layers.size(), -1);
  if (!search.found()) {
    s.lower_bound = search.root_bound();
    return s;
  }
  for (size_t i = 0; i < ordered.size(); ++i) {
    const Item& it = ordered[i];
    for (size_t m = 0; m < it.layers.size(); ++m) s.choice[it.layers[m]] = it.member_option[search.best()[i]][m];
  }
  s.feasible = true;
  s.totals = totals_of(p, s.choice);
  s.lower_bound = s.exact ? s.totals[objective] - options.gap * std::fabs(s.totals[objective]) : search.root_bound();
  return s;
}

std::string Infeasibility::message() const {
  std::string m = "no plan meets " + binding + " <= " + number(limit) + ": ";
  if (!plan.feasible) return m + "the other limits cannot all be met either, even without this one";
  return m + "the least any plan meeting the other limits reaches is " + number(nearest) + " (" +
         number(nearest - limit) + " over, " + number(limit != 0 ? 100 * (nearest - limit) / std::fabs(limit) : kInf) +
         "%): raise the limit to at least " + number(nearest);
}

Infeasibility diagnose(const Problem& p, const SolveOptions& options) {
  Infeasibility best;
  double best_move = kInf;
  for (const auto& [name, limit] : p.limits) {
    Problem relaxed = p;
    relaxed.limits.erase(name);
    relaxed.objective = name;
    Solution s = solve(relaxed, options);
    const double move = s.feasible ? (s.objective() - limit) / std::max(std::fabs(limit), 1e-30) : kInf;
    if (best.binding.empty() || move < best_move) {
      best_move = move;
      best.binding = name;
      best.limit = limit;
      best.nearest = s.feasible ? s.objective() : kInf;
      best.plan = std::move(s);
    }
  }
  DUET_CHECK(!best.binding.empty(), "the problem has no limits: every plan is feasible");
  return best;
}

std::vector<Solution> trade_off(const Problem& p, const std::string& column, size_t max_points, const SolveOptions& o) {
  const int col = column_index(p, column, "trade-off column");
  DUET_CHECK(column != p.objective, "the trade-off column must differ from the objective (", column, ")");
  std::vector<Solution> front;
  Problem q = p;
  while (front.size() < max_points) {
    Solution s = solve(q, o);
    if (!s.feasible) break;
    // Of the plans with this objective, the one least in the column.
    Problem tie = q;
    tie.objective = column;
    const double obj = s.objective();
    tie.limits[p.objective] = std::min(tie.limits.count(p.objective) ? tie.limits[p.objective] : kInf, obj);
    Solution cheapest = solve(tie, o);
    if (cheapest.feasible) {
      cheapest.objective_column = s.objective_column;
      s = std::move(cheapest);
    }
    const double v = s.totals[col];
    front.push_back(std::move(s));
    q.limits[column] = v - 4 * o.tolerance * std::max(1.0, std::fabs(v)) - 1e-300;
  }
  std::reverse(front.begin(), front.end());
  return front;
}

std::vector<size_t> pareto_front(const std::vector<std::vector<double>>& points) {
  std::vector<size_t> front;
  for (size_t a = 0; a < points.size(); ++a) {
    bool dominated = false;
    for (size_t b = 0; b < points.size() && !dominated; ++b) {
      if (a == b) continue;
      bool no_worse = true, better = false;
      for (size_t c = 0; c < points[a].size(); ++c) {
        no_worse = no_worse && points[b][c] <= points[a][c];
        better = better || points[b][c] < points[a][c];
      }
      dominated = no_worse && (better || b < a);
    }
    if (!dominated) front.push_back(a);
  }
  return front;
}


Problem parse_table(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line;
  size_t line_no = 0;
  std::vector<std::string> header;
  while (header.empty() && std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") != std::string::npos && line[line.find_first_not_of(" \t")] != '#')
      header = split_csv_line(line);
  }
  DUET_CHECK(!header.empty(), source, ": empty table (expected a header: layer,option,[group,]COLUMN...)");
  int layer_col = -1, option_col = -1, group_col = -1;
  Problem p;
  std::vector<int> numeric;
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& h = header[i];
    DUET_CHECK(!h.empty(), source, ": header column ", i + 1, " has no name");
    if (h == "layer") layer_col = static_cast<int>(i);
    else if (h == "option") option_col = static_cast<int>(i);
    else if (h == "group") group_col = static_cast<int>(i);
    else {
      DUET_CHECK(std::find(p.columns.begin(), p.columns.end(), h) == p.columns.end(), source, ": column '", h,
                 "' appears twice");
      p.columns.push_back(h);
      numeric.push_back(static_cast<int>(i));
    }
  }
  DUET_CHECK(layer_col >= 0 && option_col >= 0, source, ": the header needs 'layer' and 'option' columns");
  DUET_CHECK(!p.columns.empty(), source, ": no value columns beside layer, option and group");
  std::map<std::string, size_t> layer_index;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto f = split_csv_line(line);
    DUET_CHECK(f.size() == header.size(), source, ":", line_no, ": ", f.size(), " fields, the header has ",
               header.size());
    const std::string& name = f[layer_col];
    DUET_CHECK(!name.empty() && !f[option_col].empty(), source, ":", line_no, ": empty layer or option");
    const std::string group = group_col >= 0 ? f[group_col] : "";
    if (!layer_index.count(name)) {
      layer_index[name] = p.layers.size();
      p.layers.push_back({name, group, {}});
    }
    Layer& l = p.layers[layer_index[name]];
    DUET_CHECK(l.group == group, source, ":", line_no, ": layer '", name, "' is in group '", l.group,
               "' on an earlier line and '", group, "' here");
    for (const Option& o : l.options)
      DUET_CHECK(o.name != f[option_col], source, ":", line_no, ": layer '", name, "' lists option '", o.name,
                 "' twice");
    Option o{f[option_col], {}};
    for (size_t c = 0; c < numeric.size(); ++c) {
      const std::string& s = f[numeric[c]];
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      DUET_CHECK(!s.empty() && end && *end == '\0' && std::isfinite(v), source, ":", line_no, ": ", p.columns[c],
                 " = '", s, "' is not a finite number");
      o.values.push_back(v);
    }
    l.options.push_back(std::move(o));
  }
  DUET_CHECK(!p.layers.empty(), source, ": the table has a header but no rows");
  return p;
}

Problem read_table(const std::string& path) {
  std::ifstream f(path);
  DUET_CHECK(f.good(), "cannot read ", path);
  std::stringstream s;
  s << f.rdbuf();
  return parse_table(s.str(), path);
}

}  // namespace duet::plan
