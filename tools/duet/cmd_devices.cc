// duet devices [--json] [--devices DIR]: the device catalog.
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "duet/sim/device.h"

namespace duet::cli {

Runner add_devices(CLI::App& app) {
  struct Options {
    bool json = false;
    std::string dir = sim::default_devices_dir();
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("devices", "List the device catalog (devices/*.toml): peaks, memory, power, price");
  cmd->add_flag("--json", o->json, "Print as JSON");
  cmd->add_option("--devices", o->dir, "Catalog folder (default: $DUET_DEVICES or the source tree's devices/)");
  return [o]() {
    auto catalog = sim::load_catalog(o->dir);
    if (o->json) {
      auto out = nlohmann::json::array();
      for (auto& d : catalog) {
        nlohmann::json j{{"id", d.id}, {"name", d.name}, {"kind", d.kind}, {"calibrated", d.calibrated}, {"source", d.source}};
        if (!d.calibrated) { j["note"] = d.note; out.push_back(j); continue; }
        for (auto& [p, v] : d.matrix.peak_flops) j["matrix"]["peak_tflops"][p] = v / 1e12;
        j["matrix"]["model"] = d.matrix.model;
        j["matrix"]["rows"] = d.matrix.rows;
        j["matrix"]["cols"] = d.matrix.cols;
        j["matrix"]["count"] = d.matrix.count;
        j["matrix"]["dataflows"] = d.matrix.dataflows;
        j["matrix"]["sparsity_2to4_speedup"] = d.matrix.sparsity_2to4_speedup;
        j["matrix"]["source"] = d.matrix.source;
        for (auto& [p, v] : d.vector.peak_flops) j["vector"]["peak_tflops"][p] = v / 1e12;
        for (auto& m : d.memory)
          j["memory"].push_back({{"name", m.name}, {"on_chip", m.on_chip}, {"capacity_bytes", m.capacity_bytes},
                                 {"bandwidth_gbs", m.bandwidth_bytes_per_s / 1e9}, {"source", m.source}});
        j["host_link"] = {{"bandwidth_gbs", d.host_link_bytes_per_s / 1e9}, {"latency_us", d.host_link_latency_s * 1e6}};
        j["power"] = {{"tdp_w", d.tdp_w}, {"idle_w", d.idle_w}};
        j["price_per_hour_usd"] = d.price_per_hour_usd ? nlohmann::json(*d.price_per_hour_usd) : nlohmann::json();
        out.push_back(j);
      }
      print_json(out, 2);
      return 0;
    }
    std::cout << std::left << std::setw(18) << "id" << std::setw(36) << "name" << std::right << std::setw(10) << "fp32 TF"
              << std::setw(10) << "bf16 TF" << std::setw(10) << "int8 TO" << std::setw(11) << "DRAM GB/s" << std::setw(8) << "TDP W"
              << std::setw(9) << "$/hour" << "\n";
    auto peak = [](const sim::Device& d, const char* p) -> std::string {
      auto it = d.matrix.peak_flops.find(p);
      if (it == d.matrix.peak_flops.end()) return "-";
      std::ostringstream s;
      s << std::setprecision(4) << it->second / 1e12;
      return s.str();
    };
    for (auto& d : catalog) {
      std::cout << std::left << std::setw(18) << d.id << std::setw(36) << d.name.substr(0, 35) << std::right;
      if (!d.calibrated) { std::cout << "  " << d.note << "\n"; continue; }
      std::ostringstream bw, price;
      bw << std::setprecision(4) << d.dram().bandwidth_bytes_per_s / 1e9;
      if (d.price_per_hour_usd) price << *d.price_per_hour_usd; else price << "-";
      std::cout << std::setw(10) << peak(d, "fp32") << std::setw(10) << peak(d, "bf16") << std::setw(10) << peak(d, "int8")
                << std::setw(11) << bw.str() << std::setw(8) << d.tdp_w << std::setw(9) << price.str() << "\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
