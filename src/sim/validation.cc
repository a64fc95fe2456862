#include "duet/sim/validation.h"

#include <algorithm>
#include <cmath>

namespace duet::sim {

double HostValidation::median_abs_node_error() const {
  std::vector<double> e;
  for (auto& r : rows)
    if (r.modelled && r.measured && r.measured_s > 0) e.push_back(std::fabs(r.error()));
  if (e.empty()) return 0;
  std::sort(e.begin(), e.end());
  return e[e.size() / 2];
}

}  // namespace duet::sim
