// Duet's version (the CMake project version), for --version and for every
// machine-readable output, so a figure can be traced to what produced it.
#pragma once

namespace duet {

const char* version();

}  // namespace duet
