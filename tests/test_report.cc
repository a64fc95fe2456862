// The chart module every HTML report draws with (report/chart.h): Pareto
// fronts, log axes, bars, legends, empty data, the data written beside a
// report; and the simulate report's latency/energy Pareto view end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "duet/core/error.h"
#include "duet/report/chart.h"
#include "duet/sim/device.h"
#include "duet/sim/report.h"
#include "duet/sim/simulate.h"
#include "duet/sim/topology.h"
#include "duet/sim/workload.h"
#include "test_util.h"

namespace duet::report {
namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("duet_report_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string read(const fs::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// Self-contained: no scripts, nothing fetched, only the SVG namespace as a URL.
void expect_self_contained(const std::string& svg) {
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("http://"), svg.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(count(svg, "http"), 1u);
  EXPECT_EQ(svg.find("nan"), std::string::npos) << "no NaN coordinates";
}

Chart scatter(std::vector<Series> series, bool pareto = true) {
  Chart c{.title = "latency vs energy (modelled)", .kind = Kind::Scatter, .series = std::move(series), .pareto = pareto};
  c.x.label = "latency ms";
  c.y.label = "mJ";
  return c;
}

std::set<std::pair<double, double>> as_set(const std::vector<Point>& points) {
  std::set<std::pair<double, double>> s;
  for (auto& p : points) s.insert({p.x, p.y});
  return s;
}

TEST(ReportChart, ParetoFrontIsExactlyTheNonDominatedPoints) {
  Series a{.name = "a", .x = {1, 2, 3, 2, 0.5, NAN, 6}, .y = {10, 5, 6, 7, 20, 0, 3},
           .labels = {"A", "B", "C (B beats it)", "E (same x as B, higher)", "G", "nan", "J (D beats it)"}};
  Series b{.name = "b", .x = {4, 5, 10, 2}, .y = {1, 1, 0.5, 5}, .labels = {"D", "F (same y as D, later)", "H", "B again"}};
  const Chart c = scatter({a, b});
  const std::vector<Point> front = pareto_front(c);
  std::vector<std::string> labels;
  for (auto& p : front) labels.push_back(p.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"G", "A", "B", "D", "H"}));
  EXPECT_EQ(front[3].series, "b");

  // Against the definition on random points: kept iff no other point is <= in both and < in one.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> coord(0, 30);  // small range: many ties
  Series r{.name = "random"};
  for (int i = 0; i < 300; ++i) r.x.push_back(coord(rng)), r.y.push_back(coord(rng));
  std::set<std::pair<double, double>> expected;
  for (size_t i = 0; i < r.x.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < r.x.size(); ++j)
      dominated |= r.x[j] <= r.x[i] && r.y[j] <= r.y[i] && (r.x[j] < r.x[i] || r.y[j] < r.y[i]);
    if (!dominated) expected.insert({r.x[i], r.y[i]});
  }
  const auto random_front = pareto_front(scatter({r}));
  EXPECT_EQ(as_set(random_front), expected);
  EXPECT_EQ(random_front.size(), expected.size()) << "each front point once";

  const std::string svg = report::svg(c);
  expect_self_contained(svg);
  EXPECT_NE(svg.find("<g class='pareto'><polyline"), std::string::npos);
  EXPECT_NE(svg.find("Pareto front"), std::string::npos) << "in the legend";
  EXPECT_EQ(count(svg, "<circle"), 10u) << "every finite point, the NaN one left out";
  EXPECT_NE(svg.find("<title>J (D beats it): latency ms 6, mJ 3</title>"), std::string::npos);
  EXPECT_EQ(report::svg(scatter({a, b}, false)).find("class='pareto'"), std::string::npos);
}

TEST(ReportChart, LogAxesOverSeveralDecadesHaveDecadeTicks) {
  Series s{.name = "points", .x = {1e-3, 0.05, 3, 700, -1, 0}, .y = {2e2, 3e3, 4e5, 1e7, 5, 5}};
  Chart c = scatter({s}, false);
  c.x.log = c.y.log = true;
  const std::string svg = report::svg(c);
  expect_self_contained(svg);
  for (const char* tick : {">0.001<", ">0.01<", ">0.1<", ">1<", ">10<", ">100<", ">1000<", ">1e4<", ">1e5<", ">1e6<", ">1e7<"})
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  EXPECT_EQ(svg.find(">1e8<"), std::string::npos) << "the axis ends at the decade above the largest value";
  EXPECT_EQ(count(svg, "<circle"), 4u) << "x <= 0 has no place on a log axis";

  // Linear axes get 1-2-5 steps covering the data.
  Chart linear = scatter({{.name = "p", .x = {0.3, 0.7}, .y = {13, 87}}}, false);
  const std::string lin = report::svg(linear);
  for (const char* tick : {">0.3<", ">0.5<", ">0.7<", ">0<", ">20<", ">100<"}) EXPECT_NE(lin.find(tick), std::string::npos) << tick;
}

