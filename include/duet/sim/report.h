// Simulation results as JSON and as one self-contained HTML page (inline SVG,
// no scripts or network): roofline with every node, per-node time and energy
// bars, batch-sweep curves, device comparison. Every figure is labelled modelled.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "duet/sim/simulate.h"

namespace duet::sim {

nlohmann::json to_json(const SimResult& r, bool with_nodes = true);
std::string html_report(const std::string& title, const std::vector<SimResult>& results);

}  // namespace duet::sim
