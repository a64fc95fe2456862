#include "duet/train/report.h"

#include <cmath>
#include <sstream>

#include "duet/core/html.h"
#include "duet/report/chart.h"

namespace duet::train {

namespace {

// One line chart over the epochs; missing values (no test set) leave gaps.
report::Chart epoch_chart(const std::string& title, const std::string& y_label, std::vector<report::Series> series) {
  report::Chart c{.title = title + " (measured)", .kind = report::Kind::Line};
  c.x.label = "epoch";
  c.y.label = y_label + " (measured)";
  for (auto& s : series)
    for (size_t i = 0; i < s.y.size(); ++i) s.x.push_back(static_cast<double>(i + 1));
  c.series = std::move(series);
  c.width = 560;
  c.height = 260;
  return c;
}

std::vector<report::Chart> charts(const TrainingReport& r) {
  report::Series train_loss{.name = "train loss", .color = "#c05030"}, test_loss{.name = "test loss", .color = "#2060c0"};
  report::Series train_acc{.name = "train accuracy", .color = "#c05030"}, test_acc{.name = "test accuracy", .color = "#2060c0"};
  report::Series step{.name = "ms per step", .color = "#307030"};
  for (auto& e : r.epochs) {
    train_loss.y.push_back(e.train_loss);
    test_loss.y.push_back(e.test.samples ? e.test.loss : NAN);
    train_acc.y.push_back(100 * e.train_accuracy);
    test_acc.y.push_back(e.test.samples ? 100 * e.test.accuracy : NAN);
    step.y.push_back(e.ms_per_step);
  }
  return {epoch_chart("Loss", "cross-entropy", {train_loss, test_loss}),
          epoch_chart("Accuracy", "accuracy %", {train_acc, test_acc}),
          epoch_chart("Step time", "ms per step (median)", {step})};
}

}  // namespace

std::string training_report_html(const TrainingReport& r) {
  const std::vector<report::Chart> c = charts(r);
  std::ostringstream o;
  o << "<h1>" << html_escape(r.title) << "</h1><p>Every figure on this page was measured on this machine.</p>"
    << "<h2>Loss</h2>" << report::svg(c[0]) << "<h2>Accuracy</h2>" << report::svg(c[1]) << "<h2>Step time</h2>"
    << report::svg(c[2]) << "<h2>Settings</h2><table>";
  for (auto& [k, v] : r.settings) o << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v) << "</td></tr>";
  o << "</table><h2>Epochs</h2><table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>test loss</th>"
       "<th>test acc</th><th>steps</th><th>skipped</th><th>loss scale</th><th>ms/step</th></tr>";
  for (auto& e : r.epochs)
    o << "<tr><td>" << e.epoch + 1 << "</td><td>" << e.train_loss << "</td><td>" << 100 * e.train_accuracy
      << "%</td><td>" << e.test.loss << "</td><td>" << 100 * e.test.accuracy << "%</td><td>" << e.steps << "</td><td>"
      << e.skipped_steps << "</td><td>" << e.loss_scale << "</td><td>" << e.ms_per_step << "</td></tr>";
  o << "</table>";
  return report::page(r.title, o.str());
}

nlohmann::json training_report_data(const TrainingReport& r) { return report::data(charts(r)); }

}  // namespace duet::train
