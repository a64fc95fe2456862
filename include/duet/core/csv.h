// One line of comma-separated values: fields split at commas outside double
// quotes, "" inside quotes is a quote, each field trimmed of spaces and tabs.
#pragma once
#include <string>
#include <vector>

namespace duet {

std::vector<std::string> split_csv_line(const std::string& line);

}  // namespace duet
