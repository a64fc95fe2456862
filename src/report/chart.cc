#include "duet/report/chart.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "duet/core/error.h"
#include "duet/io/file.h"
#include "duet/core/html.h"

namespace duet::report {

namespace {

const char* const kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string esc(const std::string& s) { return html_escape(s); }

std::string color_of(const Chart& c, size_t i) { return c.series[i].color.empty() ? kPalette[i % 10] : c.series[i].color; }

// Pixel coordinates with one decimal keep the SVG small.
std::string px(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string value_text(double v, int digits = 4) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}

bool plottable(double v, const Axis& a) { return std::isfinite(v) && (!a.log || v > 0); }

std::string at(const std::vector<std::string>& v, size_t i) { return i < v.size() ? v[i] : ""; }

// Long category names are cut (at a UTF-8 character boundary); the full name stays in the tooltip.
std::string shorten(const std::string& s, size_t max_chars = 40) {
  if (s.size() <= max_chars) return s;
  size_t n = max_chars - 1;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "\u2026";
}

// Maps one axis's values to pixels. The domain is widened to whole ticks:
// decades on a log axis (lo, hi are then exponents), 1-2-5 steps otherwise.
struct Scale {
  bool log = false;
  double lo = 0, hi = 1, step = 1;
  double px0 = 0, px1 = 1;