TEST(ReportChart, BarChartWithTwoSeriesHasALegend) {
  Chart c{.title = "error by datapath (measured)", .kind = Kind::Bar};
  c.y.label = "relative L2 error (measured)";
  c.categories = {"bf16", "fp8 <e4m3>", "int8"};
  c.series = {{.name = "conv", .y = {0.01, 0.2, 0.05}}, {.name = "gemm", .y = {0.02, 0.3, -0.01}, .color = "#123456"}};
  const std::string svg = report::svg(c);
  expect_self_contained(svg);
  EXPECT_EQ(count(svg, "<rect"), 6u + 2u) << "a bar per category per series, and two legend swatches";
  EXPECT_NE(svg.find("<g class='legend'>"), std::string::npos);
  EXPECT_NE(svg.find(">conv</text>"), std::string::npos);
  EXPECT_NE(svg.find(">gemm</text>"), std::string::npos);
  EXPECT_NE(svg.find("fill='#123456'"), std::string::npos);
  EXPECT_NE(svg.find("<title>fp8 &lt;e4m3&gt; (gemm): 0.3</title>"), std::string::npos) << "escaped tooltip";
  EXPECT_NE(svg.find("relative L2 error (measured)"), std::string::npos);

  // One series: no legend.  Stacked: one bar per category holding every series.
  c.series.pop_back();
  EXPECT_EQ(report::svg(c).find("class='legend'"), std::string::npos);
  c.series.push_back({.name = "more", .y = {1, 2, NAN}});
  c.stacked = true;
  EXPECT_EQ(count(report::svg(c), "<rect"), 5u + 2u);
}

TEST(ReportChart, EmptyOrNonFiniteDataSaysNoData) {
  Chart log_axes = scatter({{.name = "negative", .x = {-1, 0}, .y = {1, 2}}});
  log_axes.x.log = true;
  Chart bars{.title = "bars", .kind = Kind::Bar, .series = {{.name = "nan", .y = {NAN, INFINITY}}}, .categories = {"a", "b"}};
  Chart empty_bars{.title = "no series", .kind = Kind::Bar, .categories = {"a"}};
  Chart mismatched = scatter({{.name = "x without y", .x = {1, 2, 3}}});
  for (const Chart& c : {Chart{}, scatter({}), scatter({{.name = "nan", .x = {NAN, 1}, .y = {2, INFINITY}}}), log_axes,
                         Chart{.kind = Kind::Line, .series = {{.name = "empty"}}}, bars, empty_bars, mismatched}) {
    const std::string svg = report::svg(c);
    EXPECT_NE(svg.find("no data"), std::string::npos) << svg;
    EXPECT_EQ(svg.find("<circle"), std::string::npos);
    EXPECT_EQ(svg.find("<polyline"), std::string::npos);
    EXPECT_TRUE(pareto_front(c).empty());
    EXPECT_NO_THROW(data(c).dump());
  }
  // A line breaks where a value is missing instead of joining across it.
  Chart gap{.kind = Kind::Line, .series = {{.name = "s", .x = {1, 2, 3, 4, 5}, .y = {1, 2, NAN, 4, 5}}}};
  EXPECT_EQ(count(report::svg(gap), "<polyline"), 2u);
}

TEST(ReportChart, DataRoundTripsThePlottedValues) {
  Chart c = scatter({{.name = "t4", .x = {1.5, 3}, .y = {0.25, NAN}, .labels = {"t4, batch 1", "t4, batch 8"}},
                     {.name = "a100", .x = {0.5}, .y = {2}, .labels = {"a100, batch 1"}}});
  c.x.log = true;
  const nlohmann::json j = nlohmann::json::parse(data(c).dump());
  EXPECT_EQ(j["title"], c.title);
  EXPECT_EQ(j["kind"], "scatter");
  EXPECT_EQ(j["x"]["label"], "latency ms");
  EXPECT_EQ(j["x"]["log"], true);
  EXPECT_EQ(j["y"]["log"], false);
  ASSERT_EQ(j["series"].size(), 2u);
  EXPECT_EQ(j["series"][0]["name"], "t4");
  EXPECT_EQ(j["series"][0]["x"], nlohmann::json({1.5, 3}));
  EXPECT_EQ(j["series"][0]["y"][0], 0.25);
  EXPECT_TRUE(j["series"][0]["y"][1].is_null()) << "non-finite values as null";
  EXPECT_EQ(j["series"][0]["labels"][1], "t4, batch 8");
  ASSERT_EQ(j["pareto_front"].size(), 2u);
  EXPECT_EQ(j["pareto_front"][0]["label"], "a100, batch 1");
  EXPECT_EQ(j["pareto_front"][1]["x"], 1.5);

  Chart bars{.title = "b", .kind = Kind::Bar, .series = {{.name = "s", .y = {1, 2}}}, .categories = {"p", "q"}};
  const nlohmann::json jb = data(std::vector<Chart>{bars, c});
  ASSERT_EQ(jb["charts"].size(), 2u);
  EXPECT_EQ(jb["charts"][0]["kind"], "bar");
  EXPECT_EQ(jb["charts"][0]["categories"], nlohmann::json({"p", "q"}));
  EXPECT_EQ(jb["charts"][0]["series"][0]["y"], nlohmann::json({1.0, 2.0}));
}

