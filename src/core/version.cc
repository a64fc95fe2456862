#include "duet/core/version.h"

namespace duet {

const char* version() { return DUET_VERSION; }

}  // namespace duet
