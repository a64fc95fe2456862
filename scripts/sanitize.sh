#!/bin/bash
# Builds everything (tests and the libFuzzer target) once with clang,
# AddressSanitizer + UndefinedBehaviorSanitizer and fuzzing coverage, and runs
# the whole test suite in it (the 2^32 exhaustive sweeps excepted: pure
# arithmetic, hours under ASan). scripts/fuzz.sh reuses this build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
# -O1 with line tables: instrumented builds compile 2-3x faster than -O2 -g and test as well.
cmake -S "$root" -B "$root/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++ -DDUET_SANITIZE=ON -DDUET_FUZZ=ON >/dev/null
ninja -C "$root/build-asan"
cd "$root/build-asan"
# The zoo (13 full CNNs and a transformer, on both backends) checks numbers
# against PyTorch in the plain run; under ASan it alone takes longer than the
# rest of the suite, and the same kernels and backend paths run here through
# the backend suite, the PaddleOCR models and the optimizer/backend tests.
# mpi_data_parallel: Open MPI's runtime (not instrumented) keeps allocations
# past exit that LeakSanitizer reports; the plain run covers it.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j2 -LE exhaustive -E "zoo_models|mpi_data_parallel"
