// One file per subcommand; each adds itself to the CLI11 app and returns the
// function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>

#include "duet/core/error.h"
#include "duet/core/progress.h"
#include "duet/ir/graph.h"
#include "duet/runtime/backend.h"

namespace duet::cli {

using Runner = std::function<int()>;

// duet's exit codes (README "Exit codes"; asserted in tests/test_cli.cc).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,        // bad input or a failed run: one "duet: error:" line names it
  kExitUsage = 2,        // the command line: an unknown option, a missing or malformed value
  kExitUnsupported = 3,  // an op, opset, data type or precision Duet cannot run
  kExitCheckFailed = 4,  // what was asked did not hold: a conformance case failed, no plan meets the request
};

// --backend of every command that runs models: "reference", a registered
// backend, or an ordered preference of them ("cuda,cpu"), checked against
// runtime::BackendRegistry::builtin().
inline CLI::Option* add_backend_option(CLI::App* cmd, std::string& backend, const std::string& what) {
  return cmd
      ->add_option("--backend", backend,
                   what + "; an ordered list (e.g. cuda,cpu) places each node on the first backend that claims it")
      ->check([](const std::string& value) -> std::string {
        try {
          for (const std::string& name : runtime::backend_preference(value))
            if (!runtime::BackendRegistry::builtin().contains(name)) runtime::BackendRegistry::builtin().make(name);
        } catch (const Error& e) {
          return e.what();
        }
        return {};
      });
}

// Checks for numeric options with one-line messages (CLI11's PositiveNumber
// prints its range up to DBL_MAX in full).
inline CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        const double x = std::strtod(v.c_str(), nullptr);
        return x > 0 ? std::string() : "must be positive, got " + v;
      },
      "POSITIVE");
}
inline CLI::Validator non_negative() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        const double x = std::strtod(v.c_str(), nullptr);
        return x >= 0 ? std::string() : "must not be negative, got " + v;
      },
      "NON-NEGATIVE");
}

// NAME=LO:HI, the value range an option gives one tensor or input (quantize
// --override, bench --range): NAME is what precedes the last '=', LO and HI
// whole finite numbers; one error line naming the option otherwise.
struct NamedRange {
  std::string name;
  double lo = 0, hi = 0;
};
inline NamedRange parse_named_range(const std::string& option, const std::string& spec) {
  const size_t eq = spec.rfind('=');
  const size_t colon = eq == std::string::npos ? std::string::npos : spec.find(':', eq + 1);
  auto number = [&](const std::string& text, double& into) {
    char* end = nullptr;
    into = std::strtod(text.c_str(), &end);
    return !text.empty() && end == text.c_str() + text.size() && std::isfinite(into);
  };
  NamedRange r;
  const bool ok = eq != std::string::npos && eq > 0 && colon != std::string::npos &&
                  number(spec.substr(eq + 1, colon - eq - 1), r.lo) && number(spec.substr(colon + 1), r.hi);
  DUET_CHECK(ok, option, " '", spec, "': expected NAME=LO:HI with finite numbers");
  r.name = spec.substr(0, eq);
  return r;
}

// Whether the preference list names the cpu backend.
inline bool uses_cpu_backend(const std::string& backend) {
  for (const std::string& name : runtime::backend_preference(backend))
    if (name == "cpu") return true;
  return false;
}

// --precision of run/bench. bf16 is a cpu-backend mode (the reference
// executor computes every op as the graph says); int8 names what a QDQ graph
// (QuantizeLinear/DequantizeLinear pairs, e.g. from duet quantize) already
// asks for: the cpu backend runs its patterns as integer kernels, the
// reference executor by the QDQ definitions — so it checks there is one.
// Returns the session's default precision (numerics::Precision text).
inline std::string parse_precision(const std::string& precision, const std::string& backend, const ir::Graph& graph) {
  if (precision == "int8") {
    for (auto& n : graph.nodes)
      if (n->op_type == "QuantizeLinear" || n->op_type == "DequantizeLinear") return "fp32";
    fail("--precision int8 runs a QDQ model (QuantizeLinear/DequantizeLinear pairs) with integer kernels; this "
         "model has none: make one with duet quantize");
  }
  if (precision != "bf16") return "fp32";
  if (!uses_cpu_backend(backend))
    fail("--precision bf16 needs --backend cpu (the reference executor runs the graph as written)");
  return "bf16";
}

Runner add_info(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_conform(CLI::App& app);
Runner add_formats(CLI::App& app);
Runner add_optimize_graph(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_devices(CLI::App& app);
Runner add_simulate(CLI::App& app);
Runner add_calibrate_host(CLI::App& app);
Runner add_emu_gemm(CLI::App& app);
Runner add_emulate(CLI::App& app);
Runner add_evaluate(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_sparsify(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_plan(CLI::App& app);
Runner add_validate_devices(CLI::App& app);

// Refuses, before the command runs, an output file (-o/--output, --out,
// --report, --save-init, run's --output-dir) that is one of the files the
// command reads (writing it would destroy the input), two outputs naming one
// file, and a file output whose folder is missing or not writable (found
// before the work, not after the first of several files was written).
void check_outputs(const CLI::App& cmd);
// Refuses NaN and infinities given to any floating-point option (CLI11's range
// checks let NaN through: --scale nan trained a model on NaNs to exit 0).
void check_numbers(const CLI::App& cmd);
// Writes the parsed command's effective options as TOML (CLI11's config
// format, the subcommand's options in its own section), for --config.
void write_config(const CLI::App& app, const std::string& path);

// An option's values as the command sees them: given, else its default
// (a list default "[a,b]" as its items).
bool list_option(const CLI::Option& opt);
std::vector<std::string> effective_values(const CLI::Option& opt);

// The subcommand being run (main.cc sets it once parsing succeeded).
const CLI::App*& active_command();
// What produced an output: {"version", "command", "options": every option of
// the command with its effective value, given or default}.
nlohmann::json invocation();
// Every --json output goes through here: an object gains "duet":
// invocation(); an array is wrapped as {"duet": ..., "items": [...]}.
void print_json(const nlohmann::json& j, int indent = 2);

// What reaches stderr besides errors (progress.cc): -q/--quiet is --log-level
// error; warning adds warnings; info (default) adds progress, drawn when stderr
// is a terminal or with --progress; debug draws progress always.
enum class LogLevel { Error = 0, Warning, Info, Debug };
struct Logging {
  LogLevel level = LogLevel::Info;
  bool progress = false;  // --progress: draw it even when stderr is not a terminal
};
Logging& logging();
bool shows(LogLevel level);
bool progress_shown();
// A duet::Progress drawing "COMMAND: stage done/total percent rate elapsed ETA" on
// stderr, or an empty one when progress is not shown.
Progress progress_display(const std::string& command);
// One line on stderr, "COMMAND: text" ("COMMAND: warning: text"), when the level shows.
void note(const std::string& command, const std::string& text, LogLevel level = LogLevel::Info);

}  // namespace duet::cli
