// The planner's exact per-layer solver against brute force, its trade-off
// curve against the exhaustive Pareto front, and what it says when no plan fits.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <random>

#include "duet/core/error.h"
#include "duet/plan/solver.h"

using namespace duet;

namespace {

// Every assignment that respects the groups, by recursion over the layers.
void enumerate(const plan::Problem& p, const std::function<void(const std::vector<int>&)>& visit) {
  std::vector<int> choice(p.layers.size(), -1);
  std::function<void(size_t)> rec = [&](size_t l) {
    if (l == p.layers.size()) return visit(choice);
    for (size_t o = 0; o < p.layers[l].options.size(); ++o) {
      bool consistent = true;
      for (size_t e = 0; e < l && consistent; ++e)
        if (!p.layers[l].group.empty() && p.layers[e].group == p.layers[l].group)
          consistent = p.layers[e].options[choice[e]].name == p.layers[l].options[o].name;
      if (!consistent) continue;
      choice[l] = static_cast<int>(o);
      rec(l + 1);
    }
  };
  rec(0);
}

std::vector<double> totals(const plan::Problem& p, const std::vector<int>& choice) {
  std::vector<double> t(p.columns.size(), 0);
  for (size_t l = 0; l < p.layers.size(); ++l)
    for (size_t c = 0; c < t.size(); ++c) t[c] += p.layers[l].options[choice[l]].values[c];
  return t;
}

int column(const plan::Problem& p, const std::string& name) {
  return static_cast<int>(std::find(p.columns.begin(), p.columns.end(), name) - p.columns.begin());
}

bool within_limits(const plan::Problem& p, const std::vector<double>& t) {
  for (const auto& [name, limit] : p.limits)
    if (t[column(p, name)] > limit + 1e-9 * std::max(1.0, std::fabs(limit))) return false;
  return true;
}

// A random instance shaped like a planner's: options are precisions (cheaper
// ones err more), some layers in pairs that must agree, 1-3 limits set between
// the cheapest and the dearest plan so that some instances are infeasible.
plan::Problem random_problem(std::mt19937& rng) {
  const std::vector<std::string> names = {"int4", "int8", "fp16", "fp32"};
  std::uniform_int_distribution<int> n_layers(1, 16), n_opts(1, 4), n_limits(1, 3);
  std::uniform_real_distribution<double> u(0, 1);
  plan::Problem p;
  p.columns = {"latency", "energy", "bytes", "error"};
  p.objective = "error";
  const int layers = n_layers(rng);
  int groups = 0;
  for (int l = 0; l < layers; ++l) {
    plan::Layer layer{"L" + std::to_string(l), "", {}};
    if (l > 0 && u(rng) < 0.3) layer.group = p.layers.back().group.empty() ? "g" + std::to_string(groups++) : p.layers.back().group;
    if (!layer.group.empty() && p.layers.back().group.empty()) p.layers.back().group = layer.group;
    const int k = n_opts(rng);
    std::vector<int> picks = {0, 1, 2, 3};
    std::shuffle(picks.begin(), picks.end(), rng);
    picks.resize(k);
    std::sort(picks.begin(), picks.end());
    for (int o : picks) {
      const double width = 1 << o;  // 1, 2, 4, 8
      layer.options.push_back({names[o], {width * (0.5 + u(rng)), width * (0.3 + u(rng)), width * std::round(1 + 9 * u(rng)),
                                          std::pow(0.1, o) * u(rng)}});
    }
    p.layers.push_back(std::move(layer));
  }
  // Grouped layers need one common option name: give every layer of a group all four.
  for (auto& l : p.layers)
    if (!l.group.empty() && l.options.size() < 4) {
      l.options.clear();
      for (int o = 0; o < 4; ++o) {
        const double width = 1 << o;
        l.options.push_back({names[o], {width * (0.5 + u(rng)), width * (0.3 + u(rng)), width * std::round(1 + 9 * u(rng)),
                                        std::pow(0.1, o) * u(rng)}});
      }
    }
  const std::vector<std::string> limitable = {"latency", "energy", "bytes"};
  const int nl = n_limits(rng);
  for (int i = 0; i < nl; ++i) {
    const std::string& c = limitable[i];
    double lo = 0, hi = 0;
    for (const auto& l : p.layers) {
      double a = 1e300, b = 0;
      for (const auto& o : l.options) a = std::min(a, o.values[column(p, c)]), b = std::max(b, o.values[column(p, c)]);
      lo += a, hi += b;
    }
    p.limits[c] = lo + (hi - lo) * (u(rng) * 1.1 - 0.05);
  }
  return p;
}

size_t space_size(const plan::Problem& p) {
  size_t n = 0;
  enumerate(p, [&](const std::vector<int>&) { ++n; });
  return n;
}

}  // namespace

