#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

void register_linear_attention(Registry& r) {}

}  // namespace duet::ops
