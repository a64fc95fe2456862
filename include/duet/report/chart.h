// The charts every HTML report draws: a small declarative model (scatter with
// an optional Pareto front, line, bar; linear or log axes) rendered to inline
// SVG with no scripts or external resources, plus the same data as JSON so a
// report can write what it plotted beside itself.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace duet::report {

enum class Kind { Scatter, Line, Bar };

struct Series {
  std::string name;
  std::vector<double> x, y;         // bar: y[k] is the value of categories[k]; x unused
  std::vector<std::string> labels;  // per point (bar: per category) tooltip; empty: the series name
  std::string color;                // empty: the palette's next colour
  bool line = false;                // scatter: drawn as a line without markers (a model curve among points)
};

struct Axis {
  std::string label;
  bool log = false;  // values <= 0 are not plotted
};

struct Chart {
  std::string title;
  Kind kind = Kind::Scatter;
  Axis x, y;  // bar: y is the value axis (bars are horizontal so long category names stay readable)
  std::vector<Series> series;
  bool pareto = false;                  // scatter: draw the lower-left Pareto front (minimize x and y) of all points
  std::vector<std::string> categories;  // bar: one row per category
  bool stacked = false;                 // bar: series laid end to end in one bar per category
  int width = 640, height = 360;        // bar: the height follows the number of categories
};

struct Point {
  double x, y;
  std::string series, label;
};

// The points no other plotted point beats in both x and y, by ascending x.
std::vector<Point> pareto_front(const Chart& chart);

std::string svg(const Chart& chart);
nlohmann::json data(const Chart& chart);  // title, kind, axes, series (non-finite values as null), Pareto front
nlohmann::json data(const std::vector<Chart>& charts);  // {"charts": [...]}

// A whole HTML page with the style the reports share.
std::string page(const std::string& title, const std::string& body_html);

// Writes `html` to html_path and `data` beside it as <html_path without extension>.data.json.
void write_report(const std::string& html_path, const std::string& html, const nlohmann::json& data);
std::string data_path(const std::string& html_path);

}  // namespace duet::report