TEST(PlanSolver, EqualsBruteForceOnRandomInstances) {
  std::mt19937 rng(2026);
  int solved = 0, infeasible = 0, with_groups = 0, sixteen = 0;
  double slowest_s = 0;
  while (solved < 100) {
    plan::Problem p = random_problem(rng);
    if (space_size(p) > (1u << 20)) continue;  // keep brute force quick; groups let 16 layers through
    const int err = column(p, "error");
    double best = INFINITY;
    enumerate(p, [&](const std::vector<int>& choice) {
      const auto t = totals(p, choice);
      if (within_limits(p, t)) best = std::min(best, t[err]);
    });
    const auto start = std::chrono::steady_clock::now();
    const plan::Solution s = plan::solve(p);
    slowest_s = std::max(slowest_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ASSERT_EQ(s.feasible, std::isfinite(best)) << "instance " << solved;
    ASSERT_TRUE(s.exact);
    if (s.feasible) {
      EXPECT_NEAR(s.objective(), best, 1e-12 + 1e-9 * best) << "instance " << solved;
      EXPECT_TRUE(within_limits(p, totals(p, s.choice)));
      for (size_t a = 0; a < p.layers.size(); ++a)
        for (size_t b = 0; b < a; ++b)
          if (!p.layers[a].group.empty() && p.layers[a].group == p.layers[b].group)
            EXPECT_EQ(p.layers[a].options[s.choice[a]].name, p.layers[b].options[s.choice[b]].name);
    }
    infeasible += !s.feasible;
    bool grouped = false;
    for (const auto& l : p.layers) grouped = grouped || !l.group.empty();
    with_groups += grouped;
    sixteen += p.layers.size() == 16;
    ++solved;
  }
  std::printf("100 instances (%d infeasible, %d with groups, %d of 16 layers): slowest solve %.3f ms\n", infeasible,
              with_groups, sixteen, slowest_s * 1e3);
  EXPECT_GT(infeasible, 0);
  EXPECT_LT(infeasible, 50);
  EXPECT_GT(with_groups, 20);
  EXPECT_GT(sixteen, 0);
  EXPECT_LT(slowest_s, 1.0);
}

TEST(PlanSolver, TradeOffEqualsTheExhaustiveFront) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  plan::Problem p;
  p.columns = {"latency", "error"};
  p.objective = "error";
  for (int l = 0; l < 7; ++l) {
    plan::Layer layer{"L" + std::to_string(l), l == 3 || l == 4 ? "skip" : "", {}};
    for (int o = 0; o < 3; ++o)
      layer.options.push_back({"p" + std::to_string(o), {std::round(10 * (1 << o) * (0.5 + u(rng))), std::pow(0.2, o) * u(rng)}});
    p.layers.push_back(std::move(layer));
  }
  std::vector<std::vector<double>> all;
  enumerate(p, [&](const std::vector<int>& choice) { all.push_back(totals(p, choice)); });
  std::set<std::pair<double, double>> exhaustive;
  for (size_t i : plan::pareto_front(all)) exhaustive.insert({all[i][0], all[i][1]});

  std::set<std::pair<double, double>> traced;
  const auto front = plan::trade_off(p, "latency");
  for (size_t i = 0; i < front.size(); ++i) {
    traced.insert({front[i].totals[0], front[i].totals[1]});
    if (i) {
      EXPECT_GT(front[i].totals[0], front[i - 1].totals[0]);  // dearer...
      EXPECT_LT(front[i].totals[1], front[i - 1].totals[1]);  // ...and more accurate
    }
  }
  EXPECT_GT(exhaustive.size(), 5u);
  EXPECT_EQ(traced, exhaustive);
}

TEST(PlanSolver, ParetoFrontKeepsTheFirstOfEqualPoints) {
  const std::vector<std::vector<double>> pts = {{1, 5}, {2, 2}, {1, 5}, {3, 3}, {4, 1}, {2, 2.5}};
  EXPECT_EQ(plan::pareto_front(pts), (std::vector<size_t>{0, 1, 4}));
}

TEST(PlanSolver, InfeasibleNamesTheBindingLimitAndTheNearestPlan) {
  plan::Problem p;
  p.columns = {"latency_us", "mb", "error"};
  p.objective = "error";
  for (int l = 0; l < 3; ++l)
    p.layers.push_back({"conv" + std::to_string(l), "", {{"int8", {100, 1, 0.01}}, {"bf16", {200, 2, 0.001}}}});
  p.limits = {{"latency_us", 250}, {"mb", 6}};
  EXPECT_FALSE(plan::solve(p).feasible);
  const plan::Infeasibility why = plan::diagnose(p);
  EXPECT_EQ(why.binding, "latency_us");
  EXPECT_DOUBLE_EQ(why.nearest, 300);
  EXPECT_TRUE(why.plan.feasible);
  EXPECT_NE(why.message().find("raise the limit to at least 300"), std::string::npos) << why.message();
}