  double operator()(double v) const {
    const double t = log ? std::log10(v) : v;
    return px0 + (t - lo) / (hi - lo) * (px1 - px0);
  }
};

// `values`: plottable on the axis, at least one.
Scale make_scale(const std::vector<double>& values, bool log, double px0, double px1) {
  Scale s{log, 0, 1, 1, px0, px1};
  auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  double lo = *mn, hi = *mx;
  if (log) {
    s.lo = std::floor(std::log10(lo));
    s.hi = std::max(s.lo + 1, std::ceil(std::log10(hi)));
    s.step = std::max(1.0, std::ceil((s.hi - s.lo) / 10));  // at most ~10 labelled decades
    s.hi = s.lo + std::ceil((s.hi - s.lo) / s.step) * s.step;
    return s;
  }
  const bool integers = std::all_of(values.begin(), values.end(), [](double v) { return v == std::round(v); });
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) / 2;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / 5, magnitude = std::pow(10, std::floor(std::log10(raw))), m = raw / magnitude;
  s.step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * magnitude;
  if (integers) s.step = std::max(s.step, 1.0);  // epochs, indices, batches: no tick between two of them
  s.lo = std::floor(lo / s.step + 1e-9) * s.step;
  s.hi = std::ceil(hi / s.step - 1e-9) * s.step;
  return s;
}

std::string decade_label(int d) { return d >= -3 && d <= 3 ? value_text(std::pow(10.0, d)) : "1e" + std::to_string(d); }

// (pixel, label) of each tick.
std::vector<std::pair<double, std::string>> ticks(const Scale& s) {
  std::vector<std::pair<double, std::string>> t;
  const double count = (s.hi - s.lo) / s.step;
  const int n = std::isfinite(count) ? std::min(100, static_cast<int>(std::lround(count))) : 0;
  for (int i = 0; i <= n; ++i) {
    const double v = s.lo + i * s.step;
    if (s.log) t.push_back({s(std::pow(10, v)), decade_label(static_cast<int>(v))});
    else t.push_back({s(v), value_text(std::fabs(v) < s.step * 1e-9 ? 0.0 : v, 6)});
  }
  return t;
}

std::string open_svg(const Chart& c, int width, int height) {
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height << "' viewBox='0 0 " << width
    << " " << height << "' font-family='sans-serif' font-size='11'>";
  if (!c.title.empty())
    o << "<text x='" << width / 2 << "' y='16' text-anchor='middle' font-size='13' font-weight='bold'>" << esc(c.title) << "</text>";
  return o.str();
}

std::string no_data(const Chart& c) {
  return open_svg(c, c.width, 80) + "<text x='" + std::to_string(c.width / 2) +
         "' y='50' text-anchor='middle' fill='#777'>no data</text></svg>";
}

struct LegendEntry {
  std::string name, color;
  bool dashed;  // the Pareto front
};

std::vector<LegendEntry> legend_entries(const Chart& c) {
  std::vector<LegendEntry> e;
  for (size_t i = 0; i < c.series.size(); ++i) e.push_back({c.series[i].name, color_of(c, i), false});
  if (c.pareto && c.kind == Kind::Scatter) e.push_back({"Pareto front", "#000", true});
  return e;
}

int legend_width(const std::vector<LegendEntry>& entries) {
  if (entries.size() < 2) return 0;
  size_t longest = 0;
  for (auto& e : entries) longest = std::max(longest, shorten(e.name).size());
  return static_cast<int>(longest) * 7 + 34;
}

std::string legend(const std::vector<LegendEntry>& entries, double x, double y) {
  if (entries.size() < 2) return "";
  std::ostringstream o;
  o << "<g class='legend'>";
  for (auto& e : entries) {
    if (e.dashed)
      o << "<line x1='" << px(x) << "' y1='" << px(y + 5) << "' x2='" << px(x + 12) << "' y2='" << px(y + 5) << "' stroke='"
        << e.color << "' stroke-width='1.5' stroke-dasharray='4 2'/>";
    else
      o << "<rect x='" << px(x) << "' y='" << px(y) << "' width='10' height='10' fill='" << e.color << "'/>";
    o << "<text x='" << px(x + 16) << "' y='" << px(y + 9) << "'>" << esc(shorten(e.name)) << "</text>";
    y += 16;
  }
  o << "</g>";
  return o.str();
}

// Grid lines and tick labels of both axes, the axis lines and their labels.
std::string axes(const Chart& c, const Scale& x, const Scale& y, bool categorical_y) {
  std::ostringstream o;
  const double top = y.px1, bottom = y.px0, left = x.px0, right = x.px1;
  for (auto& [p, label] : ticks(x))
    o << "<line x1='" << px(p) << "' y1='" << px(top) << "' x2='" << px(p) << "' y2='" << px(bottom) << "' stroke='#e4e4e4'/>"
      << "<text x='" << px(p) << "' y='" << px(bottom + 14) << "' text-anchor='middle'>" << esc(label) << "</text>";
  if (!categorical_y)
    for (auto& [p, label] : ticks(y))
      o << "<line x1='" << px(left) << "' y1='" << px(p) << "' x2='" << px(right) << "' y2='" << px(p) << "' stroke='#e4e4e4'/>"
        << "<text x='" << px(left - 4) << "' y='" << px(p + 4) << "' text-anchor='end'>" << esc(label) << "</text>";
  o << "<line x1='" << px(left) << "' y1='" << px(bottom) << "' x2='" << px(right) << "' y2='" << px(bottom) << "' stroke='#333'/>"
    << "<line x1='" << px(left) << "' y1='" << px(top) << "' x2='" << px(left) << "' y2='" << px(bottom) << "' stroke='#333'/>";
  const Axis& value_axis = categorical_y ? c.y : c.x;  // bars: the value axis runs along the bottom
  o << "<text x='" << px((left + right) / 2) << "' y='" << px(bottom + 32) << "' text-anchor='middle'>" << esc(value_axis.label)
    << "</text>";
  if (!categorical_y)
    o << "<text x='14' y='" << px((top + bottom) / 2) << "' transform='rotate(-90 14 " << px((top + bottom) / 2)
      << ")' text-anchor='middle'>" << esc(c.y.label) << "</text>";
  return o.str();
}

std::string point_title(const Chart& c, const Series& s, size_t i) {
  const std::string label = at(s.labels, i);
  return esc((label.empty() ? s.name : label) + ": " + c.x.label + " " + value_text(s.x[i]) + ", " + c.y.label + " " +
             value_text(s.y[i]));
}

std::string polyline(const std::vector<std::pair<double, double>>& points, const std::string& color, const char* extra = "") {
  if (points.size() < 2) return "";
  std::ostringstream o;
  o << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5'" << extra << " points='";
  for (auto& [x, y] : points) o << px(x) << "," << px(y) << " ";
  o << "'/>";
  return o.str();
}

std::string xy_svg(const Chart& c) {
  std::vector<double> xs, ys;
  for (auto& s : c.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (plottable(s.x[i], c.x) && plottable(s.y[i], c.y)) xs.push_back(s.x[i]), ys.push_back(s.y[i]);
  if (xs.empty()) return no_data(c);
  const auto entries = legend_entries(c);
  const int legend_w = legend_width(entries);
  const double left = 64, top = c.title.empty() ? 12 : 28, right = c.width - 16 - legend_w, bottom = c.height - 44;
  const Scale x = make_scale(xs, c.x.log, left, right), y = make_scale(ys, c.y.log, bottom, top);
  std::ostringstream o;
  o << open_svg(c, c.width, c.height) << axes(c, x, y, false);
  for (size_t k = 0; k < c.series.size(); ++k) {
    const Series& s = c.series[k];
    const std::string color = color_of(c, k);
    const bool joined = c.kind == Kind::Line || s.line, markers = !s.line;
    std::vector<std::pair<double, double>> run;  // a line breaks where a value is missing
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!plottable(s.x[i], c.x) || !plottable(s.y[i], c.y)) {
        if (joined) o << polyline(run, color);
        run.clear();
        continue;
      }
      run.push_back({x(s.x[i]), y(s.y[i])});
      if (markers)
        o << "<circle cx='" << px(x(s.x[i])) << "' cy='" << px(y(s.y[i])) << "' r='" << (c.kind == Kind::Line ? "2.5" : "3.5")
          << "' fill='" << color << "' fill-opacity='0.8'><title>" << point_title(c, s, i) << "</title></circle>";
    }
    if (joined) o << polyline(run, color);
  }
  if (c.pareto && c.kind == Kind::Scatter) {
    std::vector<std::pair<double, double>> front;
    for (auto& p : pareto_front(c)) front.push_back({x(p.x), y(p.y)});
    o << "<g class='pareto'>" << polyline(front, "#000", " stroke-dasharray='4 2'") << "</g>";
  }
  o << legend(entries, right + 12, top) << "</svg>";
  return o.str();
}