TEST(ReportWrite, WritesTheHtmlAndItsDataBesideAndNamesAFileItCannotWrite) {
  const fs::path dir = scratch("write");
  const std::string html = page("a <title>", "<p>body</p>");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<title>a &lt;title&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("<style>"), std::string::npos);
  const nlohmann::json plotted = data(std::vector<Chart>{scatter({{.name = "s", .x = {1}, .y = {2}}})});
  write_report((dir / "r.html").string(), html, plotted);
  EXPECT_EQ(read(dir / "r.html"), html);
  EXPECT_EQ(nlohmann::json::parse(read(dir / "r.data.json")), plotted);
  EXPECT_EQ(data_path("out/run.v2.html"), "out/run.v2.data.json");

  auto expect_one_error_naming = [&](const std::string& path, const std::string& named) {
    try {
      write_report(path, html, plotted);
      ADD_FAILURE() << "no error writing " << path;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("'" + named + "'"), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  };
  const std::string missing_dir = (dir / "missing" / "r.html").string();
  expect_one_error_naming(missing_dir, missing_dir);
  fs::create_directories(dir / "blocked.data.json");  // the HTML can be written, its data cannot
  expect_one_error_naming((dir / "blocked.html").string(), (dir / "blocked.data.json").string());
}

// duet simulate's devices and batches are a latency/energy trade-off: the
// report draws every configuration with the Pareto front and writes the data.
TEST(ReportSim, SimulateReportDrawsTheLatencyEnergyParetoFront) {
  const std::string devices = std::string(DUET_SOURCE_DIR) + "/devices";
  const auto w1 = sim::workload_from_topology(sim::read_topology_csv(std::string(DUET_SOURCE_DIR) + "/tests/data/scalesim/resnet18.csv"), 1);
  const auto w8 = sim::workload_from_topology(sim::read_topology_csv(std::string(DUET_SOURCE_DIR) + "/tests/data/scalesim/resnet18.csv"), 8);
  std::vector<sim::SimResult> results;
  for (const char* d : {"t4", "a100", "h100"})
    for (auto* w : {&w1, &w8}) results.push_back(sim::simulate(*w, sim::find_device(devices, d), nullptr, {}));
  const std::string html = sim::html_report("t", results);
  EXPECT_NE(html.find("<g class='pareto'>"), std::string::npos);
  EXPECT_NE(html.find("Latency vs energy per inference (modelled)"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  const nlohmann::json j = sim::report_data(results);
  EXPECT_EQ(j["modelled"], true);
  const nlohmann::json& tradeoff = j["charts"][0];
  EXPECT_EQ(tradeoff["x"]["label"], "latency ms (modelled)");
  ASSERT_FALSE(tradeoff["pareto_front"].empty());
  // The front is exactly the configurations no other one beats on both latency and energy.
  std::set<std::string> expected;
  for (auto& r : results) {
    bool dominated = false;
    for (auto& q : results)
      dominated |= q.latency_s <= r.latency_s && q.energy_per_inference_j <= r.energy_per_inference_j &&
                   (q.latency_s < r.latency_s || q.energy_per_inference_j < r.energy_per_inference_j);
    if (!dominated) expected.insert(r.device_name + ", batch " + std::to_string(r.batch));
  }
  std::set<std::string> front;
  for (auto& p : tradeoff["pareto_front"]) front.insert(p["label"].get<std::string>());
  EXPECT_EQ(front, expected);
  // Every chart of the page is labelled modelled.
  for (auto& c : j["charts"]) EXPECT_NE(c["title"].get<std::string>().find("(modelled)"), std::string::npos) << c["title"];
}

TEST(ReportSim, SimulateCliWritesTheReportDataBeside) {
  const fs::path dir = scratch("cli");
  const std::string html = (dir / "sim.html").string();
  auto r = testutil::run_command(testutil::cli() + " simulate " + std::string(DUET_SOURCE_DIR) +
                                 "/tests/data/scalesim/resnet18.csv --device t4,a100 --batch 1,8 --report " + html);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir / "sim.data.json"));
  const auto j = nlohmann::json::parse(read(dir / "sim.data.json"));
  EXPECT_FALSE(j["charts"][0]["pareto_front"].empty());
  r = testutil::run_command(testutil::cli() + " simulate " + std::string(DUET_SOURCE_DIR) +
                            "/tests/data/scalesim/resnet18.csv --device t4 --report " + (dir / "no" / "sim.html").string());
  EXPECT_NE(r.exit_code, 0);
  // Found before the simulation runs, in one line naming the folder.
  EXPECT_EQ(r.output.rfind("duet: error: --report '", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_EQ(count(r.output, "\n"), 1u) << r.output;
}

}  // namespace
}  // namespace duet::report
