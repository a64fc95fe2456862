#!/bin/bash
# Builds with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DDUET_SANITIZE=ON >/dev/null
ninja -C "$root/build-asan"
cd "$root/build-asan"
# Reuse the zoo models the plain test run exported (export takes minutes).
export DUET_ZOO_DIR=${DUET_ZOO_DIR:-$root/build/zoo}
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j2 -LE exhaustive