std::string bar_svg(const Chart& c) {
  size_t rows = c.categories.size();
  for (auto& s : c.series) rows = std::max(rows, s.y.size());
  // The value axis covers every bar end (and the zero bars start from on a linear axis).
  std::vector<double> ends;
  if (!c.y.log) ends.push_back(0);
  for (size_t k = 0; k < rows; ++k) {
    double sum = 0;
    for (auto& s : c.series)
      if (k < s.y.size() && plottable(s.y[k], c.y)) {
        sum = c.stacked ? sum + s.y[k] : s.y[k];
        ends.push_back(sum);
      }
  }
  if (ends.size() <= (c.y.log ? 0u : 1u)) return no_data(c);
  size_t longest = 0;
  for (auto& name : c.categories) longest = std::max(longest, shorten(name).size());
  const auto entries = legend_entries(c);
  const double bar = 12, row = (c.stacked ? 1 : c.series.size()) * bar + 8;
  const double left = std::max(40.0, longest * 7.0 + 12), top = c.title.empty() ? 12 : 28;
  const double right = c.width - 56 - legend_width(entries), bottom = top + rows * row;
  const int height = static_cast<int>(bottom) + 44;
  const Scale v = make_scale(ends, c.y.log, left, right);
  const double base = c.y.log ? left : v(0);
  std::ostringstream o;
  o << open_svg(c, c.width, height) << axes(c, v, Scale{false, 0, 1, 1, bottom, top}, true);
  for (size_t k = 0; k < rows; ++k) {
    const std::string category = at(c.categories, k);
    const double row_top = top + k * row + 4;
    o << "<text x='" << px(left - 6) << "' y='" << px(row_top + (row - 8) / 2 + 4) << "' text-anchor='end'>"
      << esc(shorten(category)) << "<title>" << esc(category) << "</title></text>";
    double start = base, sum = 0;
    for (size_t i = 0; i < c.series.size(); ++i) {
      const Series& s = c.series[i];
      if (k >= s.y.size()) continue;
      const double y = row_top + (c.stacked ? 0 : i * bar);
      if (!plottable(s.y[k], c.y)) {  // no bar, but say why the row is empty
        if (!c.stacked) o << "<text x='" << px(base + 4) << "' y='" << px(y + 9) << "'>" << value_text(s.y[k]) << "</text>";
        continue;
      }
      sum = c.stacked ? sum + s.y[k] : s.y[k];
      const double end = v(sum);
      if (!c.stacked) start = base;
      const std::string label = at(s.labels, k);
      o << "<rect x='" << px(std::min(start, end)) << "' y='" << px(y) << "' width='" << px(std::fabs(end - start))
        << "' height='" << px(bar - 1) << "' fill='" << color_of(c, i) << "'><title>"
        << esc(category + (s.name.empty() ? "" : " (" + s.name + ")") + ": " + (label.empty() ? value_text(s.y[k]) : label))
        << "</title></rect>";
      if (!c.stacked)
        o << "<text x='" << px(end >= base ? end + 4 : end - 4) << "' y='" << px(y + 9) << "'"
          << (end >= base ? "" : " text-anchor='end'") << ">" << value_text(s.y[k]) << "</text>";
      start = end;
    }
  }
  o << legend(entries, right + 56, top) << "</svg>";
  return o.str();
}

