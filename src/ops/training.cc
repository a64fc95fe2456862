#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

void register_training(Registry& r) {}

}  // namespace duet::ops
