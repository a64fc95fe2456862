// Simulation results as JSON and as one self-contained HTML page (inline SVG,
// no scripts or network): roofline with every node, per-node time and energy
// bars, batch-sweep curves, device comparison with the latency/energy Pareto front. Every figure is labelled modelled,
// except the host validation's measured times, labelled measured.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "duet/sim/simulate.h"
#include "duet/sim/validation.h"

namespace duet::sim {

nlohmann::json to_json(const SimResult& r, bool with_nodes = true);
nlohmann::json to_json(const HostValidation& v);  // labelled measured vs modelled
// `validation`: adds a measured-vs-modelled section (the one measured part of the page).
std::string html_report(const std::string& title, const std::vector<SimResult>& results,
                        const HostValidation* validation = nullptr);
// What html_report plots (report::data: the latency/energy Pareto front, sweeps, rooflines, per-node bars), all modelled.
nlohmann::json report_data(const std::vector<SimResult>& results);

}  // namespace duet::sim
