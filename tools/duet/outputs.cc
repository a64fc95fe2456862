// Checks on a command's output files before it runs (commands.h).
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "commands.h"
#include "duet/io/file.h"

namespace duet::cli {

namespace {

namespace fs = std::filesystem;

// Options that name a file the command writes (run's --output-dir and plan's
// -o name folders; they are checked as any output is, against the inputs).
bool writes(const CLI::Option* o) {
  static const std::set<std::string> kOutputs = {"output", "out", "report", "save-init", "output-dir"};
  for (const std::string& n : o->get_lnames())
    if (kOutputs.count(n)) return true;
  return false;
}

std::string label(const CLI::Option* o) {
  return o->get_lnames().empty() ? o->get_name() : "--" + o->get_lnames().front();
}

fs::path normal(const std::string& p) {
  std::error_code ec;
  fs::path n = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? fs::path(p).lexically_normal() : n;
}

}  // namespace

void check_outputs(const CLI::App& cmd) {
  std::vector<std::pair<const CLI::Option*, std::string>> outputs, inputs;
  for (const CLI::Option* o : cmd.get_options()) {
    if (o->count() == 0) continue;
    for (const std::string& value : o->results())
      if (!value.empty()) (writes(o) ? outputs : inputs).push_back({o, value});
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& [opt, path] = outputs[i];
    for (const auto& [in, value] : inputs)
      if (io::same_file(path, value) || (fs::exists(value) && normal(path) == normal(value)))
        fail(label(opt), " '", path, "' is the ", label(in), " '", value,
             "' this command reads: writing it would destroy it; choose another path");
    for (size_t j = 0; j < i; ++j)
      if (normal(path) == normal(outputs[j].second))
        fail(label(opt), " and ", label(outputs[j].first), " both name '", path, "': one would overwrite the other");
    // A file output needs an existing, writable folder: found now, not after the work.
    const std::string name = opt->get_lnames().empty() ? "" : opt->get_lnames().front();
    if (name != "output-dir" && !(cmd.get_name() == "plan" && name == "output")) {
      const fs::path folder = fs::absolute(path).parent_path();
      if (!fs::is_directory(folder)) fail(label(opt), " '", path, "': the folder '", folder.string(), "' does not exist");
      if (::access(folder.c_str(), W_OK) != 0) fail(label(opt), " '", path, "': the folder '", folder.string(), "' is not writable");
      if (fs::is_directory(path)) fail(label(opt), " '", path, "' is a folder; name a file");
    }
  }
}

void check_numbers(const CLI::App& cmd) {
  for (const CLI::Option* o : cmd.get_options()) {
    if (o->count() == 0 || o->get_type_name().rfind("FLOAT", 0) != 0) continue;
    for (const std::string& value : o->results()) {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (end != value.c_str() && !std::isfinite(v)) fail(label(o), ": '", value, "' is not a finite number");
    }
  }
}

void write_config(const CLI::App& app, const std::string& path) {
  // The innermost parsed command and its section name (formats.convert).
  const CLI::App* cmd = &app;
  std::string section;
  for (bool deeper = true; deeper;) {
    deeper = false;
    for (const CLI::App* child : cmd->get_subcommands())
      if (child->parsed()) cmd = child, deeper = true, section += (section.empty() ? "" : ".") + child->get_name();
  }
  DUET_CHECK(cmd != &app, "--write-config needs a command to write the options of");
  auto quoted = [](const std::string& v) {
    std::string q = "\"";
    for (char c : v) q += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
    return q + "\"";
  };
  std::ostringstream out;
  out << "# duet " << section << " options, written by --write-config; run again with: duet --config " << path << "\n["
      << section << "]\n";
  for (const CLI::Option* o : cmd->get_options()) {
    const std::string name = o->get_lnames().empty() ? o->get_name() : o->get_lnames().front();
    if (name.empty() || name == "help" || o->get_configurable() == false) continue;
    // A default of an option that excludes or needs others would, read back as given, trip those rules.
    if (o->count() == 0 && (!o->get_excludes().empty() || !o->get_needs().empty())) continue;
    const std::vector<std::string> values = effective_values(*o);
    const bool flag = o->get_expected_max() == 0 || o->get_items_expected_max() == 0;
    if (flag) {
      // Only flags that are on: CLI11 counts a flag read as false as given.
      if (o->count() > 0 || (!values.empty() && values.front() == "true")) out << name << " = true\n";
    } else if (list_option(*o)) {
      if (values.empty()) continue;  // an empty list reads back as one missing value
      out << name << " = [";
      for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << quoted(values[i]);
      out << "]\n";
    } else if (!values.empty()) {
      out << name << " = " << quoted(values.back()) << "\n";
    }
  }
  io::write_file_atomically(path, out.str(), "config");
}

}  // namespace duet::cli
