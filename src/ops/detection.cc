#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

void register_detection(Registry& r) {}

}  // namespace duet::ops
