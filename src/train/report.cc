#include "duet/train/report.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "duet/core/html.h"

namespace duet::train {

namespace {

struct Series {
  std::string name, colour;
  std::vector<double> values;  // one per epoch (NaN: missing)
};

// A line chart of several series over the epochs, y from 0 to the largest value.
std::string line_chart(const std::vector<Series>& series, const std::string& y_label, bool percent) {
  const int W = 560, H = 260, left = 60, right = 150, top = 16, bottom = 40;
  const int pw = W - left - right, ph = H - top - bottom;
  size_t n = 0;
  double ymax = 0;
  for (auto& s : series) {
    n = std::max(n, s.values.size());
    for (double v : s.values)
      if (std::isfinite(v)) ymax = std::max(ymax, v);
  }
  if (percent) ymax = 1.0;
  if (ymax <= 0) ymax = 1;
  auto x = [&](size_t i) { return left + (n > 1 ? pw * static_cast<double>(i) / static_cast<double>(n - 1) : pw / 2.0); };
  auto y = [&](double v) { return top + ph * (1 - v / ymax); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-size='11'>"
    << "<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph << "' fill='none' stroke='#888'/>";
  for (int k = 0; k <= 4; ++k) {
    const double v = ymax * k / 4;
    o << "<text x='" << left - 6 << "' y='" << y(v) + 4 << "' text-anchor='end'>";
    if (percent) o << static_cast<int>(std::lround(100 * v)) << "%";
    else o << std::setprecision(3) << v;
    o << "</text>";
  }
  o << "<text x='" << left + pw / 2 << "' y='" << H - 8 << "' text-anchor='middle'>epoch</text>"
    << "<text x='12' y='" << top + ph / 2 << "' transform='rotate(-90 12 " << top + ph / 2 << ")' text-anchor='middle'>"
    << html_escape(y_label) << " (measured)</text>";
  for (size_t i = 0; i < n; ++i)
    o << "<text x='" << x(i) << "' y='" << top + ph + 14 << "' text-anchor='middle'>" << i + 1 << "</text>";
  int row = 0;
  for (auto& s : series) {
    o << "<polyline fill='none' stroke='" << s.colour << "' stroke-width='2' points='";
    for (size_t i = 0; i < s.values.size(); ++i)
      if (std::isfinite(s.values[i])) o << x(i) << "," << y(s.values[i]) << " ";
    o << "'/><text x='" << left + pw + 10 << "' y='" << top + 14 + 16 * row++ << "' fill='" << s.colour << "'>"
      << html_escape(s.name) << "</text>";
  }
  o << "</svg>";
  return o.str();
}

}  // namespace

std::string training_report_html(const TrainingReport& r) {
  Series train_loss{"train loss", "#c05030", {}}, test_loss{"test loss", "#2060c0", {}};
  Series train_acc{"train accuracy", "#c05030", {}}, test_acc{"test accuracy", "#2060c0", {}};
  Series step{"ms per step", "#307030", {}};
  for (auto& e : r.epochs) {
    train_loss.values.push_back(e.train_loss);
    test_loss.values.push_back(e.test.samples ? e.test.loss : NAN);
    train_acc.values.push_back(e.train_accuracy);
    test_acc.values.push_back(e.test.samples ? e.test.accuracy : NAN);
    step.values.push_back(e.ms_per_step);
  }
  std::ostringstream o;
  o << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" << html_escape(r.title) << "</title>"
    << "<style>body{font-family:sans-serif;margin:24px;max-width:1000px}td,th{padding:2px 10px;text-align:left}"
       "table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style></head><body>"
    << "<h1>" << html_escape(r.title) << "</h1><p>Every figure on this page was measured on this machine.</p>"
    << "<h2>Loss</h2>" << line_chart({train_loss, test_loss}, "cross-entropy", false)
    << "<h2>Accuracy</h2>" << line_chart({train_acc, test_acc}, "accuracy", true)
    << "<h2>Step time</h2>" << line_chart({step}, "ms per step (median)", false) << "<h2>Settings</h2><table>";
  for (auto& [k, v] : r.settings) o << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v) << "</td></tr>";
  o << "</table><h2>Epochs</h2><table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>test loss</th>"
       "<th>test acc</th><th>steps</th><th>skipped</th><th>loss scale</th><th>ms/step</th></tr>";
  for (auto& e : r.epochs)
    o << "<tr><td>" << e.epoch + 1 << "</td><td>" << e.train_loss << "</td><td>" << 100 * e.train_accuracy
      << "%</td><td>" << e.test.loss << "</td><td>" << 100 * e.test.accuracy << "%</td><td>" << e.steps << "</td><td>"
      << e.skipped_steps << "</td><td>" << e.loss_scale << "</td><td>" << e.ms_per_step << "</td></tr>";
  o << "</table></body></html>\n";
  return o.str();
}

}  // namespace duet::train
