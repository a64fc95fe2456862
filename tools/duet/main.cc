// duet: the command-line tool, thin over the library.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <vector>

#include "commands.h"
#include "duet/core/version.h"
#include "duet/core/error.h"

// oneDNN (Debian's build) runs on OpenMP (libgomp), whose idle workers spin
// before they sleep. On a shared machine a spinning worker takes the core a
// busy thread needs (PaddleOCR rec: 105 ms passive vs 2.2 s with libgomp's
// default spin beside a compile job); on a quiet one sleeping costs a wake-up
// per primitive (PaddleOCR cls: 2.7 ms passive vs 0.66 ms spinning 100k
// iterations; ResNet-18 54 vs 30 ms). libgomp reads its settings when it
// loads, before main, so duet looks at how many other tasks are running now
// and restarts itself once, unless the user set OMP_WAIT_POLICY or
// GOMP_SPINCOUNT. "Now" is /proc/loadavg's running-task count (the median of
// three readings a millisecond apart, less duet itself), not the one-minute
// load average: that one still counts a job that ended seconds ago (a
// benchmark peer run just before duet made it choose sleeping threads).
void choose_openmp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  std::vector<long> others;
  for (int i = 0; i < 3; ++i) {
    if (i) usleep(1000);
    long running = 0, total = 0;
    double load[3];
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf %lf %lf %ld/%ld", &load[0], &load[1], &load[2], &running, &total) == 5)
        others.push_back(running - 1);
      std::fclose(f);
    }
  }
  if (others.empty()) return;  // no /proc: libgomp's defaults
  std::sort(others.begin(), others.end());
  const long busy = others[others.size() / 2];
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (2 * busy < cores) setenv("GOMP_SPINCOUNT", "100000", 1);
  else setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

int main(int argc, char** argv) {
  choose_openmp_wait_policy(argv);
  CLI::App app{"Duet: hardware/algorithm co-design toolkit for neural networks"};
  app.require_subcommand(1);
  // Options of duet itself may also follow the command (duet conform --quiet DIR):
  // subcommands pass what they do not know up to here.
  app.fallthrough();
  bool quiet = false;
  std::string log_level = "info";
  app.add_flag("-q,--quiet", quiet, "Errors only on stderr (the same as --log-level error)");
  app.add_option("--log-level", log_level, "What reaches stderr besides errors: error, warning, info (progress), debug")
      ->check(CLI::IsMember({"error", "warning", "info", "debug"}));
  app.add_flag("--progress", duet::cli::logging().progress,
               "Draw progress (rate, ETA) on stderr even when it is not a terminal (logs, CI)");
  app.set_version_flag("--version", std::string("duet ") + duet::version());
  app.option_defaults()->always_capture_default();  // --json outputs report every effective option
  // A run's options as a file, and back: --write-config writes every option
  // of the command (given or default) as TOML; --config reads such a file
  // (the command line still wins), so a run can be repeated exactly.
  app.set_config("--config", "", "Read the command's options from a TOML file (as --write-config writes it)");
  std::string write_config;
  app.add_option("--write-config", write_config,
                 "Write the command's effective options (given and default) to this TOML file, then run");
  std::map<CLI::App*, duet::cli::Runner> runners;
  auto add = [&](duet::cli::Runner (*fn)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    auto runner = fn(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) runners[subs.back()] = runner;
  };
  add(duet::cli::add_info);
  add(duet::cli::add_run);
  add(duet::cli::add_conform);
  add(duet::cli::add_formats);
  add(duet::cli::add_optimize_graph);
  add(duet::cli::add_bench);
  add(duet::cli::add_devices);
  add(duet::cli::add_simulate);
  add(duet::cli::add_calibrate_host);
  add(duet::cli::add_emu_gemm);
  add(duet::cli::add_emulate);
  add(duet::cli::add_evaluate);
  add(duet::cli::add_quantize);
  add(duet::cli::add_sparsify);
  add(duet::cli::add_train);
  add(duet::cli::add_plan);
  add(duet::cli::add_validate_devices);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints the message (or the help / version asked for)
    return code == 0 ? duet::cli::kExitOk : duet::cli::kExitUsage;
  }
  try {
    for (auto& [sub, run] : runners) {
      if (!sub->parsed()) continue;
      const CLI::App* active = sub;  // the innermost parsed subcommand (bench gemm)
      for (bool deeper = true; deeper;) {
        deeper = false;
        for (const CLI::App* child : active->get_subcommands())
          if (child->parsed()) active = child, deeper = true;
      }
      duet::cli::active_command() = active;
      using duet::cli::LogLevel;
      duet::cli::logging().level = quiet                   ? LogLevel::Error
                                   : log_level == "error"   ? LogLevel::Error
                                   : log_level == "warning" ? LogLevel::Warning
                                   : log_level == "debug"   ? LogLevel::Debug
                                                            : LogLevel::Info;
      duet::cli::check_numbers(*active);
      duet::cli::check_outputs(*active);
      if (!write_config.empty()) duet::cli::write_config(app, write_config);
      return run();
    }
  } catch (const duet::Error& e) {
    // The exit-code table (commands.h): what Duet cannot run, a check that did not hold, anything else.
    std::cerr << "duet: error: " << e.what() << "\n";
    if (dynamic_cast<const duet::Unsupported*>(&e)) return duet::cli::kExitUnsupported;
    if (dynamic_cast<const duet::CheckFailed*>(&e)) return duet::cli::kExitCheckFailed;
    return duet::cli::kExitError;
  } catch (const std::bad_alloc&) {
    std::cerr << "duet: error: out of memory\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // "filesystem error: cannot create directories: Permission denied [x]", without the library's prefix.
    std::string what = e.what();
    if (what.rfind("filesystem error: ", 0) == 0) what = what.substr(18);
    std::cerr << "duet: error: " << what << "\n";
    return 1;
  } catch (const std::exception& e) {
    // A library's own text (nlohmann, the standard library): one line still, said to be internal.
    std::string what = e.what();
    for (char& c : what)
      if (c == '\n') c = ' ';
    std::cerr << "duet: error: internal: " << what << "\n";
    return 1;
  }
  return 0;
}
