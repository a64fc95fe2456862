#include "duet/sim/energy.h"

#include <algorithm>
#include <cmath>

#include "duet/core/error.h"

namespace duet::sim {

namespace {
double lookup(const std::map<std::string, double>& table, const std::string& key, const char* what) {
  auto it = table.find(key);
  DUET_CHECK(it != table.end(), "technology table has no ", what, " energy for '", key, "'");
  return it->second;
}
}  // namespace

double TechnologyTable::mac_pj(const std::string& precision) const {
  const std::string acc = precision == "int8" || precision == "int4" ? "int32" : "fp32";
  return lookup(mul_pj, precision, "multiply") + lookup(add_pj, acc, "add");
}

double TechnologyTable::op_pj(const std::string& precision) const { return lookup(add_pj, precision, "add"); }

double TechnologyTable::sram_pj_per_byte(double capacity_bytes) const {
  const double sizes[3] = {8.0 * 1024, 32.0 * 1024, 1024.0 * 1024};
  const double pj[3] = {sram_8k_pj_per_byte, sram_32k_pj_per_byte, sram_1m_pj_per_byte};
  if (capacity_bytes <= sizes[0]) return pj[0];
  if (capacity_bytes >= sizes[2]) return pj[2];
  const int i = capacity_bytes <= sizes[1] ? 0 : 1;
  const double t = std::log(capacity_bytes / sizes[i]) / std::log(sizes[i + 1] / sizes[i]);
  return pj[i] + t * (pj[i + 1] - pj[i]);
}

}  // namespace duet::sim
