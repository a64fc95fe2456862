// duet: the command-line tool, thin over the library.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <map>

#include "commands.h"
#include "duet/core/error.h"

// oneDNN (Debian's build) runs on OpenMP, whose idle workers spin by default.
// On a shared machine a spinning worker takes the core a busy thread needs:
// PaddleOCR rec went from 105 ms to 2.2 s with a compile job beside it. libgomp
// reads its settings when it loads, before main, so duet sets a passive wait
// policy and restarts itself once, unless the user chose a policy.
void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  CLI::App app{"Duet: hardware/algorithm co-design toolkit for neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "duet 0.1.0");
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const std::exception& e) {
    std::cerr << "duet: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