TEST(PlanSolver, GroupsChooseTogether) {
  plan::Problem p;
  p.columns = {"latency", "error"};
  p.objective = "error";
  p.limits["latency"] = 300;
  // Alone, each layer would take its accurate option; tied, they cannot both.
  p.layers.push_back({"main", "add1", {{"int8", {100, 0.5}}, {"bf16", {200, 0.0}}}});
  p.layers.push_back({"shortcut", "add1", {{"bf16", {20, 0.0}}, {"int8", {10, 0.3}}}});
  p.layers.push_back({"head", "", {{"int8", {50, 0.2}}, {"bf16", {60, 0.1}}}});
  const plan::Solution s = plan::solve(p);
  ASSERT_TRUE(s.feasible);
  EXPECT_EQ(p.layers[0].options[s.choice[0]].name, p.layers[1].options[s.choice[1]].name);
  EXPECT_EQ(p.layers[0].options[s.choice[0]].name, "bf16");  // 220 + 60 fits 300
  EXPECT_EQ(p.layers[2].options[s.choice[2]].name, "bf16");

  p.layers[1].options = {{"fp8", {5, 0.1}}};
  EXPECT_THROW(
      try { plan::solve(p); } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("group 'add1'"), std::string::npos) << e.what();
        throw;
      },
      Error);
}

TEST(PlanSolver, LargeProblemsAreSolvedExactlyOrSayHowFarTheyGot) {
  // A recognizer-sized instance: 120 layers, 4 precisions, one latency budget.
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0, 1);
  plan::Problem p;
  p.columns = {"latency", "error"};
  p.objective = "error";
  double lo = 0, hi = 0;
  for (int l = 0; l < 120; ++l) {
    plan::Layer layer{"L" + std::to_string(l), "", {}};
    for (int o = 0; o < 4; ++o)
      layer.options.push_back({"p" + std::to_string(o), {(1 << o) * (1 + 3 * u(rng)), std::pow(0.25, o) * u(rng) * u(rng)}});
    lo += layer.options[0].values[0], hi += layer.options[3].values[0];
    p.layers.push_back(std::move(layer));
  }
  p.limits["latency"] = (lo + hi) / 2;
  const plan::Solution s = plan::solve(p);
  ASSERT_TRUE(s.feasible);
  EXPECT_LE(s.totals[0], p.limits["latency"] * (1 + 1e-9));
  EXPECT_LE(s.lower_bound, s.objective() + 1e-12);
  std::printf("120 x 4: %s after %lld nodes, error %.6g (bound %.6g)\n", s.exact ? "exact" : "stopped",
              static_cast<long long>(s.nodes), s.objective(), s.lower_bound);
  // A tiny node budget: the best plan found so far, marked inexact, with a bound below it.
  const plan::Solution rough = plan::solve(p, {.max_nodes = 200});
  EXPECT_FALSE(rough.exact);
  if (rough.feasible) EXPECT_LE(rough.lower_bound, rough.objective());
  EXPECT_LE(rough.lower_bound, s.objective() + 1e-12);
}

TEST(PlanSolver, ReadsATableAndNamesBadRows) {
  const plan::Problem p = plan::parse_table(
      "layer,group,option,latency_us,mb,error\n"
      "# a comment\n"
      "conv1,,int8,120,1.2,0.004\n"
      "conv1,,bf16,240,2.4,0.0001\n"
      "conv2,res1,int8,80,0.5,0.01\n"
      "conv2,res1,bf16,160,1.0,0.001\n");
  ASSERT_EQ(p.layers.size(), 2u);
  EXPECT_EQ(p.columns, (std::vector<std::string>{"latency_us", "mb", "error"}));
  EXPECT_EQ(p.layers[1].group, "res1");
  EXPECT_DOUBLE_EQ(p.layers[0].options[1].values[0], 240);
  auto message = [](const std::string& text) {
    try {
      plan::parse_table(text, "t.csv");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("layer,option,error\nc1,int8,abc\n").find("t.csv:2: error = 'abc' is not a finite number"), std::string::npos);
  EXPECT_NE(message("layer,error\nc1,0.1\n").find("needs 'layer' and 'option'"), std::string::npos);
  EXPECT_NE(message("layer,option,error\nc1,int8\n").find("t.csv:2: 2 fields, the header has 3"), std::string::npos);
  EXPECT_NE(message("layer,option,error\nc1,int8,1\nc1,int8,2\n").find("twice"), std::string::npos);
  EXPECT_NE(message("").find("empty table"), std::string::npos);
}
