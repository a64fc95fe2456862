// duet validate-devices [--points CSV] [--model NAME=FILE] [--fit KIND] [--set KEY=VALUE] [--json]:
// every published measurement of devices/validation/published.csv beside what
// the simulator models for it, with the error; --fit searches a device kind's
// [efficiency] parameters on the points marked `fit` and reports both halves.
#include <iomanip>
#include <iostream>
#include <set>

#include "commands.h"
#include "duet/core/html.h"
#include "duet/sim/published.h"

namespace duet::cli {

Runner add_validate_devices(CLI::App& app) {
  struct Options {
    std::string points, dir = sim::default_devices_dir(), fit;
    std::vector<std::string> models, sets;
    int64_t offline_batch = 256;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("validate-devices",
                                 "Published measurements of real devices (MLPerf, vendor tables) beside the simulator's "
                                 "modelled figures, with the error; --fit fits a device kind's [efficiency]");
  cmd->add_option("--points", o->points, "Published points (CSV; default: the catalog's validation/published.csv)");
  cmd->add_option("--model", o->models,
                  "The ONNX file of a workload the points name, NAME=FILE (repeatable), e.g. resnet50=resnet50.onnx");
  cmd->add_option("--devices", o->dir, "Catalog folder (default: $DUET_DEVICES or the source tree's devices/)");
  cmd->add_option("--set", o->sets, "Override a device parameter for every device, KEY=VALUE (repeatable)");
  cmd->add_option("--offline-batch", o->offline_batch, "Batch for throughput points that state none")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--fit", o->fit, "Fit the [efficiency] parameters of this device kind (gpu, accelerator) on the fit points");
  cmd->add_flag("--json", o->json, "Print as JSON");
  return [o]() {
    sim::ValidationRequest r;
    r.catalog_dir = o->dir;
    r.offline_batch = o->offline_batch;
    for (const std::string& s : o->sets) r.overrides.push_back(sim::parse_override(s));
    for (const std::string& m : o->models) {
      const size_t eq = m.find('=');
      DUET_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < m.size(), "--model wants NAME=FILE, got '", m, "'");
      r.workloads[m.substr(0, eq)] = m.substr(eq + 1);
    }
    const std::string path = o->points.empty() ? o->dir + "/validation/published.csv" : o->points;
    const std::vector<sim::PublishedPoint> points = sim::read_published(path);
    nlohmann::json j;
    if (!o->fit.empty()) {
      const sim::EfficiencyFit f = sim::fit_efficiency(points, r, o->fit);
      for (const sim::Override& ov : f.parameters) {
        r.kind_overrides[o->fit].push_back(ov);
        j["fit"]["parameters"][ov.key] = ov.value;
      }
      j["fit"]["kind"] = o->fit;
      j["fit"]["candidates"] = f.candidates;
      if (!o->json) {
        std::cout << "fitted [efficiency] for kind " << o->fit << " (" << f.candidates << " parameter sets tried):";
        for (const sim::Override& ov : f.parameters) std::cout << " " << ov.key << "=" << ov.value;
        std::cout << "\n";
      }
    }
    const std::vector<sim::PointCheck> checks = sim::check_published(points, r);
    const sim::ErrorSummary all = sim::summarize(checks), fit = sim::summarize(checks, "fit"),
                            check = sim::summarize(checks, "check");
    if (all.points == 0) {
      std::set<std::string> named;
      for (const sim::PublishedPoint& p : points)
        if (!p.device_id.empty()) named.insert(p.workload);
      std::string list;
      for (const std::string& w : named) list += (list.empty() ? "" : ", ") + w;
      fail("no point could be checked: give the model of a workload the points on catalog devices name (", list,
           ") with --model NAME=FILE");
    }
    if (o->json) {
      for (const sim::PointCheck& c : checks) {
        nlohmann::json p{{"device_id", c.point.device_id}, {"device", c.point.device}, {"workload", c.point.workload},
                         {"scenario", c.point.scenario}, {"precision", c.point.precision}, {"metric", c.point.metric},
                         {"published", c.point.value}, {"published_batch", c.point.batch}, {"split", c.point.split},
                         {"source", c.point.source}};
        if (c.skipped.empty())
          p.update({{"batch", c.batch}, {"modelled", c.modelled}, {"error", c.error}, {"bound", c.bound}});
        else
          p["skipped"] = c.skipped;
        j["points"].push_back(p);
      }
      auto summary = [](const sim::ErrorSummary& s) {
        return nlohmann::json{{"points", s.points}, {"median_abs_error", s.median_abs}, {"max_abs_error", s.max_abs}};
      };
      j["summary"] = {{"all", summary(all)}, {"fit", summary(fit)}, {"check", summary(check)}};
      j["published"] = "measured by others (the source of each point)";
      j["modelled"] = "duet's simulator";
      print_json(j);
      return 0;
    }
    std::cout << std::left << std::setw(13) << "device" << std::setw(11) << "workload" << std::setw(13) << "scenario"
              << std::setw(6) << "prec" << std::right << std::setw(6) << "batch" << std::setw(15) << "published"
              << std::setw(15) << "modelled" << std::setw(10) << "error" << "  " << std::left << std::setw(9) << "bound"
              << "split\n";
    size_t skipped = 0;
    for (const sim::PointCheck& c : checks) {
      if (!c.skipped.empty()) {
        ++skipped;
        continue;
      }
      const std::string unit = c.point.metric == "latency" ? " ms" : " /s";
      std::cout << std::left << std::setw(13) << c.point.device_id << std::setw(11) << c.point.workload << std::setw(13)
                << c.point.scenario << std::setw(6) << c.point.precision << std::right << std::setw(6) << c.batch
                << std::setw(15) << format_number(c.point.value, 4) + unit << std::setw(15)
                << format_number(c.modelled, 4) + unit << std::setw(9) << format_number(100 * c.error, 3) << "%  "
                << std::left << std::setw(9) << c.bound << c.point.split << "\n";
    }
    auto line = [](const char* what, const sim::ErrorSummary& s) {
      std::cout << what << ": " << s.points << " points, median |error| " << format_number(100 * s.median_abs, 3)
                << "%, largest " << format_number(100 * s.max_abs, 3) << "%\n";
    };
    line("fit half", fit);
    line("check half", check);
    line("all", all);
    if (skipped)
      std::cout << skipped << " points not checked (no catalog entry, or no --model for their workload; --json lists why)\n";
    std::cout << "published: measured by others (each point's source in " << path << "); modelled: duet's simulator\n";
    return 0;
  };
}

}  // namespace duet::cli
