// duet calibrate-host [--out devices/host.toml]: measures this CPU's FP32 peak
// and memory bandwidths, and the oneDNN kernel rates of the host-CPU model
// (sim/cpu_model.h), and writes its catalog entry.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/io/file.h"
#include "duet/measure/host_calibration.h"
#include "duet/sim/device.h"

namespace duet::cli {

Runner add_calibrate_host(CLI::App& app) {
  struct Options {
    std::string out = sim::user_host_file();
    double seconds = 0.3;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("calibrate-host", "Measure this CPU (FP32 peak, cache and DRAM bandwidth) and write its device file");
  cmd->add_option("--out", o->out,
                  "Device file to write (default: ~/.config/duet/host.toml, which --device host then reads instead of the "
                  "shipped devices/host.toml)");
  cmd->add_option("--seconds", o->seconds, "Seconds per microbenchmark")->check(CLI::Range(0.01, 60.0));
  return [o]() {
    auto c = measure::calibrate_host(o->seconds, progress_display("calibrate-host"));
    const std::string text = measure::host_toml(c);
    sim::parse_device_toml(text, o->out);  // what we write must load
    DUET_CHECK(!o->out.empty(), "calibrate-host: neither XDG_CONFIG_HOME nor HOME is set; give --out FILE");
    if (o->out == sim::user_host_file()) std::filesystem::create_directories(std::filesystem::path(o->out).parent_path());
    io::write_file_atomically(o->out, text, "device file");
    std::cout << "host: " << c.cpu_model << ", " << c.threads << " threads: FP32 " << c.fp32_flops / 1e9 << " GFLOP/s, cache "
              << c.cache_bytes_per_s / 1e9 << " GB/s, DRAM " << c.dram_bytes_per_s / 1e9 << " GB/s (" << c.seconds
              << " s); wrote " << o->out << "\n";
    for (auto& r : c.kernel_rates) {
      std::cout << "  oneDNN at " << r.threads << " thread" << (r.threads > 1 ? "s" : "") << ": FMA " << r.fma_flops / 1e9
                << " GFLOP/s, conv " << r.conv_flops / 1e9 << ", winograd " << r.winograd_flops / 1e9 << ", matmul " << r.matmul_flops / 1e9 << ", depthwise "
                << r.depthwise_flops / 1e9 << ", deconv " << r.deconv_flops / 1e9 << " GFLOP/s; exp " << r.transcendental_per_s / 1e9 << " Gelem/s; overhead " << r.overhead_s * 1e6 << " us; overlap " << r.overlap << "; streaming";
      for (auto& l : r.levels) std::cout << " " << l.name << " " << l.bytes_per_s / 1e9;
      std::cout << " GB/s\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