nlohmann::json values(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
  return a;
}


void write_file(const std::string& path, const std::string& text, const char* what) { io::write_file_atomically(path, text, what); }

}  // namespace

std::vector<Point> pareto_front(const Chart& c) {
  std::vector<Point> points;
  for (auto& s : c.series) {
    if (s.line) continue;  // a curve, not a configuration
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (plottable(s.x[i], c.x) && plottable(s.y[i], c.y)) points.push_back({s.x[i], s.y[i], s.name, at(s.labels, i)});
  }
  // By ascending x (then y), a point is on the front when it is lower than everything before it.
  std::stable_sort(points.begin(), points.end(), [](auto& a, auto& b) { return a.x < b.x || (a.x == b.x && a.y < b.y); });
  std::vector<Point> front;
  double lowest = std::numeric_limits<double>::infinity();
  for (auto& p : points)
    if (p.y < lowest) front.push_back(p), lowest = p.y;
  return front;
}

std::string svg(const Chart& c) { return c.kind == Kind::Bar ? bar_svg(c) : xy_svg(c); }

nlohmann::json data(const Chart& c) {
  static const char* const kKinds[] = {"scatter", "line", "bar"};
  nlohmann::json j;
  j["title"] = c.title;
  j["kind"] = kKinds[static_cast<int>(c.kind)];
  j["x"] = {{"label", c.x.label}, {"log", c.x.log}};
  j["y"] = {{"label", c.y.label}, {"log", c.y.log}};
  if (c.kind == Kind::Bar) {
    j["categories"] = c.categories;
    j["stacked"] = c.stacked;
  }
  j["series"] = nlohmann::json::array();
  for (auto& s : c.series) {
    nlohmann::json js;
    js["name"] = s.name;
    if (c.kind != Kind::Bar) js["x"] = values(s.x);
    js["y"] = values(s.y);
    if (!s.labels.empty()) js["labels"] = s.labels;
    if (s.line) js["line"] = true;
    j["series"].push_back(js);
  }
  if (c.pareto && c.kind == Kind::Scatter) {
    j["pareto_front"] = nlohmann::json::array();
    for (auto& p : pareto_front(c))
      j["pareto_front"].push_back({{"x", p.x}, {"y", p.y}, {"series", p.series}, {"label", p.label}});
  }
  return j;
}

nlohmann::json data(const std::vector<Chart>& charts) {
  nlohmann::json j = {{"charts", nlohmann::json::array()}};
  for (auto& c : charts) j["charts"].push_back(data(c));
  return j;
}

std::string page(const std::string& title, const std::string& body_html) {
  return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + esc(title) +
         "</title><style>body{font-family:sans-serif;margin:20px;max-width:1000px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}th{background:#eee}"
         "table.num td{text-align:right}.note{color:#a00}svg{display:block;margin:8px 0}</style></head><body>" +
         body_html + "</body></html>\n";
}

std::string data_path(const std::string& html_path) {
  return std::filesystem::path(html_path).replace_extension(".data.json").string();
}

void write_report(const std::string& html_path, const std::string& html, const nlohmann::json& data) {
  write_file(html_path, html, "report");
  write_file(data_path(html_path), data.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", "report data");
}

}  // namespace duet::report
