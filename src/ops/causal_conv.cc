#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

void register_causal_conv(Registry& r) {}

}  // namespace duet::ops
