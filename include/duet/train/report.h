// The training report: a self-contained HTML page with the per-epoch loss and
// accuracy curves (SVG) and the run's settings; every figure measured.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "duet/train/trainer.h"

namespace duet::train {

struct TrainingReport {
  std::string title;
  std::vector<std::pair<std::string, std::string>> settings;  // shown as a table
  std::vector<EpochResult> epochs;
};

std::string training_report_html(const TrainingReport& report);
nlohmann::json training_report_data(const TrainingReport& report);  // what the page plots (report::data), written beside it

}  // namespace duet::train
