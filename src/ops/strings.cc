#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

void register_strings(Registry& r) {}

}  // namespace duet::ops
