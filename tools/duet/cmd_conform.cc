// duet conform DIR...: run ONNX backend-style test folders.
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <regex>

#include "commands.h"
#include "duet/conformance/conformance.h"

namespace duet::cli {

Runner add_conform(CLI::App& app) {
  struct Options {
    std::vector<std::string> dirs;
    bool json = false, allow_failures = false;
    bool verbose = false;
    std::string filter;
    int threads = 1;
    std::string backend = "reference";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("conform", "Run ONNX backend test folders (model.onnx + test_data_set_*) and classify each case");
  cmd->add_option("dirs", o->dirs, "Test case folders, or folders of them")->required();
  cmd->add_flag("--json", o->json, "Print results as JSON");
  cmd->add_flag("-v,--verbose", o->verbose, "Print every case that did not pass, with the reason");
  cmd->add_option("--filter", o->filter, "Only cases whose name matches this regular expression");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  cmd->add_flag("--allow-failures", o->allow_failures,
                "Exit 0 even when cases fail (default: exit 4, as a test runner does; unsupported cases never fail)");
  add_backend_option(cmd, o->backend, "reference, or cpu (graph optimizer + oneDNN)");
  return [o]() {
    auto cases = conformance::find_cases(o->dirs);
    if (!o->filter.empty()) {
      std::regex re(o->filter);
      std::vector<std::string> kept;
      for (auto& c : cases) {
        if (std::regex_search(std::filesystem::path(c).filename().string(), re)) kept.push_back(c);
      }
      cases = kept;
    }
    std::map<conformance::Status, int> counts;
    nlohmann::json jcases = nlohmann::json::array();
    const Progress progress = progress_display("conform");
    for (size_t i = 0; i < cases.size(); ++i) {
      if (progress) progress("cases", i, cases.size());
      auto r = conformance::run_case(cases[i], o->threads, o->backend);
      counts[r.status]++;
      nlohmann::json j = {{"name", r.name}, {"status", conformance::status_name(r.status)}};
      if (!r.detail.empty()) j["detail"] = r.detail;
      if (r.status != conformance::Status::Unsupported) j["max_abs_error"] = r.max_abs_error;
      j["seconds"] = r.seconds;
      jcases.push_back(j);
      if (progress && i + 1 == cases.size()) progress("cases", cases.size(), cases.size());
      if (!o->json && (o->verbose && r.status != conformance::Status::Passed)) {
        std::cout << std::left << std::setw(12) << conformance::status_name(r.status) << r.name << ": " << r.detail << "\n";
      }
    }
    const int passed = counts[conformance::Status::Passed];
    const int failed = counts[conformance::Status::Failed];
    const int unsup = counts[conformance::Status::Unsupported];
    if (o->json) {
      nlohmann::json out = {{"passed", passed}, {"failed", failed}, {"unsupported", unsup},
                            {"total", cases.size()}, {"cases", jcases}};
      print_json(out, 1);
    } else {
      const double pct = cases.empty() ? 0 : 100.0 * passed / cases.size();
      std::cout << "conformance: " << passed << " passed, " << failed << " failed, " << unsup << " unsupported of "
                << cases.size() << " cases (" << std::fixed << std::setprecision(1) << pct << "% pass)\n";
    }
    if (failed > 0 && !o->allow_failures) {
      std::cerr << "duet: error: " << failed << " conformance case" << (failed == 1 ? "" : "s")
                << " failed (--allow-failures: exit 0 anyway)\n";
      return kExitCheckFailed;
    }
    return kExitOk;
  };
}

}  // namespace duet::cli
