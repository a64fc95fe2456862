// The envelope of every --json output: Duet's version and the command's
// effective options beside the results.
#include <cmath>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "duet/core/version.h"

namespace duet::cli {

const CLI::App*& active_command() {
  static const CLI::App* command = nullptr;
  return command;
}

std::vector<std::string> effective_values(const CLI::Option& opt) {
  if (opt.count() > 0) return opt.results();
  const std::string d = opt.get_default_str();
  std::vector<std::string> values;
  if (list_option(opt) && d.size() >= 2 && d.front() == '[' && d.back() == ']') {  // a list default, "[a,b]"
    std::istringstream items(d.substr(1, d.size() - 2));
    for (std::string item; std::getline(items, item, ',');) values.push_back(item);
  } else {
    values.push_back(d);
  }
  return values;
}

bool list_option(const CLI::Option& opt) { return opt.get_expected_max() > 1 || opt.get_items_expected_max() > 1; }

nlohmann::json invocation() {
  nlohmann::json j = {{"version", version()}};
  const CLI::App* cmd = active_command();
  if (!cmd) return j;
  std::string name = cmd->get_name();
  for (const CLI::App* p = cmd->get_parent(); p && p->get_parent(); p = p->get_parent()) name = p->get_name() + " " + name;
  j["command"] = name;
  nlohmann::json options = nlohmann::json::object();
  for (const CLI::Option* opt : cmd->get_options()) {
    const std::string key = opt->get_name();
    if (key == "--help" || key == "-h") continue;
    const bool flag = opt->get_expected_max() == 0 || opt->get_items_expected_max() == 0;
    if (flag) {
      options[key] = opt->count() > 0;
    } else {
      const std::vector<std::string> values = effective_values(*opt);
      options[key] = list_option(*opt) ? nlohmann::json(values) : values.empty() ? nlohmann::json("") : nlohmann::json(values.back());
    }
  }
  j["options"] = options;
  return j;
}

namespace {

// JSON has no NaN or infinity (nlohmann writes them as null, which reads as
// "absent"): they are written as the strings Python's json module reads back,
// "NaN", "Infinity" and "-Infinity".
void spell_non_finite(nlohmann::json& j) {
  if (j.is_number_float() && !std::isfinite(j.get<double>())) {
    const double v = j.get<double>();
    j = std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  } else if (j.is_structured()) {
    for (auto& e : j) spell_non_finite(e);
  }
}

}  // namespace

void print_json(const nlohmann::json& j, int indent) {
  nlohmann::json out = j.is_object() ? j : nlohmann::json{{"items", j}};
  spell_non_finite(out);
  out["duet"] = invocation();
  // Names from a model may hold bytes that are not UTF-8: replaced, not an exception.
  std::cout << out.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace duet::cli
