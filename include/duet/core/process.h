// Facts about this process that reports measure.
#pragma once
#include <string>

namespace duet {

// The high-water mark of this process image's resident memory in MB (VmHWM;
// getrusage's ru_maxrss only where /proc is missing: it survives fork and
// exec, so a child of a big parent, a Python benchmark driver, reports the
// parent's peak).
double peak_rss_mb();

// The CPU's model name (/proc/cpuinfo), "unknown CPU" where it says none.
std::string cpu_model_name();

}  // namespace duet
