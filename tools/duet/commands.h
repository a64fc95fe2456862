// One file per subcommand; each adds itself to the CLI11 app and returns the
// function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace duet::cli {

using Runner = std::function<int()>;

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
Runner add_quantize(CLI::App& app);
Runner add_train(CLI::App& app);

// A progress bar on stderr: done/total, or nothing when not enabled (cmd_quantize.cc).
std::function<void(size_t, size_t)> progress_bar(const std::string& what, bool enabled);

}  // namespace duet::cli
